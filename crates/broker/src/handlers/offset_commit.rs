//! OffsetCommit: versions 2..=9 (v0-v1 were removed in Kafka 4.0, KIP-896,
//! and neither our decoder nor kafka-protocol's encoder has them). Partitions of unknown topics get
//! UNKNOWN_TOPIC_OR_PARTITION; the rest go to the group coordinator, and the
//! response waits until the commits are durable in `__consumer_offsets`. A
//! group whose shard is loading or failed to load gets
//! COORDINATOR_LOAD_IN_PROGRESS or NOT_COORDINATOR on every partition.
//!
//! v9 (KIP-848) names the member epoch of a consumer-protocol group in the
//! generation field; Fjord's groups are all classic, so it is a generation as
//! before. What changes is the answer for a commit with a generation (>= 0)
//! to a group that does not exist: GROUP_ID_NOT_FOUND from v9 on, where
//! older versions keep ILLEGAL_GENERATION, as Kafka answers.

use std::ops::RangeInclusive;

use fjord_model::{ErrorCode, LeaderEpoch, Offset, PartitionIndex};
use fjord_protocol::kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use fjord_protocol::kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, TopicName,
};

use super::{str_bytes, Ctx, Pending};

pub const VERSIONS: RangeInclusive<i16> = 2..=9;

/// First version that answers GROUP_ID_NOT_FOUND for a commit with a
/// generation to a group that does not exist.
const GROUP_ID_NOT_FOUND_SINCE: i16 = 9;

pub fn handle(ctx: Ctx, req: OffsetCommitRequest) -> Pending {
    let groups = ctx.broker.groups.get().cloned();
    let group_id = req.group_id.0.to_string();
    // A coordinator that cannot take the commit refuses it whole.
    let missing_group_is_not_found =
        ctx.api_version >= GROUP_ID_NOT_FOUND_SINCE && req.generation_id_or_member_epoch >= 0;
    let refused = match &groups {
        None => Some(ErrorCode::COORDINATOR_NOT_AVAILABLE),
        Some(g) => match g.read(&group_id, |c| c.group_summary(&group_id).is_some()) {
            Err(e) => Some(e),
            Ok(false) if missing_group_is_not_found => Some(ErrorCode::GROUP_ID_NOT_FOUND),
            Ok(_) => None,
        },
    };
    // (topic, partition, error) decided here: unknown partitions, then the
    // ones a refusing coordinator refuses; the rest is committed.
    let mut rejected: Vec<(String, i32, ErrorCode)> = Vec::new();
    let mut refused_partitions: Vec<(String, i32, ErrorCode)> = Vec::new();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let topic = ctx.broker.topic(&name);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let known = topic
                .as_ref()
                .is_some_and(|tp| tp.partition(p.partition_index).is_some());
            // Unknown partitions are answered as such whatever the group's
            // coordinator would say, as Kafka checks them first.
            if !known {
                rejected.push((
                    name.clone(),
                    p.partition_index,
                    ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                ));
            } else if let Some(e) = refused {
                refused_partitions.push((name.clone(), p.partition_index, e));
            } else {
                partitions.push(fjord_group::CommitPartition {
                    partition: PartitionIndex(p.partition_index),
                    offset: Offset(p.committed_offset),
                    leader_epoch: LeaderEpoch(p.committed_leader_epoch),
                    metadata: p.committed_metadata.map(|m| m.to_string()),
                });
            }
        }
        if !partitions.is_empty() {
            topics.push(fjord_group::CommitTopic { name, partitions });
        }
    }
    let request = fjord_group::CommitRequest {
        group_id,
        generation_id: req.generation_id_or_member_epoch,
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
        topics,
    };
    // Decided now, in request order; only the wait for durability is deferred.
    let commit = groups
        .filter(|_| !request.topics.is_empty())
        .map(|g| g.commit(request));
    Pending::later(async move {
        let mut results: Vec<(String, i32, ErrorCode)> = rejected;
        results.extend(refused_partitions);
        if let Some(commit) = commit {
            for t in commit.await {
                for (p, e) in t.partitions {
                    results.push((t.name.clone(), p.0, e));
                }
            }
        }
        // Kafka's order: unknown partitions, then the coordinator's answers,
        // each topic where it first appears.
        let mut topics: Vec<OffsetCommitResponseTopic> = Vec::new();
        for (name, p, e) in results {
            let part = OffsetCommitResponsePartition::default()
                .with_partition_index(p)
                .with_error_code(e.0);
            match topics.iter_mut().find(|t| t.name.0.as_str() == name) {
                Some(t) => t.partitions.push(part),
                None => topics.push(
                    OffsetCommitResponseTopic::default()
                        .with_name(TopicName(str_bytes(name)))
                        .with_partitions(vec![part]),
                ),
            }
        }
        ctx.respond(&OffsetCommitResponse::default().with_topics(topics))
    })
}
