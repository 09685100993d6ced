//! InitProducerId: versions 0..=4, for idempotent producers (null
//! transactional id). Transactions have their own issue; a transactional id
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

pub const VERSIONS: RangeInclusive<i16> = 0..=4;

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
    // An idempotent producer that asks to bump its epoch (KIP-360) keeps its id.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        return ctx.respond(
            &InitProducerIdResponse::default()
                .with_producer_id(req.producer_id)
                .with_producer_epoch(req.producer_epoch + 1),
        );
    }
    match ctx.broker.next_producer_id() {
        Ok(id) => ctx.respond(
            &InitProducerIdResponse::default()
                .with_producer_id(ProducerId(id.0))
                .with_producer_epoch(0),
        ),
        Err(e) => ctx.respond(&fail(errors::state_error(&e).0)),
    }
}
