//! KRaft quorum requests (Vote, BeginQuorumEpoch, EndQuorumEpoch).

use fjord_protocol::kafka_protocol::messages::{
    begin_quorum_epoch_request as bqe, end_quorum_epoch_request as eqe, vote_request as vote,
};
use fjord_protocol::kafka_protocol::messages::{BrokerId, TopicName};

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
