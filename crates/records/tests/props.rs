//! Property tests: round trips through every codec, single-byte damage,
//! truncation, concatenation, and fuzz-like random input.

use bytes::Bytes;
use fjord_records::{
    batches, decode_records, layout, set_base_offset, set_partition_leader_epoch, validate_batch,
    validate_batch_deep, BatchBuilder, BatchHeader, Compression, Record, BATCH_HEADER_BYTES,
};
use proptest::prelude::*;

type Header = (String, Option<Vec<u8>>);

#[derive(Clone, Debug)]
struct Input {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<Header>,
}

fn compression() -> impl Strategy<Value = Compression> {
    prop_oneof![
        Just(Compression::None),
        Just(Compression::Gzip),
        Just(Compression::Snappy),
        Just(Compression::Lz4),
        Just(Compression::Zstd),
    ]
}

fn bytes_opt(max: usize) -> impl Strategy<Value = Option<Vec<u8>>> {
    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..max))
}

fn input() -> impl Strategy<Value = Input> {
    (
        prop_oneof![any::<i64>(), 1_600_000_000_000i64..1_800_000_000_000],
        bytes_opt(40),
        bytes_opt(300),
        proptest::collection::vec(("[a-z\u{e9}\u{1F600}]{0,8}", bytes_opt(20)), 0..4),
    )
        .prop_map(|(timestamp, key, value, headers)| Input {
            timestamp,
            key,
            value,
            headers,
        })
}

fn build(c: Compression, base_offset: i64, recs: &[Input]) -> Vec<u8> {
    let mut b = BatchBuilder::new(c).producer(5, 1, 0);
    for r in recs {
        let hs: Vec<(&str, Option<&[u8]>)> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        b.push(r.timestamp, r.key.as_deref(), r.value.as_deref(), &hs);
    }
    b.build(base_offset)
}

fn expected(base_offset: i64, recs: &[Input]) -> Vec<Record> {
    recs.iter()
        .enumerate()
        .map(|(i, r)| Record {
            offset: base_offset + i as i64,
            timestamp: r.timestamp,
            key: r.key.clone().map(Bytes::from),
            value: r.value.clone().map(Bytes::from),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().map(Bytes::from)))
                .collect(),
        })
        .collect()
}

/// Runs every entry point on `buf`; they must return, not panic. Also checks
/// that what validation accepts, decoding can read.
fn exercise(buf: &[u8]) {
    let _ = BatchHeader::parse(buf);
    let shallow = validate_batch(buf);
    let deep = validate_batch_deep(buf, 1 << 20);
    let decoded = fjord_records::decode_records_bounded(buf, 1 << 20);
    if let Ok(h) = &shallow {
        if matches!(h.compression(), Ok(Compression::None)) {
            assert!(
                deep.is_ok(),
                "uncompressed batch passed shallow but not deep validation"
            );
        }
    }
    if deep.is_ok() {
        let recs = decoded.expect("deep-validated batch must decode");
        assert_eq!(
            recs.len(),
            shallow.expect("deep implies shallow").records_count as usize
        );
    }
    let mut end = 0;
    for item in batches(buf).take(buf.len() / BATCH_HEADER_BYTES + 1) {
        match item {
            Ok((h, range)) => {
                assert_eq!(range.start, end);
                assert_eq!(range.len(), h.total_bytes());
                end = range.end;
            }
            Err(_) => break,
        }
    }
    assert!(end <= buf.len());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

    #[test]
    fn round_trip_every_codec(
        c in compression(),
        base_offset in 0i64..(i64::MAX / 2),
        recs in proptest::collection::vec(input(), 1..20),
    ) {
        let batch = build(c, base_offset, &recs);
        let h = validate_batch(&batch).unwrap();
        prop_assert_eq!(h.compression().unwrap(), c);
        prop_assert_eq!(h.records_count as usize, recs.len());
        prop_assert_eq!(h.base_offset, base_offset);
        prop_assert_eq!(h.last_offset(), base_offset + recs.len() as i64 - 1);
        prop_assert_eq!(h.max_timestamp, recs.iter().map(|r| r.timestamp).max().unwrap());
        prop_assert_eq!(decode_records(&batch).unwrap(), expected(base_offset, &recs));
        let (_, max_ts) = validate_batch_deep(&batch, 1 << 24).unwrap();
        prop_assert_eq!(max_ts, h.max_timestamp);
    }

    #[test]
    fn any_single_byte_change_in_the_crc_region_is_caught(
        c in compression(),
        recs in proptest::collection::vec(input(), 1..6),
        pos in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let mut batch = build(c, 0, &recs);
        let i = layout::ATTRIBUTES_AT + pos.index(batch.len() - layout::ATTRIBUTES_AT);
        batch[i] ^= xor;
        prop_assert!(validate_batch(&batch).is_err(), "flip at {} not caught", i);
        exercise(&batch);
    }

    #[test]
    fn header_byte_changes_fail_or_touch_only_unprotected_fields(
        recs in proptest::collection::vec(input(), 1..4),
        i in 0usize..layout::ATTRIBUTES_AT,
        xor in 1u8..=255,
    ) {
        let mut batch = build(Compression::None, 0, &recs);
        batch[i] ^= xor;
        let unprotected = i < layout::BATCH_LENGTH_AT
            || (layout::PARTITION_LEADER_EPOCH_AT..layout::MAGIC_AT).contains(&i);
        prop_assert_eq!(validate_batch(&batch).is_ok(), unprotected);
        exercise(&batch);
    }

    #[test]
    fn truncation_at_any_length_fails_cleanly(
        c in compression(),
        recs in proptest::collection::vec(input(), 1..5),
    ) {
        let batch = build(c, 0, &recs);
        for n in 0..batch.len() {
            let cut = &batch[..n];
            prop_assert!(validate_batch(cut).is_err());
            prop_assert!(decode_records(cut).is_err());
            let items: Vec<_> = batches(cut).collect();
            if n == 0 {
                prop_assert!(items.is_empty());
            } else {
                prop_assert_eq!(items.len(), 1);
                prop_assert!(items[0].is_err());
            }
        }
    }

    #[test]
    fn batches_splits_concatenations_exactly(
        parts in proptest::collection::vec(
            (compression(), proptest::collection::vec(input(), 1..4), any::<i32>()), 0..6),
    ) {
        let mut buf = Vec::new();
        let mut ranges = Vec::new();
        let mut next_offset = 0i64;
        for (c, recs, epoch) in &parts {
            let mut b = build(*c, 0, recs);
            set_base_offset(&mut b, next_offset);
            set_partition_leader_epoch(&mut b, *epoch);
            next_offset += recs.len() as i64;
            ranges.push(buf.len()..buf.len() + b.len());
            buf.extend_from_slice(&b);
        }
        let got: Vec<_> = batches(&buf).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(got.len(), parts.len());
        let mut expect_offset = 0i64;
        for ((h, range), want) in got.iter().zip(&ranges) {
            prop_assert_eq!(range, want);
            prop_assert_eq!(h.base_offset, expect_offset);
            expect_offset = h.next_offset();
            let v = validate_batch(&buf[range.clone()]).unwrap();
            prop_assert_eq!(&v, h);
        }
    }

    /// Fuzz-like: arbitrary bytes.
    #[test]
    fn random_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..600)) {
        exercise(&buf);
    }

    /// Fuzz-like with a valid frame: a well-formed header (right length and
    /// CRC) around random record bytes, so record walking and decompression
    /// see garbage.
    #[test]
    fn random_records_in_a_valid_frame_never_panic(
        codec in 0i16..8,
        count in prop_oneof![1i32..4, any::<i32>()],
        payload in proptest::collection::vec(any::<u8>(), 0..400),
        prefix in proptest::option::of(compression()),
    ) {
        let mut body = payload;
        // Sometimes start the payload with a codec's real header / magic.
        if let Some(c) = prefix {
            let real = build(c, 0, &[Input { timestamp: 0, key: None, value: Some(vec![1; 30]), headers: vec![] }]);
            let keep = (real.len() - BATCH_HEADER_BYTES).min(20);
            let mut p = real[BATCH_HEADER_BYTES..BATCH_HEADER_BYTES + keep].to_vec();
            p.extend_from_slice(&body);
            body = p;
        }
        let mut batch = BatchBuilder::new(Compression::None).build(0);
        batch.extend_from_slice(&body);
        let bl = (batch.len() - 12) as i32;
        batch[8..12].copy_from_slice(&bl.to_be_bytes());
        batch[layout::ATTRIBUTES_AT..layout::ATTRIBUTES_AT + 2].copy_from_slice(&codec.to_be_bytes());
        batch[layout::LAST_OFFSET_DELTA_AT..layout::LAST_OFFSET_DELTA_AT + 4]
            .copy_from_slice(&count.wrapping_sub(1).to_be_bytes());
        batch[layout::RECORDS_COUNT_AT..layout::RECORDS_COUNT_AT + 4].copy_from_slice(&count.to_be_bytes());
        let crc = crc32c::crc32c(&batch[layout::ATTRIBUTES_AT..]);
        batch[layout::CRC_AT..layout::CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        exercise(&batch);
    }
}
