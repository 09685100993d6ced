//! FindCoordinator: versions 0..=4. This node coordinates every group; v4+
//! answers per key in `coordinators`. Transaction coordinators do not exist
//! yet: key type 1 gets COORDINATOR_NOT_AVAILABLE.

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

pub fn handle(ctx: &Ctx, req: FindCoordinatorRequest) -> Option<BytesMut> {
    let broker = &ctx.broker;
    let error = if req.key_type != KEY_TYPE_GROUP || broker.groups.get().is_none() {
        ErrorCode::COORDINATOR_NOT_AVAILABLE
    } else {
        ErrorCode::NONE
    };
    let (node, host, port) = if error.is_none() {
        (
            broker.config.node_id.0,
            broker.config.advertised_host.clone(),
            broker.config.advertised_port as i32,
        )
    } else {
        (-1, String::new(), -1)
    };
    let mut resp = FindCoordinatorResponse::default();
    if ctx.api_version >= 4 {
        let keys: Vec<StrBytes> = req.coordinator_keys;
        resp = resp.with_coordinators(
            keys.into_iter()
                .map(|k| {
                    Coordinator::default()
                        .with_key(k)
                        .with_node_id(BrokerId(node))
                        .with_host(str_bytes(host.clone()))
                        .with_port(port)
                        .with_error_code(error.0)
                })
                .collect(),
        );
    } else {
        resp = resp
            .with_error_code(error.0)
            .with_node_id(BrokerId(node))
            .with_host(str_bytes(host))
            .with_port(port);
    }
    ctx.respond(&resp)
}
