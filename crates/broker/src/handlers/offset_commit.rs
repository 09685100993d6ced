//! OffsetCommit: versions 2..=8 (v0-v1 were removed in Kafka 4.0, KIP-896,
//! and neither our decoder nor kafka-protocol's encoder has them). Partitions of unknown topics get
//! UNKNOWN_TOPIC_OR_PARTITION; the rest go to the group coordinator, and the
//! response waits until the commits are durable in `__consumer_offsets`. A
//! group whose shard is loading or failed to load gets
//! COORDINATOR_LOAD_IN_PROGRESS or NOT_COORDINATOR on every partition.

use std::ops::RangeInclusive;

use fjord_model::{ErrorCode, LeaderEpoch, Offset, PartitionIndex};
use fjord_protocol::kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use fjord_protocol::kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, TopicName,
};

use super::{str_bytes, Ctx, Pending};

pub const VERSIONS: RangeInclusive<i16> = 2..=8;

pub fn handle(ctx: Ctx, req: OffsetCommitRequest) -> Pending {
    let groups = ctx.broker.groups.get().cloned();
    let group_id = req.group_id.0.to_string();
    // A coordinator that cannot take the commit refuses it whole.
    let refused = match &groups {
        None => Some(ErrorCode::COORDINATOR_NOT_AVAILABLE),
        Some(g) => g.read(&group_id, |_| ()).err(),
    };
    // (topic, partition, error) decided here; the rest is committed.
    let mut rejected: Vec<(String, i32, ErrorCode)> = Vec::new();
    // Request order, kept for the response.
    let mut order: Vec<(String, i32)> = Vec::new();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let topic = ctx.broker.topic(&name);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            order.push((name.clone(), p.partition_index));
            let known = topic
                .as_ref()
                .is_some_and(|tp| tp.partition(p.partition_index).is_some());
            if let Some(e) = refused {
                rejected.push((name.clone(), p.partition_index, e));
            } else if !known {
                rejected.push((
                    name.clone(),
                    p.partition_index,
                    ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                ));
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
        if let Some(commit) = commit {
            {
                let r = commit.await;
                for t in r {
                    for (p, e) in t.partitions {
                        results.push((t.name.clone(), p.0, e));
                    }
                }
            }
        }
        let decided: std::collections::HashMap<(String, i32), ErrorCode> =
            results.into_iter().map(|(t, p, e)| ((t, p), e)).collect();
        let mut topics: Vec<OffsetCommitResponseTopic> = Vec::new();
        for (name, p) in order {
            let e = decided
                .get(&(name.clone(), p))
                .copied()
                .unwrap_or(ErrorCode::UNKNOWN_SERVER_ERROR);
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
