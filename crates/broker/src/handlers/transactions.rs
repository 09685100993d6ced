//! ListTransactions (versions 0..=2) and DescribeTransactions (version 0):
//! answered truthfully while Fjord has no transaction coordinator (the
//! transactions issue). No transaction exists, so ListTransactions lists
//! none (its state filters that are not Kafka transaction states are echoed
//! in `unknown_state_filters`, as Kafka does) and DescribeTransactions
//! answers TRANSACTIONAL_ID_NOT_FOUND for every id, which is Kafka's answer
//! for an id its coordinator does not know.

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::describe_transactions_response::TransactionState;
use fjord_protocol::kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ListTransactionsRequest,
    ListTransactionsResponse, ProducerId,
};

use super::Ctx;

pub const LIST_VERSIONS: RangeInclusive<i16> = 0..=2;
pub const DESCRIBE_VERSIONS: RangeInclusive<i16> = 0..=0;

/// Kafka's transaction state names (`TransactionState` in its coordinator).
const STATES: [&str; 8] = [
    "Empty",
    "Ongoing",
    "PrepareCommit",
    "PrepareAbort",
    "CompleteCommit",
    "CompleteAbort",
    "Dead",
    "PrepareEpochFence",
];

pub fn list(ctx: &Ctx, req: ListTransactionsRequest) -> Option<BytesMut> {
    let unknown = req
        .state_filters
        .into_iter()
        .filter(|s| !STATES.contains(&s.as_str()))
        .collect();
    ctx.respond(&ListTransactionsResponse::default().with_unknown_state_filters(unknown))
}

pub fn describe(ctx: &Ctx, req: DescribeTransactionsRequest) -> Option<BytesMut> {
    let states = req
        .transactional_ids
        .into_iter()
        .map(|id| {
            TransactionState::default()
                .with_error_code(ErrorCode::TRANSACTIONAL_ID_NOT_FOUND.0)
                .with_transactional_id(id)
                .with_producer_id(ProducerId(0))
        })
        .collect();
    ctx.respond(&DescribeTransactionsResponse::default().with_transaction_states(states))
}
