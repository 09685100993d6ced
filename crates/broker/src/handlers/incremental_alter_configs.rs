//! IncrementalAlterConfigs: versions 0..=1. SET and DELETE on any topic
//! config and on the dynamic broker configs; APPEND and SUBTRACT on
//! list-valued ones (`cleanup.policy`, the throttled-replica lists,
//! `log.cleanup.policy`).

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use fjord_protocol::kafka_protocol::messages::{
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{str_bytes, Ctx};
use crate::config::{is_dynamic_broker_config, topic_config, topic_config_for_broker, ConfigType};
use crate::errors;
use crate::state::StateError;

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
        RESOURCE_BROKER => {
            match alter_broker(ctx, resource_name, changes, incremental, validate_only) {
                Ok(()) => (ErrorCode::NONE, None),
                Err(e) => {
                    let (code, msg) = errors::state_error(&e);
                    (code, Some(msg))
                }
            }
        }
        _ => (
            ErrorCode::INVALID_REQUEST,
            Some("unsupported resource type".into()),
        ),
    }
}

/// Dynamic broker configs: resource name = this node's id (its own values)
/// or "" (cluster-wide defaults). Only configs Fjord can change at run time
/// are accepted; a plain AlterConfigs replaces all of the resource's dynamic
/// values, as in Kafka.
fn alter_broker(
    ctx: &Ctx,
    resource_name: &str,
    changes: &[(String, Option<String>)],
    incremental: bool,
    validate_only: bool,
) -> Result<(), StateError> {
    let own = ctx.broker.config.node_id.0.to_string();
    let cluster_default = resource_name.is_empty();
    if !cluster_default && resource_name != own {
        return Err(StateError::kafka(
            ErrorCode::INVALID_REQUEST,
            format!("Unexpected broker id, expected {own}, but received {resource_name}"),
        ));
    }
    // Deleting a replication throttle (never set here) changes nothing.
    let changes: Vec<(String, Option<String>)> = changes
        .iter()
        .filter(|(k, v)| {
            !(v.is_none() && crate::config::REPLICATION_THROTTLE_CONFIGS.contains(&k.as_str()))
        })
        .cloned()
        .collect();
    let changes = changes.as_slice();
    let fixed: Vec<&str> = changes
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !is_dynamic_broker_config(k))
        .collect();
    if !fixed.is_empty() {
        return Err(StateError::kafka(
            ErrorCode::INVALID_REQUEST,
            format!(
                "Cannot update these configs dynamically: [{}]",
                fixed.join(", ")
            ),
        ));
    }
    ctx.broker.alter_dynamic_configs(
        |current| {
            let mut new = current.clone();
            let map = if cluster_default {
                &mut new.cluster_default
            } else {
                &mut new.broker
            };
            if !incremental {
                map.clear();
            }
            for (k, v) in changes {
                match v {
                    Some(v) => map.insert(k.clone(), v.trim().to_string()),
                    None => map.remove(k),
                };
            }
            Ok(new)
        },
        validate_only,
    )
}

pub fn handle(ctx: &Ctx, req: IncrementalAlterConfigsRequest) -> Option<BytesMut> {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let denied = super::authz::config_resource_denied(
            ctx,
            r.resource_type,
            &r.resource_name,
            crate::security::authorizer::Operation::AlterConfigs,
        );
        let result = match denied {
            Some((code, msg)) => Err((code, msg.to_string())),
            None => Ok(()),
        }
        .and_then(|()| changes(ctx, &r))
        .and_then(|changes| {
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

/// Whether `name` is list-valued for this resource type (APPEND/SUBTRACT apply).
fn is_list_config(resource_type: i8, name: &str) -> bool {
    let def = match resource_type {
        RESOURCE_TOPIC => topic_config(name),
        RESOURCE_BROKER => topic_config_for_broker(name),
        _ => None,
    };
    def.is_some_and(|d| d.kind == ConfigType::List)
}

/// The value a list config has now, for APPEND and SUBTRACT.
fn current_value(ctx: &Ctx, resource_type: i8, resource_name: &str, name: &str) -> String {
    let broker = &ctx.broker;
    if resource_type == RESOURCE_TOPIC {
        return broker
            .committed_topic(resource_name)
            .and_then(|t| t.settings.read().get(name))
            .unwrap_or_default();
    }
    let dynamic = broker.dynamic_configs();
    let own = if resource_name.is_empty() {
        dynamic.cluster_default.get(name)
    } else {
        dynamic.broker.get(name)
    };
    match own {
        Some(v) => v.clone(),
        None => dynamic
            .lookup(&broker.config, name)
            .into_iter()
            .next()
            .map(|(_, v)| v)
            .unwrap_or_default(),
    }
}

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
            OP_APPEND | OP_SUBTRACT if is_list_config(r.resource_type, &name) => {
                let current = current_value(ctx, r.resource_type, &r.resource_name, &name);
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
