//! The shell around `fjord_txn::TxnCoordinator`, on the coordinator runtime
//! (`fjord_coordinator`): one shard per `__transaction_state` partition, each
//! with its own `TxnCoordinator` and lock, holding the transactional ids that
//! hash to that partition (`fjord_txn::state_partition_for`, as Kafka).
//!
//! The core's contract (crates/txn) is met here:
//! - a call's `Persist` outputs are appended by the runtime in decision order;
//!   each is followed by a `Written` output of the shard, which the runtime
//!   delivers once the record is durable (or not): the shell then reports it
//!   with `append_done` (a failure is answered COORDINATOR_NOT_AVAILABLE,
//!   Kafka's answer to a failed append, which clients retry);
//! - `Respond` outputs go to the request waiting on that token (a oneshot);
//! - `WriteMarkers` outputs are written by a task per transaction through the
//!   partition layer (`Partition::append_marker`), retried with a backoff
//!   until every partition has its marker (a partition that no longer exists
//!   needs none, as in Kafka), then reported with `markers_done`; a marker
//!   in a `__consumer_offsets` partition is also handed to that group shard
//!   (`Groups::complete_txn`: the transaction's offsets become committed or
//!   are dropped) before the transaction completes;
//! - the runtime's timer calls `tick` (timeouts, expiry); what `finish_replay`
//!   produced after a load (markers of prepared transactions) is released by
//!   the first tick, which is due at once.
//!
//! The broker holds the runtime in a [`TxnsSlot`], empty until
//! `__transaction_state` exists (created on the first transactional request,
//! as Kafka does): transactional requests answer COORDINATOR_NOT_AVAILABLE
//! meanwhile; clients retry.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI16, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use fjord_coordinator::{
    Coordinator, LogPartitions, ReplayError, Runtime, RuntimeConfig, ShardError, ShardStatus,
};
use fjord_model::limits::{
    TRANSACTION_MARKER_RETRY_BACKOFF_MS_MAX, TRANSACTION_MARKER_RETRY_BACKOFF_MS_MIN,
    TRANSACTION_STATE_PARTITIONS_DEFAULT, TRANSACTION_STATE_SEGMENT_BYTES_DEFAULT,
};
use fjord_model::{ErrorCode, NodeId, Offset, ProducerEpoch, ProducerId, TopicPartition};
use fjord_txn::{
    Output, RecordError, Reply, RequestToken, TxnConfig, TxnCoordinator, TxnResult, WriteId,
};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::inter_broker::Links;
use crate::leadership::ShardLeadership;
use crate::state::{now_ms, Broker, Partition, StateError};

/// Kafka's internal topic for transaction state.
pub const TXN_STATE_TOPIC: &str = "__transaction_state";
/// The WriteTxnMarkers version a coordinator sends (the newest Fjord
/// serves: v2 carries each marker's transaction version, KIP-1228).
const WRITE_TXN_MARKERS_VERSION: i16 = 2;
/// The AddPartitionsToTxn version of a broker's `verify_only` check.
const VERIFY_ONLY_VERSION: i16 = 4;
/// The AddPartitionsToTxn version of a partition leader's add for a
/// transaction version 2 client (Kafka's `AddPartitionsToTxnManager`).
const IMPLICIT_ADD_VERSION: i16 = 5;
/// After a failed creation of `__transaction_state`, requests start the next
/// attempt no sooner than this.
const CREATE_RETRY_MS: i64 = 1_000;

/// The broker's transaction coordinator, once `__transaction_state` exists.
/// `get` returns it, or `None` while the topic is being created (answer
/// COORDINATOR_NOT_AVAILABLE); the call starts the creation if none runs.
pub struct TxnsSlot {
    loaded: OnceLock<Arc<Txns>>,
    broker: Weak<Broker>,
    loading: AtomicBool,
    failed_at_ms: AtomicI64,
    /// Held for the whole of a creation; `true` once the broker is closing.
    load_lock: Mutex<bool>,
    /// The async runtime the coordinator's tasks run on, for starts that
    /// come from outside it (a leadership change on the metadata thread).
    handle: OnceLock<tokio::runtime::Handle>,
}

impl TxnsSlot {
    pub(crate) fn new(broker: Weak<Broker>) -> TxnsSlot {
        TxnsSlot {
            loaded: OnceLock::new(),
            broker,
            loading: AtomicBool::new(false),
            failed_at_ms: AtomicI64::new(i64::MIN),
            load_lock: Mutex::new(false),
            handle: OnceLock::new(),
        }
    }

    /// Remember the async runtime the coordinator runs on (`fjord serve`
    /// calls this at start), so that a node that comes to lead a
    /// `__transaction_state` partition starts its coordinator by itself.
    pub fn set_runtime(&self, handle: tokio::runtime::Handle) {
        let _ = self.handle.set(handle);
    }

    /// In a cluster, after the metadata image changed `__transaction_state`:
    /// serve the shards of the partitions this node leads now, starting the
    /// coordinator if it leads one and has not started yet.
    pub(crate) fn follow_leadership(&self) {
        if let Some(t) = self.loaded.get() {
            t.follow_leadership();
            return;
        }
        let Some(broker) = self.broker.upgrade() else {
            return;
        };
        let me = broker.config.node_id;
        let leads_one = broker.topic(TXN_STATE_TOPIC).is_some_and(|t| {
            t.partitions
                .read()
                .iter()
                .any(|p| p.replica_state().leader == me)
        });
        drop(broker);
        if leads_one {
            self.start_loading();
        }
    }

    /// The coordinator if `__transaction_state` exists (its shards may still
    /// be loading); otherwise starts creating it and returns `None`.
    pub fn get(&self) -> Option<&Arc<Txns>> {
        match self.loaded.get() {
            Some(t) => {
                t.runtime.start_timer();
                Some(t)
            }
            None => {
                self.start_loading();
                None
            }
        }
    }

    /// The coordinator if it exists (starts nothing).
    pub fn loaded(&self) -> Option<&Arc<Txns>> {
        self.loaded.get()
    }

    /// Create `__transaction_state` (if needed) and load its shards on a
    /// background thread, unless that is done, running, or failed less than
    /// `CREATE_RETRY_MS` ago. Call from inside the async runtime: the
    /// coordinator's timer and marker tasks run on it.
    pub fn start_loading(&self) {
        if self.loaded.get().is_some() {
            return;
        }
        let failed_at_ms = self.failed_at_ms.load(Ordering::Acquire);
        if failed_at_ms != i64::MIN && now_ms().saturating_sub(failed_at_ms) < CREATE_RETRY_MS {
            return;
        }
        let Some(handle) = tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| self.handle.get().cloned())
        else {
            return;
        };
        if self.loading.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(broker) = self.broker.upgrade() else {
            self.loading.store(false, Ordering::Release);
            return;
        };
        let no_leader = broker
            .quorum()
            .is_some_and(|q| q.get().leader_and_epoch().0.is_none());
        if no_leader {
            self.loading.store(false, Ordering::Release);
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("fjord-txns-load".to_string())
            .spawn(move || {
                let slot = &broker.txns;
                if let Err(e) = slot.load_blocking(&handle) {
                    // Another node creating the topic at the same moment, or
                    // too few brokers yet: the next request tries again.
                    if crate::groups::is_transient(&e) {
                        tracing::debug!("transaction coordinator not started yet: {e}");
                    } else {
                        tracing::error!("cannot start the transaction coordinator: {e}");
                    }
                    slot.failed_at_ms.store(now_ms(), Ordering::Release);
                }
                slot.loading.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the transaction coordinator: {e}");
            self.failed_at_ms.store(now_ms(), Ordering::Release);
            self.loading.store(false, Ordering::Release);
        }
    }

    fn load_blocking(&self, handle: &tokio::runtime::Handle) -> Result<(), StateError> {
        let closed = self.load_lock.lock();
        if self.loaded.get().is_some() {
            return Ok(());
        }
        if *closed {
            return Err(StateError::kafka(
                ErrorCode::COORDINATOR_NOT_AVAILABLE,
                "the broker is shutting down",
            ));
        }
        let Some(broker) = self.broker.upgrade() else {
            return Err(StateError::kafka(
                ErrorCode::COORDINATOR_NOT_AVAILABLE,
                "the broker is gone",
            ));
        };
        let txns = Txns::open(&broker, self.broker.clone(), handle.clone())?;
        let _ = self.loaded.set(txns.clone());
        // A leadership change applied while it opened.
        txns.follow_leadership();
        Ok(())
    }

    /// Unload every shard and refuse new ones: the broker is closing.
    pub(crate) fn close(&self) {
        *self.load_lock.lock() = true;
        if let Some(t) = self.loaded.get() {
            t.close();
        }
    }
}

/// What a shard's calls produce: the core's outputs, and after each record
/// the note that it was written (delivered once it is durable, or not).
pub enum ShardOut {
    Core(Output),
    Written(WriteId),
}

/// One shard's state machine: the transactional ids of one
/// `__transaction_state` partition.
pub struct TxnShard {
    core: TxnCoordinator,
    partition: u32,
    partitions: i32,
    /// What `finish_replay` produced, released by the next tick.
    deferred: Vec<Output>,
    /// The finalized `transaction.version`, kept current by [`Txns::request`]
    /// from the metadata image and handed to the core before each call.
    transaction_version: Arc<AtomicI16>,
}

impl TxnShard {
    /// Wrap the core's outputs: each `Persist` is followed by its `Written`.
    /// Every record belongs to a transactional id of this shard's partition.
    fn wrap(&self, core: Vec<Output>, out: &mut Vec<ShardOut>) {
        for o in core {
            let written = match &o {
                Output::Persist {
                    write,
                    transactional_id,
                    ..
                } => {
                    assert_eq!(
                        fjord_txn::state_partition_for(transactional_id, self.partitions).0 as u32,
                        self.partition,
                        "transactional id {transactional_id} written by the shard of another partition"
                    );
                    Some(*write)
                }
                _ => None,
            };
            out.push(ShardOut::Core(o));
            if let Some(w) = written {
                out.push(ShardOut::Written(w));
            }
        }
    }

    /// Run a core call and wrap what it produced.
    fn run(
        &mut self,
        out: &mut Vec<ShardOut>,
        f: impl FnOnce(&mut TxnCoordinator, &mut Vec<Output>),
    ) {
        let mut core = Vec::new();
        self.core
            .set_transaction_version(self.transaction_version.load(Ordering::Relaxed));
        f(&mut self.core, &mut core);
        self.wrap(core, out);
    }
}

impl Coordinator for TxnShard {
    type Output = ShardOut;

    fn replay(
        &mut self,
        _offset: Offset,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), ReplayError> {
        match self.core.replay(key, value) {
            Ok(()) => Ok(()),
            Err(e @ (RecordError::UnknownKeyVersion(_) | RecordError::UnknownValueVersion(_))) => {
                Err(ReplayError::Skip(e.to_string()))
            }
            Err(e) => Err(ReplayError::Fatal(e.to_string())),
        }
    }

    fn loaded(&mut self, now_ms: i64) {
        let mut out = Vec::new();
        self.core.finish_replay(now_ms, &mut out);
        self.deferred = out;
    }

    fn next_deadline_ms(&self) -> Option<i64> {
        // The core wants its first tick at once (`None`), then at its deadline.
        if self.deferred.is_empty() {
            Some(self.core.next_deadline_ms().unwrap_or(i64::MIN))
        } else {
            Some(i64::MIN)
        }
    }

    fn tick(&mut self, now_ms: i64, out: &mut Vec<ShardOut>) {
        let mut core = std::mem::take(&mut self.deferred);
        self.core
            .set_transaction_version(self.transaction_version.load(Ordering::Relaxed));
        self.core.tick(now_ms, &mut core);
        self.wrap(core, out);
    }

    fn as_record(output: &ShardOut) -> Option<(&[u8], Option<&[u8]>)> {
        match output {
            ShardOut::Core(Output::Persist { key, value, .. }) => Some((key, value.as_deref())),
            _ => None,
        }
    }
}

/// Requests waiting for their answer, per shard.
type Waiters = Vec<Mutex<HashMap<u64, oneshot::Sender<Reply>>>>;

pub struct Txns {
    runtime: Arc<Runtime<TxnShard>>,
    waiters: Arc<Waiters>,
    next_token: AtomicU64,
    partitions: i32,
    closing: Arc<AtomicBool>,
    /// `__transaction_state`'s partitions, whose leadership decides which
    /// shards this node serves in a cluster.
    state_partitions: Vec<Arc<Partition>>,
    leadership: ShardLeadership,
    /// Connections to other brokers (AddPartitionsToTxn `verify_only`).
    links: Arc<Links>,
    node_id: NodeId,
    broker: Weak<Broker>,
    /// The finalized `transaction.version` the shards see.
    transaction_version: Arc<AtomicI16>,
}

/// What `deliver` needs, set once the runtime exists.
struct Shell {
    runtime: OnceLock<Weak<Runtime<TxnShard>>>,
    waiters: Arc<Waiters>,
    broker: Weak<Broker>,
    handle: tokio::runtime::Handle,
    closing: Arc<AtomicBool>,
    /// Connections to other brokers for WriteTxnMarkers.
    links: Arc<Links>,
}

impl Txns {
    /// Create `__transaction_state` if needed and start loading its shards.
    fn open(
        broker: &Broker,
        weak: Weak<Broker>,
        handle: tokio::runtime::Handle,
    ) -> Result<Arc<Txns>, StateError> {
        let topic = match broker.topic(TXN_STATE_TOPIC) {
            Some(t) => t,
            None => {
                // Kafka's: compacted, no time retention, transaction.state.log.segment.bytes.
                let mut overrides = BTreeMap::from([
                    ("cleanup.policy".to_string(), "compact".to_string()),
                    ("retention.ms".to_string(), "-1".to_string()),
                    (
                        "segment.bytes".to_string(),
                        TRANSACTION_STATE_SEGMENT_BYTES_DEFAULT.to_string(),
                    ),
                ]);
                // In a cluster, Kafka's transaction.state.log.replication.factor
                // (not before that many brokers are live) and
                // transaction.state.log.min.isr.
                let replication_factor = if crate::groups::is_cluster(broker) {
                    overrides.insert(
                        "min.insync.replicas".to_string(),
                        broker.config.txns.state_min_isr.to_string(),
                    );
                    broker.config.txns.state_replication_factor
                } else {
                    -1
                };
                crate::groups::create_internal_topic(
                    broker,
                    TXN_STATE_TOPIC,
                    TRANSACTION_STATE_PARTITIONS_DEFAULT,
                    (
                        replication_factor,
                        "transaction.state.log.replication.factor",
                    ),
                    overrides,
                )?
            }
        };
        let state_partitions: Vec<Arc<Partition>> = topic.partitions.read().clone();
        let partitions = state_partitions.len() as i32;
        assert!(partitions > 0, "{TXN_STATE_TOPIC} has no partitions");
        let waiters: Arc<Waiters> = Arc::new(
            (0..partitions)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
        );
        let closing = Arc::new(AtomicBool::new(false));
        let links = Arc::new(Links::new(broker));
        let transaction_version = Arc::new(AtomicI16::new(broker.transaction_version()));
        let shard_version = transaction_version.clone();
        let broker_weak = weak.clone();
        let shell = Arc::new(Shell {
            runtime: OnceLock::new(),
            waiters: waiters.clone(),
            broker: weak,
            handle: handle.clone(),
            closing: closing.clone(),
            links: links.clone(),
        });
        let deliver_shell = shell.clone();
        let runtime = Runtime::new(
            RuntimeConfig::new(TXN_STATE_TOPIC),
            Arc::new(LogPartitions::new(state_partitions.clone())),
            move |partition| TxnShard {
                core: TxnCoordinator::new(TxnConfig::default()),
                partition,
                partitions,
                deferred: Vec::new(),
                transaction_version: shard_version.clone(),
            },
            move |partition, outputs, durable| deliver_shell.deliver(partition, outputs, durable),
            now_ms,
        );
        let _ = shell.runtime.set(Arc::downgrade(&runtime));
        let leadership = ShardLeadership::start(
            TXN_STATE_TOPIC,
            &runtime,
            &state_partitions,
            broker.config.node_id,
            crate::groups::is_cluster(broker),
        );
        {
            let _entered = handle.enter();
            runtime.start_timer();
        }
        Ok(Arc::new(Txns {
            runtime,
            waiters,
            next_token: AtomicU64::new(1),
            partitions,
            closing,
            state_partitions,
            leadership,
            links,
            node_id: broker.config.node_id,
            broker: broker_weak,
            transaction_version,
        }))
    }

    /// In a cluster: serve the shards of the `__transaction_state`
    /// partitions this node leads now (see [`ShardLeadership`]); requests
    /// waiting on a shard that is unloaded get NOT_COORDINATOR, and its
    /// marker tasks stop (the new leader's shard sends them again).
    pub(crate) fn follow_leadership(&self) {
        self.leadership
            .follow(&self.runtime, &self.state_partitions, &self.waiters);
    }

    /// In a cluster, the broker that coordinates `transactional_id` when it
    /// is another one (the leader of its `__transaction_state` partition,
    /// with its address); `None` when this node does (or no leader is known).
    pub(crate) fn remote_coordinator(
        &self,
        broker: &Broker,
        transactional_id: &str,
    ) -> Option<(NodeId, Option<String>)> {
        if !crate::groups::is_cluster(broker) {
            return None;
        }
        let p = self
            .state_partitions
            .get(self.partition_for(transactional_id) as usize)?;
        let leader = p.replica_state().leader;
        (leader != self.node_id && leader.0 >= 0).then(|| (leader, Links::address(broker, leader)))
    }

    /// Transaction version 2 (KIP-890): add `partitions` to the producer's
    /// transaction for it, as a partition leader does before appending a
    /// Produce v12+ batch or a TxnOffsetCommit v5+ (Kafka's
    /// `AddPartitionsToTxnManager`): on this node's coordinator, or with
    /// AddPartitionsToTxn v5 to the broker that coordinates the id. NONE once
    /// they are in; otherwise the coordinator's error (a coordinator that
    /// cannot be reached is COORDINATOR_NOT_AVAILABLE).
    pub(crate) async fn add_implicitly(
        self: &Arc<Self>,
        broker: &Broker,
        transactional_id: &str,
        producer_id: ProducerId,
        producer_epoch: ProducerEpoch,
        partitions: Vec<TopicPartition>,
    ) -> ErrorCode {
        if let Some(remote) = self.remote_coordinator(broker, transactional_id) {
            let codes = self
                .ask_remote(
                    remote,
                    transactional_id,
                    producer_id,
                    producer_epoch,
                    &partitions,
                    false,
                )
                .await;
            return first_error(&codes);
        }
        let id = transactional_id.to_string();
        let reply = self
            .request(transactional_id, move |c, token, now, out| {
                let producer = fjord_txn::TxnProducer {
                    transactional_id: &id,
                    producer_id,
                    producer_epoch,
                    transaction_version: fjord_txn::TRANSACTION_VERSION_EPOCH_BUMP,
                };
                c.add_partitions(token, &producer, &partitions, now, out)
            })
            .await;
        match reply {
            Ok(Reply::Done(e) | Reply::Ended { error: e, .. }) => e,
            Ok(Reply::InitProducerId { error, .. }) => error,
            Err(e) => e,
        }
    }

    /// AddPartitionsToTxn `verify_only` (v4) for `partition`, sent to the
    /// transaction coordinator `node` (Kafka's group coordinator asks so
    /// before a TxnOffsetCommit, KIP-890): NONE when the partition is in the
    /// producer's ongoing transaction, the coordinator's error otherwise; a
    /// coordinator that cannot be reached or asked is COORDINATOR_NOT_AVAILABLE
    /// (the client looks the coordinator up again and retries).
    pub(crate) async fn verify_remote(
        &self,
        coordinator: (NodeId, Option<String>),
        transactional_id: &str,
        producer_id: ProducerId,
        producer_epoch: ProducerEpoch,
        partition: &TopicPartition,
    ) -> ErrorCode {
        let codes = self
            .ask_remote(
                coordinator,
                transactional_id,
                producer_id,
                producer_epoch,
                std::slice::from_ref(partition),
                true,
            )
            .await;
        first_error(&codes)
    }

    /// KIP-890 part 1, as a partition leader before it appends a Produce
    /// (v11 and older) transactional batch of a producer whose transaction
    /// is not open on `partitions`: AddPartitionsToTxn `verify_only` on this
    /// node's coordinator, or sent to the broker that coordinates the id
    /// (Kafka's `AddPartitionsToTxnManager.verifyTransaction`). A code per
    /// partition: NONE for those in the producer's transaction.
    pub(crate) async fn verify_partitions(
        self: &Arc<Self>,
        broker: &Broker,
        transactional_id: &str,
        producer_id: ProducerId,
        producer_epoch: ProducerEpoch,
        partitions: &[TopicPartition],
    ) -> Vec<ErrorCode> {
        match self.remote_coordinator(broker, transactional_id) {
            Some(remote) => {
                self.ask_remote(
                    remote,
                    transactional_id,
                    producer_id,
                    producer_epoch,
                    partitions,
                    true,
                )
                .await
            }
            None => crate::handlers::transactions::verify(
                self,
                transactional_id,
                producer_id,
                producer_epoch,
                partitions,
            ),
        }
    }

    /// AddPartitionsToTxn to the coordinator `node`: `verify_only` (v4), or
    /// an add for a transaction version 2 client (v5). A code per partition
    /// of `partitions` (a partition the answer leaves out: the first error
    /// of the answer, or UNKNOWN_SERVER_ERROR).
    async fn ask_remote(
        &self,
        (node, addr): (NodeId, Option<String>),
        transactional_id: &str,
        producer_id: ProducerId,
        producer_epoch: ProducerEpoch,
        partitions: &[TopicPartition],
        verify_only: bool,
    ) -> Vec<ErrorCode> {
        use fjord_protocol::kafka_protocol::messages::add_partitions_to_txn_request::{
            AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
        };
        use fjord_protocol::kafka_protocol::messages::{
            AddPartitionsToTxnRequest, TopicName, TransactionalId,
        };
        let every = |code: ErrorCode| vec![code; partitions.len()];
        let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
        for tp in partitions {
            match topics.iter_mut().find(|t| *t.name.0 == *tp.topic) {
                Some(t) => t.partitions.push(tp.partition.0),
                None => topics.push(
                    AddPartitionsToTxnTopic::default()
                        .with_name(TopicName(crate::handlers::str_bytes(&tp.topic)))
                        .with_partitions(vec![tp.partition.0]),
                ),
            }
        }
        let request = AddPartitionsToTxnRequest::default().with_transactions(vec![
            AddPartitionsToTxnTransaction::default()
                .with_transactional_id(TransactionalId(crate::handlers::str_bytes(
                    transactional_id,
                )))
                .with_producer_id(fjord_protocol::kafka_protocol::messages::ProducerId(
                    producer_id.0,
                ))
                .with_producer_epoch(producer_epoch.0)
                .with_verify_only(verify_only)
                .with_topics(topics),
        ]);
        let version = if verify_only {
            VERIFY_ONLY_VERSION
        } else {
            IMPLICIT_ADD_VERSION
        };
        let answer = match self.links.send(node, addr, &request, version).await {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(%transactional_id, node = node.0, "transaction verification not answered: {e}");
                return every(ErrorCode::COORDINATOR_NOT_AVAILABLE);
            }
        };
        let retriable = |code: ErrorCode| match code {
            ErrorCode::NOT_COORDINATOR
            | ErrorCode::COORDINATOR_LOAD_IN_PROGRESS
            | ErrorCode::CONCURRENT_TRANSACTIONS => ErrorCode::COORDINATOR_NOT_AVAILABLE,
            code => code,
        };
        if answer.error_code != 0 {
            // A broker not allowed to ask: the client must not see
            // CLUSTER_AUTHORIZATION_FAILED (Kafka answers INVALID_TXN_STATE).
            let code = match ErrorCode(answer.error_code) {
                ErrorCode::CLUSTER_AUTHORIZATION_FAILED => ErrorCode::INVALID_TXN_STATE,
                code => retriable(code),
            };
            return every(code);
        }
        let mut codes: HashMap<(&str, i32), ErrorCode> = HashMap::new();
        for t in answer
            .results_by_transaction
            .iter()
            .flat_map(|t| &t.topic_results)
        {
            for p in &t.results_by_partition {
                codes.insert(
                    (t.name.0.as_str(), p.partition_index),
                    ErrorCode(p.partition_error_code),
                );
            }
        }
        let missing = codes
            .values()
            .copied()
            .find(|e| !e.is_none())
            .unwrap_or(ErrorCode::UNKNOWN_SERVER_ERROR);
        partitions
            .iter()
            .map(|tp| {
                let code = codes
                    .get(&(tp.topic.as_str(), tp.partition.0))
                    .copied()
                    .unwrap_or(missing);
                retriable(code)
            })
            .collect()
    }

    /// The shard (= `__transaction_state` partition) of a transactional id.
    pub fn partition_for(&self, transactional_id: &str) -> u32 {
        fjord_txn::state_partition_for(transactional_id, self.partitions).0 as u32
    }

    /// Whether FindCoordinator should name this node for `transactional_id`
    /// (as `Groups::coordinator_error`).
    pub fn coordinator_error(&self, transactional_id: &str) -> ErrorCode {
        match self.runtime.status(self.partition_for(transactional_id)) {
            ShardStatus::Loading => ErrorCode::COORDINATOR_NOT_AVAILABLE,
            ShardStatus::Closed => ErrorCode::NOT_COORDINATOR,
            ShardStatus::Active | ShardStatus::Failed { .. } => ErrorCode::NONE,
        }
    }

    /// Run a request on its shard and wait for the answer the core gives its
    /// token (possibly after a write). A shard that refuses answers its code.
    pub fn request(
        self: &Arc<Self>,
        transactional_id: &str,
        f: impl FnOnce(&mut TxnCoordinator, RequestToken, i64, &mut Vec<Output>),
    ) -> impl Future<Output = Result<Reply, ErrorCode>> + Send + 'static {
        let p = self.partition_for(transactional_id);
        if let Some(b) = self.broker.upgrade() {
            self.transaction_version
                .store(b.transaction_version(), Ordering::Relaxed);
        }
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Some(w) = self.waiters.get(p as usize) {
            w.lock().insert(token, tx);
        }
        let started = self.runtime.write(
            p,
            move |shard: &mut TxnShard, now, out| {
                shard.run(out, move |c, core| f(c, RequestToken(token), now, core));
                ((), ())
            },
            |_, ()| {},
        );
        let waiters = self.waiters.clone();
        async move {
            match started {
                Ok(written) => {
                    written.await;
                }
                Err(e) => {
                    if let Some(w) = waiters.get(p as usize) {
                        w.lock().remove(&token);
                    }
                    return Err(e.code());
                }
            }
            rx.await.map_err(|_| ErrorCode::NOT_COORDINATOR)
        }
    }

    /// Read-only access to a transactional id's shard.
    pub fn read<R>(
        self: &Arc<Self>,
        transactional_id: &str,
        f: impl FnOnce(&TxnCoordinator) -> R,
    ) -> Result<R, ErrorCode> {
        self.runtime
            .read(self.partition_for(transactional_id), |shard| f(&shard.core))
            .map_err(ShardError::code)
    }

    /// `read` on every shard: each shard's result or refusal.
    pub fn read_all<R>(
        self: &Arc<Self>,
        mut f: impl FnMut(&TxnCoordinator) -> R,
    ) -> Vec<Result<R, ErrorCode>> {
        self.runtime
            .read_all(|_, shard| f(&shard.core))
            .into_iter()
            .map(|r| r.map_err(ShardError::code))
            .collect()
    }

    /// Unload every shard; waiting requests get NOT_COORDINATOR, marker
    /// tasks stop.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.runtime.close();
        for w in self.waiters.iter() {
            w.lock().clear();
        }
    }
}

impl Shell {
    fn runtime(&self) -> Option<Arc<Runtime<TxnShard>>> {
        self.runtime.get().and_then(Weak::upgrade)
    }

    /// The runtime's delivery of a shard's outputs, once the records before
    /// them are durable (`durable`) or failed.
    fn deliver(self: &Arc<Self>, partition: u32, outputs: Vec<ShardOut>, durable: bool) {
        for o in outputs {
            match o {
                ShardOut::Written(write) => self.report_write(partition, write, durable),
                ShardOut::Core(Output::Respond(token, reply)) => {
                    let tx = self
                        .waiters
                        .get(partition as usize)
                        .and_then(|w| w.lock().remove(&token.0));
                    if let Some(tx) = tx {
                        // The client may be gone; nothing to do then.
                        let _ = tx.send(reply);
                    }
                }
                ShardOut::Core(Output::WriteMarkers {
                    transactional_id,
                    producer_id,
                    producer_epoch,
                    result,
                    partitions,
                    transaction_version,
                }) => {
                    let shell = self.clone();
                    self.handle.spawn(async move {
                        let marker = fjord_storage::TxnMarker {
                            producer_id,
                            producer_epoch,
                            coordinator_epoch: shell.coordinator_epoch(partition),
                            aborted: result == TxnResult::Abort,
                            transaction_version,
                        };
                        shell
                            .write_markers(partition, transactional_id, marker, partitions)
                            .await;
                    });
                }
                ShardOut::Core(Output::Persist { .. }) => {
                    unreachable!("records are appended by the runtime, never delivered")
                }
            }
        }
    }

    /// Report a write's outcome to its shard (which may answer, write
    /// markers, or write again).
    fn report_write(self: &Arc<Self>, partition: u32, write: WriteId, durable: bool) {
        let Some(runtime) = self.runtime() else {
            return;
        };
        let result = if durable {
            Ok(())
        } else {
            Err(ErrorCode::COORDINATOR_NOT_AVAILABLE)
        };
        let done = runtime.write(
            partition,
            |shard: &mut TxnShard, now, out| {
                shard.run(out, |c, core| c.append_done(write, result, now, core));
                ((), ())
            },
            |_, ()| {},
        );
        match done {
            Ok(f) => {
                self.handle.spawn(f);
            }
            // The shard was unloaded: its state is gone with the write.
            Err(e) => tracing::debug!(
                partition,
                "transaction state write not reported: shard refused ({e:?})"
            ),
        }
    }

    /// Write the markers of one transaction into each of its partitions,
    /// retrying until every one is written, then report them. A partition
    /// led here gets its marker through the partition layer; in a cluster,
    /// one led by another broker gets it by WriteTxnMarkers sent to that
    /// leader, as Kafka's coordinator does (its leader looked up again in the
    /// metadata image at every attempt). A partition whose leader answers
    /// TRANSACTION_COORDINATOR_FENCED has seen a newer coordinator of this
    /// transaction: this one stops (Kafka's coordinator gives up sending
    /// then), and so it does once its shard is no longer served here.
    async fn write_markers(
        self: Arc<Self>,
        partition: u32,
        transactional_id: String,
        marker: fjord_storage::TxnMarker,
        partitions: Vec<TopicPartition>,
    ) {
        let (producer_id, producer_epoch) = (marker.producer_id, marker.producer_epoch);
        let mut pending = partitions;
        let mut backoff_ms = TRANSACTION_MARKER_RETRY_BACKOFF_MS_MIN;
        loop {
            if self.closing.load(Ordering::Acquire) {
                return;
            }
            let Some(runtime) = self.runtime() else {
                return;
            };
            if runtime.status(partition) != ShardStatus::Active {
                tracing::debug!(%transactional_id, partition, "markers left to the shard's next leader");
                return;
            }
            drop(runtime);
            let Some(broker) = self.broker.upgrade() else {
                return;
            };
            let me = broker.config.node_id;
            let cluster = crate::groups::is_cluster(&broker);
            let mut local = Vec::new();
            let mut remote: BTreeMap<NodeId, Vec<TopicPartition>> = BTreeMap::new();
            let mut outcomes: Vec<(TopicPartition, ErrorCode)> = Vec::new();
            for tp in pending {
                let Some(p) = broker
                    .topic(&tp.topic)
                    .and_then(|t| t.partition(tp.partition.0))
                else {
                    // Deleted: no marker is needed (Kafka drops it too).
                    continue;
                };
                let leader = p.replica_state().leader;
                if !cluster || leader == me {
                    match crate::handlers::write_txn_markers::append_marker(&broker, &tp, &marker) {
                        Ok(committed) => local.push((tp, committed)),
                        Err(code) => outcomes.push((tp, code)),
                    }
                } else if leader.0 < 0 {
                    outcomes.push((tp, ErrorCode::LEADER_NOT_AVAILABLE));
                } else {
                    remote.entry(leader).or_default().push(tp);
                }
            }
            let remote: Vec<(NodeId, Option<String>, Vec<TopicPartition>)> = remote
                .into_iter()
                .map(|(node, tps)| {
                    let addr = Links::address(&broker, node);
                    (node, addr, tps)
                })
                .collect();
            drop(broker);
            for (tp, committed) in local {
                outcomes.push((tp, committed.await.err().unwrap_or(ErrorCode::NONE)));
            }
            for (node, addr, tps) in remote {
                match self.send_markers(node, addr, &marker, &tps).await {
                    Ok(answered) => outcomes.extend(answered),
                    Err(e) => {
                        tracing::debug!(%transactional_id, node = node.0, "WriteTxnMarkers not answered, retrying: {e}");
                        outcomes
                            .extend(tps.into_iter().map(|tp| (tp, ErrorCode::NETWORK_EXCEPTION)));
                    }
                }
            }
            let mut retry = Vec::new();
            for (tp, code) in outcomes {
                match code {
                    ErrorCode::NONE => {}
                    ErrorCode::TRANSACTION_COORDINATOR_FENCED => {
                        tracing::info!(%transactional_id, topic = %tp.topic, partition = tp.partition.0, "a newer coordinator wrote this transaction's markers: this one stops");
                        return;
                    }
                    code if is_retriable(code) => {
                        tracing::debug!(%transactional_id, topic = %tp.topic, partition = tp.partition.0, "marker not written, retrying: {code:?}");
                        retry.push(tp);
                    }
                    code => tracing::warn!(
                        %transactional_id,
                        topic = %tp.topic,
                        partition = tp.partition.0,
                        "marker refused, not retried: {code:?}"
                    ),
                }
            }
            if retry.is_empty() {
                break;
            }
            pending = retry;
            tokio::time::sleep(Duration::from_millis(backoff_ms as u64)).await;
            backoff_ms = backoff_ms
                .saturating_mul(2)
                .min(TRANSACTION_MARKER_RETRY_BACKOFF_MS_MAX);
        }
        let Some(runtime) = self.runtime() else {
            return;
        };
        let done = runtime.write(
            partition,
            |shard: &mut TxnShard, now, out| {
                shard.run(out, |c, core| {
                    c.markers_done(&transactional_id, producer_id, producer_epoch, now, core)
                });
                ((), ())
            },
            |_, ()| {},
        );
        if let Ok(f) = done {
            f.await;
        }
    }

    /// WriteTxnMarkers (v2) for `marker` in `partitions`, to their leader
    /// `node` at `addr`, over a connection kept per node (dropped on any
    /// failure). The answer's code per partition; a partition the answer
    /// leaves out is UNKNOWN_SERVER_ERROR (retried).
    async fn send_markers(
        &self,
        node: NodeId,
        addr: Option<String>,
        marker: &fjord_storage::TxnMarker,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, ErrorCode)>, String> {
        use fjord_protocol::requests::owned::write_txn_markers_request::{
            WritableTxnMarker, WritableTxnMarkerTopic, WriteTxnMarkersRequest,
        };
        let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in partitions {
            topics.entry(&tp.topic).or_default().push(tp.partition.0);
        }
        let request = WriteTxnMarkersRequest {
            markers: vec![WritableTxnMarker {
                producer_id: marker.producer_id.0,
                producer_epoch: marker.producer_epoch.0,
                transaction_result: !marker.aborted,
                coordinator_epoch: marker.coordinator_epoch,
                // A feature level: 0..=2 today (clamped, never wrapped).
                transaction_version: i8::try_from(marker.transaction_version).unwrap_or(i8::MAX),
                topics: topics
                    .into_iter()
                    .map(|(name, partition_indexes)| WritableTxnMarkerTopic {
                        name: name.to_string(),
                        partition_indexes,
                        ..WritableTxnMarkerTopic::default()
                    })
                    .collect(),
                ..WritableTxnMarker::default()
            }],
            ..WriteTxnMarkersRequest::default()
        };
        let answer = self
            .links
            .send(node, addr, &request, WRITE_TXN_MARKERS_VERSION)
            .await?;
        let mut codes: HashMap<(&str, i32), ErrorCode> = HashMap::new();
        for m in &answer.markers {
            for t in &m.topics {
                for p in &t.partitions {
                    codes.insert(
                        (t.name.as_str(), p.partition_index),
                        ErrorCode(p.error_code),
                    );
                }
            }
        }
        Ok(partitions
            .iter()
            .map(|tp| {
                let code = codes
                    .get(&(tp.topic.as_str(), tp.partition.0))
                    .copied()
                    .unwrap_or(ErrorCode::UNKNOWN_SERVER_ERROR);
                (tp.clone(), code)
            })
            .collect())
    }

    /// The coordinator epoch markers carry: the leader epoch of the shard's
    /// `__transaction_state` partition.
    fn coordinator_epoch(&self, partition: u32) -> i32 {
        self.broker
            .upgrade()
            .and_then(|b| b.topic(TXN_STATE_TOPIC))
            .and_then(|t| t.partition(partition as i32))
            .map_or(0, |p| p.leader_epoch().0)
    }
}

/// The first error of `codes`, NONE if there is none.
fn first_error(codes: &[ErrorCode]) -> ErrorCode {
    codes
        .iter()
        .copied()
        .find(|e| !e.is_none())
        .unwrap_or(ErrorCode::NONE)
}

/// Marker write errors worth retrying (the partition may come back to this
/// leader or recover, its new leader may not know it yet, a broker may be
/// unreachable for a while); others mean the marker is not wanted.
fn is_retriable(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NOT_LEADER_OR_FOLLOWER
            | ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
            | ErrorCode::NETWORK_EXCEPTION
            | ErrorCode::UNKNOWN_SERVER_ERROR
            | ErrorCode::COORDINATOR_LOAD_IN_PROGRESS
            | ErrorCode::NOT_ENOUGH_REPLICAS
            | ErrorCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND
            | ErrorCode::KAFKA_STORAGE_ERROR
            | ErrorCode::REQUEST_TIMED_OUT
            | ErrorCode::UNKNOWN_LEADER_EPOCH
            | ErrorCode::FENCED_LEADER_EPOCH
            | ErrorCode::LEADER_NOT_AVAILABLE
    )
}
