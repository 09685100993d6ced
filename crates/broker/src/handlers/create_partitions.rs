//! CreatePartitions: versions 0..=3, with validate_only. A topic named
//! twice is answered once with INVALID_REQUEST, first, and not grown. A
//! topic the principal may not ALTER is TOPIC_AUTHORIZATION_FAILED.

use std::collections::HashSet;
use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use fjord_protocol::kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, TopicName,
};

use super::{str_bytes, Ctx};
use crate::errors;
use crate::security::authorizer::{Operation, ResourceType};

pub const VERSIONS: RangeInclusive<i16> = 0..=3;

pub fn handle(ctx: &Ctx, req: CreatePartitionsRequest) -> Option<BytesMut> {
    let mut results = Vec::with_capacity(req.topics.len());
    let node = ctx.broker.config.node_id.0;
    // As Kafka's controller: a name given more than once grows nothing and
    // is answered once, INVALID_REQUEST "Duplicate topic name.", before the
    // other results.
    let mut seen = HashSet::with_capacity(req.topics.len());
    let mut duplicates: Vec<TopicName> = Vec::new();
    for t in &req.topics {
        if !seen.insert(&t.name.0) && !duplicates.contains(&t.name) {
            duplicates.push(t.name.clone());
        }
    }
    for name in &duplicates {
        results.push(
            CreatePartitionsTopicResult::default()
                .with_name(name.clone())
                .with_error_code(ErrorCode::INVALID_REQUEST.0)
                .with_error_message(Some(str_bytes("Duplicate topic name.".to_string()))),
        );
    }
    for t in req.topics {
        if duplicates.contains(&t.name) {
            continue;
        }
        let base = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        // Kafka's controller: ALTER on the topic, before anything else.
        if !ctx.may(ResourceType::Topic, &t.name.0, Operation::Alter) {
            results.push(base.with_error_code(ErrorCode::TOPIC_AUTHORIZATION_FAILED.0));
            continue;
        }
        // Assignments, when given, name the replicas of each new partition:
        // one per new partition, each on this node only.
        // An empty list is taken as "not given", like null.
        if let Some(assignments) = t.assignments.as_ref().filter(|a| !a.is_empty()) {
            let current = ctx.broker.topic(&t.name.0).map(|t| t.partition_count());
            let new = current.map(|c| t.count - c);
            let bad = if new != Some(assignments.len() as i32) {
                Some(format!(
                    "{} assignments given for {} new partitions",
                    assignments.len(),
                    new.map_or("?".to_string(), |n| n.to_string())
                ))
            } else if assignments
                .iter()
                .any(|a| a.broker_ids.len() != 1 || a.broker_ids[0].0 != node)
            {
                Some(format!("this single-node cluster only has broker {node}"))
            } else {
                None
            };
            if let (Some(msg), Some(_)) = (bad, current) {
                results.push(
                    base.with_error_code(ErrorCode::INVALID_REPLICA_ASSIGNMENT.0)
                        .with_error_message(Some(str_bytes(msg))),
                );
                continue;
            }
        }
        results.push(
            match ctx
                .broker
                .create_partitions(&t.name.0, t.count, req.validate_only)
            {
                Ok(()) => base,
                Err(e) => {
                    let (code, msg) = errors::state_error(&e);
                    // Kafka answers an unknown topic without a message.
                    let msg =
                        (code != ErrorCode::UNKNOWN_TOPIC_OR_PARTITION).then(|| str_bytes(msg));
                    base.with_error_code(code.0).with_error_message(msg)
                }
            },
        );
    }
    ctx.respond(&CreatePartitionsResponse::default().with_results(results))
}
