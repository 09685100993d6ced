//! OffsetFetch: versions 1..=9 (v8 carries several groups; v0, removed in
//! Kafka 4.0, read ZooKeeper; v9 adds each group's member id and epoch,
//! which Kafka checks only for consumer-protocol groups (KIP-848): Fjord's
//! groups are all classic, so they are ignored, as Kafka ignores them for a
//! classic group). An unknown group
//! or partition gets offset -1 and leader epoch -1 with no error. A group
//! whose shard is loading gets COORDINATOR_LOAD_IN_PROGRESS, one whose shard
//! failed to load NOT_COORDINATOR (on the group and on each partition).

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

use super::{str_bytes, Ctx};

pub const VERSIONS: RangeInclusive<i16> = 1..=9;

fn fetch(
    ctx: &Ctx,
    group_id: &str,
    topics: Option<Vec<fjord_group::TopicPartitions>>,
) -> (ErrorCode, Vec<fjord_group::FetchedTopic>) {
    let read = match ctx.broker.groups.get() {
        None => Err(ErrorCode::COORDINATOR_NOT_AVAILABLE),
        Some(g) => g.read(group_id, |c| c.fetch_offsets(group_id, topics.as_deref())),
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
        let mut groups = Vec::with_capacity(req.groups.len());
        for g in req.groups {
            let topics = g.topics.map(|ts| {
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
            let (error, topics) = fetch(ctx, g.group_id.0.as_str(), topics);
            groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_error_code(error.0)
                    .with_topics(
                        topics
                            .into_iter()
                            .map(|t| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(str_bytes(t.name)))
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
                                    )
                            })
                            .collect(),
                    ),
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
    let (error, topics) = fetch(ctx, req.group_id.0.as_str(), topics);
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
