//! Helpers shared by the criterion bench (`benches/log.rs`) and the long
//! benchmarks (`examples/storage_bench.rs`).

use std::path::PathBuf;

use fjord_records::{BatchBuilder, Compression};

pub const RECORD_BYTES: usize = 1024;

/// A temporary directory under `FJORD_BENCH_DIR` (to pick the disk), or the system temp dir.
pub fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("FJORD_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(PathBuf::from(d)).expect("tempdir"),
        None => tempfile::tempdir().expect("tempdir"),
    }
}

/// A batch of 1 KiB records totalling about `bytes`.
pub fn batch_of(bytes: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new(Compression::None);
    let value = vec![0x5au8; RECORD_BYTES - 30];
    for i in 0..(bytes / RECORD_BYTES).max(1) {
        b.push(
            1_700_000_000_000 + i as i64,
            Some(b"key-0000"),
            Some(&value),
            &[],
        );
    }
    b.build(0)
}
