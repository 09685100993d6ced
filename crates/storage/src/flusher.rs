//! Group commit: a small pool of threads, owned by one `Storage` value and shared by every
//! `Log` it opened, runs the fdatasync calls. A log with waiting `sync_to` callers is queued
//! once; a thread takes every queued log (up to `GROUP_COMMIT_BATCH_LOGS_MAX`), syncs
//! everything written so far (without holding the append locks) and completes all waiters
//! covered, so many concurrent appenders share one fdatasync, and many partitions of one
//! filesystem share one syncfs (`Log::flush_batch`). The threads stop when the pool is dropped (with the last `Storage` clone and
//! the last `Log` opened through it).

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use fjord_model::limits::GROUP_COMMIT_BATCH_LOGS_MAX;
use parking_lot::{Condvar, Mutex};

use crate::log::Log;

#[derive(Default)]
struct QueueState {
    logs: VecDeque<Weak<Log>>,
    stop: bool,
}

#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

pub(crate) struct Flusher {
    queue: Arc<Queue>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Flusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flusher")
            .field("threads", &self.threads.len())
            .finish()
    }
}

impl Flusher {
    /// Starts `threads` flush threads (0: every flush runs inline, on the caller's thread).
    /// A thread takes every queued log at once when there are at least `batch_min` (the
    /// syncfs threshold; 0: never), else one.
    pub(crate) fn start(threads: usize, batch_min: usize) -> Flusher {
        let queue = Arc::new(Queue::default());
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let shared = Arc::clone(&queue);
            let spawned = std::thread::Builder::new()
                .name(format!("fjord-flush-{i}"))
                .spawn(move || run(&shared, batch_min));
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => tracing::error!("cannot start storage flush thread: {e}"),
            }
        }
        Flusher {
            queue,
            threads: handles,
        }
    }

    /// Number of running flush threads.
    pub(crate) fn threads(&self) -> usize {
        self.threads.len()
    }

    /// Queues a log for a flush round. The caller makes sure a log is queued at most once.
    pub(crate) fn enqueue(&self, log: Weak<Log>) {
        if self.threads.is_empty() {
            // No background threads: flush inline (slow but correct).
            if let Some(log) = log.upgrade() {
                log.flush_round();
            }
            return;
        }
        self.queue.state.lock().logs.push_back(log);
        self.queue.ready.notify_one();
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.queue.state.lock().stop = true;
        self.queue.ready.notify_all();
        let me = std::thread::current().id();
        for h in self.threads.drain(..) {
            // The last `Log` may be dropped by a flush thread itself (it held the last
            // reference for a round): that thread sees `stop` when it returns to the queue.
            if h.thread().id() != me {
                let _ = h.join();
            }
        }
    }
}

fn run(q: &Queue, batch_min: usize) {
    loop {
        let batch: Vec<Weak<Log>> = {
            let mut st = q.state.lock();
            loop {
                if st.stop {
                    return;
                }
                if !st.logs.is_empty() {
                    // Fewer than a syncfs batch: one log per thread, the threads' fdatasyncs
                    // running side by side (they share the filesystem's journal commits).
                    let n = if batch_min == 0 || st.logs.len() < batch_min {
                        1
                    } else {
                        st.logs.len().min(GROUP_COMMIT_BATCH_LOGS_MAX)
                    };
                    break st.logs.drain(..n).collect();
                }
                q.ready.wait(&mut st);
            }
        };
        let logs: Vec<Arc<Log>> = batch.iter().filter_map(Weak::upgrade).collect();
        drop(batch);
        if !logs.is_empty() {
            Log::flush_batch(logs);
        }
    }
}
