//! Group commit: a small pool of threads shared by every `Log` in the process runs the
//! fdatasync calls. A log with waiting `sync_to` callers is queued once; a thread takes it,
//! syncs everything written so far (without holding the append lock) and completes all
//! waiters covered, so many concurrent appenders share one fdatasync.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use fjord_model::limits::STORAGE_FLUSH_THREADS;
use parking_lot::{Condvar, Mutex};

use crate::log::Log;

struct Flusher {
    queue: Mutex<VecDeque<Weak<Log>>>,
    ready: Condvar,
    threads: AtomicUsize,
}

static FLUSHER: OnceLock<Arc<Flusher>> = OnceLock::new();

fn flusher() -> &'static Arc<Flusher> {
    FLUSHER.get_or_init(|| {
        let f = Arc::new(Flusher {
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            threads: AtomicUsize::new(0),
        });
        for i in 0..STORAGE_FLUSH_THREADS {
            let shared = Arc::clone(&f);
            let spawned = std::thread::Builder::new()
                .name(format!("fjord-flush-{i}"))
                .spawn(move || run(&shared));
            match spawned {
                Ok(_) => {
                    f.threads.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::error!("cannot start storage flush thread: {e}"),
            }
        }
        f
    })
}

fn run(f: &Flusher) {
    loop {
        let next = {
            let mut q = f.queue.lock();
            loop {
                if let Some(w) = q.pop_front() {
                    break w;
                }
                f.ready.wait(&mut q);
            }
        };
        if let Some(log) = next.upgrade() {
            log.flush_round();
        }
    }
}

/// Queues a log for a flush round. The caller makes sure a log is queued at most once.
pub(crate) fn enqueue(log: Weak<Log>) {
    let f = flusher();
    if f.threads.load(Ordering::Relaxed) == 0 {
        // No background threads: flush inline (slow but correct).
        if let Some(log) = log.upgrade() {
            log.flush_round();
        }
        return;
    }
    f.queue.lock().push_back(log);
    f.ready.notify_one();
}
