//! Bounded file handles and mappings: many partitions with sealed segments, read from all
//! of them; the process's open descriptors and memory mappings stay under the caps of the
//! handle cache (plus one open file per active segment). Own test binary: it counts the
//! process's descriptors and mappings. `FJORD_SLOW_TESTS=1` uses 3,000 partitions (default 100, with smaller caps).

mod common;

use std::sync::Arc;

use common::batch;
use fjord_model::limits::{MAPPED_INDEX_FILES_MAX, OPEN_SEGMENT_FILES_MAX};
use fjord_model::Offset;
use fjord_storage::{Log, LogConfig, Storage, StorageLimits};

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn map_count() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
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

#[test]
fn sealed_segments_share_a_bounded_handle_cache() {
    // (partitions, open sealed files cap, mapped indexes cap): every run has more sealed
    // segments (3 per partition) than the caps allow; the slow run uses the real caps.
    let (partitions, files_max, maps_max): (usize, usize, usize) =
        if std::env::var_os("FJORD_SLOW_TESTS").is_some() {
            (3_000, OPEN_SEGMENT_FILES_MAX, MAPPED_INDEX_FILES_MAX)
        } else {
            (100, 20, 30)
        };
    let storage = Storage::new(StorageLimits {
        open_files_max: files_max,
        mapped_indexes_max: maps_max,
        ..StorageLimits::default()
    });
    let data = tempfile::tempdir().unwrap();
    let fds_before = fd_count();
    let maps_before = map_count();

    // Each partition: 3 sealed segments and an active one, closed cleanly. One is written
    // through the log, the others are copies of it (no fsyncs: keeps the test fast).
    let template = data.path().join("template");
    {
        let (log, _) = Log::open(&storage, &template, config(), 0).unwrap();
        for i in 0..14u64 {
            log.append(&mut batch(1, 500, i as i64, i), 0).unwrap();
        }
        assert!(log.segment_count() >= 4, "{}", log.segment_count());
        log.close().unwrap();
        common::crash(log);
    }
    for p in 0..partitions {
        let to = data.path().join(format!("t-{p}"));
        std::fs::create_dir(&to).unwrap();
        for e in std::fs::read_dir(&template).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
    assert!(fd_count() <= fds_before + files_max + 8, "{}", fd_count());

    // Reopen all and read everything (every sealed file and offset index), plus a
    // timestamp lookup (time indexes).
    let mut logs: Vec<Arc<Log>> = Vec::with_capacity(partitions);
    for p in 0..partitions {
        let (log, report) =
            Log::open(&storage, &data.path().join(format!("t-{p}")), config(), 0).unwrap();
        assert!(report.clean && report.segments_scanned == 0, "{report:?}");
        logs.push(log);
    }
    for log in &logs {
        let got = common::all_batches(log);
        assert_eq!(got.len(), 14);
        let r = log.read(Offset(3), 1, log.log_end_offset(), true).unwrap();
        assert_eq!(common::split(&r.to_vec().unwrap())[0].0, 3);
        assert_eq!(
            log.offset_for_timestamp(5).unwrap().map(|x| x.0),
            Some(Offset(5))
        );
    }
    let (files, maps) = storage.handle_counts();
    assert!(files <= files_max && maps <= maps_max, "{files} {maps}");
    let fds = fd_count();
    let maps_now = map_count();
    // One descriptor per active segment, the cached sealed ones, some slack for threads.
    assert!(
        fds <= fds_before + partitions + files_max + 16,
        "{fds} open descriptors for {partitions} partitions (before: {fds_before})"
    );
    assert!(
        maps_now <= maps_before + maps_max + 64,
        "{maps_now} mappings (before: {maps_before})"
    );
    // Without the cache it would have been 4 descriptors per partition.
    assert!(fds < fds_before + 4 * partitions);
    drop(logs);
    let (files, maps) = storage.handle_counts();
    assert_eq!((files, maps), (0, 0), "dropped segments leave the cache");
}
