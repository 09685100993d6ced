//! DescribeConfigs: versions 1..=4, for topics (every topic config Fjord
//! knows, overrides marked DYNAMIC_TOPIC_CONFIG) and the broker (read-only).

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use fjord_protocol::kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::{str_bytes, Ctx};
use crate::config::TOPIC_CONFIG_NAMES;

pub const VERSIONS: RangeInclusive<i16> = 1..=4;

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// Kafka's ConfigSource values.
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// Kafka's ConfigType of a topic config (v3+).
fn config_type(name: &str) -> i8 {
    match name {
        "cleanup.policy" => 7,                                               // LIST
        "message.timestamp.type" => 2,                                       // STRING
        "segment.bytes" | "max.message.bytes" | "index.interval.bytes" => 3, // INT
        _ => 5,                                                              // LONG
    }
}

/// The broker config that sets the default of a topic config.
fn broker_synonym(topic_config: &str) -> Option<&'static str> {
    Some(match topic_config {
        "cleanup.policy" => "log.cleanup.policy",
        "retention.ms" => "log.retention.ms",
        "retention.bytes" => "log.retention.bytes",
        "segment.bytes" => "log.segment.bytes",
        "segment.ms" => "log.roll.ms",
        "max.message.bytes" => "message.max.bytes",
        "message.timestamp.type" => "log.message.timestamp.type",
        "index.interval.bytes" => "log.index.interval.bytes",
        "flush.messages" => "log.flush.interval.messages",
        "flush.ms" => "log.flush.interval.ms",
        _ => return None,
    })
}

/// Null or empty `configuration_keys` ask for every config, as in Kafka.
fn wanted(
    keys: &Option<Vec<fjord_protocol::kafka_protocol::protocol::StrBytes>>,
    name: &str,
) -> bool {
    keys.as_ref()
        .is_none_or(|k| k.is_empty() || k.iter().any(|k| &**k == name))
}

pub fn handle(ctx: &Ctx, req: DescribeConfigsRequest) -> Option<BytesMut> {
    let broker = &ctx.broker;
    let mut results = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let base = DescribeConfigsResult::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        match r.resource_type {
            RESOURCE_TOPIC => {
                let Some(topic) = broker.topic(&r.resource_name) else {
                    results.push(
                        base.with_error_code(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0)
                            .with_error_message(Some(str_bytes(format!(
                                "topic '{}' does not exist",
                                &*r.resource_name
                            )))),
                    );
                    continue;
                };
                let settings = topic.settings.read().clone();
                let overrides = topic.overrides.read().clone();
                let defaults = &broker.config.topic_defaults;
                let mut configs = Vec::new();
                for name in TOPIC_CONFIG_NAMES
                    .iter()
                    .copied()
                    .filter(|n| wanted(&r.configuration_keys, n))
                {
                    let dynamic = overrides.contains_key(name);
                    let mut synonyms = Vec::new();
                    if req.include_synonyms {
                        if dynamic {
                            synonyms.push(
                                DescribeConfigsSynonym::default()
                                    .with_name(str_bytes(name))
                                    .with_value(settings.get(name).map(str_bytes))
                                    .with_source(SOURCE_DYNAMIC_TOPIC),
                            );
                        }
                        if let Some(b) = broker_synonym(name) {
                            synonyms.push(
                                DescribeConfigsSynonym::default()
                                    .with_name(str_bytes(b))
                                    .with_value(defaults.get(name).map(str_bytes))
                                    .with_source(SOURCE_DEFAULT),
                            );
                        }
                    }
                    configs.push(
                        DescribeConfigsResourceResult::default()
                            .with_name(str_bytes(name))
                            .with_value(settings.get(name).map(str_bytes))
                            .with_config_source(if dynamic {
                                SOURCE_DYNAMIC_TOPIC
                            } else {
                                SOURCE_DEFAULT
                            })
                            .with_synonyms(synonyms)
                            .with_config_type(config_type(name)),
                    );
                }
                results.push(base.with_configs(configs));
            }
            RESOURCE_BROKER => {
                let own = broker.config.node_id.0.to_string();
                if !r.resource_name.is_empty() && *r.resource_name != *own {
                    results.push(
                        base.with_error_code(ErrorCode::INVALID_REQUEST.0)
                            .with_error_message(Some(str_bytes(format!(
                                "this node is broker {own}"
                            )))),
                    );
                    continue;
                }
                let configs = broker
                    .config
                    .describe()
                    .into_iter()
                    .filter(|(k, _)| wanted(&r.configuration_keys, k))
                    .map(|(k, v)| {
                        DescribeConfigsResourceResult::default()
                            .with_name(str_bytes(k))
                            .with_value(Some(str_bytes(v)))
                            .with_read_only(true)
                            .with_config_source(SOURCE_STATIC_BROKER)
                            .with_config_type(2)
                    })
                    .collect();
                results.push(base.with_configs(configs));
            }
            _ => results.push(
                base.with_error_code(ErrorCode::INVALID_REQUEST.0)
                    .with_error_message(Some(str_bytes("unsupported resource type"))),
            ),
        }
    }
    ctx.respond(&DescribeConfigsResponse::default().with_results(results))
}
