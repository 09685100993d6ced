//! FindCoordinator: versions 0..=4. This node coordinates every group; v4+
//! answers per key in `coordinators`. A group whose `__consumer_offsets`
//! shard is still loading (or whose topic is being created) gets
//! COORDINATOR_NOT_AVAILABLE, which clients retry; one whose shard failed to
//! load is named, and its requests answer NOT_COORDINATOR (as from Kafka).
//! Transaction coordinators do not exist yet: key type 1 gets COORDINATOR_NOT_AVAILABLE.

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::find_coordinator_response::Coordinator;
use fjord_protocol::kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;

use super::{str_bytes, Ctx};

pub const VERSIONS: RangeInclusive<i16> = 0..=4;

const KEY_TYPE_GROUP: i8 = 0;

/// The answer for one key: NONE (this node) or why not.
fn error_for(ctx: &Ctx, key_type: i8, key: &str) -> ErrorCode {
    if key_type != KEY_TYPE_GROUP {
        return ErrorCode::COORDINATOR_NOT_AVAILABLE;
    }
    match ctx.broker.groups.get() {
        None => ErrorCode::COORDINATOR_NOT_AVAILABLE,
        Some(g) => g.coordinator_error(key),
    }
}

pub fn handle(ctx: &Ctx, req: FindCoordinatorRequest) -> Option<BytesMut> {
    let broker = &ctx.broker;
    let answer = |error: ErrorCode| {
        if error.is_none() {
            (
                broker.config.node_id.0,
                broker.config.advertised_host.clone(),
                broker.config.advertised_port as i32,
            )
        } else {
            (-1, String::new(), -1)
        }
    };
    let mut resp = FindCoordinatorResponse::default();
    if ctx.api_version >= 4 {
        let keys: Vec<StrBytes> = req.coordinator_keys;
        resp = resp.with_coordinators(
            keys.into_iter()
                .map(|k| {
                    let error = error_for(ctx, req.key_type, k.as_str());
                    let (node, host, port) = answer(error);
                    Coordinator::default()
                        .with_key(k)
                        .with_node_id(BrokerId(node))
                        .with_host(str_bytes(host))
                        .with_port(port)
                        .with_error_code(error.0)
                })
                .collect(),
        );
    } else {
        let error = error_for(ctx, req.key_type, req.key.as_str());
        let (node, host, port) = answer(error);
        resp = resp
            .with_error_code(error.0)
            .with_node_id(BrokerId(node))
            .with_host(str_bytes(host))
            .with_port(port);
    }
    ctx.respond(&resp)
}
