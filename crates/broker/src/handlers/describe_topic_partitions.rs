//! DescribeTopicPartitions (KIP-966): version 0. Like Metadata for topics,
//! paginated: topics in name order (all topics when the list is empty),
//! starting at the request's cursor, at most `response_partition_limit`
//! partitions (capped at Kafka's default 2000); when partitions are left, the
//! response carries the cursor to continue from. Topics the principal may
//! not DESCRIBE are left out of a list-all answer and answered
//! TOPIC_AUTHORIZATION_FAILED when named. Each partition carries its
//! eligible leader replicas and last known ELR from the metadata image.

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::{limits, ErrorCode};
use fjord_protocol::kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use fjord_protocol::kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName,
};
use uuid::Uuid;

use super::metadata::broker_ids;
use super::{str_bytes, Ctx};
use crate::security::authorizer::{Operation, ResourceType};
use crate::state::is_internal_topic;

pub const VERSIONS: RangeInclusive<i16> = 0..=0;

pub fn handle(ctx: &Ctx, req: DescribeTopicPartitionsRequest) -> Option<BytesMut> {
    let broker = &ctx.broker;
    let image = broker.image();
    let all = req.topics.is_empty();
    let invalid = |msg: &str| {
        tracing::debug!("DescribeTopicPartitions: {msg}");
        let topics = req
            .topics
            .iter()
            .map(|t| {
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(t.name.clone()))
                    .with_error_code(ErrorCode::INVALID_REQUEST.0)
            })
            .collect();
        ctx.respond(&DescribeTopicPartitionsResponse::default().with_topics(topics))
    };
    if let Some(c) = &req.cursor {
        if c.partition_index < 0 {
            return invalid("cursor partition index is negative");
        }
        if !all && !req.topics.iter().any(|t| t.name == c.topic_name) {
            return invalid("the cursor topic is not in the topic list");
        }
    }
    let mut names: Vec<String> = if all {
        broker.topics().iter().map(|t| t.name.clone()).collect()
    } else {
        req.topics.iter().map(|t| t.name.0.to_string()).collect()
    };
    names.sort();
    names.dedup();
    if let Some(c) = &req.cursor {
        names.retain(|n| n.as_str() >= c.topic_name.as_str());
    }

    let mut remaining = i64::from(
        req.response_partition_limit
            .min(limits::DESCRIBE_TOPIC_PARTITIONS_MAX),
    );
    let mut topics = Vec::new();
    // The topics denied, answered after the others (as Kafka).
    let mut denied = Vec::new();
    let mut next_cursor = None;
    for name in names {
        // Kafka: DESCRIBE on the topic, before whether it exists; a topic
        // denied is left out of a list-all answer and otherwise answered
        // TOPIC_AUTHORIZATION_FAILED without its id (so nothing leaks).
        if !ctx.may(ResourceType::Topic, &name, Operation::Describe) {
            if !all {
                denied.push(
                    DescribeTopicPartitionsResponseTopic::default()
                        .with_name(Some(TopicName(str_bytes(name))))
                        .with_error_code(ErrorCode::TOPIC_AUTHORIZATION_FAILED.0)
                        .with_topic_id(Uuid::nil()),
                );
            }
            continue;
        }
        if remaining <= 0 {
            // Everything before this topic fitted: continue at its start.
            next_cursor = Some(
                Cursor::default()
                    .with_topic_name(TopicName(str_bytes(name)))
                    .with_partition_index(0),
            );
            break;
        }
        let Some(topic) = broker.topic(&name) else {
            if !all {
                let operations = ctx.authorized_operations(ResourceType::Topic, &name);
                topics.push(
                    DescribeTopicPartitionsResponseTopic::default()
                        .with_name(Some(TopicName(str_bytes(name))))
                        .with_error_code(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0)
                        .with_topic_id(Uuid::nil())
                        .with_topic_authorized_operations(operations),
                );
            }
            continue;
        };
        let start = match &req.cursor {
            Some(c) if *c.topic_name == *name => c.partition_index,
            _ => 0,
        };
        let count = topic.partition_count();
        let end = i64::from(count).min(i64::from(start) + remaining) as i32;
        // The ELR and last known ELR (KIP-966) come from the metadata image.
        let registered = image.topics().get(&name).cloned();
        let partitions: Vec<_> = (start..end)
            .filter_map(|p| topic.partition(p))
            .map(|p| {
                let r = p.replica_state();
                let reg = registered
                    .as_ref()
                    .and_then(|t| t.partitions.get(&p.index.0));
                let ids = |v: &[i32]| v.iter().map(|id| BrokerId(*id)).collect::<Vec<_>>();
                let elr = reg.map_or_else(Vec::new, |g| ids(&g.elr));
                let last_known_elr = reg.map_or_else(Vec::new, |g| ids(&g.last_known_elr));
                DescribeTopicPartitionsResponsePartition::default()
                    .with_error_code(ErrorCode::NONE.0)
                    .with_partition_index(p.index.0)
                    .with_leader_id(BrokerId(r.leader.0))
                    .with_leader_epoch(r.leader_epoch.0)
                    .with_replica_nodes(broker_ids(&r.replicas))
                    .with_isr_nodes(broker_ids(&r.isr))
                    .with_eligible_leader_replicas(Some(elr))
                    .with_last_known_elr(Some(last_known_elr))
                    .with_offline_replicas(vec![])
            })
            .collect();
        remaining -= partitions.len() as i64;
        if end < count {
            next_cursor = Some(
                Cursor::default()
                    .with_topic_name(TopicName(str_bytes(name.clone())))
                    .with_partition_index(end),
            );
        }
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_error_code(ErrorCode::NONE.0)
                .with_name(Some(TopicName(str_bytes(name.clone()))))
                .with_topic_id(topic.id)
                .with_is_internal(is_internal_topic(&name))
                .with_topic_authorized_operations(
                    ctx.authorized_operations(ResourceType::Topic, &name),
                )
                .with_partitions(partitions),
        );
        if next_cursor.is_some() {
            break;
        }
    }
    topics.append(&mut denied);
    ctx.respond(
        &DescribeTopicPartitionsResponse::default()
            .with_topics(topics)
            .with_next_cursor(next_cursor),
    )
}
