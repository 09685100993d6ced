//! OffsetCommit: versions 2..=10 (v0-v1 were removed in Kafka 4.0, KIP-896,
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
//!
//! v10 names each topic by its id (and the answer too): an id no topic has
//! gets UNKNOWN_TOPIC_ID on each of its partitions, before anything else.

use std::ops::RangeInclusive;

use fjord_model::{ErrorCode, LeaderEpoch, Offset, PartitionIndex};
use fjord_protocol::kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use fjord_protocol::kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, TopicName,
};
use uuid::Uuid;

use super::{str_bytes, Ctx, Pending};
use crate::security::authorizer::{Operation, ResourceType};

pub const VERSIONS: RangeInclusive<i16> = 2..=10;

/// First version naming topics by id.
const TOPIC_IDS_SINCE: i16 = 10;

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
    // ones a refusing coordinator refuses; the rest is committed. A topic is
    // its name and, from v10, the id it was named by (nil before).
    let by_id = ctx.api_version >= TOPIC_IDS_SINCE;
    let mut rejected: Vec<(TopicKey, i32, ErrorCode)> = Vec::new();
    let mut refused_partitions: Vec<(TopicKey, i32, ErrorCode)> = Vec::new();
    let mut ids: Vec<TopicKey> = Vec::new();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let topic = if by_id {
            ctx.broker.topic_by_id(t.topic_id)
        } else {
            ctx.broker.topic(&t.name.0)
        };
        let key = TopicKey {
            name: match (&topic, by_id) {
                (Some(tp), true) => tp.name.to_string(),
                _ => t.name.0.to_string(),
            },
            id: if by_id { t.topic_id } else { Uuid::nil() },
        };
        if by_id && !ids.contains(&key) {
            ids.push(key.clone());
        }
        // READ on the topic (the group's READ was checked before dispatch).
        let denied = (topic.is_some() || !by_id)
            && !ctx.may(ResourceType::Topic, &key.name, Operation::Read);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let known = topic
                .as_ref()
                .is_some_and(|tp| tp.partition(p.partition_index).is_some());
            // Unknown partitions are answered as such whatever the group's
            // coordinator would say, as Kafka checks them first.
            if denied {
                rejected.push((
                    key.clone(),
                    p.partition_index,
                    ErrorCode::TOPIC_AUTHORIZATION_FAILED,
                ));
            } else if topic.is_none() && by_id {
                rejected.push((key.clone(), p.partition_index, ErrorCode::UNKNOWN_TOPIC_ID));
            } else if !known {
                rejected.push((
                    key.clone(),
                    p.partition_index,
                    ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                ));
            } else if let Some(e) = refused {
                refused_partitions.push((key.clone(), p.partition_index, e));
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
            topics.push(fjord_group::CommitTopic {
                name: key.name,
                partitions,
            });
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
        let mut results: Vec<(TopicKey, i32, ErrorCode)> = rejected;
        results.extend(refused_partitions);
        if let Some(commit) = commit {
            for t in commit.await {
                // The coordinator answers by name; v10 answers by the id asked.
                let key = ids
                    .iter()
                    .find(|k| k.name == t.name)
                    .cloned()
                    .unwrap_or(TopicKey {
                        name: t.name,
                        id: Uuid::nil(),
                    });
                for (p, e) in t.partitions {
                    results.push((key.clone(), p.0, e));
                }
            }
        }
        // Kafka's order: unknown partitions, then the coordinator's answers,
        // each topic where it first appears.
        let mut topics: Vec<(TopicKey, OffsetCommitResponseTopic)> = Vec::new();
        for (key, p, e) in results {
            let part = OffsetCommitResponsePartition::default()
                .with_partition_index(p)
                .with_error_code(e.0);
            match topics.iter_mut().find(|(k, _)| *k == key) {
                Some((_, t)) => t.partitions.push(part),
                None => {
                    let t = OffsetCommitResponseTopic::default()
                        .with_name(TopicName(str_bytes(key.name.clone())))
                        .with_topic_id(key.id)
                        .with_partitions(vec![part]);
                    topics.push((key, t));
                }
            }
        }
        let topics = topics.into_iter().map(|(_, t)| t).collect();
        ctx.respond(&OffsetCommitResponse::default().with_topics(topics))
    })
}

/// A topic of the request: its name (as asked, or resolved from its id) and
/// the id it was named by (v10; nil before).
#[derive(Clone, Debug, PartialEq, Eq)]
struct TopicKey {
    name: String,
    id: Uuid,
}
