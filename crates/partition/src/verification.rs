//! KIP-890 part 1 on the partition leader (Kafka's `VerificationStateEntry`
//! and `VerificationGuard`): a client's transactional batch of a producer
//! whose transaction is not open on this partition is appended only once the
//! transaction coordinator confirmed that the partition is in that
//! transaction. The leader starts a verification ([`Verifications::start`]:
//! a guard, unique in this partition's lifetime), asks the coordinator, and
//! appends presenting the guard; the append is refused unless the producer's
//! entry still holds that very guard. A marker of the producer, or its first
//! transactional append, removes the entry, so a confirmation that arrives
//! after the transaction ended (an abort marker written meanwhile) can never
//! open a transaction the coordinator does not know of (a hanging
//! transaction). While it is in progress the entry also keeps the lowest
//! first sequence (at the newest epoch) of the requests that started or
//! joined it, which the append holds the producer's batches to
//! ([`Verifications::sequence_check`]). Deterministic: no clock (time comes
//! in), no I/O.

use std::collections::HashMap;

use fjord_model::limits::{PRODUCER_ID_EXPIRATION_MS_DEFAULT, TXN_VERIFICATIONS_MAX};
use fjord_model::{ProducerEpoch, ProducerId};
use fjord_storage::producer_state::VerifyingProducer;

/// A started verification; an append presents it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VerificationGuard(u64);

#[derive(Debug)]
struct Entry {
    guard: VerificationGuard,
    epoch: ProducerEpoch,
    /// The lowest first sequence seen at `epoch` (Kafka's `lowestSequence`).
    lowest_sequence: i32,
    /// Started by a Produce v12+ (transaction version 2: Kafka's
    /// `supportsEpochBump`).
    supports_epoch_bump: bool,
    started_ms: i64,
}

/// The verifications in progress on one partition, by producer id.
#[derive(Debug, Default)]
pub struct Verifications {
    entries: HashMap<ProducerId, Entry>,
    next_guard: u64,
}

impl Verifications {
    /// Start (or join) the verification of `producer_id`'s transaction at
    /// `epoch`, for a request whose first transactional batch starts at
    /// `sequence` (`supports_epoch_bump`: a Produce v12+): the guard its
    /// append must present. Requests of the same producer share the guard
    /// until a marker or an append removes it, and a lower sequence at the
    /// same epoch becomes the lowest (Kafka's
    /// `maybeUpdateLowestSequenceAndEpoch`); a later epoch starts afresh
    /// (what the older one verified no longer holds, and its sequences start
    /// again).
    pub fn start(
        &mut self,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        sequence: i32,
        supports_epoch_bump: bool,
        now_ms: i64,
    ) -> VerificationGuard {
        if let Some(e) = self.entries.get_mut(&producer_id) {
            if e.epoch >= epoch {
                if e.epoch == epoch {
                    e.lowest_sequence = e.lowest_sequence.min(sequence);
                }
                return e.guard;
            }
        }
        if self.entries.len() >= TXN_VERIFICATIONS_MAX {
            self.expire(now_ms);
        }
        self.next_guard += 1;
        let guard = VerificationGuard(self.next_guard);
        self.entries.insert(
            producer_id,
            Entry {
                guard,
                epoch,
                lowest_sequence: sequence,
                supports_epoch_bump,
                started_ms: now_ms,
            },
        );
        guard
    }

    /// What a client's batches of `producer_id` are held to while its
    /// verification is in progress (`None`: none is): Kafka hands the
    /// producer's `VerificationStateEntry` to every client append of it.
    pub fn sequence_check(&self, producer_id: ProducerId) -> Option<VerifyingProducer> {
        self.entries.get(&producer_id).map(|e| VerifyingProducer {
            producer_id,
            lowest_sequence: e.lowest_sequence,
            supports_epoch_bump: e.supports_epoch_bump,
        })
    }

    /// Whether `guard` is the one `producer_id`'s entry holds.
    pub fn verified(&self, producer_id: ProducerId, guard: Option<VerificationGuard>) -> bool {
        guard.is_some() && self.entries.get(&producer_id).map(|e| e.guard) == guard
    }

    /// The producer's transaction started here or ended: its entry goes.
    pub fn clear(&mut self, producer_id: ProducerId) {
        self.entries.remove(&producer_id);
    }

    /// How many producers have a verification in progress.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries older than `producer.id.expiration.ms` go (Kafka expires
    /// them with the producers); if that frees nothing, the oldest one, so
    /// that producers that never append cannot grow the map without bound.
    fn expire(&mut self, now_ms: i64) {
        self.entries.retain(|_, e| {
            e.started_ms
                .saturating_add(PRODUCER_ID_EXPIRATION_MS_DEFAULT)
                > now_ms
        });
        if self.entries.len() >= TXN_VERIFICATIONS_MAX {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| (e.started_ms, e.guard.0))
                .map(|(p, _)| *p);
            if let Some(p) = oldest {
                self.entries.remove(&p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: ProducerId = ProducerId(7);

    #[test]
    fn a_guard_holds_until_cleared_and_is_never_reused() {
        let mut v = Verifications::default();
        assert!(!v.verified(P, None));
        let g = v.start(P, ProducerEpoch(0), 0, false, 10);
        assert!(v.verified(P, Some(g)));
        assert!(!v.verified(P, None), "no guard presented");
        assert!(!v.verified(ProducerId(8), Some(g)), "another producer");
        assert_eq!(
            v.start(P, ProducerEpoch(0), 0, false, 11),
            g,
            "joined, not restarted"
        );
        // A marker (or the first append) clears it: a late confirmation of
        // the ended transaction is refused, and the next verification gets a
        // guard of its own (Kafka's ABA case).
        v.clear(P);
        assert!(!v.verified(P, Some(g)));
        let g2 = v.start(P, ProducerEpoch(0), 0, false, 12);
        assert_ne!(g2, g);
        assert!(!v.verified(P, Some(g)));
        assert!(v.verified(P, Some(g2)));
    }

    #[test]
    fn a_later_epoch_starts_afresh_an_older_one_joins() {
        let mut v = Verifications::default();
        let g = v.start(P, ProducerEpoch(3), 0, false, 0);
        assert_eq!(v.start(P, ProducerEpoch(2), 0, false, 0), g);
        let g4 = v.start(P, ProducerEpoch(4), 0, false, 0);
        assert_ne!(g4, g);
        assert!(!v.verified(P, Some(g)));
        assert!(v.verified(P, Some(g4)));
    }

    /// Kafka's `maybeUpdateLowestSequenceAndEpoch`: the lowest sequence at
    /// the newest epoch is kept; an older epoch's request changes nothing; a
    /// newer epoch starts again from its own.
    #[test]
    fn the_lowest_sequence_of_the_newest_epoch_is_kept() {
        let mut v = Verifications::default();
        assert_eq!(v.sequence_check(P), None);
        let check = |v: &Verifications| v.sequence_check(P).map(|c| c.lowest_sequence);
        v.start(P, ProducerEpoch(3), 5, false, 0);
        assert_eq!(check(&v), Some(5));
        v.start(P, ProducerEpoch(3), 7, false, 0);
        assert_eq!(check(&v), Some(5), "a higher one does not raise it");
        v.start(P, ProducerEpoch(3), 2, false, 0);
        assert_eq!(check(&v), Some(2));
        v.start(P, ProducerEpoch(2), 0, false, 0);
        assert_eq!(check(&v), Some(2), "an older epoch's request");
        v.start(P, ProducerEpoch(4), 9, true, 0);
        assert_eq!(
            v.sequence_check(P),
            Some(VerifyingProducer {
                producer_id: P,
                lowest_sequence: 9,
                supports_epoch_bump: true
            })
        );
        v.clear(P);
        assert_eq!(v.sequence_check(P), None);
    }

    #[test]
    fn the_map_is_bounded() {
        let mut v = Verifications::default();
        for i in 0..(TXN_VERIFICATIONS_MAX as i64 + 10) {
            v.start(ProducerId(i), ProducerEpoch(0), 0, false, i);
        }
        assert_eq!(v.len(), TXN_VERIFICATIONS_MAX);
        // The oldest went first; the newest are kept.
        assert!(!v.entries.contains_key(&ProducerId(0)));
        assert!(v
            .entries
            .contains_key(&ProducerId(TXN_VERIFICATIONS_MAX as i64 + 9)));
        // Old entries expire all at once when the map is full.
        let late = PRODUCER_ID_EXPIRATION_MS_DEFAULT + TXN_VERIFICATIONS_MAX as i64 + 100;
        v.start(ProducerId(-5), ProducerEpoch(0), 0, false, late);
        assert_eq!(v.len(), 1);
    }
}
