//! `Storage`: what the logs of one node share (the group-commit thread pool and the cache
//! of sealed segments' open files and mappings). The owner creates one per node and passes
//! it to `Log::open`; nothing in the crate is process-wide, so several nodes can run in
//! one process (cluster simulations, tests).

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use fjord_model::limits::{
    BATCH_CACHE_BYTES_DEFAULT, GROUP_COMMIT_SYNCFS_MIN_LOGS, MAPPED_INDEX_FILES_MAX,
    OPEN_SEGMENT_FILES_MAX, STORAGE_FLUSH_THREADS,
};
use parking_lot::Mutex;

use crate::cache::BatchCache;
use crate::direct::ScratchPool;
use crate::error::StorageError;
use crate::flusher::Flusher;
use crate::fs::{FileSystem, OsFileSystem};
use crate::handles::HandleCache;
use crate::log::Log;
use crate::stats::{StorageStats, StorageStatsSnapshot};
use crate::{LogConfig, RecoveryReport};

/// Sizes of what a `Storage` value shares between its logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageLimits {
    /// Sealed segments' `.log` files open at once (least recently used closed first).
    pub open_files_max: usize,
    /// Sealed segments' index files mapped at once.
    pub mapped_indexes_max: usize,
    /// Group-commit threads (0: every flush runs on the caller's thread).
    pub flush_threads: usize,
    /// A flush round that finds at least this many logs of one filesystem waiting makes
    /// them durable with one syncfs(2) (0: never; also off on kernels whose syncfs does
    /// not report write-back errors, see `fs::syncfs_reports_errors`).
    pub syncfs_min_logs: usize,
    /// Direct writes (`direct.rs`): active segments are appended to with O_DIRECT where the
    /// filesystem takes it (probed once per filesystem; buffered there otherwise, with one
    /// log line). False: buffered writes through the page cache.
    pub direct_io: bool,
    /// The batch cache (`cache.rs`): bytes of recently appended batches kept in memory for
    /// readers, filled by direct writes (whose bytes are not in the page cache), oldest
    /// evicted first; 0 turns it off. Counted in the node's memory.
    pub batch_cache_bytes: usize,
}

impl Default for StorageLimits {
    fn default() -> Self {
        StorageLimits {
            open_files_max: OPEN_SEGMENT_FILES_MAX,
            mapped_indexes_max: MAPPED_INDEX_FILES_MAX,
            flush_threads: STORAGE_FLUSH_THREADS,
            syncfs_min_logs: GROUP_COMMIT_SYNCFS_MIN_LOGS,
            direct_io: false,
            batch_cache_bytes: BATCH_CACHE_BYTES_DEFAULT,
        }
    }
}

/// What a `Storage` value's clones, its logs and their segments share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) handles: HandleCache,
    pub(crate) flusher: Flusher,
    /// Every change to a file goes through it (`fs.rs`).
    pub(crate) fs: Arc<dyn FileSystem>,
    /// fsync latency, group-commit sizes, I/O errors (for metrics).
    pub(crate) stats: StorageStats,
    /// `StorageLimits::syncfs_min_logs`, 0 where syncfs is not safe.
    pub(crate) syncfs_min_logs: usize,
    /// One open directory per filesystem that logs live on (by device number), opened
    /// before the first write of any log there: syncfs through it reports every
    /// write-back error on that filesystem since.
    roots: Mutex<Vec<(u64, Arc<FsRoot>)>>,
    /// Told of every write failure in a log's directory (`Storage::on_failure`), and the
    /// first failure seen, for a listener set after it.
    failures: Mutex<FailureState>,
    /// `StorageLimits::direct_io`.
    pub(crate) direct_io: bool,
    /// Whether O_DIRECT writes work, per filesystem (device number) probed so far.
    direct_filesystems: Mutex<Vec<(u64, bool)>>,
    /// Aligned buffers for direct writes.
    pub(crate) scratch: ScratchPool,
    /// Recent direct writes' bytes, for readers (`StorageLimits::batch_cache_bytes`).
    pub(crate) cache: BatchCache,
}

/// A write to a log's directory failed (Kafka's log dir failure event): the log it
/// belongs to is offline now, or a checkpoint of it could not be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFailure {
    /// The partition directory.
    pub dir: std::path::PathBuf,
    /// The error, as its message says it.
    pub reason: String,
}

/// What the owner of a `Storage` does when a write fails (`Storage::on_failure`).
pub type FailureListener = Arc<dyn Fn(&LogFailure) + Send + Sync>;

#[derive(Default)]
pub(crate) struct FailureState {
    listener: Option<FailureListener>,
    first: Option<LogFailure>,
}

impl std::fmt::Debug for FailureState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureState")
            .field("listener", &self.listener.is_some())
            .field("first", &self.first)
            .finish()
    }
}

/// A filesystem that group commit syncs as a whole (see `Log::flush_batch`).
#[derive(Debug)]
pub(crate) struct FsRoot {
    /// A directory on it, open since before the first write of any log there.
    pub(crate) file: File,
    /// One syncfs through `file` at a time: the error a call reports is consumed (the
    /// descriptor's error sequence advances), so two at once could leave one of them
    /// reporting success after a failed write-back of its data.
    pub(crate) lock: Mutex<()>,
    /// A syncfs through it failed once: never trusted again (the failed write-back may
    /// have been another batch's data, whose own call then saw no new error); logs there
    /// sync their files one by one, whose fdatasync reports each file's errors.
    pub(crate) failed: AtomicBool,
}

impl Shared {
    /// Whether segments in `dir` are written with O_DIRECT: `direct_io` is on and the
    /// filesystem holding `dir` took a probe write (once per filesystem; a refusal is
    /// logged once and its logs write buffered).
    pub(crate) fn direct_writes_in(&self, dir: &Path) -> bool {
        if !self.direct_io {
            return false;
        }
        let Ok(dev) = std::fs::metadata(dir).map(|m| m.dev()) else {
            return false;
        };
        let mut known = self.direct_filesystems.lock();
        if let Some(&(_, ok)) = known.iter().find(|(d, _)| *d == dev) {
            return ok;
        }
        let ok = match crate::direct::probe(&*self.fs, dir) {
            Ok(()) => {
                tracing::info!(
                    "log.direct.io: segments in {} are written with O_DIRECT",
                    dir.display()
                );
                true
            }
            Err(e) => {
                tracing::warn!(
                    "log.direct.io: the filesystem of {} refuses O_DIRECT writes ({e}); \
                     its logs are written through the page cache",
                    dir.display()
                );
                false
            }
        };
        known.push((dev, ok));
        ok
    }

    /// Reports a write failure in `dir` to the listener (`Storage::on_failure`). Called
    /// by the log with its own locks possibly held: the listener must not call into logs.
    pub(crate) fn failed(&self, dir: &Path, reason: &str) {
        let failure = LogFailure {
            dir: dir.to_path_buf(),
            reason: reason.to_string(),
        };
        let listener = {
            let mut st = self.failures.lock();
            if st.first.is_none() {
                st.first = Some(failure.clone());
            }
            st.listener.clone()
        };
        if let Some(listener) = listener {
            listener(&failure);
        }
    }

    /// The open directory through which group commit syncfs's the filesystem holding
    /// `dir` (opened now if it is the first log there); None if it cannot be opened or
    /// syncfs is off (the log then syncs its files one by one).
    pub(crate) fn filesystem_root(&self, dir: &Path) -> Option<Arc<FsRoot>> {
        if self.syncfs_min_logs == 0 {
            return None;
        }
        let dev = std::fs::metadata(dir).ok()?.dev();
        let mut roots = self.roots.lock();
        if let Some((_, f)) = roots.iter().find(|(d, _)| *d == dev) {
            return Some(Arc::clone(f));
        }
        let f = Arc::new(FsRoot {
            file: File::open(dir).ok()?,
            lock: Mutex::new(()),
            failed: AtomicBool::new(false),
        });
        roots.push((dev, Arc::clone(&f)));
        Some(f)
    }
}

/// The storage engine of one node: create one, open logs with it. Cloning is cheap (the
/// clones share everything). The flush threads stop when the last clone and the last log
/// opened through it are dropped.
#[derive(Clone, Debug)]
pub struct Storage {
    ctx: Arc<Shared>,
}

impl Default for Storage {
    fn default() -> Self {
        Storage::new(StorageLimits::default())
    }
}

impl Storage {
    /// Starts the flush threads and sets up an empty handle cache; files are the
    /// operating system's.
    pub fn new(limits: StorageLimits) -> Storage {
        Storage::with_file_system(limits, Arc::new(OsFileSystem))
    }

    /// Like `new`, with every file change going through `fs` (fault injection in tests).
    pub fn with_file_system(limits: StorageLimits, fs: Arc<dyn FileSystem>) -> Storage {
        let syncfs_min_logs = if limits.syncfs_min_logs > 0 && !crate::fs::syncfs_reports_errors() {
            tracing::info!(
                "group commit syncs each partition's files: this kernel's syncfs does not \
                 report write-back errors (Linux 5.8 or later needed)"
            );
            0
        } else {
            limits.syncfs_min_logs
        };
        Storage {
            ctx: Arc::new(Shared {
                handles: HandleCache::new(limits.open_files_max, limits.mapped_indexes_max),
                flusher: Flusher::start(limits.flush_threads, syncfs_min_logs),
                fs,
                stats: StorageStats::default(),
                syncfs_min_logs,
                roots: Mutex::new(Vec::new()),
                failures: Mutex::new(FailureState::default()),
                direct_io: limits.direct_io,
                direct_filesystems: Mutex::new(Vec::new()),
                scratch: ScratchPool::default(),
                cache: BatchCache::new(limits.batch_cache_bytes),
            }),
        }
    }

    /// Opens (creating if missing) the partition log in `dir`; same as `Log::open`.
    pub fn open_log(
        &self,
        dir: &Path,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<(Arc<Log>, RecoveryReport), StorageError> {
        Log::open(self, dir, config, now_ms)
    }

    /// Changes the handle cache's caps (at least 1 each); applies from its next use.
    pub fn set_handle_limits(&self, open_files_max: usize, mapped_indexes_max: usize) {
        self.ctx
            .handles
            .set_limits(open_files_max, mapped_indexes_max);
    }

    /// Sealed segment files open and index files mapped through this value's cache.
    pub fn handle_counts(&self) -> (usize, usize) {
        self.ctx.handles.counts()
    }

    /// Number of flush threads running.
    pub fn flush_threads(&self) -> usize {
        self.ctx.flusher.threads()
    }

    /// fsync latency, group-commit batch sizes and I/O errors of every log
    /// opened through this value, so far.
    pub fn stats(&self) -> StorageStatsSnapshot {
        self.ctx.stats.snapshot()
    }

    /// Sets what happens when a write in a log's directory fails (a segment append,
    /// roll, truncation, fsync or checkpoint: Kafka's log dir failure): `listener` is
    /// called on the failing thread, possibly with that log's locks held, so it must not
    /// call into logs; it is called at once with the first failure if one happened
    /// before. Without a listener a failure only takes that log offline (appends and
    /// sync waiters get KAFKA_STORAGE_ERROR); a cluster node halts instead, as Kafka
    /// does when its last log dir fails.
    pub fn on_failure(&self, listener: FailureListener) {
        let first = {
            let mut st = self.ctx.failures.lock();
            st.listener = Some(Arc::clone(&listener));
            st.first.clone()
        };
        if let Some(f) = first {
            listener(&f);
        }
    }

    /// The first write failure in a log's directory since this value was created.
    pub fn first_failure(&self) -> Option<LogFailure> {
        self.ctx.failures.lock().first.clone()
    }

    /// Bytes held by the batch cache (`StorageLimits::batch_cache_bytes`) now.
    pub fn batch_cache_bytes(&self) -> usize {
        self.ctx.cache.bytes()
    }

    /// True if both values are clones of one another (share threads and caches).
    pub fn same_as(&self, other: &Storage) -> bool {
        Arc::ptr_eq(&self.ctx, &other.ctx)
    }

    pub(crate) fn context(&self) -> &Arc<Shared> {
        &self.ctx
    }
}
