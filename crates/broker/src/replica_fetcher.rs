//! Replication between the brokers of a cluster (issue 13): the shell
//! that drives `fjord_partition`'s replica methods (and through them the
//! `fjord-replication` core) with threads, sockets and the clock.
//!
//! - **Fetchers** (Kafka's `ReplicaFetcherThread`): one thread per source
//!   broker this node follows some partition on, started on the first
//!   such partition. Each round it asks every partition it serves what to
//!   fetch ([`Partition::poll_replica_fetch`]: one fetch in flight, only
//!   once what was appended is durable), sends one Fetch (v15: replica id
//!   and broker epoch in `ReplicaState`, KIP-903; topics by id; the
//!   broker's `replica.fetch.wait.max.ms`, `replica.fetch.min.bytes`,
//!   `replica.fetch.max.bytes` and `replica.fetch.response.max.bytes`,
//!   `config::ReplicaSettings`) to the leader's PLAINTEXT
//!   listener, hands each partition its answer
//!   ([`Partition::on_replica_fetch_answer`]: append as follower, or
//!   truncate on a diverging epoch, KIP-320), then waits for the appended
//!   records to be flushed (`Log::sync_to`) and tells the partition
//!   ([`Partition::on_follower_flush`]): the next fetch states the durable
//!   log end, which is what the leader counts toward the high watermark.
//!   A failed round (connection refused, timeout, an undecodable answer)
//!   is an error answer to every partition of the round (the core backs
//!   off `replica.fetch.backoff.ms`); a leader change resets that.
//!   Which partitions a fetcher serves follows the metadata image
//!   ([`Replication::follow`] / [`Replication::unfollow`], called by
//!   `Broker::apply_delta`).
//! - **The leader tick**: one thread that every `REPLICA_FULL_TICK_MS` gives
//!   every partition this node leads with other replicas the time and its
//!   own durable end ([`Partition::replication_tick`]), and every
//!   `REPLICA_TICK_MS` only those whose durable end moved or that have an
//!   AlterPartition to send ([`Partition::replication_tick_wanted`]): the ISR shrinks
//!   after `replica.lag.time.max.ms`, the high watermark follows the
//!   leader's group commit. The AlterPartition requests the core asks for
//!   (ISR shrink and expansion, one in flight per partition) go to a
//!   sender thread that sends them to the active controller over the
//!   controller link (v3, the ISR with broker epochs) and hands each
//!   partition its answer ([`Partition::on_alter_partition_answer`]); a
//!   request without an answer is sent again after
//!   `ALTER_PARTITION_BACKOFF_MS` (after `ALTER_PARTITION_TIMEOUT_MS` while
//!   one is in flight).
//!
//! Responses are decoded with kafka-protocol's decoder: the peer is a
//! broker registered in this cluster's metadata, and the frame is bounded
//! by `FRAME_BYTES_MAX` before anything is read (as the controller link's).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use fjord_client::{BlockingStream, Connector};
use fjord_model::limits::{
    ALTER_PARTITION_BACKOFF_MS, ALTER_PARTITION_TIMEOUT_MS, FRAME_BYTES_MAX,
    REPLICA_FETCHER_IDLE_MS, REPLICA_FETCH_BACKOFF_MS_DEFAULT, REPLICA_FULL_TICK_MS,
    REPLICA_TICK_MS,
};
use fjord_model::{ErrorCode, LeaderEpoch, NodeId, Offset};
use fjord_partition::Partition;
use fjord_protocol::kafka_protocol::messages::alter_partition_request as alter_request;
use fjord_protocol::kafka_protocol::messages::fetch_request::{
    FetchPartition, FetchTopic, ReplicaState,
};
use fjord_protocol::kafka_protocol::messages::AlterPartitionRequest;
use fjord_protocol::kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};
use fjord_replication::{
    AlterPartition, FetchAnswer, FetchOutcome, FollowerFetch, LeaderOutput, PartitionState,
};
use parking_lot::Mutex;
use uuid::Uuid;

use crate::state::{now_ms, Broker};

/// The Fetch version a follower sends: the first with `ReplicaState`
/// (KIP-903's broker epoch) and topic ids.
const REPLICA_FETCH_VERSION: i16 = 15;
/// AlterPartition v3: the new ISR with broker epochs (KIP-903).
const ALTER_PARTITION_VERSION: i16 = 3;

/// A partition this node follows, as a fetcher serves it.
#[derive(Clone)]
pub(crate) struct FetchTarget {
    pub(crate) topic_id: Uuid,
    pub(crate) partition: Arc<Partition>,
}

type Key = (Uuid, i32);

/// The fetchers of one broker and what each serves.
pub(crate) struct Replication {
    broker: Weak<Broker>,
    /// By source broker: the partitions fetched from it.
    assignments: Arc<Mutex<BTreeMap<NodeId, BTreeMap<Key, FetchTarget>>>>,
    /// Source brokers with a running fetcher thread.
    started: Mutex<Vec<NodeId>>,
}

impl Replication {
    pub(crate) fn new(broker: Weak<Broker>) -> Replication {
        Replication {
            broker,
            assignments: Arc::new(Mutex::new(BTreeMap::new())),
            started: Mutex::new(Vec::new()),
        }
    }

    /// This node follows `target` on `leader` (and on no other broker).
    pub(crate) fn follow(&self, leader: NodeId, target: FetchTarget) {
        let key = (target.topic_id, target.partition.index.0);
        {
            let mut a = self.assignments.lock();
            for (source, parts) in a.iter_mut() {
                if *source != leader {
                    parts.remove(&key);
                }
            }
            a.entry(leader).or_default().insert(key, target);
        }
        let mut started = self.started.lock();
        if !started.contains(&leader) {
            let weak = self.broker.clone();
            let assignments = self.assignments.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("fjord-fetcher-{}", leader.0))
                .spawn(move || run_fetcher(weak, leader, assignments));
            match spawned {
                Ok(_) => started.push(leader),
                Err(e) => tracing::error!(source = leader.0, "cannot start a replica fetcher: {e}"),
            }
        }
    }

    /// This node fetches the partition from nobody.
    pub(crate) fn unfollow(&self, topic_id: Uuid, partition: i32) {
        for parts in self.assignments.lock().values_mut() {
            parts.remove(&(topic_id, partition));
        }
    }
}

/// An AlterPartition to send, with the partition that asked.
type AlterBatch = Vec<(Uuid, Arc<Partition>, AlterPartition)>;

/// When each partition may send its AlterPartition (again): absent, at
/// once; the send time plus `ALTER_PARTITION_TIMEOUT_MS` while one is in
/// flight; plus `ALTER_PARTITION_BACKOFF_MS` after a failed one.
type AlterSchedule = Arc<Mutex<BTreeMap<Key, i64>>>;

/// A partition's state as the controller's AlterPartition answer states it
/// (leader, leader epoch, partition epoch, ISR).
type Altered = (NodeId, LeaderEpoch, i32, Vec<NodeId>);

/// Starts the leader tick thread and the AlterPartition sender (see the
/// module docs); they stop when the broker stops or is dropped.
pub(crate) fn start_leader_tick(broker: &Arc<Broker>) -> std::io::Result<()> {
    let weak = Arc::downgrade(broker);
    let schedule: AlterSchedule = Arc::new(Mutex::new(BTreeMap::new()));
    let (tx, rx) = std::sync::mpsc::channel::<AlterBatch>();
    {
        let weak = weak.clone();
        let schedule = schedule.clone();
        std::thread::Builder::new()
            .name("fjord-alter-partition".into())
            .spawn(move || run_alter_sender(weak, rx, schedule))?;
    }
    std::thread::Builder::new()
        .name("fjord-replication".into())
        .spawn(move || {
            let mut next_full_ms = 0;
            loop {
                std::thread::sleep(Duration::from_millis(REPLICA_TICK_MS));
                let Some(b) = weak.upgrade() else { return };
                if b.stopping.load(Ordering::SeqCst) {
                    return;
                }
                let now = now_ms();
                let full = now >= next_full_ms;
                if full {
                    next_full_ms = now + REPLICA_FULL_TICK_MS as i64;
                }
                let mut batch: AlterBatch = Vec::new();
                for topic in b.topics() {
                    let partitions = topic.partitions.read().clone();
                    for p in partitions {
                        if !full && !p.replication_tick_wanted() {
                            continue;
                        }
                        if !p.is_replicated_leader() {
                            continue;
                        }
                        let key = (topic.id, p.index.0);
                        let due = schedule.lock().get(&key).is_none_or(|at| now >= *at);
                        for o in p.replication_tick(now, due) {
                            if let LeaderOutput::AlterPartition(req) = o {
                                schedule
                                    .lock()
                                    .insert(key, now + ALTER_PARTITION_TIMEOUT_MS);
                                batch.push((topic.id, p.clone(), req));
                            }
                        }
                    }
                }
                if !batch.is_empty() && tx.send(batch).is_err() {
                    return;
                }
            }
        })
        .map(|_| ())
}

/// Sends each batch of AlterPartition requests to the active controller
/// (v3: the ISR with broker epochs) and hands every partition its answer.
fn run_alter_sender(
    weak: Weak<Broker>,
    rx: std::sync::mpsc::Receiver<AlterBatch>,
    schedule: AlterSchedule,
) {
    let mut channel = crate::controller_link::ControllerChannel::default();
    while let Ok(batch) = rx.recv() {
        let Some(b) = weak.upgrade() else { return };
        let mut topics: Vec<alter_request::TopicData> = Vec::new();
        for (topic_id, p, req) in &batch {
            let data = alter_request::PartitionData::default()
                .with_partition_index(p.index.0)
                .with_leader_epoch(req.leader_epoch.0)
                .with_partition_epoch(req.partition_epoch)
                .with_leader_recovery_state(0)
                .with_new_isr_with_epochs(
                    req.new_isr
                        .iter()
                        .map(|m| {
                            alter_request::BrokerState::default()
                                .with_broker_id(BrokerId(m.broker_id.0))
                                .with_broker_epoch(m.broker_epoch)
                        })
                        .collect(),
                );
            match topics.iter_mut().find(|t| t.topic_id == *topic_id) {
                Some(t) => t.partitions.push(data),
                None => topics.push(
                    alter_request::TopicData::default()
                        .with_topic_id(*topic_id)
                        .with_partitions(vec![data]),
                ),
            }
        }
        let request = AlterPartitionRequest::default()
            .with_broker_id(BrokerId(b.config.node_id.0))
            .with_broker_epoch(b.broker_epoch.load(Ordering::SeqCst))
            .with_topics(topics);
        let result = channel.call(&b, &request, ALTER_PARTITION_VERSION);
        drop(b);
        let now = now_ms();
        let mut answered: BTreeMap<Key, Result<Altered, ErrorCode>> = BTreeMap::new();
        match result {
            Ok(r) if r.error_code == 0 => {
                for t in r.topics {
                    for p in t.partitions {
                        let a = if p.error_code != 0 {
                            Err(ErrorCode(p.error_code))
                        } else {
                            Ok((
                                NodeId(p.leader_id.0),
                                LeaderEpoch(p.leader_epoch),
                                p.partition_epoch,
                                p.isr.iter().map(|id| NodeId(id.0)).collect(),
                            ))
                        };
                        answered.insert((t.topic_id, p.partition_index), a);
                    }
                }
            }
            Ok(r) => tracing::debug!(
                error = ErrorCode(r.error_code).name(),
                "AlterPartition refused"
            ),
            Err(e) => tracing::debug!("AlterPartition: {e}"),
        }
        for (topic_id, p, _) in &batch {
            let key = (*topic_id, p.index.0);
            match answered.remove(&key) {
                Some(Ok((leader, leader_epoch, partition_epoch, isr))) => {
                    schedule.lock().remove(&key);
                    let replicas = p.replica_state().replicas;
                    p.on_alter_partition_answer(Ok(PartitionState {
                        leader,
                        leader_epoch,
                        partition_epoch,
                        replicas,
                        isr,
                    }));
                }
                Some(Err(code)) => {
                    tracing::debug!(
                        partition = p.index.0,
                        error = code.name(),
                        "AlterPartition answered with an error"
                    );
                    schedule
                        .lock()
                        .insert(key, now + ALTER_PARTITION_BACKOFF_MS);
                    p.on_alter_partition_answer(Err(code));
                }
                // No answer (the controller moved, a timeout): again soon.
                None => {
                    schedule
                        .lock()
                        .insert(key, now + ALTER_PARTITION_BACKOFF_MS);
                }
            }
        }
    }
}

/// The PLAINTEXT listener of `node` in the current image.
/// The host and address of `node`'s inter-broker listener (the endpoint
/// named `inter.broker.listener.name`) in `b`'s image.
pub(crate) fn address_of(b: &Broker, node: NodeId) -> Option<(String, SocketAddr)> {
    let image = b.image();
    let reg = image.broker(node)?;
    let name = b
        .links()
        .map_or("PLAINTEXT", |l| l.broker_listener.as_str());
    let e = reg.end_points.iter().find(|e| e.name == name)?;
    use std::net::ToSocketAddrs;
    let addr = (e.host.as_str(), e.port).to_socket_addrs().ok()?.next()?;
    Some((e.host.clone(), addr))
}

fn run_fetcher(
    weak: Weak<Broker>,
    source: NodeId,
    assignments: Arc<Mutex<BTreeMap<NodeId, BTreeMap<Key, FetchTarget>>>>,
) {
    let mut conn: Option<(SocketAddr, BlockingStream)> = None;
    let mut correlation_id: i32 = 0;
    loop {
        let (me, broker_epoch, addr, settings, connector) = {
            let Some(b) = weak.upgrade() else { return };
            if b.stopping.load(Ordering::SeqCst) {
                return;
            }
            (
                b.config.node_id,
                b.broker_epoch.load(Ordering::SeqCst),
                address_of(&b, source),
                b.config.replica,
                b.links().map(|l| l.broker.clone()).unwrap_or_default(),
            )
        };
        let targets: Vec<FetchTarget> = assignments
            .lock()
            .get(&source)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        let now = now_ms();
        let polled: Vec<(FetchTarget, FollowerFetch)> = targets
            .into_iter()
            .filter_map(|t| match t.partition.poll_replica_fetch(now) {
                Some((leader, fetch)) if leader == source => Some((t, fetch)),
                Some((_, fetch)) => {
                    // Moved to another leader meanwhile: that fetch is void.
                    let _ = t
                        .partition
                        .on_replica_fetch_answer(now, fetch, error_answer(), &[]);
                    None
                }
                None => None,
            })
            .collect();
        if polled.is_empty() {
            std::thread::sleep(Duration::from_millis(REPLICA_FETCHER_IDLE_MS));
            continue;
        }
        let result = match addr {
            None => Err(format!("broker {} has no known listener", source.0)),
            Some(addr) => {
                correlation_id = correlation_id.wrapping_add(1).max(0);
                let ids = (me, broker_epoch, correlation_id);
                fetch_round(&mut conn, &connector, addr, ids, &settings, &polled)
            }
        };
        let now = now_ms();
        match result {
            Ok(response) => apply_response(now, &polled, response),
            Err(e) => {
                conn = None;
                tracing::debug!(source = source.0, "replica fetch failed: {e}");
                for (t, fetch) in &polled {
                    let _ = t
                        .partition
                        .on_replica_fetch_answer(now, *fetch, error_answer(), &[]);
                }
                // Every partition of the round now backs off this long: looking
                // at them all again every REPLICA_FETCHER_IDLE_MS meanwhile cost
                // a core's worth of polls with thousands of partitions on a dead
                // leader, during the failover that needs the CPU. Partitions
                // that move to another leader are fetched by that leader's
                // fetcher, not held up by this pause.
                std::thread::sleep(Duration::from_millis(
                    REPLICA_FETCH_BACKOFF_MS_DEFAULT as u64,
                ));
            }
        }
    }
}

/// An answer standing for a fetch that got none (the core backs off).
fn error_answer() -> FetchAnswer {
    FetchAnswer {
        outcome: FetchOutcome::Error(ErrorCode::NETWORK_EXCEPTION),
        high_watermark: Offset(0),
        log_start: Offset(0),
    }
}

fn clamp_i32(v: usize) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// One Fetch to the leader for every polled partition.
fn fetch_round(
    conn: &mut Option<(SocketAddr, BlockingStream)>,
    connector: &Connector,
    (host, addr): (String, SocketAddr),
    (me, broker_epoch, correlation_id): (NodeId, i64, i32),
    settings: &crate::config::ReplicaSettings,
    polled: &[(FetchTarget, FollowerFetch)],
) -> Result<FetchResponse, String> {
    let mut topics: BTreeMap<Uuid, Vec<FetchPartition>> = BTreeMap::new();
    for (t, f) in polled {
        topics.entry(t.topic_id).or_default().push(
            FetchPartition::default()
                .with_partition(t.partition.index.0)
                .with_current_leader_epoch(f.current_leader_epoch.0)
                .with_fetch_offset(f.fetch_offset.0)
                .with_last_fetched_epoch(f.last_fetched_epoch.0)
                .with_log_start_offset(t.partition.log_start_offset().0)
                .with_partition_max_bytes(clamp_i32(settings.fetch_max_bytes)),
        );
    }
    let request = FetchRequest::default()
        .with_replica_state(
            ReplicaState::default()
                .with_replica_id(BrokerId(me.0))
                .with_replica_epoch(broker_epoch),
        )
        .with_max_wait_ms(clamp_i32(settings.fetch_wait_max_ms as usize))
        .with_min_bytes(clamp_i32(settings.fetch_min_bytes))
        .with_max_bytes(clamp_i32(settings.fetch_response_max_bytes))
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(
            topics
                .into_iter()
                .map(|(id, partitions)| {
                    FetchTopic::default()
                        .with_topic_id(id)
                        .with_partitions(partitions)
                })
                .collect(),
        );
    if conn.as_ref().is_none_or(|(a, _)| *a != addr) {
        let connect = Duration::from_millis(1_000);
        let timeout = Duration::from_millis(settings.fetch_wait_max_ms + 5_000);
        let client_id = format!("fjord-replica-{}", me.0);
        let s = connector.connect_blocking(&host, addr, &client_id, connect, timeout)?;
        *conn = Some((addr, s));
    }
    let Some((_, s)) = conn.as_mut() else {
        return Err("not connected".into());
    };
    let frame = fjord_client::encode_request(
        &request,
        REPLICA_FETCH_VERSION,
        correlation_id,
        &format!("fjord-replica-{}", me.0),
    )
    .map_err(|e| e.to_string())?;
    s.write_all(&frame)
        .and_then(|_| s.flush())
        .map_err(|e| e.to_string())?;
    let mut prefix = [0u8; 4];
    s.read_exact(&mut prefix).map_err(|e| e.to_string())?;
    let len = fjord_protocol::frame_len(prefix, FRAME_BYTES_MAX).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).map_err(|e| e.to_string())?;
    let (got, response) = fjord_client::decode_response::<FetchResponse>(
        bytes::Bytes::from(buf),
        REPLICA_FETCH_VERSION,
    )?;
    if got != correlation_id {
        return Err(format!("correlation id {got}, expected {correlation_id}"));
    }
    Ok(response)
}

/// Hands each partition its part of the answer, then waits for what was
/// appended to be durable before the next round states it.
fn apply_response(now: i64, polled: &[(FetchTarget, FollowerFetch)], response: FetchResponse) {
    let mut answers: BTreeMap<Key, (FetchAnswer, bytes::Bytes)> = BTreeMap::new();
    if response.error_code == 0 {
        for t in response.responses {
            for p in t.partitions {
                let outcome = if p.error_code != 0 {
                    FetchOutcome::Error(ErrorCode(p.error_code))
                } else if p.diverging_epoch.epoch >= 0 || p.diverging_epoch.end_offset >= 0 {
                    FetchOutcome::Diverging {
                        epoch: LeaderEpoch(p.diverging_epoch.epoch),
                        end_offset: Offset(p.diverging_epoch.end_offset),
                    }
                } else {
                    FetchOutcome::Records
                };
                let answer = FetchAnswer {
                    outcome,
                    high_watermark: Offset(p.high_watermark),
                    log_start: Offset(p.log_start_offset),
                };
                let records = p.records.unwrap_or_default();
                answers.insert((t.topic_id, p.partition_index), (answer, records));
            }
        }
    }
    let mut appended = Vec::new();
    for (t, fetch) in polled {
        let key = (t.topic_id, t.partition.index.0);
        let (answer, records) = answers
            .remove(&key)
            .unwrap_or_else(|| (error_answer(), bytes::Bytes::new()));
        let whole = whole_batches(&records);
        let before = t.partition.log_end_offset();
        if let Err(e) = t
            .partition
            .on_replica_fetch_answer(now, *fetch, answer, &records[..whole])
        {
            tracing::warn!(
                partition = t.partition.index.0,
                "applying a replica fetch answer: {e}"
            );
        }
        if t.partition.log_end_offset() > before {
            appended.push(t.partition.clone());
        }
    }
    for p in appended {
        // With `replica.fetch.durable=false` the next round states the
        // log end at once; the data reaches the disk with the log's flush
        // policy (`log.flush.interval.*`) or the kernel's write-back.
        if p.durable_fetch() {
            let end = p.log_end_offset();
            if let Err(e) = p.log.sync_to(Offset(end.0 - 1)).wait_blocking() {
                tracing::warn!(partition = p.index.0, "flushing fetched records: {e}");
            }
        }
        p.on_follower_flush();
    }
}

/// The length of the whole batches at the start of `records` (a leader
/// may cut the last one at the size limit).
fn whole_batches(records: &[u8]) -> usize {
    let mut end = 0;
    for item in fjord_records::batches(records) {
        match item {
            Ok((_, range)) => end = range.end,
            Err(_) => break,
        }
    }
    end
}
