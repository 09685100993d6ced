//! AlterPartitionReassignments: versions 0..=1.
//!
//! In a cluster the active controller decides
//! (`fjord_controller::Controller::alter_partition_reassignments`, KIP-455:
//! the new replicas copy the partition from its leader, then the old ones
//! are removed and delete their copies); another node forwards the whole
//! request to it. Each partition is answered once its change is committed.
//!
//! On a single node every partition has exactly one replica, on this node.
//! Checked as Kafka's controller checks a target replica list: it must be
//! non-empty, without duplicates, and name only registered brokers (here:
//! this node), so the only valid target is `[this node]`, which is already
//! the assignment: NONE, nothing moves. A null list (cancel) answers
//! NO_REASSIGNMENT_IN_PROGRESS.

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_controller::reassignment::Reassignment;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::alter_partition_reassignments_request::ReassignablePartition;
use fjord_protocol::kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use fjord_protocol::kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
};

use super::{str_bytes, Ctx};

pub const VERSIONS: RangeInclusive<i16> = 0..=1;

/// Kafka's NO_REASSIGNMENT_IN_PROGRESS.
pub const NO_REASSIGNMENT_IN_PROGRESS: ErrorCode = ErrorCode::NO_REASSIGNMENT_IN_PROGRESS;

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

/// The answer with one top-level error (the request was not decided).
fn refused(ctx: &Ctx, code: ErrorCode, message: String) -> Option<BytesMut> {
    ctx.respond(
        &AlterPartitionReassignmentsResponse::default()
            .with_error_code(code.0)
            .with_error_message(Some(str_bytes(message))),
    )
}

/// A cluster: forwarded to the active controller, or decided by it here.
fn handle_in_cluster(ctx: &Ctx, req: AlterPartitionReassignmentsRequest) -> Option<BytesMut> {
    let broker = &ctx.broker;
    if !broker.is_active_controller() {
        return match crate::controller_link::forward(broker, &req, ctx.api_version) {
            Ok(resp) => ctx.respond(&resp),
            Err(e) => {
                let (code, message) = crate::errors::state_error(&e);
                refused(ctx, code, message)
            }
        };
    }
    let wanted: Vec<Reassignment> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| Reassignment {
                topic: t.name.to_string(),
                partition: p.partition_index,
                replicas: p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect()),
            })
        })
        .collect();
    let allow = req.allow_replication_factor_change;
    let results = match broker
        .as_active_controller(|c, _| Ok(c.alter_partition_reassignments(&wanted, allow)))
    {
        Ok(results) => results,
        Err((code, message)) => return refused(ctx, code, message),
    };
    let mut results = results.into_iter();
    answer(ctx, req, |_, _| match results.next() {
        Some(Ok(())) => (ErrorCode::NONE, None),
        Some(Err(e)) => (e.code, Some(e.message)),
        None => (ErrorCode::UNKNOWN_SERVER_ERROR, None),
    })
}

/// The response: each partition answered by `verdict(topic, partition)`,
/// in request order.
fn answer(
    ctx: &Ctx,
    req: AlterPartitionReassignmentsRequest,
    mut verdict: impl FnMut(&str, &ReassignablePartition) -> (ErrorCode, Option<String>),
) -> Option<BytesMut> {
    let responses = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let (code, msg) = verdict(&t.name, p);
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

pub fn handle(ctx: &Ctx, req: AlterPartitionReassignmentsRequest) -> Option<BytesMut> {
    let broker = &ctx.broker;
    if broker.config.kraft.is_cluster() {
        return handle_in_cluster(ctx, req);
    }
    let node = BrokerId(broker.config.node_id.0);
    answer(ctx, req, |topic, p| {
        match broker
            .topic(topic)
            .and_then(|t| t.partition(p.partition_index))
        {
            None => (
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                Some("The partition does not exist.".to_string()),
            ),
            Some(_) => check(node, p.replicas.as_deref()),
        }
    })
}
