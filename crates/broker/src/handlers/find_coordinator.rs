//! FindCoordinator: versions 0..=6. On a single node this node coordinates
//! every group; in a cluster the leader of the group's `__consumer_offsets`
//! partition does (another live broker is named as it is); v4+
//! answers per key in `coordinators`. A group whose `__consumer_offsets`
//! shard is still loading (or whose topic is being created) gets
//! COORDINATOR_NOT_AVAILABLE, which clients retry; one whose shard failed to
//! load is named, and its requests answer NOT_COORDINATOR (as from Kafka).
//!
//! Key type 1 names the transaction coordinator of a transactional id the
//! same way, over `__transaction_state` (created on the first such request,
//! as Kafka does; COORDINATOR_NOT_AVAILABLE meanwhile, which clients retry).
//! v5 (TRANSACTION_ABORTABLE) changes nothing for groups; v6 adds key type 2,
//! share groups, which Fjord does not have: INVALID_REQUEST, as Kafka
//! answers while share groups are off. Any other key type is INVALID_REQUEST.

use std::ops::RangeInclusive;

use bytes::BytesMut;
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::find_coordinator_response::Coordinator;
use fjord_protocol::kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;

use super::{str_bytes, Ctx};

pub const VERSIONS: RangeInclusive<i16> = 0..=6;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;
const KEY_TYPE_SHARE: i8 = 2;

/// Kafka's default message for INVALID_REQUEST.
const INVALID_REQUEST_MESSAGE: &str = "This most likely occurs because of a request being malformed by the client library or the message was sent to an incompatible broker. See the broker logs for more details.";

/// The answer for one key: NONE (this node) or why not, with the message
/// Kafka sends in every version (an unknown key type).
fn error_for(ctx: &Ctx, key_type: i8, key: &str) -> (ErrorCode, Option<&'static str>) {
    match key_type {
        KEY_TYPE_GROUP => match ctx.broker.groups.get() {
            None => (ErrorCode::COORDINATOR_NOT_AVAILABLE, None),
            Some(g) => (g.coordinator_error(key), None),
        },
        KEY_TYPE_TRANSACTION => match ctx.broker.txns.get() {
            None => (ErrorCode::COORDINATOR_NOT_AVAILABLE, None),
            Some(t) => (t.coordinator_error(key), None),
        },
        KEY_TYPE_SHARE => (ErrorCode::INVALID_REQUEST, None),
        _ => (ErrorCode::INVALID_REQUEST, Some(INVALID_REQUEST_MESSAGE)),
    }
}

/// The error message Kafka sends: in v1–v3 the code's standard message
/// ("NONE" for no error), in v4+ an empty string, each unless we have a
/// message of our own.
fn message(version: i16, error: ErrorCode, ours: Option<&'static str>) -> &'static str {
    if let Some(m) = ours {
        return m;
    }
    if version >= 4 {
        return "";
    }
    match error {
        ErrorCode::NONE => "NONE",
        ErrorCode::COORDINATOR_NOT_AVAILABLE => "The coordinator is not available.",
        ErrorCode::COORDINATOR_LOAD_IN_PROGRESS => {
            "The coordinator is loading and hence can't process requests."
        }
        ErrorCode::NOT_COORDINATOR => "This is not the correct coordinator.",
        ErrorCode::INVALID_REQUEST => INVALID_REQUEST_MESSAGE,
        other => other.name(),
    }
}

/// In a cluster, the live broker that leads the key's `__consumer_offsets`
/// (group) or `__transaction_state` (transactional id) partition when that
/// is another broker (a coordinator lives with the partition's leader).
fn other_coordinator(ctx: &Ctx, key_type: i8, key: &str) -> Option<(i32, String, i32)> {
    let broker = &ctx.broker;
    if !broker.config.kraft.is_cluster() {
        return None;
    }
    let (topic, index) = match key_type {
        KEY_TYPE_GROUP => {
            let topic = broker.topic(crate::groups::OFFSETS_TOPIC)?;
            let index = fjord_group::offsets_partition_for(key, topic.partition_count());
            (topic, index)
        }
        KEY_TYPE_TRANSACTION => {
            let topic = broker.topic(crate::txns::TXN_STATE_TOPIC)?;
            let index = fjord_txn::state_partition_for(key, topic.partition_count()).0;
            (topic, index)
        }
        _ => return None,
    };
    let leader = topic.partition(index)?.replica_state().leader;
    if leader == broker.config.node_id {
        return None;
    }
    let live = ctx.live_brokers().into_iter().find(|b| b.id == leader)?;
    Some((live.id.0, live.host, i32::from(live.port)))
}

pub fn handle(ctx: &Ctx, req: FindCoordinatorRequest) -> Option<BytesMut> {
    let broker = &ctx.broker;
    let answer = |error: ErrorCode| {
        if error.is_none() {
            // This broker, at its endpoint of the client's listener.
            let me = ctx
                .live_brokers()
                .into_iter()
                .find(|b| b.id == broker.config.node_id);
            match me {
                Some(b) => (b.id.0, b.host, i32::from(b.port)),
                None => (
                    broker.config.node_id.0,
                    broker.config.advertised_host.clone(),
                    broker.config.advertised_port as i32,
                ),
            }
        } else {
            (-1, String::new(), -1)
        }
    };
    let mut resp = FindCoordinatorResponse::default();
    if ctx.api_version >= 4 {
        let keys: Vec<StrBytes> = req.coordinator_keys;
        resp = resp.with_coordinators(
            keys.into_iter()
                .map(|k| {
                    let (error, ours, (node, host, port)) =
                        match other_coordinator(ctx, req.key_type, k.as_str()) {
                            Some(other) => (ErrorCode::NONE, None, other),
                            None => {
                                let (error, ours) = error_for(ctx, req.key_type, k.as_str());
                                (error, ours, answer(error))
                            }
                        };
                    Coordinator::default()
                        .with_key(k)
                        .with_node_id(BrokerId(node))
                        .with_host(str_bytes(host))
                        .with_port(port)
                        .with_error_code(error.0)
                        .with_error_message(Some(str_bytes(message(ctx.api_version, error, ours))))
                })
                .collect(),
        );
    } else {
        let (error, ours, (node, host, port)) =
            match other_coordinator(ctx, req.key_type, req.key.as_str()) {
                Some(other) => (ErrorCode::NONE, None, other),
                None => {
                    let (error, ours) = error_for(ctx, req.key_type, req.key.as_str());
                    (error, ours, answer(error))
                }
            };
        resp = resp
            .with_error_code(error.0)
            .with_error_message(Some(str_bytes(message(ctx.api_version, error, ours))))
            .with_node_id(BrokerId(node))
            .with_host(str_bytes(host))
            .with_port(port);
    }
    ctx.respond(&resp)
}
