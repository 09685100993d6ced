//! Idempotent-producer state of one partition: for each producer id, its epoch and its
//! last `PRODUCER_BATCHES_RETAINED` batches, so that a retried batch is recognised and
//! answered with the offsets it got the first time instead of being appended again.
//!
//! The core (`ProducerStateMap`) is deterministic and does no I/O: `check` decides about
//! the batches of one append, `commit` applies the decision after the write, `replay`
//! rebuilds the state from batch headers during recovery, and time is always passed in.
//! The snapshot codec is pure too; only the small file helpers at the bottom touch disk.
//!
//! # Rules (those of Kafka's broker for non-transactional idempotent batches)
//! - A batch whose epoch and sequence range equal one of the producer's retained batches
//!   is a duplicate: nothing is appended and the original offsets are answered (error
//!   NONE).
//! - An epoch older than the producer's current one: INVALID_PRODUCER_EPOCH.
//! - A newer epoch must start at sequence 0; within an epoch a batch must start right
//!   after the previous one (wrapping from `i32::MAX` to 0): else
//!   OUT_OF_ORDER_SEQUENCE_NUMBER. An older sequence that is no longer retained is out of
//!   order too (current Kafka brokers never answer DUPLICATE_SEQUENCE_NUMBER).
//! - An unknown producer id (new, expired or evicted) may start at any sequence.
//! - A producer id idle for `producer.id.expiration.ms` (judged by its newest batch's
//!   max timestamp, as Kafka does) is forgotten; at most `PRODUCERS_PER_PARTITION_MAX`
//!   ids are kept, the least recently active one is forgotten first (producers with an
//!   open transaction are kept, even beyond that cap).
//!
//! # Transactions (KIP-98; Kafka's `ProducerAppendInfo`)
//! - A transactional batch of a producer with no open transaction opens one at its base
//!   offset (`ProducerEntry::current_txn_first_offset`); a non-transactional batch while
//!   one is open is INVALID_TXN_STATE.
//! - A marker (`check_marker`: a COMMIT or ABORT control batch written by the transaction
//!   coordinator) closes it and yields a [`CompletedTxn`]; a marker of a producer with no
//!   open transaction here yields none (nothing for the aborted-transaction index, as
//!   Kafka's `appendEndTxnMarker`) but still moves the producer's epochs; a marker with an older
//!   producer epoch is INVALID_PRODUCER_EPOCH, with an older coordinator epoch
//!   TRANSACTION_COORDINATOR_FENCED. A newer epoch (a fence) resets the sequences.
//!   A marker of transaction version 2 or later (KIP-1228: the coordinator bumps the
//!   epoch before every marker) must carry an epoch above the producer's: an equal one
//!   is INVALID_PRODUCER_EPOCH too, unless it is the retry of a marker already written
//!   (no transaction open, or the epoch is `i16::MAX` and cannot be bumped), as Kafka's
//!   `ProducerAppendInfo::checkProducerEpoch` decides.
//! - `first_unstable_offset` is the smallest open transaction's first offset: the last
//!   stable offset of the partition is the minimum of it and the high watermark.
//! - A producer with an open transaction is neither expired nor evicted.
//!
//! # Snapshots (`<offset>.snapshot`, offset zero-padded to 20 digits)
//! The state after every batch below `<offset>`. Written at segment roll (not synced: a
//! torn one fails its CRC and the previous one is used) and at clean close (synced). On
//! open the newest valid snapshot at or below the log end is loaded and the headers of
//! the batches after it are replayed, so a crash costs a replay of at most the active
//! segment's headers (the roll wrote a snapshot at its base).

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use fjord_model::limits::{
    PRODUCERS_PER_PARTITION_MAX, PRODUCER_BATCHES_RETAINED,
    PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS, PRODUCER_ID_EXPIRATION_MS_DEFAULT,
    PRODUCER_SNAPSHOTS_KEPT,
};
use fjord_model::{ErrorCode, Offset, ProducerEpoch, ProducerId};
use fjord_records::BatchHeader;

/// Suffix of producer-state snapshot files.
pub(crate) const SNAPSHOT_SUFFIX: &str = "snapshot";
const SNAPSHOT_MAGIC: &[u8; 4] = b"FJPS";
/// Version 2 adds each producer's coordinator epoch and open transaction; version 1
/// (without them) is still read.
const SNAPSHOT_VERSION: u8 = 2;
const SNAPSHOT_VERSION_V1: u8 = 1;
/// magic, version, crc, producer count.
const SNAPSHOT_HEADER_BYTES: usize = 4 + 1 + 4 + 4;
/// producer id, epoch, last timestamp, batch count (version 1).
const ENTRY_HEADER_BYTES_V1: usize = 8 + 2 + 8 + 1;
/// Version 2: plus coordinator epoch and open transaction's first offset (-1: none).
const ENTRY_HEADER_BYTES: usize = ENTRY_HEADER_BYTES_V1 + 4 + 8;
/// first and last sequence, base and last offset, timestamp.
const BATCH_BYTES: usize = 4 + 4 + 8 + 8 + 8;

/// What is remembered of one appended batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerBatch {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: Offset,
    pub last_offset: Offset,
    /// The batch's max timestamp (the append time for LogAppendTime topics).
    pub timestamp_ms: i64,
}

/// One producer id's state in a partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: ProducerEpoch,
    /// Timestamp of the newest batch (expiration is judged by it).
    pub last_timestamp_ms: i64,
    /// The newest batches of `epoch`, oldest first, at most `PRODUCER_BATCHES_RETAINED`.
    pub batches: VecDeque<ProducerBatch>,
    /// Epoch of the transaction coordinator that wrote this producer's last marker (-1: none).
    pub coordinator_epoch: i32,
    /// First offset of the producer's open transaction in this partition.
    pub current_txn_first_offset: Option<Offset>,
}

impl ProducerEntry {
    fn new(epoch: ProducerEpoch) -> ProducerEntry {
        ProducerEntry {
            epoch,
            last_timestamp_ms: -1,
            batches: VecDeque::with_capacity(PRODUCER_BATCHES_RETAINED),
            coordinator_epoch: -1,
            current_txn_first_offset: None,
        }
    }

    /// Last sequence appended in the current epoch, if any batch is retained.
    pub fn last_sequence(&self) -> Option<i32> {
        self.batches.back().map(|b| b.last_sequence)
    }

    fn find_duplicate(&self, b: &IncomingBatch) -> Option<ProducerBatch> {
        if b.epoch != self.epoch {
            return None;
        }
        self.batches
            .iter()
            .find(|m| m.first_sequence == b.first_sequence && m.last_sequence == b.last_sequence)
            .copied()
    }

    /// A coordinator's transactional batch without a sequence: the epoch moves
    /// (sequences start again), the transaction opens, no batch is remembered.
    fn open_unsequenced(&mut self, b: &IncomingBatch) {
        if b.epoch != self.epoch {
            self.batches.clear();
            self.epoch = b.epoch;
        }
        self.last_timestamp_ms = b.timestamp_ms;
        if self.current_txn_first_offset.is_none() {
            self.current_txn_first_offset = Some(b.base_offset);
        }
    }

    fn add(&mut self, epoch: ProducerEpoch, batch: ProducerBatch) {
        if epoch != self.epoch {
            self.batches.clear();
            self.epoch = epoch;
        }
        if self.batches.len() >= PRODUCER_BATCHES_RETAINED {
            self.batches.pop_front();
        }
        self.batches.push_back(batch);
        self.last_timestamp_ms = batch.timestamp_ms;
    }
}

/// An idempotent batch as `check` sees it: header fields and the offsets it would get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IncomingBatch {
    pub producer_id: ProducerId,
    pub epoch: ProducerEpoch,
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: Offset,
    pub last_offset: Offset,
    pub timestamp_ms: i64,
    /// The batch belongs to a transaction (attribute bit 4).
    pub transactional: bool,
}

impl IncomingBatch {
    /// The batch's producer fields, if it is an idempotent data batch (producer id set,
    /// not a control batch); `h.base_offset` must be the offset it will be appended at.
    pub fn from_header(h: &BatchHeader) -> Option<IncomingBatch> {
        if h.producer_id < 0 || h.is_control() {
            return None;
        }
        Some(IncomingBatch {
            producer_id: ProducerId(h.producer_id),
            epoch: ProducerEpoch(h.producer_epoch),
            first_sequence: h.base_sequence,
            last_sequence: h.last_sequence(),
            base_offset: Offset(h.base_offset),
            last_offset: Offset(h.last_offset()),
            timestamp_ms: h.max_timestamp,
            transactional: h.is_transactional(),
        })
    }

    fn metadata(&self) -> ProducerBatch {
        ProducerBatch {
            first_sequence: self.first_sequence,
            last_sequence: self.last_sequence,
            base_offset: self.base_offset,
            last_offset: self.last_offset,
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// Why the batches of an append were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    #[error("out of order sequence number for producer {producer_id} with epoch {epoch}: got {sequence}, expected {expected}")]
    OutOfOrderSequence {
        producer_id: i64,
        epoch: i16,
        sequence: i32,
        expected: i32,
    },
    #[error("epoch {epoch} of producer {producer_id} is older than its current epoch {current}")]
    InvalidEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("batch of producer {producer_id} has no valid sequence number ({sequence})")]
    MissingSequence { producer_id: i64, sequence: i32 },
    #[error("{duplicates} of the {batches} batches were already appended: a request must repeat all or none")]
    PartialDuplicate { duplicates: usize, batches: usize },
    #[error(
        "producer {producer_id} wrote a non-transactional batch while its transaction is open"
    )]
    NotTransactional { producer_id: i64 },
    #[error(
        "marker of coordinator epoch {epoch} for producer {producer_id} is older than {current}"
    )]
    CoordinatorFenced {
        producer_id: i64,
        epoch: i32,
        current: i32,
    },
}

impl ProducerError {
    pub fn kafka_code(&self) -> ErrorCode {
        match self {
            ProducerError::OutOfOrderSequence { .. } => ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER,
            ProducerError::InvalidEpoch { .. } => ErrorCode::INVALID_PRODUCER_EPOCH,
            ProducerError::MissingSequence { .. } | ProducerError::PartialDuplicate { .. } => {
                ErrorCode::INVALID_RECORD
            }
            ProducerError::NotTransactional { .. } => ErrorCode::INVALID_TXN_STATE,
            ProducerError::CoordinatorFenced { .. } => ErrorCode::TRANSACTION_COORDINATOR_FENCED,
        }
    }
}

/// A producer whose transaction verification (KIP-890) is in progress on the partition
/// leader (Kafka's `VerificationStateEntry`), as a client's append of its batches is
/// held to it (`check_client`, Kafka 4.3.1's `ProducerAppendInfo.checkSequence`): a
/// batch starting above `lowest_sequence` is out of order (a lower one, retried, must
/// come first), and with `supports_epoch_bump` (the verification came from a Produce
/// v12+, transaction version 2) a producer with no batches here must start at 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyingProducer {
    pub producer_id: ProducerId,
    /// The lowest first sequence of the requests that started or joined the
    /// verification, at its newest epoch.
    pub lowest_sequence: i32,
    pub supports_epoch_bump: bool,
}

/// The entries to store once an append's write succeeded (from `check`).
#[derive(Debug, Default)]
pub struct ProducerUpdate {
    entries: Vec<(ProducerId, ProducerEntry)>,
}

/// `check`'s decision.
#[derive(Debug)]
pub enum Verdict {
    /// Append every batch, then `commit` the update.
    Append(ProducerUpdate),
    /// Every batch was appended before: answer with these (first and last of them).
    Duplicate {
        first: ProducerBatch,
        last: ProducerBatch,
    },
}

/// A transaction marker batch (a transactional control batch of a producer).
pub fn is_txn_marker(h: &BatchHeader) -> bool {
    h.is_control() && h.is_transactional() && h.producer_id >= 0
}

/// A transaction closed by a marker in this partition (what the aborted-transaction
/// index and the last stable offset need).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: ProducerId,
    pub first_offset: Offset,
    /// The marker's offset.
    pub last_offset: Offset,
    pub aborted: bool,
}

/// A marker as `check_marker` sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IncomingMarker {
    pub producer_id: ProducerId,
    pub epoch: ProducerEpoch,
    pub coordinator_epoch: i32,
    /// The offset the marker will be appended at.
    pub offset: Offset,
    pub timestamp_ms: i64,
    pub aborted: bool,
    /// The transaction version of the transaction it ends (Kafka's
    /// `transaction.version` feature level of the client, 0 when not known:
    /// WriteTxnMarkers v1). From 2 on the epoch rule is stricter (KIP-1228).
    pub transaction_version: i16,
}

/// True when `next` is the sequence right after `last` (wrapping at `i32::MAX`).
pub fn in_sequence(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX {
        0
    } else {
        last + 1
    }
}

/// The producer state of one partition. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerStateMap {
    producers: BTreeMap<ProducerId, ProducerEntry>,
    expiration_ms: i64,
    producers_max: usize,
    next_expiration_check_ms: Option<i64>,
}

impl Default for ProducerStateMap {
    fn default() -> Self {
        ProducerStateMap::new(
            PRODUCER_ID_EXPIRATION_MS_DEFAULT,
            PRODUCERS_PER_PARTITION_MAX,
        )
    }
}

impl ProducerStateMap {
    pub fn new(expiration_ms: i64, producers_max: usize) -> ProducerStateMap {
        ProducerStateMap {
            producers: BTreeMap::new(),
            expiration_ms,
            producers_max: producers_max.max(1),
            next_expiration_check_ms: None,
        }
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// The last offset of every producer's newest batch (compaction keeps those batches).
    pub fn newest_batch_offsets(&self) -> std::collections::HashSet<i64> {
        self.producers
            .values()
            .filter_map(|e| e.batches.back().map(|b| b.last_offset.0))
            .collect()
    }

    pub fn get(&self, producer_id: ProducerId) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Every producer tracked, by producer id.
    pub fn iter(&self) -> impl Iterator<Item = (ProducerId, &ProducerEntry)> {
        self.producers.iter().map(|(id, e)| (*id, e))
    }

    /// Decides about the idempotent batches of one append, in order (`batches_total`
    /// counts all batches of the append, idempotent or not). Changes nothing.
    pub fn check(
        &self,
        batches: &[IncomingBatch],
        batches_total: usize,
    ) -> Result<Verdict, ProducerError> {
        self.check_from(batches, batches_total, false)
    }

    /// `check`, for an append by a coordinator (Kafka's origin COORDINATOR) when
    /// `coordinator` is set: a transactional batch without a sequence (the group
    /// coordinator's transactional offset commit) is checked for its producer epoch
    /// only, opens the producer's transaction and is remembered by no sequence.
    pub fn check_from(
        &self,
        batches: &[IncomingBatch],
        batches_total: usize,
        coordinator: bool,
    ) -> Result<Verdict, ProducerError> {
        self.check_all(batches, batches_total, coordinator, &[])
    }

    /// `check` for a client's append while the producers of `verifying` have a
    /// transaction verification in progress here (see [`VerifyingProducer`]).
    pub fn check_client(
        &self,
        batches: &[IncomingBatch],
        batches_total: usize,
        verifying: &[VerifyingProducer],
    ) -> Result<Verdict, ProducerError> {
        self.check_all(batches, batches_total, false, verifying)
    }

    fn check_all(
        &self,
        batches: &[IncomingBatch],
        batches_total: usize,
        coordinator: bool,
        verifying: &[VerifyingProducer],
    ) -> Result<Verdict, ProducerError> {
        // Entries as they will be after the batches checked so far (few: usually one).
        let mut updated: Vec<(ProducerId, ProducerEntry)> = Vec::new();
        let mut duplicates: Vec<ProducerBatch> = Vec::new();
        for b in batches {
            if coordinator && b.first_sequence < 0 && b.transactional {
                let slot = updated.iter().position(|(p, _)| *p == b.producer_id);
                let current = match slot {
                    Some(i) => Some(&updated[i].1),
                    None => self.producers.get(&b.producer_id),
                };
                if let Some(e) = current {
                    if b.epoch < e.epoch {
                        return Err(ProducerError::InvalidEpoch {
                            producer_id: b.producer_id.0,
                            epoch: b.epoch.0,
                            current: e.epoch.0,
                        });
                    }
                }
                let mut entry = current
                    .cloned()
                    .unwrap_or_else(|| ProducerEntry::new(b.epoch));
                entry.open_unsequenced(b);
                match slot {
                    Some(i) => updated[i].1 = entry,
                    None => updated.push((b.producer_id, entry)),
                }
                continue;
            }
            if b.first_sequence < 0 {
                return Err(ProducerError::MissingSequence {
                    producer_id: b.producer_id.0,
                    sequence: b.first_sequence,
                });
            }
            let slot = updated.iter().position(|(p, _)| *p == b.producer_id);
            let current = match slot {
                Some(i) => Some(&updated[i].1),
                None => self.producers.get(&b.producer_id),
            };
            if let Some(d) = current.and_then(|e| e.find_duplicate(b)) {
                duplicates.push(d);
                continue;
            }
            if let Some(v) = verifying.iter().find(|v| v.producer_id == b.producer_id) {
                // The epoch first, then the verification's rules, then the usual ones.
                if let Some(e) = current.filter(|e| b.epoch < e.epoch) {
                    return Err(Self::older_epoch(b, e));
                }
                let before = self.producers.get(&b.producer_id);
                Self::check_verifying(v, before, b)?;
            }
            if let Some(e) = current {
                Self::validate(e, b)?;
                if !b.transactional && e.current_txn_first_offset.is_some() {
                    return Err(ProducerError::NotTransactional {
                        producer_id: b.producer_id.0,
                    });
                }
            }
            let mut entry = current
                .cloned()
                .unwrap_or_else(|| ProducerEntry::new(b.epoch));
            entry.add(b.epoch, b.metadata());
            if b.transactional && entry.current_txn_first_offset.is_none() {
                entry.current_txn_first_offset = Some(b.base_offset);
            }
            match slot {
                Some(i) => updated[i].1 = entry,
                None => updated.push((b.producer_id, entry)),
            }
        }
        match (duplicates.first(), duplicates.last()) {
            (Some(&first), Some(&last)) => {
                if duplicates.len() == batches_total {
                    Ok(Verdict::Duplicate { first, last })
                } else {
                    Err(ProducerError::PartialDuplicate {
                        duplicates: duplicates.len(),
                        batches: batches_total,
                    })
                }
            }
            _ => Ok(Verdict::Append(ProducerUpdate { entries: updated })),
        }
    }

    /// Kafka 4.3.1's first two rules of `checkSequence`, for a producer whose
    /// verification is in progress (`before`: its entry before this append).
    fn check_verifying(
        v: &VerifyingProducer,
        before: Option<&ProducerEntry>,
        b: &IncomingBatch,
    ) -> Result<(), ProducerError> {
        let no_batches = before.is_none_or(|e| e.batches.is_empty());
        if v.supports_epoch_bump && b.first_sequence != 0 && no_batches {
            Err(Self::out_of_order(b, 0))
        } else if b.first_sequence > v.lowest_sequence {
            Err(Self::out_of_order(b, v.lowest_sequence))
        } else {
            Ok(())
        }
    }

    fn out_of_order(b: &IncomingBatch, expected: i32) -> ProducerError {
        ProducerError::OutOfOrderSequence {
            producer_id: b.producer_id.0,
            epoch: b.epoch.0,
            sequence: b.first_sequence,
            expected,
        }
    }

    fn older_epoch(b: &IncomingBatch, e: &ProducerEntry) -> ProducerError {
        ProducerError::InvalidEpoch {
            producer_id: b.producer_id.0,
            epoch: b.epoch.0,
            current: e.epoch.0,
        }
    }

    fn validate(e: &ProducerEntry, b: &IncomingBatch) -> Result<(), ProducerError> {
        if b.epoch < e.epoch {
            return Err(Self::older_epoch(b, e));
        }
        let expected = if b.epoch != e.epoch {
            0
        } else {
            match e.last_sequence() {
                Some(last) if !in_sequence(last, b.first_sequence) => next_sequence(last),
                _ => return Ok(()),
            }
        };
        if b.first_sequence == expected {
            return Ok(());
        }
        Err(Self::out_of_order(b, expected))
    }

    /// Decides about a transaction marker (changes nothing): the update to `commit` once
    /// the marker is written, and the transaction it closes (`None`: none was open).
    pub fn check_marker(
        &self,
        m: &IncomingMarker,
    ) -> Result<(ProducerUpdate, Option<CompletedTxn>), ProducerError> {
        let current = self.producers.get(&m.producer_id);
        if let Some(e) = current {
            if Self::marker_epoch_fenced(m, e) {
                return Err(ProducerError::InvalidEpoch {
                    producer_id: m.producer_id.0,
                    epoch: m.epoch.0,
                    current: e.epoch.0,
                });
            }
            if m.coordinator_epoch < e.coordinator_epoch {
                return Err(ProducerError::CoordinatorFenced {
                    producer_id: m.producer_id.0,
                    epoch: m.coordinator_epoch,
                    current: e.coordinator_epoch,
                });
            }
        }
        let mut entry = current
            .cloned()
            .unwrap_or_else(|| ProducerEntry::new(m.epoch));
        let completed = Self::close_txn(&mut entry, m);
        Ok((
            ProducerUpdate {
                entries: vec![(m.producer_id, entry)],
            },
            completed,
        ))
    }

    /// Whether `m`'s producer epoch is refused given the producer's entry
    /// `e` (Kafka's `checkProducerEpoch` for markers).
    fn marker_epoch_fenced(m: &IncomingMarker, e: &ProducerEntry) -> bool {
        if m.transaction_version < 2 {
            return m.epoch < e.epoch;
        }
        if m.epoch > e.epoch {
            return false;
        }
        // An equal epoch from a TV2 coordinator: a retry of the marker it
        // wrote already (the transaction is closed), or an epoch that can
        // grow no more.
        let retry =
            m.epoch == e.epoch && (e.current_txn_first_offset.is_none() || m.epoch.0 == i16::MAX);
        !retry
    }

    /// The transaction `m` ends, if one is open (Kafka emits a `CompletedTxn` only for
    /// a non-empty transaction: a marker without data moves no last stable offset and
    /// has no place in the transaction index); the entry takes the marker's epochs.
    fn close_txn(entry: &mut ProducerEntry, m: &IncomingMarker) -> Option<CompletedTxn> {
        if m.epoch != entry.epoch {
            // A fence (the coordinator bumped the epoch): sequences start again.
            entry.batches.clear();
            entry.epoch = m.epoch;
        }
        entry.coordinator_epoch = m.coordinator_epoch;
        entry.last_timestamp_ms = m.timestamp_ms;
        let first_offset = entry.current_txn_first_offset.take()?;
        assert!(
            first_offset <= m.offset,
            "a transaction ends after it starts"
        );
        Some(CompletedTxn {
            producer_id: m.producer_id,
            first_offset,
            last_offset: m.offset,
            aborted: m.aborted,
        })
    }

    /// Applies a marker read back from the log (recovery), without validation.
    pub fn replay_marker(&mut self, m: &IncomingMarker) -> Option<CompletedTxn> {
        let mut entry = self
            .producers
            .remove(&m.producer_id)
            .unwrap_or_else(|| ProducerEntry::new(m.epoch));
        let completed = Self::close_txn(&mut entry, m);
        self.insert(m.producer_id, entry);
        completed
    }

    /// Applies a transaction marker batch read back from the log (`is_txn_marker`),
    /// `aborted` as its control record says (the header does not), and returns the
    /// transaction it closed, if one was open (recovery and followers rebuild the
    /// aborted-transaction index from it).
    pub fn replay_marker_batch(&mut self, h: &BatchHeader, aborted: bool) -> Option<CompletedTxn> {
        let producer_id = ProducerId(h.producer_id);
        let coordinator_epoch = self
            .producers
            .get(&producer_id)
            .map_or(-1, |e| e.coordinator_epoch);
        self.replay_marker(&IncomingMarker {
            producer_id,
            epoch: ProducerEpoch(h.producer_epoch),
            coordinator_epoch,
            offset: Offset(h.base_offset),
            timestamp_ms: h.max_timestamp,
            aborted,
            transaction_version: 0,
        })
    }

    /// The last stable offset right after `completed` closed (Kafka's
    /// `ProducerStateManager.lastStableOffset`): the first offset of the oldest
    /// transaction still open, or the offset after the marker.
    pub fn stable_offset_after(&self, completed: &CompletedTxn) -> Offset {
        self.first_unstable_offset()
            .map_or(Offset(completed.last_offset.0 + 1), |o| {
                o.min(Offset(completed.last_offset.0 + 1))
            })
    }

    /// The first offset of the oldest open transaction (`None`: none is open). The last
    /// stable offset is the minimum of this and the high watermark.
    pub fn first_unstable_offset(&self) -> Option<Offset> {
        self.producers
            .values()
            .filter_map(|e| e.current_txn_first_offset)
            .min()
    }

    /// Open transactions, as (producer id, first offset).
    pub fn open_transactions(&self) -> impl Iterator<Item = (ProducerId, Offset)> + '_ {
        self.producers
            .iter()
            .filter_map(|(id, e)| e.current_txn_first_offset.map(|o| (*id, o)))
    }

    /// Stores what `check` decided, after the batches were written.
    pub fn commit(&mut self, update: ProducerUpdate, now_ms: i64) {
        self.maybe_expire(now_ms);
        for (id, entry) in update.entries {
            self.insert(id, entry);
        }
    }

    /// Applies one batch read back from the log (recovery): no validation, as Kafka does
    /// for batches that are already in the log.
    /// A transaction marker (a transactional control batch) closes its producer's open
    /// transaction; its coordinator epoch, in the record, is not read here.
    pub fn replay(&mut self, h: &BatchHeader) {
        if is_txn_marker(h) {
            self.replay_marker_batch(h, false);
            return;
        }
        let Some(b) = IncomingBatch::from_header(h) else {
            return;
        };
        if b.first_sequence < 0 && !b.transactional {
            return;
        }
        let mut entry = self
            .producers
            .remove(&b.producer_id)
            .unwrap_or_else(|| ProducerEntry::new(b.epoch));
        if b.first_sequence < 0 {
            // A coordinator's transactional batch (see `check_from`).
            entry.open_unsequenced(&b);
            self.insert(b.producer_id, entry);
            return;
        }
        entry.add(b.epoch, b.metadata());
        if b.transactional && entry.current_txn_first_offset.is_none() {
            entry.current_txn_first_offset = Some(b.base_offset);
        }
        self.insert(b.producer_id, entry);
    }

    fn insert(&mut self, id: ProducerId, entry: ProducerEntry) {
        if !self.producers.contains_key(&id) && self.producers.len() >= self.producers_max {
            // Forget the least recently active producer (ties: the smallest id).
            // Producers with an open transaction are kept: their marker must find them.
            let oldest = self
                .producers
                .iter()
                .filter(|(_, e)| e.current_txn_first_offset.is_none())
                .min_by_key(|(pid, e)| (e.last_timestamp_ms, **pid))
                .map(|(pid, _)| *pid);
            if let Some(pid) = oldest {
                self.producers.remove(&pid);
            }
        }
        self.producers.insert(id, entry);
    }

    /// Forgets every producer whose newest batch is `producer.id.expiration.ms` old.
    pub fn remove_expired(&mut self, now_ms: i64) -> usize {
        let before = self.producers.len();
        let ttl = self.expiration_ms;
        self.producers.retain(|_, e| {
            e.current_txn_first_offset.is_some() || now_ms.saturating_sub(e.last_timestamp_ms) < ttl
        });
        self.next_expiration_check_ms =
            Some(now_ms.saturating_add(PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS));
        before - self.producers.len()
    }

    /// `remove_expired` at most once per check interval.
    pub fn maybe_expire(&mut self, now_ms: i64) {
        if self.next_expiration_check_ms.is_none_or(|at| now_ms >= at) {
            self.remove_expired(now_ms);
        }
    }

    /// The snapshot encoding of the state (deterministic: producers in id order).
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            SNAPSHOT_HEADER_BYTES + self.producers.len() * (ENTRY_HEADER_BYTES + BATCH_BYTES),
        );
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.push(SNAPSHOT_VERSION);
        out.extend_from_slice(&[0; 4]);
        let count = u32::try_from(self.producers.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for (id, e) in self.producers.iter().take(count as usize) {
            out.extend_from_slice(&id.0.to_be_bytes());
            out.extend_from_slice(&e.epoch.0.to_be_bytes());
            out.extend_from_slice(&e.last_timestamp_ms.to_be_bytes());
            out.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
            let txn_first = e.current_txn_first_offset.map_or(-1, |o| o.0);
            out.extend_from_slice(&txn_first.to_be_bytes());
            let n = e.batches.len().min(PRODUCER_BATCHES_RETAINED);
            out.push(n as u8);
            for b in e.batches.iter().take(n) {
                out.extend_from_slice(&b.first_sequence.to_be_bytes());
                out.extend_from_slice(&b.last_sequence.to_be_bytes());
                out.extend_from_slice(&b.base_offset.0.to_be_bytes());
                out.extend_from_slice(&b.last_offset.0.to_be_bytes());
                out.extend_from_slice(&b.timestamp_ms.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out[9..]);
        out[5..9].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// Replaces the producers with those of a snapshot; every count is checked against
    /// the bytes present and the limits before anything is allocated for it.
    pub fn load_snapshot(&mut self, bytes: &[u8]) -> Result<(), String> {
        if bytes.len() < SNAPSHOT_HEADER_BYTES || &bytes[..4] != SNAPSHOT_MAGIC {
            return Err("not a producer-state snapshot".into());
        }
        let version = bytes[4];
        if version != SNAPSHOT_VERSION && version != SNAPSHOT_VERSION_V1 {
            return Err(format!("unknown snapshot version {version}"));
        }
        let entry_header_bytes = if version == SNAPSHOT_VERSION {
            ENTRY_HEADER_BYTES
        } else {
            ENTRY_HEADER_BYTES_V1
        };
        let stored = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
        let actual = crc32c::crc32c(&bytes[9..]);
        if stored != actual {
            return Err(format!(
                "CRC mismatch: stored {stored:#010x}, computed {actual:#010x}"
            ));
        }
        let mut r = Reader {
            buf: bytes,
            at: SNAPSHOT_HEADER_BYTES - 4,
        };
        let count = r.u32()? as usize;
        if count > self.producers_max || count > r.remaining() / entry_header_bytes {
            return Err(format!("{count} producers announced, too many"));
        }
        let mut producers = BTreeMap::new();
        for _ in 0..count {
            let id = ProducerId(r.i64()?);
            let mut e = ProducerEntry::new(ProducerEpoch(r.i16()?));
            e.last_timestamp_ms = r.i64()?;
            if version == SNAPSHOT_VERSION {
                e.coordinator_epoch = r.i32()?;
                let first = r.i64()?;
                if first < -1 {
                    return Err(format!("bad transaction offset for producer {}", id.0));
                }
                e.current_txn_first_offset = (first >= 0).then_some(Offset(first));
            }
            let n = usize::from(r.u8()?);
            if n > PRODUCER_BATCHES_RETAINED || id.0 < 0 {
                return Err(format!("bad entry for producer {}", id.0));
            }
            for _ in 0..n {
                e.batches.push_back(ProducerBatch {
                    first_sequence: r.i32()?,
                    last_sequence: r.i32()?,
                    base_offset: Offset(r.i64()?),
                    last_offset: Offset(r.i64()?),
                    timestamp_ms: r.i64()?,
                });
            }
            producers.insert(id, e);
        }
        if r.remaining() != 0 {
            return Err(format!("{} trailing bytes", r.remaining()));
        }
        self.producers = producers;
        Ok(())
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.at
    }
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let end = self.at + N;
        let bytes = self
            .buf
            .get(self.at..end)
            .ok_or_else(|| "snapshot ends early".to_string())?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }
    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(self.take()?))
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.take()?))
    }
}

// ---- snapshot files (the only I/O of this module) ----

pub(crate) fn snapshot_file_name(offset: i64) -> String {
    format!("{offset:020}.{SNAPSHOT_SUFFIX}")
}

/// The snapshot files in `dir`, oldest first.
pub(crate) fn list_snapshots(dir: &Path) -> io::Result<Vec<(i64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".snapshot") else {
            continue;
        };
        if stem.len() == 20 && stem.bytes().all(|c| c.is_ascii_digit()) {
            if let Ok(offset) = stem.parse::<i64>() {
                out.push((offset, entry.path()));
            }
        }
    }
    out.sort_unstable_by_key(|(o, _)| *o);
    Ok(out)
}

/// Writes `<offset>.snapshot` through a temporary file and a rename; `durable`: fsync the
/// file first (the caller syncs the directory). Then keeps only the newest
/// `PRODUCER_SNAPSHOTS_KEPT` snapshots.
pub(crate) fn write_snapshot(
    fs: &dyn crate::fs::FileSystem,
    dir: &Path,
    offset: i64,
    bytes: &[u8],
    durable: bool,
) -> io::Result<()> {
    static UNIQUE: AtomicU64 = AtomicU64::new(0);
    let name = snapshot_file_name(offset);
    let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!("{name}.{}-{n}.tmp", std::process::id()));
    {
        let mut f: File = fs.open(
            &tmp,
            OpenOptions::new().write(true).create(true).truncate(true),
        )?;
        fs.write_all(&tmp, &mut f, bytes)?;
        if durable {
            fs.sync_data(&tmp, &f)?;
        }
    }
    fs.rename(&tmp, &dir.join(&name))?;
    let all = list_snapshots(dir)?;
    let excess = all.len().saturating_sub(PRODUCER_SNAPSHOTS_KEPT);
    for (o, path) in &all[..excess] {
        if *o != offset {
            let _ = fs.remove_file(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(pid: i64, epoch: i16, first: i32, count: i32, base: i64) -> IncomingBatch {
        let last = if i64::from(first) + i64::from(count) - 1 > i64::from(i32::MAX) {
            (i64::from(first) + i64::from(count) - 1 - i64::from(i32::MAX) - 1) as i32
        } else {
            first + (count - 1)
        };
        IncomingBatch {
            producer_id: ProducerId(pid),
            epoch: ProducerEpoch(epoch),
            first_sequence: first,
            last_sequence: last,
            base_offset: Offset(base),
            last_offset: Offset(base + i64::from(count) - 1),
            timestamp_ms: 1_000 + base,
            transactional: false,
        }
    }

    fn txn(pid: i64, epoch: i16, first: i32, count: i32, base: i64) -> IncomingBatch {
        IncomingBatch {
            transactional: true,
            ..b(pid, epoch, first, count, base)
        }
    }

    fn marker(
        pid: i64,
        epoch: i16,
        coordinator_epoch: i32,
        offset: i64,
        aborted: bool,
    ) -> IncomingMarker {
        IncomingMarker {
            producer_id: ProducerId(pid),
            epoch: ProducerEpoch(epoch),
            coordinator_epoch,
            offset: Offset(offset),
            timestamp_ms: 5_000,
            aborted,
            transaction_version: 0,
        }
    }

    fn tv2_marker(pid: i64, epoch: i16, offset: i64, aborted: bool) -> IncomingMarker {
        IncomingMarker {
            transaction_version: 2,
            ..marker(pid, epoch, 0, offset, aborted)
        }
    }

    fn apply_marker(
        m: &mut ProducerStateMap,
        mk: &IncomingMarker,
    ) -> Result<Option<CompletedTxn>, ProducerError> {
        let (u, done) = m.check_marker(mk)?;
        m.commit(u, 2_000);
        Ok(done)
    }

    #[test]
    fn transactions_open_at_their_first_batch_and_close_at_a_marker() {
        let mut m = ProducerStateMap::default();
        assert_eq!(m.first_unstable_offset(), None);
        apply(&mut m, &[txn(1, 0, 0, 2, 10)]).unwrap();
        apply(&mut m, &[txn(2, 0, 0, 1, 12)]).unwrap();
        apply(&mut m, &[txn(1, 0, 2, 1, 13)]).unwrap();
        assert_eq!(m.first_unstable_offset(), Some(Offset(10)));
        assert_eq!(m.open_transactions().count(), 2);
        // A plain batch from a producer inside a transaction: INVALID_TXN_STATE.
        let e = apply(&mut m, &[b(1, 0, 3, 1, 14)]).unwrap_err();
        assert_eq!(e.kafka_code(), ErrorCode::INVALID_TXN_STATE);
        let done = apply_marker(&mut m, &marker(1, 0, 0, 14, false)).unwrap();
        assert_eq!(
            done.unwrap(),
            CompletedTxn {
                producer_id: ProducerId(1),
                first_offset: Offset(10),
                last_offset: Offset(14),
                aborted: false
            }
        );
        assert_eq!(
            m.first_unstable_offset(),
            Some(Offset(12)),
            "producer 2 still open"
        );
        let done = apply_marker(&mut m, &marker(2, 0, 0, 15, true))
            .unwrap()
            .unwrap();
        assert_eq!((done.first_offset, done.aborted), (Offset(12), true));
        assert_eq!(m.first_unstable_offset(), None);
        // The next transaction of producer 1 continues its sequences.
        apply(&mut m, &[txn(1, 0, 3, 1, 16)]).unwrap();
        assert_eq!(m.first_unstable_offset(), Some(Offset(16)));
    }

    #[test]
    fn markers_check_producer_and_coordinator_epochs() {
        let mut m = ProducerStateMap::default();
        apply(&mut m, &[txn(1, 3, 0, 1, 0)]).unwrap();
        let e = apply_marker(&mut m, &marker(1, 2, 0, 1, true)).unwrap_err();
        assert_eq!(e.kafka_code(), ErrorCode::INVALID_PRODUCER_EPOCH);
        apply_marker(&mut m, &marker(1, 3, 5, 1, true)).unwrap();
        apply(&mut m, &[txn(1, 3, 1, 1, 2)]).unwrap();
        let e = apply_marker(&mut m, &marker(1, 3, 4, 3, true)).unwrap_err();
        assert_eq!(e.kafka_code(), ErrorCode::TRANSACTION_COORDINATOR_FENCED);
        // A fencing marker (epoch bumped) closes the transaction and resets sequences.
        let done = apply_marker(&mut m, &marker(1, 4, 5, 3, true)).unwrap();
        assert_eq!(done.unwrap().first_offset, Offset(2));
        assert_eq!(m.get(ProducerId(1)).unwrap().epoch, ProducerEpoch(4));
        let e = apply(&mut m, &[txn(1, 3, 2, 1, 4)]).unwrap_err();
        assert_eq!(
            e.kafka_code(),
            ErrorCode::INVALID_PRODUCER_EPOCH,
            "the fenced producer"
        );
        apply(&mut m, &[txn(1, 4, 0, 1, 4)]).unwrap();
        // A marker for a producer with nothing open completes no transaction
        // (Kafka's `appendEndTxnMarker`), whether the producer is unknown or its
        // transaction ended already; it still takes the marker's epochs.
        assert_eq!(apply_marker(&mut m, &marker(9, 0, 5, 8, true)), Ok(None));
        assert_eq!(m.get(ProducerId(9)).unwrap().coordinator_epoch, 5);
        let done = apply_marker(&mut m, &marker(1, 4, 5, 9, true)).unwrap();
        assert_eq!(done.map(|d| d.first_offset), Some(Offset(4)));
        assert_eq!(apply_marker(&mut m, &marker(1, 5, 5, 10, true)), Ok(None));
        assert_eq!(m.get(ProducerId(1)).unwrap().epoch, ProducerEpoch(5));
        assert_eq!(m.first_unstable_offset(), None);
    }

    /// KIP-1228: a transaction version 2 marker must bump the epoch of the
    /// transaction it ends; the same epoch is refused while the transaction
    /// is open (a late marker of an earlier transaction, KAFKA-17754's kind)
    /// and allowed as a retry once it is closed.
    #[test]
    fn tv2_markers_need_a_bumped_epoch_unless_they_retry() {
        let mut m = ProducerStateMap::default();
        apply(&mut m, &[txn(1, 3, 0, 1, 0)]).unwrap();
        // Same epoch as the open transaction's batches: refused for TV2 ...
        let e = apply_marker(&mut m, &tv2_marker(1, 3, 1, false)).unwrap_err();
        assert_eq!(e.kafka_code(), ErrorCode::INVALID_PRODUCER_EPOCH);
        assert_eq!(m.first_unstable_offset(), Some(Offset(0)), "still open");
        // ... an older one too, and not for a TV0/TV1 marker.
        let e = apply_marker(&mut m, &tv2_marker(1, 2, 1, false)).unwrap_err();
        assert_eq!(e.kafka_code(), ErrorCode::INVALID_PRODUCER_EPOCH);
        let (_, done) = m.check_marker(&marker(1, 3, 0, 1, false)).unwrap();
        assert_eq!(
            done.map(|d| d.first_offset),
            Some(Offset(0)),
            "TV1 keeps the old rule"
        );
        // The bumped epoch closes it.
        let done = apply_marker(&mut m, &tv2_marker(1, 4, 1, false))
            .unwrap()
            .unwrap();
        assert_eq!((done.first_offset, done.aborted), (Offset(0), false));
        assert_eq!(m.get(ProducerId(1)).unwrap().epoch, ProducerEpoch(4));
        assert_eq!(m.first_unstable_offset(), None);
        // Its retry (same epoch, nothing open) is written again, ending nothing.
        assert_eq!(apply_marker(&mut m, &tv2_marker(1, 4, 2, false)), Ok(None));
        // The next transaction at epoch 4: its marker needs epoch 5.
        apply(&mut m, &[txn(1, 4, 0, 1, 3)]).unwrap();
        let e = apply_marker(&mut m, &tv2_marker(1, 4, 4, true)).unwrap_err();
        assert_eq!(e.kafka_code(), ErrorCode::INVALID_PRODUCER_EPOCH);
        let done = apply_marker(&mut m, &tv2_marker(1, 5, 4, true))
            .unwrap()
            .unwrap();
        assert_eq!((done.first_offset, done.aborted), (Offset(3), true));
    }

    /// At `i16::MAX` the epoch cannot be bumped: an equal TV2 epoch is
    /// accepted even while a transaction is open (Kafka's exception).
    #[test]
    fn tv2_marker_at_the_last_epoch_is_accepted() {
        let mut m = ProducerStateMap::default();
        apply(&mut m, &[txn(1, i16::MAX, 0, 1, 0)]).unwrap();
        let done = apply_marker(&mut m, &tv2_marker(1, i16::MAX, 1, true))
            .unwrap()
            .unwrap();
        assert_eq!((done.first_offset, done.aborted), (Offset(0), true));
    }

    #[test]
    fn replay_tracks_transactions_like_appends() {
        let mut live = ProducerStateMap::default();
        let mut replayed = ProducerStateMap::default();
        apply(&mut live, &[txn(1, 0, 0, 2, 0)]).unwrap();
        apply(&mut live, &[txn(2, 0, 0, 1, 2)]).unwrap();
        let done = apply_marker(&mut live, &marker(1, 0, 1, 3, true)).unwrap();
        for (pid, first, count, base) in [(1, 0, 2, 0), (2, 0, 1, 2)] {
            let mut h = fjord_records::BatchHeader::parse(
                &fjord_records::BatchBuilder::new(fjord_records::Compression::None)
                    .producer(pid, 0, first)
                    .transactional(true)
                    .push(0, None, Some(b"v".as_slice()), &[])
                    .build(base),
            )
            .unwrap();
            h.last_offset_delta = count - 1;
            h.records_count = count;
            replayed.replay(&h);
        }
        assert_eq!(replayed.replay_marker(&marker(1, 0, 1, 3, true)), done);
        assert_eq!(
            replayed.first_unstable_offset(),
            live.first_unstable_offset()
        );
        assert_eq!(replayed.first_unstable_offset(), Some(Offset(2)));
    }

    #[test]
    fn open_transactions_are_not_expired_or_evicted() {
        let mut m = ProducerStateMap::new(100, 2);
        apply(&mut m, &[txn(1, 0, 0, 1, 0)]).unwrap();
        apply(&mut m, &[b(2, 0, 0, 1, 1)]).unwrap();
        apply(&mut m, &[b(3, 0, 0, 1, 2)]).unwrap();
        assert!(
            m.get(ProducerId(1)).is_some(),
            "the open transaction's producer stays"
        );
        assert!(m.get(ProducerId(2)).is_none());
        assert_eq!(m.remove_expired(1_000_000), 1);
        assert!(m.get(ProducerId(1)).is_some());
    }

    #[test]
    fn version_1_snapshots_still_load() {
        let mut m = ProducerStateMap::default();
        apply(&mut m, &[b(7, 1, 0, 2, 40)]).unwrap();
        let v2 = m.encode_snapshot();
        // Rebuild the same state as version 1: no coordinator epoch, no open transaction.
        let mut v1 = Vec::new();
        v1.extend_from_slice(SNAPSHOT_MAGIC);
        v1.push(SNAPSHOT_VERSION_V1);
        v1.extend_from_slice(&[0; 4]);
        v1.extend_from_slice(&v2[9..13]);
        let entry = &v2[13..];
        v1.extend_from_slice(&entry[..18]);
        v1.extend_from_slice(&entry[18 + 12..]);
        let crc = crc32c::crc32c(&v1[9..]);
        v1[5..9].copy_from_slice(&crc.to_be_bytes());
        let mut back = ProducerStateMap::default();
        back.load_snapshot(&v1).unwrap();
        assert_eq!(back.producers, m.producers);
    }

    fn apply(
        m: &mut ProducerStateMap,
        batches: &[IncomingBatch],
    ) -> Result<Verdict, ProducerError> {
        let v = m.check(batches, batches.len())?;
        if let Verdict::Append(u) = v {
            m.commit(u, 2_000);
            return Ok(Verdict::Append(ProducerUpdate::default()));
        }
        Ok(v)
    }

    fn is_dup(v: &Verdict, base: i64) -> bool {
        matches!(v, Verdict::Duplicate { first, .. } if first.base_offset == Offset(base))
    }

    #[test]
    fn sequences_duplicates_and_epochs() {
        let mut m = ProducerStateMap::default();
        // Unknown producer: any first sequence is accepted.
        assert!(matches!(
            apply(&mut m, &[b(1, 0, 7, 3, 0)]),
            Ok(Verdict::Append(_))
        ));
        assert!(matches!(
            apply(&mut m, &[b(1, 0, 10, 2, 3)]),
            Ok(Verdict::Append(_))
        ));
        // Retry of either retained batch: the original offsets, whatever offset it would get now.
        assert!(is_dup(&apply(&mut m, &[b(1, 0, 7, 3, 99)]).unwrap(), 0));
        assert!(is_dup(&apply(&mut m, &[b(1, 0, 10, 2, 99)]).unwrap(), 3));
        // Gap and overlap.
        let gap = apply(&mut m, &[b(1, 0, 13, 1, 5)]).unwrap_err();
        assert_eq!(gap.kafka_code(), ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER);
        assert!(matches!(
            gap,
            ProducerError::OutOfOrderSequence { expected: 12, .. }
        ));
        assert!(apply(&mut m, &[b(1, 0, 8, 3, 5)]).is_err());
        // New epoch must start at 0.
        let e = apply(&mut m, &[b(1, 1, 12, 1, 5)]).unwrap_err();
        assert!(matches!(
            e,
            ProducerError::OutOfOrderSequence { expected: 0, .. }
        ));
        assert!(matches!(
            apply(&mut m, &[b(1, 1, 0, 1, 5)]),
            Ok(Verdict::Append(_))
        ));
        // Old epoch is fenced, even for what was a duplicate.
        let e = apply(&mut m, &[b(1, 0, 10, 2, 6)]).unwrap_err();
        assert_eq!(e.kafka_code(), ErrorCode::INVALID_PRODUCER_EPOCH);
        assert_eq!(m.get(ProducerId(1)).map(|e| e.batches.len()), Some(1));
        // No sequence on an idempotent batch.
        let e = apply(&mut m, &[b(2, 0, -1, 1, 6)]).unwrap_err();
        assert_eq!(e.kafka_code(), ErrorCode::INVALID_RECORD);
    }

    #[test]
    fn only_five_batches_are_retained_and_older_ones_are_out_of_order() {
        let mut m = ProducerStateMap::default();
        for i in 0..7 {
            apply(&mut m, &[b(5, 0, i, 1, i64::from(i))]).unwrap();
        }
        assert_eq!(m.get(ProducerId(5)).map(|e| e.batches.len()), Some(5));
        assert!(is_dup(&apply(&mut m, &[b(5, 0, 2, 1, 50)]).unwrap(), 2));
        let e = apply(&mut m, &[b(5, 0, 1, 1, 50)]).unwrap_err();
        assert_eq!(e.kafka_code(), ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER);
    }

    #[test]
    fn several_batches_in_one_append_are_checked_in_order() {
        let mut m = ProducerStateMap::default();
        let two = [b(1, 0, 0, 2, 0), b(1, 0, 2, 3, 2)];
        assert!(matches!(apply(&mut m, &two), Ok(Verdict::Append(_))));
        match apply(&mut m, &two).unwrap() {
            Verdict::Duplicate { first, last } => {
                assert_eq!(
                    (first.base_offset, last.last_offset),
                    (Offset(0), Offset(4))
                )
            }
            v => panic!("expected a duplicate, got {v:?}"),
        }
        // Out of order inside one append.
        assert!(apply(&mut m, &[b(1, 0, 5, 1, 5), b(1, 0, 7, 1, 6)]).is_err());
        assert_eq!(
            m.get(ProducerId(1)).and_then(|e| e.last_sequence()),
            Some(4)
        );
        // A retried batch together with a new one.
        let e = apply(&mut m, &[b(1, 0, 2, 3, 5), b(1, 0, 5, 1, 8)]).unwrap_err();
        assert!(matches!(
            e,
            ProducerError::PartialDuplicate {
                duplicates: 1,
                batches: 2
            }
        ));
        // The same batch twice in one append: the second is a duplicate of the first.
        assert!(apply(&mut m, &[b(1, 0, 5, 1, 5), b(1, 0, 5, 1, 6)]).is_err());
        // Non-idempotent batches count for "all or none".
        let v = m.check(&[b(1, 0, 0, 2, 9)], 2);
        assert!(matches!(v, Err(ProducerError::PartialDuplicate { .. })));
    }

    #[test]
    fn sequence_wraps_at_i32_max() {
        let mut m = ProducerStateMap::default();
        apply(&mut m, &[b(9, 3, i32::MAX - 1, 2, 0)]).unwrap();
        assert_eq!(
            m.get(ProducerId(9)).and_then(|e| e.last_sequence()),
            Some(i32::MAX)
        );
        assert!(matches!(
            apply(&mut m, &[b(9, 3, 0, 2, 2)]),
            Ok(Verdict::Append(_))
        ));
        // A batch spanning the wrap.
        let mut m = ProducerStateMap::default();
        apply(&mut m, &[b(9, 3, i32::MAX - 1, 4, 0)]).unwrap();
        assert_eq!(
            m.get(ProducerId(9)).and_then(|e| e.last_sequence()),
            Some(1)
        );
        assert!(is_dup(
            &apply(&mut m, &[b(9, 3, i32::MAX - 1, 4, 7)]).unwrap(),
            0
        ));
        assert!(matches!(
            apply(&mut m, &[b(9, 3, 2, 1, 4)]),
            Ok(Verdict::Append(_))
        ));
    }

    #[test]
    fn expiration_and_the_producer_cap() {
        let mut m = ProducerStateMap::new(1_000, 3);
        for pid in 0..3 {
            let mut x = b(pid, 0, 0, 1, pid);
            x.timestamp_ms = 100 * pid;
            let Verdict::Append(u) = m.check(&[x], 1).unwrap() else {
                panic!("fresh producer is not a duplicate");
            };
            m.commit(u, 0);
        }
        // A fourth producer evicts the least recently active one (pid 0).
        apply(&mut m, &[b(3, 0, 0, 1, 3)]).unwrap();
        assert_eq!(m.len(), 3);
        assert!(m.get(ProducerId(0)).is_none());
        // pid 1 (ts 100) and 2 (ts 200) expire at 1_150; 3 (ts 1_003) stays.
        assert_eq!(m.remove_expired(1_150), 1);
        assert_eq!(m.remove_expired(1_250), 1);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn snapshot_round_trips_and_rejects_damage() {
        let mut m = ProducerStateMap::default();
        for pid in [3, 1, 2] {
            for i in 0..7 {
                apply(&mut m, &[b(pid, 2, i * 2, 2, pid * 100 + i64::from(i) * 2)]).unwrap();
            }
        }
        apply(&mut m, &[txn(4, 0, 0, 1, 900)]).unwrap();
        apply_marker(&mut m, &marker(5, 0, 3, 901, true)).unwrap();
        assert!(m
            .get(ProducerId(4))
            .unwrap()
            .current_txn_first_offset
            .is_some());
        let bytes = m.encode_snapshot();
        let mut back = ProducerStateMap::default();
        back.load_snapshot(&bytes).unwrap();
        assert_eq!(back.producers, m.producers);
        assert_eq!(back.encode_snapshot(), bytes);
        for cut in 0..bytes.len() {
            assert!(
                back.clone().load_snapshot(&bytes[..cut]).is_err(),
                "cut {cut}"
            );
        }
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert!(back.clone().load_snapshot(&bad).is_err(), "flip {at}");
        }
        // An empty state is a valid snapshot.
        let empty = ProducerStateMap::default().encode_snapshot();
        back.load_snapshot(&empty).unwrap();
        assert!(back.is_empty());
    }

    /// A coordinator's transactional batch without a sequence (TxnOffsetCommit
    /// records): refused from clients, taken from a coordinator with its epoch
    /// checked; it opens the transaction, which the marker closes, and it is
    /// replayed the same way.
    #[test]
    fn coordinator_batches_without_a_sequence() {
        let mut m = ProducerStateMap::default();
        let unsequenced = txn(7, 2, -1, 1, 10);
        assert!(matches!(
            m.check(&[unsequenced], 1),
            Err(ProducerError::MissingSequence { .. })
        ));
        let Verdict::Append(u) = m.check_from(&[unsequenced], 1, true).unwrap() else {
            panic!("not a duplicate")
        };
        m.commit(u, 2_000);
        let e = m.get(ProducerId(7)).unwrap();
        assert_eq!(
            (e.epoch, e.current_txn_first_offset),
            (ProducerEpoch(2), Some(Offset(10)))
        );
        assert!(e.batches.is_empty(), "no sequence is remembered");
        // The same again is not a duplicate: it is appended too.
        let Verdict::Append(u) = m.check_from(&[txn(7, 2, -1, 1, 11)], 1, true).unwrap() else {
            panic!("not a duplicate")
        };
        m.commit(u, 2_000);
        assert_eq!(
            m.get(ProducerId(7)).unwrap().current_txn_first_offset,
            Some(Offset(10))
        );
        assert!(matches!(
            m.check_from(&[txn(7, 1, -1, 1, 12)], 1, true),
            Err(ProducerError::InvalidEpoch { .. })
        ));
        let done = apply_marker(&mut m, &marker(7, 2, 0, 12, false)).unwrap();
        assert_eq!(done.map(|d| d.first_offset), Some(Offset(10)));
        assert_eq!(m.get(ProducerId(7)).unwrap().current_txn_first_offset, None);
        // Replay of the same batch header opens it again.
        let mut r = ProducerStateMap::default();
        let h = fjord_records::BatchHeader::parse(
            &fjord_records::BatchBuilder::new(fjord_records::Compression::None)
                .producer(7, 2, -1)
                .transactional(true)
                .push(0, None, Some(b"v".as_slice()), &[])
                .build(10),
        )
        .unwrap();
        r.replay(&h);
        assert_eq!(
            r.get(ProducerId(7)).unwrap().current_txn_first_offset,
            Some(Offset(10))
        );
    }
}
