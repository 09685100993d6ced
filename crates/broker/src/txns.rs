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
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use fjord_coordinator::{
    Coordinator, LogPartitions, ReplayError, Runtime, RuntimeConfig, ShardError, ShardStatus,
};
use fjord_model::limits::{
    TRANSACTION_MARKER_RETRY_BACKOFF_MS_MAX, TRANSACTION_MARKER_RETRY_BACKOFF_MS_MIN,
    TRANSACTION_STATE_PARTITIONS_DEFAULT, TRANSACTION_STATE_SEGMENT_BYTES_DEFAULT,
};
use fjord_model::{ErrorCode, Offset, ProducerEpoch, ProducerId, TopicPartition};
use fjord_txn::{
    Output, RecordError, Reply, RequestToken, TxnConfig, TxnCoordinator, TxnResult, WriteId,
};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::state::{now_ms, Broker, Partition, StateError};

/// Kafka's internal topic for transaction state.
pub const TXN_STATE_TOPIC: &str = "__transaction_state";
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
}

impl TxnsSlot {
    pub(crate) fn new(broker: Weak<Broker>) -> TxnsSlot {
        TxnsSlot {
            loaded: OnceLock::new(),
            broker,
            loading: AtomicBool::new(false),
            failed_at_ms: AtomicI64::new(i64::MIN),
            load_lock: Mutex::new(false),
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
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
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
                    tracing::error!("cannot start the transaction coordinator: {e}");
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
        let _ = self.loaded.set(txns);
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
}

/// What `deliver` needs, set once the runtime exists.
struct Shell {
    runtime: OnceLock<Weak<Runtime<TxnShard>>>,
    waiters: Arc<Waiters>,
    broker: Weak<Broker>,
    handle: tokio::runtime::Handle,
    closing: Arc<AtomicBool>,
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
                let overrides = BTreeMap::from([
                    ("cleanup.policy".to_string(), "compact".to_string()),
                    ("retention.ms".to_string(), "-1".to_string()),
                    (
                        "segment.bytes".to_string(),
                        TRANSACTION_STATE_SEGMENT_BYTES_DEFAULT.to_string(),
                    ),
                ]);
                broker.create_topic_unchecked(
                    TXN_STATE_TOPIC,
                    TRANSACTION_STATE_PARTITIONS_DEFAULT,
                    -1,
                    &[],
                    overrides,
                    false,
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
        let shell = Arc::new(Shell {
            runtime: OnceLock::new(),
            waiters: waiters.clone(),
            broker: weak,
            handle: handle.clone(),
            closing: closing.clone(),
        });
        let deliver_shell = shell.clone();
        let runtime = Runtime::new(
            RuntimeConfig::new(TXN_STATE_TOPIC),
            Arc::new(LogPartitions::new(state_partitions)),
            move |partition| TxnShard {
                core: TxnCoordinator::new(TxnConfig::default()),
                partition,
                partitions,
                deferred: Vec::new(),
            },
            move |partition, outputs, durable| deliver_shell.deliver(partition, outputs, durable),
            now_ms,
        );
        let _ = shell.runtime.set(Arc::downgrade(&runtime));
        runtime.start();
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
        }))
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
                }) => {
                    let shell = self.clone();
                    self.handle.spawn(async move {
                        shell
                            .write_markers(
                                partition,
                                transactional_id,
                                producer_id,
                                producer_epoch,
                                result,
                                partitions,
                            )
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
    /// retrying until every one is written, then report them.
    async fn write_markers(
        self: Arc<Self>,
        partition: u32,
        transactional_id: String,
        producer_id: ProducerId,
        producer_epoch: ProducerEpoch,
        result: TxnResult,
        partitions: Vec<TopicPartition>,
    ) {
        let marker = fjord_storage::TxnMarker {
            producer_id,
            producer_epoch,
            coordinator_epoch: self.coordinator_epoch(partition),
            aborted: result == TxnResult::Abort,
        };
        let mut pending = partitions;
        let mut backoff_ms = TRANSACTION_MARKER_RETRY_BACKOFF_MS_MIN;
        loop {
            if self.closing.load(Ordering::Acquire) {
                return;
            }
            let Some(broker) = self.broker.upgrade() else {
                return;
            };
            let mut waits = Vec::new();
            let mut retry = Vec::new();
            for tp in pending {
                let Some(p) = broker
                    .topic(&tp.topic)
                    .and_then(|t| t.partition(tp.partition.0))
                else {
                    // Deleted: no marker is needed (Kafka drops it too).
                    continue;
                };
                match p.append_marker(&marker, now_ms()) {
                    Ok((_, committed)) => waits.push((tp, committed)),
                    Err(e) if is_retriable(e.kafka_code()) => {
                        tracing::debug!(%transactional_id, topic = %tp.topic, partition = tp.partition.0, "marker not written, retrying: {e}");
                        retry.push(tp);
                    }
                    Err(e) => tracing::warn!(
                        %transactional_id,
                        topic = %tp.topic,
                        partition = tp.partition.0,
                        "marker refused, not retried: {e}"
                    ),
                }
            }
            let groups = broker.groups.loaded().cloned();
            drop(broker);
            for (tp, committed) in waits {
                if let Err(e) = committed.await {
                    tracing::debug!(%transactional_id, topic = %tp.topic, partition = tp.partition.0, "marker not committed, retrying: {e}");
                    retry.push(tp);
                    continue;
                }
                // A group's transactional offsets become visible (or are
                // dropped) once the marker is in its offsets partition.
                if tp.topic == crate::groups::OFFSETS_TOPIC {
                    if let (Some(g), Ok(p)) = (&groups, u32::try_from(tp.partition.0)) {
                        g.complete_txn(p, producer_id, !marker.aborted).await;
                    }
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

/// Marker write errors worth retrying (the partition may come back to this
/// leader or recover); others mean the marker is not wanted.
fn is_retriable(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NOT_LEADER_OR_FOLLOWER
            | ErrorCode::NOT_ENOUGH_REPLICAS
            | ErrorCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND
            | ErrorCode::KAFKA_STORAGE_ERROR
            | ErrorCode::REQUEST_TIMED_OUT
            | ErrorCode::UNKNOWN_LEADER_EPOCH
            | ErrorCode::FENCED_LEADER_EPOCH
            | ErrorCode::LEADER_NOT_AVAILABLE
    )
}
