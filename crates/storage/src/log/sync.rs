//! Durability: group commit (`sync_to`, flush rounds on the `Storage`'s threads), the
//! durable offset and the recovery point.

#[allow(clippy::wildcard_imports)]
use super::*;

use std::fs::File;

/// A log's part of a syncfs round, between `prepare_batched` and `finish_round`.
struct Batched {
    generation: u64,
    target: i64,
    view: Arc<View>,
    active: Arc<Segment>,
    /// The active segment's size when the round started: durable once the syncfs returns.
    active_size: u64,
    path: PathBuf,
    file: Arc<File>,
    /// (parent_dirty, dir_dirty) taken by the round, given back if its syncfs fails.
    dirs: (bool, bool),
}

impl Log {
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
    pub(super) fn request_flush(&self) {
        let mut s = self.sync.lock();
        if !s.queued {
            s.queued = true;
            drop(s);
            self.ctx.flusher.enqueue(self.me.clone());
        }
    }

    /// fdatasyncs every segment with unsynced data and the index files of freshly sealed
    /// segments, OLDEST first (from the one after the newest sealed clean segment): a
    /// crash in the middle of a round then leaves a durable prefix of the log, never a
    /// newer segment durable past an older one's lost tail.
    pub(super) fn sync_segments(&self, view: &View) -> Result<(), StorageError> {
        self.sync_unsynced_files()?;
        if self.parent_dirty.swap(false, Ordering::AcqRel) {
            if let Some(parent) = self.dir.parent() {
                if let Err(e) = checkpoint::sync_dir(&*self.ctx.fs, parent) {
                    self.parent_dirty.store(true, Ordering::Release);
                    return Err(StorageError::io_path("fsync", parent, e));
                }
            }
        }
        if self.dir_dirty.swap(false, Ordering::AcqRel) {
            if let Err(e) = checkpoint::sync_dir(&*self.ctx.fs, &self.dir) {
                self.dir_dirty.store(true, Ordering::Release);
                return Err(StorageError::io_path("fsync", &self.dir, e));
            }
        }
        let last = view.segments.len() - 1;
        let first = view.segments[..last]
            .iter()
            .rposition(|seg| {
                seg.flushed_size.load(Ordering::Acquire) >= seg.size()
                    && !seg.index_dirty.load(Ordering::Acquire)
            })
            .map_or(0, |clean| clean + 1);
        for (i, seg) in view.segments.iter().enumerate().skip(first) {
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

    /// fsyncs the files `write_unsynced_file` wrote since the last round (first in every
    /// round: a file that describes the log is durable before data the round covers); the
    /// ones not synced are given back to the next round on an error.
    fn sync_unsynced_files(&self) -> Result<(), StorageError> {
        let files = std::mem::take(&mut *self.unsynced_files.lock());
        for (i, path) in files.iter().enumerate() {
            let synced = self
                .ctx
                .fs
                .open(path, fs::OpenOptions::new().read(true))
                .and_then(|f| self.ctx.fs.sync_all(path, &f));
            if let Err(e) = synced {
                self.unsynced_files
                    .lock()
                    .extend(files[i..].iter().cloned());
                return Err(StorageError::io_path("fsync", path, e));
            }
        }
        Ok(())
    }

    /// Highest recovery point that `durable_end` allows: it may not pass a sealed segment
    /// whose data or index files are not yet synced.
    pub(super) fn recovery_point_candidate(view: &View, durable_end: i64) -> i64 {
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
    pub(super) fn advance_recovery_point(
        &self,
        candidate: i64,
        durable: bool,
    ) -> Result<(), StorageError> {
        let mut st = self.checkpoint_state.lock();
        // Never past what is durable now (a truncation may have lowered it meanwhile; it
        // takes this lock, so the log end cannot drop below the candidate until we are done).
        let candidate = candidate.min(self.sync.lock().durable_end);
        assert!(
            candidate <= self.log_end.load(Ordering::Acquire),
            "recovery point {candidate} past the log end"
        );
        self.recovery_point.fetch_max(candidate, Ordering::AcqRel);
        if candidate <= st.written {
            return Ok(());
        }
        let view = Arc::clone(&self.view.read());
        let seg = &view.segments[view.segment_for(candidate)];
        seg.persist_indexes_below(candidate)
            .map_err(|e| StorageError::io(format!("write index of {}", seg.display()), e))?;
        checkpoint::write_offset_synced(
            &*self.ctx.fs,
            &self.dir,
            RECOVERY_POINT_FILE,
            candidate,
            durable,
        )
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
        // A failed checkpoint leaves the log writable (a later one may succeed), but the
        // directory failed a write: the storage's owner is told (Kafka takes the log dir
        // offline on a checkpoint's IOException too).
        self.advance_recovery_point(candidate, false)
            .inspect_err(|e| self.ctx.failed(&self.dir, &e.to_string()))
    }

    /// The recovery point in memory: every offset below it is on stable storage, and after
    /// a crash recovery scans only past the last checkpointed one.
    pub fn recovery_point(&self) -> Offset {
        Offset(self.recovery_point.load(Ordering::Acquire))
    }

    /// The truncation generation and the log end, read together (a flush syncs up to it).
    pub(super) fn sync_target(&self) -> (u64, i64) {
        let s = self.sync.lock();
        (s.generation, self.log_end.load(Ordering::Acquire))
    }

    /// One group-commit round (runs on a flusher thread).
    pub(crate) fn flush_round(&self) {
        let (generation, target) = self.sync_target();
        let view = Arc::clone(&self.view.read());
        let started = Instant::now();
        if let Err(e) = self.sync_segments(&view) {
            self.fail_round(&e);
            return;
        }
        self.ctx
            .stats
            .fsync_done(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        self.finish_round(generation, target, &view);
    }

    fn fail_round(&self, e: &StorageError) {
        self.fail(e);
        self.sync.lock().queued = false;
    }

    /// Group commit across partitions (a flush thread's batch of queued logs): logs that
    /// share a filesystem with at least `syncfs_min_logs - 1` others in the batch are made
    /// durable by one syncfs(2) instead of an fdatasync each; the rest run `flush_round`.
    /// Every waiter is released only after the call that covered its data returned
    /// success; a failed syncfs falls back to `flush_round` for each of its logs (whose
    /// fdatasync reports the file's own write-back errors) and is never used again on
    /// that filesystem (`FsRoot::failed`).
    pub(crate) fn flush_batch(logs: Vec<Arc<Log>>) {
        let min = logs.first().map_or(0, |l| l.ctx.syncfs_min_logs);
        let mut groups: Vec<(Arc<FsRoot>, Vec<Arc<Log>>)> = Vec::new();
        for log in logs {
            let root = match &log.fs_root {
                Some(root) if min > 0 && !root.failed.load(Ordering::Acquire) => root,
                _ => {
                    log.flush_round();
                    continue;
                }
            };
            match groups.iter_mut().find(|(r, _)| Arc::ptr_eq(r, root)) {
                Some((_, members)) => members.push(log),
                None => groups.push((Arc::clone(root), vec![log])),
            }
        }
        for (root, members) in groups {
            if members.len() < min {
                for log in members {
                    log.flush_round();
                }
            } else {
                Self::flush_with_syncfs(&root, members);
            }
        }
    }

    fn flush_with_syncfs(root: &FsRoot, logs: Vec<Arc<Log>>) {
        let started = Instant::now();
        let mut ready = Vec::with_capacity(logs.len());
        for log in logs {
            match log.prepare_batched() {
                Ok(p) => ready.push((log, p)),
                Err(e) => log.fail_round(&e),
            }
        }
        let Some((first, _)) = ready.first() else {
            return;
        };
        let ctx = Arc::clone(&first.ctx);
        let synced = {
            let files: Vec<(&Path, &File)> = ready
                .iter()
                .map(|(_, p)| (p.path.as_path(), &*p.file))
                .collect();
            let _one_at_a_time = root.lock.lock();
            // Checked under the lock after the call: a failure any earlier call reported
            // may have been this batch's write-back.
            let res = ctx.fs.sync_filesystem(&root.file, &files);
            ctx.stats.syncfs_call();
            match res {
                Ok(()) if !root.failed.load(Ordering::Acquire) => true,
                Ok(()) => false,
                Err(e) => {
                    root.failed.store(true, Ordering::Release);
                    tracing::warn!(
                        "syncfs failed ({e}): group commit falls back to an fdatasync per \
                         partition on this filesystem"
                    );
                    false
                }
            }
        };
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        for (log, p) in ready {
            if synced {
                // Paired with the waiters released in `finish_round`: the active
                // segment's data up to the size read before the call is durable.
                p.active.mark_synced(p.active_size);
                ctx.stats.fsync_done(micros);
                log.finish_round(p.generation, p.target, &p.view);
            } else {
                if p.dirs.0 {
                    log.parent_dirty.store(true, Ordering::Release);
                }
                if p.dirs.1 {
                    log.dir_dirty.store(true, Ordering::Release);
                }
                log.flush_round();
            }
        }
    }

    /// First half of a syncfs round for this log: the sealed segments with unsynced data
    /// or index files fdatasynced one by one, oldest first, as `sync_segments` does (rare:
    /// only after a roll), so that the syncfs that follows (covering the active segment
    /// and the directories) never makes newer data durable before an older segment's.
    fn prepare_batched(&self) -> Result<Batched, StorageError> {
        let (generation, target) = self.sync_target();
        self.sync_unsynced_files()?;
        let view = Arc::clone(&self.view.read());
        let last = view.segments.len() - 1;
        let first = view.segments[..last]
            .iter()
            .rposition(|seg| {
                seg.flushed_size.load(Ordering::Acquire) >= seg.size()
                    && !seg.index_dirty.load(Ordering::Acquire)
            })
            .map_or(0, |clean| clean + 1);
        for (i, seg) in view.segments.iter().enumerate().skip(first) {
            if i != last {
                seg.sync_data()
                    .map_err(|e| StorageError::io(format!("fsync {}", seg.display()), e))?;
            }
            seg.sync_indexes_if_dirty()
                .map_err(|e| StorageError::io(format!("fsync index of {}", seg.display()), e))?;
            if i != last {
                seg.track_file();
            }
        }
        let active = Arc::clone(view.active());
        // Read after `target` (the log end is published after its bytes are written):
        // the syncfs covers at least up to it.
        let active_size = active.size();
        let (path, file) = active
            .file_for_sync()
            .map_err(|e| StorageError::io(format!("fsync {}", active.display()), e))?;
        let path = path.to_path_buf();
        let dirs = (
            self.parent_dirty.swap(false, Ordering::AcqRel),
            self.dir_dirty.swap(false, Ordering::AcqRel),
        );
        Ok(Batched {
            generation,
            target,
            view,
            active,
            active_size,
            path,
            file,
            dirs,
        })
    }

    /// Second half of a group-commit round, once everything up to `target` is durable:
    /// the durable offset and the recovery point move, covered waiters are released, the
    /// checkpoint is written when due.
    fn finish_round(&self, generation: u64, target: i64, view: &Arc<View>) {
        let candidate = Self::recovery_point_candidate(view, target);
        let mut s = self.sync.lock();
        if s.generation != generation {
            // A truncation came between: this round synced files that changed since. Run
            // another round (it stays queued: a roll meanwhile may have asked for one and
            // found it queued).
            drop(s);
            self.ctx.flusher.enqueue(self.me.clone());
            return;
        }
        self.recovery_point.fetch_max(candidate, Ordering::AcqRel);
        s.durable_end = s.durable_end.max(target);
        // Paired with `truncate_to`, which lowers both under this lock (bumping the
        // generation checked above): what is durable never passes the log end.
        assert!(
            s.durable_end <= self.log_end.load(Ordering::Acquire),
            "durable offset {} past the log end",
            s.durable_end
        );
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
        if !done.is_empty() {
            self.ctx.stats.group_commit(done.len());
        }
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
            assert!(
                s.durable_end <= self.log_end.load(Ordering::Acquire),
                "durable offset {} past the log end",
                s.durable_end
            );
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
}
