//! The log as the core sees it: entries with an offset and an epoch, and
//! [`LogMeta`], the core's own account of the log's shape (log start and
//! the snapshot it starts from, end offset, durable end offset, the first
//! offset of each epoch — Kafka's leader-epoch cache). The core never writes
//! the log: it emits append, truncate and snapshot operations, and reads
//! entries and snapshot bytes through [`LogReader`] only to answer a Fetch
//! or a FetchSnapshot.

use fjord_model::{LeaderEpoch, NodeId, Offset};

/// A voter (Kafka's `ReplicaKey`): its node id and the id of its
/// metadata log directory; directory id 0 is Kafka's `Uuid.ZERO`, unknown
/// (the voters of a static `controller.quorum.voters`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VoterKey {
    pub id: NodeId,
    pub directory_id: u128,
}

impl VoterKey {
    pub fn new(id: NodeId, directory_id: u128) -> VoterKey {
        VoterKey { id, directory_id }
    }

    /// Kafka's `VoterNode.isVoter`: the same node id, and the same
    /// directory id when the voter's is known.
    pub fn matches(&self, id: NodeId, directory_id: u128) -> bool {
        self.id == id && (self.directory_id == 0 || self.directory_id == directory_id)
    }
}

/// What an entry holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EntryData {
    /// The control entry a leader appends first in its epoch (Kafka's
    /// `LeaderChangeMessage`): who leads and who voted for it.
    LeaderChange {
        leader_id: NodeId,
        voters: Vec<NodeId>,
    },
    /// A client proposal (framed metadata records, opaque to the core).
    Data(Vec<u8>),
    /// Kafka's `VotersRecord` (KIP-853): the voter set from this entry on,
    /// in force as soon as it is in the log, committed or not.
    Voters(Vec<VoterKey>),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    pub offset: Offset,
    pub epoch: LeaderEpoch,
    pub data: EntryData,
}

/// A snapshot's id (Kafka's `OffsetAndEpoch` of KIP-630): it holds the
/// state of every entry below `end_offset`, and `epoch` is the epoch of the
/// entry just below `end_offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotId {
    pub end_offset: Offset,
    pub epoch: LeaderEpoch,
}

/// Bytes of a snapshot read for a FetchSnapshot response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotChunk {
    /// The whole snapshot's size.
    pub size_bytes: u64,
    /// At most the asked number of bytes from the asked position.
    pub bytes: Vec<u8>,
}

/// Reads entries for a Fetch response and snapshot bytes for a
/// FetchSnapshot response; implemented by whatever holds the log (the
/// simulator's memory log; later the `__cluster_metadata` segments and
/// `.checkpoint` files).
pub trait LogReader {
    /// Up to `max_entries` entries from `from` on (fewer at the log end);
    /// `from` is at or above the log start.
    fn read(&self, from: Offset, max_entries: usize) -> Vec<Entry>;
    /// Up to `max_bytes` bytes of snapshot `id` from byte `position`; `None`
    /// when there is no such (complete) snapshot.
    fn read_snapshot(
        &self,
        id: SnapshotId,
        position: u64,
        max_bytes: usize,
    ) -> Option<SnapshotChunk>;
    /// The voter set snapshot `id` holds (its `VotersRecord`); `None` when
    /// it holds none (the configured voters then apply) or is not there.
    fn snapshot_voters(&self, _id: SnapshotId) -> Option<Vec<VoterKey>> {
        None
    }
}

/// The shape of the log: log start (the latest snapshot's end offset, or 0),
/// end offset, durable end offset, epoch start offsets, and where the voter
/// set changes (Kafka's `VoterSetHistory`): the voter set in force is the
/// latest `VotersRecord` in the log, committed or not, else the one in the
/// snapshot the log starts from, else the configured one; truncating a
/// `VotersRecord` away restores the set before it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogMeta {
    /// The log holds entries from here; everything below is in the snapshot
    /// `(start, start_epoch)` (none when `start` is 0).
    start: Offset,
    start_epoch: LeaderEpoch,
    end: Offset,
    durable_end: Offset,
    /// (epoch, first offset of that epoch at or above `start`), both
    /// strictly increasing.
    epochs: Vec<(LeaderEpoch, Offset)>,
    /// The voter set of the snapshot the log starts from (or of the
    /// bootstrap checkpoint), if it holds one.
    snapshot_voters: Option<Vec<VoterKey>>,
    /// The `VotersRecord`s in the log: (offset, set), offsets increasing,
    /// all at or above `start` and below `end`.
    voter_changes: Vec<(Offset, Vec<VoterKey>)>,
}

impl LogMeta {
    /// The log as found at start: `epochs` of its entries in offset order
    /// from offset 0; all of it is durable.
    pub fn from_epochs(epochs: impl IntoIterator<Item = LeaderEpoch>) -> LogMeta {
        let mut meta = LogMeta::default();
        for epoch in epochs {
            meta.append(meta.end, epoch);
        }
        meta.durable_end = meta.end;
        meta
    }

    /// The log as found at start: the latest snapshot, then `epochs` of the
    /// entries from the snapshot's end offset on; all of it is durable.
    pub fn from_snapshot(
        snapshot: SnapshotId,
        epochs: impl IntoIterator<Item = LeaderEpoch>,
    ) -> LogMeta {
        let mut meta = LogMeta::default();
        meta.reset_to_snapshot(snapshot);
        for epoch in epochs {
            meta.append(meta.end, epoch);
        }
        meta.durable_end = meta.end;
        meta
    }

    pub fn end(&self) -> Offset {
        self.end
    }

    /// The first offset the log holds (the latest snapshot's end offset).
    pub fn start(&self) -> Offset {
        self.start
    }

    /// The snapshot the log starts from (none while the log starts at 0).
    pub fn snapshot_id(&self) -> Option<SnapshotId> {
        (self.start.0 > 0).then_some(SnapshotId {
            end_offset: self.start,
            epoch: self.start_epoch,
        })
    }

    /// Epoch of the entry at `offset`: from the log, or the snapshot's
    /// epoch for the entry just below the log start; `None` otherwise.
    pub fn epoch_at(&self, offset: Offset) -> Option<LeaderEpoch> {
        if offset >= self.end || offset.0 < 0 {
            return None;
        }
        if offset < self.start {
            return (offset.0 == self.start.0 - 1).then_some(self.start_epoch);
        }
        let i = self.epochs.partition_point(|(_, s)| *s <= offset);
        (i > 0).then(|| self.epochs[i - 1].0)
    }

    pub fn durable_end(&self) -> Offset {
        self.durable_end
    }

    /// Epoch of the last entry (the snapshot's for a log empty above its
    /// snapshot; 0 for an empty log).
    pub fn last_epoch(&self) -> LeaderEpoch {
        self.epochs.last().map_or(self.start_epoch, |e| e.0)
    }

    /// Kafka's `endOffsetForEpoch`: the largest epoch `<= epoch` present and
    /// the offset where it ends; `(0, 0)` when no such epoch is present. The
    /// snapshot counts as its epoch ending at the log start.
    pub fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> (LeaderEpoch, Offset) {
        let i = self.epochs.partition_point(|(e, _)| *e <= epoch);
        if i == 0 {
            if self.start.0 > 0 && epoch >= self.start_epoch {
                return (self.start_epoch, self.start);
            }
            return (LeaderEpoch(0), Offset(0));
        }
        let end = self.epochs.get(i).map_or(self.end, |(_, start)| *start);
        (self.epochs[i - 1].0, end)
    }

    /// One entry appended at the end.
    pub fn append(&mut self, offset: Offset, epoch: LeaderEpoch) {
        assert_eq!(offset, self.end, "append must be at the log end");
        assert!(
            epoch >= self.start_epoch,
            "epochs in a log never decrease (past the snapshot)"
        );
        match self.epochs.last() {
            Some((last, _)) if *last == epoch => {}
            Some((last, _)) => {
                assert!(epoch > *last, "epochs in a log never decrease");
                self.epochs.push((epoch, offset));
            }
            None => self.epochs.push((epoch, offset)),
        }
        self.end = offset.next();
    }

    /// A snapshot of the entries below `id.end_offset` (which the log holds)
    /// was taken: the log now starts there; entries below may be deleted.
    pub fn advance_start(&mut self, id: SnapshotId) {
        assert!(
            id.end_offset > self.start && id.end_offset <= self.end,
            "a new snapshot ends within the log, above its start"
        );
        assert_eq!(
            self.epoch_at(Offset(id.end_offset.0 - 1)),
            Some(id.epoch),
            "a snapshot's epoch is its last entry's"
        );
        let first_kept = self.epochs.partition_point(|(_, s)| *s <= id.end_offset);
        // The epoch running at the new start (if entries remain in it).
        let running = first_kept
            .checked_sub(1)
            .map(|i| self.epochs[i].0)
            .filter(|_| id.end_offset < self.end);
        self.epochs.drain(..first_kept);
        let folded = self
            .voter_changes
            .partition_point(|(at, _)| *at < id.end_offset);
        if let Some((_, set)) = self.voter_changes.drain(..folded).next_back() {
            self.snapshot_voters = Some(set);
        }
        if let Some(e) = running {
            self.epochs.insert(0, (e, id.end_offset));
        }
        self.start = id.end_offset;
        self.start_epoch = id.epoch;
        self.durable_end = self.durable_end.max(self.start);
    }

    /// A snapshot fetched from the leader replaced the whole log: it is
    /// empty and starts at the snapshot's end offset, all of it durable.
    /// Its voter set is not known here ([`LogMeta::set_snapshot_voters`]).
    pub fn reset_to_snapshot(&mut self, id: SnapshotId) {
        assert!(id.end_offset.0 > 0 && id.epoch.0 >= 0);
        self.snapshot_voters = None;
        self.voter_changes.clear();
        self.start = id.end_offset;
        self.start_epoch = id.epoch;
        self.end = id.end_offset;
        self.durable_end = id.end_offset;
        self.epochs.clear();
    }

    /// Entries at `offset` and above removed (never below the log start:
    /// the snapshot holds committed entries only).
    pub fn truncate_to(&mut self, offset: Offset) {
        assert!(offset <= self.end && offset >= self.start);
        self.end = offset;
        self.durable_end = self.durable_end.min(offset);
        while self
            .voter_changes
            .last()
            .is_some_and(|(at, _)| *at >= offset)
        {
            self.voter_changes.pop();
        }
        while self
            .epochs
            .last()
            .is_some_and(|(_, start)| *start >= offset)
        {
            self.epochs.pop();
        }
    }

    /// The voter set the snapshot the log starts from holds (read from it
    /// at start or after installing it).
    pub fn set_snapshot_voters(&mut self, voters: Option<Vec<VoterKey>>) {
        self.snapshot_voters = voters;
    }

    /// The entry at `offset` (the last one in the log) is a `VotersRecord`.
    pub fn record_voters(&mut self, offset: Offset, voters: Vec<VoterKey>) {
        assert!(
            offset >= self.start && offset < self.end,
            "a VotersRecord is in the log"
        );
        assert!(
            self.voter_changes.last().is_none_or(|(at, _)| *at < offset),
            "voter changes are recorded in offset order"
        );
        self.voter_changes.push((offset, voters));
    }

    /// The voter set in force from the log (see the type's docs); `None`
    /// when neither the log nor its snapshot holds one.
    pub fn voters(&self) -> Option<&[VoterKey]> {
        self.voter_changes
            .last()
            .map(|(_, v)| v.as_slice())
            .or(self.snapshot_voters.as_deref())
    }

    /// Offset of the latest `VotersRecord` in the log (not in its snapshot).
    pub fn last_voter_change(&self) -> Option<Offset> {
        self.voter_changes.last().map(|(at, _)| *at)
    }

    /// A flush completed: everything below `end_offset` is durable.
    pub fn flushed(&mut self, end_offset: Offset) {
        let durable = end_offset.min(self.end);
        if durable > self.durable_end {
            self.durable_end = durable;
        }
        assert!(self.durable_end <= self.end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(v: i32) -> LeaderEpoch {
        LeaderEpoch(v)
    }

    #[test]
    fn epoch_end_offsets_and_truncation() {
        // offsets 0,1 in epoch 1; 2..=4 in epoch 3; 5 in epoch 4
        let mut m = LogMeta::from_epochs([1, 1, 3, 3, 3, 4].map(e));
        assert_eq!(m.end(), Offset(6));
        assert_eq!(m.durable_end(), Offset(6));
        assert_eq!(m.last_epoch(), e(4));
        assert_eq!(m.end_offset_for_epoch(e(0)), (e(0), Offset(0)));
        assert_eq!(m.end_offset_for_epoch(e(1)), (e(1), Offset(2)));
        assert_eq!(m.end_offset_for_epoch(e(2)), (e(1), Offset(2)));
        assert_eq!(m.end_offset_for_epoch(e(3)), (e(3), Offset(5)));
        assert_eq!(m.end_offset_for_epoch(e(9)), (e(4), Offset(6)));
        m.truncate_to(Offset(3));
        assert_eq!(m.end(), Offset(3));
        assert_eq!(m.durable_end(), Offset(3));
        assert_eq!(m.end_offset_for_epoch(e(9)), (e(3), Offset(3)));
        m.append(Offset(3), e(5));
        assert_eq!(m.durable_end(), Offset(3));
        m.flushed(Offset(10));
        assert_eq!(m.durable_end(), Offset(4));
        m.truncate_to(Offset(2));
        assert_eq!(m.last_epoch(), e(1));
    }

    #[test]
    fn snapshots_move_the_log_start_and_answer_for_older_epochs() {
        // offsets 0,1 in epoch 1; 2..=4 in epoch 3; 5 in epoch 4
        let mut m = LogMeta::from_epochs([1, 1, 3, 3, 3, 4].map(e));
        assert_eq!(m.snapshot_id(), None);
        assert_eq!(m.epoch_at(Offset(3)), Some(e(3)));
        let id = SnapshotId {
            end_offset: Offset(3),
            epoch: e(3),
        };
        m.advance_start(id);
        assert_eq!(
            (m.start(), m.end(), m.snapshot_id()),
            (Offset(3), Offset(6), Some(id))
        );
        assert_eq!(m.epoch_at(Offset(2)), Some(e(3)));
        assert_eq!(m.epoch_at(Offset(1)), None);
        assert_eq!(m.epoch_at(Offset(3)), Some(e(3)));
        assert_eq!(m.end_offset_for_epoch(e(3)), (e(3), Offset(5)));
        assert_eq!(m.end_offset_for_epoch(e(1)), (e(0), Offset(0)));
        m.truncate_to(Offset(3));
        assert_eq!(m.last_epoch(), e(3));
        assert_eq!(m.end_offset_for_epoch(e(7)), (e(3), Offset(3)));
        m.append(Offset(3), e(5));
        assert_eq!(m.end_offset_for_epoch(e(4)), (e(3), Offset(3)));
        // A restart finds the same shape.
        let again = LogMeta::from_snapshot(id, [e(5)]);
        assert_eq!(
            again.end_offset_for_epoch(e(4)),
            m.end_offset_for_epoch(e(4))
        );
        assert_eq!(
            (again.start(), again.end(), again.last_epoch()),
            (Offset(3), Offset(4), e(5))
        );
        // A fetched snapshot replaces everything.
        m.reset_to_snapshot(SnapshotId {
            end_offset: Offset(9),
            epoch: e(6),
        });
        assert_eq!(
            (m.start(), m.end(), m.durable_end(), m.last_epoch()),
            (Offset(9), Offset(9), Offset(9), e(6))
        );
    }
}
