//! Keys and values of the `__transaction_state` topic, in Apache Kafka's
//! on-disk layouts (`TransactionLogKey` / `TransactionLogValue`), so Kafka's
//! tools can read the topic and compaction by key keeps each transactional
//! id's latest state.
//!
//! A key is an int16 record type (0, the transaction log) and the
//! transactional id as an int16-length string. A value is an int16 version
//! and then the fields. Version 0 is what a broker writes while the
//! `transaction.version` feature is not finalized (TV0/TV1 clients): int16 /
//! int32 lengths. Version 1 (written from `transaction.version` 1) is the
//! flexible layout: compact (unsigned varint, length + 1) strings and arrays,
//! and tagged fields (0: previous producer id, 1: next producer id, 2: client
//! transaction version); a tagged field holding its default is left out, as
//! Kafka's generated writers do. We write the version the finalized
//! `transaction.version` asks for ([`value_version_for`]) and read both.
//!
//! The partition list is null in an `Empty` value, as Kafka writes it.
//!
//! Decoding is bounded: these bytes come back from disk at start-up and may be
//! corrupt, so every count is checked against the bytes remaining (and against
//! [`TRANSACTION_PARTITIONS_MAX`]) before anything is allocated, and nothing
//! here panics.

use fjord_model::limits::TRANSACTION_PARTITIONS_MAX;
use fjord_model::{ProducerEpoch, ProducerId};

use crate::{RecordError, TxnState};

/// The record type in a `__transaction_state` key (Kafka's
/// `CoordinatorRecordType.TRANSACTION_LOG`).
pub const TRANSACTION_LOG_KEY_TYPE: i16 = 0;
/// The value version written while `transaction.version` is not finalized.
pub const VALUE_VERSION_WRITTEN: i16 = 0;
/// The flexible value version (`transaction.version` >= 1).
pub const VALUE_VERSION_FLEXIBLE: i16 = 1;

/// A decoded `__transaction_state` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnLogValue {
    pub producer_id: ProducerId,
    /// -1 when none (only version 1 carries it).
    pub previous_producer_id: ProducerId,
    /// -1 when none (only version 1 carries it).
    pub next_producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// (topic, partitions), grouped by topic; empty for an `Empty` state.
    pub partitions: Vec<(String, Vec<i32>)>,
    pub last_update_ms: i64,
    pub start_ms: i64,
    /// The client's transaction version (version 1 only; 0 otherwise).
    pub client_transaction_version: i16,
}

// ---------------------------------------------------------------- encoding

fn put_i16(out: &mut Vec<u8>, v: i16) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_be_bytes());
}
/// Callers bound transactional ids and topic names far below i16::MAX
/// ([`fjord_model::limits::TRANSACTIONAL_ID_BYTES_MAX`], topic names at 249);
/// the assertion keeps a corrupt record from ever being written.
fn put_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    assert!(
        bytes.len() <= i16::MAX as usize,
        "string too long for an int16 length"
    );
    put_i16(out, bytes.len() as i16);
    out.extend_from_slice(bytes);
}

/// The key of a transactional id's state.
pub fn encode_key(transactional_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 2 + transactional_id.len());
    put_i16(&mut out, TRANSACTION_LOG_KEY_TYPE);
    put_str(&mut out, transactional_id);
    out
}

/// The value version a broker writes at finalized `transaction.version`
/// `level` (Kafka's `TransactionVersion.transactionLogValueVersion`).
pub fn value_version_for(level: i16) -> i16 {
    if level >= 1 {
        VALUE_VERSION_FLEXIBLE
    } else {
        VALUE_VERSION_WRITTEN
    }
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_compact_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    assert!(bytes.len() < u32::MAX as usize, "string too long");
    put_uvarint(out, bytes.len() as u32 + 1);
    out.extend_from_slice(bytes);
}

/// A value, version 0 (Kafka's layout when `transaction.version` is not finalized).
pub fn encode_value(v: &TxnLogValue) -> Vec<u8> {
    encode_value_version(v, VALUE_VERSION_WRITTEN)
}

/// A value in `version` (0, or 1: flexible with tagged fields).
pub fn encode_value_version(v: &TxnLogValue, version: i16) -> Vec<u8> {
    assert!(
        v.state != TxnState::Empty || v.partitions.is_empty(),
        "an Empty transaction has no partitions"
    );
    assert!(version == VALUE_VERSION_WRITTEN || version == VALUE_VERSION_FLEXIBLE);
    if version == VALUE_VERSION_FLEXIBLE {
        return encode_value_flexible(v);
    }
    let mut out = Vec::with_capacity(64);
    put_i16(&mut out, VALUE_VERSION_WRITTEN);
    put_i64(&mut out, v.producer_id.0);
    put_i16(&mut out, v.producer_epoch.0);
    put_i32(&mut out, v.timeout_ms);
    out.push(v.state.id() as u8);
    if v.state == TxnState::Empty {
        put_i32(&mut out, -1);
    } else {
        assert!(v.partitions.len() <= TRANSACTION_PARTITIONS_MAX);
        put_i32(&mut out, v.partitions.len() as i32);
        for (topic, partitions) in &v.partitions {
            put_str(&mut out, topic);
            assert!(partitions.len() <= TRANSACTION_PARTITIONS_MAX);
            put_i32(&mut out, partitions.len() as i32);
            for p in partitions {
                put_i32(&mut out, *p);
            }
        }
    }
    put_i64(&mut out, v.last_update_ms);
    put_i64(&mut out, v.start_ms);
    out
}

/// Version 1: compact arrays and strings, tagged fields in tag order (0:
/// previous producer id, 1: next producer id, 2: client transaction version),
/// each only when it differs from its default.
fn encode_value_flexible(v: &TxnLogValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    put_i16(&mut out, VALUE_VERSION_FLEXIBLE);
    put_i64(&mut out, v.producer_id.0);
    put_i16(&mut out, v.producer_epoch.0);
    put_i32(&mut out, v.timeout_ms);
    out.push(v.state.id() as u8);
    if v.state == TxnState::Empty {
        put_uvarint(&mut out, 0); // null
    } else {
        assert!(v.partitions.len() <= TRANSACTION_PARTITIONS_MAX);
        put_uvarint(&mut out, v.partitions.len() as u32 + 1);
        for (topic, partitions) in &v.partitions {
            put_compact_str(&mut out, topic);
            assert!(partitions.len() <= TRANSACTION_PARTITIONS_MAX);
            put_uvarint(&mut out, partitions.len() as u32 + 1);
            for p in partitions {
                put_i32(&mut out, *p);
            }
            put_uvarint(&mut out, 0); // no tagged fields
        }
    }
    put_i64(&mut out, v.last_update_ms);
    put_i64(&mut out, v.start_ms);
    let mut tagged: Vec<(u32, Vec<u8>)> = Vec::new();
    if v.previous_producer_id.0 != -1 {
        tagged.push((0, v.previous_producer_id.0.to_be_bytes().to_vec()));
    }
    if v.next_producer_id.0 != -1 {
        tagged.push((1, v.next_producer_id.0.to_be_bytes().to_vec()));
    }
    if v.client_transaction_version != 0 {
        tagged.push((2, v.client_transaction_version.to_be_bytes().to_vec()));
    }
    put_uvarint(&mut out, tagged.len() as u32);
    for (tag, data) in tagged {
        put_uvarint(&mut out, tag);
        put_uvarint(&mut out, data.len() as u32);
        out.extend_from_slice(&data);
    }
    out
}

// ---------------------------------------------------------------- decoding

struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], RecordError> {
        if self.buf.len() < n {
            return Err(RecordError::Truncated { field });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn i8(&mut self, field: &'static str) -> Result<i8, RecordError> {
        Ok(self.take(1, field)?[0] as i8)
    }
    fn i16(&mut self, field: &'static str) -> Result<i16, RecordError> {
        let b = self.take(2, field)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self, field: &'static str) -> Result<i32, RecordError> {
        let b = self.take(4, field)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self, field: &'static str) -> Result<i64, RecordError> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    fn uvarint(&mut self, field: &'static str) -> Result<u32, RecordError> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let b = self.take(1, field)?[0];
            value |= ((b & 0x7f) as u32) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RecordError::BadLength { field, len: -1 })
    }
    fn utf8(&mut self, len: usize, field: &'static str) -> Result<String, RecordError> {
        let raw = self.take(len, field)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(RecordError::Utf8 { field }),
        }
    }
    fn str(&mut self, field: &'static str) -> Result<String, RecordError> {
        let len = self.i16(field)?;
        if len < 0 {
            return Err(RecordError::BadLength {
                field,
                len: len as i64,
            });
        }
        self.utf8(len as usize, field)
    }
    fn compact_str(&mut self, field: &'static str) -> Result<String, RecordError> {
        let len_plus_one = self.uvarint(field)?;
        if len_plus_one == 0 {
            return Err(RecordError::BadLength { field, len: -1 });
        }
        self.utf8(len_plus_one as usize - 1, field)
    }
    /// A count of items of at least `item_bytes_min` bytes each: checked
    /// against the limit and the bytes left before anything is allocated.
    fn count(
        &mut self,
        n: i64,
        item_bytes_min: usize,
        field: &'static str,
    ) -> Result<usize, RecordError> {
        if n < 0
            || n as u64 > TRANSACTION_PARTITIONS_MAX as u64
            || (n as usize).saturating_mul(item_bytes_min) > self.buf.len()
        {
            return Err(RecordError::BadLength { field, len: n });
        }
        Ok(n as usize)
    }
    /// Skip a tagged-field section, keeping the tags we know.
    fn tagged(
        &mut self,
        mut known: impl FnMut(u32, &[u8]) -> Result<(), RecordError>,
    ) -> Result<(), RecordError> {
        let n = self.uvarint("tagged field count")?;
        let n = self.count(n as i64, 2, "tagged field count")?;
        for _ in 0..n {
            let tag = self.uvarint("tag")?;
            let len = self.uvarint("tagged field size")? as usize;
            let data = self.take(len, "tagged field")?;
            known(tag, data)?;
        }
        Ok(())
    }
}

/// Decode a key: the transactional id.
pub fn decode_key(key: &[u8]) -> Result<String, RecordError> {
    let mut c = Cursor { buf: key };
    let kind = c.i16("key type")?;
    if kind != TRANSACTION_LOG_KEY_TYPE {
        return Err(RecordError::UnknownKeyVersion(kind));
    }
    c.str("transactional id")
}

fn tagged_i64(data: &[u8], field: &'static str) -> Result<i64, RecordError> {
    Cursor { buf: data }.i64(field)
}

/// Decode a value (versions 0 and 1).
pub fn decode_value(value: &[u8]) -> Result<TxnLogValue, RecordError> {
    let mut c = Cursor { buf: value };
    let version = c.i16("value version")?;
    let flexible = match version {
        VALUE_VERSION_WRITTEN => false,
        VALUE_VERSION_FLEXIBLE => true,
        v => return Err(RecordError::UnknownValueVersion(v)),
    };
    let producer_id = ProducerId(c.i64("producer id")?);
    let producer_epoch = ProducerEpoch(c.i16("producer epoch")?);
    let timeout_ms = c.i32("transaction timeout")?;
    let status = c.i8("transaction status")?;
    let state = TxnState::from_id(status).ok_or(RecordError::UnknownState(status))?;
    // Smallest partition entry: an empty topic name and an empty id array.
    let raw_count: i64 = if flexible {
        c.uvarint("partition count")? as i64 - 1
    } else {
        c.i32("partition count")? as i64
    };
    let mut partitions = Vec::new();
    if raw_count >= 0 {
        let count = c.count(raw_count, if flexible { 3 } else { 6 }, "partition count")?;
        partitions.reserve(count);
        for _ in 0..count {
            let topic = if flexible {
                c.compact_str("topic")?
            } else {
                c.str("topic")?
            };
            let ids_raw: i64 = if flexible {
                c.uvarint("partition id count")? as i64 - 1
            } else {
                c.i32("partition id count")? as i64
            };
            let ids_count = c.count(ids_raw, 4, "partition id count")?;
            let mut ids = Vec::with_capacity(ids_count);
            for _ in 0..ids_count {
                ids.push(c.i32("partition id")?);
            }
            if flexible {
                c.tagged(|_, _| Ok(()))?;
            }
            partitions.push((topic, ids));
        }
    } else if raw_count != -1 {
        return Err(RecordError::BadLength {
            field: "partition count",
            len: raw_count,
        });
    }
    let last_update_ms = c.i64("last update timestamp")?;
    let start_ms = c.i64("start timestamp")?;
    let mut previous_producer_id = ProducerId(-1);
    let mut next_producer_id = ProducerId(-1);
    let mut client_transaction_version = 0;
    if flexible {
        c.tagged(|tag, data| {
            match tag {
                0 => previous_producer_id = ProducerId(tagged_i64(data, "previous producer id")?),
                1 => next_producer_id = ProducerId(tagged_i64(data, "next producer id")?),
                2 => {
                    client_transaction_version =
                        Cursor { buf: data }.i16("client transaction version")?
                }
                _ => {}
            }
            Ok(())
        })?;
    }
    if state == TxnState::Empty {
        // Kafka ignores partitions of an Empty state.
        partitions.clear();
    }
    Ok(TxnLogValue {
        producer_id,
        previous_producer_id,
        next_producer_id,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        last_update_ms,
        start_ms,
        client_transaction_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // The expected bytes below were printed by Kafka 4.3.1's own
    // `TransactionLog.keyToBytes` / `valueToBytes` (kafka-transaction-coordinator jar).

    #[test]
    fn key_matches_kafka() {
        assert_eq!(encode_key("tx"), hex("000000027478"));
        assert_eq!(decode_key(&hex("000000027478")).unwrap(), "tx");
        assert_eq!(
            decode_key(&hex("000100027478")),
            Err(RecordError::UnknownKeyVersion(1))
        );
    }

    #[test]
    fn ongoing_value_v0_matches_kafka() {
        let v = TxnLogValue {
            producer_id: ProducerId(7),
            previous_producer_id: ProducerId(-1),
            next_producer_id: ProducerId(-1),
            producer_epoch: ProducerEpoch(3),
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: vec![("t".into(), vec![1])],
            last_update_ms: 200,
            start_ms: 100,
            client_transaction_version: 0,
        };
        let kafka = hex("0000000000000000000700030000ea600100000001000174000000010000000100000000000000c80000000000000064");
        assert_eq!(encode_value(&v), kafka);
        assert_eq!(decode_value(&kafka).unwrap(), v);
    }

    #[test]
    fn empty_value_v0_matches_kafka() {
        let v = TxnLogValue {
            producer_id: ProducerId(7),
            previous_producer_id: ProducerId(-1),
            next_producer_id: ProducerId(-1),
            producer_epoch: ProducerEpoch(0),
            timeout_ms: 60_000,
            state: TxnState::Empty,
            partitions: vec![],
            last_update_ms: 200,
            start_ms: -1,
            client_transaction_version: 0,
        };
        let kafka =
            hex("0000000000000000000700000000ea6000ffffffff00000000000000c8ffffffffffffffff");
        assert_eq!(encode_value(&v), kafka);
        assert_eq!(decode_value(&kafka).unwrap(), v);
    }

    #[test]
    fn flexible_value_v1_from_kafka_decodes() {
        let kafka = hex("0001000000000000000700030000ea600202027402000000010000000000000000c8000000000000006403000800000000000000050108000000000000000902020002");
        let v = decode_value(&kafka).unwrap();
        assert_eq!(
            v,
            TxnLogValue {
                producer_id: ProducerId(7),
                previous_producer_id: ProducerId(5),
                next_producer_id: ProducerId(9),
                producer_epoch: ProducerEpoch(3),
                timeout_ms: 60_000,
                state: TxnState::PrepareCommit,
                partitions: vec![("t".into(), vec![1])],
                last_update_ms: 200,
                start_ms: 100,
                client_transaction_version: 2,
            }
        );
        // And we write it byte for byte as Kafka did.
        assert_eq!(encode_value_version(&v, VALUE_VERSION_FLEXIBLE), kafka);
    }

    #[test]
    fn flexible_value_leaves_out_defaults_and_writes_null_partitions_when_empty() {
        let v = TxnLogValue {
            producer_id: ProducerId(7),
            previous_producer_id: ProducerId(-1),
            next_producer_id: ProducerId(-1),
            producer_epoch: ProducerEpoch(0),
            timeout_ms: 60_000,
            state: TxnState::Empty,
            partitions: vec![],
            last_update_ms: 200,
            start_ms: -1,
            client_transaction_version: 0,
        };
        let b = encode_value_version(&v, VALUE_VERSION_FLEXIBLE);
        // version, id, epoch, timeout, state, null array, two timestamps, no tags.
        assert_eq!(
            b,
            hex("0001000000000000000700000000ea60000000000000000000c8ffffffffffffffff00")
        );
        assert_eq!(decode_value(&b).unwrap(), v);
        assert_eq!(value_version_for(0), VALUE_VERSION_WRITTEN);
        assert_eq!(value_version_for(2), VALUE_VERSION_FLEXIBLE);
    }

    #[test]
    fn huge_partition_count_is_rejected_without_allocating() {
        let mut b = hex("0000000000000000000700030000ea6001");
        b.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            decode_value(&b),
            Err(RecordError::BadLength { .. })
        ));
        let mut b = hex("0000000000000000000700030000ea6001");
        b.extend_from_slice(&(-2i32).to_be_bytes());
        assert!(matches!(
            decode_value(&b),
            Err(RecordError::BadLength { .. })
        ));
    }

    #[test]
    fn unknown_state_is_an_error() {
        let b = hex("0000000000000000000700030000ea6009ffffffff00000000000000c8ffffffffffffffff");
        assert_eq!(decode_value(&b), Err(RecordError::UnknownState(9)));
    }

    fn arb_state() -> impl Strategy<Value = TxnState> {
        prop_oneof![
            Just(TxnState::Empty),
            Just(TxnState::Ongoing),
            Just(TxnState::PrepareCommit),
            Just(TxnState::PrepareAbort),
            Just(TxnState::CompleteCommit),
            Just(TxnState::CompleteAbort),
        ]
    }

    proptest! {
        #[test]
        fn value_v0_round_trips(
            pid in any::<i64>(), epoch in any::<i16>(), timeout in any::<i32>(), state in arb_state(),
            parts in proptest::collection::vec(("[a-z._-]{1,20}", proptest::collection::vec(any::<i32>(), 0..5)), 0..5),
            last in any::<i64>(), start in any::<i64>(),
        ) {
            let partitions = if state == TxnState::Empty { vec![] } else { parts };
            let v = TxnLogValue { producer_id: ProducerId(pid), previous_producer_id: ProducerId(-1),
                next_producer_id: ProducerId(-1), producer_epoch: ProducerEpoch(epoch), timeout_ms: timeout,
                state, partitions, last_update_ms: last, start_ms: start, client_transaction_version: 0 };
            prop_assert_eq!(decode_value(&encode_value(&v)).unwrap(), v);
        }

        #[test]
        fn value_v1_round_trips(
            pid in any::<i64>(), prev in any::<i64>(), next in any::<i64>(), epoch in any::<i16>(),
            timeout in any::<i32>(), state in arb_state(),
            parts in proptest::collection::vec(("[a-z._-]{1,20}", proptest::collection::vec(any::<i32>(), 0..5)), 0..5),
            last in any::<i64>(), start in any::<i64>(), ctv in 0i16..3,
        ) {
            let partitions = if state == TxnState::Empty { vec![] } else { parts };
            let v = TxnLogValue { producer_id: ProducerId(pid), previous_producer_id: ProducerId(prev),
                next_producer_id: ProducerId(next), producer_epoch: ProducerEpoch(epoch), timeout_ms: timeout,
                state, partitions, last_update_ms: last, start_ms: start, client_transaction_version: ctv };
            prop_assert_eq!(decode_value(&encode_value_version(&v, VALUE_VERSION_FLEXIBLE)).unwrap(), v);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_key(&bytes);
            let _ = decode_value(&bytes);
        }

        #[test]
        fn truncated_values_are_errors(cut in 1usize..40) {
            let v = TxnLogValue { producer_id: ProducerId(1), previous_producer_id: ProducerId(-1),
                next_producer_id: ProducerId(-1), producer_epoch: ProducerEpoch(0), timeout_ms: 1,
                state: TxnState::Ongoing, partitions: vec![("a".into(), vec![0, 1])], last_update_ms: 0,
                start_ms: 0, client_transaction_version: 0 };
            let b = encode_value(&v);
            let cut = cut.min(b.len());
            prop_assert!(decode_value(&b[..b.len() - cut]).is_err());
        }
    }
}
