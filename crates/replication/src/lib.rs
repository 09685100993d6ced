//! Partition replication (issue 13) as a deterministic, sans-IO core, after
//! Apache Kafka's `Partition`/`ReplicaFetcherThread` (KIP-101, KIP-279,
//! KIP-320, KIP-966's high-watermark rule), and a seeded simulator that
//! checks it.
//!
//! A separate crate rather than a module of `fjord-partition`: the core has
//! no files, no tokio and no clock, so it depends on `fjord-model` only and
//! the simulator drives thousands of runs in memory; the partition layer
//! (which owns the `Log`) is the shell that feeds it and carries out what it
//! decides, as `fjord-quorum` is for `fjord-raft`.
//!
//! - [`Leader`]: the leader's side of one partition. It takes follower
//!   fetches ([`FollowerFetch`]: fetch offset, last fetched epoch, current
//!   leader epoch, broker epoch), the leader log's durable end and the
//!   controller's answers, with `now_ms` passed in. It keeps each follower's
//!   log end offset (the fetch offset: what the follower holds durably) and
//!   last-caught-up time, answers a fetch with records, a diverging epoch
//!   (KIP-320) or an error, shrinks the ISR of followers that have not
//!   caught up for `replica.lag.time.max.ms` and expands it with followers
//!   that reached the high watermark, sending both as AlterPartition
//!   requests ([`AlterPartition`], ISR with broker epochs) for the
//!   controller — one at a time, the ISR in use for the high watermark
//!   being the union of the committed and the requested one (Kafka's
//!   maximal ISR). The high watermark is the minimum durable log end over
//!   that ISR (the leader's own durable end included), never moves back,
//!   and does not advance while the ISR is smaller than
//!   `min.insync.replicas`. [`Leader::check_acks_all_append`] and
//!   [`Leader::acks_all_outcome`] decide NOT_ENOUGH_REPLICAS (before the
//!   append) and NOT_ENOUGH_REPLICAS_AFTER_APPEND as Kafka does.
//! - [`Follower`]: the follower's side. It sends a fetch only once
//!   everything it appended is durable (so the offset the leader counts is
//!   durable), with its log end and the epoch of its last batch; on a
//!   diverging epoch it truncates to the end of the largest common epoch
//!   before fetching on; it never truncates by high watermark. Its high
//!   watermark is the leader's, bounded by its own durable log end, and
//!   never moves back within one incarnation.
//! - [`select_rack_aware`]: fetch from the closest replica (KIP-392): the
//!   follower in a consumer's rack the leader names as its
//!   `preferred_read_replica`, among [`Leader::read_replica_candidates`]
//!   (in-sync followers holding the fetch offset), as Kafka's
//!   `RackAwareReplicaSelector`.
//! - [`sim`]: one partition on three replicas, a controller stub that
//!   elects only from the ISR and bumps epochs, acks=all producers, a lossy
//!   reordering network, crashes that lose unsynced data, restarts; the
//!   invariants are checked after every step (see its docs).
//!   `tests/sim.rs` runs the seeds.
//!
//! The durability model: a record counts toward the high watermark only
//! once it is on stable storage on the leader and on every member of the
//! ISR in use, so an acks=all answer means the record is durable on at
//! least `min.insync.replicas` replicas, every one of which may be elected.

mod follower;
mod leader;
mod read_replica;
pub mod sim;

#[cfg(test)]
mod tests;

pub use follower::{Follower, FollowerAction, FollowerSettings};
pub use leader::{FetchAnswer, FetchOutcome, FollowerFetch, Leader, LeaderOutput};
pub use read_replica::{select_rack_aware, ReadReplica};

use fjord_model::{limits, LeaderEpoch, NodeId, Offset};

/// Per-partition replication settings (Kafka's config names, typed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `replica.lag.time.max.ms`.
    pub replica_lag_time_max_ms: i64,
    /// `min.insync.replicas`.
    pub min_insync_replicas: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            replica_lag_time_max_ms: limits::REPLICA_LAG_TIME_MAX_MS_DEFAULT,
            min_insync_replicas: limits::MIN_INSYNC_REPLICAS_DEFAULT,
        }
    }
}

/// A partition's replica facts as the controller committed them (the
/// metadata image's PartitionRecord / PartitionChangeRecord fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionState {
    pub leader: NodeId,
    pub leader_epoch: LeaderEpoch,
    /// Bumped by the controller on every change (Kafka's partition epoch).
    pub partition_epoch: i32,
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
}

/// An ISR member as AlterPartition names it: its id and the broker epoch
/// it fetched with (`-1` when not known).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IsrMember {
    pub broker_id: NodeId,
    pub broker_epoch: i64,
}

/// An AlterPartition (API 56) for one partition, from its leader to the
/// active controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterPartition {
    pub leader: NodeId,
    pub leader_epoch: LeaderEpoch,
    /// The partition epoch the leader's state is at; the controller refuses
    /// the request (INVALID_UPDATE_VERSION) if its own moved on.
    pub partition_epoch: i32,
    pub new_isr: Vec<IsrMember>,
}

/// What the core needs to know of the local log; the partition layer
/// implements it over `fjord_storage::Log`, the simulator over its disks.
pub trait LogView {
    fn log_start(&self) -> Offset;
    /// One past the last appended record.
    fn log_end(&self) -> Offset;
    /// One past the last record on stable storage (`<= log_end`).
    fn durable_end(&self) -> Offset;
    /// The epoch of the last batch, `None` for an empty log.
    fn last_epoch(&self) -> Option<LeaderEpoch>;
    /// Kafka's `LeaderEpochFileCache.endOffsetFor`: the largest epoch `<=
    /// epoch` that the log holds and the offset where it ends (where the
    /// next epoch starts, or the log end); `None` when the log holds no
    /// epoch `<= epoch`.
    fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)>;
}
