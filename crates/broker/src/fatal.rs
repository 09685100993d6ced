//! What a cluster node does when it cannot go on serving (Kafka's `Exit.halt`):
//! it logs one fatal line and halts with exit status 1, so that the active
//! controller fences it after its session and moves its leaderships, rather
//! than staying a leader and ISR member that can no longer write (a zombie).
//!
//! - A write failure in the data directory (`fjord_storage::Storage::on_failure`:
//!   ENOSPC or EIO on an append, roll, truncation, fsync or checkpoint) halts a
//!   cluster node: the data directory is its only log dir and holds its
//!   metadata log, and Kafka halts a broker whose last log dir failed
//!   (`LogManager.handleLogDirFailure`: "Shutdown broker because all log dirs
//!   in ... have failed"). A single node without `process.roles` has no
//!   other replica to fail over to and keeps its per-partition behaviour: the
//!   failed log goes offline (KAFKA_STORAGE_ERROR), the rest keep serving.
//! - A panic on a thread the node needs (replica fetchers, the leader tick,
//!   the heartbeat, the controller, the metadata quorum, the flushers)
//!   halts the process too: the panic is an assertion of our own invariants
//!   failing, so the in-memory state is suspect, and restarting the thread on
//!   it could serve wrong data; a restart recovers from what is on disk.
//!   A panic while serving one request only closes that connection.

use std::path::Path;
use std::sync::Arc;

use fjord_storage::{FailureListener, LogFailure};

/// How the node stops at once; the process' default is [`halt_process`].
pub type Halt = Arc<dyn Fn(&str) + Send + Sync>;

/// Logs `reason` as a fatal error and ends the process with status 1 at once,
/// without running destructors or flushing logs (Kafka's `Exit.halt(1)`):
/// nothing more is written to a directory that just failed.
pub fn halt_process(reason: &str) {
    tracing::error!("FATAL: {reason}");
    eprintln!("fjord: fatal: {reason}");
    // SAFETY: _exit ends the process; it touches no Rust state.
    unsafe { libc::_exit(1) }
}

/// The line a node halts with when a write in its data directory failed.
pub fn log_dir_failure_reason(data_dir: &Path, failure: &LogFailure) -> String {
    format!(
        "Shutdown broker because all log dirs in {} have failed (a write in {} failed: {})",
        data_dir.display(),
        failure.dir.display(),
        failure.reason
    )
}

/// The storage failure listener of a cluster node: halts through `halt`.
pub fn log_dir_failure_listener(data_dir: &Path, halt: Halt) -> FailureListener {
    let data_dir = data_dir.to_path_buf();
    Arc::new(move |failure: &LogFailure| halt(&log_dir_failure_reason(&data_dir, failure)))
}

/// True for the threads a node needs to keep serving correctly (named by
/// their spawners): a panic on one of them halts the process. The request
/// threads of the async runtime ("fjord") and the coordinator load threads
/// (a shard that fails to load does not serve) are not among them.
pub fn is_node_thread(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "fjord-replication",
        "fjord-alter-partition",
        "fjord-heartbeat",
        "fjord-controller",
        "fjord-metadata",
        "fjord-metadata-apply",
        "fjord-raft",
    ];
    const PREFIX: &[&str] = &["fjord-fetcher-", "fjord-flush-"];
    EXACT.contains(&name) || PREFIX.iter().any(|p| name.starts_with(p))
}

/// Installs a panic hook (the binary's, process-wide) that prints the panic as
/// before and, on a thread [`is_node_thread`] names, halts through `halt`.
pub fn halt_on_node_thread_panic(halt: Halt) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("");
        if is_node_thread(name) {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            halt(&format!(
                "thread {name} panicked{at}: {message}; halting, so that the controller fences \
                 this node and moves its leaderships"
            ));
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    #[test]
    fn node_threads_are_named_by_their_spawners() {
        for n in [
            "fjord-fetcher-2",
            "fjord-replication",
            "fjord-heartbeat",
            "fjord-raft",
            "fjord-flush-0",
            "fjord-controller",
        ] {
            assert!(is_node_thread(n), "{n}");
        }
        for n in ["fjord", "fjord-raft-net", "fjord-groups-load", "main", ""] {
            assert!(!is_node_thread(n), "{n}");
        }
    }

    #[test]
    fn a_panic_on_a_node_thread_halts_and_one_on_a_request_thread_does_not() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        halt_on_node_thread_panic(Arc::new(move |r: &str| s.lock().push(r.to_string())));
        for name in ["fjord-fetcher-7", "fjord"] {
            let t = std::thread::Builder::new()
                .name(name.into())
                .spawn(|| panic!("truncation below the high watermark"))
                .unwrap();
            assert!(t.join().is_err());
        }
        // The default hook back (it prints other tests' panics as before).
        let _ = std::panic::take_hook();
        let seen = seen.lock();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(
            seen[0].starts_with("thread fjord-fetcher-7 panicked at "),
            "{seen:?}"
        );
        assert!(
            seen[0].contains("truncation below the high watermark"),
            "{seen:?}"
        );
    }

    #[test]
    fn a_storage_failure_halts_with_kafkas_line() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        let listener = log_dir_failure_listener(
            Path::new("/data"),
            Arc::new(move |r: &str| s.lock().push(r.to_string())),
        );
        listener(&LogFailure {
            dir: "/data/t-0".into(),
            reason: "No space left on device (os error 28)".into(),
        });
        let seen = seen.lock();
        assert_eq!(seen.len(), 1);
        assert!(seen[0].starts_with("Shutdown broker because all log dirs in /data have failed"));
        assert!(seen[0].contains("/data/t-0") && seen[0].contains("os error 28"));
    }
}
