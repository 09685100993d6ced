//! IncrementalAlterConfigs: versions 0..=1. SET and DELETE on any topic
//! config; APPEND and SUBTRACT on the list-valued `cleanup.policy`.

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use fjord_protocol::kafka_protocol::messages::{
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{str_bytes, Ctx};
use crate::errors;

pub const VERSIONS: RangeInclusive<i16> = 0..=1;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// Apply config changes to one resource; the shared core of both Alter APIs.
pub fn apply(
    ctx: &Ctx,
    resource_type: i8,
    resource_name: &str,
    changes: &[(String, Option<String>)],
    incremental: bool,
    validate_only: bool,
) -> (ErrorCode, Option<String>) {
    match resource_type {
        RESOURCE_TOPIC => {
            match ctx
                .broker
                .alter_topic_config(resource_name, changes, incremental, validate_only)
            {
                Ok(()) => (ErrorCode::NONE, None),
                Err(e) => {
                    let (code, msg) = errors::state_error(&e);
                    (code, Some(msg))
                }
            }
        }
        RESOURCE_BROKER => (
            ErrorCode::INVALID_REQUEST,
            Some(
                "broker configs are static in Fjord: set them at start-up with --set or --config"
                    .into(),
            ),
        ),
        _ => (
            ErrorCode::INVALID_REQUEST,
            Some("unsupported resource type".into()),
        ),
    }
}

pub fn handle(ctx: &Ctx, req: IncrementalAlterConfigsRequest) -> Option<BytesMut> {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let result = changes(ctx, &r).and_then(|changes| {
            let (code, msg) = apply(
                ctx,
                r.resource_type,
                &r.resource_name,
                &changes,
                true,
                req.validate_only,
            );
            if code.is_none() {
                Ok(())
            } else {
                Err((code, msg.unwrap_or_default()))
            }
        });
        let (code, msg) = match result {
            Ok(()) => (ErrorCode::NONE, None),
            Err((code, msg)) => (code, Some(str_bytes(msg))),
        };
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name)
                .with_error_code(code.0)
                .with_error_message(msg),
        );
    }
    ctx.respond(&IncrementalAlterConfigsResponse::default().with_responses(responses))
}

type Changes = Vec<(String, Option<String>)>;

/// Turn the operations into plain set/delete changes.
fn changes(
    ctx: &Ctx,
    r: &fjord_protocol::kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource,
) -> Result<Changes, (ErrorCode, String)> {
    let mut out = Vec::with_capacity(r.configs.len());
    for c in &r.configs {
        let name = c.name.to_string();
        let value = c.value.as_ref().map(|v| v.to_string());
        match c.config_operation {
            OP_SET => out.push((name, Some(value.unwrap_or_default()))),
            OP_DELETE => out.push((name, None)),
            OP_APPEND | OP_SUBTRACT
                if name == "cleanup.policy" && r.resource_type == RESOURCE_TOPIC =>
            {
                let current = ctx
                    .broker
                    .topic(&r.resource_name)
                    .map(|t| t.settings.read().cleanup_policy.clone())
                    .unwrap_or_default();
                let mut items: Vec<String> = current
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                for v in value
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                {
                    if c.config_operation == OP_APPEND {
                        if !items.iter().any(|i| i == v) {
                            items.push(v.to_string());
                        }
                    } else {
                        items.retain(|i| i != v);
                    }
                }
                out.push((name, Some(items.join(","))));
            }
            OP_APPEND | OP_SUBTRACT => {
                return Err((
                    ErrorCode::INVALID_CONFIG,
                    format!("'{name}' is not a list config"),
                ))
            }
            op => {
                return Err((
                    ErrorCode::INVALID_REQUEST,
                    format!("unknown config operation {op}"),
                ))
            }
        }
    }
    Ok(out)
}
