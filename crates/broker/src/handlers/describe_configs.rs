//! DescribeConfigs: versions 1..=4, for topics (every Kafka 4.3 topic
//! config, with the source of its value: a topic override, a dynamic or
//! static broker config, or Kafka's default) and the broker (resource name =
//! node id: every non-internal broker config Kafka 4.3.1 defines, the
//! dynamic ones writable; resource name "": the cluster-wide dynamic
//! defaults that are set). Type and, when asked for (v3+), Kafka's
//! documentation come from [`crate::kafka_configs`]; PASSWORD configs are
//! sensitive and their value is null, as in Kafka.

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use fjord_protocol::kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use fjord_protocol::kafka_protocol::protocol::StrBytes;

use super::{str_bytes, Ctx};
use crate::config::{
    is_dynamic_broker_config, topic_config_for_broker, ConfigSource, ConfigType, TOPIC_CONFIGS,
};
use crate::kafka_configs;
use crate::state::Broker;

pub const VERSIONS: RangeInclusive<i16> = 1..=4;

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// Null or empty `configuration_keys` ask for every config, as in Kafka.
fn wanted(keys: &Option<Vec<StrBytes>>, name: &str) -> bool {
    keys.as_ref()
        .is_none_or(|k| k.is_empty() || k.iter().any(|k| &**k == name))
}

fn synonym(name: &str, source: ConfigSource, value: &str) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(str_bytes(name))
        .with_value(Some(str_bytes(value)))
        .with_source(source as i8)
}

/// Kafka's documentation of a config, when the request asks for it.
fn doc(config: Option<&kafka_configs::KafkaConfig>, include: bool) -> Option<StrBytes> {
    include.then(|| StrBytes::from_static_str(config.map_or("", |c| c.documentation)))
}

fn topic_result(
    broker: &Broker,
    name: &str,
    keys: &Option<Vec<StrBytes>>,
    include_synonyms: bool,
    include_documentation: bool,
) -> Option<Vec<DescribeConfigsResourceResult>> {
    let topic = broker.committed_topic(name)?;
    let settings = topic.settings.read().clone();
    let overrides = topic.overrides.read().clone();
    let dynamic = broker.dynamic_configs();
    let mut configs = Vec::new();
    for d in TOPIC_CONFIGS.iter().filter(|d| wanted(keys, d.name)) {
        let value = settings.get(d.name).unwrap_or_default();
        // Strongest first: the topic override, then the broker config chain.
        let mut chain: Vec<(String, ConfigSource, String)> = Vec::new();
        if overrides.contains_key(d.name) {
            chain.push((
                d.name.to_string(),
                ConfigSource::DynamicTopic,
                value.clone(),
            ));
        }
        // A config no broker config sets has no synonym for its default.
        if let Some(b) = d.broker_name {
            chain.extend(
                dynamic
                    .lookup(&broker.config, b)
                    .into_iter()
                    .map(|(src, v)| (b.to_string(), src, v)),
            );
        }
        let source = chain.first().map_or(ConfigSource::Default, |c| c.1);
        let synonyms = if include_synonyms {
            chain
                .iter()
                .map(|(n, src, v)| synonym(n, *src, v))
                .collect()
        } else {
            Vec::new()
        };
        configs.push(
            DescribeConfigsResourceResult::default()
                .with_name(str_bytes(d.name))
                .with_value(Some(str_bytes(value)))
                .with_read_only(false)
                .with_config_source(source as i8)
                .with_is_sensitive(false)
                .with_synonyms(synonyms)
                .with_config_type(d.kind as i8)
                .with_documentation(doc(kafka_configs::topic(d.name), include_documentation)),
        );
    }
    Some(configs)
}

fn broker_result(
    broker: &Broker,
    keys: &Option<Vec<StrBytes>>,
    include_synonyms: bool,
    include_documentation: bool,
) -> Vec<DescribeConfigsResourceResult> {
    let dynamic = broker.dynamic_configs();
    kafka_configs::BROKER
        .iter()
        .filter(|k| !k.internal && wanted(keys, k.name))
        .map(|k| {
            let name = k.name;
            let chain = dynamic.lookup(&broker.config, name);
            // A config with a null default and no value: null, DEFAULT_CONFIG.
            let (source, value) = match chain.first() {
                Some((source, value)) => (*source, Some(value.as_str())),
                None => (ConfigSource::Default, None),
            };
            let sensitive = k.is_sensitive();
            let shown = |v: &str| (!sensitive).then(|| str_bytes(v));
            let synonyms = if include_synonyms {
                chain
                    .iter()
                    .map(|(src, v)| synonym(name, *src, v).with_value(shown(v)))
                    .collect()
            } else {
                Vec::new()
            };
            DescribeConfigsResourceResult::default()
                .with_read_only(!is_dynamic_broker_config(name))
                .with_name(StrBytes::from_static_str(name))
                .with_value(value.and_then(shown))
                .with_config_source(source as i8)
                .with_is_sensitive(sensitive)
                .with_synonyms(synonyms)
                .with_config_type(k.config_type() as i8)
                .with_documentation(doc(Some(k), include_documentation))
        })
        .collect()
}

/// The cluster-wide dynamic defaults (resource name "").
fn default_broker_result(
    broker: &Broker,
    keys: &Option<Vec<StrBytes>>,
    include_synonyms: bool,
    include_documentation: bool,
) -> Vec<DescribeConfigsResourceResult> {
    let dynamic = broker.dynamic_configs();
    dynamic
        .cluster_default
        .iter()
        .filter(|(k, _)| wanted(keys, k))
        .map(|(name, value)| {
            let kafka = kafka_configs::broker(name);
            let kind = topic_config_for_broker(name).map_or_else(
                || kafka.map_or(ConfigType::String, |k| k.config_type()),
                |d| d.kind,
            );
            let source = ConfigSource::DynamicDefaultBroker;
            let synonyms = if include_synonyms {
                vec![synonym(name, source, value)]
            } else {
                Vec::new()
            };
            DescribeConfigsResourceResult::default()
                .with_name(str_bytes(name.clone()))
                .with_value(Some(str_bytes(value.clone())))
                .with_read_only(false)
                .with_config_source(source as i8)
                .with_synonyms(synonyms)
                .with_config_type(kind as i8)
                .with_documentation(doc(kafka, include_documentation))
        })
        .collect()
}

pub fn handle(ctx: &Ctx, req: DescribeConfigsRequest) -> Option<BytesMut> {
    let broker = &ctx.broker;
    let mut results = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let base = DescribeConfigsResult::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let fail = |code: ErrorCode, msg: String| {
            base.clone()
                .with_error_code(code.0)
                .with_error_message(Some(str_bytes(msg)))
        };
        let keys = &r.configuration_keys;
        let denied = super::authz::config_resource_denied(
            ctx,
            r.resource_type,
            &r.resource_name,
            crate::security::authorizer::Operation::DescribeConfigs,
        );
        let result = match r.resource_type {
            _ if denied.is_some() => {
                let (code, msg) = denied.unwrap_or((ErrorCode::NONE, ""));
                fail(code, msg.to_string())
            }
            RESOURCE_TOPIC => {
                match topic_result(
                    broker,
                    &r.resource_name,
                    keys,
                    req.include_synonyms,
                    req.include_documentation,
                ) {
                    Some(configs) => base.with_configs(configs),
                    // Kafka answers an unknown topic with an empty message.
                    None => fail(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, String::new()),
                }
            }
            RESOURCE_BROKER => {
                let own = broker.config.node_id.0.to_string();
                if r.resource_name.is_empty() {
                    base.with_configs(default_broker_result(
                        broker,
                        keys,
                        req.include_synonyms,
                        req.include_documentation,
                    ))
                } else if *r.resource_name == *own {
                    base.with_configs(broker_result(
                        broker,
                        keys,
                        req.include_synonyms,
                        req.include_documentation,
                    ))
                } else {
                    fail(
                        ErrorCode::INVALID_REQUEST,
                        format!(
                            "Unexpected broker id, expected {own}, but received {}",
                            &*r.resource_name
                        ),
                    )
                }
            }
            _ => fail(
                ErrorCode::INVALID_REQUEST,
                "unsupported resource type".to_string(),
            ),
        };
        results.push(result);
    }
    ctx.respond(&DescribeConfigsResponse::default().with_results(results))
}
