//! Transaction markers: the control batches a transaction coordinator writes
//! into every partition of a transaction when it commits or aborts (Kafka's
//! `EndTransactionMarker`, KIP-98).
//!
//! A marker batch is transactional and control (attributes 0x30), carries
//! the producer id and epoch of the transaction, base sequence -1, and one
//! record whose key is `int16 version (0), int16 type` (0 = abort, 1 =
//! commit) and whose value is `int16 version (0), int32 coordinator epoch`.
//! Readers accept newer value versions (the fields they know come first).

use crate::{decode_records, BatchBuilder, BatchHeader, Compression, RecordsError};

/// Kafka's `ControlRecordType` ids of the two transaction markers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MarkerType {
    Abort,
    Commit,
}

impl MarkerType {
    pub fn id(self) -> i16 {
        match self {
            MarkerType::Abort => 0,
            MarkerType::Commit => 1,
        }
    }
}

/// A decoded transaction marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndTxnMarker {
    pub marker: MarkerType,
    pub coordinator_epoch: i32,
}

/// The control record key version we write and read.
const CONTROL_KEY_VERSION: i16 = 0;
/// The marker value version we write.
const MARKER_VALUE_VERSION: i16 = 0;

/// Encode a marker batch at `base_offset` (the log assigns the real offset).
pub fn end_txn_marker_batch(
    base_offset: i64,
    timestamp_ms: i64,
    partition_leader_epoch: i32,
    producer_id: i64,
    producer_epoch: i16,
    marker: EndTxnMarker,
) -> Vec<u8> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&CONTROL_KEY_VERSION.to_be_bytes());
    key.extend_from_slice(&marker.marker.id().to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&MARKER_VALUE_VERSION.to_be_bytes());
    value.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    let mut b = BatchBuilder::new(Compression::None)
        .producer(producer_id, producer_epoch, -1)
        .partition_leader_epoch(partition_leader_epoch)
        .transactional(true)
        .control(true);
    b.push(timestamp_ms, Some(&key), Some(&value), &[]);
    b.build(base_offset)
}

/// The marker in a control batch (validate the batch first). `Ok(None)` for
/// a batch that is not a transactional control batch or whose control record
/// is of another type (KRaft's control records share the framing).
pub fn parse_end_txn_marker(
    header: &BatchHeader,
    batch: &[u8],
) -> Result<Option<EndTxnMarker>, RecordsError> {
    if !header.is_control() || !header.is_transactional() {
        return Ok(None);
    }
    let records = decode_records(batch)?;
    let [record] = records.as_slice() else {
        return Err(RecordsError::InvalidRecord(format!(
            "a control batch holds one record, not {}",
            records.len()
        )));
    };
    let bad = |what: &str| RecordsError::InvalidRecord(format!("transaction marker: {what}"));
    let key = record.key.as_deref().ok_or_else(|| bad("no key"))?;
    let [k0, k1, t0, t1] = key else {
        return Err(bad("key is not 4 bytes"));
    };
    if i16::from_be_bytes([*k0, *k1]) != CONTROL_KEY_VERSION {
        return Err(bad("unknown key version"));
    }
    let marker = match i16::from_be_bytes([*t0, *t1]) {
        0 => MarkerType::Abort,
        1 => MarkerType::Commit,
        _ => return Ok(None),
    };
    let value = record.value.as_deref().ok_or_else(|| bad("no value"))?;
    if value.len() < 6 || i16::from_be_bytes([value[0], value[1]]) < 0 {
        return Err(bad("value too short or negative version"));
    }
    let coordinator_epoch = i32::from_be_bytes([value[2], value[3], value[4], value[5]]);
    Ok(Some(EndTxnMarker {
        marker,
        coordinator_epoch,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate_batch;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // Printed by Kafka 4.3.1's `MemoryRecords.withEndTransactionMarker`
    // (offset 5, timestamp 1234, leader epoch 2, producer 1000 epoch 3,
    // COMMIT, coordinator epoch 7; and offset 0, timestamp 99, leader epoch
    // -1, producer 1000 epoch 0, ABORT, coordinator epoch 0).
    const KAFKA_COMMIT: &str = "00000000000000050000004200000002020869fecb00300000000000000000000004d200000000000004d200000000000003e80003ffffffff000000012000000008000000010c00000000000700";
    const KAFKA_ABORT: &str = "000000000000000000000042ffffffff02ca1b6a2c0030000000000000000000000063000000000000006300000000000003e80000ffffffff000000012000000008000000000c00000000000000";

    #[test]
    fn marker_batches_match_kafka() {
        let commit = end_txn_marker_batch(
            5,
            1234,
            2,
            1000,
            3,
            EndTxnMarker {
                marker: MarkerType::Commit,
                coordinator_epoch: 7,
            },
        );
        assert_eq!(commit, hex(KAFKA_COMMIT));
        let abort = end_txn_marker_batch(
            0,
            99,
            -1,
            1000,
            0,
            EndTxnMarker {
                marker: MarkerType::Abort,
                coordinator_epoch: 0,
            },
        );
        assert_eq!(abort, hex(KAFKA_ABORT));
    }

    #[test]
    fn kafka_markers_parse() {
        for (bytes, want) in [
            (KAFKA_COMMIT, (MarkerType::Commit, 7)),
            (KAFKA_ABORT, (MarkerType::Abort, 0)),
        ] {
            let b = hex(bytes);
            let h = validate_batch(&b).unwrap();
            assert!(h.is_control() && h.is_transactional());
            let m = parse_end_txn_marker(&h, &b).unwrap().unwrap();
            assert_eq!((m.marker, m.coordinator_epoch), want);
        }
    }

    #[test]
    fn data_batches_and_other_control_types_are_not_markers() {
        let mut data = BatchBuilder::new(Compression::None)
            .producer(1, 0, 0)
            .transactional(true);
        data.push(0, Some(b"k"), Some(b"v"), &[]);
        let b = data.build(0);
        let h = validate_batch(&b).unwrap();
        assert_eq!(parse_end_txn_marker(&h, &b).unwrap(), None);
        // A KRaft-style control record (type 2, leader change) in a transactional control batch.
        let mut other = BatchBuilder::new(Compression::None)
            .producer(1, 0, -1)
            .transactional(true)
            .control(true);
        other.push(0, Some(&[0, 0, 0, 2]), Some(&[0, 0]), &[]);
        let b = other.build(0);
        let h = validate_batch(&b).unwrap();
        assert_eq!(parse_end_txn_marker(&h, &b).unwrap(), None);
        // A marker with a short key is invalid, not a panic.
        let mut short = BatchBuilder::new(Compression::None)
            .producer(1, 0, -1)
            .transactional(true)
            .control(true);
        short.push(0, Some(&[0, 0, 1]), Some(&[0, 0, 0, 0, 0, 0]), &[]);
        let b = short.build(0);
        let h = validate_batch(&b).unwrap();
        assert!(parse_end_txn_marker(&h, &b).is_err());
    }
}
