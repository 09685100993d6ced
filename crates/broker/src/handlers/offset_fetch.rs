//! OffsetFetch: versions 1..=10 (v8 carries several groups; v0, removed in
//! Kafka 4.0, read ZooKeeper; v9 adds each group's member id and epoch,
//! which Kafka checks only for consumer-protocol groups (KIP-848): Fjord's
//! groups are all classic, so they are ignored, as Kafka ignores them for a
//! classic group; v10 names topics by id, in the request and the answer: an
//! id no topic has is answered with UNKNOWN_TOPIC_ID on each partition, and a
//! group's offsets of a topic that no longer exists are left out of an
//! all-topics answer). An unknown group
//! or partition gets offset -1 and leader epoch -1 with no error. A group
//! whose shard is loading gets COORDINATOR_LOAD_IN_PROGRESS, one whose shard
//! failed to load NOT_COORDINATOR (on the group and on each partition).
//! From v7, `require_stable` (KIP-447): a partition with a transactional
//! commit waiting for its marker gets UNSTABLE_OFFSET_COMMIT (clients retry).

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::{ErrorCode, LeaderEpoch, Offset, PartitionIndex};
use fjord_protocol::kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use fjord_protocol::kafka_protocol::messages::{
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};

use uuid::Uuid;

use super::{str_bytes, Ctx};

/// The answer for a topic id no topic has (v10): UNKNOWN_TOPIC_ID on each
/// partition asked for.
fn unknown_topic_id(id: Uuid, partitions: &[i32]) -> OffsetFetchResponseTopics {
    OffsetFetchResponseTopics::default()
        .with_topic_id(id)
        .with_partitions(
            partitions
                .iter()
                .map(|&p| {
                    OffsetFetchResponsePartitions::default()
                        .with_partition_index(p)
                        .with_committed_offset(-1)
                        .with_committed_leader_epoch(-1)
                        .with_metadata(Some(str_bytes(String::new())))
                        .with_error_code(ErrorCode::UNKNOWN_TOPIC_ID.0)
                })
                .collect(),
        )
}

pub const VERSIONS: RangeInclusive<i16> = 1..=10;

/// First version naming topics by id.
const TOPIC_IDS_SINCE: i16 = 10;

fn fetch(
    ctx: &Ctx,
    group_id: &str,
    topics: Option<Vec<fjord_group::TopicPartitions>>,
    require_stable: bool,
) -> (ErrorCode, Vec<fjord_group::FetchedTopic>) {
    let read = match ctx.broker.groups.get() {
        None => Err(ErrorCode::COORDINATOR_NOT_AVAILABLE),
        Some(g) => g.read(group_id, |c| {
            c.fetch_offsets_stable(group_id, topics.as_deref(), require_stable)
        }),
    };
    match read {
        Ok(r) => (r.error, r.topics),
        // The group's shard is not serving: the error, also on every
        // partition asked for (v1 has no group-level error), never "no
        // committed offset" without one.
        Err(error) => (
            error,
            topics
                .unwrap_or_default()
                .into_iter()
                .map(|t| fjord_group::FetchedTopic {
                    name: t.name,
                    partitions: t
                        .partitions
                        .into_iter()
                        .map(|partition| fjord_group::FetchedOffset {
                            partition,
                            offset: Offset(-1),
                            leader_epoch: LeaderEpoch(-1),
                            metadata: String::new(),
                            error,
                        })
                        .collect(),
                })
                .collect(),
        ),
    }
}

pub fn handle(ctx: &Ctx, req: OffsetFetchRequest) -> Option<BytesMut> {
    if ctx.api_version >= 8 {
        let by_id = ctx.api_version >= TOPIC_IDS_SINCE;
        let mut groups = Vec::with_capacity(req.groups.len());
        for g in req.groups {
            // v10: ids resolved to names; an unknown id is answered here, in
            // its place among the topics asked for (None: the next one the
            // coordinator answers).
            let mut slots: Vec<Option<OffsetFetchResponseTopics>> = Vec::new();
            let topics = g.topics.map(|ts| {
                ts.into_iter()
                    .filter_map(|t| {
                        let name = if by_id {
                            let Some(topic) = ctx.broker.topic_by_id(t.topic_id) else {
                                slots
                                    .push(Some(unknown_topic_id(t.topic_id, &t.partition_indexes)));
                                return None;
                            };
                            topic.name.clone()
                        } else {
                            t.name.0.to_string()
                        };
                        slots.push(None);
                        Some(fjord_group::TopicPartitions {
                            name,
                            partitions: t
                                .partition_indexes
                                .into_iter()
                                .map(PartitionIndex)
                                .collect(),
                        })
                    })
                    .collect()
            });
            let (error, topics) = fetch(ctx, g.group_id.0.as_str(), topics, req.require_stable);
            let mut fetched: Vec<OffsetFetchResponseTopics> = Vec::new();
            for t in topics {
                let id = if by_id {
                    match ctx.broker.topic(&t.name) {
                        Some(topic) => topic.id,
                        // Offsets of a deleted topic: nothing to name it by.
                        None => continue,
                    }
                } else {
                    Uuid::nil()
                };
                fetched.push(
                    OffsetFetchResponseTopics::default()
                        .with_name(TopicName(str_bytes(t.name)))
                        .with_topic_id(id)
                        .with_partitions(
                            t.partitions
                                .into_iter()
                                .map(|p| {
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(p.partition.0)
                                        .with_committed_offset(p.offset.0)
                                        .with_committed_leader_epoch(p.leader_epoch.0)
                                        .with_metadata(Some(str_bytes(p.metadata)))
                                        .with_error_code(p.error.0)
                                })
                                .collect(),
                        ),
                );
            }
            let mut fetched = fetched.into_iter();
            let mut answered: Vec<OffsetFetchResponseTopics> = slots
                .into_iter()
                .filter_map(|slot| slot.or_else(|| fetched.next()))
                .collect();
            answered.extend(fetched);
            groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_error_code(error.0)
                    .with_topics(answered),
            );
        }
        return ctx.respond(&OffsetFetchResponse::default().with_groups(groups));
    }
    let topics = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| fjord_group::TopicPartitions {
                name: t.name.0.to_string(),
                partitions: t
                    .partition_indexes
                    .into_iter()
                    .map(PartitionIndex)
                    .collect(),
            })
            .collect()
    });
    let (error, topics) = fetch(ctx, req.group_id.0.as_str(), topics, req.require_stable);
    let resp = OffsetFetchResponse::default()
        .with_error_code(error.0)
        .with_topics(
            topics
                .into_iter()
                .map(|t| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(str_bytes(t.name)))
                        .with_partitions(
                            t.partitions
                                .into_iter()
                                .map(|p| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p.partition.0)
                                        .with_committed_offset(p.offset.0)
                                        .with_committed_leader_epoch(p.leader_epoch.0)
                                        .with_metadata(Some(str_bytes(p.metadata)))
                                        .with_error_code(p.error.0)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    ctx.respond(&resp)
}
