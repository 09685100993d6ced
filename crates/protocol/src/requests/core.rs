//! ApiVersions, Metadata, Produce, Fetch, ListOffsets.

use kafka_protocol::messages::api_versions_request::ApiVersionsRequest;
use kafka_protocol::messages::fetch_request::{
    FetchPartition, FetchRequest, FetchTopic, ForgottenTopic, ReplicaState,
};
use kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use kafka_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
use kafka_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use kafka_protocol::messages::{BrokerId, TopicName, TransactionalId};

use super::Version;
use crate::reader::{DecodeError, Reader};

/// Bytes an element takes at least: `classic` in classic versions,
/// `flexible` in flexible ones.
pub(crate) fn min_bytes(v: Version, classic: usize, flexible: usize) -> usize {
    if v.flexible {
        flexible
    } else {
        classic
    }
}

/// Reads the trailing tagged-field section of a struct when `v` is flexible.
pub(crate) fn tags(
    r: &mut Reader,
    v: Version,
    field: &'static str,
    out: &mut std::collections::BTreeMap<i32, bytes::Bytes>,
) -> Result<(), DecodeError> {
    if v.flexible {
        *out = r.unknown_tagged_fields(field)?;
    }
    Ok(())
}

pub(crate) fn api_versions(r: &mut Reader, v: Version) -> Result<ApiVersionsRequest, DecodeError> {
    let mut m = ApiVersionsRequest::default();
    if v.v >= 3 {
        m.client_software_name = r.compact_string("client_software_name")?;
        m.client_software_version = r.compact_string("client_software_version")?;
    }
    tags(
        r,
        v,
        "ApiVersions.tagged_fields",
        &mut m.unknown_tagged_fields,
    )?;
    Ok(m)
}

pub(crate) fn metadata(r: &mut Reader, v: Version) -> Result<MetadataRequest, DecodeError> {
    let mut m = MetadataRequest::default();
    let topic_min = if v.v >= 10 { 18 } else { 2 };
    m.topics = r.nullable_array_v("Metadata.topics", v.flexible, topic_min, |r| {
        let mut t = MetadataRequestTopic::default();
        if v.v >= 10 {
            t.topic_id = r.uuid("Metadata.topics.topic_id")?;
        }
        t.name = r
            .nullable_str_v("Metadata.topics.name", v.flexible)?
            .map(TopicName);
        tags(
            r,
            v,
            "Metadata.topics.tagged_fields",
            &mut t.unknown_tagged_fields,
        )?;
        Ok(t)
    })?;
    if v.v >= 4 {
        m.allow_auto_topic_creation = r.bool("allow_auto_topic_creation")?;
    }
    if (8..=10).contains(&v.v) {
        m.include_cluster_authorized_operations =
            r.bool("include_cluster_authorized_operations")?;
    }
    if v.v >= 8 {
        m.include_topic_authorized_operations = r.bool("include_topic_authorized_operations")?;
    }
    tags(r, v, "Metadata.tagged_fields", &mut m.unknown_tagged_fields)?;
    Ok(m)
}

pub(crate) fn produce(r: &mut Reader, v: Version) -> Result<ProduceRequest, DecodeError> {
    let mut m = ProduceRequest::default();
    m.transactional_id = r
        .nullable_str_v("Produce.transactional_id", v.flexible)?
        .map(TransactionalId);
    m.acks = r.i16("Produce.acks")?;
    m.timeout_ms = r.i32("Produce.timeout_ms")?;
    let topic_min = if v.v >= 13 { 18 } else { min_bytes(v, 6, 3) };
    m.topic_data = r.array_v("Produce.topic_data", v.flexible, topic_min, |r| {
        let mut t = TopicProduceData::default();
        if v.v <= 12 {
            t.name = TopicName(r.str_v("Produce.topic_data.name", v.flexible)?);
        }
        if v.v >= 13 {
            t.topic_id = r.uuid("Produce.topic_data.topic_id")?;
        }
        t.partition_data = r.array_v(
            "Produce.topic_data.partition_data",
            v.flexible,
            min_bytes(v, 8, 6),
            |r| {
                let mut p = PartitionProduceData::default();
                p.index = r.i32("Produce.partition_data.index")?;
                p.records = r.nullable_bytes_v("Produce.partition_data.records", v.flexible)?;
                tags(
                    r,
                    v,
                    "Produce.partition_data.tagged_fields",
                    &mut p.unknown_tagged_fields,
                )?;
                Ok(p)
            },
        )?;
        tags(
            r,
            v,
            "Produce.topic_data.tagged_fields",
            &mut t.unknown_tagged_fields,
        )?;
        Ok(t)
    })?;
    tags(r, v, "Produce.tagged_fields", &mut m.unknown_tagged_fields)?;
    Ok(m)
}

fn replica_state(r: &mut Reader, v: Version) -> Result<ReplicaState, DecodeError> {
    let mut s = ReplicaState::default();
    if v.v >= 15 {
        s.replica_id = BrokerId(r.i32("Fetch.replica_state.replica_id")?);
        s.replica_epoch = r.i64("Fetch.replica_state.replica_epoch")?;
    }
    tags(
        r,
        v,
        "Fetch.replica_state.tagged_fields",
        &mut s.unknown_tagged_fields,
    )?;
    Ok(s)
}

fn fetch_partition(r: &mut Reader, v: Version) -> Result<FetchPartition, DecodeError> {
    let mut p = FetchPartition::default();
    p.partition = r.i32("Fetch.partitions.partition")?;
    if v.v >= 9 {
        p.current_leader_epoch = r.i32("Fetch.partitions.current_leader_epoch")?;
    }
    p.fetch_offset = r.i64("Fetch.partitions.fetch_offset")?;
    if v.v >= 12 {
        p.last_fetched_epoch = r.i32("Fetch.partitions.last_fetched_epoch")?;
    }
    if v.v >= 5 {
        p.log_start_offset = r.i64("Fetch.partitions.log_start_offset")?;
    }
    p.partition_max_bytes = r.i32("Fetch.partitions.partition_max_bytes")?;
    if v.flexible {
        let mut directory_id = None;
        let mut high_watermark = None;
        p.unknown_tagged_fields =
            r.tagged_fields("Fetch.partitions.tagged_fields", |tag, sub| {
                match tag {
                    0 if v.v >= 17 => {
                        directory_id = Some(sub.uuid("Fetch.partitions.replica_directory_id")?)
                    }
                    1 if v.v >= 18 => {
                        high_watermark = Some(sub.i64("Fetch.partitions.high_watermark")?)
                    }
                    _ => return Ok(false),
                }
                Ok(true)
            })?;
        if let Some(d) = directory_id {
            p.replica_directory_id = d;
        }
        if let Some(h) = high_watermark {
            p.high_watermark = h;
        }
    }
    Ok(p)
}

pub(crate) fn fetch(r: &mut Reader, v: Version) -> Result<FetchRequest, DecodeError> {
    let mut m = FetchRequest::default();
    if v.v <= 14 {
        m.replica_id = BrokerId(r.i32("Fetch.replica_id")?);
    }
    m.max_wait_ms = r.i32("Fetch.max_wait_ms")?;
    m.min_bytes = r.i32("Fetch.min_bytes")?;
    m.max_bytes = r.i32("Fetch.max_bytes")?;
    m.isolation_level = r.i8("Fetch.isolation_level")?;
    if v.v >= 7 {
        m.session_id = r.i32("Fetch.session_id")?;
        m.session_epoch = r.i32("Fetch.session_epoch")?;
    }
    let topic_min = if v.v >= 13 { 18 } else { min_bytes(v, 6, 3) };
    m.topics = r.array_v("Fetch.topics", v.flexible, topic_min, |r| {
        let mut t = FetchTopic::default();
        if v.v <= 12 {
            t.topic = TopicName(r.str_v("Fetch.topics.topic", v.flexible)?);
        }
        if v.v >= 13 {
            t.topic_id = r.uuid("Fetch.topics.topic_id")?;
        }
        t.partitions = r.array_v("Fetch.topics.partitions", v.flexible, 16, |r| {
            fetch_partition(r, v)
        })?;
        tags(
            r,
            v,
            "Fetch.topics.tagged_fields",
            &mut t.unknown_tagged_fields,
        )?;
        Ok(t)
    })?;
    if v.v >= 7 {
        m.forgotten_topics_data =
            r.array_v("Fetch.forgotten_topics_data", v.flexible, topic_min, |r| {
                let mut t = ForgottenTopic::default();
                if v.v <= 12 {
                    t.topic = TopicName(r.str_v("Fetch.forgotten_topics_data.topic", v.flexible)?);
                }
                if v.v >= 13 {
                    t.topic_id = r.uuid("Fetch.forgotten_topics_data.topic_id")?;
                }
                t.partitions = r.array_v(
                    "Fetch.forgotten_topics_data.partitions",
                    v.flexible,
                    4,
                    |r| r.i32("Fetch.forgotten_topics_data.partitions"),
                )?;
                tags(
                    r,
                    v,
                    "Fetch.forgotten_topics_data.tagged_fields",
                    &mut t.unknown_tagged_fields,
                )?;
                Ok(t)
            })?;
    }
    if v.v >= 11 {
        m.rack_id = r.str_v("Fetch.rack_id", v.flexible)?;
    }
    if v.flexible {
        let mut cluster_id = None;
        let mut state = None;
        m.unknown_tagged_fields = r.tagged_fields("Fetch.tagged_fields", |tag, sub| {
            match tag {
                0 => cluster_id = sub.compact_nullable_string("Fetch.cluster_id")?,
                1 if v.v >= 15 => state = Some(replica_state(sub, v)?),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        m.cluster_id = cluster_id;
        if let Some(s) = state {
            m.replica_state = s;
        }
    }
    Ok(m)
}

pub(crate) fn list_offsets(r: &mut Reader, v: Version) -> Result<ListOffsetsRequest, DecodeError> {
    let mut m = ListOffsetsRequest::default();
    m.replica_id = BrokerId(r.i32("ListOffsets.replica_id")?);
    if v.v >= 2 {
        m.isolation_level = r.i8("ListOffsets.isolation_level")?;
    }
    m.topics = r.array_v("ListOffsets.topics", v.flexible, min_bytes(v, 6, 3), |r| {
        let mut t = ListOffsetsTopic::default();
        t.name = TopicName(r.str_v("ListOffsets.topics.name", v.flexible)?);
        t.partitions = r.array_v("ListOffsets.topics.partitions", v.flexible, 12, |r| {
            let mut p = ListOffsetsPartition::default();
            p.partition_index = r.i32("ListOffsets.partitions.partition_index")?;
            if v.v >= 4 {
                p.current_leader_epoch = r.i32("ListOffsets.partitions.current_leader_epoch")?;
            }
            p.timestamp = r.i64("ListOffsets.partitions.timestamp")?;
            tags(
                r,
                v,
                "ListOffsets.partitions.tagged_fields",
                &mut p.unknown_tagged_fields,
            )?;
            Ok(p)
        })?;
        tags(
            r,
            v,
            "ListOffsets.topics.tagged_fields",
            &mut t.unknown_tagged_fields,
        )?;
        Ok(t)
    })?;
    if v.v >= 10 {
        m.timeout_ms = r.i32("ListOffsets.timeout_ms")?;
    }
    tags(
        r,
        v,
        "ListOffsets.tagged_fields",
        &mut m.unknown_tagged_fields,
    )?;
    Ok(m)
}
