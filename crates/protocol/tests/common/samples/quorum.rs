//! KRaft quorum and controller requests (Vote, BeginQuorumEpoch, EndQuorumEpoch,
//! AddRaftVoter, RemoveRaftVoter, BrokerRegistration, BrokerHeartbeat, AllocateProducerIds).

use fjord_protocol::kafka_protocol::messages::{
    add_raft_voter_request as arv, AddRaftVoterRequest, BrokerId, RemoveRaftVoterRequest, TopicName,
};
use fjord_protocol::kafka_protocol::messages::{
    begin_quorum_epoch_request as bqe, end_quorum_epoch_request as eqe, vote_request as vote,
};

use super::super::{extra_tags, s};
use super::uuid;

pub fn vote(v: i16) -> vote::VoteRequest {
    let f = true;
    let mut p = vote::PartitionData::default()
        .with_partition_index(0)
        .with_replica_epoch(7)
        .with_replica_id(BrokerId(3))
        .with_last_offset_epoch(6)
        .with_last_offset(420)
        .with_unknown_tagged_fields(extra_tags(f, 2));
    if v >= 1 {
        p = p
            .with_replica_directory_id(uuid(1))
            .with_voter_directory_id(uuid(2));
    }
    if v >= 2 {
        p = p.with_pre_vote(true);
    }
    let mut m = vote::VoteRequest::default()
        .with_cluster_id(Some(s("cluster-é")))
        .with_topics(vec![vote::TopicData::default()
            .with_topic_name(TopicName(s("__cluster_metadata")))
            .with_partitions(vec![p])
            .with_unknown_tagged_fields(extra_tags(f, 3))])
        .with_unknown_tagged_fields(extra_tags(f, 4));
    if v >= 1 {
        m = m.with_voter_id(BrokerId(2));
    }
    m
}

pub fn begin_quorum_epoch(v: i16) -> bqe::BeginQuorumEpochRequest {
    let f = v >= 1;
    let mut p = bqe::PartitionData::default()
        .with_partition_index(0)
        .with_leader_id(BrokerId(3))
        .with_leader_epoch(7)
        .with_unknown_tagged_fields(extra_tags(f, 2));
    if v >= 1 {
        p = p.with_voter_directory_id(uuid(3));
    }
    let mut m = bqe::BeginQuorumEpochRequest::default()
        .with_cluster_id(Some(s("c1")))
        .with_topics(vec![bqe::TopicData::default()
            .with_topic_name(TopicName(s("__cluster_metadata")))
            .with_partitions(vec![p])
            .with_unknown_tagged_fields(extra_tags(f, 3))])
        .with_unknown_tagged_fields(extra_tags(f, 4));
    if v >= 1 {
        m = m
            .with_voter_id(BrokerId(2))
            .with_leader_endpoints(vec![bqe::LeaderEndpoint::default()
                .with_name(s("CONTROLLER"))
                .with_host(s("127.0.0.1"))
                .with_port(9093)]);
    }
    m
}

pub fn add_raft_voter(_v: i16) -> AddRaftVoterRequest {
    AddRaftVoterRequest::default()
        .with_cluster_id(Some(s("MkU3OEVBNTcwNTJENDM2Qg")))
        .with_timeout_ms(30_000)
        .with_voter_id(4)
        .with_voter_directory_id(uuid(6))
        .with_listeners(vec![arv::Listener::default()
            .with_name(s("CONTROLLER"))
            .with_host(s("127.0.0.1"))
            .with_port(9393)
            .with_unknown_tagged_fields(extra_tags(true, 1))])
        .with_unknown_tagged_fields(extra_tags(true, 2))
}

pub fn remove_raft_voter(_v: i16) -> RemoveRaftVoterRequest {
    RemoveRaftVoterRequest::default()
        .with_cluster_id(Some(s("MkU3OEVBNTcwNTJENDM2Qg")))
        .with_voter_id(3)
        .with_voter_directory_id(uuid(5))
        .with_unknown_tagged_fields(extra_tags(true, 2))
}

pub fn end_quorum_epoch(v: i16) -> eqe::EndQuorumEpochRequest {
    let f = v >= 1;
    let mut p = eqe::PartitionData::default()
        .with_partition_index(0)
        .with_leader_id(BrokerId(3))
        .with_leader_epoch(7)
        .with_unknown_tagged_fields(extra_tags(f, 2));
    if v == 0 {
        p = p.with_preferred_successors(vec![1, 2]);
    } else {
        p = p.with_preferred_candidates(vec![eqe::ReplicaInfo::default()
            .with_candidate_id(BrokerId(1))
            .with_candidate_directory_id(uuid(4))]);
    }
    let mut m = eqe::EndQuorumEpochRequest::default()
        .with_cluster_id(None)
        .with_topics(vec![eqe::TopicData::default()
            .with_topic_name(TopicName(s("__cluster_metadata")))
            .with_partitions(vec![p])
            .with_unknown_tagged_fields(extra_tags(f, 3))])
        .with_unknown_tagged_fields(extra_tags(f, 4));
    if v >= 1 {
        m = m.with_leader_endpoints(vec![eqe::LeaderEndpoint::default()
            .with_name(s("CONTROLLER"))
            .with_host(s("::1"))
            .with_port(9093)]);
    }
    m
}

/// BrokerRegistration (62), versions 0-4.
pub fn broker_registration(
    v: i16,
) -> fjord_protocol::kafka_protocol::messages::BrokerRegistrationRequest {
    use fjord_protocol::kafka_protocol::messages::broker_registration_request as br;
    let f = true;
    let mut m = br::BrokerRegistrationRequest::default()
        .with_broker_id(BrokerId(3))
        .with_cluster_id(s("cluster-é"))
        .with_incarnation_id(uuid(5))
        .with_listeners(vec![br::Listener::default()
            .with_name(s("PLAINTEXT"))
            .with_host(s("127.0.0.1"))
            .with_port(9092)
            .with_security_protocol(0)
            .with_unknown_tagged_fields(extra_tags(f, 2))])
        .with_features(vec![br::Feature::default()
            .with_name(s("metadata.version"))
            .with_min_supported_version(7)
            .with_max_supported_version(27)
            .with_unknown_tagged_fields(extra_tags(f, 3))])
        .with_rack(Some(s("rack-a")))
        .with_unknown_tagged_fields(extra_tags(f, 4));
    if v >= 1 {
        m = m.with_is_migrating_zk_broker(true);
    }
    if v >= 2 {
        m = m.with_log_dirs(vec![uuid(6), uuid(7)]);
    }
    if v >= 3 {
        m = m.with_previous_broker_epoch(41);
    }
    m
}

/// BrokerHeartbeat (63), versions 0-1.
pub fn broker_heartbeat(
    v: i16,
) -> fjord_protocol::kafka_protocol::messages::BrokerHeartbeatRequest {
    use fjord_protocol::kafka_protocol::messages::BrokerHeartbeatRequest;
    let mut m = BrokerHeartbeatRequest::default()
        .with_broker_id(BrokerId(3))
        .with_broker_epoch(42)
        .with_current_metadata_offset(420)
        .with_want_fence(false)
        .with_want_shut_down(true)
        .with_unknown_tagged_fields(extra_tags(true, 5));
    if v >= 1 {
        m = m.with_offline_log_dirs(vec![uuid(8)]);
    }
    m
}

/// AllocateProducerIds (67), version 0.
pub fn allocate_producer_ids(
    _v: i16,
) -> fjord_protocol::kafka_protocol::messages::AllocateProducerIdsRequest {
    fjord_protocol::kafka_protocol::messages::AllocateProducerIdsRequest::default()
        .with_broker_id(BrokerId(3))
        .with_broker_epoch(42)
        .with_unknown_tagged_fields(extra_tags(true, 1))
}

/// AlterPartition (56), versions 2-3: the new ISR without broker epochs
/// (v2) or with them (v3).
pub fn alter_partition(v: i16) -> fjord_protocol::kafka_protocol::messages::AlterPartitionRequest {
    use fjord_protocol::kafka_protocol::messages::alter_partition_request::{
        BrokerState, PartitionData, TopicData,
    };
    let mut p = PartitionData::default()
        .with_partition_index(4)
        .with_leader_epoch(7)
        .with_leader_recovery_state(1)
        .with_partition_epoch(12)
        .with_unknown_tagged_fields(extra_tags(true, 2));
    if v >= 3 {
        p = p.with_new_isr_with_epochs(vec![
            BrokerState::default()
                .with_broker_id(BrokerId(1))
                .with_broker_epoch(40),
            BrokerState::default()
                .with_broker_id(BrokerId(3))
                .with_broker_epoch(42),
        ]);
    } else {
        p = p.with_new_isr(vec![BrokerId(1), BrokerId(3)]);
    }
    fjord_protocol::kafka_protocol::messages::AlterPartitionRequest::default()
        .with_broker_id(BrokerId(1))
        .with_broker_epoch(40)
        .with_topics(vec![TopicData::default()
            .with_topic_id(uuid(9))
            .with_partitions(vec![p])])
        .with_unknown_tagged_fields(extra_tags(true, 3))
}
