//! `Log`: one partition's segmented log (see the crate docs for layout and concurrency).

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
use fjord_model::{LeaderEpoch, Offset, ProducerId, TimestampType};
use fjord_records::{
    batches, set_base_offset, set_log_append_time, set_partition_leader_epoch, validate_batch,
    BatchHeader,
};
use parking_lot::{Mutex, RwLock};
use tokio::sync::oneshot;

use crate::checkpoint::{
    self, Truncation, CLEAN_SHUTDOWN_FILE, LOG_START_FILE, RECOVERY_POINT_FILE, TRUNCATION_FILE,
};
use crate::error::StorageError;
use crate::producer_state::{self, IncomingBatch, ProducerEntry, ProducerStateMap, Verdict};
use crate::segment::{
    self, ScanError, Scanner, Segment, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX,
};
use crate::storage::{Shared, Storage};
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
    dir_dirty: AtomicBool,
    config: RwLock<LogConfig>,
    epochs: Mutex<Vec<(i32, i64)>>,
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

fn warn_problem(report: &mut RecoveryReport, dir: &Path, problem: String) {
    tracing::warn!(dir = %dir.display(), "log recovery: {problem}");
    report.problems.push(problem);
}

impl Log {
    /// Opens (creating if missing) the partition log in `dir`, recovering after a crash.
    /// Its background flushes run on `storage`'s threads and its sealed segments' handles
    /// count against `storage`'s cache.
    pub fn open(
        storage: &Storage,
        dir: &Path,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<(Arc<Log>, RecoveryReport), StorageError> {
        let ctx = Arc::clone(storage.context());
        let started = Instant::now();
        let config = config.normalized();
        let mut report = RecoveryReport::default();
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(|e| StorageError::io_path("create", dir, e))?;
            if let Some(parent) = dir.parent() {
                checkpoint::sync_dir(parent)
                    .map_err(|e| StorageError::io_path("fsync", parent, e))?;
            }
        }

        // Inventory; remove leftovers of interrupted operations.
        let mut bases = Vec::new();
        let mut index_files = Vec::new();
        let mut marker_seen = false;
        let listing = fs::read_dir(dir).map_err(|e| StorageError::io_path("list", dir, e))?;
        for entry in listing {
            let entry = entry.map_err(|e| StorageError::io_path("list", dir, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.ends_with(".tmp") || name.ends_with(".deleted") {
                let _ = fs::remove_file(entry.path());
                continue;
            }
            if name == CLEAN_SHUTDOWN_FILE {
                marker_seen = true;
                continue;
            }
            match segment::parse_file_name(&name) {
                Some((base, LOG_SUFFIX)) => bases.push(base),
                Some((base, INDEX_SUFFIX | TIME_INDEX_SUFFIX)) => {
                    index_files.push((base, entry.path()))
                }
                _ => {}
            }
        }
        bases.sort_unstable();
        for (base, path) in index_files {
            if bases.binary_search(&base).is_err() {
                warn_problem(
                    &mut report,
                    dir,
                    format!("removing orphan index {}", path.display()),
                );
                let _ = fs::remove_file(path);
            }
        }

        let marker = dir.join(CLEAN_SHUTDOWN_FILE);
        report.clean = marker_seen;
        let recovery_point = match checkpoint::read_offset(dir, RECOVERY_POINT_FILE) {
            Ok(rp) => rp,
            Err(e) => {
                warn_problem(
                    &mut report,
                    dir,
                    format!("recovery point checkpoint unreadable: {e}"),
                );
                None
            }
        };
        report.recovery_point = recovery_point.map(Offset);
        let start_checkpoint = match checkpoint::read_offset(dir, LOG_START_FILE) {
            Ok(ls) => ls,
            Err(e) => {
                warn_problem(
                    &mut report,
                    dir,
                    format!("log start checkpoint unreadable: {e}"),
                );
                None
            }
        };
        let mut epochs = match checkpoint::read_epochs(dir) {
            Ok(e) => e,
            Err(e) => {
                warn_problem(
                    &mut report,
                    dir,
                    format!("leader epoch checkpoint unreadable: {e}"),
                );
                Vec::new()
            }
        };

        // A truncation interrupted by a crash: complete it before anything is read.
        let mut recovery_point = recovery_point;
        match checkpoint::read_truncation(dir) {
            Ok(None) => {}
            Ok(Some(t)) => {
                complete_truncation(dir, t, &mut bases, &mut report)?;
                if marker_seen {
                    fs::remove_file(&marker)
                        .map_err(|e| StorageError::io_path("remove", &marker, e))?;
                    report.clean = false;
                }
                if recovery_point.is_none_or(|rp| rp > t.log_end) {
                    checkpoint::write_offset(dir, RECOVERY_POINT_FILE, t.log_end)
                        .map_err(|e| StorageError::io_path("write checkpoint in", dir, e))?;
                    recovery_point = Some(t.log_end);
                }
                let keep = epochs.partition_point(|&(_, s)| s < t.log_end);
                if keep < epochs.len() {
                    epochs.truncate(keep);
                    checkpoint::write_epochs(dir, &epochs)
                        .map_err(|e| StorageError::io_path("write leader epochs in", dir, e))?;
                }
                checkpoint::sync_dir(dir).map_err(|e| StorageError::io_path("fsync", dir, e))?;
                let intent = dir.join(TRUNCATION_FILE);
                fs::remove_file(&intent)
                    .map_err(|e| StorageError::io_path("remove", &intent, e))?;
                checkpoint::sync_dir(dir).map_err(|e| StorageError::io_path("fsync", dir, e))?;
                report.truncation_completed = Some(Offset(t.log_end));
            }
            Err(e) => {
                // Not written by us (the file is replaced atomically). Whatever the interrupted
                // truncation left is a prefix of the log, which recovery handles.
                warn_problem(
                    &mut report,
                    dir,
                    format!("removing unreadable truncation intent: {e}"),
                );
                let intent = dir.join(TRUNCATION_FILE);
                fs::remove_file(&intent)
                    .map_err(|e| StorageError::io_path("remove", &intent, e))?;
            }
        }

        // Segments before `scan_from` are trusted; the others are validated batch by batch.
        // After a crash, the segment holding the recovery point is scanned only from its
        // last index entry below the recovery point on.
        let rp_trusted = if report.clean {
            i64::MAX
        } else {
            recovery_point.unwrap_or(i64::MIN)
        };
        let scan_from = if report.clean {
            bases.len()
        } else {
            bases
                .partition_point(|&b| b <= rp_trusted)
                .saturating_sub(1)
        };
        let last_i = bases.len().saturating_sub(1);
        let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(bases.len());
        let mut scanned: Vec<bool> = Vec::with_capacity(bases.len());
        let mut active_next: Option<Option<i64>> = None;
        let interval = config.index_interval_bytes;
        let index_max = config.index_bytes_max;
        for (i, &base) in bases.iter().enumerate() {
            let is_last = i == last_i;
            report.segments_loaded += 1;
            let mut outcome = None;
            let seg = if i < scan_from && !is_last {
                match Segment::open_sealed(&ctx, dir, base)? {
                    (Some(seg), _) => seg,
                    (None, problem) => {
                        let problem = problem.unwrap_or_default();
                        warn_problem(&mut report, dir, format!("rebuilding index: {problem}"));
                        let (seg, _) = Segment::open_rw(&ctx, dir, base, index_max, i64::MIN)?;
                        outcome = Some(seg.recover(interval, i64::MIN)?);
                        report.indexes_rebuilt += 1;
                        seg
                    }
                }
            } else if report.clean {
                // The active segment after a clean shutdown: find its end from the index.
                let (seg, all) = Segment::open_rw(&ctx, dir, base, index_max, i64::MAX)?;
                let tail = if all {
                    seg.scan_tail(interval)
                } else {
                    Err("index files do not match the segment".to_string())
                };
                match tail {
                    Ok(next) => active_next = Some(next),
                    Err(p) => {
                        warn_problem(
                            &mut report,
                            dir,
                            format!("{}: {p}; rebuilding its index", seg.display()),
                        );
                        outcome = Some(seg.recover(interval, i64::MIN)?);
                        report.indexes_rebuilt += 1;
                    }
                }
                seg
            } else if i == scan_from {
                let (seg, _) = Segment::open_rw(&ctx, dir, base, index_max, rp_trusted)?;
                outcome = Some(seg.recover_from_index(interval, rp_trusted)?);
                seg
            } else {
                let (seg, _) = Segment::open_rw(&ctx, dir, base, index_max, i64::MIN)?;
                outcome = Some(seg.recover(interval, i64::MIN)?);
                report.indexes_rebuilt += 1;
                seg
            };
            let mut stop = false;
            if let Some(o) = &outcome {
                report.segments_scanned += 1;
                report.bytes_scanned += o.bytes_scanned;
                if is_last {
                    active_next = Some(o.next_offset);
                }
                if let Some(p) = &o.problem {
                    report.bytes_truncated += o.bytes_truncated;
                    warn_problem(
                        &mut report,
                        dir,
                        format!(
                            "{}: {p}; truncated {} bytes",
                            seg.display(),
                            o.bytes_truncated
                        ),
                    );
                    if !is_last {
                        stop = true;
                        active_next = Some(o.next_offset);
                    }
                }
            }
            scanned.push(outcome.is_some());
            segments.push(Arc::new(seg));
            if stop {
                // Everything after a corrupt batch is unreachable: drop the later segments.
                for &later in &bases[i + 1..] {
                    for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
                        let p = dir.join(segment::file_name(later, suffix));
                        if let Err(e) = fs::remove_file(&p) {
                            if e.kind() != io::ErrorKind::NotFound {
                                return Err(StorageError::io_path("remove", &p, e));
                            }
                        }
                    }
                    report.segments_deleted += 1;
                }
                warn_problem(
                    &mut report,
                    dir,
                    format!(
                        "deleted {} segments after the corruption",
                        bases.len() - i - 1
                    ),
                );
                break;
            }
        }

        if segments.is_empty() {
            let base = start_checkpoint.unwrap_or(0).max(0);
            segments.push(Arc::new(Segment::create(&ctx, dir, base, index_max)?));
            scanned.push(false);
            active_next = Some(None);
        }
        let last = segments.len() - 1;
        let active = Arc::clone(&segments[last]);
        let next = active_next.unwrap_or(None);
        let log_end = next.unwrap_or(active.base_offset).max(active.base_offset);

        // A crash with nothing to repair (no truncation, only the active segment scanned):
        // no fsync here. The scanned tail may still be only in the page cache (the process
        // died, not the machine), so it counts as not yet durable, exactly as before the
        // crash: the background flush queued below syncs it, and the next checkpoint
        // records it; another crash before that just scans the same tail again.
        let light = !report.clean
            && scanned[last]
            && report.bytes_truncated == 0
            && report.segments_deleted == 0
            && scanned.iter().enumerate().all(|(i, s)| !*s || i == last);

        let first_base = segments[0].base_offset;
        let log_start = start_checkpoint
            .unwrap_or(first_base)
            .max(first_base)
            .min(log_end);
        epochs.retain(|&(_, start)| start <= log_end);
        truncate_epochs_from_start(&mut epochs, log_start);
        let producers = rebuild_producer_state(dir, &segments, log_end, now_ms, &mut report)?;

        let (recovery_point_now, checkpoint_written) = if light {
            active.flushed_size.store(0, Ordering::Release);
            let durable = recovery_point.unwrap_or(0).clamp(0, log_end);
            (durable, recovery_point.unwrap_or(i64::MIN))
        } else {
            // Scanned segments get exact index files; sealed ones drop their in-memory
            // copies. Then make what recovery produced durable and record it.
            for (i, seg) in segments.iter().enumerate().filter(|(i, _)| scanned[*i]) {
                seg.finish_recovery(i != last).map_err(|e| {
                    StorageError::io(format!("write index of {}", seg.display()), e)
                })?;
            }
            if scanned.iter().any(|s| *s) || !report.clean {
                for (seg, _) in segments.iter().zip(&scanned).filter(|(_, s)| **s) {
                    seg.sync_data_now()
                        .map_err(|e| StorageError::io(format!("fsync {}", seg.display()), e))?;
                    seg.index_dirty.store(true, Ordering::Release);
                    seg.sync_indexes_if_dirty().map_err(|e| {
                        StorageError::io(format!("fsync index of {}", seg.display()), e)
                    })?;
                    seg.track_file();
                }
                checkpoint::sync_dir(dir).map_err(|e| StorageError::io_path("fsync", dir, e))?;
            }
            let rp_now = if report.clean {
                recovery_point.unwrap_or(log_end).min(log_end)
            } else {
                log_end
            };
            if !report.clean || recovery_point != Some(rp_now) {
                checkpoint::write_offset(dir, RECOVERY_POINT_FILE, rp_now)
                    .map_err(|e| StorageError::io_path("write checkpoint in", dir, e))?;
            }
            (rp_now, rp_now)
        };
        // The marker's removal is made durable before the first write (see `append`):
        // until then the files are exactly what the marker vouches for.
        let marker_unsynced = report.clean;
        if report.clean {
            fs::remove_file(&marker).map_err(|e| StorageError::io_path("remove", &marker, e))?;
        }

        report.log_start_offset = Offset(log_start);
        report.log_end_offset = Offset(log_end);
        report.duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        if !report.problems.is_empty() {
            tracing::warn!(
                dir = %dir.display(),
                truncated = report.bytes_truncated,
                rebuilt = report.indexes_rebuilt,
                "log recovered with problems"
            );
        }
        let log = Arc::new_cyclic(|me| Log {
            dir: dir.to_path_buf(),
            me: me.clone(),
            ctx,
            append: Mutex::new(AppendState {
                active: Arc::clone(&active),
                roll_base_ms: now_ms,
                messages_since_flush: 0,
                last_flush_ms: now_ms,
                producers,
            }),
            view: RwLock::new(Arc::new(View {
                segments,
                log_start,
            })),
            log_end: AtomicI64::new(log_end),
            sync: Mutex::new(SyncState {
                durable_end: recovery_point_now,
                waiters: Vec::new(),
                queued: false,
                generation: 0,
            }),
            admin: Mutex::new(()),
            checkpoint_state: Mutex::new(CheckpointState {
                written: checkpoint_written,
                at: Instant::now(),
                force: light,
            }),
            recovery_point: AtomicI64::new(recovery_point_now),
            marker_unsynced: AtomicBool::new(marker_unsynced),
            status: AtomicU8::new(OPEN),
            failure: Mutex::new(None),
            dir_dirty: AtomicBool::new(false),
            config: RwLock::new(config),
            epochs: Mutex::new(epochs),
        });
        if light {
            log.request_flush();
        }
        Ok((log, report))
    }

    /// The state of one idempotent producer in this partition (tests, diagnostics).
    pub fn producer_state(&self, producer_id: ProducerId) -> Option<ProducerEntry> {
        self.append.lock().producers.get(producer_id).cloned()
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
        if self
            .status
            .compare_exchange(OPEN, OFFLINE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            tracing::error!(dir = %self.dir.display(), "log goes offline: {reason}");
            *self.failure.lock() = Some(reason.clone());
        }
        let waiters = std::mem::take(&mut self.sync.lock().waiters);
        for (_, tx) in waiters {
            let _ = tx.send(Err(StorageError::Offline {
                dir: self.dir.display().to_string(),
                reason: reason.clone(),
            }));
        }
    }

    /// Validates, assigns offsets to and writes one Produce request's batches. No fsync.
    /// Stamps the latest recorded leader epoch (if any) into the batches. Kept for callers
    /// that do not know their epoch yet; `append_as_leader` states it.
    pub fn append(&self, records: &mut [u8], now_ms: i64) -> Result<AppendResult, StorageError> {
        self.append_assigning(records, None, now_ms)
    }

    /// The leader's append (Kafka's `appendAsLeader`): validates the batches, assigns their
    /// offsets, stamps `leader_epoch` into every batch header (`partitionLeaderEpoch` lies
    /// before the CRC'd part, so the CRC stays valid) and writes them. The first append of a
    /// new epoch records `(leader_epoch, log end)` in the leader epoch cache and its
    /// checkpoint. An epoch below the latest recorded one is refused
    /// (FENCED_LEADER_EPOCH): the epoch comes from the caller, never from the data.
    pub fn append_as_leader(
        &self,
        records: &mut [u8],
        leader_epoch: LeaderEpoch,
        now_ms: i64,
    ) -> Result<AppendResult, StorageError> {
        if leader_epoch.0 < 0 {
            return Err(StorageError::InvalidArgument(format!(
                "leader epoch {} is negative",
                leader_epoch.0
            )));
        }
        self.append_assigning(records, Some(leader_epoch.0), now_ms)
    }

    /// Checks framing, CRC and (for client data) sizes of every batch, before any lock.
    fn validate_batches(
        records: &[u8],
        cfg: &LogConfig,
        check_message_size: bool,
    ) -> Result<Vec<(BatchHeader, Range<usize>)>, StorageError> {
        if records.len() as u64 > cfg.segment_bytes_max {
            return Err(StorageError::RecordListTooLarge {
                size: records.len(),
                max: cfg.segment_bytes_max,
            });
        }
        let mut found: Vec<(BatchHeader, Range<usize>)> = Vec::new();
        for item in batches(records) {
            let (h, range) = item.map_err(StorageError::InvalidRecord)?;
            if check_message_size && range.len() > cfg.message_bytes_max {
                return Err(StorageError::MessageTooLarge {
                    size: range.len(),
                    max: cfg.message_bytes_max,
                });
            }
            validate_batch(&records[range.clone()]).map_err(StorageError::InvalidRecord)?;
            found.push((h, range));
        }
        Ok(found)
    }

    /// `append` and `append_as_leader`: `leader_epoch` None stamps the latest recorded one.
    fn append_assigning(
        &self,
        records: &mut [u8],
        leader_epoch: Option<i32>,
        now_ms: i64,
    ) -> Result<AppendResult, StorageError> {
        self.check_writable()?;
        let cfg = self.config.read().clone();
        // Validation (CRC) happens before the append lock is taken.
        let mut found = Self::validate_batches(records, &cfg, true)?;
        let log_append_time_ms = match cfg.timestamp_type {
            TimestampType::LogAppendTime => {
                for (h, r) in &mut found {
                    set_log_append_time(&mut records[r.clone()], now_ms);
                    h.max_timestamp = now_ms;
                    h.attributes |= fjord_records::attributes::TIMESTAMP_TYPE;
                }
                now_ms
            }
            TimestampType::CreateTime => -1,
        };
        let stamp = match leader_epoch {
            Some(e) => Some(e),
            None => self.epochs.lock().last().map(|&(e, _)| e),
        };
        if let Some(epoch) = stamp {
            for (h, r) in &mut found {
                set_partition_leader_epoch(&mut records[r.clone()], epoch);
                h.partition_leader_epoch = epoch;
            }
        }
        let records_count: u64 = found
            .iter()
            .map(|(h, _)| h.records_count.max(0) as u64)
            .sum();
        let span: i64 = found
            .iter()
            .map(|(h, _)| i64::from(h.last_offset_delta) + 1)
            .sum();

        let mut st = self.append.lock();
        self.check_writable()?;
        let leo = self.log_end.load(Ordering::Acquire);
        if let Some(epoch) = leader_epoch {
            if let Some(&(latest, _)) = self.epochs.lock().last() {
                if epoch < latest {
                    return Err(StorageError::FencedLeaderEpoch { epoch, latest });
                }
            }
        }
        if found.is_empty() {
            return Ok(AppendResult {
                base_offset: Offset(leo),
                last_offset: Offset(leo - 1),
                log_append_time_ms,
                log_start_offset: Offset(self.view.read().log_start),
                records_count: 0,
                duplicate: false,
            });
        }
        // Idempotent producers: decide with the offsets the batches would get.
        let mut producer_update = None;
        if found.iter().any(|(h, _)| h.producer_id >= 0) {
            let mut next = leo;
            let mut incoming = Vec::with_capacity(found.len());
            for (h, _) in &found {
                let mut at = *h;
                at.base_offset = next;
                next = at.next_offset();
                incoming.extend(IncomingBatch::from_header(&at));
            }
            match st.producers.check(&incoming, found.len())? {
                Verdict::Append(update) => producer_update = Some(update),
                Verdict::Duplicate { first, last } => {
                    return Ok(AppendResult {
                        base_offset: first.base_offset,
                        last_offset: last.last_offset,
                        log_append_time_ms: match cfg.timestamp_type {
                            TimestampType::LogAppendTime => last.timestamp_ms,
                            TimestampType::CreateTime => -1,
                        },
                        log_start_offset: Offset(self.view.read().log_start),
                        records_count: 0,
                        duplicate: true,
                    });
                }
            }
        }
        if let Some(epoch) = leader_epoch {
            // The first append of a new epoch: the epoch starts at the log end.
            self.assign_epochs(&[(epoch, leo)])?;
        }
        let mut next = leo;
        for (h, r) in &mut found {
            set_base_offset(&mut records[r.clone()], next);
            h.base_offset = next;
            next = h.next_offset();
        }
        let rolled = self.write_locked(&mut st, &cfg, records, &found, span, now_ms)?;
        if let Some(update) = producer_update {
            st.producers.commit(update, now_ms);
        }
        self.after_write(st, &cfg, records_count, rolled, now_ms);
        Ok(AppendResult {
            base_offset: Offset(leo),
            last_offset: Offset(next - 1),
            log_append_time_ms,
            log_start_offset: Offset(self.view.read().log_start),
            records_count,
            duplicate: false,
        })
    }

    /// A follower's append (Kafka's `appendAsFollower`): batches whose offsets and leader
    /// epochs the leader assigned, written as they are. The first batch must start at the
    /// log end and each next one where the previous ends (OFFSETS_OUT_OF_ORDER otherwise,
    /// nothing written); CRCs are checked, `max.message.bytes` is not (the leader
    /// accepted them). Epochs are learnt from the batches (a batch with an epoch above the
    /// latest recorded one starts that epoch; one below it is refused), and the producer
    /// state is updated as recovery's replay does, without sequence checks.
    pub fn append_as_follower(
        &self,
        records: &[u8],
        now_ms: i64,
    ) -> Result<AppendResult, StorageError> {
        self.check_writable()?;
        let cfg = self.config.read().clone();
        let found = Self::validate_batches(records, &cfg, false)?;
        let records_count: u64 = found
            .iter()
            .map(|(h, _)| h.records_count.max(0) as u64)
            .sum();
        let span: i64 = found
            .iter()
            .map(|(h, _)| i64::from(h.last_offset_delta) + 1)
            .sum();

        let mut st = self.append.lock();
        self.check_writable()?;
        let leo = self.log_end.load(Ordering::Acquire);
        let log_start_offset = Offset(self.view.read().log_start);
        let Some((first, _)) = found.first() else {
            return Ok(AppendResult {
                base_offset: Offset(leo),
                last_offset: Offset(leo - 1),
                log_append_time_ms: -1,
                log_start_offset,
                records_count: 0,
                duplicate: false,
            });
        };
        let base = first.base_offset;
        // Offsets continue the log without a gap; epochs never go back.
        let mut latest = self.epochs.lock().last().map(|&(e, _)| e);
        let mut new_epochs: Vec<(i32, i64)> = Vec::new();
        let mut next = leo;
        for (h, _) in &found {
            if h.base_offset != next || h.last_offset_delta < 0 {
                return Err(StorageError::OffsetsOutOfOrder {
                    expected: next,
                    found: h.base_offset,
                    detail: format!(
                        "batch {}..={} does not follow offset {}",
                        h.base_offset,
                        h.last_offset(),
                        next - 1
                    ),
                });
            }
            let epoch = h.partition_leader_epoch;
            if epoch >= 0 {
                if latest.is_some_and(|l| epoch < l) {
                    return Err(StorageError::OffsetsOutOfOrder {
                        expected: next,
                        found: h.base_offset,
                        detail: format!(
                            "batch at {} has leader epoch {epoch}, below {}",
                            h.base_offset,
                            latest.unwrap_or(-1)
                        ),
                    });
                }
                if latest.is_none_or(|l| epoch > l) {
                    new_epochs.push((epoch, h.base_offset));
                    latest = Some(epoch);
                }
            }
            next = h.next_offset();
        }
        self.assign_epochs(&new_epochs)?;
        let rolled = self.write_locked(&mut st, &cfg, records, &found, span, now_ms)?;
        for (h, _) in &found {
            st.producers.replay(h);
        }
        self.after_write(st, &cfg, records_count, rolled, now_ms);
        Ok(AppendResult {
            base_offset: Offset(base),
            last_offset: Offset(next - 1),
            log_append_time_ms: -1,
            log_start_offset,
            records_count,
            duplicate: false,
        })
    }

    /// Removes every batch at and above `offset` (a follower settling a divergence, Kafka's
    /// `truncateTo`): later segments, the tail of the segment holding `offset` cut at a
    /// batch boundary (a batch that holds `offset` goes whole), its indexes, the leader
    /// epochs starting at or after the new end; the recovery point and durable offset are
    /// lowered to it and the producer state rebuilt (snapshot + replay). Returns the new log
    /// end (`offset`, or the base of the batch holding it); at or past the log end it
    /// changes nothing. Below the log start it is OFFSET_OUT_OF_RANGE.
    ///
    /// Crash-safe: a `truncation-intent` file is written (durably) before anything changes
    /// and removed once all is durable; `Log::open` completes a truncation it finds, so a
    /// crash reopens to the log before or after the truncation, never in between. Sync
    /// waiters for offsets at or past the new end fail with OFFSET_OUT_OF_RANGE.
    pub fn truncate_to(&self, offset: Offset) -> Result<Offset, StorageError> {
        let _admin = self.admin.lock();
        let mut st = self.append.lock();
        self.check_writable()?;
        let leo = self.log_end.load(Ordering::Acquire);
        if offset.0 >= leo {
            return Ok(Offset(leo));
        }
        let view = Arc::clone(&self.view.read());
        let out_of_range = StorageError::OffsetOutOfRange {
            requested: offset.0,
            log_start: view.log_start,
            log_end: leo,
        };
        if offset.0 < view.log_start {
            return Err(out_of_range);
        }
        let i = view.segment_for(offset.0);
        let seg = &view.segments[i];
        let file = self.segment_file(seg, offset.0, leo)?;
        let (position, new_leo) = seg.find_cut(&file, offset.0)?;
        drop(file);
        if new_leo < view.log_start {
            return Err(out_of_range);
        }
        assert!(
            seg.base_offset <= new_leo && new_leo <= offset.0 && new_leo < leo,
            "truncation to {} of [{}, {leo}) cuts at {new_leo} in segment {}",
            offset.0,
            view.log_start,
            seg.base_offset
        );
        let cut = Truncation {
            base: seg.base_offset,
            position,
            log_end: new_leo,
        };
        let result = self.truncate_locked(&mut st, &view, i, cut);
        if let Err(e) = &result {
            self.fail(e);
        }
        result.map(|()| Offset(new_leo))
    }

    /// The steps of `truncate_to`, under the admin and append locks.
    fn truncate_locked(
        &self,
        st: &mut AppendState,
        view: &View,
        i: usize,
        cut: Truncation,
    ) -> Result<(), StorageError> {
        let dir = &self.dir;
        let new_leo = cut.log_end;
        checkpoint::write_truncation(dir, cut)
            .map_err(|e| StorageError::io_path("write truncation intent in", dir, e))?;
        // From here a crash completes the truncation at the next open. Lower the recovery
        // point first, so that recovery never trusts data written after the truncation.
        let failed_waiters = {
            let mut cs = self.checkpoint_state.lock();
            if cs.written > new_leo {
                checkpoint::write_offset(dir, RECOVERY_POINT_FILE, new_leo)
                    .map_err(|e| StorageError::io_path("write recovery point in", dir, e))?;
                cs.written = new_leo;
            }
            self.recovery_point.fetch_min(new_leo, Ordering::AcqRel);
            let mut s = self.sync.lock();
            s.generation += 1;
            s.durable_end = s.durable_end.min(new_leo);
            let leo = self.log_end.load(Ordering::Acquire);
            assert!(
                new_leo < leo,
                "truncation to {new_leo} must lower the log end {leo}"
            );
            self.log_end.store(new_leo, Ordering::Release);
            let (gone, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut s.waiters)
                .into_iter()
                .partition(|(o, _)| *o >= new_leo);
            s.waiters = keep;
            gone
        };
        for (o, tx) in failed_waiters {
            let _ = tx.send(Err(StorageError::OffsetOutOfRange {
                requested: o,
                log_start: view.log_start,
                log_end: new_leo,
            }));
        }

        // Later segments go first, newest first: whatever a crash leaves is a prefix of the
        // log (and the intent finishes the job at the next open).
        for seg in view.segments[i + 1..].iter().rev() {
            seg.retire();
            seg.delete_files()
                .map_err(|e| StorageError::io(format!("delete {}", seg.display()), e))?;
        }
        // The tail segment: a new object over the shortened file, as the active segment.
        let old_tail = &view.segments[i];
        old_tail.retire();
        segment::truncate_log_file(dir, cut.base, cut.position)
            .map_err(|e| StorageError::io(format!("truncate {}", old_tail.display()), e))?;
        let cfg = self.config.read().clone();
        let (tail, _) = Segment::open_rw(&self.ctx, dir, cut.base, cfg.index_bytes_max, new_leo)?;
        let end =
            tail.scan_tail(cfg.index_interval_bytes)
                .map_err(|detail| StorageError::Corrupt {
                    path: tail.display(),
                    position: 0,
                    detail,
                })?;
        assert_eq!(
            end.unwrap_or(cut.base),
            new_leo,
            "the cut segment {} ends at the new log end",
            tail.display()
        );
        tail.indexes
            .lock()
            .write_exact()
            .map_err(|e| StorageError::io(format!("write index of {}", tail.display()), e))?;
        tail.index_dirty.store(true, Ordering::Release);
        tail.sync_indexes_if_dirty()
            .map_err(|e| StorageError::io(format!("fsync index of {}", tail.display()), e))?;
        let tail = Arc::new(tail);
        {
            let mut v = self.view.write();
            let mut segments: Vec<Arc<Segment>> = v.segments[..i].to_vec();
            segments.push(Arc::clone(&tail));
            *v = Arc::new(View {
                segments,
                log_start: v.log_start,
            });
        }
        st.active = tail;

        // Leader epochs that start at or after the new end (Kafka's truncateFromEnd).
        {
            let mut epochs = self.epochs.lock();
            let keep = epochs.partition_point(|&(_, s)| s < new_leo);
            if keep < epochs.len() {
                let next = epochs[..keep].to_vec();
                checkpoint::write_epochs(dir, &next)
                    .map_err(|e| StorageError::io_path("write leader epochs in", dir, e))?;
                *epochs = next;
            }
        }
        // Producer state: snapshots past the new end go, then snapshot + replay.
        let snapshots = producer_state::list_snapshots(dir)
            .map_err(|e| StorageError::io_path("list", dir, e))?;
        for (at, path) in snapshots {
            if at > new_leo {
                fs::remove_file(&path).map_err(|e| StorageError::io_path("remove", &path, e))?;
            }
        }
        let segments = Arc::clone(&self.view.read()).segments.clone();
        let mut report = RecoveryReport::default();
        // No expiry here (`i64::MIN`): the next append's or retention's `now` does it.
        st.producers = rebuild_producer_state(dir, &segments, new_leo, i64::MIN, &mut report)?;

        checkpoint::sync_dir(dir).map_err(|e| StorageError::io_path("fsync", dir, e))?;
        let intent = dir.join(TRUNCATION_FILE);
        fs::remove_file(&intent).map_err(|e| StorageError::io_path("remove", &intent, e))?;
        checkpoint::sync_dir(dir).map_err(|e| StorageError::io_path("fsync", dir, e))?;
        tracing::info!(dir = %dir.display(), log_end = new_leo, "truncated log");
        Ok(())
    }

    /// Records epochs starting at the given offsets (each above the latest recorded one)
    /// and persists the cache. Under the append lock.
    fn assign_epochs(&self, new: &[(i32, i64)]) -> Result<(), StorageError> {
        if new.is_empty() {
            return Ok(());
        }
        let mut epochs = self.epochs.lock();
        let mut next = epochs.clone();
        for &(epoch, start) in new {
            match next.last() {
                Some(&(e, _)) if epoch == e => continue,
                Some(&(e, s)) => assert!(
                    epoch > e && start >= s,
                    "epoch {epoch}@{start} after {e}@{s}"
                ),
                None => {}
            }
            next.push((epoch, start));
        }
        if next.len() == epochs.len() {
            return Ok(());
        }
        if let Err(e) = checkpoint::write_epochs(&self.dir, &next) {
            let err = StorageError::io_path("write leader epochs in", &self.dir, e);
            self.fail(&err);
            return Err(err);
        }
        *epochs = next;
        Ok(())
    }

    /// Writes batches (offsets already final) at the end of the log, rolling first if
    /// needed; publishes the new log end. Under the append lock. Returns whether it rolled.
    fn write_locked(
        &self,
        st: &mut AppendState,
        cfg: &LogConfig,
        records: &[u8],
        found: &[(BatchHeader, Range<usize>)],
        span: i64,
        now_ms: i64,
    ) -> Result<bool, StorageError> {
        let leo = self.log_end.load(Ordering::Acquire);
        let mut rolled = false;
        if self.should_roll(st, cfg, records.len(), span, found.len(), now_ms) {
            if let Err(e) = self.roll(st, leo, cfg, now_ms) {
                self.fail(&e);
                return Err(e);
            }
            rolled = true;
        }
        let seg = Arc::clone(&st.active);
        let pos = seg.size();
        if self.marker_unsynced.load(Ordering::Acquire) {
            // The clean-shutdown marker's removal must be durable before new data is.
            if let Err(e) = checkpoint::sync_dir(&self.dir) {
                let err = StorageError::io_path("fsync", &self.dir, e);
                self.fail(&err);
                return Err(err);
            }
            self.marker_unsynced.store(false, Ordering::Release);
        }
        if let Err(e) = seg.write_at(records, pos) {
            let err = StorageError::io(format!("write {}", seg.display()), e);
            self.fail(&err);
            return Err(err);
        }
        {
            let mut idx = seg.indexes.lock();
            for (h, r) in found {
                idx.on_batch(h, pos + r.start as u64, cfg.index_interval_bytes);
            }
        }
        seg.size
            .store(pos + records.len() as u64, Ordering::Release);
        let next = found.last().map_or(leo, |(h, _)| h.next_offset());
        self.log_end.store(next, Ordering::Release);
        Ok(rolled)
    }

    /// Flush accounting after a write (`flush.messages`, `flush.ms`, rolls); releases the
    /// append lock before queueing a flush.
    fn after_write(
        &self,
        mut st: parking_lot::MutexGuard<'_, AppendState>,
        cfg: &LogConfig,
        records_count: u64,
        rolled: bool,
        now_ms: i64,
    ) {
        st.messages_since_flush += records_count;
        let flush_due = cfg
            .flush_interval_messages
            .is_some_and(|n| st.messages_since_flush >= n)
            || cfg
                .flush_interval_ms
                .is_some_and(|ms| now_ms - st.last_flush_ms >= ms);
        if flush_due {
            st.messages_since_flush = 0;
            st.last_flush_ms = now_ms;
        }
        drop(st);
        if flush_due || rolled {
            self.request_flush();
        }
    }

    fn should_roll(
        &self,
        st: &AppendState,
        cfg: &LogConfig,
        bytes: usize,
        span: i64,
        batch_count: usize,
        now_ms: i64,
    ) -> bool {
        let seg = &st.active;
        let size = seg.size();
        if size == 0 {
            return false;
        }
        let leo = self.log_end.load(Ordering::Acquire);
        let idx = seg.indexes.lock();
        size + bytes as u64 > cfg.segment_bytes_max
            || cfg
                .segment_ms
                .is_some_and(|ms| now_ms - st.roll_base_ms > ms)
            || idx.offset.is_full_after(batch_count)
            || idx.time.is_full_after(batch_count + 1)
            || leo + span - 1 - seg.base_offset > i64::from(i32::MAX)
    }

    /// Seals the active segment and starts a new one at `base`. Under the append lock.
    fn roll(
        &self,
        st: &mut AppendState,
        base: i64,
        cfg: &LogConfig,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let old = Arc::clone(&st.active);
        old.seal()
            .map_err(|e| StorageError::io(format!("seal index of {}", old.display()), e))?;
        let seg = Arc::new(Segment::create(
            &self.ctx,
            &self.dir,
            base,
            cfg.index_bytes_max,
        )?);
        self.dir_dirty.store(true, Ordering::Release);
        {
            let mut v = self.view.write();
            let mut nv = View::clone(&v);
            nv.segments.push(Arc::clone(&seg));
            *v = Arc::new(nv);
        }
        tracing::debug!(dir = %self.dir.display(), base, "rolled segment");
        // Best effort, not synced: without it, recovery replays more batch headers.
        let snapshot = st.producers.encode_snapshot();
        if let Err(e) = producer_state::write_snapshot(&self.dir, base, &snapshot, false) {
            tracing::warn!(dir = %self.dir.display(), base, "cannot write producer snapshot: {e}");
        }
        st.active = seg;
        st.roll_base_ms = now_ms;
        Ok(())
    }

    /// Resolves when every offset up to and including `offset` is on stable storage.
    /// Offsets at or past the log end wait for the current log end.
    pub fn sync_to(&self, offset: Offset) -> SyncWaiter {
        let mut s = self.sync.lock();
        if let Err(e) = self.check_writable() {
            if !matches!(e, StorageError::Closed { .. }) {
                return SyncWaiter::ready(Err(e));
            }
        }
        let leo = self.log_end.load(Ordering::Acquire);
        let offset = offset.0.min(leo - 1);
        if offset < s.durable_end {
            return SyncWaiter::ready(Ok(()));
        }
        let (tx, rx) = oneshot::channel();
        s.waiters.push((offset, tx));
        let enqueue = !s.queued;
        s.queued = true;
        drop(s);
        if enqueue {
            self.ctx.flusher.enqueue(self.me.clone());
        }
        SyncWaiter(WaiterState::Waiting {
            rx,
            dir: self.dir.display().to_string(),
        })
    }

    /// True when no background flush round is queued or running for this log (tests use
    /// it to simulate a crash by dropping the last reference at a quiet moment).
    pub fn is_background_idle(&self) -> bool {
        !self.sync.lock().queued
    }

    /// Every offset below the returned one is on stable storage.
    pub fn durable_offset(&self) -> Offset {
        Offset(self.sync.lock().durable_end)
    }

    /// Queues a background flush round (no waiter).
    fn request_flush(&self) {
        let mut s = self.sync.lock();
        if !s.queued {
            s.queued = true;
            drop(s);
            self.ctx.flusher.enqueue(self.me.clone());
        }
    }

    /// fdatasyncs every segment with unsynced data (newest first, stopping at the first
    /// sealed clean one) and the index files of freshly sealed segments.
    fn sync_segments(&self, view: &View) -> Result<(), StorageError> {
        if self.dir_dirty.swap(false, Ordering::AcqRel) {
            if let Err(e) = checkpoint::sync_dir(&self.dir) {
                self.dir_dirty.store(true, Ordering::Release);
                return Err(StorageError::io_path("fsync", &self.dir, e));
            }
        }
        let last = view.segments.len() - 1;
        for (i, seg) in view.segments.iter().enumerate().rev() {
            let clean = seg.flushed_size.load(Ordering::Acquire) >= seg.size()
                && !seg.index_dirty.load(Ordering::Acquire);
            if clean && i != last {
                break;
            }
            seg.sync_data()
                .map_err(|e| StorageError::io(format!("fsync {}", seg.display()), e))?;
            seg.sync_indexes_if_dirty()
                .map_err(|e| StorageError::io(format!("fsync index of {}", seg.display()), e))?;
            if i != last {
                seg.track_file();
            }
        }
        Ok(())
    }

    /// Highest recovery point that `durable_end` allows: it may not pass a sealed segment
    /// whose data or index files are not yet synced.
    fn recovery_point_candidate(view: &View, durable_end: i64) -> i64 {
        let last = view.segments.len() - 1;
        for seg in &view.segments[..last] {
            if seg.flushed_size.load(Ordering::Acquire) < seg.size()
                || seg.index_dirty.load(Ordering::Acquire)
            {
                return durable_end.min(seg.base_offset);
            }
        }
        durable_end
    }

    /// Writes the recovery-point checkpoint if `candidate` is past the last one written:
    /// first the active segment's index entries below it (fdatasync, so that recovery can
    /// start scanning at the last of them), then the checkpoint file. `durable`: also
    /// fsync the directory (an older checkpoint surviving a crash is safe, only slower).
    fn advance_recovery_point(&self, candidate: i64, durable: bool) -> Result<(), StorageError> {
        let mut st = self.checkpoint_state.lock();
        // Never past what is durable now (a truncation may have lowered it meanwhile).
        let candidate = candidate.min(self.sync.lock().durable_end);
        self.recovery_point.fetch_max(candidate, Ordering::AcqRel);
        if candidate <= st.written {
            return Ok(());
        }
        let view = Arc::clone(&self.view.read());
        let seg = &view.segments[view.segment_for(candidate)];
        seg.persist_indexes_below(candidate)
            .map_err(|e| StorageError::io(format!("write index of {}", seg.display()), e))?;
        checkpoint::write_offset_synced(&self.dir, RECOVERY_POINT_FILE, candidate, durable)
            .map_err(|e| StorageError::io_path("write recovery point in", &self.dir, e))?;
        st.written = candidate;
        st.at = Instant::now();
        st.force = false;
        Ok(())
    }

    /// Persists the recovery point (everything durable so far) if it moved since the last
    /// checkpoint. The flusher already does this at most once per
    /// `RECOVERY_POINT_CHECKPOINT_INTERVAL_MS` after group commits; call it from a timer to
    /// also cover the last interval before appends stop.
    pub fn checkpoint(&self) -> Result<(), StorageError> {
        if self.status.load(Ordering::Acquire) != OPEN {
            return Ok(());
        }
        let view = Arc::clone(&self.view.read());
        let candidate = Self::recovery_point_candidate(&view, self.durable_offset().0);
        self.advance_recovery_point(candidate, false)
    }

    /// The recovery point in memory: every offset below it is on stable storage, and after
    /// a crash recovery scans only past the last checkpointed one.
    pub fn recovery_point(&self) -> Offset {
        Offset(self.recovery_point.load(Ordering::Acquire))
    }

    /// The truncation generation and the log end, read together (a flush syncs up to it).
    fn sync_target(&self) -> (u64, i64) {
        let s = self.sync.lock();
        (s.generation, self.log_end.load(Ordering::Acquire))
    }

    /// One group-commit round (runs on a flusher thread).
    pub(crate) fn flush_round(&self) {
        let (generation, target) = self.sync_target();
        let view = Arc::clone(&self.view.read());
        if let Err(e) = self.sync_segments(&view) {
            self.fail(&e);
            self.sync.lock().queued = false;
            return;
        }
        let candidate = Self::recovery_point_candidate(&view, target);
        let mut s = self.sync.lock();
        if s.generation != generation {
            // A truncation came between: this round synced files that changed since. Run
            // another round for the waiters.
            let again = !s.waiters.is_empty();
            if !again {
                s.queued = false;
            }
            drop(s);
            if again {
                self.ctx.flusher.enqueue(self.me.clone());
            }
            return;
        }
        self.recovery_point.fetch_max(candidate, Ordering::AcqRel);
        s.durable_end = s.durable_end.max(target);
        let durable = s.durable_end;
        let (done, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut s.waiters)
            .into_iter()
            .partition(|(o, _)| *o < durable);
        s.waiters = keep;
        let again = !s.waiters.is_empty();
        if !again {
            s.queued = false;
        }
        drop(s);
        for (_, tx) in done {
            let _ = tx.send(Ok(()));
        }
        // Checkpoint after the waiters are released: when a segment was sealed since the
        // last one, or at most once per interval.
        let due = {
            let st = self.checkpoint_state.lock();
            candidate > st.written
                && (st.force
                    || st.written < view.active().base_offset
                    || st.at.elapsed().as_millis()
                        >= u128::from(RECOVERY_POINT_CHECKPOINT_INTERVAL_MS))
        };
        if due && self.status.load(Ordering::Acquire) == OPEN {
            if let Err(e) = self.advance_recovery_point(candidate, false) {
                tracing::warn!(dir = %self.dir.display(), "cannot write recovery point: {e}");
            }
        }
        if again {
            self.ctx.flusher.enqueue(self.me.clone());
        }
    }

    /// Reads whole batches from the one holding `start`, stopping before the first batch that
    /// reaches `upper` (exclusive), with at most `max_bytes` (KIP-74: the first batch whole
    /// if `min_one_batch`).
    pub fn read(
        &self,
        start: Offset,
        max_bytes: usize,
        upper: Offset,
        min_one_batch: bool,
    ) -> Result<ReadResult, StorageError> {
        let leo = self.log_end.load(Ordering::Acquire);
        let view = Arc::clone(&self.view.read());
        let start = start.0;
        if start < view.log_start || start > leo {
            return Err(StorageError::OffsetOutOfRange {
                requested: start,
                log_start: view.log_start,
                log_end: leo,
            });
        }
        let upper = upper.0.min(leo);
        let mut out = ReadResult::default();
        if start >= upper {
            return Ok(out);
        }
        let first = view.segment_for(start);
        for (n, seg) in view.segments[first..].iter().enumerate() {
            let size = seg.size();
            let from = if n == 0 { seg.lookup(start) } else { 0 };
            let file = self.segment_file(seg, start, leo)?;
            let mut scanner = Scanner::for_headers(&file, from, size);
            let mut slice: Option<(u64, usize)> = None;
            let mut done = false;
            loop {
                let (h, pos) = match scanner.next_header() {
                    Ok(Some(x)) => x,
                    Ok(None) => break,
                    Err(e) => return Err(scan_error(seg, scanner_pos(&slice, from), e)),
                };
                if h.last_offset() < start {
                    continue;
                }
                if h.last_offset() >= upper {
                    done = true;
                    break;
                }
                let len = h.total_bytes();
                if out.bytes + len > max_bytes && !(out.bytes == 0 && min_one_batch) {
                    done = true;
                    break;
                }
                out.bytes += len;
                slice = Some(match slice {
                    Some((p, l)) => (p, l + len),
                    None => (pos, len),
                });
                if out.bytes >= max_bytes {
                    done = true;
                    break;
                }
            }
            if let Some((position, len)) = slice {
                out.slices.push(FileSlice {
                    file: Arc::clone(&file),
                    position,
                    len,
                });
            }
            if done {
                break;
            }
        }
        Ok(out)
    }

    /// A segment's open file for reading; a segment deleted meanwhile (retention) reads as
    /// out of range.
    fn segment_file(
        &self,
        seg: &Arc<Segment>,
        requested: i64,
        leo: i64,
    ) -> Result<Arc<std::fs::File>, StorageError> {
        seg.file().map_err(|e| {
            if seg.deleted.load(Ordering::Acquire) {
                StorageError::OffsetOutOfRange {
                    requested,
                    log_start: self.view.read().log_start,
                    log_end: leo,
                }
            } else {
                StorageError::io(format!("open {}", seg.display()), e)
            }
        })
    }

    /// The first batch whose max timestamp is `>= timestamp_ms`: (its base offset, or the
    /// log start if later; its timestamp: the first record's if that qualifies, else the
    /// batch's max).
    pub fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(Offset, i64)>, StorageError> {
        let leo = self.log_end.load(Ordering::Acquire);
        let view = Arc::clone(&self.view.read());
        for seg in &view.segments {
            if seg.max_timestamp().0 < timestamp_ms {
                continue;
            }
            let from = seg.time_lookup(timestamp_ms);
            let file = self.segment_file(seg, view.log_start, leo)?;
            let mut scanner = Scanner::for_headers(&file, from, seg.size());
            loop {
                let h = match scanner.next_header() {
                    Ok(Some((h, _))) => h,
                    Ok(None) => break,
                    Err(e) => return Err(scan_error(seg, from, e)),
                };
                if h.base_offset >= leo {
                    return Ok(None);
                }
                if h.last_offset() < view.log_start || h.max_timestamp < timestamp_ms {
                    continue;
                }
                let ts = if h.timestamp_type() == TimestampType::CreateTime
                    && h.base_timestamp >= timestamp_ms
                {
                    h.base_timestamp
                } else {
                    h.max_timestamp
                };
                return Ok(Some((Offset(h.base_offset.max(view.log_start)), ts)));
            }
        }
        Ok(None)
    }

    /// The largest timestamp in the log and the offset of (the batch holding) it.
    pub fn max_timestamp(&self) -> Option<(i64, Offset)> {
        let view = Arc::clone(&self.view.read());
        let mut best: Option<(i64, i64)> = None;
        for seg in &view.segments {
            let (ts, off) = seg.max_timestamp();
            if ts >= 0 && best.is_none_or(|(b, _)| ts > b) {
                best = Some((ts, off));
            }
        }
        best.map(|(ts, off)| (ts, Offset(off.max(view.log_start))))
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

    /// DeleteRecords: raises the log start offset to `offset` (durably) and deletes the
    /// segments wholly below it. Returns the new log start offset.
    pub fn delete_records_before(&self, offset: Offset) -> Result<Offset, StorageError> {
        let _admin = self.admin.lock();
        self.check_writable()?;
        let leo = self.log_end.load(Ordering::Acquire);
        let current = self.view.read().log_start;
        if offset.0 > leo || offset.0 < 0 {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset.0,
                log_start: current,
                log_end: leo,
            });
        }
        if offset.0 <= current {
            return Ok(Offset(current));
        }
        checkpoint::write_offset(&self.dir, LOG_START_FILE, offset.0)
            .map_err(|e| StorageError::io_path("write log start checkpoint in", &self.dir, e))?;
        let removed = self.remove_prefix(
            |view| {
                view.segments
                    .windows(2)
                    .take_while(|w| w[1].base_offset <= offset.0)
                    .count()
            },
            offset.0,
        );
        self.delete_segment_files(&removed);
        Ok(Offset(offset.0))
    }

    /// Removes the first `count(view)` segments (never the last) and raises the log start
    /// to at least `min_start`; returns the removed segments.
    fn remove_prefix(
        &self,
        count: impl FnOnce(&View) -> usize,
        min_start: i64,
    ) -> Vec<Arc<Segment>> {
        let mut v = self.view.write();
        let n = count(&v).min(v.segments.len() - 1);
        let mut nv = View::clone(&v);
        let removed: Vec<Arc<Segment>> = nv.segments.drain(..n).collect();
        for seg in &removed {
            seg.deleted.store(true, Ordering::Release);
        }
        nv.log_start = nv.log_start.max(min_start).max(nv.segments[0].base_offset);
        let new_start = nv.log_start;
        *v = Arc::new(nv);
        drop(v);
        truncate_epochs_from_start(&mut self.epochs.lock(), new_start);
        removed
    }

    fn delete_segment_files(&self, removed: &[Arc<Segment>]) {
        for seg in removed {
            if let Err(e) = seg.delete_files() {
                tracing::warn!(dir = %self.dir.display(), "cannot delete segment {}: {e}", seg.display());
            }
        }
    }

    /// Deletes whole segments past `retention.ms` (by their largest timestamp) or beyond
    /// `retention.bytes`, and segments below the log start; never the active segment.
    /// Also runs time-based flushing and checkpoints the recovery point. Call from a timer.
    pub fn apply_retention(&self, now_ms: i64) -> Result<usize, StorageError> {
        let _admin = self.admin.lock();
        let cfg = self.config.read().clone();
        self.append.lock().producers.maybe_expire(now_ms);
        if let Some(ms) = cfg.flush_interval_ms {
            let due = {
                let mut st = self.append.lock();
                let due = now_ms - st.last_flush_ms >= ms;
                if due {
                    st.last_flush_ms = now_ms;
                }
                due
            };
            if due && self.durable_offset().0 < self.log_end.load(Ordering::Acquire) {
                self.request_flush();
            }
        }
        if self.status.load(Ordering::Acquire) == OPEN {
            let view = Arc::clone(&self.view.read());
            let candidate = Self::recovery_point_candidate(&view, self.durable_offset().0);
            self.advance_recovery_point(candidate, false)?;
        }

        let view = Arc::clone(&self.view.read());
        let segs = &view.segments;
        let mut total: u64 = segs.iter().map(|s| s.size()).sum();
        let mut count = 0;
        for (i, seg) in segs.iter().enumerate().take(segs.len() - 1) {
            let below_start = segs[i + 1].base_offset <= view.log_start;
            let newest_ms = match seg.max_timestamp().0 {
                ts if ts >= 0 => Some(ts),
                _ => seg.modified_ms(),
            };
            let expired = match (cfg.retention_ms, newest_ms) {
                (Some(r), Some(ts)) if r >= 0 => now_ms - ts > r,
                _ => false,
            };
            let too_big = cfg
                .retention_bytes
                .is_some_and(|r| r >= 0 && total - seg.size() >= r as u64);
            if !(below_start || expired || too_big) {
                break;
            }
            total -= seg.size();
            count = i + 1;
        }
        if count == 0 {
            return Ok(0);
        }
        let expected: Vec<*const Segment> = segs[..count].iter().map(Arc::as_ptr).collect();
        let removed = self.remove_prefix(
            |v| {
                v.segments
                    .iter()
                    .zip(&expected)
                    .take_while(|(s, e)| Arc::as_ptr(s) == **e)
                    .count()
            },
            i64::MIN,
        );
        let n = removed.len();
        if n > 0 {
            tracing::info!(dir = %self.dir.display(), segments = n, "retention deleted segments");
        }
        self.delete_segment_files(&removed);
        Ok(n)
    }

    /// Changes the settings; size/roll settings apply to the next append, index sizes to
    /// the next segment.
    pub fn set_config(&self, config: LogConfig) {
        *self.config.write() = config.normalized();
    }

    /// Synchronously fsyncs everything written so far and checkpoints the recovery point.
    pub fn flush(&self) -> Result<(), StorageError> {
        let (generation, target) = self.sync_target();
        let view = Arc::clone(&self.view.read());
        if let Err(e) = self.sync_segments(&view) {
            self.fail(&e);
            return Err(e);
        }
        let done = {
            let mut s = self.sync.lock();
            if s.generation != generation {
                // Truncated meanwhile (never under `close`, which holds the admin lock).
                return Ok(());
            }
            s.durable_end = s.durable_end.max(target);
            let durable = s.durable_end;
            let (done, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut s.waiters)
                .into_iter()
                .partition(|(o, _)| *o < durable);
            s.waiters = keep;
            done
        };
        for (_, tx) in done {
            let _ = tx.send(Ok(()));
        }
        self.advance_recovery_point(Self::recovery_point_candidate(&view, target), true)
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
            st.active.indexes.lock().write_exact().map_err(|e| {
                StorageError::io(format!("write index of {}", st.active.display()), e)
            })?;
            st.active.index_dirty.store(true, Ordering::Release);
            self.flush()?;
            let leo = self.log_end.load(Ordering::Acquire);
            producer_state::write_snapshot(&self.dir, leo, &st.producers.encode_snapshot(), true)
                .map_err(|e| StorageError::io_path("write producer snapshot in", &self.dir, e))?;
            let log_start = self.view.read().log_start;
            checkpoint::write_offset(&self.dir, LOG_START_FILE, log_start).map_err(|e| {
                StorageError::io_path("write log start checkpoint in", &self.dir, e)
            })?;
            let epochs = self.epochs.lock().clone();
            checkpoint::write_epochs(&self.dir, &epochs)
                .map_err(|e| StorageError::io_path("write leader epochs in", &self.dir, e))?;
            self.advance_recovery_point(self.log_end.load(Ordering::Acquire), true)?;
            checkpoint::write_atomic(&self.dir, CLEAN_SHUTDOWN_FILE, b"")
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

    /// Records that `epoch` starts at `start_offset` (persisted in `leader-epoch-checkpoint`).
    /// Entries for later or equal start offsets/epochs are replaced.
    pub fn record_leader_epoch(
        &self,
        epoch: LeaderEpoch,
        start_offset: Offset,
    ) -> Result<(), StorageError> {
        let _admin = self.admin.lock();
        let mut epochs = self.epochs.lock();
        if let Some(&(last, last_start)) = epochs.last() {
            if epoch.0 < last {
                return Err(StorageError::InvalidArgument(format!(
                    "leader epoch {} is below {last}",
                    epoch.0
                )));
            }
            if epoch.0 == last && start_offset.0 >= last_start {
                return Ok(());
            }
        }
        let mut next = epochs.clone();
        next.retain(|&(e, s)| e < epoch.0 && s < start_offset.0);
        next.push((epoch.0, start_offset.0));
        checkpoint::write_epochs(&self.dir, &next)
            .map_err(|e| StorageError::io_path("write leader epochs in", &self.dir, e))?;
        *epochs = next;
        Ok(())
    }

    /// The leader epoch history: (epoch, start offset), oldest first.
    pub fn leader_epochs(&self) -> Vec<(LeaderEpoch, Offset)> {
        self.epochs
            .lock()
            .iter()
            .map(|&(e, o)| (LeaderEpoch(e), Offset(o)))
            .collect()
    }

    /// OffsetForLeaderEpoch (KIP-101, KIP-279; Kafka's `LeaderEpochFileCache.endOffsetFor`):
    /// - the latest epoch: (it, the log end);
    /// - an epoch below the latest: (the largest known epoch `<=` it, the start offset of
    ///   the first epoch above it);
    /// - an epoch below every known one: (the requested epoch, the start offset of the
    ///   first known epoch) — the data of any epoch in between is gone, and the follower
    ///   truncates to where the leader's known history starts;
    /// - UNDEFINED (`None`, (-1, -1) on the wire): an undefined (negative) epoch, an epoch
    ///   above the latest, or no epoch recorded at all.
    pub fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        if epoch.0 < 0 {
            return None;
        }
        let epochs = self.epochs.lock();
        let &(latest, _) = epochs.last()?;
        if latest == epoch.0 {
            return Some((epoch, Offset(self.log_end.load(Ordering::Acquire))));
        }
        let above = epochs.partition_point(|&(e, _)| e <= epoch.0);
        let &(_, end) = epochs.get(above)?;
        let found = above.checked_sub(1).map_or(epoch.0, |i| epochs[i].0);
        Some((LeaderEpoch(found), Offset(end)))
    }
}

fn scanner_pos(slice: &Option<(u64, usize)>, from: u64) -> u64 {
    slice.map_or(from, |(p, l)| p + l as u64)
}

/// Drops epochs that end at or before `log_start`; the first remaining one starts there.
fn truncate_epochs_from_start(epochs: &mut Vec<(i32, i64)>, log_start: i64) {
    let keep_from = epochs
        .partition_point(|&(_, s)| s <= log_start)
        .saturating_sub(1);
    epochs.drain(..keep_from);
    if let Some(first) = epochs.first_mut() {
        if first.1 < log_start {
            first.1 = log_start;
        }
    }
}

/// Completes an interrupted `truncate_to` at open: removes the segments after the cut one
/// (newest first) and cuts its file.
fn complete_truncation(
    dir: &Path,
    t: Truncation,
    bases: &mut Vec<i64>,
    report: &mut RecoveryReport,
) -> Result<(), StorageError> {
    warn_problem(
        report,
        dir,
        format!(
            "completing an interrupted truncation to offset {} (segment {} cut at {})",
            t.log_end, t.base, t.position
        ),
    );
    while let Some(&last) = bases.last() {
        if last <= t.base {
            break;
        }
        for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let p = dir.join(segment::file_name(last, suffix));
            if let Err(e) = fs::remove_file(&p) {
                if e.kind() != io::ErrorKind::NotFound {
                    return Err(StorageError::io_path("remove", &p, e));
                }
            }
        }
        report.segments_deleted += 1;
        bases.pop();
    }
    if bases.last() == Some(&t.base) {
        segment::truncate_log_file(dir, t.base, t.position).map_err(|e| {
            StorageError::io_path(
                "truncate",
                &dir.join(segment::file_name(t.base, LOG_SUFFIX)),
                e,
            )
        })?;
    }
    Ok(())
}

/// Loads the newest usable producer snapshot at or below `log_end` (deleting later and
/// damaged ones) and replays the batch headers after it.
fn rebuild_producer_state(
    dir: &Path,
    segments: &[Arc<Segment>],
    log_end: i64,
    now_ms: i64,
    report: &mut RecoveryReport,
) -> Result<ProducerStateMap, StorageError> {
    let mut state = ProducerStateMap::default();
    let mut from = segments.first().map_or(log_end, |s| s.base_offset);
    let snapshots =
        producer_state::list_snapshots(dir).map_err(|e| StorageError::io_path("list", dir, e))?;
    for (offset, path) in snapshots.into_iter().rev() {
        let loaded = if offset > log_end {
            Err(format!("it is past the log end {log_end}"))
        } else {
            fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| state.load_snapshot(&bytes))
        };
        match loaded {
            Ok(()) => {
                report.producer_snapshot = Some(Offset(offset));
                from = from.max(offset);
                break;
            }
            Err(e) => {
                warn_problem(
                    report,
                    dir,
                    format!("removing producer snapshot {}: {e}", path.display()),
                );
                let _ = fs::remove_file(&path);
            }
        }
    }
    if from < log_end {
        let first = segments
            .partition_point(|s| s.base_offset <= from)
            .saturating_sub(1);
        for seg in &segments[first..] {
            let file = seg
                .file()
                .map_err(|e| StorageError::io(format!("open {}", seg.display()), e))?;
            let start = if seg.base_offset <= from {
                seg.lookup(from)
            } else {
                0
            };
            let mut scanner = Scanner::new(&file, start, seg.size());
            loop {
                let h = match scanner.next_header() {
                    Ok(Some((h, _))) => h,
                    Ok(None) => break,
                    Err(e) => return Err(scan_error(seg, start, e)),
                };
                if h.base_offset >= log_end {
                    break;
                }
                if h.last_offset() < from {
                    continue;
                }
                report.producer_batches_replayed += 1;
                state.replay(&h);
            }
        }
    }
    state.remove_expired(now_ms);
    Ok(state)
}

/// A failed header scan of `seg` as a storage error: I/O, or corrupt framing at `position`.
fn scan_error(seg: &Segment, position: u64, e: ScanError) -> StorageError {
    match e {
        ScanError::Io(e) => StorageError::io(format!("read {}", seg.display()), e),
        ScanError::Bad(detail) => StorageError::Corrupt {
            path: seg.display(),
            position,
            detail,
        },
    }
}
