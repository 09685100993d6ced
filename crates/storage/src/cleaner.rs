//! `LogCleaner`: the background threads that compact logs (Kafka's `log.cleaner.threads`).
//! Its owner (the broker) creates one per node with a function listing the node's logs;
//! each thread repeatedly picks the dirtiest compacted log that wants cleaning
//! (`Cleanability::should_clean`) and no other thread is cleaning, runs one round
//! (`Log::clean`), and sleeps `backoff` when none does. A log whose round fails (a
//! corrupt segment, an I/O error) is not cleaned again until the cleaner is restarted:
//! only that partition's cleaning stops, and the reason is logged. Nothing is
//! process-wide; dropping the value stops and joins its threads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::log::{CleanOptions, Log};

/// Lists the logs the cleaner looks after (called once per pass of a thread).
pub type LogSource = Box<dyn Fn() -> Vec<Arc<Log>> + Send + Sync>;

/// Settings of a `LogCleaner`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CleanerConfig {
    /// `log.cleaner.threads`.
    pub threads: usize,
    /// `log.cleaner.dedupe.buffer.size`, shared by the threads.
    pub dedupe_buffer_bytes: usize,
    /// `log.cleaner.io.max.bytes.per.second`, shared by the threads.
    pub io_bytes_per_second_max: Option<u64>,
    /// `log.cleaner.backoff.ms`.
    pub backoff: Duration,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig {
            threads: fjord_model::limits::CLEANER_THREADS_DEFAULT,
            dedupe_buffer_bytes: fjord_model::limits::CLEANER_DEDUPE_BUFFER_BYTES_DEFAULT,
            io_bytes_per_second_max: None,
            backoff: Duration::from_millis(fjord_model::limits::CLEANER_BACKOFF_MS_DEFAULT),
        }
    }
}

/// Totals since the cleaner started (tests, diagnostics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CleanerTotals {
    pub rounds: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub failures: u64,
}

struct Shared {
    source: LogSource,
    opts: CleanOptions,
    backoff: Duration,
    /// Logs being cleaned (by address) and logs whose cleaning failed (with why).
    state: Mutex<State>,
    wake: Condvar,
    rounds: AtomicU64,
    bytes_before: AtomicU64,
    bytes_after: AtomicU64,
    failures: AtomicU64,
}

#[derive(Default)]
struct State {
    stop: bool,
    /// Set by `wake`: run a pass now.
    poked: bool,
    busy: Vec<usize>,
    failed: HashMap<usize, (Weak<Log>, String)>,
}

/// The node's log cleaner (see the module docs).
pub struct LogCleaner {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for LogCleaner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogCleaner")
            .field("threads", &self.threads.len())
            .finish()
    }
}

fn key(log: &Arc<Log>) -> usize {
    Arc::as_ptr(log) as usize
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl LogCleaner {
    /// Starts `config.threads` threads (none if 0) cleaning the logs `source` lists.
    pub fn start(config: CleanerConfig, source: LogSource) -> LogCleaner {
        let threads = config.threads;
        let per_thread = |v: u64| v / threads.max(1) as u64;
        let shared = Arc::new(Shared {
            source,
            opts: CleanOptions {
                dedupe_buffer_bytes: config.dedupe_buffer_bytes / threads.max(1),
                io_bytes_per_second_max: config.io_bytes_per_second_max.map(per_thread),
            },
            backoff: config.backoff,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            rounds: AtomicU64::new(0),
            bytes_before: AtomicU64::new(0),
            bytes_after: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        });
        let handles = (0..threads)
            .map(|i| {
                let s = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("log-cleaner-{i}"))
                    .spawn(move || run(&s))
                    .unwrap_or_else(|e| panic!("cannot start a log cleaner thread: {e}"))
            })
            .collect();
        LogCleaner {
            shared,
            threads: handles,
        }
    }

    /// Runs a pass now instead of after the backoff (tests, a config change).
    pub fn wake(&self) {
        self.shared.state.lock().poked = true;
        self.shared.wake.notify_all();
    }

    pub fn totals(&self) -> CleanerTotals {
        let s = &self.shared;
        CleanerTotals {
            rounds: s.rounds.load(Ordering::Acquire),
            bytes_before: s.bytes_before.load(Ordering::Acquire),
            bytes_after: s.bytes_after.load(Ordering::Acquire),
            failures: s.failures.load(Ordering::Acquire),
        }
    }

    /// Why cleaning `log` stopped, if it did.
    pub fn failure(&self, log: &Arc<Log>) -> Option<String> {
        self.shared
            .state
            .lock()
            .failed
            .get(&key(log))
            .map(|(_, why)| why.clone())
    }
}

impl Drop for LogCleaner {
    fn drop(&mut self) {
        self.shared.state.lock().stop = true;
        self.shared.wake.notify_all();
        // The last reference may be dropped by one of the threads itself (its log
        // source held the owner for a moment): that one is not joined.
        let me = std::thread::current().id();
        for t in self.threads.drain(..) {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

/// One thread: clean the dirtiest log that wants it, or wait.
fn run(s: &Shared) {
    loop {
        if s.state.lock().stop {
            return;
        }
        let now = now_ms();
        let mut best: Option<(f64, Arc<Log>)> = None;
        {
            let logs = (s.source)();
            let st = s.state.lock();
            for log in logs {
                let k = key(&log);
                if st.busy.contains(&k) || st.failed.contains_key(&k) || log.is_offline() {
                    continue;
                }
                let Some(c) = log.cleanability(now) else {
                    continue;
                };
                if c.should_clean(log.config().min_cleanable_dirty_ratio_ppm)
                    && best.as_ref().is_none_or(|(r, _)| c.dirty_ratio > *r)
                {
                    best = Some((c.dirty_ratio, log));
                }
            }
        }
        let Some((_, log)) = best else {
            let mut st = s.state.lock();
            if !st.stop && !st.poked {
                s.wake.wait_for(&mut st, s.backoff);
            }
            st.poked = false;
            // Forget failures of logs that are gone (their address may be reused).
            st.failed.retain(|_, (w, _)| w.strong_count() > 0);
            continue;
        };
        let k = key(&log);
        {
            let mut st = s.state.lock();
            if st.busy.contains(&k) {
                continue;
            }
            st.busy.push(k);
        }
        let result = log.clean(now, &s.opts);
        let mut st = s.state.lock();
        st.busy.retain(|b| *b != k);
        match result {
            Ok(Some(stats)) => {
                s.rounds.fetch_add(1, Ordering::AcqRel);
                s.bytes_before
                    .fetch_add(stats.bytes_before, Ordering::AcqRel);
                s.bytes_after.fetch_add(stats.bytes_after, Ordering::AcqRel);
            }
            Ok(None) => {}
            Err(e) => {
                s.failures.fetch_add(1, Ordering::AcqRel);
                tracing::error!(
                    dir = %log.dir().display(),
                    "log cleaning stops for this partition: {e}"
                );
                st.failed.insert(k, (Arc::downgrade(&log), e.to_string()));
            }
        }
    }
}
