//! The batch cache (`StorageLimits::batch_cache_bytes`): reads return the same bytes with
//! and without it, on both write paths, through appends, segment rolls, truncations,
//! DeleteRecords and a clean reopen; reads of recent direct writes come from memory; the
//! cache never holds more than its bound.

mod common;

use common::batch;
use fjord_model::Offset;
use fjord_storage::{Log, LogConfig, ReadResult, Storage, StorageLimits};

/// Segments of 32 KiB: many rolls.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 32 * 1024,
        index_interval_bytes: 1024,
        ..common::small_config()
    }
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One storage under test: a write path and a cache size.
struct Case {
    name: &'static str,
    storage: Storage,
    dir: tempfile::TempDir,
    log: std::sync::Arc<Log>,
    cache_max: usize,
}

fn case(name: &'static str, direct_io: bool, cache_max: usize) -> Case {
    let storage = Storage::new(StorageLimits {
        direct_io,
        batch_cache_bytes: cache_max,
        ..StorageLimits::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(&storage, dir.path(), config(), 0).unwrap();
    Case {
        name,
        storage,
        dir,
        log,
        cache_max,
    }
}

/// What a read returned, compared across cases.
fn outcome(r: &ReadResult) -> (Vec<u8>, usize, i64) {
    let bytes = r.to_vec().unwrap();
    // The slices' bytes are the file's where they came from the cache.
    for s in &r.slices {
        if let Some(c) = &s.cached {
            assert_eq!(c.len(), s.len);
            let mut from_file = vec![0u8; s.len];
            std::os::unix::fs::FileExt::read_exact_at(&*s.file, &mut from_file, s.position)
                .unwrap();
            assert!(from_file == c[..], "cached bytes differ from the file's");
        }
    }
    (bytes, r.bytes, r.next_offset)
}

#[test]
fn reads_are_the_same_with_and_without_the_cache_on_both_write_paths() {
    let mut cases = vec![
        case("buffered", false, 0),
        case("buffered, cache", false, 1 << 20),
        case("direct", true, 0),
        // Smaller than a segment: evictions all the time, runs that start mid-segment.
        case("direct, 10 KiB cache", true, 10 * 1024),
        case("direct, cache", true, 1 << 20),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut seed = 0u64;
    for step in 0..200 {
        let op = rng.below(100);
        let leo = cases[0].log.log_end_offset().0;
        let start = cases[0].log.log_start_offset().0;
        if op < 4 && leo > start + 1 {
            let to = Offset(start + 1 + rng.below((leo - start - 1) as u64) as i64);
            for c in &cases {
                c.log.truncate_to(to).unwrap();
            }
        } else if op < 6 && leo > start {
            let to = Offset(start + rng.below((leo - start) as u64 / 4 + 1) as i64);
            for c in &cases {
                c.log.delete_records_before(to).unwrap();
            }
        } else if op < 7 {
            for c in &mut cases {
                c.log.close().unwrap();
                let (log, report) = Log::open(&c.storage, c.dir.path(), config(), 0).unwrap();
                assert!(report.problems.is_empty(), "{}: {report:?}", c.name);
                c.log = log;
            }
        } else {
            let n = 1 + rng.below(3) as usize;
            let batches: Vec<Vec<u8>> = (0..n)
                .map(|_| {
                    seed += 1;
                    let value = [5, 100, 700, 3_000, 5_000][rng.below(5) as usize];
                    batch(1 + rng.below(2) as usize, value, seed as i64, seed)
                })
                .collect();
            let records = batches.concat();
            for c in &cases {
                c.log.append(&mut records.clone(), 0).unwrap();
            }
        }
        let leo = cases[0].log.log_end_offset().0;
        let start = cases[0].log.log_start_offset().0;
        let mut reads = vec![
            (start, usize::MAX, leo),
            (leo.saturating_sub(1).max(start), 1, leo),
        ];
        for _ in 0..4 {
            let from = start + rng.below((leo - start + 1) as u64) as i64;
            let max = [1, 500, 5_000, 20_000, 64 * 1024][rng.below(5) as usize];
            let upper = from + rng.below((leo - from + 1) as u64) as i64;
            reads.push((from, max, upper));
        }
        for (from, max, upper) in reads {
            let want = outcome(
                &cases[0]
                    .log
                    .read(Offset(from), max, Offset(upper), true)
                    .unwrap(),
            );
            for c in &cases[1..] {
                let got = c.log.read(Offset(from), max, Offset(upper), true).unwrap();
                assert!(
                    outcome(&got) == want,
                    "step {step}: {} reads [{from}, {upper}) max {max} differently",
                    c.name
                );
            }
        }
        for c in &cases {
            assert!(c.storage.batch_cache_bytes() <= c.cache_max, "{}", c.name);
        }
    }
    assert!(cases[0].log.segment_count() > 3);
    for c in &cases {
        let served = c.storage.stats().cache_read_bytes;
        // Only direct writes fill the cache (buffered ones leave the page cache warm).
        assert_eq!(
            served > 0,
            c.storage.stats().direct_writes > 0 && c.cache_max > 0,
            "{}: {served}",
            c.name
        );
    }
}

#[test]
fn a_tailing_read_of_direct_writes_comes_from_memory() {
    let c = case("direct, cache", true, 1 << 20);
    let mut records = [batch(2, 300, 1, 1), batch(1, 5_000, 2, 2)].concat();
    let r = c.log.append(&mut records, 0).unwrap();
    let read = c
        .log
        .read(r.base_offset, usize::MAX, c.log.log_end_offset(), true)
        .unwrap();
    assert_eq!(read.bytes, records.len());
    assert!(read.slices.iter().all(|s| s.cached.is_some()));
    assert_eq!(read.to_vec().unwrap(), records);
    // After a truncation the new segment object reads the file until appended to again.
    c.log.truncate_to(Offset(2)).unwrap();
    let read = c.log.read(Offset(0), usize::MAX, Offset(2), true).unwrap();
    assert!(read.slices.iter().all(|s| s.cached.is_none()));
    assert_eq!(read.bytes, batch(2, 300, 1, 1).len());
    assert_eq!(c.storage.batch_cache_bytes(), 0);
}
