//! CreatePartitions: versions 0..=3, with validate_only.

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_protocol::kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use fjord_protocol::kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{str_bytes, Ctx};
use crate::errors;

pub const VERSIONS: RangeInclusive<i16> = 0..=3;

pub fn handle(ctx: &Ctx, req: CreatePartitionsRequest) -> Option<BytesMut> {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let base = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        results.push(
            match ctx
                .broker
                .create_partitions(&t.name.0, t.count, req.validate_only)
            {
                Ok(()) => base,
                Err(e) => {
                    let (code, msg) = errors::state_error(&e);
                    base.with_error_code(code.0)
                        .with_error_message(Some(str_bytes(msg)))
                }
            },
        );
    }
    ctx.respond(&CreatePartitionsResponse::default().with_results(results))
}
