//! OffsetDelete: version 0. Offsets of topics a live consumer group
//! subscribes to are kept (GROUP_SUBSCRIBED_TO_TOPIC).
//!
//! As Kafka's `KafkaApis.handleOffsetDeleteRequest`: partitions of topics
//! the principal may not READ are TOPIC_AUTHORIZATION_FAILED, partitions of
//! unknown topics, and unknown partitions of known ones,
//! UNKNOWN_TOPIC_OR_PARTITION, all decided here and listed first; the coordinator gets
//! the rest, and its answers are merged in (into the same topic entry where
//! one exists). A coordinator that refuses the whole request (a group
//! error) answers alone.

use std::ops::RangeInclusive;

use fjord_model::{ErrorCode, PartitionIndex};
use fjord_protocol::kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use fjord_protocol::kafka_protocol::messages::{
    OffsetDeleteRequest, OffsetDeleteResponse, TopicName,
};

use super::{str_bytes, Ctx, Pending};
use crate::security::authorizer::{Operation, ResourceType};

pub const VERSIONS: RangeInclusive<i16> = 0..=0;

pub fn handle(ctx: Ctx, req: OffsetDeleteRequest) -> Pending {
    let Some(groups) = ctx.broker.groups.get().cloned() else {
        let resp =
            OffsetDeleteResponse::default().with_error_code(ErrorCode::COORDINATOR_NOT_AVAILABLE.0);
        return Pending::Ready(ctx.respond(&resp));
    };
    let group_id = req.group_id.0.to_string();
    let mut unknown: Vec<(String, Vec<(PartitionIndex, ErrorCode)>)> = Vec::new();
    let mut topics: Vec<fjord_group::TopicPartitions> = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        // Kafka: READ on the topic (the group's DELETE is checked before
        // dispatch), before whether it exists.
        if !ctx.may(ResourceType::Topic, &name, Operation::Read) {
            let errors = t
                .partitions
                .into_iter()
                .map(|p| {
                    (
                        PartitionIndex(p.partition_index),
                        ErrorCode::TOPIC_AUTHORIZATION_FAILED,
                    )
                })
                .collect();
            unknown.push((name, errors));
            continue;
        }
        let count = ctx.broker.topic(&name).map(|tp| tp.partition_count());
        let (known, missing): (Vec<_>, Vec<_>) = t
            .partitions
            .into_iter()
            .map(|p| PartitionIndex(p.partition_index))
            .partition(|p| count.is_some_and(|c| p.0 >= 0 && p.0 < c));
        if !missing.is_empty() {
            let errors = missing
                .into_iter()
                .map(|p| (p, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION))
                .collect();
            unknown.push((name.clone(), errors));
        }
        if !known.is_empty() {
            topics.push(fjord_group::TopicPartitions {
                name,
                partitions: known,
            });
        }
    }
    let key = group_id.clone();
    let call = groups.call(&key, move |c, now, out| {
        c.delete_offsets(&group_id, &topics, now, out)
    });
    Pending::later(async move {
        let r = match call.await {
            Ok(r) => r,
            Err(e) => {
                return ctx.respond(&OffsetDeleteResponse::default().with_error_code(e.0));
            }
        };
        let answered = if r.error == ErrorCode::NONE {
            merge_topics(unknown, r.topics)
        } else {
            r.topics
        };
        let resp = OffsetDeleteResponse::default()
            .with_error_code(r.error.0)
            .with_topics(
                answered
                    .into_iter()
                    .map(|t| {
                        OffsetDeleteResponseTopic::default()
                            .with_name(TopicName(str_bytes(t.name)))
                            .with_partitions(
                                t.partitions
                                    .into_iter()
                                    .map(|(p, e)| {
                                        OffsetDeleteResponsePartition::default()
                                            .with_partition_index(p.0)
                                            .with_error_code(e.0)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        ctx.respond(&resp)
    })
}

/// The answers decided here, then the coordinator's, each partition under
/// its topic's first entry (Kafka's `OffsetDeleteResponse.Builder.merge`).
fn merge_topics(
    first: Vec<(String, Vec<(PartitionIndex, ErrorCode)>)>,
    then: Vec<fjord_group::TopicResult>,
) -> Vec<fjord_group::TopicResult> {
    let mut merged: Vec<fjord_group::TopicResult> = first
        .into_iter()
        .map(|(name, partitions)| fjord_group::TopicResult { name, partitions })
        .collect();
    for t in then {
        match merged.iter_mut().find(|m| m.name == t.name) {
            Some(m) => m.partitions.extend(t.partitions),
            None => merged.push(t),
        }
    }
    merged
}
