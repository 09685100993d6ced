//! AlterPartitionReassignments: versions 0..=1. Every partition has exactly
//! one replica, on this node. Checked as Kafka's controller checks a target
//! replica list: it must be non-empty, without duplicates, and name only
//! registered brokers (here: this node), so the only valid target is
//! `[this node]`, which is already the assignment: NONE, nothing moves. A
//! null list (cancel) answers NO_REASSIGNMENT_IN_PROGRESS.

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use fjord_protocol::kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
};

use super::{str_bytes, Ctx};

pub const VERSIONS: RangeInclusive<i16> = 0..=1;

/// Kafka's NO_REASSIGNMENT_IN_PROGRESS.
pub const NO_REASSIGNMENT_IN_PROGRESS: ErrorCode = ErrorCode(85);

/// Verdict on one partition's target replicas, given this node's id. The
/// only valid target, `[node]`, keeps the replication factor at 1, so
/// `allow_replication_factor_change` never decides anything here.
pub fn check(node: BrokerId, replicas: Option<&[BrokerId]>) -> (ErrorCode, Option<String>) {
    let Some(replicas) = replicas else {
        return (NO_REASSIGNMENT_IN_PROGRESS, None);
    };
    if replicas.is_empty() {
        return (
            ErrorCode::INVALID_REPLICA_ASSIGNMENT,
            Some("The manual partition assignment includes an empty replica list.".into()),
        );
    }
    for (i, r) in replicas.iter().enumerate() {
        if replicas[..i].contains(r) {
            return (
                ErrorCode::INVALID_REPLICA_ASSIGNMENT,
                Some(format!(
                    "The manual partition assignment includes the partition replica {} more than once.",
                    r.0
                )),
            );
        }
    }
    if let Some(r) = replicas.iter().find(|r| **r != node) {
        return (
            ErrorCode::INVALID_REPLICA_ASSIGNMENT,
            Some(format!(
                "The manual partition assignment includes broker {}, but no such broker is registered.",
                r.0
            )),
        );
    }
    (ErrorCode::NONE, None)
}

pub fn handle(ctx: &Ctx, req: AlterPartitionReassignmentsRequest) -> Option<BytesMut> {
    let broker = &ctx.broker;
    let node = BrokerId(broker.config.node_id.0);
    let responses = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = broker.topic(&t.name);
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let (code, msg) =
                        match topic.as_ref().and_then(|t| t.partition(p.partition_index)) {
                            None => (
                                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                                Some("The partition does not exist.".to_string()),
                            ),
                            Some(_) => check(node, p.replicas.as_deref()),
                        };
                    ReassignablePartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code.0)
                        .with_error_message(msg.map(str_bytes))
                })
                .collect();
            ReassignableTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    let mut resp = AlterPartitionReassignmentsResponse::default()
        .with_error_code(ErrorCode::NONE.0)
        .with_error_message(None)
        .with_responses(responses);
    if ctx.api_version >= 1 {
        resp = resp.with_allow_replication_factor_change(req.allow_replication_factor_change);
    }
    ctx.respond(&resp)
}
