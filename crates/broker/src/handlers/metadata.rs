//! Metadata: versions 0..=13. Topics are auto-created when the broker allows
//! it and the request does (v4+ `allow_auto_topic_creation`); the answer that
//! creates one says UNKNOWN_TOPIC_OR_PARTITION for it, as Kafka 4's does. v13 adds a
//! top-level error code (KIP-1102), always 0 here: Kafka sets it only to ask
//! a client to rebootstrap.
//!
//! With an authorizer, a topic needs DESCRIBE: a list-all answer leaves the
//! others out (their names never leak), a named one is answered
//! TOPIC_AUTHORIZATION_FAILED; auto-creation needs CREATE on the cluster
//! or the topic (TOPIC_AUTHORIZATION_FAILED otherwise), as in Kafka.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::Arc;

use bytes::BytesMut;
use fjord_model::{ErrorCode, NodeId};
use fjord_protocol::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use fjord_protocol::kafka_protocol::messages::{
    BrokerId, MetadataRequest, MetadataResponse, TopicName,
};

use super::authz::AUTHORIZED_OPERATIONS_OMITTED;
use super::{str_bytes, Ctx};
use crate::errors;
use crate::security::authorizer::{Operation, ResourceType, CLUSTER_NAME};
use crate::state::{Broker, StateError, Topic};

pub const VERSIONS: RangeInclusive<i16> = 0..=13;

pub fn handle(ctx: &Ctx, req: MetadataRequest) -> Option<BytesMut> {
    let broker = &ctx.broker;
    let auto_create =
        broker.config.auto_create_topics && (ctx.api_version < 4 || req.allow_auto_topic_creation);
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && ctx.api_version == 0,
    };
    let mut topics = Vec::new();
    let may_describe = |name: &str| ctx.may(ResourceType::Topic, name, Operation::Describe);
    let denied = |name: &str| {
        MetadataResponseTopic::default()
            .with_name(Some(TopicName(str_bytes(name))))
            .with_error_code(ErrorCode::TOPIC_AUTHORIZATION_FAILED.0)
    };
    if all {
        // Topics the principal may not DESCRIBE are left out: no name leaks.
        for t in broker.topics() {
            if may_describe(&t.name) {
                topics.push(describe(&t));
            }
        }
    } else {
        for rt in req.topics.unwrap_or_default() {
            let name = match &rt.name {
                Some(n) => n.0.to_string(),
                None => match broker.topic_by_id(rt.topic_id) {
                    Some(t) => t.name.clone(),
                    None => {
                        topics.push(
                            MetadataResponseTopic::default()
                                .with_error_code(ErrorCode::UNKNOWN_TOPIC_ID.0)
                                .with_topic_id(rt.topic_id),
                        );
                        continue;
                    }
                },
            };
            if !may_describe(&name) {
                topics.push(denied(&name));
                continue;
            }
            // Auto-creation needs CREATE on the cluster or the topic.
            let create_denied = auto_create
                && broker.topic(&name).is_none()
                && fjord_model::is_valid_topic_name(&name)
                && !ctx.may_on_cluster(Operation::Create)
                && !ctx.may(ResourceType::Topic, &name, Operation::Create);
            if create_denied {
                topics.push(denied(&name));
                continue;
            }
            topics.push(lookup_or_create(broker, &name, auto_create));
        }
    }
    // v8+ may ask for the principal's operations on each topic found, and
    // v8-v10 on the cluster (Kafka's bit fields; left at "not requested"
    // otherwise).
    if ctx.api_version >= 8 && req.include_topic_authorized_operations {
        for t in topics
            .iter_mut()
            .filter(|t| t.error_code == ErrorCode::NONE.0)
        {
            if let Some(name) = &t.name {
                t.topic_authorized_operations =
                    ctx.authorized_operations(ResourceType::Topic, name);
            }
        }
    }
    let cluster_operations =
        if (8..=10).contains(&ctx.api_version) && req.include_cluster_authorized_operations {
            ctx.authorized_operations(ResourceType::Cluster, CLUSTER_NAME)
        } else {
            AUTHORIZED_OPERATIONS_OMITTED
        };
    let listed = ctx.live_brokers();
    let controller = BrokerId(broker.controller_id(&listed));
    let resp = MetadataResponse::default()
        .with_cluster_authorized_operations(cluster_operations)
        .with_brokers(
            listed
                .into_iter()
                .map(|b| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(b.id.0))
                        .with_host(str_bytes(b.host))
                        .with_port(i32::from(b.port))
                        .with_rack(b.rack.map(str_bytes))
                })
                .collect(),
        )
        .with_cluster_id(Some(str_bytes(broker.cluster_id.clone())))
        .with_controller_id(controller)
        .with_topics(topics);
    ctx.respond(&resp)
}

fn lookup_or_create(broker: &Arc<Broker>, name: &str, auto_create: bool) -> MetadataResponseTopic {
    let unknown = |code: ErrorCode| {
        MetadataResponseTopic::default()
            .with_name(Some(TopicName(str_bytes(name))))
            .with_error_code(code.0)
    };
    if let Some(t) = broker.topic(name) {
        return describe(&t);
    }
    if !fjord_model::is_valid_topic_name(name) {
        return unknown(ErrorCode::INVALID_TOPIC_EXCEPTION);
    }
    if !auto_create {
        return unknown(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
    }
    match broker.create_topic(name, broker.config.num_partitions, BTreeMap::new(), false) {
        // As Kafka 4 (KRaft): the request that auto-creates a topic gets
        // UNKNOWN_TOPIC_OR_PARTITION for it (creation goes to the controller
        // asynchronously there); clients retry Metadata and then see it whole.
        // Clients' delivery timeouts and unknown-partition errors depend on that
        // first answer (rust-rdkafka's producer tests check both).
        Ok(t) => unknown(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)
            .with_is_internal(crate::state::is_internal_topic(&t.name)),
        // Another request created it first.
        Err(_) if broker.topic(name).is_some() => broker
            .topic(name)
            .map(|t| describe(&t))
            .unwrap_or_else(|| unknown(ErrorCode::LEADER_NOT_AVAILABLE)),
        // Created and committed, its logs not created here yet (a
        // CreateTopics is answered at the commit): retriable, as Kafka
        // answers for a topic being created.
        Err(StateError::Kafka {
            code: ErrorCode::TOPIC_ALREADY_EXISTS,
            ..
        }) => unknown(ErrorCode::LEADER_NOT_AVAILABLE),
        Err(e) => {
            tracing::warn!(topic = name, "auto-create failed: {e}");
            unknown(errors::state_error(&e).0)
        }
    }
}

/// Node ids as the wire's broker ids.
pub fn broker_ids(nodes: &[NodeId]) -> Vec<BrokerId> {
    nodes.iter().map(|n| BrokerId(n.0)).collect()
}

pub fn describe(t: &Topic) -> MetadataResponseTopic {
    let partitions = t
        .partitions
        .read()
        .iter()
        .map(|p| {
            let r = p.replica_state();
            MetadataResponsePartition::default()
                .with_partition_index(p.index.0)
                .with_leader_id(BrokerId(r.leader.0))
                .with_leader_epoch(r.leader_epoch.0)
                .with_replica_nodes(broker_ids(&r.replicas))
                .with_isr_nodes(broker_ids(&r.isr))
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(t.name.clone()))))
        .with_topic_id(t.id)
        .with_is_internal(crate::state::is_internal_topic(&t.name))
        .with_partitions(partitions)
}
