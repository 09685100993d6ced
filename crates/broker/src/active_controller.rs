//! The active controller's shell on a cluster node (issue 12): the logic is
//! `fjord_controller::Controller` (sans-IO); this module gives it time,
//! requests and a way to propose.
//!
//! - A thread (`fjord-controller`) checks every `CONTROLLER_TICK_MS`
//!   whether this node is the active KRaft leader. On becoming it, the
//!   controller is activated on the committed image (every registered
//!   broker gets a fresh session from now, as in Kafka), bound to the
//!   metadata epoch it leads: every record it decides is proposed in that
//!   epoch only (`Broker::propose_in_epoch`), so once the node stops
//!   leading it (a cut-off leader resigns) nothing it decides on its stale
//!   image reaches the next leader. On losing it, the controller is
//!   dropped; leading a later epoch activates a fresh one. While active it calls `Controller::tick`
//!   (fencing brokers whose `broker.session.timeout.ms` passed, which moves
//!   their leaderships to other ISR members; preferred-leader rebalance),
//!   after telling it which nodes fetched the metadata log from this node
//!   while some broker is under the activation grace
//!   (`Controller::quorum_fetched`),
//!   and proposes the records. A new cluster's first leader proposes the
//!   bootstrap records (the `metadata.version` feature level) first.
//! - [`Apis`] serves BrokerRegistration, BrokerHeartbeat and
//!   AllocateProducerIds, and partition leaders' AlterPartition (ISR
//!   changes, `Controller::alter_partition`) on the CONTROLLER listener
//!   (`fjord_quorum::ControllerApis`): each runs on the controller under
//!   the broker's admin lock, its records are proposed through the quorum,
//!   and the answer is sent once they are committed. A node that is not
//!   the active controller answers NOT_CONTROLLER, and the broker looks
//!   for the leader again. Admin requests other brokers forward
//!   (CreateTopics, DeleteTopics, CreatePartitions, AlterConfigs,
//!   IncrementalAlterConfigs, ElectLeaders, AlterUserScramCredentials,
//!   AlterClientQuotas, CreateAcls, DeleteAcls; see
//!   `controller_link`) go through this
//!   node's own handlers, which run them on the controller.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::BytesMut;
use fjord_controller::{BrokerHeartbeat, BrokerRegistration, FeatureRange, Listener};
use fjord_model::limits::CONTROLLER_TICK_MS;
use fjord_model::{ErrorCode, NodeId};
use fjord_protocol::kafka_protocol::messages::{
    AllocateProducerIdsResponse, AlterPartitionRequest, AlterPartitionResponse,
    BrokerHeartbeatResponse, BrokerId, BrokerRegistrationResponse, ProducerId,
};
use fjord_protocol::kafka_protocol::protocol::Message;
use fjord_protocol::{decode_request, encode_response, response_header_version, Reader};
use fjord_protocol::{Request, RequestHeader};
use fjord_quorum::ConnectionId;
use parking_lot::Mutex;
use std::sync::atomic::Ordering;

use crate::cluster_metadata as cm;
use crate::state::{Broker, Quorum};

/// The controller APIs of this node's CONTROLLER listener.
pub(crate) struct Apis {
    broker: Weak<Broker>,
    /// The connection each broker's last registration or heartbeat came
    /// on: when it closes, the controller is told
    /// (`Controller::connection_lost`), so a killed broker is fenced
    /// without waiting out its session. A broker that reconnected has a
    /// newer one here, and the old one's close says nothing.
    heartbeat_connections: Mutex<HashMap<NodeId, ConnectionId>>,
}

impl Apis {
    pub(crate) fn new(broker: Weak<Broker>) -> Apis {
        Apis {
            broker,
            heartbeat_connections: Mutex::new(HashMap::new()),
        }
    }

    fn heard_from(&self, broker: i32, conn: ConnectionId) {
        self.heartbeat_connections
            .lock()
            .insert(NodeId(broker), conn);
    }
}

impl fjord_quorum::ControllerApis for Apis {
    fn closed(&self, conn: ConnectionId) {
        let closed_ms = crate::state::now_ms();
        let lost: Vec<NodeId> = {
            let mut map = self.heartbeat_connections.lock();
            let lost = map
                .iter()
                .filter(|(_, c)| **c == conn)
                .map(|(id, _)| *id)
                .collect::<Vec<_>>();
            for id in &lost {
                map.remove(id);
            }
            lost
        };
        let Some(b) = self.broker.upgrade() else {
            return;
        };
        for id in lost {
            let lost = b.as_active_controller(|c, _| {
                c.connection_lost(id, closed_ms);
                Ok(fjord_controller::ControllerResult {
                    records: Vec::new(),
                    response: (),
                })
            });
            if lost.is_ok() {
                tracing::debug!(broker = id.0, "a broker's controller connection closed");
            }
        }
    }

    fn handle(
        &self,
        conn: ConnectionId,
        header: RequestHeader,
        mut body: Reader,
    ) -> Option<BytesMut> {
        let b = self.broker.upgrade()?;
        let (key, version, cid) = (header.api_key, header.api_version, header.correlation_id);
        let forwarded_body = body.clone();
        let request = match decode_request(key, version, &mut body) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(api_key = key, "undecodable controller request: {e}");
                return None;
            }
        };
        let hv = response_header_version(key, version);
        let mut out = BytesMut::new();
        let encoded = match request {
            // An admin request a broker forwarded: the broker's own handler
            // decides it here, where the controller runs. Not active (any
            // more): the connection closes and the broker finds the leader.
            Request::CreateTopics(_)
            | Request::DeleteTopics(_)
            | Request::CreatePartitions(_)
            | Request::AlterConfigs(_)
            | Request::IncrementalAlterConfigs(_)
            | Request::AlterUserScramCredentials(_)
            | Request::AlterClientQuotas(_)
            | Request::CreateAcls(_)
            | Request::DeleteAcls(_)
            | Request::ElectLeaders(_)
            | Request::AlterPartitionReassignments(_) => {
                if !b.is_active_controller() {
                    return None;
                }
                let pending = crate::handlers::dispatch(&b, header, forwarded_body)?;
                let response = tokio::runtime::Handle::try_current()
                    .ok()?
                    .block_on(pending.resolve())
                    .ok()??;
                return response.to_bytes().ok().map(|b| BytesMut::from(&b[..]));
            }
            Request::BrokerRegistration(r) => {
                let registration = BrokerRegistration {
                    broker_id: NodeId(r.broker_id.0),
                    cluster_id: r.cluster_id.to_string(),
                    incarnation_id: r.incarnation_id,
                    listeners: r
                        .listeners
                        .iter()
                        .map(|l| Listener {
                            name: l.name.to_string(),
                            host: l.host.to_string(),
                            port: l.port,
                            security_protocol: l.security_protocol,
                        })
                        .collect(),
                    rack: r.rack.as_ref().map(|s| s.to_string()),
                    features: r
                        .features
                        .iter()
                        .map(|f| FeatureRange {
                            name: f.name.to_string(),
                            min: f.min_supported_version,
                            max: f.max_supported_version,
                        })
                        .collect(),
                    log_dirs: r.log_dirs.clone(),
                    previous_broker_epoch: r.previous_broker_epoch,
                };
                let resp = match b
                    .as_active_controller(|c, now| c.register_broker(now, &registration))
                {
                    Ok(epoch) => {
                        self.heard_from(r.broker_id.0, conn);
                        BrokerRegistrationResponse::default().with_broker_epoch(epoch)
                    }
                    Err((code, message)) => {
                        tracing::debug!(broker = r.broker_id.0, "registration refused: {message}");
                        BrokerRegistrationResponse::default()
                            .with_error_code(code.0)
                            .with_broker_epoch(-1)
                    }
                };
                encode_response(cid, hv, &resp, version, &mut out)
            }
            Request::BrokerHeartbeat(r) => {
                let heartbeat = BrokerHeartbeat {
                    broker_id: NodeId(r.broker_id.0),
                    broker_epoch: r.broker_epoch,
                    current_metadata_offset: r.current_metadata_offset,
                    want_fence: r.want_fence,
                    want_shut_down: r.want_shut_down,
                };
                let resp = match b.as_active_controller(|c, now| c.heartbeat(now, &heartbeat)) {
                    Ok(h) => {
                        self.heard_from(r.broker_id.0, conn);
                        BrokerHeartbeatResponse::default()
                            .with_is_caught_up(h.is_caught_up)
                            .with_is_fenced(h.is_fenced)
                            .with_should_shut_down(h.should_shut_down)
                    }
                    Err((code, _)) => BrokerHeartbeatResponse::default()
                        .with_error_code(code.0)
                        .with_is_fenced(true),
                };
                // v2 (a broker at metadata.version 4.3-IV0 sends its
                // cordoned log directories, which Fjord's controller does
                // not act on: they stay among the request's unknown tagged
                // fields) answers with v0's layout.
                let body_version = version.min(<BrokerHeartbeatResponse as Message>::VERSIONS.max);
                encode_response(cid, hv, &resp, body_version, &mut out)
            }
            Request::AlterPartition(r) => {
                let resp = alter_partition(&b, &r);
                encode_response(cid, hv, &resp, version, &mut out)
            }
            Request::AllocateProducerIds(r) => {
                let resp = match b.as_active_controller(|c, _| {
                    c.allocate_producer_ids(NodeId(r.broker_id.0), r.broker_epoch)
                }) {
                    Ok(block) => AllocateProducerIdsResponse::default()
                        .with_producer_id_start(ProducerId(block.first))
                        .with_producer_id_len(i32::try_from(block.size).unwrap_or(i32::MAX)),
                    Err((code, _)) => AllocateProducerIdsResponse::default()
                        .with_error_code(code.0)
                        .with_producer_id_start(ProducerId(-1)),
                };
                encode_response(cid, hv, &resp, version, &mut out)
            }
            _ => return None,
        };
        match encoded {
            Ok(()) => Some(out),
            Err(e) => {
                tracing::error!(api_key = key, "failed to encode a controller response: {e}");
                None
            }
        }
    }
}

/// AlterPartition (v2+: topics by id) from a partition leader, decided by
/// `Controller::alter_partition` (Kafka's errors: STALE_BROKER_EPOCH at the
/// top, then per partition FENCED_LEADER_EPOCH, INVALID_UPDATE_VERSION,
/// INELIGIBLE_REPLICA, ...) and answered once its records are committed.
/// v2 names the new ISR without broker epochs (-1: not checked).
fn alter_partition(b: &Broker, r: &AlterPartitionRequest) -> AlterPartitionResponse {
    use fjord_controller::alter_partition::{AlterPartitionData, AlterPartitionRequest as Req};
    use fjord_protocol::kafka_protocol::messages::alter_partition_response::{
        PartitionData, TopicData,
    };
    let mut partitions = Vec::new();
    for t in &r.topics {
        for p in &t.partitions {
            let new_isr = if p.new_isr_with_epochs.is_empty() {
                p.new_isr.iter().map(|id| (id.0, -1)).collect()
            } else {
                p.new_isr_with_epochs
                    .iter()
                    .map(|s| (s.broker_id.0, s.broker_epoch))
                    .collect()
            };
            partitions.push(AlterPartitionData {
                topic_id: t.topic_id,
                partition_index: p.partition_index,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                new_isr,
            });
        }
    }
    let req = Req {
        broker_id: NodeId(r.broker_id.0),
        broker_epoch: r.broker_epoch,
        partitions,
    };
    match b.as_active_controller(|c, _| c.alter_partition(&req)) {
        Ok(answers) => {
            let mut topics: Vec<TopicData> = Vec::new();
            for (topic_id, partition, result) in answers {
                let data = match result {
                    Ok(a) => PartitionData::default()
                        .with_partition_index(partition)
                        .with_leader_id(BrokerId(a.leader_id))
                        .with_leader_epoch(a.leader_epoch)
                        .with_isr(a.isr.into_iter().map(BrokerId).collect())
                        .with_leader_recovery_state(a.leader_recovery_state)
                        .with_partition_epoch(a.partition_epoch),
                    Err(code) => PartitionData::default()
                        .with_partition_index(partition)
                        .with_error_code(code.0),
                };
                match topics.iter_mut().find(|t| t.topic_id == topic_id) {
                    Some(t) => t.partitions.push(data),
                    None => topics.push(
                        TopicData::default()
                            .with_topic_id(topic_id)
                            .with_partitions(vec![data]),
                    ),
                }
            }
            AlterPartitionResponse::default().with_topics(topics)
        }
        Err((code, message)) => {
            tracing::debug!(broker = r.broker_id.0, "AlterPartition refused: {message}");
            AlterPartitionResponse::default().with_error_code(code.0)
        }
    }
}

/// Starts the thread that keeps the controller active on this node while
/// it leads the quorum (see the module docs).
pub(crate) fn start(broker: &Arc<Broker>) -> std::io::Result<()> {
    let weak = Arc::downgrade(broker);
    std::thread::Builder::new()
        .name("fjord-controller".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(CONTROLLER_TICK_MS));
            let Some(b) = weak.upgrade() else { return };
            if b.stopping.load(Ordering::SeqCst) {
                return;
            }
            step(&b);
        })
        .map(|_| ())
}

fn step(b: &Broker) {
    let Some(Quorum::Raft(q)) = b.quorum() else {
        return;
    };
    if !q.is_active_leader() {
        b.deactivate_controller();
        return;
    }
    if b.image().metadata_version().is_none() {
        let Some(epoch) = b.controller_epoch() else {
            return;
        };
        let records = match cm::cluster_bootstrap_records(&b.config) {
            Ok(records) => records,
            Err(e) => {
                tracing::error!("cannot bootstrap the cluster metadata: {e}");
                return;
            }
        };
        match b.propose_in_epoch(epoch, records) {
            Ok(()) => tracing::info!("bootstrapped the cluster metadata"),
            Err(e) => tracing::warn!("bootstrap proposal: {e}"),
        }
        return;
    }
    b.activate_controller();
    // While a broker is under the activation grace, the nodes the quorum
    // saw fetch (`Controller::quorum_fetched`): a live broker that has not
    // found this controller yet is not fenced for that.
    let awaits = b
        .as_active_controller(|c, _| {
            Ok(fjord_controller::ControllerResult {
                records: Vec::new(),
                response: c.awaits_activation_contact(),
            })
        })
        .unwrap_or(false);
    let fetched: Vec<(NodeId, i64)> = awaits
        .then(|| q.status())
        .flatten()
        .map(|s| {
            s.voters
                .iter()
                .chain(&s.observers)
                .map(|(id, _, at)| (*id, *at))
                .collect()
        })
        .unwrap_or_default();
    let tick = b.as_active_controller(|c, now| {
        for (id, at) in &fetched {
            c.quorum_fetched(*id, *at);
        }
        Ok(c.tick(now))
    });
    if let Err((code, message)) = tick {
        if code != ErrorCode::NOT_CONTROLLER {
            tracing::warn!("controller tick: {message}");
        }
    }
}
