//! `truncate_to`: removing the tail of the log (a follower settling a divergence).

#[allow(clippy::wildcard_imports)]
use super::*;

impl Log {
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
    pub(super) fn truncate_locked(
        &self,
        st: &mut AppendState,
        view: &View,
        i: usize,
        cut: Truncation,
    ) -> Result<(), StorageError> {
        let dir = &self.dir;
        let new_leo = cut.log_end;
        // Paired with the checks of `truncate_to`: never below the log start, always
        // below the log end.
        assert!(
            view.log_start <= new_leo && new_leo < self.log_end.load(Ordering::Acquire),
            "truncation to {new_leo} outside [{}, log end)",
            view.log_start
        );
        checkpoint::write_truncation(&*self.ctx.fs, dir, cut)
            .map_err(|e| StorageError::io_path("write truncation intent in", dir, e))?;
        // From here a crash completes the truncation at the next open. Lower the recovery
        // point first, so that recovery never trusts data written after the truncation.
        let failed_waiters = {
            let mut cs = self.checkpoint_state.lock();
            if cs.written > new_leo {
                checkpoint::write_offset(&*self.ctx.fs, dir, RECOVERY_POINT_FILE, new_leo)
                    .map_err(|e| StorageError::io_path("write recovery point in", dir, e))?;
                cs.written = new_leo;
            }
            let mut s = self.sync.lock();
            s.generation += 1;
            s.durable_end = s.durable_end.min(new_leo);
            // Under the sync lock, with the generation bump: a flush round raises the
            // recovery point under this lock only if no truncation came since it started,
            // so it cannot raise it again past the new end after this.
            self.recovery_point.fetch_min(new_leo, Ordering::AcqRel);
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
        segment::truncate_log_file(&*self.ctx.fs, dir, cut.base, cut.position)
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
            .write_exact(&*self.ctx.fs)
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
                assert_epochs_ordered(&next);
                checkpoint::write_epochs(&*self.ctx.fs, dir, &next)
                    .map_err(|e| StorageError::io_path("write leader epochs in", dir, e))?;
                *epochs = next;
            }
        }
        // Producer state: snapshots past the new end go, then snapshot + replay.
        let snapshots = producer_state::list_snapshots(dir)
            .map_err(|e| StorageError::io_path("list", dir, e))?;
        for (at, path) in snapshots {
            if at > new_leo {
                self.ctx
                    .fs
                    .remove_file(&path)
                    .map_err(|e| StorageError::io_path("remove", &path, e))?;
            }
        }
        let segments = Arc::clone(&self.view.read()).segments.clone();
        let mut report = RecoveryReport::default();
        // No expiry here (`i64::MIN`): the next append's or retention's `now` does it.
        // The aborted transactions in memory are exact up to the replay's start.
        let mut aborted = self.aborted_copy();
        st.producers = rebuild_producer_state(
            &*self.ctx.fs,
            dir,
            &segments,
            new_leo,
            new_leo,
            i64::MIN,
            &mut report,
            &mut aborted,
        )?;
        assert!(
            aborted
                .entries()
                .last()
                .is_none_or(|e| e.last_offset.0 < new_leo),
            "an aborted transaction past the truncation point {new_leo}"
        );
        self.set_aborted(aborted);
        self.persist_txn_index(cut.base, i64::MAX)?;

        checkpoint::sync_dir(&*self.ctx.fs, dir)
            .map_err(|e| StorageError::io_path("fsync", dir, e))?;
        let intent = dir.join(TRUNCATION_FILE);
        self.ctx
            .fs
            .remove_file(&intent)
            .map_err(|e| StorageError::io_path("remove", &intent, e))?;
        checkpoint::sync_dir(&*self.ctx.fs, dir)
            .map_err(|e| StorageError::io_path("fsync", dir, e))?;
        assert_eq!(self.log_end.load(Ordering::Acquire), new_leo);
        assert!(self.durable_offset().0 <= new_leo && self.recovery_point().0 <= new_leo);
        tracing::info!(dir = %dir.display(), log_end = new_leo, "truncated log");
        Ok(())
    }
}
