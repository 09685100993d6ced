//! InitProducerId: versions 0..=5 (v5 only adds TRANSACTION_ABORTABLE, a
//! transactions error). Without a transactional id: a fresh producer id for
//! an idempotent producer; the partition logs check its sequences
//! (`fjord_storage::producer_state`). With one: the transaction coordinator
//! (`crate::txns`) gives the id a producer id and bumps its epoch, fencing
//! the producer that held it and aborting its open transaction (the client is
//! then told CONCURRENT_TRANSACTIONS and retries).

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::{ErrorCode, ProducerEpoch, ProducerId as Pid};
use fjord_protocol::kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProducerId,
};

use super::{Ctx, Pending};
use crate::errors;

pub const VERSIONS: RangeInclusive<i16> = 0..=5;

/// PRODUCER_FENCED exists from v4 (KIP-588); older clients get INVALID_PRODUCER_EPOCH.
const PRODUCER_FENCED_FROM: i16 = 4;

fn fail(code: ErrorCode) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(code.0)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

pub fn handle(ctx: Ctx, req: InitProducerIdRequest) -> Pending {
    match req.transactional_id.clone() {
        Some(id) => transactional(ctx, id.0.to_string(), req),
        None => super::blocking(ctx, move |ctx| idempotent(&ctx)),
    }
}

/// Without a transactional id Kafka always hands out a fresh id with epoch 0,
/// also to a producer that names its current id and epoch to have its epoch
/// bumped (KIP-360): the partitions then see a new producer, which may start
/// at any sequence. Bumping the named id instead would let any client fence
/// another client's producer by naming its id.
fn idempotent(ctx: &Ctx) -> Option<BytesMut> {
    match ctx.broker.next_producer_id() {
        Ok(id) => ctx.respond(
            &InitProducerIdResponse::default()
                .with_producer_id(ProducerId(id.0))
                .with_producer_epoch(0),
        ),
        Err(e) => ctx.respond(&fail(errors::state_error(&e).0)),
    }
}

fn transactional(ctx: Ctx, transactional_id: String, req: InitProducerIdRequest) -> Pending {
    let Some(txns) = ctx.broker.txns.get().cloned() else {
        return Pending::Ready(ctx.respond(&fail(ErrorCode::COORDINATOR_NOT_AVAILABLE)));
    };
    Pending::later(async move {
        // A fresh producer id, in case the coordinator needs one (a new
        // transactional id, or an exhausted epoch): taken off the shard's
        // lock, since a new block of ids is committed to the metadata log.
        let broker = ctx.broker.clone();
        let fresh = tokio::task::spawn_blocking(move || broker.next_producer_id())
            .await
            .map_err(|_| ErrorCode::UNKNOWN_SERVER_ERROR)
            .and_then(|r| r.map_err(|e| errors::state_error(&e).0));
        let expected = (ctx.api_version >= 3 && req.producer_id.0 >= 0)
            .then_some((Pid(req.producer_id.0), ProducerEpoch(req.producer_epoch)));
        let request = fjord_txn::InitRequest {
            transactional_id: transactional_id.clone(),
            transaction_timeout_ms: req.transaction_timeout_ms,
            expected,
        };
        let mut fresh = Some(fresh);
        let reply = txns
            .request(&transactional_id, move |c, token, now, out| {
                let mut next = move || {
                    fresh
                        .take()
                        .unwrap_or(Err(ErrorCode::COORDINATOR_NOT_AVAILABLE))
                };
                c.init_producer_id(token, &request, now, &mut next, out)
            })
            .await;
        let resp = match reply {
            Ok(fjord_txn::Reply::InitProducerId {
                error,
                producer_id,
                producer_epoch,
            }) => {
                let error = if error == ErrorCode::PRODUCER_FENCED
                    && ctx.api_version < PRODUCER_FENCED_FROM
                {
                    ErrorCode::INVALID_PRODUCER_EPOCH
                } else {
                    error
                };
                InitProducerIdResponse::default()
                    .with_error_code(error.0)
                    .with_producer_id(ProducerId(producer_id.0))
                    .with_producer_epoch(producer_epoch.0)
            }
            Ok(fjord_txn::Reply::Done(e) | fjord_txn::Reply::Ended { error: e, .. }) => fail(e),
            Err(e) => fail(e),
        };
        ctx.respond(&resp)
    })
}
