//! ElectLeaders: versions 0..=2. The partition says whether its leader is
//! its preferred replica; if so an election is not needed and a named
//! partition answers ELECTION_NOT_NEEDED (unknown ones
//! UNKNOWN_TOPIC_OR_PARTITION). In a cluster a partition that needs one
//! gets a preferred-leader election by the active controller (a broker that
//! is not the controller forwards the whole request to it); on a single
//! node, which leads every partition and is its only replica, none is ever
//! needed (PREFERRED_LEADER_NOT_AVAILABLE otherwise). A null partition list asks for all partitions; as in Kafka,
//! those that need no election are left out, so on one node the answer is
//! empty.

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::elect_leaders_response::{
    PartitionResult, ReplicaElectionResult,
};
use fjord_protocol::kafka_protocol::messages::{
    ElectLeadersRequest, ElectLeadersResponse, TopicName,
};

use super::{str_bytes, Ctx};

pub const VERSIONS: RangeInclusive<i16> = 0..=2;

/// Kafka's ELECTION_NOT_NEEDED.
pub const ELECTION_NOT_NEEDED: ErrorCode = ErrorCode(84);

/// Election types of the request (v1+).
const ELECTION_PREFERRED: i8 = 0;
const ELECTION_UNCLEAN: i8 = 1;

pub fn handle(ctx: &Ctx, req: ElectLeadersRequest) -> Option<BytesMut> {
    if req.election_type != ELECTION_PREFERRED && req.election_type != ELECTION_UNCLEAN {
        return ctx.respond(
            &ElectLeadersResponse::default().with_error_code(ErrorCode::INVALID_REQUEST.0),
        );
    }
    let broker = &ctx.broker;
    if broker.config.kraft.is_cluster() && !broker.is_active_controller() {
        return match crate::controller_link::forward(broker, &req, ctx.api_version) {
            Ok(resp) => ctx.respond(&resp),
            Err(e) => {
                let (code, _) = crate::errors::state_error(&e);
                ctx.respond(&ElectLeadersResponse::default().with_error_code(code.0))
            }
        };
    }
    let mut results = Vec::new();
    let named = match req.topic_partitions {
        Some(named) => named
            .into_iter()
            .map(|tp| (tp.topic.to_string(), tp.partitions, true))
            .collect(),
        // All partitions; those needing no election are left out below.
        None => broker
            .topics()
            .iter()
            .map(|t| {
                let parts = t.partitions.read().iter().map(|p| p.index.0).collect();
                (t.name.clone(), parts, false)
            })
            .collect::<Vec<(String, Vec<i32>, bool)>>(),
    };
    for (name, partitions, explicit) in named {
        let topic = broker.topic(&name);
        let partition_result: Vec<_> = partitions
            .iter()
            .filter_map(|&p| {
                let (code, msg) = match topic.as_ref().map(|t| t.partition(p)) {
                    None => (
                        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                        format!("No such topic as {name}"),
                    ),
                    Some(None) => (
                        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                        format!("No such partition as {name}-{p}"),
                    ),
                    Some(Some(part)) if part.leader_is_preferred() => {
                        if !explicit {
                            return None;
                        }
                        (
                            ELECTION_NOT_NEEDED,
                            "Leader election not needed for topic partition.".to_string(),
                        )
                    }
                    Some(Some(_)) if broker.config.kraft.is_cluster() => {
                        match broker.elect_preferred_leader(&name, p) {
                            Ok(()) => (ErrorCode::NONE, String::new()),
                            Err(e) => crate::errors::state_error(&e),
                        }
                    }
                    Some(Some(_)) => (
                        ErrorCode::PREFERRED_LEADER_NOT_AVAILABLE,
                        "Leader elections are not supported yet.".to_string(),
                    ),
                };
                Some(
                    PartitionResult::default()
                        .with_partition_id(p)
                        .with_error_code(code.0)
                        .with_error_message(Some(str_bytes(msg))),
                )
            })
            .collect();
        if explicit || !partition_result.is_empty() {
            results.push(
                ReplicaElectionResult::default()
                    .with_topic(TopicName(str_bytes(name)))
                    .with_partition_result(partition_result),
            );
        }
    }
    ctx.respond(
        &ElectLeadersResponse::default()
            .with_error_code(ErrorCode::NONE.0)
            .with_replica_election_results(results),
    )
}
