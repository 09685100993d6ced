//! CreateTopics: versions 2..=7. -1 partitions or replication factor means the
//! broker default; a single node only offers replication factor 1.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use fjord_protocol::kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::{str_bytes, Ctx};
use crate::config::TOPIC_CONFIG_NAMES;
use crate::errors;

pub const VERSIONS: RangeInclusive<i16> = 2..=7;

pub fn handle(ctx: &Ctx, req: CreateTopicsRequest) -> Option<BytesMut> {
    let broker = &ctx.broker;
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let fail = |code: ErrorCode, msg: String| {
            CreatableTopicResult::default()
                .with_name(t.name.clone())
                .with_error_code(code.0)
                .with_error_message(Some(str_bytes(msg)))
                .with_num_partitions(-1)
                .with_replication_factor(-1)
        };
        let rf = if t.replication_factor == -1 {
            broker.config.default_replication_factor
        } else {
            t.replication_factor
        };
        let partitions = if !t.assignments.is_empty() {
            if t.num_partitions != -1 || t.replication_factor != -1 {
                results.push(fail(
                    ErrorCode::INVALID_REQUEST,
                    "both assignments and partitions/replication factor were given".into(),
                ));
                continue;
            }
            let node = broker.config.node_id.0;
            let bad = t.assignments.iter().enumerate().any(|(i, a)| {
                a.partition_index != i as i32
                    || a.broker_ids.iter().any(|b| b.0 != node)
                    || a.broker_ids.len() != 1
            });
            if bad {
                results.push(fail(
                    ErrorCode::INVALID_REPLICA_ASSIGNMENT,
                    format!("this single-node cluster only has broker {node}"),
                ));
                continue;
            }
            t.assignments.len() as i32
        } else if t.num_partitions == -1 {
            broker.config.num_partitions
        } else {
            t.num_partitions
        };
        if t.assignments.is_empty() && rf != 1 {
            results.push(fail(
                ErrorCode::INVALID_REPLICATION_FACTOR,
                format!("replication factor {rf} is larger than the 1 available broker"),
            ));
            continue;
        }
        let mut overrides = BTreeMap::new();
        let mut bad_config = None;
        for c in &t.configs {
            match &c.value {
                Some(v) => {
                    overrides.insert(c.name.to_string(), v.to_string());
                }
                None => bad_config = Some(format!("null value for config '{}'", &*c.name)),
            }
        }
        if let Some(msg) = bad_config {
            results.push(fail(ErrorCode::INVALID_CONFIG, msg));
            continue;
        }
        match broker.create_topic(&name, partitions, overrides, req.validate_only) {
            Ok(topic) => {
                let settings = topic.settings.read().clone();
                let explicit = topic.overrides.read().clone();
                let configs = TOPIC_CONFIG_NAMES
                    .iter()
                    .map(|n| {
                        CreatableTopicConfigs::default()
                            .with_name(str_bytes(*n))
                            .with_value(settings.get(n).map(str_bytes))
                            .with_config_source(if explicit.contains_key(*n) { 1 } else { 5 })
                    })
                    .collect();
                let mut result = CreatableTopicResult::default()
                    .with_name(t.name)
                    .with_topic_id(if req.validate_only {
                        Default::default()
                    } else {
                        topic.id
                    });
                // Partitions, replication factor and configs are in the response from v5 on.
                if ctx.api_version >= 5 {
                    result = result
                        .with_num_partitions(partitions)
                        .with_replication_factor(1)
                        .with_configs(Some(configs));
                }
                results.push(result);
            }
            Err(e) => {
                let (code, msg) = errors::state_error(&e);
                results.push(fail(code, msg));
            }
        }
    }
    ctx.respond(&CreateTopicsResponse::default().with_topics(results))
}
