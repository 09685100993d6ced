//! Durability: group commit (`sync_to`, flush rounds on the `Storage`'s threads), the
//! durable offset and the recovery point.

#[allow(clippy::wildcard_imports)]
use super::*;

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
        self.advance_recovery_point(candidate, false)
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
            self.fail(&e);
            self.sync.lock().queued = false;
            return;
        }
        self.ctx
            .stats
            .fsync_done(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        let candidate = Self::recovery_point_candidate(&view, target);
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
