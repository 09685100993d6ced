use bytes::Bytes;
use fjord_protocol::kafka_protocol::messages::delete_groups_request::DeleteGroupsRequest;
use fjord_protocol::kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use fjord_protocol::kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use fjord_protocol::kafka_protocol::messages::heartbeat_request::HeartbeatRequest;
use fjord_protocol::kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
use fjord_protocol::kafka_protocol::messages::join_group_request::{
    JoinGroupRequest, JoinGroupRequestProtocol,
};
use fjord_protocol::kafka_protocol::messages::leave_group_request::{
    LeaveGroupRequest, MemberIdentity,
};
use fjord_protocol::kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use fjord_protocol::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use fjord_protocol::kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequest, OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use fjord_protocol::kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequest, OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use fjord_protocol::kafka_protocol::messages::sync_group_request::{
    SyncGroupRequest, SyncGroupRequestAssignment,
};
use fjord_protocol::kafka_protocol::messages::{GroupId, ProducerId, TopicName, TransactionalId};
use uuid::Uuid;

use super::super::{extra_tags, s};

pub fn init_producer_id(v: i16) -> InitProducerIdRequest {
    let f = v >= 2;
    let mut m = InitProducerIdRequest::default()
        .with_transactional_id(if v % 2 == 0 {
            None
        } else {
            Some(TransactionalId(s("tx")))
        })
        .with_transaction_timeout_ms(60_000)
        .with_unknown_tagged_fields(extra_tags(f, 1));
    if v >= 3 {
        m = m.with_producer_id(ProducerId(42)).with_producer_epoch(3);
    }
    m
}

pub fn find_coordinator(v: i16) -> FindCoordinatorRequest {
    let f = v >= 3;
    let mut m = FindCoordinatorRequest::default().with_unknown_tagged_fields(extra_tags(f, 1));
    if v <= 3 {
        m = m.with_key(s("group-a"));
    }
    if v >= 1 {
        m = m.with_key_type(1);
    }
    if v >= 4 {
        m = m.with_coordinator_keys(vec![s("group-a"), s("group-b")]);
    }
    m
}

pub fn join_group(v: i16) -> JoinGroupRequest {
    let f = v >= 6;
    let mut m = JoinGroupRequest::default()
        .with_group_id(GroupId(s("group-a")))
        .with_session_timeout_ms(45_000)
        .with_member_id(s("member-1"))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(b"\x00\x01meta"))
                .with_unknown_tagged_fields(extra_tags(f, 1)),
            JoinGroupRequestProtocol::default().with_name(s("roundrobin")),
        ])
        .with_unknown_tagged_fields(extra_tags(f, 2));
    if v >= 1 {
        m = m.with_rebalance_timeout_ms(300_000);
    }
    if v >= 5 {
        m = m.with_group_instance_id(Some(s("instance-1")));
    }
    if v >= 8 {
        m = m.with_reason(Some(s("rebalance")));
    }
    m
}

pub fn sync_group(v: i16) -> SyncGroupRequest {
    let f = v >= 4;
    let mut m = SyncGroupRequest::default()
        .with_group_id(GroupId(s("group-a")))
        .with_generation_id(5)
        .with_member_id(s("member-1"))
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(s("member-1"))
            .with_assignment(Bytes::from_static(b"assign"))
            .with_unknown_tagged_fields(extra_tags(f, 1))])
        .with_unknown_tagged_fields(extra_tags(f, 2));
    if v >= 3 {
        m = m.with_group_instance_id(Some(s("instance-1")));
    }
    if v >= 5 {
        m = m
            .with_protocol_type(Some(s("consumer")))
            .with_protocol_name(None);
    }
    m
}

pub fn heartbeat(v: i16) -> HeartbeatRequest {
    let f = v >= 4;
    let mut m = HeartbeatRequest::default()
        .with_group_id(GroupId(s("group-a")))
        .with_generation_id(5)
        .with_member_id(s("member-1"))
        .with_unknown_tagged_fields(extra_tags(f, 1));
    if v >= 3 {
        m = m.with_group_instance_id(Some(s("instance-1")));
    }
    m
}

pub fn leave_group(v: i16) -> LeaveGroupRequest {
    let f = v >= 4;
    let m = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("group-a")))
        .with_unknown_tagged_fields(extra_tags(f, 1));
    if v <= 2 {
        return m.with_member_id(s("member-1"));
    }
    let mut a = MemberIdentity::default()
        .with_member_id(s("member-1"))
        .with_group_instance_id(Some(s("i-1")))
        .with_unknown_tagged_fields(extra_tags(f, 2));
    if v >= 5 {
        a = a.with_reason(Some(s("bye")));
    }
    m.with_members(vec![
        a,
        MemberIdentity::default().with_member_id(s("member-2")),
    ])
}

/// v10 names a topic by id (the name stays empty), older versions by name.
fn topic_name_or_id(t: OffsetCommitRequestTopic, by_id: bool) -> OffsetCommitRequestTopic {
    if by_id {
        t.with_topic_id(Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef))
    } else {
        t.with_name(TopicName(s("orders")))
    }
}

pub fn offset_commit(v: i16) -> OffsetCommitRequest {
    let f = v >= 8;
    let mut p = OffsetCommitRequestPartition::default()
        .with_partition_index(1)
        .with_committed_offset(77)
        .with_committed_metadata(Some(s("meta")))
        .with_unknown_tagged_fields(extra_tags(f, 1));
    if v >= 6 {
        p = p.with_committed_leader_epoch(4);
    }
    let mut m = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("group-a")))
        .with_generation_id_or_member_epoch(5)
        .with_member_id(s("member-1"))
        .with_topics(vec![topic_name_or_id(
            OffsetCommitRequestTopic::default(),
            v >= 10,
        )
        .with_partitions(vec![
            p,
            OffsetCommitRequestPartition::default().with_committed_metadata(None),
        ])
        .with_unknown_tagged_fields(extra_tags(f, 2))])
        .with_unknown_tagged_fields(extra_tags(f, 3));
    if v >= 7 {
        m = m.with_group_instance_id(Some(s("instance-1")));
    }
    if v <= 4 {
        m = m.with_retention_time_ms(86_400_000);
    }
    m
}

pub fn offset_fetch(v: i16) -> OffsetFetchRequest {
    let f = v >= 6;
    let mut m = OffsetFetchRequest::default().with_unknown_tagged_fields(extra_tags(f, 1));
    if v <= 7 {
        m = m
            .with_group_id(GroupId(s("group-a")))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(s("orders")))
                .with_partition_indexes(vec![0, 1, 2])
                .with_unknown_tagged_fields(extra_tags(f, 2))]));
    } else {
        let mut g = OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s("group-a")))
            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                .with_name(if v >= 10 {
                    TopicName::default()
                } else {
                    TopicName(s("orders"))
                })
                .with_topic_id(if v >= 10 {
                    Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef)
                } else {
                    Uuid::nil()
                })
                .with_partition_indexes(vec![3])
                .with_unknown_tagged_fields(extra_tags(f, 3))]))
            .with_unknown_tagged_fields(extra_tags(f, 4));
        if v >= 9 {
            g = g.with_member_id(Some(s("member-1"))).with_member_epoch(9);
        }
        m = m.with_groups(vec![
            g,
            OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s("group-b")))
                .with_topics(None),
        ]);
    }
    if v >= 7 {
        m = m.with_require_stable(true);
    }
    m
}

pub fn list_groups(v: i16) -> ListGroupsRequest {
    let mut m = ListGroupsRequest::default().with_unknown_tagged_fields(extra_tags(v >= 3, 1));
    if v >= 4 {
        m = m.with_states_filter(vec![s("Stable"), s("Empty")]);
    }
    if v >= 5 {
        m = m.with_types_filter(vec![s("classic")]);
    }
    m
}

pub fn describe_groups(v: i16) -> DescribeGroupsRequest {
    let mut m = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(s("group-a")), GroupId(s("group-b"))])
        .with_unknown_tagged_fields(extra_tags(v >= 5, 1));
    if v >= 3 {
        m = m.with_include_authorized_operations(true);
    }
    m
}

pub fn delete_groups(v: i16) -> DeleteGroupsRequest {
    DeleteGroupsRequest::default()
        .with_groups_names(vec![GroupId(s("group-a")), GroupId(s("g"))])
        .with_unknown_tagged_fields(extra_tags(v >= 2, 1))
}

pub fn offset_delete(_v: i16) -> OffsetDeleteRequest {
    OffsetDeleteRequest::default()
        .with_group_id(GroupId(s("group-a")))
        .with_topics(vec![OffsetDeleteRequestTopic::default()
            .with_name(TopicName(s("orders")))
            .with_partitions(vec![
                OffsetDeleteRequestPartition::default().with_partition_index(0),
                OffsetDeleteRequestPartition::default().with_partition_index(5),
            ])])
}
