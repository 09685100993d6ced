//! Encoders for the request versions we decode whose layout kafka-protocol
//! 0.18 cannot write (`NEWER_LAYOUTS`): its structs already carry the newer
//! fields, but its encoders stop at the version before. The broker never
//! encodes requests; these serve [`Request::encode`] (clients, tests,
//! tools). Written from Kafka 4.3.1's schemas, field by field.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, OffsetCommitRequest, OffsetFetchRequest};
use kafka_protocol::protocol::Message;

use super::{Request, NEWER_LAYOUTS};
use crate::writer as w;

/// Whether `version` of `api_key` is one we decode with a layout
/// kafka-protocol cannot encode or decode (OffsetCommit and OffsetFetch
/// v10); [`Request::encode`] writes those itself.
pub fn is_newer_layout(api_key: i16, version: i16) -> bool {
    let first = if api_key == ApiKey::OffsetCommit as i16 {
        OffsetCommitRequest::VERSIONS.max + 1
    } else if api_key == ApiKey::OffsetFetch as i16 {
        OffsetFetchRequest::VERSIONS.max + 1
    } else {
        return false;
    };
    version >= first
        && NEWER_LAYOUTS
            .iter()
            .any(|(key, newest)| *key as i16 == api_key && version <= *newest)
}

/// Writes `req` at `version` if that version has a newer layout we know how
/// to write (`None` otherwise: kafka-protocol encodes it, or refuses to).
pub(crate) fn encode(req: &Request, version: i16, out: &mut BytesMut) -> Option<()> {
    if !is_newer_layout(req.api_key(), version) {
        return None;
    }
    match req {
        Request::OffsetCommit(m) if version == 10 => offset_commit_v10(m, out),
        Request::OffsetFetch(m) if version == 10 => offset_fetch_v10(m, out),
        _ => return None,
    }
    Some(())
}

/// OffsetCommit v10: v9 with each topic named by its id instead of its name.
fn offset_commit_v10(m: &OffsetCommitRequest, out: &mut BytesMut) {
    let flex = true;
    w::put_str(out, &m.group_id, flex);
    out.put_i32(m.generation_id_or_member_epoch);
    w::put_str(out, &m.member_id, flex);
    w::put_nullable_str(out, m.group_instance_id.as_deref(), flex);
    w::put_array(out, &m.topics, flex, |out, t| {
        out.put_slice(t.topic_id.as_bytes());
        w::put_array(out, &t.partitions, flex, |out, p| {
            out.put_i32(p.partition_index);
            out.put_i64(p.committed_offset);
            out.put_i32(p.committed_leader_epoch);
            w::put_nullable_str(out, p.committed_metadata.as_deref(), flex);
            w::put_tagged_fields(out, w::TaggedFields::default(), &p.unknown_tagged_fields);
        });
        w::put_tagged_fields(out, w::TaggedFields::default(), &t.unknown_tagged_fields);
    });
    w::put_tagged_fields(out, w::TaggedFields::default(), &m.unknown_tagged_fields);
}

/// OffsetFetch v10: v9 with each topic named by its id instead of its name.
fn offset_fetch_v10(m: &OffsetFetchRequest, out: &mut BytesMut) {
    let flex = true;
    w::put_array(out, &m.groups, flex, |out, g| {
        w::put_str(out, &g.group_id, flex);
        w::put_nullable_str(out, g.member_id.as_deref(), flex);
        out.put_i32(g.member_epoch);
        w::put_nullable_array(out, g.topics.as_deref(), flex, |out, t| {
            out.put_slice(t.topic_id.as_bytes());
            w::put_array(out, &t.partition_indexes, flex, |out, p| out.put_i32(*p));
            w::put_tagged_fields(out, w::TaggedFields::default(), &t.unknown_tagged_fields);
        });
        w::put_tagged_fields(out, w::TaggedFields::default(), &g.unknown_tagged_fields);
    });
    out.put_u8(u8::from(m.require_stable));
    w::put_tagged_fields(out, w::TaggedFields::default(), &m.unknown_tagged_fields);
}
