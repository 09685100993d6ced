//! ListConfigResources (KIP-1142, formerly ListClientMetricsResources):
//! versions 0..=1. v0 lists client-metrics resources only (Fjord has none);
//! v1 lists the resources of the requested types (all supported types when
//! the list is empty): every topic, this broker, and no client-metrics or
//! group resources (Fjord stores no configs for those). A type Kafka does
//! not list is UNSUPPORTED_VERSION.

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::list_config_resources_response::ConfigResource;
use fjord_protocol::kafka_protocol::messages::{
    ListConfigResourcesRequest, ListConfigResourcesResponse,
};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{str_bytes, Ctx};

pub const VERSIONS: RangeInclusive<i16> = 0..=1;

pub const RESOURCE_CLIENT_METRICS: i8 = 16;
pub const RESOURCE_GROUP: i8 = 32;

/// The types Kafka 4.3 lists, in its order.
const SUPPORTED: &[i8] = &[
    RESOURCE_TOPIC,
    RESOURCE_BROKER,
    RESOURCE_CLIENT_METRICS,
    RESOURCE_GROUP,
];

pub fn handle(ctx: &Ctx, req: ListConfigResourcesRequest) -> Option<BytesMut> {
    let types: Vec<i8> = if ctx.api_version == 0 {
        vec![RESOURCE_CLIENT_METRICS]
    } else if req.resource_types.is_empty() {
        SUPPORTED.to_vec()
    } else {
        req.resource_types.clone()
    };
    if let Some(t) = types.iter().find(|t| !SUPPORTED.contains(t)) {
        tracing::debug!("ListConfigResources: unsupported resource type {t}");
        return ctx.respond(
            &ListConfigResourcesResponse::default()
                .with_error_code(ErrorCode::UNSUPPORTED_VERSION.0),
        );
    }
    let broker = &ctx.broker;
    let mut resources = Vec::new();
    for t in types {
        match t {
            RESOURCE_TOPIC => {
                for topic in broker.topics() {
                    resources.push(
                        ConfigResource::default()
                            .with_resource_name(str_bytes(topic.name.clone()))
                            .with_resource_type(RESOURCE_TOPIC),
                    );
                }
            }
            RESOURCE_BROKER => resources.push(
                ConfigResource::default()
                    .with_resource_name(str_bytes(broker.config.node_id.0.to_string()))
                    .with_resource_type(RESOURCE_BROKER),
            ),
            // No client-metrics subscriptions and no group configs in Fjord.
            _ => {}
        }
    }
    ctx.respond(
        &ListConfigResourcesResponse::default()
            .with_error_code(ErrorCode::NONE.0)
            .with_config_resources(resources),
    )
}
