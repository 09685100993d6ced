//! The leader epoch cache (`leader-epoch-checkpoint`) and OffsetForLeaderEpoch.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Log {
    /// Records epochs starting at the given offsets (each above the latest recorded one)
    /// and persists the cache. Under the append lock.
    pub(super) fn assign_epochs(&self, new: &[(i32, i64)]) -> Result<(), StorageError> {
        if new.is_empty() {
            return Ok(());
        }
        let mut epochs = self.epochs.lock();
        let mut next = epochs.clone();
        for &(epoch, start) in new {
            if let Some(&(e, s)) = next.last() {
                if epoch == e {
                    continue;
                }
                // The callers refuse older epochs; the log end never goes below a start
                // that is still recorded.
                assert!(
                    epoch > e && start >= s,
                    "epoch {epoch}@{start} after {e}@{s}"
                );
            }
            // An epoch recorded at the same start offset holds no data (its data was lost
            // in a crash): the new one replaces it, as in Kafka's cache.
            while next.last().is_some_and(|&(_, s)| s >= start) {
                next.pop();
            }
            next.push((epoch, start));
        }
        if next == *epochs {
            return Ok(());
        }
        if let Err(e) = checkpoint::write_epochs(&*self.ctx.fs, &self.dir, &next) {
            let err = StorageError::io_path("write leader epochs in", &self.dir, e);
            self.fail(&err);
            return Err(err);
        }
        assert_epochs_ordered(&next);
        *epochs = next;
        Ok(())
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
        checkpoint::write_epochs(&*self.ctx.fs, &self.dir, &next)
            .map_err(|e| StorageError::io_path("write leader epochs in", &self.dir, e))?;
        assert_epochs_ordered(&next);
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
        let &(next_epoch, end) = epochs.get(above)?;
        let found = above.checked_sub(1).map_or(epoch.0, |i| epochs[i].0);
        // Relies on the order `assert_epochs_ordered` checks where the cache changes.
        assert!(found <= epoch.0 && epoch.0 < next_epoch);
        Some((LeaderEpoch(found), Offset(end)))
    }
}

/// Drops epochs that end at or before `log_start`; the first remaining one starts there.
pub(super) fn truncate_epochs_from_start(epochs: &mut Vec<(i32, i64)>, log_start: i64) {
    let keep_from = epochs
        .partition_point(|&(_, s)| s <= log_start)
        .saturating_sub(1);
    epochs.drain(..keep_from);
    if let Some(first) = epochs.first_mut() {
        if first.1 < log_start {
            first.1 = log_start;
        }
    }
    assert_epochs_ordered(epochs);
}

/// The leader epoch cache's invariant, checked wherever it changes: epochs strictly
/// increase and their start offsets never decrease. (At most `LEADER_EPOCH_ENTRIES_MAX`
/// entries, and it changes only when an epoch starts or the log is cut.)
pub(super) fn assert_epochs_ordered(epochs: &[(i32, i64)]) {
    for w in epochs.windows(2) {
        assert!(
            w[0].0 < w[1].0 && w[0].1 <= w[1].1,
            "leader epochs out of order: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
}
