//! DescribeCluster: versions 0..=2 (v1 endpoint type 1, brokers, only; v2
//! asks for fenced brokers too and marks each broker `is_fenced`: this node
//! is never fenced). `include_cluster_authorized_operations` gets the
//! principal's operations on the cluster (Kafka's bit field).

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use fjord_protocol::kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse,
};

use super::authz::AUTHORIZED_OPERATIONS_OMITTED;
use super::{str_bytes, Ctx};
use crate::security::authorizer::{ResourceType, CLUSTER_NAME};

pub const VERSIONS: RangeInclusive<i16> = 0..=2;
const ENDPOINT_TYPE_BROKERS: i8 = 1;

pub fn handle(ctx: &Ctx, req: DescribeClusterRequest) -> Option<BytesMut> {
    let listed = ctx.live_brokers();
    let mut resp = DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(ctx.broker.cluster_id.clone()))
        .with_controller_id(BrokerId(ctx.broker.controller_id(&listed)))
        .with_endpoint_type(ENDPOINT_TYPE_BROKERS)
        .with_cluster_authorized_operations(if req.include_cluster_authorized_operations {
            ctx.authorized_operations(ResourceType::Cluster, CLUSTER_NAME)
        } else {
            AUTHORIZED_OPERATIONS_OMITTED
        });
    if ctx.api_version >= 1 && req.endpoint_type != ENDPOINT_TYPE_BROKERS {
        resp = resp
            .with_error_code(ErrorCode::UNSUPPORTED_ENDPOINT_TYPE.0)
            .with_error_message(Some(str_bytes("only the brokers endpoint type is served")));
        return ctx.respond(&resp);
    }
    resp = resp.with_brokers(
        listed
            .into_iter()
            .map(|b| {
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.id.0))
                    .with_host(str_bytes(b.host))
                    .with_port(i32::from(b.port))
                    .with_rack(b.rack.map(str_bytes))
            })
            .collect(),
    );
    ctx.respond(&resp)
}
