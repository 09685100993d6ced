//! Fjord's transaction coordinator (Kafka's `TransactionCoordinator` and
//! `TransactionStateManager`, KIP-98): InitProducerId with a transactional
//! id, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, the abort of transactions
//! that outlive `transaction.timeout.ms`, the expiry of idle transactional ids
//! (`transactional.id.expiration.ms`), DescribeTransactions and
//! ListTransactions. The state of each transactional id lives in
//! `__transaction_state` ([`records`]: Kafka's key and value layouts).
//!
//! It is a deterministic, sans-IO state machine ([`TxnCoordinator`]): it never
//! reads a clock (time comes in as `now_ms`), never does I/O, never spawns, and
//! takes new producer ids from the caller. Each call pushes [`Output`]s.
//!
//! Transaction versions (KIP-890): each request states the client's
//! ([`TxnProducer::transaction_version`]). Version 0/1 clients (those that
//! find `transaction.version` below 2: librdkafka, kafka-python, older Java
//! clients) get the epoch bumped by InitProducerId only (and by the
//! coordinator when it fences or times out a transaction). Version 2 clients
//! (EndTxn v5+, and the partition leaders that add partitions for Produce v12+
//! and TxnOffsetCommit v5+ with AddPartitionsToTxn v5+) get their epoch bumped
//! at the end of every transaction: the markers carry the bumped epoch, EndTxn
//! answers it, and an exhausted epoch moves the transactional id to a new
//! producer id at the completion (Kafka's `prepareAbortOrCommit` /
//! `prepareComplete`). So a retried or late EndTxn of an earlier transaction
//! can never end a later one (KAFKA-17754): it names an older epoch. Values are
//! written in version 1 (flexible, with the client's transaction version) once
//! the finalized `transaction.version` is at least 1
//! ([`TxnCoordinator::set_transaction_version`]), in version 0 before.
//!
//! # Contract with the shell (the broker)
//! - Every state change is first written: [`Output::Persist`] carries the
//!   record for `__transaction_state` (partition [`state_partition_for`]) and a
//!   [`WriteId`]. The change is applied (and the request answered) only when
//!   the shell reports the append with [`TxnCoordinator::append_done`] —
//!   success once the record is durable (on one node: fsynced; in a cluster:
//!   under the high watermark), or the Kafka error code to answer. Until then
//!   the transactional id has a pending transition, and other requests for it
//!   get CONCURRENT_TRANSACTIONS, as in Kafka.
//! - [`Output::WriteMarkers`]: write a COMMIT or ABORT control batch with the
//!   given producer id and epoch into every listed partition, then call
//!   [`TxnCoordinator::markers_done`]; the coordinator then writes the
//!   `CompleteCommit`/`CompleteAbort` state.
//! - Every request (a [`RequestToken`]) gets exactly one [`Output::Respond`],
//!   possibly after an append completes.
//! - Call [`TxnCoordinator::tick`] when [`TxnCoordinator::next_deadline_ms`]
//!   has come: it aborts timed-out transactions, expires idle transactional
//!   ids and retries a completion whose write failed.
//! - At start-up, feed every record of the shard's `__transaction_state`
//!   partition in log order to [`TxnCoordinator::replay`], then call
//!   [`TxnCoordinator::finish_replay`], which re-sends the markers of the
//!   transactions that were prepared but not completed.
//! - Kafka answers PRODUCER_FENCED as INVALID_PRODUCER_EPOCH to clients of
//!   older request versions; that mapping is the shell's (it knows versions).

mod coordinator;
pub mod records;

#[cfg(test)]
mod tests;

use fjord_model::limits;
use fjord_model::{ErrorCode, PartitionIndex, ProducerEpoch, ProducerId, TopicPartition};

pub use coordinator::TxnCoordinator;

/// Errors of this crate: records of `__transaction_state` that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("__transaction_state record truncated while reading {field}")]
    Truncated { field: &'static str },
    #[error("__transaction_state record: invalid length {len} for {field}")]
    BadLength { field: &'static str, len: i64 },
    #[error("__transaction_state record: {field} is not UTF-8")]
    Utf8 { field: &'static str },
    #[error("__transaction_state record: unknown key type {0}")]
    UnknownKeyVersion(i16),
    #[error("__transaction_state record: unknown value version {0}")]
    UnknownValueVersion(i16),
    #[error("__transaction_state record: unknown transaction status {0}")]
    UnknownState(i8),
}

/// Kafka's `RecordBatch.NO_PRODUCER_EPOCH`: a transactional id whose producer
/// id was allocated but never handed out.
pub const NO_PRODUCER_EPOCH: ProducerEpoch = ProducerEpoch(-1);
/// Kafka's `RecordBatch.NO_PRODUCER_ID`.
pub const NO_PRODUCER_ID: ProducerId = ProducerId(-1);

/// The state of a transactional id (Kafka's `TransactionState`; the ids are
/// the `TransactionStatus` byte on disk, the names what
/// DescribeTransactions/ListTransactions carry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];
    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }
    pub fn from_id(id: i8) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.id() == id)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }
    /// Parse a state name as ListTransactions' `state_filters` carries it.
    pub fn parse(s: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|t| t.as_str() == s)
    }
    /// Kafka's `VALID_PREVIOUS_STATES`.
    pub fn may_follow(self, previous: TxnState) -> bool {
        use TxnState::*;
        match self {
            Empty => matches!(previous, Empty | CompleteCommit | CompleteAbort),
            Ongoing => matches!(previous, Ongoing | Empty | CompleteCommit | CompleteAbort),
            PrepareCommit => previous == Ongoing,
            // From Empty/Complete*: a transaction version 2 abort of a
            // transaction with no partitions (Kafka 4's valid previous states).
            PrepareAbort => matches!(
                previous,
                Ongoing | PrepareEpochFence | Empty | CompleteCommit | CompleteAbort
            ),
            CompleteCommit => previous == PrepareCommit,
            CompleteAbort => previous == PrepareAbort,
            Dead => matches!(previous, Empty | CompleteCommit | CompleteAbort),
            PrepareEpochFence => previous == Ongoing,
        }
    }
}

/// Settings of the coordinator (Kafka's names in the doc comments).
#[derive(Clone, Debug)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`.
    pub timeout_ms_max: i32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub abort_check_interval_ms: i64,
    /// `transactional.id.expiration.ms`.
    pub transactional_id_expiration_ms: i64,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            timeout_ms_max: limits::TRANSACTION_TIMEOUT_MS_MAX_DEFAULT,
            abort_check_interval_ms: limits::TRANSACTION_ABORT_CHECK_INTERVAL_MS_DEFAULT,
            transactional_id_expiration_ms: limits::TRANSACTIONAL_ID_EXPIRATION_MS_DEFAULT,
        }
    }
}

/// Identifies a request so its response can be routed later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestToken(pub u64);

/// Identifies one append to `__transaction_state`, reported back through
/// [`TxnCoordinator::append_done`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteId(pub u64);

/// How a transaction ends (the control record type of its markers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxnResult {
    Commit,
    Abort,
}

/// InitProducerId with a transactional id.
#[derive(Clone, Debug)]
pub struct InitRequest {
    pub transactional_id: String,
    pub transaction_timeout_ms: i32,
    /// v3+ (KIP-360): the producer id and epoch the client holds, when it
    /// asks to bump its own epoch; `None` for a producer starting afresh.
    pub expected: Option<(ProducerId, ProducerEpoch)>,
}

/// The producer a transactional request names: AddPartitionsToTxn,
/// AddOffsetsToTxn and EndTxn carry all three.
#[derive(Clone, Copy, Debug)]
pub struct TxnProducer<'a> {
    pub transactional_id: &'a str,
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
    /// The client's transaction version: 2 for EndTxn v5+ and for the
    /// AddPartitionsToTxn v5+ a partition leader sends for a Produce v12+ or
    /// TxnOffsetCommit v5+; 0 otherwise (Kafka's `TransactionVersion`).
    pub transaction_version: i16,
}

/// The first transaction version whose transactions bump the producer epoch
/// at their end (Kafka's `TransactionVersion.supportsEpochBump`).
pub const TRANSACTION_VERSION_EPOCH_BUMP: i16 = 2;

/// An answer to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// InitProducerId. On an error the id is -1 and the epoch -1.
    InitProducerId {
        error: ErrorCode,
        producer_id: ProducerId,
        producer_epoch: ProducerEpoch,
    },
    /// AddPartitionsToTxn (the code for every partition of the request),
    /// AddOffsetsToTxn.
    Done(ErrorCode),
    /// EndTxn: the producer id and epoch the producer continues with (with
    /// transaction version 2 the bumped epoch, or a new producer id at epoch
    /// 0 after an exhausted epoch); -1 and -1 on an error.
    Ended {
        error: ErrorCode,
        producer_id: ProducerId,
        producer_epoch: ProducerEpoch,
    },
}

/// What the shell must do after a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Answer a request.
    Respond(RequestToken, Reply),
    /// Append this record to `__transaction_state` (partition
    /// [`state_partition_for`]`(transactional_id)`); `value: None` is a
    /// tombstone. Report the outcome with [`TxnCoordinator::append_done`].
    Persist {
        write: WriteId,
        transactional_id: String,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    },
    /// Write a `result` control batch (producer id and epoch as given) into
    /// every partition, then call [`TxnCoordinator::markers_done`].
    WriteMarkers {
        transactional_id: String,
        producer_id: ProducerId,
        producer_epoch: ProducerEpoch,
        result: TxnResult,
        partitions: Vec<TopicPartition>,
        /// The transaction's version (its client's `transaction.version`
        /// level: 2 when the epoch was bumped for these markers), sent with
        /// them (WriteTxnMarkers v2, KIP-1228) for the partition leaders'
        /// epoch check.
        transaction_version: i16,
    },
}

/// One transaction as DescribeTransactions reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribedTxn {
    pub transactional_id: String,
    /// TRANSACTIONAL_ID_NOT_FOUND for an id this coordinator does not hold.
    pub error: ErrorCode,
    pub state: TxnState,
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
    pub timeout_ms: i32,
    /// -1 when no transaction has started.
    pub start_ms: i64,
    pub partitions: Vec<TopicPartition>,
}

/// One transaction as ListTransactions reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedTxn {
    pub transactional_id: String,
    pub producer_id: ProducerId,
    pub state: TxnState,
}

/// ListTransactions' filters; empty lists match everything.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub states: Vec<TxnState>,
    pub producer_ids: Vec<ProducerId>,
    /// v1+: only transactions running for longer than this (-1: no filter).
    pub duration_ms_min: i64,
}

/// Java's `String.hashCode` (over UTF-16 code units, wrapping).
fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// The `__transaction_state` partition of a transactional id, as Kafka
/// computes it (`abs(hashCode) % partitions`, with abs(i32::MIN) = 0).
pub fn state_partition_for(transactional_id: &str, partitions: i32) -> PartitionIndex {
    assert!(
        partitions > 0,
        "the transaction state topic needs a partition"
    );
    let h = java_string_hash(transactional_id);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    PartitionIndex(abs % partitions)
}
