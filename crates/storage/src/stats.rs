//! What a `Storage` value's logs report for metrics: fsync latency,
//! fdatasync and syncfs calls, group-commit batch sizes (recorded by the flush rounds), and I/O errors
//! that took a log offline. Lock-free atomics; read with [`StorageStats::snapshot`].

use std::sync::atomic::{AtomicU64, Ordering};

use fjord_model::histogram::{AtomicHistogram, Snapshot, COUNT_BOUNDS, LATENCY_BOUNDS_US};

#[derive(Debug)]
pub struct StorageStats {
    /// One group-commit round's fsyncs of a log (all its dirty segments), in µs.
    fsync_us: AtomicHistogram,
    /// Durability waiters released by one group-commit round.
    group_commit_waiters: AtomicHistogram,
    /// I/O errors that took a log offline.
    errors: AtomicU64,
    /// fdatasync calls on segment files by group commit.
    file_syncs: AtomicU64,
    /// syncfs calls by group commit (each covering several logs).
    syncfs_calls: AtomicU64,
    /// Appends written with O_DIRECT (`log.direct.io`).
    direct_writes: AtomicU64,
    /// Bytes that reads took from the batch cache (`cache.rs`) instead of the files.
    cache_read_bytes: AtomicU64,
}

/// [`StorageStats`] as read at one moment.
#[derive(Clone, Debug)]
pub struct StorageStatsSnapshot {
    pub fsync_us: Snapshot,
    pub group_commit_waiters: Snapshot,
    pub errors: u64,
    pub file_syncs: u64,
    pub syncfs_calls: u64,
    pub direct_writes: u64,
    pub cache_read_bytes: u64,
}

impl Default for StorageStats {
    fn default() -> Self {
        StorageStats {
            fsync_us: AtomicHistogram::new(LATENCY_BOUNDS_US),
            group_commit_waiters: AtomicHistogram::new(COUNT_BOUNDS),
            errors: AtomicU64::new(0),
            file_syncs: AtomicU64::new(0),
            syncfs_calls: AtomicU64::new(0),
            direct_writes: AtomicU64::new(0),
            cache_read_bytes: AtomicU64::new(0),
        }
    }
}

impl StorageStats {
    pub(crate) fn fsync_done(&self, micros: u64) {
        self.fsync_us.record(micros);
    }

    pub(crate) fn group_commit(&self, waiters: usize) {
        self.group_commit_waiters.record(waiters as u64);
    }

    pub(crate) fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn file_sync(&self) {
        self.file_syncs.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn syncfs_call(&self) {
        self.syncfs_calls.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn direct_write(&self) {
        self.direct_writes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn cache_read(&self, bytes: usize) {
        self.cache_read_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StorageStatsSnapshot {
        StorageStatsSnapshot {
            fsync_us: self.fsync_us.snapshot(),
            group_commit_waiters: self.group_commit_waiters.snapshot(),
            errors: self.errors.load(Ordering::Relaxed),
            file_syncs: self.file_syncs.load(Ordering::Relaxed),
            syncfs_calls: self.syncfs_calls.load(Ordering::Relaxed),
            direct_writes: self.direct_writes.load(Ordering::Relaxed),
            cache_read_bytes: self.cache_read_bytes.load(Ordering::Relaxed),
        }
    }
}
