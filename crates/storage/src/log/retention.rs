//! Removing the head of the log: DeleteRecords and retention.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Log {
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
        checkpoint::write_offset(&*self.ctx.fs, &self.dir, LOG_START_FILE, offset.0)
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
    pub(super) fn remove_prefix(
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
        assert!(
            nv.log_start <= self.log_end.load(Ordering::Acquire),
            "log start {} past the log end",
            nv.log_start
        );
        let new_start = nv.log_start;
        let first_base = nv.segments[0].base_offset;
        *v = Arc::new(nv);
        drop(v);
        self.drop_aborted_before(first_base);
        truncate_epochs_from_start(&mut self.epochs.lock(), new_start);
        removed
    }

    pub(super) fn delete_segment_files(&self, removed: &[Arc<Segment>]) {
        for seg in removed {
            if let Err(e) = seg.delete_files() {
                tracing::warn!(dir = %self.dir.display(), "cannot delete segment {}: {e}", seg.display());
            }
        }
    }

    /// Deletes whole segments past `retention.ms` (by their largest timestamp) or beyond
    /// `retention.bytes` (when `cleanup.policy` holds `delete`), and segments below the
    /// log start; never the active segment.
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
            // `cleanup.policy=compact` alone: only the cleaner removes data.
            let expired = cfg.delete
                && match (cfg.retention_ms, newest_ms) {
                    (Some(r), Some(ts)) if r >= 0 => now_ms - ts > r,
                    _ => false,
                };
            let too_big = cfg.delete
                && cfg
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
}
