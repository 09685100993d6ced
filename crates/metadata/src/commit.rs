//! When is a metadata record committed? A deterministic core, no I/O.
//!
//! The leader appends proposals to its log; each voter reports how far its
//! log is durable; the high watermark is the largest offset that a majority
//! of voters holds durably, counted only once it covers a record of the
//! leader's own epoch (Raft's rule: an entry of an older term is committed
//! by a newer one). A one-voter quorum is the case where the majority is the
//! leader alone, so a record is committed once its fsync returns. Issue 12's
//! KRaft leader feeds followers' fetch offsets into the same [`CommitTracker`].

use std::collections::{BTreeMap, VecDeque};

use fjord_model::{NodeId, Offset};

/// Proposals in flight and the high watermark of the leader's epoch.
#[derive(Debug)]
pub struct CommitTracker<T> {
    /// Durable end offset reported by each voter (the leader included).
    voters: BTreeMap<NodeId, Offset>,
    /// First offset of the leader's epoch: the high watermark starts moving
    /// once a majority holds a record at or past it.
    epoch_start: Offset,
    log_end: Offset,
    high_watermark: Offset,
    /// (last offset, token) of appended proposals not yet committed, in offset order.
    pending: VecDeque<(Offset, T)>,
}

impl<T> CommitTracker<T> {
    /// A leader whose epoch starts at `epoch_start` (the current end of its
    /// log), with `high_watermark` committed before (never above `epoch_start`).
    pub fn new(voters: &[NodeId], epoch_start: Offset, high_watermark: Offset) -> CommitTracker<T> {
        assert!(!voters.is_empty(), "a quorum needs a voter");
        assert!(high_watermark <= epoch_start, "committed past the log end");
        CommitTracker {
            voters: voters.iter().map(|&v| (v, Offset(0))).collect(),
            epoch_start,
            log_end: epoch_start,
            high_watermark,
            pending: VecDeque::new(),
        }
    }

    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    pub fn log_end(&self) -> Offset {
        self.log_end
    }

    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// The leader appended records `first..=last`; `token` is returned once they are committed.
    pub fn appended(&mut self, first: Offset, last: Offset, token: T) {
        assert_eq!(first, self.log_end, "appends are contiguous");
        assert!(last >= first, "an empty append");
        self.log_end = last.next();
        self.pending.push_back((last, token));
    }

    /// The leader appended records that no proposal waits for (a control batch).
    pub fn appended_untracked(&mut self, first: Offset, last: Offset) {
        assert_eq!(first, self.log_end, "appends are contiguous");
        assert!(last >= first, "an empty append");
        self.log_end = last.next();
    }

    /// Gives up every proposal still waiting (the log failed, or, in a
    /// multi-voter quorum, leadership was lost): their tokens, in order.
    pub fn abandon(&mut self) -> Vec<T> {
        self.pending.drain(..).map(|(_, t)| t).collect()
    }

    /// `voter`'s log is durable below `durable_end`. Returns the tokens of
    /// proposals now committed, in offset order (each exactly once).
    pub fn durable(&mut self, voter: NodeId, durable_end: Offset) -> Vec<T> {
        let Some(slot) = self.voters.get_mut(&voter) else {
            return Vec::new();
        };
        // A report never moves a voter backwards (reordered or stale messages).
        *slot = (*slot).max(durable_end.min(self.log_end));
        let mut ends: Vec<Offset> = self.voters.values().copied().collect();
        ends.sort_unstable_by(|a, b| b.cmp(a));
        let majority_end = ends[ends.len() / 2];
        if majority_end > self.epoch_start && majority_end > self.high_watermark {
            assert!(majority_end <= self.log_end, "committed past the log end");
            self.high_watermark = majority_end;
        }
        let mut done = Vec::new();
        while let Some(&(last, _)) = self.pending.front() {
            if last >= self.high_watermark {
                break;
            }
            if let Some((_, t)) = self.pending.pop_front() {
                done.push(t);
            }
        }
        if let Some(&(last, _)) = self.pending.front() {
            assert!(
                last >= self.high_watermark,
                "a committed proposal left pending"
            );
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn one_voter_commits_on_durable() {
        let me = NodeId(1);
        let mut t = CommitTracker::new(&[me], Offset(0), Offset(0));
        t.appended_untracked(Offset(0), Offset(0)); // LeaderChange
        t.appended(Offset(1), Offset(3), "a");
        t.appended(Offset(4), Offset(4), "b");
        assert!(t.durable(me, Offset(3)).is_empty());
        assert_eq!(t.high_watermark(), Offset(3));
        assert_eq!(t.durable(me, Offset(5)), vec!["a", "b"]);
        assert_eq!(t.high_watermark(), Offset(5));
        // Unknown voters and stale reports change nothing.
        assert!(t.durable(NodeId(9), Offset(9)).is_empty());
        assert!(t.durable(me, Offset(1)).is_empty());
        assert_eq!(t.high_watermark(), Offset(5));
    }

    #[test]
    fn older_epoch_records_wait_for_one_of_this_epoch() {
        let me = NodeId(1);
        // Records 0..10 from an older epoch; this epoch starts at 10.
        let mut t: CommitTracker<()> = CommitTracker::new(&[me], Offset(10), Offset(4));
        assert!(t.durable(me, Offset(10)).is_empty());
        assert_eq!(t.high_watermark(), Offset(4));
        t.appended_untracked(Offset(10), Offset(10));
        t.durable(me, Offset(11));
        assert_eq!(t.high_watermark(), Offset(11));
    }

    #[test]
    fn three_voters_need_two() {
        let (a, b, c) = (NodeId(1), NodeId(2), NodeId(3));
        let mut t = CommitTracker::new(&[a, b, c], Offset(0), Offset(0));
        t.appended(Offset(0), Offset(9), 1);
        assert!(t.durable(a, Offset(10)).is_empty());
        assert_eq!(t.durable(c, Offset(10)), vec![1]);
    }

    proptest! {
        /// Against a model: a proposal is released exactly once, in order,
        /// and only when a majority holds all of it durably.
        #[test]
        fn releases_in_order_once_durable(
            voters in 1usize..5,
            ops in proptest::collection::vec((0u8..2, 1i64..5, 0usize..5, 0i64..40), 1..200),
        ) {
            let ids: Vec<NodeId> = (1..=voters as i32).map(NodeId).collect();
            let mut t = CommitTracker::new(&ids, Offset(0), Offset(0));
            let mut durable: BTreeMap<NodeId, i64> = ids.iter().map(|&v| (v, 0)).collect();
            let mut appended: Vec<(i64, usize)> = Vec::new();
            let mut released = Vec::new();
            let mut hw = 0;
            for (kind, len, who, end) in ops {
                if kind == 0 {
                    let first = t.log_end();
                    let last = Offset(first.0 + len - 1);
                    t.appended(first, last, appended.len());
                    appended.push((last.0, appended.len()));
                } else {
                    let v = ids[who % ids.len()];
                    let e = end.min(t.log_end().0);
                    let slot = durable.entry(v).or_default();
                    *slot = (*slot).max(e);
                    released.extend(t.durable(v, Offset(end)));
                    prop_assert!(t.high_watermark().0 >= hw);
                    hw = t.high_watermark().0;
                    let mut ends: Vec<i64> = durable.values().copied().collect();
                    ends.sort_unstable_by(|a, b| b.cmp(a));
                    let majority = ends[ends.len() / 2];
                    prop_assert_eq!(hw, majority.max(hw));
                }
                // Released exactly the proposals below the high watermark, in order.
                let expect: Vec<usize> =
                    appended.iter().filter(|(l, _)| *l < hw).map(|(_, i)| *i).collect();
                prop_assert_eq!(&released, &expect);
            }
        }
    }
}
