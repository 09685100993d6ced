//! CreateTopics: versions 2..=7. -1 partitions or replication factor means the
//! broker default; a single node only offers replication factor 1, in a
//! cluster the active controller places the replicas over the registered
//! brokers (a broker that is not the controller forwards the topic to it).
//!
//! A name given more than once is not created at all: as Kafka's controller
//! does, its entries are left out and one INVALID_REQUEST result per such
//! name ("Duplicate topic name.") follows the other results.

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use fjord_protocol::kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, TopicName,
};

use super::{str_bytes, Ctx};
use crate::config::{ConfigSource, TOPIC_CONFIG_NAMES};
use crate::errors;
use crate::security::authorizer::{Operation, ResourceType};

pub const VERSIONS: RangeInclusive<i16> = 2..=7;

pub fn handle(ctx: &Ctx, req: CreateTopicsRequest) -> Option<BytesMut> {
    let broker = &ctx.broker;
    let mut results = Vec::with_capacity(req.topics.len());
    let mut seen: HashMap<&str, bool> = HashMap::with_capacity(req.topics.len());
    // Names given more than once, in the order of their first entry.
    let mut duplicates = Vec::new();
    for t in &req.topics {
        match seen.get_mut(&*t.name.0) {
            None => {
                seen.insert(&t.name.0, false);
            }
            Some(again @ false) => {
                *again = true;
                duplicates.push(t.name.clone());
            }
            Some(true) => {}
        }
    }
    let duplicated = |name: &str| seen.get(name).copied().unwrap_or(false);
    for t in req
        .topics
        .iter()
        .filter(|t| !duplicated(&t.name.0))
        .cloned()
    {
        let name = t.name.0.to_string();
        let fail = |code: ErrorCode, msg: String| failed(t.name.clone(), code, msg);
        // CREATE on the cluster or on the topic.
        if !ctx.may_on_cluster(Operation::Create)
            && !ctx.may(ResourceType::Topic, &name, Operation::Create)
        {
            results.push(fail(
                ErrorCode::TOPIC_AUTHORIZATION_FAILED,
                "Authorization failed.".into(),
            ));
            continue;
        }
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
            // In a cluster the controller checks the brokers named
            // (INVALID_REPLICA_ASSIGNMENT); here, only their order.
            let cluster = broker.config.kraft.is_cluster();
            let bad = t.assignments.iter().enumerate().any(|(i, a)| {
                a.partition_index != i as i32
                    || (!cluster
                        && (a.broker_ids.iter().any(|b| b.0 != node) || a.broker_ids.len() != 1))
            });
            if bad && cluster {
                results.push(fail(
                    ErrorCode::INVALID_REPLICA_ASSIGNMENT,
                    "partition indexes must be 0, 1, 2, ... in order".into(),
                ));
                continue;
            }
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
        // In a cluster the controller checks the factor against the
        // registered brokers (INVALID_REPLICATION_FACTOR).
        if t.assignments.is_empty() && rf != 1 && !broker.config.kraft.is_cluster() {
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
        let assignments: Vec<Vec<i32>> = if broker.config.kraft.is_cluster() {
            t.assignments
                .iter()
                .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                .collect()
        } else {
            Vec::new() // checked above: each partition on this node
        };
        match broker.create_topic_answered_at_commit(
            &name,
            partitions,
            rf,
            &assignments,
            overrides,
            req.validate_only,
        ) {
            Ok(topic) => {
                let settings = topic.settings.read().clone();
                let explicit = topic.overrides.read().clone();
                let dynamic = broker.dynamic_configs();
                // The source as DescribeConfigs gives it (Kafka resolves the
                // same chain): the topic's own value, else the strongest
                // broker config behind it (e.g. the cluster-wide
                // min.insync.replicas written with eligible leader replicas:
                // DYNAMIC_DEFAULT_BROKER_CONFIG), else the default.
                let source = |n: &str| {
                    if explicit.contains_key(n) {
                        return ConfigSource::DynamicTopic as i8;
                    }
                    crate::config::topic_config(n)
                        .and_then(|d| d.broker_name)
                        .and_then(|b| dynamic.lookup(&broker.config, b).first().map(|c| c.0))
                        .unwrap_or(ConfigSource::Default) as i8
                };
                let configs = TOPIC_CONFIG_NAMES
                    .iter()
                    .map(|n| {
                        CreatableTopicConfigs::default()
                            .with_name(str_bytes(*n))
                            .with_value(settings.get(n).map(str_bytes))
                            .with_config_source(source(n))
                    })
                    .collect();
                let mut result = CreatableTopicResult::default()
                    .with_name(t.name)
                    .with_error_message(None)
                    .with_topic_id(if req.validate_only {
                        Default::default()
                    } else {
                        topic.id
                    });
                // Partitions, replication factor and configs are in the response from v5 on.
                if ctx.api_version >= 5 {
                    result = result
                        .with_num_partitions(partitions)
                        .with_replication_factor(if let Some(first) = assignments.first() {
                            first.len() as i16
                        } else if broker.config.kraft.is_cluster() {
                            rf
                        } else {
                            1
                        })
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
    for name in duplicates {
        results.push(failed(
            name,
            ErrorCode::INVALID_REQUEST,
            "Duplicate topic name.".into(),
        ));
    }
    ctx.respond(&CreateTopicsResponse::default().with_topics(results))
}

/// A topic that is not created: no id, partitions or replication factor
/// (-1) and no configs (an empty list), as Kafka's result defaults.
fn failed(name: TopicName, code: ErrorCode, msg: String) -> CreatableTopicResult {
    CreatableTopicResult::default()
        .with_name(name)
        .with_error_code(code.0)
        .with_error_message(Some(str_bytes(msg)))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
        .with_configs(Some(Vec::new()))
}
