//! The log as the core sees it: entries with an offset and an epoch, and
//! [`LogMeta`], the core's own account of the log's shape (end offset,
//! durable end offset, the first offset of each epoch — Kafka's leader-epoch
//! cache). The core never writes the log: it emits append and truncate
//! operations, and reads entries through [`LogReader`] only to answer a
//! Fetch.

use fjord_model::{LeaderEpoch, NodeId, Offset};

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
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    pub offset: Offset,
    pub epoch: LeaderEpoch,
    pub data: EntryData,
}

/// Reads entries for a Fetch response; implemented by whatever holds the
/// log (the simulator's memory log; later the `__cluster_metadata` segments).
pub trait LogReader {
    /// Up to `max_entries` entries from `from` on (fewer at the log end).
    fn read(&self, from: Offset, max_entries: usize) -> Vec<Entry>;
}

/// The shape of the log: end offset, durable end offset, epoch start offsets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogMeta {
    end: Offset,
    durable_end: Offset,
    /// (epoch, first offset of that epoch), both strictly increasing.
    epochs: Vec<(LeaderEpoch, Offset)>,
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

    pub fn end(&self) -> Offset {
        self.end
    }

    pub fn durable_end(&self) -> Offset {
        self.durable_end
    }

    /// Epoch of the last entry (0 for an empty log).
    pub fn last_epoch(&self) -> LeaderEpoch {
        self.epochs.last().map_or(LeaderEpoch(0), |e| e.0)
    }

    /// Kafka's `endOffsetForEpoch`: the largest epoch `<= epoch` present and
    /// the offset where it ends; `(0, 0)` when no such epoch is present.
    pub fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> (LeaderEpoch, Offset) {
        let i = self.epochs.partition_point(|(e, _)| *e <= epoch);
        if i == 0 {
            return (LeaderEpoch(0), Offset(0));
        }
        let end = self.epochs.get(i).map_or(self.end, |(_, start)| *start);
        (self.epochs[i - 1].0, end)
    }

    /// One entry appended at the end.
    pub fn append(&mut self, offset: Offset, epoch: LeaderEpoch) {
        assert_eq!(offset, self.end, "append must be at the log end");
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

    /// Entries at `offset` and above removed.
    pub fn truncate_to(&mut self, offset: Offset) {
        assert!(offset <= self.end && offset.0 >= 0);
        self.end = offset;
        self.durable_end = self.durable_end.min(offset);
        while self
            .epochs
            .last()
            .is_some_and(|(_, start)| *start >= offset)
        {
            self.epochs.pop();
        }
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
}
