//! AlterConfigs: versions 0..=2. Replaces a topic's overrides, or a broker
//! resource's dynamic configs (see `incremental_alter_configs::apply`).

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_protocol::kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use fjord_protocol::kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::Ctx;

pub const VERSIONS: RangeInclusive<i16> = 0..=2;

pub fn handle(ctx: &Ctx, req: AlterConfigsRequest) -> Option<BytesMut> {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let changes: Vec<(String, Option<String>)> = r
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
            .collect();
        let denied = super::authz::config_resource_denied(
            ctx,
            r.resource_type,
            &r.resource_name,
            crate::security::authorizer::Operation::AlterConfigs,
        );
        let (code, msg) = match denied {
            Some((code, msg)) => (code, Some(msg.to_string())),
            None => super::incremental_alter_configs::apply(
                ctx,
                r.resource_type,
                &r.resource_name,
                &changes,
                false,
                req.validate_only,
            ),
        };
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name)
                .with_error_code(code.0)
                .with_error_message(msg.map(super::str_bytes)),
        );
    }
    ctx.respond(&AlterConfigsResponse::default().with_responses(responses))
}
