//! ListPartitionReassignments: version 0. A single node never moves replicas,
//! so no reassignment is ever in progress: the answer is always empty (Kafka
//! also skips unknown topics and partitions silently).

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::{
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};

use super::Ctx;

pub const VERSIONS: RangeInclusive<i16> = 0..=0;

pub fn handle(ctx: &Ctx, _req: ListPartitionReassignmentsRequest) -> Option<BytesMut> {
    ctx.respond(
        &ListPartitionReassignmentsResponse::default()
            .with_error_code(ErrorCode::NONE.0)
            .with_error_message(None)
            .with_topics(vec![]),
    )
}
