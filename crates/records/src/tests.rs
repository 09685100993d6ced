//! Unit tests on hand-built batches with known bytes.

use super::*;

/// Bit-at-a-time CRC32C (Castagnoli, reflected polynomial 0x82F63B78), to
/// check the crate's hardware CRC independently.
fn crc32c_reference(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn fix_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[layout::ATTRIBUTES_AT..]);
    batch[layout::CRC_AT..layout::CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Uncompressed, base offset 5, one record at t=1000 with key "k", value "v".
fn hand_built() -> Vec<u8> {
    let records: &[u8] = &[
        0x10, // record length 8 (zig-zag)
        0x00, // attributes
        0x00, // timestamp delta 0
        0x00, // offset delta 0
        0x02, b'k', // key length 1, key
        0x02, b'v', // value length 1, value
        0x00, // header count 0
    ];
    let mut b = Vec::new();
    b.extend_from_slice(&5i64.to_be_bytes()); // base offset
    b.extend_from_slice(&(49 + records.len() as i32).to_be_bytes()); // batch length
    b.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    b.push(2); // magic
    b.extend_from_slice(&[0, 0, 0, 0]); // crc placeholder
    b.extend_from_slice(&0i16.to_be_bytes()); // attributes
    b.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    b.extend_from_slice(&1000i64.to_be_bytes()); // base timestamp
    b.extend_from_slice(&1000i64.to_be_bytes()); // max timestamp
    b.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    b.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    b.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    b.extend_from_slice(&1i32.to_be_bytes()); // records count
    b.extend_from_slice(records);
    let crc = crc32c_reference(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

#[test]
fn reference_crc_matches_the_standard_check_value_and_the_crate() {
    assert_eq!(crc32c_reference(b"123456789"), 0xE306_9283);
    assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
}

#[test]
fn builder_output_equals_hand_built_bytes() {
    let built = BatchBuilder::new(Compression::None)
        .push(1000, Some(b"k".as_slice()), Some(b"v".as_slice()), &[])
        .build(5);
    assert_eq!(built, hand_built());
    assert_eq!(built.len(), 70);
}

#[test]
fn hand_built_batch_validates_and_decodes() {
    let b = hand_built();
    let h = validate_batch(&b).unwrap();
    assert_eq!(h.base_offset, 5);
    assert_eq!(h.batch_length, 58);
    assert_eq!(h.total_bytes(), 70);
    assert_eq!(h.last_offset(), 5);
    assert_eq!(h.next_offset(), 6);
    assert_eq!(h.records_count, 1);
    assert_eq!(h.crc, crc32c_reference(&b[21..]));
    assert_eq!(h.compression().unwrap(), Compression::None);
    assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
    assert!(!h.is_transactional() && !h.is_control() && !h.has_producer_id());
    assert_eq!(h.last_sequence(), -1);
    let recs = decode_records(&b).unwrap();
    assert_eq!(
        recs,
        vec![Record {
            offset: 5,
            timestamp: 1000,
            key: Some(bytes::Bytes::from_static(b"k")),
            value: Some(bytes::Bytes::from_static(b"v")),
            headers: vec![],
        }]
    );
}

#[test]
fn header_flags_and_producer_fields() {
    let b = BatchBuilder::new(Compression::Zstd)
        .producer(42, 3, i32::MAX - 1)
        .partition_leader_epoch(9)
        .transactional(true)
        .control(true)
        .push(1, None, None, &[])
        .push(2, None, None, &[])
        .push(3, None, None, &[])
        .build(100);
    let h = validate_batch(&b).unwrap();
    assert_eq!(h.compression().unwrap(), Compression::Zstd);
    assert!(h.is_transactional() && h.is_control() && h.has_producer_id());
    assert_eq!(
        (h.producer_id, h.producer_epoch, h.base_sequence),
        (42, 3, i32::MAX - 1)
    );
    assert_eq!(h.partition_leader_epoch, 9);
    assert_eq!(h.last_offset(), 102);
    assert_eq!(h.last_sequence(), 0, "sequence wraps past i32::MAX to 0");
    assert_eq!((h.base_timestamp, h.max_timestamp), (1, 3));
}

#[test]
fn header_parse_needs_61_bytes_and_magic_2() {
    let b = hand_built();
    assert!(matches!(
        BatchHeader::parse(&b[..60]),
        Err(RecordsError::Truncated {
            needed: 61,
            available: 60
        })
    ));
    assert!(BatchHeader::parse(&b[..61]).is_ok());
    let mut m = b.clone();
    m[16] = 1;
    assert!(matches!(
        BatchHeader::parse(&m),
        Err(RecordsError::BadMagic(1))
    ));
    let mut l = b.clone();
    l[8..12].copy_from_slice(&48i32.to_be_bytes());
    assert!(matches!(
        BatchHeader::parse(&l),
        Err(RecordsError::BadBatchLength {
            batch_length: 48,
            ..
        })
    ));
}

#[test]
fn validate_rejects_each_broken_field() {
    let good = hand_built();

    let mut crc = good.clone();
    crc[17] ^= 1;
    assert!(matches!(
        validate_batch(&crc),
        Err(RecordsError::CrcMismatch { .. })
    ));

    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(
        validate_batch(&trailing),
        Err(RecordsError::BadBatchLength { .. })
    ));

    let mut short = good.clone();
    short[8..12].copy_from_slice(&100i32.to_be_bytes());
    assert!(matches!(
        validate_batch(&short),
        Err(RecordsError::Truncated {
            needed: 112,
            available: 70
        })
    ));

    let mut codec = good.clone();
    codec[22] = 5;
    fix_crc(&mut codec);
    assert!(matches!(
        validate_batch(&codec),
        Err(RecordsError::UnsupportedCompression(5))
    ));

    let mut lod = good.clone();
    lod[23..27].copy_from_slice(&1i32.to_be_bytes());
    fix_crc(&mut lod);
    assert!(matches!(
        validate_batch(&lod),
        Err(RecordsError::InvalidBatch(_))
    ));

    let mut count = good.clone();
    count[57..61].copy_from_slice(&2i32.to_be_bytes());
    count[23..27].copy_from_slice(&1i32.to_be_bytes());
    fix_crc(&mut count);
    let e = validate_batch(&count).unwrap_err();
    assert!(matches!(e, RecordsError::InvalidRecord(_)), "{e}");
    assert!(e.is_invalid_record() && e.is_corrupt());

    let empty = BatchBuilder::new(Compression::None).build(0);
    assert!(matches!(
        validate_batch(&empty),
        Err(RecordsError::InvalidBatch(_))
    ));

    let txn = BatchBuilder::new(Compression::None)
        .transactional(true)
        .push(0, None, None, &[])
        .build(0);
    assert!(matches!(
        validate_batch(&txn),
        Err(RecordsError::InvalidBatch(_))
    ));
}

/// Replaces the records region of the hand-built batch and fixes lengths and CRC.
fn with_records(records: &[u8], count: i32) -> Vec<u8> {
    let mut b = hand_built()[..61].to_vec();
    b.extend_from_slice(records);
    let bl = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&bl.to_be_bytes());
    b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
    b[57..61].copy_from_slice(&count.to_be_bytes());
    fix_crc(&mut b);
    b
}

#[test]
fn validate_walks_record_framing() {
    let ok = with_records(&[0x10, 0, 0, 0, 0x02, b'k', 0x02, b'v', 0], 1);
    assert!(validate_batch(&ok).is_ok());
    let cases: &[(&str, &[u8], i32)] = &[
        ("key length -2", &[0x0c, 0, 0, 0, 0x03, 0x02, b'v', 0], 1),
        (
            "length too short for fields",
            &[0x0e, 0, 0, 0, 0x02, b'k', 0x02, b'v', 0],
            1,
        ),
        (
            "length longer than fields",
            &[0x12, 0, 0, 0, 0x02, b'k', 0x02, b'v', 0, 0],
            1,
        ),
        ("negative record length", &[0x01, 0, 0, 0, 0x01, 0x01, 0], 1),
        (
            "offset delta 1 for first record",
            &[0x0c, 0, 0, 0x02, 0x01, 0x01, 0],
            1,
        ),
        (
            "header count beyond bytes",
            &[0x0c, 0, 0, 0, 0x01, 0x01, 0x7e],
            1,
        ),
        (
            "negative header count",
            &[0x0c, 0, 0, 0, 0x01, 0x01, 0x01],
            1,
        ),
        (
            "negative header key",
            &[0x10, 0, 0, 0, 0x01, 0x01, 0x02, 0x01, 0x01],
            1,
        ),
        (
            "header value runs past end",
            &[0x10, 0, 0, 0, 0x01, 0x01, 0x02, 0x00, 0x04],
            1,
        ),
        ("unfinished varint", &[0x0c, 0, 0, 0, 0x01, 0x01, 0x80], 1),
        (
            "trailing byte after records",
            &[0x0c, 0, 0, 0, 0x01, 0x01, 0, 0],
            1,
        ),
        (
            "two records, second repeats delta 0",
            &[0x0c, 0, 0, 0, 1, 1, 0, 0x0c, 0, 0, 0, 1, 1, 0],
            2,
        ),
        ("fewer records than count", &[0x0c, 0, 0, 0, 1, 1, 0], 2),
    ];
    for (what, recs, count) in cases {
        let b = with_records(recs, *count);
        let e = validate_batch(&b).expect_err(what);
        assert!(e.is_invalid_record(), "{what}: {e}");
        assert!(decode_records(&b).is_err(), "{what}");
    }
    // Null key, null value, a header with a null value: fine.
    let nulls = with_records(&[0x12, 0, 0, 0, 0x01, 0x01, 0x02, 0x02, b'h', 0x01], 1);
    let recs = decode_records(&nulls).unwrap();
    assert_eq!(recs[0].key, None);
    assert_eq!(recs[0].headers, vec![("h".to_string(), None)]);
}

#[test]
fn setters_rewrite_fields_and_keep_the_crc_valid() {
    let mut b = BatchBuilder::new(Compression::Gzip)
        .push(10, Some(b"a".as_slice()), None, &[])
        .push(30, Some(b"b".as_slice()), None, &[])
        .push(20, Some(b"c".as_slice()), None, &[])
        .build(0);
    set_base_offset(&mut b, 1_000);
    set_partition_leader_epoch(&mut b, 7);
    let h = validate_batch(&b).unwrap();
    assert_eq!(
        (h.base_offset, h.partition_leader_epoch, h.max_timestamp),
        (1_000, 7, 30)
    );
    let offsets: Vec<i64> = decode_records(&b)
        .unwrap()
        .iter()
        .map(|r| r.offset)
        .collect();
    assert_eq!(offsets, vec![1_000, 1_001, 1_002]);

    set_log_append_time(&mut b, 5_000);
    let h = validate_batch(&b).unwrap();
    assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!((h.base_timestamp, h.max_timestamp), (10, 5_000));
    assert!(decode_records(&b)
        .unwrap()
        .iter()
        .all(|r| r.timestamp == 5_000));

    set_create_time_max_timestamp(&mut b, 30);
    let h = validate_batch(&b).unwrap();
    assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
    let ts: Vec<i64> = decode_records(&b)
        .unwrap()
        .iter()
        .map(|r| r.timestamp)
        .collect();
    assert_eq!(ts, vec![10, 30, 20]);
}

#[test]
fn deep_validation_reports_max_timestamp_and_opens_compressed_batches() {
    let b = BatchBuilder::new(Compression::Lz4)
        .push(50, None, Some(b"x".as_slice()), &[])
        .push(70, None, Some(b"y".as_slice()), &[])
        .push(60, None, Some(b"z".as_slice()), &[])
        .build(0);
    let (_, max_ts) = validate_batch_deep(&b, 1 << 20).unwrap();
    assert_eq!(max_ts, 70);

    // A compressed batch whose inner records disagree with the header count:
    // the shallow check passes, the deep one does not.
    let mut lie = b.clone();
    lie[57..61].copy_from_slice(&4i32.to_be_bytes());
    lie[23..27].copy_from_slice(&3i32.to_be_bytes());
    fix_crc(&mut lie);
    assert!(validate_batch(&lie).is_ok());
    assert!(validate_batch_deep(&lie, 1 << 20)
        .unwrap_err()
        .is_invalid_record());
}

#[test]
fn raw_snappy_batches_from_librdkafka_decode() {
    let plain = BatchBuilder::new(Compression::None)
        .push(
            1,
            Some(b"key".as_slice()),
            Some(b"value".as_slice()),
            &[("h", Some(b"v".as_slice()))],
        )
        .push(2, None, Some(b"value2".as_slice()), &[])
        .build(0);
    let raw = snap::raw::Encoder::new()
        .compress_vec(&plain[61..])
        .unwrap();
    let mut b = plain[..61].to_vec();
    b.extend_from_slice(&raw);
    let bl = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&bl.to_be_bytes());
    b[22] = Compression::Snappy.id() as u8;
    fix_crc(&mut b);
    validate_batch(&b).unwrap();
    assert_eq!(decode_records(&b).unwrap(), decode_records(&plain).unwrap());
}

#[test]
fn decompression_is_bounded() {
    let big = vec![0u8; 100_000];
    let b = BatchBuilder::new(Compression::Zstd)
        .push(0, None, Some(&big), &[])
        .build(0);
    assert!(b.len() < 1_000);
    assert!(matches!(
        decode_records_bounded(&b, 50_000),
        Err(RecordsError::TooLarge {
            limit_bytes: 50_000
        })
    ));
    assert!(!RecordsError::TooLarge { limit_bytes: 1 }.is_corrupt());
    assert_eq!(
        decode_records(&b).unwrap()[0].value.as_deref(),
        Some(&big[..])
    );
}

#[test]
fn batches_iterates_concatenations_and_stops_at_damage() {
    let a = BatchBuilder::new(Compression::None)
        .push(1, None, None, &[])
        .build(0);
    let b = BatchBuilder::new(Compression::Snappy)
        .push(2, None, None, &[])
        .push(3, None, None, &[])
        .build(1);
    let mut buf = a.clone();
    buf.extend_from_slice(&b);
    let items: Vec<_> = batches(&buf).collect::<Result<_, _>>().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].1, 0..a.len());
    assert_eq!(items[1].1, a.len()..buf.len());
    assert_eq!(items[1].0.base_offset, 1);
    assert_eq!(batches(&[]).count(), 0);

    // A truncated tail: one good batch, then an error, then nothing.
    let cut = &buf[..buf.len() - 3];
    let mut it = batches(cut);
    assert!(it.next().unwrap().is_ok());
    assert!(matches!(
        it.next(),
        Some(Err(RecordsError::Truncated { .. }))
    ));
    assert_eq!(it.position(), a.len());
    assert!(it.next().is_none());

    // Only a few bytes of the second batch's log overhead.
    let mut it = batches(&buf[..a.len() + 5]);
    assert!(it.next().unwrap().is_ok());
    assert!(matches!(
        it.next(),
        Some(Err(RecordsError::Truncated {
            needed: 12,
            available: 5
        }))
    ));
}

// ---- filter_batch (compaction) ----

fn four_records(compression: Compression) -> Vec<u8> {
    let mut b = BatchBuilder::new(compression)
        .producer(77, 3, 40)
        .partition_leader_epoch(9);
    for (i, value) in [Some(&b"a"[..]), Some(b"b"), None, Some(b"d")]
        .iter()
        .enumerate()
    {
        let key = format!("k{i}");
        b.push(
            1_000 + i as i64 * 10,
            Some(key.as_bytes()),
            *value,
            &[("h", Some(b"x"))],
        );
    }
    b.build(500)
}

#[test]
fn filter_batch_keeps_offsets_producer_fields_and_codec() {
    for compression in [
        Compression::None,
        Compression::Gzip,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let batch = four_records(compression);
        let original = validate_batch(&batch).unwrap();
        let f = filter_batch(&batch, 1 << 20, None, |r| {
            r.offset == 501 || r.offset == 503
        })
        .unwrap();
        assert_eq!((f.records_read, f.records_retained), (4, 2));
        let h = validate_stored_batch(&f.batch).unwrap();
        assert!(
            validate_batch(&f.batch).is_err(),
            "records count no longer matches the offsets"
        );
        assert_eq!(h.base_offset, 500);
        assert_eq!(h.last_offset_delta, original.last_offset_delta);
        assert_eq!(h.records_count, 2);
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (77, 3, 40)
        );
        assert_eq!(h.partition_leader_epoch, 9);
        assert_eq!(h.compression().unwrap(), compression);
        assert_eq!(h.base_timestamp, 1_010, "the first kept record's timestamp");
        assert_eq!(h.max_timestamp, 1_030);
        let kept = decode_records(&f.batch).unwrap();
        let all = decode_records(&batch).unwrap();
        assert_eq!(kept, vec![all[1].clone(), all[3].clone()]);
    }
}

#[test]
fn filter_batch_stamps_a_delete_horizon_on_a_kept_tombstone() {
    let batch = four_records(Compression::Snappy);
    let f = filter_batch(&batch, 1 << 20, Some(99_000), |r| r.offset >= 502).unwrap();
    assert!(f.retains_tombstone);
    let h = validate_stored_batch(&f.batch).unwrap();
    assert!(h.has_delete_horizon());
    assert_eq!(h.base_timestamp, 99_000);
    let all = decode_records(&batch).unwrap();
    assert_eq!(
        decode_records(&f.batch).unwrap(),
        all[2..].to_vec(),
        "timestamps kept"
    );
    // A batch that already has a horizon keeps it.
    let again = filter_batch(&f.batch, 1 << 20, Some(5), |r| r.offset == 502).unwrap();
    assert_eq!(
        BatchHeader::parse(&again.batch).unwrap().base_timestamp,
        99_000
    );
}

#[test]
fn filter_batch_that_keeps_nothing_leaves_an_empty_batch() {
    let batch = four_records(Compression::Lz4);
    let f = filter_batch(&batch, 1 << 20, None, |_| false).unwrap();
    assert_eq!(f.records_retained, 0);
    let h = validate_stored_batch(&f.batch).unwrap();
    assert_eq!(
        (h.records_count, h.base_offset, h.last_offset()),
        (0, 500, 503)
    );
    assert_eq!(h.compression().unwrap(), Compression::None);
    assert_eq!(
        h.last_sequence(),
        43,
        "the producer's last sequence survives"
    );
    assert!(decode_records(&f.batch).unwrap().is_empty());
    assert_eq!(f.batch.len(), BATCH_HEADER_BYTES);
}
