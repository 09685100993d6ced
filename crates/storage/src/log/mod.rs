//! `Log`: one partition's segmented log (see the crate docs for layout and concurrency).
//! The state and its locks are here; each concern is in its own file: `recovery` (open),
//! `append`, `truncate`, `epochs`, `sync` (group commit, recovery point), `read`,
//! `retention`, `clean` (compaction).

mod append;
mod clean;
mod epochs;
mod high_watermark;
mod read;
mod recovery;
mod retention;
mod sync;
mod truncate;
mod txns;

pub use clean::{CleanOptions, CleanStats, Cleanability};
use epochs::{assert_epochs_ordered, truncate_epochs_from_start};
use read::scan_error;
use recovery::rebuild_producer_state;
use txns::{marker_aborts, replay_marker};

use std::fs;
use std::future::Future;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Instant;

use fjord_model::limits::RECOVERY_POINT_CHECKPOINT_INTERVAL_MS;
use fjord_model::{LeaderEpoch, Offset, ProducerEpoch, ProducerId, TimestampType};
use fjord_records::{
    batches, end_txn_marker_batch, set_base_offset, set_log_append_time,
    set_partition_leader_epoch, validate_batch, validate_stored_batch, BatchHeader, EndTxnMarker,
    MarkerType, RecordsError,
};
use parking_lot::{Mutex, RwLock};
use tokio::sync::oneshot;

use crate::checkpoint::{
    self, Truncation, CLEAN_SHUTDOWN_FILE, LOG_START_FILE, RECOVERY_POINT_FILE, TRUNCATION_FILE,
};
use crate::error::StorageError;
use crate::fs::FileSystem;
use crate::producer_state::{
    self, CompletedTxn, IncomingBatch, IncomingMarker, ProducerEntry, ProducerStateMap, Verdict,
    VerifyingProducer,
};
use crate::segment::{
    self, ScanError, Scanner, Segment, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX,
};
use crate::storage::{FsRoot, Shared, Storage};
use crate::txn_index::{AbortedTxn, TxnIndex};
use crate::{AppendResult, FileSlice, LogConfig, ReadResult, RecoveryReport};

const OPEN: u8 = 0;
const OFFLINE: u8 = 1;
const CLOSED: u8 = 2;

/// Segment list and log start offset, replaced as a whole (copy on write).
#[derive(Clone, Debug)]
struct View {
    segments: Vec<Arc<Segment>>,
    log_start: i64,
}

impl View {
    /// Index of the segment that holds `offset`: the last with base <= offset.
    fn segment_for(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1)
    }
    fn active(&self) -> &Arc<Segment> {
        let last = self.segments.len() - 1;
        &self.segments[last]
    }
}

#[derive(Debug)]
struct AppendState {
    active: Arc<Segment>,
    /// When the active segment was created (for `segment_ms`).
    roll_base_ms: i64,
    messages_since_flush: u64,
    last_flush_ms: i64,
    /// Idempotent producers: checked and updated under the append lock.
    producers: ProducerStateMap,
}

#[derive(Debug)]
struct CheckpointState {
    written: i64,
    at: Instant,
    /// Checkpoint after the next flush round regardless of the interval (set after a
    /// recovery that left the checkpoint behind).
    force: bool,
}

type SyncSender = oneshot::Sender<Result<(), StorageError>>;

#[derive(Debug)]
struct SyncState {
    /// Every offset below this is on stable storage.
    durable_end: i64,
    waiters: Vec<(i64, SyncSender)>,
    /// The log sits in the flusher's queue (or is being flushed).
    queued: bool,
    /// Bumped by every truncation (with the log end lowered under this lock): a flush
    /// that started before one does not count as having synced the new data.
    generation: u64,
}

/// One partition's log. See the crate documentation.
/// A transaction marker to write (`Log::append_marker`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnMarker {
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
    /// The transaction coordinator's epoch (its `__transaction_state`
    /// partition's leader epoch).
    pub coordinator_epoch: i32,
    /// ABORT (true) or COMMIT.
    pub aborted: bool,
    /// The transaction version of the transaction it ends (0 when the
    /// coordinator did not say: WriteTxnMarkers v1); see
    /// `IncomingMarker::transaction_version`.
    pub transaction_version: i16,
}

#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    me: Weak<Log>,
    /// The `Storage` it was opened with (flush threads, handle cache).
    ctx: Arc<Shared>,
    append: Mutex<AppendState>,
    view: RwLock<Arc<View>>,
    log_end: AtomicI64,
    sync: Mutex<SyncState>,
    /// Serialises operations that remove segments or write checkpoints.
    admin: Mutex<()>,
    /// Serialises recovery-point checkpoint writes; the last one written and when.
    checkpoint_state: Mutex<CheckpointState>,
    /// The recovery point in memory: everything below is durable (moves after each
    /// group-commit fdatasync; persisted by `checkpoint` and the flusher).
    recovery_point: AtomicI64,
    /// The clean-shutdown marker was removed but the removal is not yet durable.
    marker_unsynced: AtomicBool,
    status: AtomicU8,
    failure: Mutex<Option<String>>,
    /// Files were created, renamed or removed in the log's directory since its last
    /// fsync: the next sync round fsyncs it before the data.
    dir_dirty: AtomicBool,
    /// The log's directory was created and its entry in the parent directory is not
    /// yet durable: the next sync round fsyncs the parent first. A log created empty
    /// defers every fsync of its creation to the first sync of data in it (an empty
    /// partition lost in a crash is recreated empty by the next `open`).
    parent_dirty: AtomicBool,
    /// Files `Log::write_unsynced_file` wrote beside the log since the last sync round:
    /// the next round fsyncs them before anything else.
    unsynced_files: Mutex<Vec<PathBuf>>,
    config: RwLock<LogConfig>,
    epochs: Mutex<Vec<(i32, i64)>>,
    /// The cleaner checkpoint: the first offset not yet cleaned (compacted logs).
    cleaned_to: AtomicI64,
    /// One cleaning round at a time.
    cleaning: Mutex<()>,
    /// The aborted transactions of every segment (`txns`); taken after the append lock.
    aborted: Mutex<TxnIndex>,
    /// The filesystem the log lives on, when group commit may syncfs it (`sync`).
    fs_root: Option<Arc<FsRoot>>,
}

/// Resolves once `Log::sync_to`'s offset is on stable storage.
#[derive(Debug)]
pub struct SyncWaiter(WaiterState);

#[derive(Debug)]
enum WaiterState {
    Ready(Option<Result<(), StorageError>>),
    Waiting {
        rx: oneshot::Receiver<Result<(), StorageError>>,
        dir: String,
    },
}

impl SyncWaiter {
    fn ready(r: Result<(), StorageError>) -> SyncWaiter {
        SyncWaiter(WaiterState::Ready(Some(r)))
    }

    /// Blocks the current thread until resolved (not for use inside an async runtime).
    pub fn wait_blocking(self) -> Result<(), StorageError> {
        match self.0 {
            WaiterState::Ready(r) => r.unwrap_or(Ok(())),
            WaiterState::Waiting { rx, dir } => rx
                .blocking_recv()
                .unwrap_or(Err(StorageError::Closed { dir })),
        }
    }
}

impl Future for SyncWaiter {
    type Output = Result<(), StorageError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            WaiterState::Ready(r) => Poll::Ready(r.take().unwrap_or(Ok(()))),
            WaiterState::Waiting { rx, dir } => match Pin::new(rx).poll(cx) {
                Poll::Ready(Ok(r)) => Poll::Ready(r),
                Poll::Ready(Err(_)) => Poll::Ready(Err(StorageError::Closed { dir: dir.clone() })),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl Log {
    /// The state of one idempotent producer in this partition (tests, diagnostics).
    pub fn producer_state(&self, producer_id: ProducerId) -> Option<ProducerEntry> {
        self.append.lock().producers.get(producer_id).cloned()
    }

    /// Every producer id tracked in this partition with its state
    /// (DescribeProducers), by producer id.
    pub fn producers(&self) -> Vec<(ProducerId, ProducerEntry)> {
        let append = self.append.lock();
        append
            .producers
            .iter()
            .map(|(id, e)| (id, e.clone()))
            .collect()
    }

    /// Whether `producer_id` has a transaction open in this partition at
    /// `epoch` (Kafka's `hasOngoingTransaction`): a transaction version 2
    /// batch then needs no implicit add to its transaction.
    pub fn in_transaction(&self, producer_id: ProducerId, epoch: ProducerEpoch) -> bool {
        self.append
            .lock()
            .producers
            .get(producer_id)
            .is_some_and(|e| e.epoch == epoch && e.current_txn_first_offset.is_some())
    }

    /// Number of producer ids tracked in this partition.
    pub fn producer_count(&self) -> usize {
        self.append.lock().producers.len()
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> LogConfig {
        self.config.read().clone()
    }

    /// True after [`Log::close`].
    pub fn is_closed(&self) -> bool {
        self.status.load(Ordering::Acquire) == CLOSED
    }

    /// True after an I/O error took the log offline.
    pub fn is_offline(&self) -> bool {
        self.status.load(Ordering::Acquire) == OFFLINE
    }

    fn check_writable(&self) -> Result<(), StorageError> {
        match self.status.load(Ordering::Acquire) {
            OPEN => Ok(()),
            CLOSED => Err(StorageError::Closed {
                dir: self.dir.display().to_string(),
            }),
            _ => Err(StorageError::Offline {
                dir: self.dir.display().to_string(),
                reason: self.failure.lock().clone().unwrap_or_default(),
            }),
        }
    }

    /// Takes the log offline after an I/O error and fails every waiter.
    fn fail(&self, err: &StorageError) {
        let reason = err.to_string();
        self.ctx.stats.error();
        if self
            .status
            .compare_exchange(OPEN, OFFLINE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            tracing::error!(dir = %self.dir.display(), "log goes offline: {reason}");
            *self.failure.lock() = Some(reason.clone());
            self.ctx.failed(&self.dir, &reason);
        }
        let waiters = std::mem::take(&mut self.sync.lock().waiters);
        for (_, tx) in waiters {
            let _ = tx.send(Err(StorageError::Offline {
                dir: self.dir.display().to_string(),
                reason: reason.clone(),
            }));
        }
    }

    pub fn log_start_offset(&self) -> Offset {
        Offset(self.view.read().log_start)
    }

    pub fn log_end_offset(&self) -> Offset {
        Offset(self.log_end.load(Ordering::Acquire))
    }

    /// Bytes in all segment files.
    pub fn size_bytes(&self) -> u64 {
        self.view.read().segments.iter().map(|s| s.size()).sum()
    }

    /// Number of segments (diagnostics and tests).
    pub fn segment_count(&self) -> usize {
        self.view.read().segments.len()
    }

    /// Writes the small file `name` in the log's directory (whole: a temporary file
    /// renamed over it) without an fsync: the log's next sync round makes it durable
    /// before any data of that round counts as durable. For a file that describes the
    /// log and must be there whenever data is (Kafka's `partition.metadata`, written as a
    /// partition's log is created: creating a partition then costs no fsync, and a crash
    /// before its first data is durable loses no data it could be mistaken for).
    pub fn write_unsynced_file(&self, name: &str, contents: &[u8]) -> Result<(), StorageError> {
        self.check_writable()?;
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let write = || -> io::Result<()> {
            let mut f = self.ctx.fs.open(
                &tmp,
                fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true),
            )?;
            self.ctx.fs.write_all(&tmp, &mut f, contents)?;
            self.ctx.fs.rename(&tmp, &path)
        };
        write().map_err(|e| StorageError::io_path("write", &path, e))?;
        let mut files = self.unsynced_files.lock();
        if !files.contains(&path) {
            files.push(path);
        }
        drop(files);
        self.dir_dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Changes the settings; size/roll settings apply to the next append, index sizes to
    /// the next segment.
    pub fn set_config(&self, config: LogConfig) {
        *self.config.write() = config.normalized();
    }

    /// Flushes everything, trims the active segment's indexes, writes the checkpoints and
    /// the clean-shutdown marker. Afterwards appends fail; reads keep working.
    pub fn close(&self) -> Result<(), StorageError> {
        let _admin = self.admin.lock();
        let st = self.append.lock();
        if self.status.load(Ordering::Acquire) == CLOSED {
            return Ok(());
        }
        self.check_writable()?;
        let result = (|| {
            st.active.trim_padding().map_err(|e| {
                StorageError::io(
                    format!("trim direct-write padding of {}", st.active.display()),
                    e,
                )
            })?;
            st.active
                .indexes
                .lock()
                .write_exact(&*self.ctx.fs)
                .map_err(|e| {
                    StorageError::io(format!("write index of {}", st.active.display()), e)
                })?;
            st.active.index_dirty.store(true, Ordering::Release);
            self.flush()?;
            self.sync_txn_index(st.active.base_offset)?;
            let leo = self.log_end.load(Ordering::Acquire);
            producer_state::write_snapshot(
                &*self.ctx.fs,
                &self.dir,
                leo,
                &st.producers.encode_snapshot(),
                true,
            )
            .map_err(|e| StorageError::io_path("write producer snapshot in", &self.dir, e))?;
            let log_start = self.view.read().log_start;
            checkpoint::write_offset(&*self.ctx.fs, &self.dir, LOG_START_FILE, log_start).map_err(
                |e| StorageError::io_path("write log start checkpoint in", &self.dir, e),
            )?;
            let epochs = self.epochs.lock().clone();
            checkpoint::write_epochs(&*self.ctx.fs, &self.dir, &epochs)
                .map_err(|e| StorageError::io_path("write leader epochs in", &self.dir, e))?;
            self.advance_recovery_point(self.log_end.load(Ordering::Acquire), true)?;
            checkpoint::write_atomic(&*self.ctx.fs, &self.dir, CLEAN_SHUTDOWN_FILE, b"")
                .map_err(|e| StorageError::io_path("write clean shutdown marker in", &self.dir, e))
        })();
        match result {
            Ok(()) => {
                self.status.store(CLOSED, Ordering::Release);
                Ok(())
            }
            Err(e) => {
                self.fail(&e);
                Err(e)
            }
        }
    }
}
