//! ElectLeaders: versions 0..=2. This node leads every partition and is its
//! only (preferred) replica, so an election is never needed: each named
//! partition answers ELECTION_NOT_NEEDED (unknown ones
//! UNKNOWN_TOPIC_OR_PARTITION). A null partition list asks for all
//! partitions; as in Kafka, those that need no election are left out, so the
//! answer is empty.

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::elect_leaders_response::{
    PartitionResult, ReplicaElectionResult,
};
use fjord_protocol::kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};

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
    let mut results = Vec::new();
    for tp in req.topic_partitions.unwrap_or_default() {
        let topic = broker.topic(&tp.topic);
        let partition_result = tp
            .partitions
            .iter()
            .map(|&p| {
                let (code, msg) = match &topic {
                    None => (
                        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                        format!("No such topic as {}", &*tp.topic),
                    ),
                    Some(t) if t.partition(p).is_none() => (
                        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                        format!("No such partition as {}-{p}", &*tp.topic),
                    ),
                    Some(_) => (
                        ELECTION_NOT_NEEDED,
                        "Leader election not needed for topic partition.".to_string(),
                    ),
                };
                PartitionResult::default()
                    .with_partition_id(p)
                    .with_error_code(code.0)
                    .with_error_message(Some(str_bytes(msg)))
            })
            .collect();
        results.push(
            ReplicaElectionResult::default()
                .with_topic(tp.topic)
                .with_partition_result(partition_result),
        );
    }
    ctx.respond(
        &ElectLeadersResponse::default()
            .with_error_code(ErrorCode::NONE.0)
            .with_replica_election_results(results),
    )
}
