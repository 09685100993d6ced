//! InitProducerId, FindCoordinator and the consumer-group APIs.

use kafka_protocol::messages::delete_groups_request::DeleteGroupsRequest;
use kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::heartbeat_request::HeartbeatRequest;
use kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
use kafka_protocol::messages::join_group_request::{JoinGroupRequest, JoinGroupRequestProtocol};
use kafka_protocol::messages::leave_group_request::{LeaveGroupRequest, MemberIdentity};
use kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequest, OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequest, OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::{SyncGroupRequest, SyncGroupRequestAssignment};
use kafka_protocol::messages::{GroupId, ProducerId, TopicName, TransactionalId};
use kafka_protocol::protocol::StrBytes;

use super::core::{min_bytes, tags};
use super::Version;
use crate::reader::{DecodeError, Reader};

/// An array of strings (compact when flexible).
fn strings(r: &mut Reader, v: Version, field: &'static str) -> Result<Vec<StrBytes>, DecodeError> {
    r.array_v(field, v.flexible, min_bytes(v, 2, 1), |r| {
        r.str_v(field, v.flexible)
    })
}

fn group_id(r: &mut Reader, v: Version, field: &'static str) -> Result<GroupId, DecodeError> {
    r.str_v(field, v.flexible).map(GroupId)
}

pub(crate) fn init_producer_id(
    r: &mut Reader,
    v: Version,
) -> Result<InitProducerIdRequest, DecodeError> {
    let mut m = InitProducerIdRequest::default();
    m.transactional_id = r
        .nullable_str_v("InitProducerId.transactional_id", v.flexible)?
        .map(TransactionalId);
    m.transaction_timeout_ms = r.i32("InitProducerId.transaction_timeout_ms")?;
    if v.v >= 3 {
        m.producer_id = ProducerId(r.i64("InitProducerId.producer_id")?);
        m.producer_epoch = r.i16("InitProducerId.producer_epoch")?;
    }
    tags(
        r,
        v,
        "InitProducerId.tagged_fields",
        &mut m.unknown_tagged_fields,
    )?;
    Ok(m)
}

pub(crate) fn find_coordinator(
    r: &mut Reader,
    v: Version,
) -> Result<FindCoordinatorRequest, DecodeError> {
    let mut m = FindCoordinatorRequest::default();
    if v.v <= 3 {
        m.key = r.str_v("FindCoordinator.key", v.flexible)?;
    }
    if v.v >= 1 {
        m.key_type = r.i8("FindCoordinator.key_type")?;
    }
    if v.v >= 4 {
        m.coordinator_keys = strings(r, v, "FindCoordinator.coordinator_keys")?;
    }
    tags(
        r,
        v,
        "FindCoordinator.tagged_fields",
        &mut m.unknown_tagged_fields,
    )?;
    Ok(m)
}

pub(crate) fn join_group(r: &mut Reader, v: Version) -> Result<JoinGroupRequest, DecodeError> {
    let mut m = JoinGroupRequest::default();
    m.group_id = group_id(r, v, "JoinGroup.group_id")?;
    m.session_timeout_ms = r.i32("JoinGroup.session_timeout_ms")?;
    if v.v >= 1 {
        m.rebalance_timeout_ms = r.i32("JoinGroup.rebalance_timeout_ms")?;
    }
    m.member_id = r.str_v("JoinGroup.member_id", v.flexible)?;
    if v.v >= 5 {
        m.group_instance_id = r.nullable_str_v("JoinGroup.group_instance_id", v.flexible)?;
    }
    m.protocol_type = r.str_v("JoinGroup.protocol_type", v.flexible)?;
    m.protocols = r.array_v("JoinGroup.protocols", v.flexible, min_bytes(v, 6, 3), |r| {
        let mut p = JoinGroupRequestProtocol::default();
        p.name = r.str_v("JoinGroup.protocols.name", v.flexible)?;
        p.metadata = r.bytes_v("JoinGroup.protocols.metadata", v.flexible)?;
        tags(
            r,
            v,
            "JoinGroup.protocols.tagged_fields",
            &mut p.unknown_tagged_fields,
        )?;
        Ok(p)
    })?;
    if v.v >= 8 {
        m.reason = r.nullable_str_v("JoinGroup.reason", v.flexible)?;
    }
    tags(
        r,
        v,
        "JoinGroup.tagged_fields",
        &mut m.unknown_tagged_fields,
    )?;
    Ok(m)
}

pub(crate) fn sync_group(r: &mut Reader, v: Version) -> Result<SyncGroupRequest, DecodeError> {
    let mut m = SyncGroupRequest::default();
    m.group_id = group_id(r, v, "SyncGroup.group_id")?;
    m.generation_id = r.i32("SyncGroup.generation_id")?;
    m.member_id = r.str_v("SyncGroup.member_id", v.flexible)?;
    if v.v >= 3 {
        m.group_instance_id = r.nullable_str_v("SyncGroup.group_instance_id", v.flexible)?;
    }
    if v.v >= 5 {
        m.protocol_type = r.nullable_str_v("SyncGroup.protocol_type", v.flexible)?;
        m.protocol_name = r.nullable_str_v("SyncGroup.protocol_name", v.flexible)?;
    }
    m.assignments = r.array_v(
        "SyncGroup.assignments",
        v.flexible,
        min_bytes(v, 6, 3),
        |r| {
            let mut a = SyncGroupRequestAssignment::default();
            a.member_id = r.str_v("SyncGroup.assignments.member_id", v.flexible)?;
            a.assignment = r.bytes_v("SyncGroup.assignments.assignment", v.flexible)?;
            tags(
                r,
                v,
                "SyncGroup.assignments.tagged_fields",
                &mut a.unknown_tagged_fields,
            )?;
            Ok(a)
        },
    )?;
    tags(
        r,
        v,
        "SyncGroup.tagged_fields",
        &mut m.unknown_tagged_fields,
    )?;
    Ok(m)
}

pub(crate) fn heartbeat(r: &mut Reader, v: Version) -> Result<HeartbeatRequest, DecodeError> {
    let mut m = HeartbeatRequest::default();
    m.group_id = group_id(r, v, "Heartbeat.group_id")?;
    m.generation_id = r.i32("Heartbeat.generation_id")?;
    m.member_id = r.str_v("Heartbeat.member_id", v.flexible)?;
    if v.v >= 3 {
        m.group_instance_id = r.nullable_str_v("Heartbeat.group_instance_id", v.flexible)?;
    }
    tags(
        r,
        v,
        "Heartbeat.tagged_fields",
        &mut m.unknown_tagged_fields,
    )?;
    Ok(m)
}

pub(crate) fn leave_group(r: &mut Reader, v: Version) -> Result<LeaveGroupRequest, DecodeError> {
    let mut m = LeaveGroupRequest::default();
    m.group_id = group_id(r, v, "LeaveGroup.group_id")?;
    if v.v <= 2 {
        m.member_id = r.string("LeaveGroup.member_id")?;
    } else {
        m.members = r.array_v("LeaveGroup.members", v.flexible, min_bytes(v, 4, 3), |r| {
            let mut mi = MemberIdentity::default();
            mi.member_id = r.str_v("LeaveGroup.members.member_id", v.flexible)?;
            mi.group_instance_id =
                r.nullable_str_v("LeaveGroup.members.group_instance_id", v.flexible)?;
            if v.v >= 5 {
                mi.reason = r.nullable_str_v("LeaveGroup.members.reason", v.flexible)?;
            }
            tags(
                r,
                v,
                "LeaveGroup.members.tagged_fields",
                &mut mi.unknown_tagged_fields,
            )?;
            Ok(mi)
        })?;
    }
    tags(
        r,
        v,
        "LeaveGroup.tagged_fields",
        &mut m.unknown_tagged_fields,
    )?;
    Ok(m)
}

pub(crate) fn offset_commit(
    r: &mut Reader,
    v: Version,
) -> Result<OffsetCommitRequest, DecodeError> {
    let mut m = OffsetCommitRequest::default();
    m.group_id = group_id(r, v, "OffsetCommit.group_id")?;
    m.generation_id_or_member_epoch = r.i32("OffsetCommit.generation_id_or_member_epoch")?;
    m.member_id = r.str_v("OffsetCommit.member_id", v.flexible)?;
    if v.v >= 7 {
        m.group_instance_id = r.nullable_str_v("OffsetCommit.group_instance_id", v.flexible)?;
    }
    if v.v <= 4 {
        m.retention_time_ms = r.i64("OffsetCommit.retention_time_ms")?;
    }
    m.topics = r.array_v("OffsetCommit.topics", v.flexible, min_bytes(v, 6, 3), |r| {
        let mut t = OffsetCommitRequestTopic::default();
        t.name = TopicName(r.str_v("OffsetCommit.topics.name", v.flexible)?);
        t.partitions = r.array_v("OffsetCommit.topics.partitions", v.flexible, 14, |r| {
            let mut p = OffsetCommitRequestPartition::default();
            p.partition_index = r.i32("OffsetCommit.partitions.partition_index")?;
            p.committed_offset = r.i64("OffsetCommit.partitions.committed_offset")?;
            if v.v >= 6 {
                p.committed_leader_epoch =
                    r.i32("OffsetCommit.partitions.committed_leader_epoch")?;
            }
            p.committed_metadata =
                r.nullable_str_v("OffsetCommit.partitions.committed_metadata", v.flexible)?;
            tags(
                r,
                v,
                "OffsetCommit.partitions.tagged_fields",
                &mut p.unknown_tagged_fields,
            )?;
            Ok(p)
        })?;
        tags(
            r,
            v,
            "OffsetCommit.topics.tagged_fields",
            &mut t.unknown_tagged_fields,
        )?;
        Ok(t)
    })?;
    tags(
        r,
        v,
        "OffsetCommit.tagged_fields",
        &mut m.unknown_tagged_fields,
    )?;
    Ok(m)
}

fn partition_indexes(
    r: &mut Reader,
    v: Version,
    field: &'static str,
) -> Result<Vec<i32>, DecodeError> {
    r.array_v(field, v.flexible, 4, |r| r.i32(field))
}

pub(crate) fn offset_fetch(r: &mut Reader, v: Version) -> Result<OffsetFetchRequest, DecodeError> {
    let mut m = OffsetFetchRequest::default();
    if v.v <= 7 {
        m.group_id = group_id(r, v, "OffsetFetch.group_id")?;
        m.topics =
            r.nullable_array_v("OffsetFetch.topics", v.flexible, min_bytes(v, 6, 3), |r| {
                let mut t = OffsetFetchRequestTopic::default();
                t.name = TopicName(r.str_v("OffsetFetch.topics.name", v.flexible)?);
                t.partition_indexes =
                    partition_indexes(r, v, "OffsetFetch.topics.partition_indexes")?;
                tags(
                    r,
                    v,
                    "OffsetFetch.topics.tagged_fields",
                    &mut t.unknown_tagged_fields,
                )?;
                Ok(t)
            })?;
    } else {
        m.groups = r.array_v("OffsetFetch.groups", v.flexible, 3, |r| {
            let mut g = OffsetFetchRequestGroup::default();
            g.group_id = group_id(r, v, "OffsetFetch.groups.group_id")?;
            if v.v >= 9 {
                g.member_id = r.nullable_str_v("OffsetFetch.groups.member_id", v.flexible)?;
                g.member_epoch = r.i32("OffsetFetch.groups.member_epoch")?;
            }
            g.topics = r.nullable_array_v("OffsetFetch.groups.topics", v.flexible, 3, |r| {
                let mut t = OffsetFetchRequestTopics::default();
                t.name = TopicName(r.str_v("OffsetFetch.groups.topics.name", v.flexible)?);
                t.partition_indexes =
                    partition_indexes(r, v, "OffsetFetch.groups.topics.partition_indexes")?;
                tags(
                    r,
                    v,
                    "OffsetFetch.groups.topics.tagged_fields",
                    &mut t.unknown_tagged_fields,
                )?;
                Ok(t)
            })?;
            tags(
                r,
                v,
                "OffsetFetch.groups.tagged_fields",
                &mut g.unknown_tagged_fields,
            )?;
            Ok(g)
        })?;
    }
    if v.v >= 7 {
        m.require_stable = r.bool("OffsetFetch.require_stable")?;
    }
    tags(
        r,
        v,
        "OffsetFetch.tagged_fields",
        &mut m.unknown_tagged_fields,
    )?;
    Ok(m)
}

pub(crate) fn list_groups(r: &mut Reader, v: Version) -> Result<ListGroupsRequest, DecodeError> {
    let mut m = ListGroupsRequest::default();
    if v.v >= 4 {
        m.states_filter = strings(r, v, "ListGroups.states_filter")?;
    }
    if v.v >= 5 {
        m.types_filter = strings(r, v, "ListGroups.types_filter")?;
    }
    tags(
        r,
        v,
        "ListGroups.tagged_fields",
        &mut m.unknown_tagged_fields,
    )?;
    Ok(m)
}

pub(crate) fn describe_groups(
    r: &mut Reader,
    v: Version,
) -> Result<DescribeGroupsRequest, DecodeError> {
    let mut m = DescribeGroupsRequest::default();
    m.groups = strings(r, v, "DescribeGroups.groups")?
        .into_iter()
        .map(GroupId)
        .collect();
    if v.v >= 3 {
        m.include_authorized_operations = r.bool("DescribeGroups.include_authorized_operations")?;
    }
    tags(
        r,
        v,
        "DescribeGroups.tagged_fields",
        &mut m.unknown_tagged_fields,
    )?;
    Ok(m)
}

pub(crate) fn delete_groups(
    r: &mut Reader,
    v: Version,
) -> Result<DeleteGroupsRequest, DecodeError> {
    let mut m = DeleteGroupsRequest::default();
    m.groups_names = strings(r, v, "DeleteGroups.groups_names")?
        .into_iter()
        .map(GroupId)
        .collect();
    tags(
        r,
        v,
        "DeleteGroups.tagged_fields",
        &mut m.unknown_tagged_fields,
    )?;
    Ok(m)
}

pub(crate) fn offset_delete(
    r: &mut Reader,
    v: Version,
) -> Result<OffsetDeleteRequest, DecodeError> {
    let mut m = OffsetDeleteRequest::default();
    m.group_id = group_id(r, v, "OffsetDelete.group_id")?;
    m.topics = r.array_v("OffsetDelete.topics", v.flexible, 6, |r| {
        let mut t = OffsetDeleteRequestTopic::default();
        t.name = TopicName(r.str_v("OffsetDelete.topics.name", v.flexible)?);
        t.partitions = r.array_v("OffsetDelete.topics.partitions", v.flexible, 4, |r| {
            let mut p = OffsetDeleteRequestPartition::default();
            p.partition_index = r.i32("OffsetDelete.partitions.partition_index")?;
            Ok(p)
        })?;
        Ok(t)
    })?;
    Ok(m)
}
