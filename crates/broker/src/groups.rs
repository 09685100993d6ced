//! The shell around `fjord_group::GroupCoordinator`, on the coordinator
//! runtime (`fjord_coordinator`): one shard per `__consumer_offsets`
//! partition, each with its own `GroupCoordinator` and lock, holding the
//! groups whose id hashes to that partition (`fjord_group::offsets_partition_for`,
//! as Kafka), so a call for one group never waits for a group of another
//! shard. The runtime appends a call's `Persist` outputs to the shard's
//! partition in decision order, and answers (held JoinGroup/SyncGroup
//! responses on oneshot channels, the call's own result) only once they are
//! durable; one timer task ticks shards by deadline.
//!
//! Shards load (replay their partition) in parallel in the background. A
//! group whose shard is loading gets COORDINATOR_LOAD_IN_PROGRESS; one whose
//! shard failed to load (a read error or a damaged batch) gets
//! NOT_COORDINATOR, as from Kafka, while the load is retried with a backoff:
//! a shard never serves part of its partition, so a consumer never reads
//! "no committed offset" for a group whose commits are on disk.
//!
//! The broker holds the runtime in a [`GroupsSlot`], which is empty until
//! `__consumer_offsets` exists (created lazily, on the first group request of
//! a new node, or at start by `fjord serve`): group requests answer
//! COORDINATOR_NOT_AVAILABLE meanwhile; clients retry.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use fjord_coordinator::{
    Coordinator, LogPartitions, ReplayError, Runtime, RuntimeConfig, ShardError, ShardStatus,
    TxnWriter,
};
use fjord_group::{
    CommitRequest, GroupConfig, GroupCoordinator, JoinResponse, Output, RecordError, RequestToken,
    SyncResponse, TopicResult, TxnCommitRequest,
};
use fjord_model::limits::OFFSETS_TOPIC_PARTITIONS_DEFAULT;
use fjord_model::{ErrorCode, Offset, ProducerEpoch, ProducerId};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::leadership::ShardLeadership;
use crate::state::{now_ms, Broker, Partition, StateError};

/// A node of a KRaft cluster (internal topics are replicated, and each
/// coordinator shard is served by its partition's leader), not a single node.
pub(crate) fn is_cluster(broker: &Broker) -> bool {
    matches!(broker.quorum(), Some(crate::state::Quorum::Raft(_)))
}

/// Kafka's internal topic for committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// After a failed creation of `__consumer_offsets`, group requests start the
/// next attempt no sooner than this.
const CREATE_RETRY_MS: i64 = 1_000;

/// The broker's group coordinator, once `__consumer_offsets` exists.
///
/// `get` returns it, or `None` while the topic is being created: callers
/// then answer COORDINATOR_NOT_AVAILABLE, and the call starts the creation
/// if none is running (on a background thread, so neither the async runtime
/// nor other topics' requests wait for it).
pub struct GroupsSlot {
    loaded: OnceLock<Arc<Groups>>,
    broker: Weak<Broker>,
    /// A creation thread is running (or about to).
    loading: AtomicBool,
    /// When the last failed creation ended (ms since the epoch; `i64::MIN`: none).
    failed_at_ms: AtomicI64,
    /// Held for the whole of a creation; `true` once the broker is closing.
    load_lock: Mutex<bool>,
}

impl GroupsSlot {
    pub(crate) fn new(broker: Weak<Broker>) -> GroupsSlot {
        GroupsSlot {
            loaded: OnceLock::new(),
            broker,
            loading: AtomicBool::new(false),
            failed_at_ms: AtomicI64::new(i64::MIN),
            load_lock: Mutex::new(false),
        }
    }

    /// The coordinator if `__consumer_offsets` exists (its shards may still
    /// be loading); otherwise starts creating it and returns `None` (answer
    /// COORDINATOR_NOT_AVAILABLE).
    pub fn get(&self) -> Option<&Arc<Groups>> {
        let loaded = self.loaded.get();
        if loaded.is_none() {
            self.start_loading();
        }
        loaded
    }

    /// The coordinator if it exists (starts nothing).
    pub fn loaded(&self) -> Option<&Arc<Groups>> {
        self.loaded.get()
    }

    /// Readiness: `__consumer_offsets` exists and no shard of it is still
    /// loading or failed to load (shards led by other nodes are closed here).
    pub fn all_loaded(&self) -> bool {
        self.loaded.get().is_some_and(|g| {
            (0..g.runtime.shard_count()).all(|p| {
                !matches!(
                    g.runtime.status(p),
                    ShardStatus::Loading | ShardStatus::Failed { .. }
                )
            })
        })
    }

    /// Start creating `__consumer_offsets` (if needed) and loading its
    /// shards on a background thread, unless that is done, running, or
    /// failed less than `CREATE_RETRY_MS` ago.
    pub fn start_loading(&self) {
        if self.loaded.get().is_some() {
            return;
        }
        let failed_at_ms = self.failed_at_ms.load(Ordering::Acquire);
        if failed_at_ms != i64::MIN && now_ms().saturating_sub(failed_at_ms) < CREATE_RETRY_MS {
            return;
        }
        if self.loading.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(broker) = self.broker.upgrade() else {
            self.loading.store(false, Ordering::Release);
            return;
        };
        // A cluster node starts before its metadata quorum has elected a leader: creating
        // `__consumer_offsets` cannot succeed yet, and is not an error. The next request
        // that needs a coordinator tries again.
        let no_leader = broker
            .quorum()
            .is_some_and(|q| q.get().leader_and_epoch().0.is_none());
        if no_leader {
            self.loading.store(false, Ordering::Release);
            tracing::debug!("group coordinator waits for the metadata quorum to elect a leader");
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("fjord-groups-load".to_string())
            .spawn(move || {
                let slot = &broker.groups;
                if let Err(e) = slot.load_blocking(false) {
                    // Another node creating the topic at the same moment, or a
                    // leader not elected yet: the next request tries again.
                    if is_transient(&e) {
                        tracing::debug!("group coordinator not started yet: {e}");
                    } else {
                        tracing::error!("cannot start the group coordinator: {e}");
                    }
                    slot.failed_at_ms.store(now_ms(), Ordering::Release);
                }
                slot.loading.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the group coordinator: {e}");
            self.failed_at_ms.store(now_ms(), Ordering::Release);
            self.loading.store(false, Ordering::Release);
        }
    }

    /// Create `__consumer_offsets` if needed and start loading its shards on
    /// loader threads; with `wait`, return once every shard has loaded or
    /// failed (a no-op once created, apart from the wait).
    pub(crate) fn load_blocking(&self, wait: bool) -> Result<(), StateError> {
        let groups = {
            let closed = self.load_lock.lock();
            match self.loaded.get() {
                Some(g) => g.clone(),
                None => {
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
                    let groups = Groups::open(&broker)?;
                    let _ = self.loaded.set(groups.clone());
                    // A leadership change applied while it opened.
                    groups.follow_leadership();
                    groups
                }
            }
        };
        if wait {
            groups.runtime.wait_for_loads();
        }
        Ok(())
    }

    /// Unload every shard (loads in progress finish first) and refuse new ones:
    /// the broker is closing.
    pub(crate) fn close(&self) {
        *self.load_lock.lock() = true;
        if let Some(g) = self.loaded.get() {
            g.close();
        }
    }
}

enum Reply {
    Join(JoinResponse),
    Sync(SyncResponse),
}

/// One shard's state machine: the groups of one `__consumer_offsets` partition.
pub struct GroupShard {
    core: GroupCoordinator,
    partition: u32,
    partitions: i32,
}

impl Deref for GroupShard {
    type Target = GroupCoordinator;
    fn deref(&self) -> &GroupCoordinator {
        &self.core
    }
}

impl DerefMut for GroupShard {
    fn deref_mut(&mut self) -> &mut GroupCoordinator {
        &mut self.core
    }
}

impl Coordinator for GroupShard {
    type Output = Output;

    fn replay(
        &mut self,
        _offset: Offset,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), ReplayError> {
        self.core.replay(key, value).map_err(replay_error)
    }

    fn replay_transactional(
        &mut self,
        _offset: Offset,
        producer_id: ProducerId,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), ReplayError> {
        self.core
            .replay_transactional(producer_id.0, key, value)
            .map_err(replay_error)
    }

    fn replay_marker(&mut self, _offset: Offset, producer_id: ProducerId, commit: bool) {
        // Replay takes no time: the group's clock starts at `loaded`.
        self.core.complete_txn(producer_id.0, commit, -1);
    }

    fn loaded(&mut self, now_ms: i64) {
        self.core.finish_replay(now_ms);
    }

    fn next_deadline_ms(&self) -> Option<i64> {
        self.core.next_deadline_ms()
    }

    fn tick(&mut self, now_ms: i64, out: &mut Vec<Output>) {
        self.core.tick(now_ms, out);
        self.check_outputs(out);
    }

    fn as_record(output: &Output) -> Option<(&[u8], Option<&[u8]>)> {
        match output {
            Output::Persist { key, value, .. } => Some((key, value.as_deref())),
            Output::Join(..) | Output::Sync(..) => None,
        }
    }
}

impl GroupShard {
    /// Every record a shard writes belongs to a group of its own partition
    /// (what makes its partition, replayed alone, hold all of its groups).
    fn check_outputs(&self, out: &[Output]) {
        for o in out {
            if let Output::Persist { group_id, .. } = o {
                assert_eq!(
                    fjord_group::offsets_partition_for(group_id, self.partitions) as u32,
                    self.partition,
                    "group {group_id} written by the shard of another partition"
                );
            }
        }
    }
}

fn replay_error(e: RecordError) -> ReplayError {
    match e {
        // Record types of later versions are ignored, as Kafka does.
        e @ (RecordError::UnknownKeyVersion(_) | RecordError::UnknownValueVersion { .. }) => {
            ReplayError::Skip(e.to_string())
        }
        // A record in a batch whose CRC holds but that cannot be read:
        // the partition cannot be trusted.
        e => ReplayError::Fatal(e.to_string()),
    }
}

/// Held JoinGroup/SyncGroup responses, per shard.
type Waiters = Vec<Mutex<HashMap<u64, oneshot::Sender<Reply>>>>;

pub struct Groups {
    runtime: Arc<Runtime<GroupShard>>,
    waiters: Arc<Waiters>,
    next_token: AtomicU64,
    partitions: i32,
    /// `__consumer_offsets`' partitions, whose leadership decides which
    /// shards this node serves in a cluster.
    offsets_partitions: Vec<Arc<Partition>>,
    leadership: ShardLeadership,
}

impl Groups {
    /// Create `__consumer_offsets` if needed and start loading its shards.
    pub fn open(broker: &Broker) -> Result<Arc<Groups>, StateError> {
        let topic = match broker.topic(OFFSETS_TOPIC) {
            Some(t) => t,
            None => {
                // Kafka's: compacted, no time retention, offsets.topic.segment.bytes.
                let overrides = BTreeMap::from([
                    ("cleanup.policy".to_string(), "compact".to_string()),
                    ("retention.ms".to_string(), "-1".to_string()),
                    (
                        "segment.bytes".to_string(),
                        broker.config.groups.offsets_segment_bytes.to_string(),
                    ),
                ]);
                // In a cluster, Kafka's offsets.topic.replication.factor,
                // and not before that many brokers are live.
                let replication_factor = if is_cluster(broker) {
                    broker.config.groups.offsets_replication_factor
                } else {
                    -1
                };
                create_internal_topic(
                    broker,
                    OFFSETS_TOPIC,
                    OFFSETS_TOPIC_PARTITIONS_DEFAULT,
                    (replication_factor, "offsets.topic.replication.factor"),
                    overrides,
                )?
            }
        };
        let offsets_partitions: Vec<Arc<Partition>> = topic.partitions.read().clone();
        let partitions = offsets_partitions.len() as i32;
        assert!(partitions > 0, "{OFFSETS_TOPIC} has no partitions");
        let g = &broker.config.groups;
        let seed = now_ms() as u64 ^ u64::from(std::process::id()).rotate_left(32);
        let config = GroupConfig {
            member_id_seed: seed,
            initial_rebalance_delay_ms: g.initial_rebalance_delay_ms,
            session_timeout_ms_min: g.session_timeout_ms_min,
            session_timeout_ms_max: g.session_timeout_ms_max,
            offsets_retention_ms: g.offsets_retention_ms,
            ..GroupConfig::default()
        };
        let waiters: Arc<Waiters> = Arc::new(
            (0..partitions)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
        );
        let deliver_to = waiters.clone();
        let runtime = Runtime::new(
            RuntimeConfig::new(OFFSETS_TOPIC),
            Arc::new(LogPartitions::new(offsets_partitions.clone())),
            move |partition| GroupShard {
                core: GroupCoordinator::new(GroupConfig {
                    // Distinct member ids across shards and load attempts.
                    member_id_seed: config.member_id_seed
                        ^ u64::from(partition).rotate_left(48)
                        ^ (now_ms() as u64).rotate_left(16),
                    ..config.clone()
                }),
                partition,
                partitions,
            },
            move |partition, outputs, _durable| deliver(&deliver_to, partition, outputs),
            now_ms,
        );
        let leadership = ShardLeadership::start(
            OFFSETS_TOPIC,
            &runtime,
            &offsets_partitions,
            broker.config.node_id,
            is_cluster(broker),
        );
        Ok(Arc::new(Groups {
            runtime,
            waiters,
            next_token: AtomicU64::new(1),
            partitions,
            offsets_partitions,
            leadership,
        }))
    }

    /// In a cluster: serve the shards of the `__consumer_offsets` partitions
    /// this node leads now (see [`ShardLeadership`]); held requests of a
    /// shard that is unloaded get NOT_COORDINATOR.
    pub(crate) fn follow_leadership(&self) {
        self.leadership
            .follow(&self.runtime, &self.offsets_partitions, &self.waiters);
    }

    /// The shard (= `__consumer_offsets` partition) of a group.
    pub fn partition_for(&self, group_id: &str) -> u32 {
        fjord_group::offsets_partition_for(group_id, self.partitions) as u32
    }

    /// Whether FindCoordinator should name this node for `group_id`: not
    /// while its shard is loading (COORDINATOR_NOT_AVAILABLE, retried by
    /// clients). A shard that failed to load is named, and answers
    /// NOT_COORDINATOR itself, as Kafka does.
    pub fn coordinator_error(&self, group_id: &str) -> ErrorCode {
        match self.runtime.status(self.partition_for(group_id)) {
            ShardStatus::Loading => ErrorCode::COORDINATOR_NOT_AVAILABLE,
            ShardStatus::Closed => ErrorCode::NOT_COORDINATOR,
            ShardStatus::Active | ShardStatus::Failed { .. } => ErrorCode::NONE,
        }
    }

    /// Run `f` on the group's shard; the returned future resolves once the
    /// records it wrote are durable and held responses are delivered. `f`
    /// runs now (so calls made in request order apply in that order); the
    /// error is the shard's refusal (COORDINATOR_LOAD_IN_PROGRESS or NOT_COORDINATOR).
    pub fn call<R: Send + 'static>(
        self: &Arc<Self>,
        group_id: &str,
        f: impl FnOnce(&mut GroupCoordinator, i64, &mut Vec<Output>) -> R,
    ) -> impl Future<Output = Result<R, ErrorCode>> + Send + 'static {
        let started = self.start(group_id, |c, now, out| (f(c, now, out), ()), |_, ()| {});
        async move { Ok(started?.await.0) }
    }

    /// OffsetCommit. If the records cannot be appended the commit is undone
    /// (nobody sees it) and every partition gets NOT_COORDINATOR (Kafka's
    /// answer to a storage error), as it does when they cannot be made
    /// durable; a shard that refuses gives its error to every partition.
    ///
    /// The commit is decided and appended when this is called, not when the
    /// future is first polled: the connection's reader calls it in request
    /// order, so pipelined commits from one client apply in the order sent.
    pub fn commit(
        self: &Arc<Self>,
        req: CommitRequest,
    ) -> impl Future<Output = Vec<TopicResult>> + Send + 'static {
        let refused: Vec<TopicResult> = req
            .topics
            .iter()
            .map(|t| TopicResult {
                name: t.name.clone(),
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| (p.partition, ErrorCode::NONE))
                    .collect(),
            })
            .collect();
        let group_id = req.group_id.clone();
        let decided = self.start(
            &group_id,
            |c, now, out| c.commit_offsets_undoable(req, now, out),
            |c, undo| c.undo_commit(undo),
        );
        async move {
            let (mut results, persisted) = match decided {
                Ok(d) => d.await,
                Err(code) => {
                    let mut results = refused;
                    for (_, e) in results.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                        *e = code;
                    }
                    return results;
                }
            };
            if !persisted {
                for (_, e) in results.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                    if e.is_none() {
                        *e = ErrorCode::NOT_COORDINATOR;
                    }
                }
            }
            results
        }
    }

    /// TxnOffsetCommit: the offsets are decided now and appended as one
    /// transactional batch of the producer (its epoch checked by the
    /// partition), pending in the group coordinator until the producer's
    /// marker in this partition ([`Groups::complete_txn`]). A failed append
    /// is undone and answered NOT_COORDINATOR, as OffsetCommit's.
    pub fn txn_commit(
        self: &Arc<Self>,
        req: TxnCommitRequest,
        producer_epoch: ProducerEpoch,
    ) -> impl Future<Output = Vec<TopicResult>> + Send + 'static {
        let refused = |code: ErrorCode, req: &TxnCommitRequest| -> Vec<TopicResult> {
            req.topics
                .iter()
                .map(|t| TopicResult {
                    name: t.name.clone(),
                    partitions: t.partitions.iter().map(|p| (p.partition, code)).collect(),
                })
                .collect()
        };
        let p = self.partition_for(&req.group_id);
        let writer = TxnWriter {
            producer_id: ProducerId(req.producer_id),
            producer_epoch,
        };
        let on_refusal = refused(ErrorCode::NONE, &req);
        let decided = self
            .runtime
            .write_transactional(
                p,
                writer,
                |shard: &mut GroupShard, now, out| {
                    let r = shard.core.txn_commit_offsets(req, now, out);
                    shard.check_outputs(out);
                    r
                },
                |shard: &mut GroupShard, undo| shard.core.undo_txn_commit(undo),
            )
            .map_err(ShardError::code);
        async move {
            let (mut results, persisted) = match decided {
                Ok(d) => d.await,
                Err(code) => {
                    let mut results = on_refusal;
                    for (_, e) in results.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                        *e = code;
                    }
                    return results;
                }
            };
            if !persisted {
                for (_, e) in results.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                    if e.is_none() {
                        *e = ErrorCode::NOT_COORDINATOR;
                    }
                }
            }
            results
        }
    }

    /// A transaction marker of `producer_id` is committed in `__consumer_offsets`
    /// partition `partition`: its shard makes the producer's pending offsets
    /// committed (`commit`) or drops them. A shard that is not active learns
    /// it from the marker when it loads.
    pub fn complete_txn(
        self: &Arc<Self>,
        partition: u32,
        producer_id: ProducerId,
        commit: bool,
    ) -> impl Future<Output = ()> + Send + 'static {
        let written = self.runtime.write(
            partition,
            move |shard: &mut GroupShard, now, _out| {
                shard.core.complete_txn(producer_id.0, commit, now);
                ((), ())
            },
            |_, ()| {},
        );
        async move {
            match written {
                Ok(w) => {
                    w.await;
                }
                Err(e) => tracing::debug!(
                    partition,
                    producer_id = producer_id.0,
                    "transaction completion left to the shard's load: {e:?}"
                ),
            }
        }
    }

    /// The core of every call: `f` and the append of its records now, on the
    /// group's shard (see `Runtime::write`).
    #[allow(clippy::type_complexity)]
    fn start<R: Send + 'static, U>(
        self: &Arc<Self>,
        group_id: &str,
        f: impl FnOnce(&mut GroupCoordinator, i64, &mut Vec<Output>) -> (R, U),
        undo: impl FnOnce(&mut GroupCoordinator, U),
    ) -> Result<impl Future<Output = (R, bool)> + Send + 'static, ErrorCode> {
        let p = self.partition_for(group_id);
        self.runtime
            .write(
                p,
                |shard: &mut GroupShard, now, out| {
                    let r = f(&mut shard.core, now, out);
                    shard.check_outputs(out);
                    r
                },
                |shard: &mut GroupShard, u| undo(&mut shard.core, u),
            )
            .map_err(ShardError::code)
    }

    /// JoinGroup: waits until the coordinator answers (possibly after a rebalance).
    pub async fn join(self: &Arc<Self>, req: fjord_group::JoinRequest) -> JoinResponse {
        let member_id = req.member_id.clone();
        let group_id = req.group_id.clone();
        let (token, rx) = self.register(&group_id);
        let error = |error| JoinResponse {
            error,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            member_id: member_id.clone(),
            members: Vec::new(),
        };
        if let Err(code) = self
            .call(&group_id, |c, now, out| c.join(token, req, now, out))
            .await
        {
            self.unregister(&group_id, token);
            return error(code);
        }
        match rx.await {
            Ok(Reply::Join(r)) => r,
            _ => error(ErrorCode::NOT_COORDINATOR),
        }
    }

    /// SyncGroup: followers wait for the leader's assignment.
    pub async fn sync(self: &Arc<Self>, req: fjord_group::SyncRequest) -> SyncResponse {
        let group_id = req.group_id.clone();
        let (token, rx) = self.register(&group_id);
        let error = |error| SyncResponse {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: bytes::Bytes::new(),
        };
        if let Err(code) = self
            .call(&group_id, |c, now, out| c.sync(token, req, now, out))
            .await
        {
            self.unregister(&group_id, token);
            return error(code);
        }
        match rx.await {
            Ok(Reply::Sync(r)) => r,
            _ => error(ErrorCode::NOT_COORDINATOR),
        }
    }

    /// Read-only access to a group's shard (OffsetFetch, DescribeGroups).
    pub fn read<R>(
        self: &Arc<Self>,
        group_id: &str,
        f: impl FnOnce(&GroupCoordinator) -> R,
    ) -> Result<R, ErrorCode> {
        self.runtime
            .read(self.partition_for(group_id), |shard| f(&shard.core))
            .map_err(ShardError::code)
    }

    /// `read` on every shard (ListGroups, lag): each shard's result or refusal.
    pub fn read_all<R>(
        self: &Arc<Self>,
        mut f: impl FnMut(&GroupCoordinator) -> R,
    ) -> Vec<Result<R, ErrorCode>> {
        self.runtime
            .read_all(|_, shard| f(&shard.core))
            .into_iter()
            .map(|r| r.map_err(ShardError::code))
            .collect()
    }

    /// Unload every shard; held requests get NOT_COORDINATOR.
    pub fn close(&self) {
        self.runtime.close();
        for w in self.waiters.iter() {
            w.lock().clear();
        }
    }

    fn register(&self, group_id: &str) -> (RequestToken, oneshot::Receiver<Reply>) {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Some(w) = self.waiters.get(self.partition_for(group_id) as usize) {
            w.lock().insert(token, tx);
        }
        (RequestToken(token), rx)
    }

    fn unregister(&self, group_id: &str, token: RequestToken) {
        if let Some(w) = self.waiters.get(self.partition_for(group_id) as usize) {
            w.lock().remove(&token.0);
        }
    }
}

/// Route a shard's held responses to the requests waiting for them.
fn deliver(waiters: &Waiters, partition: u32, outputs: Vec<Output>) {
    let Some(waiters) = waiters.get(partition as usize) else {
        return;
    };
    let mut waiters = waiters.lock();
    for o in outputs {
        let (token, reply) = match o {
            Output::Join(t, r) => (t, Reply::Join(r)),
            Output::Sync(t, r) => (t, Reply::Sync(r)),
            Output::Persist { .. } => continue,
        };
        if let Some(tx) = waiters.remove(&token.0) {
            // The client may be gone; nothing to do then.
            let _ = tx.send(reply);
        }
    }
}

/// Create a coordinator's internal topic; a replication factor larger than
/// the live brokers (`rf_config` names its setting) is COORDINATOR_NOT_AVAILABLE,
/// which clients retry, as Kafka answers until enough brokers are up.
pub(crate) fn create_internal_topic(
    broker: &Broker,
    name: &str,
    partitions: i32,
    (replication_factor, rf_config): (i16, &str),
    overrides: BTreeMap<String, String>,
) -> Result<Arc<crate::state::Topic>, StateError> {
    broker
        .create_topic_unchecked(name, partitions, replication_factor, &[], overrides, false)
        .map_err(|e| match e {
            StateError::Kafka {
                code: ErrorCode::INVALID_REPLICATION_FACTOR,
                message,
            } => StateError::kafka(
                ErrorCode::COORDINATOR_NOT_AVAILABLE,
                format!("{name} needs {rf_config}={replication_factor} live brokers: {message}"),
            ),
            e => e,
        })
}

/// Errors a later attempt to start the coordinator can get past by itself.
pub(crate) fn is_transient(e: &StateError) -> bool {
    matches!(
        e,
        StateError::Kafka { code, .. } if matches!(
            *code,
            ErrorCode::LEADER_NOT_AVAILABLE
                | ErrorCode::NOT_CONTROLLER
                | ErrorCode::REQUEST_TIMED_OUT
                | ErrorCode::NOT_LEADER_OR_FOLLOWER
                | ErrorCode::TOPIC_ALREADY_EXISTS
                | ErrorCode::COORDINATOR_NOT_AVAILABLE
        )
    )
}
