//! The shard runtime: per-partition state, loading threads, the write path
//! (decide, append, wait for durability, deliver) and the timer task. See
//! the crate docs.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use fjord_model::limits::{
    COORDINATOR_LOAD_RETRY_BACKOFF_MS_MAX, COORDINATOR_LOAD_RETRY_BACKOFF_MS_MIN,
    COORDINATOR_LOAD_THREADS_MAX,
};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::{
    Coordinator, Durable, LoadError, Loaded, PartitionIo, ReplayError, ShardError, TxnWriter,
};

/// The longest the timer task sleeps without a deadline.
const TIMER_IDLE_MS: i64 = 60_000;
/// `deadline_ms` of a shard with nothing due.
const NO_DEADLINE: i64 = i64::MAX;

/// Settings of a runtime.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// The internal topic's name, for logs.
    pub topic: String,
    /// Threads replaying partitions at start.
    pub load_threads: usize,
    /// Wait before the first retry of a failed load (doubles per failure).
    pub load_retry_backoff_ms_min: i64,
    /// Longest wait between two attempts.
    pub load_retry_backoff_ms_max: i64,
}

impl RuntimeConfig {
    pub fn new(topic: impl Into<String>) -> RuntimeConfig {
        RuntimeConfig {
            topic: topic.into(),
            load_threads: COORDINATOR_LOAD_THREADS_MAX,
            load_retry_backoff_ms_min: COORDINATOR_LOAD_RETRY_BACKOFF_MS_MIN,
            load_retry_backoff_ms_max: COORDINATOR_LOAD_RETRY_BACKOFF_MS_MAX,
        }
    }
}

/// A shard's state as others may see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardStatus {
    Loading,
    Active,
    /// The last load failed with this error; the next attempt is due at `retry_at_ms`.
    Failed {
        error: LoadError,
        retry_at_ms: i64,
    },
    Closed,
}

enum State<C> {
    /// Queued or replaying (the state machine being built is owned by the loader).
    Loading,
    Active(C),
    Failed {
        error: LoadError,
        retry_at_ms: i64,
    },
    Closed,
}

struct Shard<C> {
    state: Mutex<State<C>>,
    /// When the shard needs the timer next (`NO_DEADLINE`: never): its state
    /// machine's next deadline while active, its next load attempt while failed.
    /// Written under `state`'s lock.
    deadline_ms: AtomicI64,
    /// Loads that failed in a row (sets the backoff).
    failures: AtomicU32,
    /// Bumped by every `unload` and `reload`: a load started before finishes
    /// into nothing. Written under `state`'s lock and the queue's lock.
    generation: AtomicU64,
}

type Factory<C> = Box<dyn Fn(u32) -> C + Send + Sync>;
type Deliver<O> = Box<dyn Fn(u32, Vec<O>, bool) + Send + Sync>;
type Clock = Box<dyn Fn() -> i64 + Send + Sync>;

/// One shard per partition of an internal topic. See the crate docs.
pub struct Runtime<C: Coordinator> {
    config: RuntimeConfig,
    shards: Vec<Shard<C>>,
    io: Arc<dyn PartitionIo>,
    /// A fresh state machine for a partition (called at every load attempt).
    factory: Factory<C>,
    /// Receives the outputs that are not records, once the records before
    /// them are durable (the flag: whether they were made durable).
    deliver: Deliver<C::Output>,
    clock: Clock,
    closing: AtomicBool,
    /// Partitions waiting for a loader thread.
    queue: Mutex<VecDeque<u32>>,
    loaders: Mutex<Vec<JoinHandle<()>>>,
    timer: Notify,
    timer_started: AtomicBool,
    /// When the timer task wakes up next: a call wakes it earlier only if a
    /// deadline moved before that.
    timer_armed_ms: AtomicI64,
}

impl<C: Coordinator> Runtime<C> {
    /// A runtime whose shards are all `Loading`; [`Runtime::start`] loads them.
    pub fn new(
        config: RuntimeConfig,
        io: Arc<dyn PartitionIo>,
        factory: impl Fn(u32) -> C + Send + Sync + 'static,
        deliver: impl Fn(u32, Vec<C::Output>, bool) + Send + Sync + 'static,
        clock: impl Fn() -> i64 + Send + Sync + 'static,
    ) -> Arc<Runtime<C>> {
        let shards = (0..io.partitions())
            .map(|_| Shard {
                state: Mutex::new(State::Loading),
                deadline_ms: AtomicI64::new(NO_DEADLINE),
                failures: AtomicU32::new(0),
                generation: AtomicU64::new(0),
            })
            .collect();
        Arc::new(Runtime {
            config,
            shards,
            io,
            factory: Box::new(factory),
            deliver: Box::new(deliver),
            clock: Box::new(clock),
            closing: AtomicBool::new(false),
            queue: Mutex::new(VecDeque::new()),
            loaders: Mutex::new(Vec::new()),
            timer: Notify::new(),
            timer_started: AtomicBool::new(false),
            timer_armed_ms: AtomicI64::new(i64::MIN),
        })
    }

    /// Number of shards (the topic's partitions).
    pub fn shard_count(&self) -> u32 {
        self.shards.len() as u32
    }

    /// Load every shard on background threads (at most `load_threads`).
    pub fn start(self: &Arc<Self>) {
        self.start_with(|_| true);
    }

    /// Load the shards `load` selects on background threads; the others
    /// start `Closed` (a cluster node loads the partitions it leads, and
    /// [`Runtime::reload`] the ones it comes to lead).
    pub fn start_with(self: &Arc<Self>, load: impl Fn(u32) -> bool) {
        let mut loading = 0;
        for (p, shard) in self.shards.iter().enumerate() {
            let p = p as u32;
            if load(p) {
                self.queue.lock().push_back(p);
                loading += 1;
            } else {
                *shard.state.lock() = State::Closed;
            }
        }
        let threads = self.config.load_threads.clamp(1, loading.max(1));
        for _ in 0..threads.min(loading) {
            self.spawn_loader();
        }
    }

    /// Unload one shard (this node stopped leading its partition): it
    /// becomes `Closed` and drops its state machine; a load in progress
    /// finishes into nothing. Requests then get NOT_COORDINATOR.
    pub fn unload(&self, p: u32) {
        let Some(shard) = self.shards.get(p as usize) else {
            return;
        };
        let mut state = shard.state.lock();
        let mut queue = self.queue.lock();
        shard.generation.fetch_add(1, Ordering::AcqRel);
        queue.retain(|&q| q != p);
        *state = State::Closed;
        shard.deadline_ms.store(NO_DEADLINE, Ordering::Release);
    }

    /// Load one shard again from its partition (this node became its
    /// leader): whatever state it had is dropped, and a load in progress
    /// finishes into nothing; requests get COORDINATOR_LOAD_IN_PROGRESS
    /// until the new load ends. Nothing once the runtime is closing.
    pub fn reload(self: &Arc<Self>, p: u32) {
        let Some(shard) = self.shards.get(p as usize) else {
            return;
        };
        if self.closing.load(Ordering::Acquire) {
            return;
        }
        {
            let mut state = shard.state.lock();
            let mut queue = self.queue.lock();
            shard.generation.fetch_add(1, Ordering::AcqRel);
            *state = State::Loading;
            shard.deadline_ms.store(NO_DEADLINE, Ordering::Release);
            if !queue.contains(&p) {
                queue.push_back(p);
            }
        }
        self.spawn_loader();
    }

    /// Wait until every loader thread started so far has finished.
    pub fn wait_for_loads(&self) {
        loop {
            let handles: Vec<JoinHandle<()>> = std::mem::take(&mut *self.loaders.lock());
            if handles.is_empty() {
                return;
            }
            for h in handles {
                // A loader that panicked leaves its shard Loading; nothing to add here.
                let _ = h.join();
            }
        }
    }

    fn spawn_loader(self: &Arc<Self>) {
        let this = self.clone();
        let spawned = std::thread::Builder::new()
            .name("fjord-coord-load".to_string())
            .spawn(move || loop {
                // The generation is read under the queue's lock, which
                // `reload` and `unload` hold while they change it.
                let (p, generation) = {
                    let mut queue = this.queue.lock();
                    let Some(p) = queue.pop_front() else {
                        return;
                    };
                    let generation = this
                        .shards
                        .get(p as usize)
                        .map_or(0, |s| s.generation.load(Ordering::Acquire));
                    (p, generation)
                };
                this.load_shard(p, generation);
            });
        match spawned {
            Ok(h) => {
                let mut loaders = self.loaders.lock();
                loaders.retain(|h| !h.is_finished());
                loaders.push(h);
            }
            Err(e) => {
                // Queued partitions stay Loading; fail them so they are retried.
                tracing::error!(topic = %self.config.topic, "cannot start a loader thread: {e}");
                while let Some(p) = self.queue.lock().pop_front() {
                    let generation = self
                        .shards
                        .get(p as usize)
                        .map_or(0, |s| s.generation.load(Ordering::Acquire));
                    self.finish_load(
                        p,
                        generation,
                        Err(LoadError::Read {
                            offset: 0,
                            detail: format!("cannot start a loader thread: {e}"),
                        }),
                    );
                }
            }
        }
    }

    /// Replay partition `p` into a fresh state machine (the shard is
    /// `Loading`; its lock is not held meanwhile), then make it active or failed.
    fn load_shard(&self, p: u32, generation: u64) {
        let started = std::time::Instant::now();
        let mut c = (self.factory)(p);
        let topic = &self.config.topic;
        let closing = || self.closing.load(Ordering::Acquire);
        let result = self.io.load(p, &closing, &mut |offset, loaded| match match loaded {
            Loaded::Record {
                key,
                value,
                txn: None,
            } => c.replay(offset, key, value),
            Loaded::Record {
                key,
                value,
                txn: Some(producer_id),
            } => c.replay_transactional(offset, producer_id, key, value),
            Loaded::Marker {
                producer_id,
                commit,
            } => {
                c.replay_marker(offset, producer_id, commit);
                Ok(())
            }
        } {
            Ok(()) => Ok(()),
            Err(ReplayError::Skip(why)) => {
                tracing::warn!(%topic, partition = p, offset = offset.0, "record skipped: {why}");
                Ok(())
            }
            Err(ReplayError::Fatal(detail)) => Err(LoadError::Replay {
                offset: offset.0,
                detail,
            }),
        });
        if let Ok(summary) = &result {
            tracing::info!(
                %topic,
                partition = p,
                records = summary.records,
                bytes = summary.bytes,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "shard loaded"
            );
        }
        self.finish_load(p, generation, result.map(|_| c));
    }

    fn finish_load(&self, p: u32, generation: u64, result: Result<C, LoadError>) {
        let Some(shard) = self.shards.get(p as usize) else {
            return;
        };
        let now = (self.clock)();
        let mut state = shard.state.lock();
        if shard.generation.load(Ordering::Acquire) != generation {
            // Unloaded or reloaded meanwhile: this load's state machine is dropped.
            return;
        }
        // One load at a time per shard: only a loader leaves `Loading`, and only `close` enters `Closed`.
        assert!(
            matches!(*state, State::Loading | State::Closed),
            "{}-{p}: a load finished in a state other than Loading or Closed",
            self.config.topic
        );
        if !matches!(*state, State::Loading) {
            // Closed meanwhile: the state machine is dropped (unloaded).
            return;
        }
        match result {
            Ok(mut c) => {
                c.loaded(now);
                shard.failures.store(0, Ordering::Relaxed);
                let deadline = c.next_deadline_ms().unwrap_or(NO_DEADLINE);
                shard.deadline_ms.store(deadline, Ordering::Release);
                *state = State::Active(c);
                drop(state);
                if deadline < self.timer_armed_ms.load(Ordering::Relaxed) {
                    self.timer.notify_one();
                }
            }
            Err(error) => {
                let failures = shard.failures.fetch_add(1, Ordering::Relaxed) + 1;
                let backoff_ms = self
                    .config
                    .load_retry_backoff_ms_min
                    .saturating_mul(1i64 << (failures - 1).min(20))
                    .min(self.config.load_retry_backoff_ms_max);
                let retry_at_ms = now.saturating_add(backoff_ms);
                if error != LoadError::Closed {
                    tracing::error!(
                        topic = %self.config.topic,
                        partition = p,
                        attempt = failures,
                        retry_in_ms = backoff_ms,
                        "cannot load {}-{p}: {error}; its keys get NOT_COORDINATOR until a load succeeds",
                        self.config.topic
                    );
                }
                shard.deadline_ms.store(retry_at_ms, Ordering::Release);
                *state = State::Failed { error, retry_at_ms };
                drop(state);
                if retry_at_ms < self.timer_armed_ms.load(Ordering::Relaxed) {
                    self.timer.notify_one();
                }
            }
        }
    }

    /// A failed shard whose backoff has passed goes back to `Loading` (the
    /// caller holds its lock) and is queued; the caller then starts a loader
    /// (`spawn_loader`, after releasing the lock). Returns whether it did.
    fn maybe_retry(&self, p: u32, state: &mut State<C>, now_ms: i64) -> bool {
        let State::Failed { retry_at_ms, .. } = state else {
            return false;
        };
        if *retry_at_ms > now_ms || self.closing.load(Ordering::Acquire) {
            return false;
        }
        *state = State::Loading;
        if let Some(shard) = self.shards.get(p as usize) {
            shard.deadline_ms.store(NO_DEADLINE, Ordering::Release);
        }
        let mut queue = self.queue.lock();
        assert!(
            !queue.contains(&p),
            "{}-{p} queued twice",
            self.config.topic
        );
        queue.push_back(p);
        true
    }

    /// The shard's status.
    pub fn status(&self, p: u32) -> ShardStatus {
        let Some(shard) = self.shards.get(p as usize) else {
            return ShardStatus::Closed;
        };
        match &*shard.state.lock() {
            State::Loading => ShardStatus::Loading,
            State::Active(_) => ShardStatus::Active,
            State::Failed { error, retry_at_ms } => ShardStatus::Failed {
                error: error.clone(),
                retry_at_ms: *retry_at_ms,
            },
            State::Closed => ShardStatus::Closed,
        }
    }

    /// Read-only access to an active shard.
    pub fn read<R>(self: &Arc<Self>, p: u32, f: impl FnOnce(&C) -> R) -> Result<R, ShardError> {
        let shard = self
            .shards
            .get(p as usize)
            .ok_or(ShardError::NotCoordinator)?;
        let state = shard.state.lock();
        match &*state {
            State::Active(c) => Ok(f(c)),
            _ => Err(self.refusal(p, state)),
        }
    }

    /// `read` on every shard, in partition order.
    pub fn read_all<R>(
        self: &Arc<Self>,
        mut f: impl FnMut(u32, &C) -> R,
    ) -> Vec<Result<R, ShardError>> {
        (0..self.shard_count())
            .map(|p| self.read(p, |c| f(p, c)))
            .collect()
    }

    /// Why a shard that is not active refuses a request (retrying a failed
    /// load whose backoff has passed).
    fn refusal(
        self: &Arc<Self>,
        p: u32,
        mut state: parking_lot::MutexGuard<'_, State<C>>,
    ) -> ShardError {
        let now = (self.clock)();
        if self.maybe_retry(p, &mut state, now) {
            drop(state);
            self.spawn_loader();
            return ShardError::LoadInProgress;
        }
        match *state {
            State::Loading => ShardError::LoadInProgress,
            _ => ShardError::NotCoordinator,
        }
    }

    /// A call that may write: `f` runs on the shard's state machine under its
    /// lock, then the records among its outputs are appended (still under the
    /// lock, so the log order is the decision order); if the append fails,
    /// `undo` runs before the lock is released. This happens now, not when the
    /// future is polled, so calls made in order apply in order. The returned
    /// future resolves once those records are durable, after the other
    /// outputs have been delivered, with `f`'s result and whether everything
    /// it wrote is durable.
    pub fn write<R: Send + 'static, U>(
        self: &Arc<Self>,
        p: u32,
        f: impl FnOnce(&mut C, i64, &mut Vec<C::Output>) -> (R, U),
        undo: impl FnOnce(&mut C, U),
    ) -> Result<impl Future<Output = (R, bool)> + Send + 'static, ShardError> {
        self.write_as(p, None, f, undo)
    }

    /// `write`, with the call's records appended as one transactional batch
    /// of `txn`'s producer (the group coordinator's TxnOffsetCommit): the
    /// partition refuses an older producer epoch, and `undo` runs then.
    pub fn write_transactional<R: Send + 'static, U>(
        self: &Arc<Self>,
        p: u32,
        txn: TxnWriter,
        f: impl FnOnce(&mut C, i64, &mut Vec<C::Output>) -> (R, U),
        undo: impl FnOnce(&mut C, U),
    ) -> Result<impl Future<Output = (R, bool)> + Send + 'static, ShardError> {
        self.write_as(p, Some(txn), f, undo)
    }

    fn write_as<R: Send + 'static, U>(
        self: &Arc<Self>,
        p: u32,
        txn: Option<TxnWriter>,
        f: impl FnOnce(&mut C, i64, &mut Vec<C::Output>) -> (R, U),
        undo: impl FnOnce(&mut C, U),
    ) -> Result<impl Future<Output = (R, bool)> + Send + 'static, ShardError> {
        self.ensure_timer();
        let shard = self
            .shards
            .get(p as usize)
            .ok_or(ShardError::NotCoordinator)?;
        let mut out = Vec::new();
        let (r, durable, appended, wake) = {
            let mut state = shard.state.lock();
            if !matches!(*state, State::Active(_)) {
                return Err(self.refusal(p, state));
            }
            let State::Active(c) = &mut *state else {
                unreachable!("checked above, under the same lock");
            };
            let now = (self.clock)();
            let (r, u) = f(c, now, &mut out);
            let records: Vec<(&[u8], Option<&[u8]>)> =
                out.iter().filter_map(C::as_record).collect();
            let (durable, appended): (Option<Durable>, bool) = if records.is_empty() {
                (None, true)
            } else {
                match self.io.append(p, &records, txn, now) {
                    Ok(d) => (Some(d), true),
                    Err(e) => {
                        tracing::error!(
                            topic = %self.config.topic,
                            partition = p,
                            "append failed: {e}"
                        );
                        (None, false)
                    }
                }
            };
            if !appended {
                undo(c, u);
            }
            let deadline = c.next_deadline_ms().unwrap_or(NO_DEADLINE);
            shard.deadline_ms.store(deadline, Ordering::Release);
            let wake = deadline < self.timer_armed_ms.load(Ordering::Relaxed);
            (r, durable, appended, wake)
        };
        out.retain(|o| C::as_record(o).is_none());
        let this = self.clone();
        Ok(async move {
            let mut persisted = appended;
            if let Some(d) = durable {
                if let Err(e) = d.await {
                    tracing::error!(
                        topic = %this.config.topic,
                        partition = p,
                        "records not made durable: {e}"
                    );
                    persisted = false;
                }
            }
            if !out.is_empty() {
                (this.deliver)(p, out, persisted);
            }
            if wake {
                this.timer.notify_one();
            }
            (r, persisted)
        })
    }

    /// Unload every shard: each becomes `Closed` and drops its state machine
    /// (held requests are the shell's to answer); loads in progress finish
    /// first and none starts afterwards.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.queue.lock().clear();
        for shard in &self.shards {
            *shard.state.lock() = State::Closed;
            shard.deadline_ms.store(NO_DEADLINE, Ordering::Release);
        }
        self.wait_for_loads();
        self.timer.notify_one();
    }

    /// Start the timer task now if it is not running (from inside an async
    /// runtime; it otherwise starts on the first write): a shard whose state
    /// machine has work due right after its load needs it before any request.
    pub fn start_timer(self: &Arc<Self>) {
        self.ensure_timer();
    }

    /// Start the timer task on first use (we are inside the async runtime then).
    fn ensure_timer(self: &Arc<Self>) {
        if self.timer_started.load(Ordering::Acquire) {
            return;
        }
        // Outside an async runtime (a synchronous caller) the task starts on
        // a later call from inside one.
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.timer_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        handle.spawn(async move {
            loop {
                let Some(rt) = weak.upgrade() else {
                    return;
                };
                if rt.closing.load(Ordering::Acquire) {
                    return;
                }
                let now = (rt.clock)();
                let next = rt
                    .shards
                    .iter()
                    .map(|s| s.deadline_ms.load(Ordering::Acquire))
                    .min()
                    .unwrap_or(NO_DEADLINE);
                let wait_ms = next.saturating_sub(now).clamp(0, TIMER_IDLE_MS);
                rt.timer_armed_ms
                    .store(now.saturating_add(wait_ms), Ordering::Relaxed);
                let notified = rt.timer.notified();
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(std::time::Duration::from_millis(wait_ms as u64)) => {
                        rt.run_due().await;
                    }
                }
            }
        });
    }

    /// Tick every active shard whose deadline has come; retry failed loads
    /// whose backoff has passed.
    async fn run_due(self: &Arc<Self>) {
        let now = (self.clock)();
        let mut pending = Vec::new();
        for (p, shard) in self.shards.iter().enumerate() {
            if shard.deadline_ms.load(Ordering::Acquire) > now {
                continue;
            }
            let p = p as u32;
            let retried = self.maybe_retry(p, &mut shard.state.lock(), now);
            if retried {
                self.spawn_loader();
                continue;
            }
            if let Ok(f) = self.write(p, |c, now, out| (c.tick(now, out), ()), |_, ()| {}) {
                pending.push(f);
            }
        }
        for f in pending {
            f.await;
        }
    }
}
