//! InitProducerId: versions 0..=5 (v5 only adds TRANSACTION_ABORTABLE, a
//! transactions error), for idempotent producers (null
//! transactional id); the partition logs check their sequences
//! (`fjord_storage::producer_state`). Transactions have their own issue; a transactional id
//! is refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED, a non-retriable code
//! that tells the client plainly that it cannot proceed.

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProducerId,
};

use super::Ctx;
use crate::errors;

pub const VERSIONS: RangeInclusive<i16> = 0..=5;

pub fn handle(ctx: &Ctx, req: InitProducerIdRequest) -> Option<BytesMut> {
    let fail = |code: ErrorCode| {
        InitProducerIdResponse::default()
            .with_error_code(code.0)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if req.transactional_id.is_some() {
        return ctx.respond(&fail(ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED));
    }
    // Without a transactional id Kafka always hands out a fresh id with epoch 0,
    // also to a producer that names its current id and epoch to have its epoch
    // bumped (KIP-360): the partitions then see a new producer, which may start
    // at any sequence. Bumping the named id instead would let any client fence
    // another client's producer by naming its id.
    match ctx.broker.next_producer_id() {
        Ok(id) => ctx.respond(
            &InitProducerIdResponse::default()
                .with_producer_id(ProducerId(id.0))
                .with_producer_epoch(0),
        ),
        Err(e) => ctx.respond(&fail(errors::state_error(&e).0)),
    }
}
