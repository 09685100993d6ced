//! Feeds arbitrary bytes to the record-batch entry points. None may panic,
//! abort or allocate without bound; what validation accepts must decode.

#![no_main]

use fjord_records::{
    batches, decode_records_bounded, validate_batch, validate_batch_deep, BatchHeader, Compression,
};
use libfuzzer_sys::fuzz_target;

/// Decompression bound for fuzzing: small enough to keep runs fast.
const FUZZ_DECOMPRESSED_BYTES_MAX: usize = 4 * 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    let _ = BatchHeader::parse(data);
    let shallow = validate_batch(data);
    let deep = validate_batch_deep(data, FUZZ_DECOMPRESSED_BYTES_MAX);
    let decoded = decode_records_bounded(data, FUZZ_DECOMPRESSED_BYTES_MAX);
    if let Ok(h) = &shallow {
        if matches!(h.compression(), Ok(Compression::None)) {
            assert!(deep.is_ok(), "uncompressed batch passed shallow but not deep validation");
        }
    }
    if let Ok((h, _)) = &deep {
        let records = decoded.expect("a deep-validated batch decodes");
        assert_eq!(records.len(), h.records_count as usize);
    }
    let mut end = 0;
    for item in batches(data) {
        match item {
            Ok((h, range)) => {
                assert_eq!(range.start, end);
                assert_eq!(range.len(), h.total_bytes());
                end = range.end;
                let _ = validate_batch(&data[range]);
            }
            Err(_) => break,
        }
    }
    assert!(end <= data.len());
});
