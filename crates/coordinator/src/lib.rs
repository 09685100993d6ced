//! Fjord's coordinator runtime: the part of a coordinator that is not about
//! groups or transactions. Kafka keeps a coordinator's state in an internal
//! topic (`__consumer_offsets`, `__transaction_state`), split by key over the
//! topic's partitions; the runtime keeps one **shard** per partition:
//!
//! - a shard has its own lock and its own state machine (a [`Coordinator`]:
//!   deterministic, sans-IO; the group coordinator is one), so a request for a
//!   key in one shard never waits for another shard;
//! - **load**: a fresh state machine replays the partition's records in log
//!   order ([`PartitionIo::load`]), then [`Coordinator::loaded`]; shards load
//!   in parallel on background threads, and requests meanwhile get
//!   COORDINATOR_LOAD_IN_PROGRESS ([`ShardError::LoadInProgress`]);
//! - **write**: a call runs on the state machine under the shard's lock, the
//!   records it produced are appended through the one writer
//!   ([`PartitionIo::append`]) still under that lock (so the log order is the
//!   decision order), and the call's answer and the outputs that follow
//!   those records are released only once the records are durable;
//! - **timers**: one task wakes each shard when its
//!   [`Coordinator::next_deadline_ms`] comes and calls [`Coordinator::tick`];
//! - **a load that fails never serves partial state**: a read error, a
//!   corrupt batch or a record that cannot be replayed puts the shard in
//!   `Failed` (logged once per attempt, at error level, with the partition,
//!   offset and cause); its keys get NOT_COORDINATOR
//!   ([`ShardError::NotCoordinator`]), Kafka's answer, which clients handle
//!   by finding the coordinator again and retrying; the load is retried with
//!   an exponential backoff; other shards keep serving;
//! - **unload** ([`Runtime::close`]): every shard becomes `Closed` and drops
//!   its state; requests get NOT_COORDINATOR.
//!
//! Shard states: `Loading` → `Active` → `Closed`, or `Loading` → `Failed` →
//! (after the backoff, on the next request or timer) `Loading` again; any
//! state → `Closed`.
//!
//! The runtime is generic: the group coordinator uses it over
//! `__consumer_offsets` now; the transaction coordinator will over
//! `__transaction_state`. [`LogPartitions`] is the [`PartitionIo`] over
//! storage logs; tests use an in-memory one.

mod log_io;
mod runtime;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;

use fjord_model::{ErrorCode, Offset, ProducerEpoch, ProducerId};

pub use log_io::LogPartitions;
pub use runtime::{Runtime, RuntimeConfig, ShardStatus};

/// The state machine of one shard (one internal-topic partition). The
/// runtime calls it under the shard's lock only; it must not do I/O or read
/// a clock (time comes in as `now_ms`).
pub trait Coordinator: Send + 'static {
    /// What a call produces: records to append (see [`Coordinator::as_record`])
    /// and messages for the shell (answers to held requests), in order.
    type Output: Send + 'static;

    /// Apply one record read back from the partition, in log order, while
    /// loading. [`ReplayError::Skip`] is logged and loading goes on (a record
    /// type this version does not know); [`ReplayError::Fatal`] fails the load.
    fn replay(
        &mut self,
        offset: Offset,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), ReplayError>;

    /// A record of a transactional batch of `producer_id` (the group
    /// coordinator's TxnOffsetCommit records), in log order: pending until
    /// that producer's marker comes ([`Coordinator::replay_marker`]). By
    /// default replayed as any record.
    fn replay_transactional(
        &mut self,
        offset: Offset,
        producer_id: ProducerId,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), ReplayError> {
        let _ = producer_id;
        self.replay(offset, key, value)
    }

    /// A COMMIT (`commit`) or ABORT marker of `producer_id`'s transaction, in
    /// log order. By default ignored.
    fn replay_marker(&mut self, offset: Offset, producer_id: ProducerId, commit: bool) {
        let _ = (offset, producer_id, commit);
    }

    /// Every record is replayed; the shard becomes active at `now_ms`.
    fn loaded(&mut self, now_ms: i64);

    /// The earliest time at which [`Coordinator::tick`] has something to do.
    fn next_deadline_ms(&self) -> Option<i64>;

    /// Process what is due at `now_ms`.
    fn tick(&mut self, now_ms: i64, out: &mut Vec<Self::Output>);

    /// If `output` is a record to append to the shard's partition: its key
    /// and value (`None`: a tombstone).
    fn as_record(output: &Self::Output) -> Option<(&[u8], Option<&[u8]>)>;
}

/// A record that cannot be replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayError {
    /// Ignore the record (as Kafka ignores record types it does not know).
    Skip(String),
    /// The partition's contents cannot be trusted: fail the load.
    Fatal(String),
}

/// Why a shard's load failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("read failed at offset {offset}: {detail}")]
    Read { offset: i64, detail: String },
    #[error("corrupt batch at offset {offset}: {detail}")]
    Corrupt { offset: i64, detail: String },
    #[error("record at offset {offset} cannot be replayed: {detail}")]
    Replay { offset: i64, detail: String },
    #[error("no such partition")]
    NoPartition,
    #[error("the runtime is closing")]
    Closed,
}

/// Why an append failed (the shard's records of that call are not in the log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WriteError(pub String);

/// Resolves once the appended records are durable (or cannot be made so).
pub type Durable = Pin<Box<dyn Future<Output = Result<(), WriteError>> + Send>>;

/// What [`PartitionIo::load`] passes to its visitor, at an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded<'a> {
    /// A keyed record; `txn`: the producer of its batch when the batch is
    /// transactional.
    Record {
        key: &'a [u8],
        value: Option<&'a [u8]>,
        txn: Option<ProducerId>,
    },
    /// A transaction marker (COMMIT when `commit`, else ABORT).
    Marker {
        producer_id: ProducerId,
        commit: bool,
    },
}

/// A record passed to the visitor of [`PartitionIo::load`].
pub type Visitor<'a> = dyn FnMut(Offset, Loaded<'_>) -> Result<(), LoadError> + 'a;

/// The producer a call's records are written for, as one transactional batch
/// ([`Runtime::write_transactional`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnWriter {
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
}

/// What a load read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadSummary {
    pub records: u64,
    pub bytes: u64,
}

/// The runtime's I/O: reading a partition back, and the one writer of its records.
pub trait PartitionIo: Send + Sync + 'static {
    /// Number of partitions (= shards).
    fn partitions(&self) -> u32;

    /// Read `partition` from its start to its end, passing every keyed
    /// record and every transaction marker to `visit` in log order. Must fail (never stop early and
    /// return `Ok`) on a read error or a damaged batch. `closing` is polled
    /// between reads: when it returns true, stop with [`LoadError::Closed`].
    fn load(
        &self,
        partition: u32,
        closing: &dyn Fn() -> bool,
        visit: &mut Visitor<'_>,
    ) -> Result<LoadSummary, LoadError>;

    /// Append `records` (key, value) to `partition` as one batch, now
    /// (a transactional batch of `txn`'s producer when given); the
    /// returned future resolves when they are durable.
    fn append(
        &self,
        partition: u32,
        records: &[(&[u8], Option<&[u8]>)],
        txn: Option<TxnWriter>,
        now_ms: i64,
    ) -> Result<Durable, WriteError>;
}

/// Why a shard does not take a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardError {
    /// The shard is loading: COORDINATOR_LOAD_IN_PROGRESS (clients retry).
    LoadInProgress,
    /// The shard failed to load, is closed, or does not exist:
    /// NOT_COORDINATOR (clients find the coordinator again and retry).
    NotCoordinator,
}

impl ShardError {
    pub fn code(self) -> ErrorCode {
        match self {
            ShardError::LoadInProgress => ErrorCode::COORDINATOR_LOAD_IN_PROGRESS,
            ShardError::NotCoordinator => ErrorCode::NOT_COORDINATOR,
        }
    }
}
