//! Group commit across partitions: a flush thread that finds many logs of one filesystem
//! waiting makes them durable with one syncfs instead of an fdatasync each, releases
//! every waiter only after it, and keeps exactly what was acknowledged through a crash;
//! a failed syncfs falls back to per-file fdatasync and is not trusted again.

mod common;

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::batch;
use common::fault::FaultFs;
use fjord_model::{LeaderEpoch, Offset};
use fjord_storage::{FileSystem, Log, LogConfig, Storage, StorageLimits};

const LOGS: usize = 32;

/// `FaultFs` with slow per-file syncs (so that logs queue up behind the first round) and
/// syncfs calls that fail on request.
#[derive(Debug)]
struct SlowFs {
    inner: Arc<FaultFs>,
    per_file_sync_delay_ms: AtomicU64,
    fail_next_syncfs: AtomicU64,
    syncfs_calls: AtomicU64,
}

impl SlowFs {
    fn new(inner: &Arc<FaultFs>) -> Arc<SlowFs> {
        Arc::new(SlowFs {
            inner: Arc::clone(inner),
            per_file_sync_delay_ms: AtomicU64::new(300),
            fail_next_syncfs: AtomicU64::new(0),
            syncfs_calls: AtomicU64::new(0),
        })
    }
    fn delay(&self) {
        std::thread::sleep(Duration::from_millis(
            self.per_file_sync_delay_ms.load(Ordering::SeqCst),
        ));
    }
}

impl FileSystem for SlowFs {
    fn open(&self, path: &Path, options: &std::fs::OpenOptions) -> std::io::Result<File> {
        self.inner.open(path, options)
    }
    fn write_at(&self, path: &Path, file: &File, buf: &[u8], pos: u64) -> std::io::Result<()> {
        self.inner.write_at(path, file, buf, pos)
    }
    fn write_vectored_at(
        &self,
        path: &Path,
        file: &File,
        bufs: &[&[u8]],
        pos: u64,
    ) -> std::io::Result<()> {
        self.inner.write_vectored_at(path, file, bufs, pos)
    }
    fn write_all(&self, path: &Path, file: &mut File, buf: &[u8]) -> std::io::Result<()> {
        self.inner.write_all(path, file, buf)
    }
    fn set_len(&self, path: &Path, file: &File, len: u64) -> std::io::Result<()> {
        self.inner.set_len(path, file, len)
    }
    fn sync_data(&self, path: &Path, file: &File) -> std::io::Result<()> {
        self.delay();
        self.inner.sync_data(path, file)
    }
    fn sync_all(&self, path: &Path, file: &File) -> std::io::Result<()> {
        self.inner.sync_all(path, file)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn sync_filesystem(&self, root: &File, files: &[(&Path, &File)]) -> std::io::Result<()> {
        self.syncfs_calls.fetch_add(1, Ordering::SeqCst);
        let fail = self
            .fail_next_syncfs
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Err(std::io::Error::other("injected syncfs failure"));
        }
        self.inner.sync_filesystem(root, files)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_file(path)
    }
}

fn config() -> LogConfig {
    LogConfig {
        segment_ms: None,
        retention_ms: None,
        retention_bytes: None,
        ..LogConfig::default()
    }
}

fn storage(fs: Arc<dyn FileSystem>) -> Storage {
    Storage::with_file_system(
        StorageLimits {
            flush_threads: 1,
            ..StorageLimits::default()
        },
        fs,
    )
}

fn open_all(storage: &Storage, root: &Path) -> Vec<Arc<Log>> {
    (0..LOGS)
        .map(|p| {
            Log::open(storage, &root.join(format!("t-{p}")), config(), 0)
                .unwrap()
                .0
        })
        .collect()
}

/// One round of appends to every log, then `sync_to` on each (the first round's slow
/// fdatasync keeps the flush thread busy while the others queue up); returns the log
/// ends acknowledged.
fn append_and_sync_all(logs: &[Arc<Log>], round: i64) -> Vec<Offset> {
    let mut waiters = Vec::new();
    for (p, log) in logs.iter().enumerate() {
        log.append_as_leader(
            &mut batch(3, 100, round, (p as u64) << 8 | round as u64),
            LeaderEpoch(1),
            0,
        )
        .unwrap();
        waiters.push(log.sync_to(log.log_end_offset()));
    }
    for w in waiters {
        w.wait_blocking().unwrap();
    }
    logs.iter()
        .map(|log| {
            assert_eq!(log.durable_offset(), log.log_end_offset());
            log.log_end_offset()
        })
        .collect()
}

/// Crashes every log (dropping what no sync covered), reopens them and checks that
/// exactly the acknowledged prefix survived.
fn crash_and_check(fs: &Arc<FaultFs>, logs: Vec<Arc<Log>>, root: &Path, acked: &[Offset]) {
    for log in &logs {
        // Written, never synced: lost in the crash.
        log.append_as_leader(&mut batch(2, 100, 99, 99), LeaderEpoch(1), 0)
            .unwrap();
    }
    for log in logs {
        common::crash(log);
    }
    fs.crash(None);
    let reopened = open_all(&storage(fs.clone()), root);
    for (p, log) in reopened.iter().enumerate() {
        assert_eq!(log.log_end_offset(), acked[p], "partition {p}");
        assert_eq!(common::all_batches(log).len(), 2, "partition {p}");
    }
}

#[test]
fn many_partitions_share_one_syncfs_and_keep_what_was_acknowledged() {
    if !fjord_storage::fs::syncfs_reports_errors() {
        eprintln!("skipped: this kernel's syncfs does not report errors (off by design)");
        return;
    }
    let fault = Arc::new(FaultFs::new());
    let fs = SlowFs::new(&fault);
    let dir = tempfile::tempdir().unwrap();
    let storage = storage(fs.clone());
    let logs = open_all(&storage, dir.path());

    append_and_sync_all(&logs, 0);
    let after_first = storage.stats();
    assert!(after_first.syncfs_calls >= 1, "{after_first:?}");
    assert!(
        after_first.file_syncs < LOGS as u64 / 2,
        "most logs were synced one by one: {after_first:?}"
    );
    assert_eq!(
        fs.syncfs_calls.load(Ordering::SeqCst),
        after_first.syncfs_calls
    );

    let acked = append_and_sync_all(&logs, 1);
    assert!(storage.stats().syncfs_calls > after_first.syncfs_calls);
    assert_eq!(storage.stats().errors, 0);
    crash_and_check(&fault, logs, dir.path(), &acked);
}

#[test]
fn a_failed_syncfs_falls_back_to_fdatasync_and_is_not_trusted_again() {
    if !fjord_storage::fs::syncfs_reports_errors() {
        eprintln!("skipped: this kernel's syncfs does not report errors (off by design)");
        return;
    }
    let fault = Arc::new(FaultFs::new());
    let fs = SlowFs::new(&fault);
    fs.fail_next_syncfs.store(1, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let storage = storage(fs.clone());
    let logs = open_all(&storage, dir.path());

    // The batch's syncfs fails: every log of it is synced file by file, nothing is lost
    // and no log goes offline.
    append_and_sync_all(&logs, 0);
    assert_eq!(fs.syncfs_calls.load(Ordering::SeqCst), 1);
    assert!(storage.stats().file_syncs >= LOGS as u64);
    assert_eq!(storage.stats().errors, 0);

    // Never again on that filesystem, although it would succeed now.
    fs.per_file_sync_delay_ms.store(1, Ordering::SeqCst);
    let acked = append_and_sync_all(&logs, 1);
    assert_eq!(fs.syncfs_calls.load(Ordering::SeqCst), 1);
    assert_eq!(storage.stats().syncfs_calls, 1);
    assert!(storage.stats().file_syncs >= 2 * LOGS as u64);
    crash_and_check(&fault, logs, dir.path(), &acked);
}

#[test]
fn syncfs_of_the_real_filesystem_releases_every_waiter() {
    // The operating system's files: whatever the batches were, every waiter is released
    // with its data durable, and the logs reopen with all of it.
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::new(StorageLimits {
        flush_threads: 2,
        ..StorageLimits::default()
    });
    let logs = open_all(&storage, dir.path());
    let mut acked = Vec::new();
    for round in 0..3 {
        acked = append_and_sync_all(&logs, round);
    }
    let stats = storage.stats();
    eprintln!(
        "{} syncfs, {} fdatasync for {LOGS} logs x 3 rounds",
        stats.syncfs_calls, stats.file_syncs
    );
    assert_eq!(stats.errors, 0);
    for log in logs {
        log.close().unwrap();
    }
    let reopened = open_all(&storage, dir.path());
    for (p, log) in reopened.iter().enumerate() {
        assert_eq!(log.log_end_offset(), acked[p]);
        assert_eq!(common::all_batches(log).len(), 3);
    }
}
