//! The shell around `fjord_group::GroupCoordinator`: the coordinator sits
//! behind a mutex; held JoinGroup/SyncGroup requests wait on oneshot
//! channels; `Persist` outputs are appended to `__consumer_offsets` (in the
//! order the coordinator decided them, under its lock) and made durable
//! before any response of the same call is sent; a tokio task calls `tick`
//! at `next_deadline_ms`. At start the topic is replayed into the coordinator.
//!
//! The broker holds the coordinator in a [`GroupsSlot`], which is empty until
//! `__consumer_offsets` has been created (lazily, on the first group request
//! of a new node) or replayed (in the background, right after start). Group
//! handlers answer COORDINATOR_NOT_AVAILABLE meanwhile; clients retry.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use bytes::BytesMut;
use fjord_group::{
    CommitRequest, GroupConfig, GroupCoordinator, JoinResponse, Output, RequestToken, SyncResponse,
    TopicResult,
};
use fjord_model::limits::{DECOMPRESSED_BATCH_BYTES_MAX, OFFSETS_TOPIC_PARTITIONS_DEFAULT};
use fjord_model::{ErrorCode, Offset};
use fjord_records::{BatchBuilder, Compression};
use fjord_storage::{Log, SyncWaiter};
use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};

use crate::state::{now_ms, Broker, StateError};

/// Kafka's internal topic for committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// The longest the timer task sleeps without a deadline.
const TIMER_IDLE_MS: i64 = 60_000;
/// Bytes read at once while replaying `__consumer_offsets`.
const REPLAY_READ_BYTES: usize = 1024 * 1024;
/// After a failed load, group requests start the next attempt no sooner than this.
const LOAD_RETRY_MS: i64 = 1_000;

/// The broker's group coordinator, once loaded.
///
/// `get` returns it, or `None` while `__consumer_offsets` is being created
/// or replayed: callers then answer COORDINATOR_NOT_AVAILABLE, and the call
/// starts the load if none is running (on a background thread, so neither
/// the runtime nor other topics' requests wait for it).
pub struct GroupsSlot {
    loaded: OnceLock<Arc<Groups>>,
    broker: Weak<Broker>,
    /// A load thread is running (or about to).
    loading: AtomicBool,
    /// When the last failed load ended (ms since the epoch; `i64::MIN`: none).
    failed_at_ms: AtomicI64,
    /// Held for the whole of a load; `true` once the broker is closing.
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

    /// The coordinator if it is loaded; otherwise starts loading it and
    /// returns `None` (answer COORDINATOR_NOT_AVAILABLE).
    pub fn get(&self) -> Option<&Arc<Groups>> {
        let loaded = self.loaded.get();
        if loaded.is_none() {
            self.start_loading();
        }
        loaded
    }

    /// The coordinator if it is loaded (starts nothing).
    pub fn loaded(&self) -> Option<&Arc<Groups>> {
        self.loaded.get()
    }

    /// Start creating or replaying `__consumer_offsets` on a background
    /// thread, unless that is done, running, or failed less than
    /// `LOAD_RETRY_MS` ago.
    pub fn start_loading(&self) {
        if self.loaded.get().is_some() {
            return;
        }
        let failed_at_ms = self.failed_at_ms.load(Ordering::Acquire);
        if failed_at_ms != i64::MIN && now_ms().saturating_sub(failed_at_ms) < LOAD_RETRY_MS {
            return;
        }
        if self.loading.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(broker) = self.broker.upgrade() else {
            self.loading.store(false, Ordering::Release);
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("fjord-groups-load".to_string())
            .spawn(move || {
                let slot = &broker.groups;
                if let Err(e) = slot.load_blocking() {
                    tracing::error!("cannot load the group coordinator: {e}");
                    slot.failed_at_ms.store(now_ms(), Ordering::Release);
                }
                slot.loading.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start loading the group coordinator: {e}");
            self.failed_at_ms.store(now_ms(), Ordering::Release);
            self.loading.store(false, Ordering::Release);
        }
    }

    /// Create or replay `__consumer_offsets` on this thread (a no-op once
    /// loaded; waits for a load already running).
    pub(crate) fn load_blocking(&self) -> Result<(), StateError> {
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
        let started = std::time::Instant::now();
        let groups = Groups::open(&broker)?;
        let _ = self.loaded.set(groups);
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "group coordinator ready"
        );
        Ok(())
    }

    /// Wait for a load in progress and refuse new ones (the broker is closing).
    pub(crate) fn close(&self) {
        *self.load_lock.lock() = true;
    }
}

enum Reply {
    Join(JoinResponse),
    Sync(SyncResponse),
}

pub struct Groups {
    core: Mutex<GroupCoordinator>,
    waiters: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    next_token: AtomicU64,
    logs: Vec<Arc<Log>>,
    timer: Notify,
    timer_started: AtomicBool,
    /// When the timer task wakes up next (ms; written under the coordinator
    /// lock): a call only wakes it earlier if the next deadline moved before that.
    timer_armed_ms: AtomicI64,
}

impl Groups {
    /// Create `__consumer_offsets` if needed and replay it.
    pub fn open(broker: &Broker) -> Result<Arc<Groups>, StateError> {
        let topic = match broker.topic(OFFSETS_TOPIC) {
            Some(t) => t,
            None => {
                let overrides = BTreeMap::from([
                    ("cleanup.policy".to_string(), "compact".to_string()),
                    ("retention.ms".to_string(), "-1".to_string()),
                ]);
                broker.create_topic_unchecked(
                    OFFSETS_TOPIC,
                    OFFSETS_TOPIC_PARTITIONS_DEFAULT,
                    overrides,
                    false,
                )?
            }
        };
        let logs: Vec<Arc<Log>> = topic
            .partitions
            .read()
            .iter()
            .map(|p| p.log.clone())
            .collect();
        let now = now_ms();
        let g = &broker.config.groups;
        let mut core = GroupCoordinator::new(GroupConfig {
            member_id_seed: now as u64 ^ u64::from(std::process::id()).rotate_left(32),
            initial_rebalance_delay_ms: g.initial_rebalance_delay_ms,
            session_timeout_ms_min: g.session_timeout_ms_min,
            session_timeout_ms_max: g.session_timeout_ms_max,
            offsets_retention_ms: g.offsets_retention_ms,
            ..GroupConfig::default()
        });
        let mut records = 0u64;
        for (p, log) in logs.iter().enumerate() {
            records += replay_log(&mut core, log, p);
        }
        core.finish_replay(now);
        tracing::info!(
            records,
            groups = core.group_count(),
            "replayed {OFFSETS_TOPIC}"
        );
        Ok(Arc::new(Groups {
            core: Mutex::new(core),
            waiters: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
            logs,
            timer: Notify::new(),
            timer_started: AtomicBool::new(false),
            timer_armed_ms: AtomicI64::new(i64::MIN),
        }))
    }

    /// Run `f` on the coordinator, persist its outputs, deliver held responses.
    /// Returns `f`'s result once the records it wrote are durable.
    pub async fn call<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut GroupCoordinator, i64, &mut Vec<Output>) -> R,
    ) -> R {
        self.run(|c, now, out| (f(c, now, out), ()), |_, ()| {})
            .await
            .0
    }

    /// OffsetCommit. If the records cannot be appended the commit is undone
    /// (nobody sees it) and every partition gets NOT_COORDINATOR (Kafka's
    /// answer to a storage error), as it does when they cannot be made durable.
    ///
    /// The commit is decided and appended when this is called, not when the
    /// future is first polled: the connection's reader calls it in request
    /// order, so pipelined commits from one client apply in the order sent.
    pub fn commit(
        self: &Arc<Self>,
        req: CommitRequest,
    ) -> impl Future<Output = Vec<TopicResult>> + Send + 'static {
        let decided = self.start(
            |c, now, out| c.commit_offsets_undoable(req, now, out),
            |c, undo| c.undo_commit(undo),
        );
        async move {
            let (mut results, persisted) = decided.await;
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

    /// The core of every call: `f` under the lock, then its records appended
    /// (still under the lock, so the log order is the decision order; if an
    /// append fails, `undo` runs before the lock is released), then synced,
    /// then held responses delivered. Returns whether everything `f` wrote is durable.
    async fn run<R: Send + 'static, U>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut GroupCoordinator, i64, &mut Vec<Output>) -> (R, U),
        undo: impl FnOnce(&mut GroupCoordinator, U),
    ) -> (R, bool) {
        self.start(f, undo).await
    }

    /// `run`, with the decision and the append made now; the returned future
    /// waits for durability and delivers held responses.
    fn start<R: Send + 'static, U>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut GroupCoordinator, i64, &mut Vec<Output>) -> (R, U),
        undo: impl FnOnce(&mut GroupCoordinator, U),
    ) -> impl Future<Output = (R, bool)> + Send + 'static {
        self.ensure_timer();
        let mut out = Vec::new();
        let (r, syncs, appended, wake) = {
            let mut core = self.core.lock();
            let (r, u) = f(&mut core, now_ms(), &mut out);
            let (syncs, appended) = self.append(&mut out);
            if !appended {
                undo(&mut core, u);
            }
            let wake = core
                .next_deadline_ms()
                .is_some_and(|d| d < self.timer_armed_ms.load(Ordering::Relaxed));
            (r, syncs, appended, wake)
        };
        let this = self.clone();
        async move {
            let mut persisted = appended;
            for s in syncs {
                if let Err(e) = s.await {
                    tracing::error!("{OFFSETS_TOPIC}: sync failed: {e}");
                    persisted = false;
                }
            }
            this.deliver(out);
            if wake {
                this.timer.notify_one();
            }
            (r, persisted)
        }
    }

    /// JoinGroup: waits until the coordinator answers (possibly after a rebalance).
    pub async fn join(self: &Arc<Self>, req: fjord_group::JoinRequest) -> JoinResponse {
        let member_id = req.member_id.clone();
        let (token, rx) = self.register();
        self.call(|c, now, out| c.join(token, req, now, out)).await;
        match rx.await {
            Ok(Reply::Join(r)) => r,
            _ => JoinResponse {
                error: ErrorCode::COORDINATOR_NOT_AVAILABLE,
                generation_id: -1,
                protocol_type: None,
                protocol_name: None,
                leader: String::new(),
                skip_assignment: false,
                member_id,
                members: Vec::new(),
            },
        }
    }

    /// SyncGroup: followers wait for the leader's assignment.
    pub async fn sync(self: &Arc<Self>, req: fjord_group::SyncRequest) -> SyncResponse {
        let (token, rx) = self.register();
        self.call(|c, now, out| c.sync(token, req, now, out)).await;
        match rx.await {
            Ok(Reply::Sync(r)) => r,
            _ => SyncResponse {
                error: ErrorCode::COORDINATOR_NOT_AVAILABLE,
                protocol_type: None,
                protocol_name: None,
                assignment: bytes::Bytes::new(),
            },
        }
    }

    /// Read-only access (OffsetFetch, ListGroups, DescribeGroups, lag).
    pub fn read<R>(&self, f: impl FnOnce(&GroupCoordinator) -> R) -> R {
        f(&self.core.lock())
    }

    fn register(&self) -> (RequestToken, oneshot::Receiver<Reply>) {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().insert(token, tx);
        (RequestToken(token), rx)
    }

    /// Append the Persist outputs (called under the coordinator lock, so the
    /// log order is the decision order); returns what to wait on, and whether
    /// every append succeeded.
    fn append(&self, out: &mut Vec<Output>) -> (Vec<SyncWaiter>, bool) {
        let mut by_partition: BTreeMap<usize, BatchBuilder> = BTreeMap::new();
        let now = now_ms();
        let n = self.logs.len().max(1) as i32;
        for o in out.iter() {
            if let Output::Persist {
                group_id,
                key,
                value,
            } = o
            {
                let p = fjord_group::offsets_partition_for(group_id, n) as usize;
                by_partition
                    .entry(p)
                    .or_insert_with(|| BatchBuilder::new(Compression::None))
                    .push(now, Some(key), value.as_deref(), &[]);
            }
        }
        out.retain(|o| !matches!(o, Output::Persist { .. }));
        let mut syncs = Vec::new();
        let mut appended = true;
        for (p, builder) in by_partition {
            let Some(log) = self.logs.get(p) else {
                appended = false;
                continue;
            };
            let mut batch = BytesMut::from(&builder.build(0)[..]);
            match log.append(&mut batch, now) {
                Ok(r) => syncs.push(log.sync_to(Offset(r.last_offset.0))),
                Err(e) => {
                    tracing::error!("{OFFSETS_TOPIC}-{p}: append failed: {e}");
                    appended = false;
                }
            }
        }
        (syncs, appended)
    }

    fn deliver(&self, out: Vec<Output>) {
        let mut waiters = self.waiters.lock();
        for o in out {
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

    /// Start the timer task on first use (we are inside the runtime then).
    fn ensure_timer(self: &Arc<Self>) {
        if self.timer_started.load(Ordering::Acquire)
            || self.timer_started.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(groups) = weak.upgrade() else {
                    return;
                };
                let wait_ms = {
                    let core = groups.core.lock();
                    let now = now_ms();
                    let wait_ms = core
                        .next_deadline_ms()
                        .map_or(TIMER_IDLE_MS, |d| (d - now).clamp(0, TIMER_IDLE_MS));
                    groups
                        .timer_armed_ms
                        .store(now + wait_ms, Ordering::Relaxed);
                    wait_ms
                };
                let notified = groups.timer.notified();
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(std::time::Duration::from_millis(wait_ms as u64)) => {
                        groups.call(|c, now, out| c.tick(now, out)).await;
                    }
                }
            }
        });
    }
}

/// Feed one partition of `__consumer_offsets` to the coordinator; returns the records read.
fn replay_log(core: &mut GroupCoordinator, log: &Log, partition: usize) -> u64 {
    let mut next = log.log_start_offset();
    let end = log.log_end_offset();
    let mut count = 0u64;
    while next < end {
        let read = match log.read(next, REPLAY_READ_BYTES, end, true) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{OFFSETS_TOPIC}-{partition}: replay read failed: {e}");
                return count;
            }
        };
        let bytes = match read.to_vec() {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("{OFFSETS_TOPIC}-{partition}: replay read failed: {e}");
                return count;
            }
        };
        let before = next;
        for item in fjord_records::batches(&bytes) {
            let Ok((header, range)) = item else {
                tracing::error!("{OFFSETS_TOPIC}-{partition}: corrupt batch at {}", next.0);
                return count;
            };
            next = Offset(header.next_offset());
            let Some(batch) = bytes.get(range) else {
                return count;
            };
            match fjord_records::decode_records_bounded(batch, DECOMPRESSED_BATCH_BYTES_MAX) {
                Ok(records) => {
                    for r in records {
                        let Some(key) = r.key else { continue };
                        if let Err(e) = core.replay(&key, r.value.as_deref()) {
                            tracing::warn!(
                                "{OFFSETS_TOPIC}-{partition} offset {}: skipped: {e}",
                                r.offset
                            );
                        }
                        count += 1;
                    }
                }
                Err(e) => tracing::warn!("{OFFSETS_TOPIC}-{partition}: skipped batch: {e}"),
            }
        }
        if next <= before {
            break;
        }
    }
    count
}
