//! The fetch path's header scan (`Log::read`) reads headers alone after large
//! batches and whole chunks after small ones: every mix of batch sizes, start
//! offset and byte limit must give the same batches as a model of the log.

mod common;

use common::{batch, open, split};
use fjord_model::Offset;
use fjord_storage::LogConfig;

#[test]
fn reads_over_mixed_batch_sizes_match_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            segment_bytes_max: 256 * 1024,
            ..LogConfig::default()
        },
    );
    // (base offset, bytes): small batches, batches larger than the 8 KiB
    // header-only threshold and than a 64 KiB scan chunk, in runs and alternating.
    let shapes = [
        (3, 50),
        (2, 20_000),
        (1, 70_000),
        (5, 10),
        (5, 10),
        (1, 9_000),
        (4, 100),
        (1, 100_000),
        (2, 30),
        (1, 8_192),
        (3, 3_000),
    ];
    let mut model: Vec<(i64, Vec<u8>)> = Vec::new();
    for round in 0..3u64 {
        for (i, &(records, value_bytes)) in shapes.iter().enumerate() {
            let mut b = batch(
                records,
                value_bytes,
                1_000 + i as i64,
                round * 100 + i as u64,
            );
            let r = log.append(&mut b, 0).unwrap();
            model.push((r.base_offset.0, b));
        }
    }
    assert!(log.segment_count() > 1, "reads cross segments");
    let end = log.log_end_offset();
    for start in 0..end.0 {
        for max_bytes in [1, 100, 9_000, 70_000, 150_000, usize::MAX] {
            let got = split(
                &log.read(Offset(start), max_bytes, end, true)
                    .unwrap()
                    .to_vec()
                    .unwrap(),
            );
            // The model: from the batch holding `start`, whole batches while
            // they fit (the first one always).
            let first = model.iter().rposition(|(base, _)| *base <= start).unwrap();
            let mut want = Vec::new();
            let mut total = 0usize;
            for (base, bytes) in &model[first..] {
                if total + bytes.len() > max_bytes && total > 0 {
                    break;
                }
                total += bytes.len();
                want.push((*base, bytes.clone()));
                if total >= max_bytes {
                    break;
                }
            }
            assert_eq!(got, want, "start {start} max_bytes {max_bytes}");
        }
    }
}
