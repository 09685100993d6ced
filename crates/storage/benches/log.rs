//! Storage benchmarks, each next to the raw limit measured in the same run and directory:
//! - append throughput (1 KiB records in 16 KiB..1 MiB batches) vs raw sequential write;
//! - durable appends (append + sync_to) with 1/16/256 concurrent appenders vs raw
//!   write + fdatasync calls;
//! - read throughput from the page cache (pread into a buffer);
//! - cost of finding a position (index lookup + header scan) per read.
//!
//! Run: `cargo bench -p fjord-storage --bench log`. Set `FJORD_BENCH_DIR` to measure a
//! specific disk (default: the system temp dir).

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fjord_model::Offset;
use fjord_storage::{Log, LogConfig, Storage};
use rand::{Rng, SeedableRng};

#[path = "common/mod.rs"]
mod common;
use common::{batch_of, bench_dir, RECORD_BYTES};

/// The one storage engine of this benchmark process (one node).
fn storage() -> &'static Storage {
    static STORAGE: std::sync::OnceLock<Storage> = std::sync::OnceLock::new();
    STORAGE.get_or_init(Storage::default)
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 256 * 1024 * 1024,
        segment_ms: None,
        retention_ms: None,
        ..LogConfig::default()
    }
}

fn append_throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for size in [16 * 1024, 256 * 1024, 1024 * 1024] {
        let template = batch_of(size);
        g.throughput(Throughput::Bytes(template.len() as u64));
        g.bench_with_input(BenchmarkId::new("log", size), &template, |b, template| {
            b.iter_custom(|iters| {
                let dir = bench_dir();
                let (log, _) = Log::open(storage(), dir.path(), config(), 0).expect("open");
                let mut buf = template.clone();
                let start = Instant::now();
                for _ in 0..iters {
                    log.append(&mut buf, 0).expect("append");
                }
                let t = start.elapsed();
                drop(log);
                t
            })
        });
        g.bench_with_input(
            BenchmarkId::new("raw_write", size),
            &template,
            |b, template| {
                b.iter_custom(|iters| {
                    let dir = bench_dir();
                    let mut f = OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(dir.path().join("raw"))
                        .expect("file");
                    let start = Instant::now();
                    for _ in 0..iters {
                        f.write_all(template).expect("write");
                    }
                    start.elapsed()
                })
            },
        );
    }
    g.finish();
}

fn durable_appends(c: &mut Criterion) {
    let mut g = c.benchmark_group("durable_append");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let template = batch_of(RECORD_BYTES);
    g.throughput(Throughput::Elements(1));
    for appenders in [1usize, 16, 256] {
        g.bench_with_input(
            BenchmarkId::new("log_sync_to", appenders),
            &appenders,
            |b, &appenders| {
                let dir = bench_dir();
                let (log, _) = Log::open(storage(), dir.path(), config(), 0).expect("open");
                b.iter_custom(|iters| {
                    let per = (iters as usize).div_ceil(appenders);
                    let start = Instant::now();
                    let handles: Vec<_> = (0..appenders)
                        .map(|_| {
                            let log = Arc::clone(&log);
                            let template = template.clone();
                            std::thread::spawn(move || {
                                for _ in 0..per {
                                    let mut buf = template.clone();
                                    let r = log.append(&mut buf, 0).expect("append");
                                    log.sync_to(r.last_offset).wait_blocking().expect("sync");
                                }
                            })
                        })
                        .collect();
                    for h in handles {
                        h.join().expect("join");
                    }
                    // Report time per durable append.
                    start
                        .elapsed()
                        .mul_f64(iters as f64 / (per * appenders) as f64)
                })
            },
        );
    }
    g.bench_function("raw_write_fdatasync", |b| {
        let dir = bench_dir();
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("raw"))
            .expect("file");
        b.iter(|| {
            f.write_all(&template).expect("write");
            f.sync_data().expect("fdatasync");
        })
    });
    g.finish();
}

fn reads(c: &mut Criterion) {
    let dir = bench_dir();
    let (log, _) = Log::open(storage(), dir.path(), config(), 0).expect("open");
    let batch = batch_of(16 * 1024);
    for _ in 0..(64 * 1024 * 1024 / batch.len()) {
        log.append(&mut batch.clone(), 0).expect("append");
    }
    let end = log.log_end_offset();
    let mut g = c.benchmark_group("read");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Bytes(log.size_bytes()));
    g.bench_function("sequential_1MiB_fetches", |b| {
        let mut buf = Vec::with_capacity(2 * 1024 * 1024);
        b.iter(|| {
            let mut at = Offset(0);
            while at < end {
                let r = log.read(at, 1024 * 1024, end, true).expect("read");
                buf.clear();
                for s in &r.slices {
                    s.read_into(&mut buf).expect("pread");
                }
                let last = fjord_records::batches(&buf)
                    .last()
                    .expect("batch")
                    .expect("framing")
                    .0;
                at = Offset(last.next_offset());
            }
        })
    });
    g.throughput(Throughput::Elements(1));
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    g.bench_function("position_lookup", |b| {
        b.iter(|| {
            let at = Offset(rng.gen_range(0..end.0));
            let r = log.read(at, 1, end, true).expect("read");
            assert_eq!(r.slices.len(), 1);
        })
    });
    g.finish();
}

criterion_group!(benches, append_throughput, durable_appends, reads);
criterion_main!(benches);
