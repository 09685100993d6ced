//! Fjord's partition log: segmented, indexed, durable storage of Kafka record batches.
//! No network code.
//!
//! # Layout (one directory per partition, `<data_dir>/<topic>-<partition>/`)
//! ```text
//! 00000000000000000000.log         record batches, exactly as produced (base offsets rewritten)
//! 00000000000000000000.index       sparse offset index: (relative offset u32, position u32)
//!                                  (exact size: never preallocated; like the
//!                                  .timeindex, first written at a checkpoint with
//!                                  entries, a roll or close: a new log has only its .log)
//! 00000000000000000000.timeindex   sparse time index: (timestamp i64, relative offset u32)
//! 00000000000000004711.log ...     next segment, named by its base offset
//! recovery-point-offset-checkpoint data below this offset is on stable storage
//! log-start-offset-checkpoint      first visible offset (DeleteRecords, retention)
//! leader-epoch-checkpoint          (epoch, start offset) history
//! truncation-intent                only while `Log::truncate_to` runs (or after a crash in it)
//! 00000000000000004711.snapshot    idempotent-producer state below that offset (written
//!                                  at roll and close; see `producer_state`)
//! 00000000000000000000.txnindex    the segment's aborted transactions (only when it has
//!                                  some; see `txn_index` and `log::txns`)
//! .clean_shutdown                  present only between `Log::close` and the next `Log::open`
//! cleaner-offset-checkpoint        compacted logs: the first offset not yet cleaned
//! 00000000000000000000.log.cleaned a compaction's new segment before its commit point
//! 00000000000000000000.log.swap    ... after it (`Log::open` completes the swap)
//! ```
//!
//! # Compaction (`cleanup.policy=compact`, module `log::clean`)
//! `Log::cleanability` measures the dirty ratio; `Log::clean` runs one round: a bounded
//! key -> latest offset map over the dirty section, then sealed segments wholly below the
//! persisted recovery point rewritten in groups keeping the latest record per key (offsets,
//! batch base and last offsets, producer fields kept; tombstones removed after
//! `delete.retention.ms`), swapped in through `.cleaned` -> `.swap` -> rename with fsyncs.
//! Readers of a replaced segment keep its open file. Below the recovery point, recovery
//! accepts offset gaps and batches with fewer records than offsets (compaction's output).
//! A [`LogCleaner`] (owned by the node, like the `Storage`) runs rounds on background
//! threads for the dirtiest logs.
//!
//! # One `Storage` per node
//! Nothing in the crate is process-wide: a node creates one [`Storage`] (`Storage::new(limits)`)
//! and opens every partition log with it (`Log::open(&storage, dir, config, now_ms)`). It owns
//! what the logs share: the group-commit flush threads and the cache of sealed segments'
//! open files and mappings (`set_handle_limits`, `handle_counts` are its methods). Several
//! `Storage` values can live in one process (a cluster simulation runs several nodes) and
//! share nothing; the threads stop when the last clone and the last log opened through it
//! are dropped.
//!
//! # Filesystem seam
//! Every change to a file (open/create, pwrite, truncate, fdatasync/fsync, rename, remove,
//! directory fsync) goes through the [`FileSystem`] of the log's `Storage` (module `fs`):
//! `Storage::with_file_system(limits, fs)` injects one, `Storage::new` uses
//! [`OsFileSystem`]. Reads (pread, mapped sealed indexes, sendfile) use the files directly.
//! The tests' `FaultFs` fails fsyncs (the log goes offline: appends and sync waiters get
//! KAFKA_STORAGE_ERROR), tears writes, and simulates a crash that drops every write not
//! yet synced, per file. `delete_log_dir`/`remove_deleted_dirs` (whole directories) still
//! call the OS.
//!
//! Invariant: durable state is a prefix of the log. Flush rounds fdatasync segments
//! oldest first, so a crash mid-round never leaves a newer segment durable past an older
//! one's lost tail (a syncfs round, `Log::flush_batch`, covers only active segments and
//! directories: sealed ones with unsynced data are fdatasynced before it). Write-back outside our fsyncs can still reach the disk in any order,
//! so recovery also refuses a hole above the recovery point (below it, gaps are
//! compaction's; above it no gap is legitimate), and a
//! segment that does not start where the previous one's last batch ends ends the log at
//! the hole (later segments removed, reported in [`RecoveryReport::hole_at`] and its
//! problems, logged).
//!
//! # Replication (Kafka's `ReplicatedLog` shape)
//! - `Log::append_as_leader(records, leader_epoch, now_ms)`: assigns offsets and stamps the
//!   epoch the leader passes in (never read from the data) into every batch; the first
//!   append of a new epoch records `(epoch, log end)` in `leader-epoch-checkpoint`. An
//!   epoch below the latest recorded is FENCED_LEADER_EPOCH.
//! - `Log::append_as_follower(records, now_ms)`: the leader's batches as they are; the
//!   first must start at the log end and each next one where the previous ends; epochs
//!   are learnt from the batches; the producer state is updated as replay does.
//! - `Log::truncate_to(offset)`: removes everything at and above `offset` (whole batches),
//!   crash-safe through a `truncation-intent` file that `Log::open` completes.
//! - `Log::end_offset_for_epoch(epoch)`: OffsetForLeaderEpoch as Kafka answers it.
//! - `Log::append(records, now_ms)` (stamps the latest recorded epoch) stays until every
//!   caller states its epoch.
//!
//! # Concurrency
//! A `Log` is shared (`Arc<Log>`) between tasks; all methods take `&self`.
//! - Appends serialise on one mutex, validate batches (CRC) *before* taking it, and only
//!   pwrite + update indexes under it. They never fsync.
//! - Reads take a read lock for a moment to snapshot the segment list, then work on atomics,
//!   short index locks and `pread`; they never wait for an append's write.
//! - `sync_to` (acks=all) queues a waiter; the `Storage`'s thread pool fdatasyncs once
//!   for every waiter queued meanwhile (group commit), without holding the append lock.
//!   After each round the in-memory recovery point is the durable offset; the same thread
//!   persists it (the active segment's new index entries, then the checkpoint file) at most
//!   once per `RECOVERY_POINT_CHECKPOINT_INTERVAL_MS` (and at every roll); `Log::checkpoint`
//!   does it on demand, e.g. from a timer.
//!
//! # Handles (100,000 partitions per node)
//! - The active segment keeps its `.log` file open and its indexes in memory (no mapping);
//!   the index files are written at checkpoints, rolls and close.
//! - Sealed segments open their `.log` file and map their index files on first use, through
//!   their `Storage`'s LRU cache (`OPEN_SEGMENT_FILES_MAX`, `MAPPED_INDEX_FILES_MAX` by
//!   default, changed with `Storage::set_handle_limits`). So a node needs one descriptor per partition plus the caps,
//!   and at most the map cap of `vm.max_map_count`.
//!
//! # Invariants
//! - Offsets only grow; every segment holds whole, CRC-valid batches with increasing offsets.
//! - Everything below the recovery point is on stable storage together with the indexes of
//!   every segment before the one holding it; recovery scans from that segment only, and
//!   in it from its last durable index entry below the recovery point (framing only up to
//!   the recovery point, CRCs after it).
//! - A batch of an idempotent producer (producer id, epoch, sequence) is appended at most
//!   once while it is among that producer's last 5 in the partition: `Log::append` checks
//!   sequences and epochs under the append lock and answers a retry with the original
//!   offsets (`AppendResult::duplicate`). The producer state survives close and crash
//!   (snapshot at roll and close, batch headers replayed after it on open).
//! - Every ABORT marker in the log has exactly one entry in the aborted-transaction index
//!   (memory and its segment's `.txnindex`), in marker order: written with the marker
//!   (leader or follower), synced before a producer snapshot past it, rebuilt after the
//!   snapshot on open, cut by truncation, dropped with its segment.
//! - After an I/O error while writing, the log is offline: appends fail with
//!   KAFKA_STORAGE_ERROR until it is reopened.

mod cache;
mod checkpoint;
mod cleaner;
mod direct;
mod error;
mod flusher;
pub mod fs;
mod handles;
mod index;
mod log;
pub mod producer_state;
mod segment;
pub mod stats;
mod storage;
pub mod txn_index;

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use fjord_model::limits::{
    DELETE_RETENTION_MS_DEFAULT, INDEX_BYTES_MAX_DEFAULT, INDEX_INTERVAL_BYTES_DEFAULT,
    MESSAGE_BYTES_MAX_CEILING, MESSAGE_BYTES_MAX_DEFAULT, MIN_CLEANABLE_DIRTY_RATIO_PPM_DEFAULT,
    RETENTION_MS_DEFAULT, SEGMENT_BYTES_CEILING, SEGMENT_BYTES_DEFAULT, SEGMENT_BYTES_MIN,
};
use fjord_model::{Offset, TimestampType};

pub use cleaner::{CleanerConfig, CleanerTotals, LogCleaner, LogSource};
pub use error::StorageError;
pub use fs::{FileSystem, OsFileSystem};
pub use log::{CleanOptions, CleanStats, Cleanability, Log, SyncWaiter, TxnMarker};
pub use storage::{FailureListener, LogFailure, Storage, StorageLimits};

/// Per-partition settings (Kafka's topic configs, typed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when the active segment would grow past this.
    pub segment_bytes_max: u64,
    /// `segment.ms`: roll a non-empty segment this long after it was created.
    pub segment_ms: Option<i64>,
    /// `index.interval.bytes`: bytes between offset/time index entries.
    pub index_interval_bytes: u32,
    /// `segment.index.bytes`: preallocated size of each index file; roll when full.
    pub index_bytes_max: u32,
    /// `retention.ms` (None or negative: keep forever).
    pub retention_ms: Option<i64>,
    /// `retention.bytes` (None or negative: no size limit).
    pub retention_bytes: Option<i64>,
    /// `flush.messages`: also fsync in the background after this many records.
    pub flush_interval_messages: Option<u64>,
    /// `flush.ms`: also fsync in the background when data is this old (checked on append
    /// and on `apply_retention`).
    pub flush_interval_ms: Option<i64>,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// `max.message.bytes`: largest batch accepted.
    pub message_bytes_max: usize,
    /// `cleanup.policy` holds `compact`: the cleaner keeps the latest record per key.
    pub compact: bool,
    /// `cleanup.policy` holds `delete`: retention by time and size applies.
    pub delete: bool,
    /// `min.cleanable.dirty.ratio`, in parts per million.
    pub min_cleanable_dirty_ratio_ppm: u32,
    /// `min.compaction.lag.ms`: a record stays uncompacted at least this long.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a dirty segment older than this is cleaned whatever
    /// the dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// `delete.retention.ms`: how long tombstones stay after their first cleaning.
    pub delete_retention_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes_max: SEGMENT_BYTES_DEFAULT,
            segment_ms: Some(RETENTION_MS_DEFAULT),
            index_interval_bytes: INDEX_INTERVAL_BYTES_DEFAULT,
            index_bytes_max: INDEX_BYTES_MAX_DEFAULT,
            retention_ms: Some(RETENTION_MS_DEFAULT),
            retention_bytes: None,
            flush_interval_messages: None,
            flush_interval_ms: None,
            timestamp_type: TimestampType::CreateTime,
            message_bytes_max: MESSAGE_BYTES_MAX_DEFAULT,
            compact: false,
            delete: true,
            min_cleanable_dirty_ratio_ppm: MIN_CLEANABLE_DIRTY_RATIO_PPM_DEFAULT,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            delete_retention_ms: DELETE_RETENTION_MS_DEFAULT,
        }
    }
}

impl LogConfig {
    /// Clamps every field into the range the engine supports.
    pub(crate) fn normalized(mut self) -> LogConfig {
        self.segment_bytes_max = self
            .segment_bytes_max
            .clamp(SEGMENT_BYTES_MIN, SEGMENT_BYTES_CEILING);
        // Room for at least a few entries in each index (time entries are 12 bytes).
        self.index_bytes_max = self.index_bytes_max.max(48);
        self.message_bytes_max = self.message_bytes_max.min(MESSAGE_BYTES_MAX_CEILING);
        self
    }
}

/// Outcome of `Log::append`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendResult {
    pub base_offset: Offset,
    pub last_offset: Offset,
    /// The time written into LogAppendTime batches, -1 for CreateTime.
    pub log_append_time_ms: i64,
    pub log_start_offset: Offset,
    pub records_count: u64,
    /// Every batch was a retry of batches already in the log (idempotent producer):
    /// nothing was written and the offsets are those of the first append.
    pub duplicate: bool,
}

/// A byte range of a segment's `.log` file, holding whole batches.
#[derive(Clone, Debug)]
pub struct FileSlice {
    pub file: Arc<File>,
    pub position: u64,
    pub len: usize,
    /// The range's bytes, when the batch cache held them (`StorageLimits::batch_cache_bytes`):
    /// sent from memory instead of the file.
    pub cached: Option<Bytes>,
}

impl FileSlice {
    /// A range read from the file.
    pub fn in_file(file: Arc<File>, position: u64, len: usize) -> FileSlice {
        FileSlice {
            file,
            position,
            len,
            cached: None,
        }
    }

    /// Appends the slice's bytes to `buf` (from the cache, or pread).
    pub fn read_into(&self, buf: &mut Vec<u8>) -> io::Result<()> {
        if let Some(b) = &self.cached {
            buf.extend_from_slice(b);
            return Ok(());
        }
        let at = buf.len();
        buf.resize(at + self.len, 0);
        let res = self.file.read_exact_at(&mut buf[at..], self.position);
        if res.is_err() {
            buf.truncate(at);
        }
        res
    }
}

/// Outcome of `Log::read`: whole batches, in offset order, possibly from several segments.
#[derive(Clone, Debug, Default)]
pub struct ReadResult {
    pub slices: Vec<FileSlice>,
    pub bytes: usize,
    /// The offset after the last batch returned (0 when none is): a read_committed
    /// fetch lists the aborted transactions that start below it.
    pub next_offset: i64,
}

impl ReadResult {
    /// All bytes of the result, concatenated (convenience for tests and small reads).
    pub fn to_vec(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.bytes);
        for s in &self.slices {
            s.read_into(&mut out)?;
        }
        Ok(out)
    }
}

/// What `Log::open` found and did.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    /// A `.clean_shutdown` marker was present: nothing was scanned beyond the tail.
    pub clean: bool,
    pub segments_loaded: usize,
    /// Segments whose every batch was read (and, past the recovery point, CRC-checked).
    pub segments_scanned: usize,
    /// Bytes read from segment files while scanning them.
    pub bytes_scanned: u64,
    pub bytes_truncated: u64,
    pub indexes_rebuilt: usize,
    /// Segments removed because they came after a corrupt one or a hole.
    pub segments_deleted: usize,
    /// A hole found after a crash (a segment did not start where the previous one ended):
    /// the offset where the log now ends. The segments after it were removed.
    pub hole_at: Option<Offset>,
    pub recovery_point: Option<Offset>,
    /// The producer-state snapshot loaded (its offset), if any.
    pub producer_snapshot: Option<Offset>,
    /// Batch headers read to rebuild the producer state after the snapshot.
    pub producer_batches_replayed: u64,
    pub log_start_offset: Offset,
    pub log_end_offset: Offset,
    /// A truncation (`Log::truncate_to`) interrupted by a crash was completed: the log end
    /// it set.
    pub truncation_completed: Option<Offset>,
    /// Human-readable descriptions of every problem found.
    pub problems: Vec<String>,
    pub duration_us: u64,
}

/// Deletes a partition directory: renames it to `<name>.<unique>.deleted` (so a restart
/// never opens it again), then removes it.
pub fn delete_log_dir(dir: &Path) -> Result<(), StorageError> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| StorageError::InvalidArgument(format!("bad log dir {}", dir.display())))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let target = dir.with_file_name(format!("{name}.{nanos}.deleted"));
    std::fs::rename(dir, &target).map_err(|e| StorageError::io_path("rename", dir, e))?;
    if let Some(parent) = target.parent() {
        let _ = fs::OsFileSystem.sync_dir(parent);
    }
    std::fs::remove_dir_all(&target).map_err(|e| StorageError::io_path("remove", &target, e))
}

/// True for directory names that `delete_log_dir` leaves behind if interrupted.
pub fn is_deleted_dir_name(name: &str) -> bool {
    name.ends_with(".deleted")
}

/// Removes leftovers of interrupted `delete_log_dir` calls under `data_dir`; returns how many.
pub fn remove_deleted_dirs(data_dir: &Path) -> Result<usize, StorageError> {
    let mut n = 0;
    let entries =
        std::fs::read_dir(data_dir).map_err(|e| StorageError::io_path("list", data_dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io_path("list", data_dir, e))?;
        if entry.file_name().to_str().is_some_and(is_deleted_dir_name) {
            let p = entry.path();
            std::fs::remove_dir_all(&p).map_err(|e| StorageError::io_path("remove", &p, e))?;
            n += 1;
        }
    }
    Ok(n)
}
