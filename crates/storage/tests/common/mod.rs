//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

pub mod fault;

use fjord_records::{BatchBuilder, Compression};
use fjord_storage::{Log, LogConfig, Storage, StorageLimits};
use std::cell::Cell;
use std::path::Path;
use std::sync::Arc;

thread_local! {
    /// The write path `storage()` gives on this thread (see `on_both_write_paths`).
    static DIRECT_IO: Cell<bool> = const { Cell::new(false) };
}

/// Runs `body` twice: with buffered writes, then with direct writes (`log.direct.io`),
/// each time with `storage()` (and `open`) giving a `Storage` of that write path.
pub fn on_both_write_paths(mut body: impl FnMut(bool)) {
    for direct in [false, true] {
        DIRECT_IO.with(|d| d.set(direct));
        body(direct);
    }
    DIRECT_IO.with(|d| d.set(false));
}

/// Storage limits of the write path this thread tests (buffered unless inside
/// `on_both_write_paths`' direct round).
pub fn limits() -> StorageLimits {
    StorageLimits {
        direct_io: DIRECT_IO.with(Cell::get),
        ..StorageLimits::default()
    }
}

/// A `Storage` of the write path this thread tests (see `limits`).
pub fn storage() -> Storage {
    Storage::new(limits())
}

/// A batch of `records` records with values derived from `seed`, timestamps from `ts`.
pub fn batch(records: usize, value_bytes: usize, ts: i64, seed: u64) -> Vec<u8> {
    let mut b = BatchBuilder::new(Compression::None);
    for i in 0..records {
        let key = format!("k{seed}-{i}");
        let value: Vec<u8> = (0..value_bytes)
            .map(|j| (seed as usize * 31 + i * 7 + j) as u8)
            .collect();
        b.push(ts + i as i64, Some(key.as_bytes()), Some(&value), &[]);
    }
    b.build(0)
}

/// Small segments so that tests roll often.
pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 4096,
        segment_ms: None,
        index_interval_bytes: 256,
        index_bytes_max: 4096,
        retention_ms: None,
        retention_bytes: None,
        ..LogConfig::default()
    }
}

pub fn open(dir: &Path, cfg: LogConfig) -> Arc<Log> {
    Log::open(&storage(), dir, cfg, 1_000).expect("open").0
}

/// Every batch in the log from its start: (base offset, bytes).
pub fn all_batches(log: &Log) -> Vec<(i64, Vec<u8>)> {
    let start = log.log_start_offset();
    let end = log.log_end_offset();
    let r = log.read(start, usize::MAX, end, true).expect("read");
    let bytes = r.to_vec().expect("bytes");
    split(&bytes)
}

/// Splits concatenated batches, checking each one's CRC and framing.
pub fn split(bytes: &[u8]) -> Vec<(i64, Vec<u8>)> {
    fjord_records::batches(bytes)
        .map(|b| {
            let (h, r) = b.expect("framing");
            fjord_records::validate_batch(&bytes[r.clone()]).expect("valid batch");
            (h.base_offset, bytes[r].to_vec())
        })
        .collect()
}

/// Drops the log without closing it (a crash as far as the files are concerned), after
/// waiting until no background flush still holds a reference to it.
pub fn crash(log: Arc<Log>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !(log.is_background_idle() && Arc::strong_count(&log) == 1) {
        assert!(
            std::time::Instant::now() < deadline,
            "background flush never finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    drop(log);
}

/// Bytes of whole batches at the start of the segment file `path`: its logical size (after
/// direct writes, zeros follow up to the end of the last block until the segment is
/// sealed or closed).
pub fn data_len(path: &Path) -> u64 {
    let bytes = std::fs::read(path).expect("read segment");
    let mut end = 0;
    for b in fjord_records::batches(&bytes) {
        match b {
            Ok((_, r)) => end = r.end,
            Err(_) => break,
        }
    }
    end as u64
}
