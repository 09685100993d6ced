//! OffsetFetch: versions 1..=8 (v8 carries several groups; v0, removed in
//! Kafka 4.0, read ZooKeeper). An unknown group
//! or partition gets offset -1 and leader epoch -1 with no error.

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::{ErrorCode, PartitionIndex};
use fjord_protocol::kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use fjord_protocol::kafka_protocol::messages::{
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};

use super::{str_bytes, Ctx};

pub const VERSIONS: RangeInclusive<i16> = 1..=8;

fn fetch(
    ctx: &Ctx,
    group_id: &str,
    topics: Option<Vec<fjord_group::TopicPartitions>>,
) -> (ErrorCode, Vec<fjord_group::FetchedTopic>) {
    match ctx.broker.groups.get() {
        None => (ErrorCode::COORDINATOR_NOT_AVAILABLE, Vec::new()),
        Some(g) => {
            let r = g.read(|c| c.fetch_offsets(group_id, topics.as_deref()));
            (r.error, r.topics)
        }
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
