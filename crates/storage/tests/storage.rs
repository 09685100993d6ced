//! Two `Storage` values in one process (two nodes of a cluster simulation) share nothing:
//! each has its own flush threads and its own handle cache, and its threads stop when it
//! and its logs are dropped. Own test binary with one test: it counts the process's
//! threads.

mod common;

use std::sync::Arc;

use common::batch;
use fjord_model::Offset;
use fjord_storage::{Log, LogConfig, Storage, StorageLimits};

fn flush_threads_running() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter(|t| {
            let comm = std::fs::read_to_string(t.as_ref().unwrap().path().join("comm"));
            comm.is_ok_and(|c| c.starts_with("fjord-flush"))
        })
        .count()
}

/// Waits until `n` flush threads run (a new thread names itself once it starts; a
/// stopped one is gone once joined, but give the kernel a moment either way).
fn expect_flush_threads(n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while flush_threads_running() != n {
        assert!(
            std::time::Instant::now() < deadline,
            "{} flush threads running, expected {n}",
            flush_threads_running()
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 2048,
        segment_ms: None,
        index_interval_bytes: 128,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// A log with several sealed segments, closed and reopened (so every sealed segment is
/// synced and its handles go through the cache when read).
fn log_with_sealed_segments(storage: &Storage, dir: &std::path::Path) -> Arc<Log> {
    {
        let (log, _) = Log::open(storage, dir, config(), 0).unwrap();
        for i in 0..10u64 {
            log.append(&mut batch(1, 500, i as i64, i), 0).unwrap();
        }
        assert!(log.segment_count() >= 4, "{}", log.segment_count());
        log.close().unwrap();
        common::crash(log);
    }
    let (log, report) = Log::open(storage, dir, config(), 0).unwrap();
    assert!(report.clean);
    log
}

#[test]
fn two_storage_values_share_no_threads_and_no_handle_cache() {
    expect_flush_threads(0);
    let a = Storage::new(StorageLimits {
        open_files_max: 100,
        mapped_indexes_max: 100,
        flush_threads: 2,
        ..StorageLimits::default()
    });
    let b = Storage::new(StorageLimits {
        open_files_max: 100,
        mapped_indexes_max: 100,
        flush_threads: 3,
        ..StorageLimits::default()
    });
    assert!(!a.same_as(&b) && a.same_as(&a.clone()));
    assert_eq!((a.flush_threads(), b.flush_threads()), (2, 3));
    expect_flush_threads(5);

    let dir = tempfile::tempdir().unwrap();
    let log_a = log_with_sealed_segments(&a, &dir.path().join("a-0"));
    let log_b = log_with_sealed_segments(&b, &dir.path().join("b-0"));
    assert_eq!((a.handle_counts(), b.handle_counts()), ((0, 0), (0, 0)));

    // Reading A's sealed segments fills A's cache only.
    assert_eq!(common::all_batches(&log_a).len(), 10);
    let (files_a, maps_a) = a.handle_counts();
    assert!(files_a >= 3 && maps_a >= 1, "{files_a} {maps_a}");
    assert_eq!(b.handle_counts(), (0, 0));

    // A cap on A does not bind B.
    a.set_handle_limits(1, 1);
    assert_eq!(common::all_batches(&log_a).len(), 10);
    assert_eq!(a.handle_counts(), (1, 1));
    assert_eq!(common::all_batches(&log_b).len(), 10);
    let (files_b, maps_b) = b.handle_counts();
    assert!(files_b >= 3 && maps_b >= 1, "{files_b} {maps_b}");
    assert_eq!(a.handle_counts(), (1, 1));

    // Group commit works in both; then A goes away with its threads, B keeps working.
    for log in [&log_a, &log_b] {
        let r = log.append(&mut batch(1, 10, 100, 99), 0).unwrap();
        log.sync_to(r.last_offset).wait_blocking().unwrap();
        assert!(log.durable_offset() > r.last_offset);
    }
    drop(a);
    assert_eq!(
        flush_threads_running(),
        5,
        "A's log still holds A's threads"
    );
    common::crash(log_a);
    expect_flush_threads(3);
    let r = log_b.append(&mut batch(1, 10, 100, 98), 0).unwrap();
    log_b.sync_to(r.last_offset).wait_blocking().unwrap();
    assert_eq!(
        log_b
            .read(r.base_offset, 1 << 20, Offset(i64::MAX), true)
            .unwrap()
            .slices
            .len(),
        1
    );
    drop(b);
    common::crash(log_b);
    expect_flush_threads(0);
}
