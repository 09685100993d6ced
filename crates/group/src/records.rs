//! Keys and values of the `__consumer_offsets` topic, in Apache Kafka's
//! on-disk layouts (so Kafka's tools can read the topic and compaction by key
//! keeps the latest state of every offset and group).
//!
//! Every key starts with an int16 version that names the record type:
//! 0 and 1 are offset commits (group, topic, partition), 2 is group metadata
//! (group). Values start with their own int16 version. Strings are an int16
//! length and UTF-8 bytes (-1 = null), byte arrays an int32 length. We write
//! offset commit value v3 and group metadata value v3; we read v0..=v3 of both.
//!
//! Decoding is bounded: these bytes come back from disk at start-up and may be
//! corrupt, so every length is checked against the bytes remaining before
//! anything is allocated, and nothing here panics.

use bytes::Bytes;
use fjord_model::limits::GROUP_MEMBERS_MAX;

use crate::RecordError;

/// Key version of an offset commit written by Kafka's oldest format.
pub const OFFSET_COMMIT_KEY_V0: i16 = 0;
/// Key version of an offset commit (what we write).
pub const OFFSET_COMMIT_KEY_V1: i16 = 1;
/// Key version of group metadata.
pub const GROUP_METADATA_KEY_V2: i16 = 2;
/// Offset commit value version we write.
pub const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
/// Group metadata value version we write.
pub const GROUP_METADATA_VALUE_VERSION: i16 = 3;

/// A decoded `__consumer_offsets` key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
}

/// Offset commit value (v3 layout when written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    /// -1 when unknown.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// One member in a group metadata value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// Group metadata value (v3 layout when written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// -1 when unknown (values before v2).
    pub current_state_timestamp_ms: i64,
    pub members: Vec<MemberValue>,
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
/// Strings longer than i16::MAX cannot be represented; callers validate
/// lengths on input (group ids, topic names and metadata are all bounded far
/// below), and we cut rather than write a corrupt record.
fn put_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let len = bytes.len().min(i16::MAX as usize);
    put_i16(out, len as i16);
    out.extend_from_slice(&bytes[..len]);
}
fn put_nullable_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_str(out, s),
        None => put_i16(out, -1),
    }
}
fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let len = b.len().min(i32::MAX as usize);
    put_i32(out, len as i32);
    out.extend_from_slice(&b[..len]);
}

/// Key of an offset commit (key version 1).
pub fn encode_offset_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 2 + group.len() + 2 + topic.len() + 4);
    put_i16(&mut out, OFFSET_COMMIT_KEY_V1);
    put_str(&mut out, group);
    put_str(&mut out, topic);
    put_i32(&mut out, partition);
    out
}

/// Key of a group's metadata (key version 2).
pub fn encode_group_key(group: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 2 + group.len());
    put_i16(&mut out, GROUP_METADATA_KEY_V2);
    put_str(&mut out, group);
    out
}

/// Offset commit value, version 3.
pub fn encode_offset_value(v: &OffsetValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 8 + 4 + 2 + v.metadata.len() + 8);
    put_i16(&mut out, OFFSET_COMMIT_VALUE_VERSION);
    put_i64(&mut out, v.offset);
    put_i32(&mut out, v.leader_epoch);
    put_str(&mut out, &v.metadata);
    put_i64(&mut out, v.commit_timestamp_ms);
    out
}

/// Group metadata value, version 3.
pub fn encode_group_value(v: &GroupValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    put_i16(&mut out, GROUP_METADATA_VALUE_VERSION);
    put_str(&mut out, &v.protocol_type);
    put_i32(&mut out, v.generation);
    put_nullable_str(&mut out, v.protocol.as_deref());
    put_nullable_str(&mut out, v.leader.as_deref());
    put_i64(&mut out, v.current_state_timestamp_ms);
    put_i32(&mut out, v.members.len().min(i32::MAX as usize) as i32);
    for m in &v.members {
        put_str(&mut out, &m.member_id);
        put_nullable_str(&mut out, m.group_instance_id.as_deref());
        put_str(&mut out, &m.client_id);
        put_str(&mut out, &m.client_host);
        put_i32(&mut out, m.rebalance_timeout_ms);
        put_i32(&mut out, m.session_timeout_ms);
        put_bytes(&mut out, &m.subscription);
        put_bytes(&mut out, &m.assignment);
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
    fn nullable_str(&mut self, field: &'static str) -> Result<Option<String>, RecordError> {
        let len = self.i16(field)?;
        if len < 0 {
            if len == -1 {
                return Ok(None);
            }
            return Err(RecordError::BadLength {
                field,
                len: len as i64,
            });
        }
        let raw = self.take(len as usize, field)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(Some(s.to_owned())),
            Err(_) => Err(RecordError::Utf8 { field }),
        }
    }
    fn str(&mut self, field: &'static str) -> Result<String, RecordError> {
        match self.nullable_str(field)? {
            Some(s) => Ok(s),
            None => Err(RecordError::BadLength { field, len: -1 }),
        }
    }
    fn bytes(&mut self, field: &'static str) -> Result<Bytes, RecordError> {
        let len = self.i32(field)?;
        if len < 0 {
            // Kafka's `bytes` fields here are not nullable; read null as empty.
            if len == -1 {
                return Ok(Bytes::new());
            }
            return Err(RecordError::BadLength {
                field,
                len: len as i64,
            });
        }
        let raw = self.take(len as usize, field)?;
        Ok(Bytes::copy_from_slice(raw))
    }
}

/// Decode a `__consumer_offsets` key.
pub fn decode_key(key: &[u8]) -> Result<RecordKey, RecordError> {
    let mut c = Cursor { buf: key };
    let version = c.i16("key version")?;
    match version {
        OFFSET_COMMIT_KEY_V0 | OFFSET_COMMIT_KEY_V1 => Ok(RecordKey::Offset {
            group: c.str("group")?,
            topic: c.str("topic")?,
            partition: c.i32("partition")?,
        }),
        GROUP_METADATA_KEY_V2 => Ok(RecordKey::Group {
            group: c.str("group")?,
        }),
        v => Err(RecordError::UnknownKeyVersion(v)),
    }
}

/// Decode an offset commit value (versions 0..=3).
pub fn decode_offset_value(value: &[u8]) -> Result<OffsetValue, RecordError> {
    let mut c = Cursor { buf: value };
    let version = c.i16("offset value version")?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::UnknownValueVersion {
            kind: "offset commit",
            version,
        });
    }
    let offset = c.i64("offset")?;
    let leader_epoch = if version >= 3 {
        c.i32("leader epoch")?
    } else {
        -1
    };
    let metadata = c.str("metadata")?;
    let commit_timestamp_ms = c.i64("commit timestamp")?;
    if version == 1 {
        // expire timestamp: no longer used (KIP-211), skipped.
        c.i64("expire timestamp")?;
    }
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
    })
}

/// Fewest bytes a member takes in a group metadata value of any version.
const MEMBER_BYTES_MIN: usize = 2 + 2 + 2 + 4 + 4 + 4;

/// Decode a group metadata value (versions 0..=3).
pub fn decode_group_value(value: &[u8]) -> Result<GroupValue, RecordError> {
    let mut c = Cursor { buf: value };
    let version = c.i16("group value version")?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::UnknownValueVersion {
            kind: "group metadata",
            version,
        });
    }
    let protocol_type = c.str("protocol type")?;
    let generation = c.i32("generation")?;
    let protocol = c.nullable_str("protocol")?;
    let leader = c.nullable_str("leader")?;
    let current_state_timestamp_ms = if version >= 2 {
        c.i64("current state timestamp")?
    } else {
        -1
    };
    let count = c.i32("member count")?;
    if count < 0
        || count as usize > GROUP_MEMBERS_MAX
        || (count as usize).saturating_mul(MEMBER_BYTES_MIN) > c.buf.len()
    {
        return Err(RecordError::BadLength {
            field: "member count",
            len: count as i64,
        });
    }
    let mut members = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let member_id = c.str("member id")?;
        let group_instance_id = if version >= 3 {
            c.nullable_str("group instance id")?
        } else {
            None
        };
        let client_id = c.str("client id")?;
        let client_host = c.str("client host")?;
        let session_timeout_ms;
        let rebalance_timeout_ms;
        if version >= 1 {
            rebalance_timeout_ms = c.i32("rebalance timeout")?;
            session_timeout_ms = c.i32("session timeout")?;
        } else {
            session_timeout_ms = c.i32("session timeout")?;
            rebalance_timeout_ms = session_timeout_ms;
        }
        let subscription = c.bytes("subscription")?;
        let assignment = c.bytes("assignment")?;
        members.push(MemberValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp_ms,
        members,
    })
}

/// Topics named in a consumer-protocol subscription (`ConsumerProtocolSubscription`,
/// any version: int16 version, then an array of topic names). `None` when the
/// bytes are not a subscription we can read.
pub fn subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut c = Cursor { buf: metadata };
    let _version = c.i16("subscription version").ok()?;
    let count = c.i32("topic count").ok()?;
    if count < 0 || (count as usize).saturating_mul(2) > c.buf.len() {
        return None;
    }
    let mut topics = Vec::with_capacity(count as usize);
    for _ in 0..count {
        topics.push(c.str("topic").ok()?);
    }
    Some(topics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn offset_key_layout_matches_kafka() {
        // version 1, "g", "t", partition 7
        let k = encode_offset_key("g", "t", 7);
        assert_eq!(k, vec![0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 7]);
        assert_eq!(
            decode_key(&k).unwrap(),
            RecordKey::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 7
            }
        );
        let g = encode_group_key("grp");
        assert_eq!(g, vec![0, 2, 0, 3, b'g', b'r', b'p']);
        assert_eq!(
            decode_key(&g).unwrap(),
            RecordKey::Group {
                group: "grp".into()
            }
        );
    }

    #[test]
    fn offset_value_layout_matches_kafka() {
        let v = OffsetValue {
            offset: 42,
            leader_epoch: -1,
            metadata: "m".into(),
            commit_timestamp_ms: 5,
        };
        let b = encode_offset_value(&v);
        let mut want = vec![0, 3];
        want.extend_from_slice(&42i64.to_be_bytes());
        want.extend_from_slice(&(-1i32).to_be_bytes());
        want.extend_from_slice(&[0, 1, b'm']);
        want.extend_from_slice(&5i64.to_be_bytes());
        assert_eq!(b, want);
        assert_eq!(decode_offset_value(&b).unwrap(), v);
    }

    #[test]
    fn old_offset_value_versions_decode() {
        // v1: offset, metadata, commit ts, expire ts
        let mut b = vec![0, 1];
        b.extend_from_slice(&9i64.to_be_bytes());
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&3i64.to_be_bytes());
        b.extend_from_slice(&4i64.to_be_bytes());
        let v = decode_offset_value(&b).unwrap();
        assert_eq!(
            (v.offset, v.leader_epoch, v.commit_timestamp_ms),
            (9, -1, 3)
        );
    }

    #[test]
    fn huge_member_count_is_rejected_without_allocating() {
        let mut b = vec![0, 3, 0, 0];
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            decode_group_value(&b),
            Err(RecordError::BadLength { .. })
        ));
    }

    #[test]
    fn subscription_topics_read() {
        let mut b = vec![0, 1, 0, 0, 0, 2, 0, 1, b'a', 0, 2, b'b', b'c'];
        b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]); // user data null
        assert_eq!(
            subscription_topics(&b),
            Some(vec!["a".to_string(), "bc".to_string()])
        );
        assert_eq!(subscription_topics(&[0, 1, 0x7f, 0, 0, 0]), None);
    }

    fn arb_member() -> impl Strategy<Value = MemberValue> {
        (
            "[a-z0-9-]{0,20}",
            proptest::option::of("[a-z]{1,8}"),
            "[a-z]{0,8}",
            "[a-z./0-9]{0,12}",
            any::<i32>(),
            any::<i32>(),
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(m, i, c, h, r, s, sub, asg)| MemberValue {
                member_id: m,
                group_instance_id: i,
                client_id: c,
                client_host: h,
                rebalance_timeout_ms: r,
                session_timeout_ms: s,
                subscription: Bytes::from(sub),
                assignment: Bytes::from(asg),
            })
    }

    proptest! {
        #[test]
        fn group_value_round_trips(
            pt in "[a-z]{0,10}",
            generation in any::<i32>(),
            protocol in proptest::option::of("[a-z]{1,10}"),
            leader in proptest::option::of("[a-z0-9-]{1,10}"),
            ts in any::<i64>(),
            members in proptest::collection::vec(arb_member(), 0..5),
        ) {
            let v = GroupValue { protocol_type: pt, generation, protocol, leader,
                current_state_timestamp_ms: ts, members };
            prop_assert_eq!(decode_group_value(&encode_group_value(&v)).unwrap(), v);
        }

        #[test]
        fn offset_value_round_trips(offset in any::<i64>(), epoch in any::<i32>(),
                                    md in ".{0,30}", ts in any::<i64>()) {
            let v = OffsetValue { offset, leader_epoch: epoch, metadata: md, commit_timestamp_ms: ts };
            prop_assert_eq!(decode_offset_value(&encode_offset_value(&v)).unwrap(), v);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_key(&bytes);
            let _ = decode_offset_value(&bytes);
            let _ = decode_group_value(&bytes);
            let _ = subscription_topics(&bytes);
        }

        #[test]
        fn truncated_values_are_errors(members in proptest::collection::vec(arb_member(), 1..3), cut in 1usize..30) {
            let v = GroupValue { protocol_type: "consumer".into(), generation: 1, protocol: Some("range".into()),
                leader: None, current_state_timestamp_ms: 0, members };
            let b = encode_group_value(&v);
            let cut = cut.min(b.len());
            prop_assert!(decode_group_value(&b[..b.len() - cut]).is_err());
        }
    }
}
