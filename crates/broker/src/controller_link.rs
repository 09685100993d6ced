//! A cluster broker's side of the controller protocol (issue 12): the
//! channel to the active controller and the registration/heartbeat loop,
//! after Kafka's `NodeToControllerChannelManager` and
//! `BrokerLifecycleManager`.
//!
//! The active controller is the quorum leader (`RaftQuorum::leader_endpoint`);
//! requests go to its CONTROLLER listener, one at a time on one blocking
//! connection, which is dropped (and the controller looked up again) on any
//! I/O error, timeout or NOT_CONTROLLER answer, and as soon as the quorum
//! names another leader while an answer is awaited (checked every
//! `CONTROLLER_LEADER_CHECK_MS`): a cut-off controller never answers, and
//! a heartbeat stuck on it until `CONTROLLER_REQUEST_TIMEOUT_MS` outlived
//! the new controller's `broker.session.timeout.ms`, which then fenced
//! live brokers (all three, and every partition went offline with the cut
//! node as its last ISR member). Requests are encoded and the
//! controller's responses decoded with kafka-protocol (the controller is a
//! configured voter; frames are bounded by `CONTROLLER_RESPONSE_BYTES_MAX`).
//!
//! The loop registers the broker (BrokerRegistration: cluster id, a fresh
//! incarnation id per process, the PLAINTEXT listener it advertises, its
//! `metadata.version` range), keeps the broker epoch the controller
//! answers, and heartbeats every `broker.heartbeat.interval.ms` with the
//! offset of the metadata it has applied; while fenced it heartbeats every
//! `BROKER_FENCED_HEARTBEAT_MS`, so it is unfenced as soon as it caught up.
//! STALE_BROKER_EPOCH or BROKER_ID_NOT_REGISTERED make it register again.
//! On a clean shutdown it asks for a controlled shutdown (`wantShutDown`)
//! until the controller answers `shouldShutDown` (its leaderships moved
//! away) or `CONTROLLED_SHUTDOWN_TIMEOUT_MS` passed. Its first registration
//! carries the epoch of the clean stop before (`previous_broker_epoch`,
//! from Kafka's clean-shutdown file, see `cm::CLEAN_SHUTDOWN_FILE`), or -1
//! after a crash: the controller keeps a cleanly restarted broker in the
//! eligible leader replicas and drops an unclean one (KIP-966).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use fjord_client::BlockingStream;
use fjord_model::limits::{
    BROKER_FENCED_HEARTBEAT_MS, CONTROLLED_SHUTDOWN_TIMEOUT_MS, CONTROLLER_CONNECT_TIMEOUT_MS,
    CONTROLLER_LEADER_CHECK_MS, CONTROLLER_REQUEST_TIMEOUT_MS, CONTROLLER_RESPONSE_BYTES_MAX,
};
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::broker_registration_request::{
    Feature, Listener as RegListener,
};
use fjord_protocol::kafka_protocol::messages::{
    AllocateProducerIdsRequest, AlterConfigsRequest, BrokerHeartbeatRequest, BrokerId,
    BrokerRegistrationRequest, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    IncrementalAlterConfigsRequest, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::{Decodable, HeaderVersion, Request, StrBytes};
use uuid::Uuid;

use crate::cluster_metadata as cm;
use crate::state::{Broker, Quorum, StateError};

/// The `timeout_ms` of a forwarded admin request.
const FORWARD_TIMEOUT_MS: i32 = fjord_model::limits::METADATA_FORWARD_TIMEOUT_MS as i32;

/// BrokerRegistration v3 (previous broker epoch), BrokerHeartbeat v1,
/// AllocateProducerIds v0: what the controller side decodes.
const REGISTRATION_VERSION: i16 = 3;
const HEARTBEAT_VERSION: i16 = 1;
const ALLOCATE_VERSION: i16 = 0;

/// One blocking connection to the active controller.
#[derive(Default)]
pub struct ControllerChannel {
    conn: Option<(SocketAddr, BlockingStream)>,
    next_correlation_id: i32,
}

impl ControllerChannel {
    /// Sends `request` to the current quorum leader's CONTROLLER listener
    /// and waits for its response.
    pub fn call<R>(
        &mut self,
        broker: &Broker,
        request: &R,
        version: i16,
    ) -> Result<R::Response, String>
    where
        R: Request,
        R::Response: Decodable + HeaderVersion,
    {
        let Some(Quorum::Raft(q)) = broker.quorum() else {
            return Err("not a cluster node".into());
        };
        let Some((_, addr)) = q.leader_endpoint() else {
            self.conn = None;
            return Err("no quorum leader known".into());
        };
        let moved = || q.leader_endpoint().is_none_or(|(_, now)| now != addr);
        let client = broker.config.node_id.0.to_string();
        let connector = broker
            .links()
            .map(|l| l.controller.clone())
            .unwrap_or_default();
        let result = self.call_at(&connector, addr, &client, request, version, &moved);
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    /// One request to `addr` and its answer; gives up when `moved` says
    /// the quorum names another controller (checked while waiting).
    fn call_at<R>(
        &mut self,
        connector: &fjord_client::Connector,
        addr: SocketAddr,
        client: &str,
        request: &R,
        version: i16,
        moved: &dyn Fn() -> bool,
    ) -> Result<R::Response, String>
    where
        R: Request,
        R::Response: Decodable + HeaderVersion,
    {
        let deadline = Instant::now() + Duration::from_millis(CONTROLLER_REQUEST_TIMEOUT_MS);
        let client_id = format!("fjord-broker-{client}");
        if self.conn.as_ref().is_none_or(|(a, _)| *a != addr) {
            let connect = Duration::from_millis(CONTROLLER_CONNECT_TIMEOUT_MS);
            // The TLS server name is the voter's address (an IP SAN).
            let s = connector.connect_blocking(
                &addr.ip().to_string(),
                addr,
                &client_id,
                connect,
                Duration::from_millis(CONTROLLER_REQUEST_TIMEOUT_MS),
            )?;
            let tcp = s.tcp();
            tcp.set_read_timeout(Some(Duration::from_millis(CONTROLLER_LEADER_CHECK_MS)))
                .and_then(|_| {
                    tcp.set_write_timeout(Some(Duration::from_millis(
                        CONTROLLER_REQUEST_TIMEOUT_MS,
                    )))
                })
                .map_err(|e| e.to_string())?;
            self.conn = Some((addr, s));
        }
        let Some((_, s)) = self.conn.as_mut() else {
            return Err("not connected".into());
        };
        let cid = self.next_correlation_id;
        self.next_correlation_id = cid.wrapping_add(1).max(0);
        let frame = fjord_client::encode_request(request, version, cid, &client_id)
            .map_err(|e| e.to_string())?;
        s.write_all(&frame)
            .and_then(|_| s.flush())
            .map_err(|e| e.to_string())?;
        let mut prefix = [0u8; 4];
        read_exact_watching(s, &mut prefix, deadline, moved)?;
        let len = fjord_protocol::frame_len(prefix, CONTROLLER_RESPONSE_BYTES_MAX)
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; len];
        read_exact_watching(s, &mut buf, deadline, moved)?;
        let (got, response) =
            fjord_client::decode_response::<R::Response>(bytes::Bytes::from(buf), version)?;
        if got != cid {
            return Err(format!("correlation id {got}, expected {cid}"));
        }
        Ok(response)
    }
}

/// `read_exact` on a stream whose read timeout is
/// `CONTROLLER_LEADER_CHECK_MS`: between reads it gives up once `deadline`
/// passed or `moved` says the controller is not the quorum leader any more.
fn read_exact_watching(
    s: &mut BlockingStream,
    buf: &mut [u8],
    deadline: Instant,
    moved: &dyn Fn() -> bool,
) -> Result<(), String> {
    let mut filled = 0;
    while filled < buf.len() {
        match s.read(&mut buf[filled..]) {
            Ok(0) => return Err("the controller closed the connection".into()),
            Ok(n) => filled += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                if moved() {
                    return Err("the quorum names another controller".into());
                }
                if Instant::now() >= deadline {
                    return Err("no answer from the controller in time".into());
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// What the loop knows of its registration.
struct Registration {
    incarnation: Uuid,
    epoch: Option<i64>,
    fenced: bool,
    previous_epoch: i64,
    /// The controller the last heartbeat was answered by.
    controller: Option<fjord_model::NodeId>,
}

/// Starts the broker's registration and heartbeat thread (cluster mode).
/// It runs until the broker is dropped or `Broker::close` asks it to stop
/// (then it does the controlled shutdown first).
pub(crate) fn start(broker: &Arc<Broker>) -> std::io::Result<std::thread::JoinHandle<()>> {
    let weak = Arc::downgrade(broker);
    std::thread::Builder::new()
        .name("fjord-heartbeat".into())
        .spawn(move || run(weak))
}

fn run(weak: Weak<Broker>) {
    let mut channel = ControllerChannel::default();
    let Some(previous_epoch) = weak.upgrade().map(|b| b.previous_broker_epoch) else {
        return;
    };
    let mut reg = Registration {
        incarnation: Uuid::new_v4(),
        epoch: None,
        fenced: true,
        previous_epoch,
        controller: None,
    };
    loop {
        let Some(b) = weak.upgrade() else { return };
        if b.stopping.load(Ordering::SeqCst) {
            controlled_shutdown(&b, &mut channel, &reg);
            return;
        }
        // Nothing to register against before the cluster is bootstrapped.
        let wait_ms = if b.image().metadata_version().is_none() {
            BROKER_FENCED_HEARTBEAT_MS
        } else {
            match reg.epoch {
                None => register(&b, &mut channel, &mut reg),
                Some(epoch) => heartbeat(&b, &mut channel, &mut reg, epoch),
            }
        };
        let interval = b.config.broker_heartbeat_interval_ms;
        let leader = quorum_leader(&b);
        drop(b);
        sleep_until_news(&weak, wait_ms.min(interval.max(1) as u64), leader);
    }
}

/// The quorum leader this node knows: the controller its requests go to.
fn quorum_leader(b: &Broker) -> Option<fjord_model::NodeId> {
    match b.quorum() {
        Some(Quorum::Raft(q)) => q.leader_endpoint().map(|(id, _)| id),
        _ => None,
    }
}

/// Sleeps `ms`, waking early when the broker is stopping or dropped, or
/// when the quorum names another leader than `leader` (then the broker
/// heartbeats to the new controller at once, as Kafka's broker sends to
/// the controller its raft client learned of, not a heartbeat interval
/// later: with Kafka's 2 s interval, waiting left a broker that had just
/// heartbeated to the killed controller silent for most of 2 s).
fn sleep_until_news(weak: &Weak<Broker>, ms: u64, leader: Option<fjord_model::NodeId>) {
    let until = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < until {
        match weak.upgrade() {
            Some(b) if !b.stopping.load(Ordering::SeqCst) => {
                if quorum_leader(&b) != leader {
                    return;
                }
            }
            _ => return,
        }
        std::thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
    }
}

/// One BrokerRegistration; returns how long to wait before the next step.
fn register(b: &Broker, channel: &mut ControllerChannel, reg: &mut Registration) -> u64 {
    let cfg = &b.config;
    let request = BrokerRegistrationRequest::default()
        .with_broker_id(BrokerId(cfg.node_id.0))
        .with_cluster_id(sb(&b.cluster_id))
        .with_incarnation_id(reg.incarnation)
        .with_listeners(
            cfg.endpoints()
                .iter()
                .map(|l| {
                    RegListener::default()
                        .with_name(sb(&l.name))
                        .with_host(sb(&l.host))
                        .with_port(l.port)
                        .with_security_protocol(l.security_protocol)
                })
                .collect(),
        )
        .with_features(
            cm::registered_features()
                .into_iter()
                .map(|f| {
                    Feature::default()
                        .with_name(sb(&f.name))
                        .with_min_supported_version(f.min_supported_version)
                        .with_max_supported_version(f.max_supported_version)
                })
                .collect(),
        )
        // The data directory's id (from `fjord format`): Kafka's
        // controllers refuse a registration without one (INVALID_REGISTRATION)
        // from metadata version 3.7-IV2 on.
        .with_log_dirs(
            cm::read_meta_directory_id(&cfg.data_dir)
                .ok()
                .flatten()
                .into_iter()
                .collect(),
        )
        .with_rack(cfg.rack.as_deref().map(sb))
        .with_previous_broker_epoch(reg.previous_epoch);
    match channel.call(b, &request, REGISTRATION_VERSION) {
        Ok(r) if r.error_code == 0 => {
            tracing::info!(
                broker_epoch = r.broker_epoch,
                "registered with the controller"
            );
            reg.epoch = Some(r.broker_epoch);
            reg.previous_epoch = r.broker_epoch;
            reg.fenced = true;
            b.broker_epoch.store(r.broker_epoch, Ordering::SeqCst);
            0
        }
        Ok(r) => {
            tracing::debug!(
                error = ErrorCode(r.error_code).name(),
                "broker registration refused"
            );
            BROKER_FENCED_HEARTBEAT_MS * 5
        }
        Err(e) => {
            tracing::debug!("broker registration: {e}");
            BROKER_FENCED_HEARTBEAT_MS
        }
    }
}

/// One BrokerHeartbeat; returns how long to wait before the next one.
fn heartbeat(
    b: &Broker,
    channel: &mut ControllerChannel,
    reg: &mut Registration,
    epoch: i64,
) -> u64 {
    let request = BrokerHeartbeatRequest::default()
        .with_broker_id(BrokerId(b.config.node_id.0))
        .with_broker_epoch(epoch)
        .with_current_metadata_offset(b.registry_applied().0)
        .with_want_fence(false)
        .with_want_shut_down(false);
    let interval = b.config.broker_heartbeat_interval_ms.max(1) as u64;
    let controller = quorum_leader(b);
    match channel.call(b, &request, HEARTBEAT_VERSION) {
        Ok(r) if r.error_code == 0 => {
            if reg.controller != controller {
                // (scripts/bench/failover.py times controller failovers by it.)
                tracing::info!(
                    controller = controller.map_or(-1, |c| c.0),
                    "heartbeat answered by a new controller"
                );
                reg.controller = controller;
            }
            if reg.fenced != r.is_fenced {
                tracing::info!(fenced = r.is_fenced, "broker state from the controller");
            }
            reg.fenced = r.is_fenced;
            if r.is_fenced {
                BROKER_FENCED_HEARTBEAT_MS
            } else {
                interval
            }
        }
        Ok(r)
            if r.error_code == ErrorCode::STALE_BROKER_EPOCH.0
                || r.error_code == ErrorCode::BROKER_ID_NOT_REGISTERED.0 =>
        {
            tracing::info!(
                error = ErrorCode(r.error_code).name(),
                "registering with the controller again"
            );
            reg.epoch = None;
            0
        }
        Ok(r) => {
            tracing::debug!(error = ErrorCode(r.error_code).name(), "heartbeat refused");
            BROKER_FENCED_HEARTBEAT_MS
        }
        Err(e) => {
            tracing::debug!("heartbeat: {e}");
            BROKER_FENCED_HEARTBEAT_MS
        }
    }
}

/// Heartbeats with `wantShutDown` until the controller says the broker may
/// stop (its leaderships moved to other replicas) or the time is up.
fn controlled_shutdown(b: &Broker, channel: &mut ControllerChannel, reg: &Registration) {
    let Some(epoch) = reg.epoch else { return };
    if reg.fenced {
        return;
    }
    let deadline = Instant::now() + Duration::from_millis(CONTROLLED_SHUTDOWN_TIMEOUT_MS);
    while Instant::now() < deadline {
        let request = BrokerHeartbeatRequest::default()
            .with_broker_id(BrokerId(b.config.node_id.0))
            .with_broker_epoch(epoch)
            .with_current_metadata_offset(b.registry_applied().0)
            .with_want_shut_down(true);
        match channel.call(b, &request, HEARTBEAT_VERSION) {
            Ok(r) if r.error_code == 0 && r.should_shut_down => {
                tracing::info!("controlled shutdown granted");
                return;
            }
            Ok(r) if r.error_code != 0 => {
                tracing::info!(
                    error = ErrorCode(r.error_code).name(),
                    "controlled shutdown refused"
                );
                return;
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(BROKER_FENCED_HEARTBEAT_MS));
    }
    tracing::warn!("controlled shutdown timed out");
}

/// Asks the active controller for a block of producer ids
/// (AllocateProducerIds): `(first, size)`.
pub(crate) fn allocate_producer_ids(b: &Broker) -> Result<(i64, i64), (ErrorCode, String)> {
    let request = AllocateProducerIdsRequest::default()
        .with_broker_id(BrokerId(b.config.node_id.0))
        .with_broker_epoch(b.broker_epoch.load(Ordering::SeqCst));
    let mut channel = ControllerChannel::default();
    match channel.call(b, &request, ALLOCATE_VERSION) {
        Ok(r) if r.error_code == 0 => Ok((r.producer_id_start.0, i64::from(r.producer_id_len))),
        Ok(r) => Err((
            ErrorCode(r.error_code),
            "AllocateProducerIds refused".into(),
        )),
        Err(e) => Err((ErrorCode::NOT_CONTROLLER, e)),
    }
}

// ---- admin requests forwarded to the active controller ----
//
// A broker that is not the active controller sends an admin operation to
// the controller as the Kafka request that asks for it (CreateTopics,
// DeleteTopics, CreatePartitions, IncrementalAlterConfigs, AlterConfigs,
// ElectLeaders)
// on its CONTROLLER listener, where Kafka's controllers serve the same
// requests (`ControllerApis`); the controller runs the broker's own handler
// for it, so it validates and places once, against its image, and answers
// after the records are committed. Why requests and not records: a broker
// proposing records itself decided with its own, possibly stale, view (a
// TopicRecord was once committed twice and refused on every node), and
// placement needs the controller's view of registered brokers. Kafka's
// brokers wrap the client's request in an Envelope (58) for the principal;
// Fjord's broker checks the client's ACLs before forwarding (handlers::authz)
// and the request goes as it is, run unchecked on the controller. The caller
// then waits until its own image has the change, so the client's next
// request to this broker sees it.

/// Sends `request` to the active controller, looking for it again (up to
/// `METADATA_FORWARD_TIMEOUT_MS`) while none answers.
pub(crate) fn forward<R>(b: &Broker, request: &R, version: i16) -> Result<R::Response, StateError>
where
    R: Request,
    R::Response: Decodable + HeaderVersion,
{
    let deadline =
        Instant::now() + Duration::from_millis(fjord_model::limits::METADATA_FORWARD_TIMEOUT_MS);
    let mut channel = ControllerChannel::default();
    loop {
        match channel.call(b, request, version) {
            Ok(r) => return Ok(r),
            Err(e) if Instant::now() > deadline => {
                return Err(StateError::kafka(
                    ErrorCode::NOT_CONTROLLER,
                    format!("forwarding to the active controller: {e}"),
                ))
            }
            Err(e) => {
                tracing::debug!("forwarding to the active controller: {e}; retrying");
                std::thread::sleep(Duration::from_millis(BROKER_FENCED_HEARTBEAT_MS));
            }
        }
    }
}

/// Runs a forwarded operation again while the controller answers
/// NOT_CONTROLLER (up to `METADATA_FORWARD_TIMEOUT_MS`): a newly elected
/// quorum leader refuses admin requests until it has applied the log and
/// activated its controller, and another node may have taken over
/// meanwhile. Kafka's brokers retry forwarded requests the same way rather
/// than hand the client that window.
fn until_controller_takes_it<T>(
    mut f: impl FnMut() -> Result<T, StateError>,
) -> Result<T, StateError> {
    let deadline =
        Instant::now() + Duration::from_millis(fjord_model::limits::METADATA_FORWARD_TIMEOUT_MS);
    loop {
        match f() {
            Err(StateError::Kafka { code, message })
                if code == ErrorCode::NOT_CONTROLLER && Instant::now() < deadline =>
            {
                tracing::debug!(
                    "forwarded to a controller that is not active ({message}); retrying"
                );
                std::thread::sleep(Duration::from_millis(
                    fjord_model::limits::FORWARD_NOT_CONTROLLER_BACKOFF_MS,
                ));
            }
            other => return other,
        }
    }
}

fn refused(code: i16, message: Option<&StrBytes>, what: &str) -> StateError {
    StateError::kafka(
        ErrorCode(code),
        message.map_or_else(
            || format!("{what} refused by the controller"),
            |m| m.to_string(),
        ),
    )
}

/// CreateTopics (v7: the answer carries the topic id) for one topic.
pub(crate) fn forward_create_topic(
    b: &Broker,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    assignments: &[Vec<i32>],
    overrides: &BTreeMap<String, String>,
    validate_only: bool,
) -> Result<Uuid, StateError> {
    use fjord_protocol::kafka_protocol::messages::create_topics_request::{
        CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
    };
    let manual = !assignments.is_empty();
    let topic = CreatableTopic::default()
        .with_name(TopicName(sb(name)))
        .with_num_partitions(if manual { -1 } else { partitions })
        .with_replication_factor(if manual { -1 } else { replication_factor })
        .with_assignments(
            assignments
                .iter()
                .enumerate()
                .map(|(i, replicas)| {
                    CreatableReplicaAssignment::default()
                        .with_partition_index(i as i32)
                        .with_broker_ids(replicas.iter().map(|&b| BrokerId(b)).collect())
                })
                .collect(),
        )
        .with_configs(
            overrides
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(sb(k))
                        .with_value(Some(sb(v)))
                })
                .collect(),
        );
    let request = CreateTopicsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(FORWARD_TIMEOUT_MS)
        .with_validate_only(validate_only);
    until_controller_takes_it(|| {
        let response = forward(b, &request, 7)?;
        let t = response
            .topics
            .into_iter()
            .find(|t| t.name.0.as_str() == name)
            .ok_or_else(|| {
                StateError::kafka(ErrorCode::UNKNOWN_SERVER_ERROR, "no answer for the topic")
            })?;
        if t.error_code != 0 {
            return Err(refused(
                t.error_code,
                t.error_message.as_ref(),
                "CreateTopics",
            ));
        }
        Ok(t.topic_id)
    })
}

/// DeleteTopics (v6, by name) for one topic; its id.
pub(crate) fn forward_delete_topic(b: &Broker, name: &str) -> Result<Uuid, StateError> {
    use fjord_protocol::kafka_protocol::messages::delete_topics_request::DeleteTopicState;
    let request = DeleteTopicsRequest::default()
        .with_topics(vec![
            DeleteTopicState::default().with_name(Some(TopicName(sb(name))))
        ])
        .with_timeout_ms(FORWARD_TIMEOUT_MS);
    until_controller_takes_it(|| {
        let response = forward(b, &request, 6)?;
        let r = response.responses.into_iter().next().ok_or_else(|| {
            StateError::kafka(ErrorCode::UNKNOWN_SERVER_ERROR, "no answer for the topic")
        })?;
        if r.error_code != 0 {
            return Err(refused(
                r.error_code,
                r.error_message.as_ref(),
                "DeleteTopics",
            ));
        }
        Ok(r.topic_id)
    })
}

/// CreatePartitions (v3) for one topic.
pub(crate) fn forward_create_partitions(
    b: &Broker,
    name: &str,
    count: i32,
    validate_only: bool,
) -> Result<(), StateError> {
    use fjord_protocol::kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    let request = CreatePartitionsRequest::default()
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(TopicName(sb(name)))
            .with_count(count)
            .with_assignments(None)])
        .with_timeout_ms(FORWARD_TIMEOUT_MS)
        .with_validate_only(validate_only);
    until_controller_takes_it(|| {
        let response = forward(b, &request, 3)?;
        match response.results.into_iter().next() {
            Some(r) if r.error_code != 0 => Err(refused(
                r.error_code,
                r.error_message.as_ref(),
                "CreatePartitions",
            )),
            Some(_) => Ok(()),
            None => Err(StateError::kafka(
                ErrorCode::UNKNOWN_SERVER_ERROR,
                "no answer for the topic",
            )),
        }
    })
}

/// A topic's config change: IncrementalAlterConfigs (v1) when
/// `incremental`, else AlterConfigs (v2, the whole set).
pub(crate) fn forward_alter_topic_config(
    b: &Broker,
    name: &str,
    changes: &[(String, Option<String>)],
    incremental: bool,
    validate_only: bool,
) -> Result<(), StateError> {
    const TOPIC: i8 = 2;
    let (code, message) = if incremental {
        use fjord_protocol::kafka_protocol::messages::incremental_alter_configs_request::{
            AlterConfigsResource, AlterableConfig,
        };
        let request = IncrementalAlterConfigsRequest::default()
            .with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(TOPIC)
                .with_resource_name(sb(name))
                .with_configs(
                    changes
                        .iter()
                        .map(|(k, v)| {
                            AlterableConfig::default()
                                .with_name(sb(k))
                                // 0 SET, 1 DELETE.
                                .with_config_operation(if v.is_some() { 0 } else { 1 })
                                .with_value(v.as_deref().map(sb))
                        })
                        .collect(),
                )])
            .with_validate_only(validate_only);
        let r = forward(b, &request, 1)?.responses.into_iter().next();
        r.map(|r| (r.error_code, r.error_message))
    } else {
        use fjord_protocol::kafka_protocol::messages::alter_configs_request::{
            AlterConfigsResource, AlterableConfig,
        };
        let request = AlterConfigsRequest::default()
            .with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(TOPIC)
                .with_resource_name(sb(name))
                .with_configs(
                    changes
                        .iter()
                        .filter_map(|(k, v)| {
                            v.as_deref().map(|v| {
                                AlterableConfig::default()
                                    .with_name(sb(k))
                                    .with_value(Some(sb(v)))
                            })
                        })
                        .collect(),
                )])
            .with_validate_only(validate_only);
        let r = forward(b, &request, 2)?.responses.into_iter().next();
        r.map(|r| (r.error_code, r.error_message))
    }
    .ok_or_else(|| StateError::kafka(ErrorCode::UNKNOWN_SERVER_ERROR, "no answer for the topic"))?;
    if code != 0 {
        return Err(refused(code, message.as_ref(), "the config change"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A heartbeat waiting on a controller that never answers (cut off the
    /// network, its quorum leadership lost) gives up as soon as the quorum
    /// names another leader, well before `CONTROLLER_REQUEST_TIMEOUT_MS`:
    /// the new controller must hear this broker within its session timeout.
    #[test]
    fn a_request_stuck_on_a_deposed_controller_gives_up_when_the_leader_moves() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        // Accepts and holds the connection, never answering.
        let holder = std::thread::spawn(move || silent.accept().map(|(s, _)| s));
        let start = Instant::now();
        let moved_after = Duration::from_millis(300);
        let moved = || start.elapsed() >= moved_after;
        let request = BrokerHeartbeatRequest::default().with_broker_id(BrokerId(1));
        let mut channel = ControllerChannel::default();
        let result = channel.call_at(
            &fjord_client::Connector::plaintext(),
            addr,
            "1",
            &request,
            HEARTBEAT_VERSION,
            &moved,
        );
        let waited = start.elapsed();
        let err = result.expect_err("no answer can come");
        assert!(err.contains("another controller"), "{err}");
        assert!(waited >= moved_after, "{waited:?}");
        assert!(
            waited < moved_after + Duration::from_millis(CONTROLLER_LEADER_CHECK_MS * 10),
            "gave up only after {waited:?}"
        );
        assert!(waited < Duration::from_millis(CONTROLLER_REQUEST_TIMEOUT_MS));
        drop(holder.join().unwrap());
    }

    /// Without a leader change the wait ends at the request timeout.
    #[test]
    fn a_silent_controller_that_still_leads_times_out() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        let holder = std::thread::spawn(move || silent.accept().map(|(s, _)| s));
        let start = Instant::now();
        let request = BrokerHeartbeatRequest::default().with_broker_id(BrokerId(1));
        let mut channel = ControllerChannel::default();
        let err = channel
            .call_at(
                &fjord_client::Connector::plaintext(),
                addr,
                "1",
                &request,
                HEARTBEAT_VERSION,
                &|| false,
            )
            .expect_err("no answer can come");
        assert!(err.contains("in time"), "{err}");
        assert!(start.elapsed() >= Duration::from_millis(CONTROLLER_REQUEST_TIMEOUT_MS));
        drop(holder.join().unwrap());
    }
}
