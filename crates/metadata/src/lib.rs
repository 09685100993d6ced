//! Cluster metadata as a log of records (Kafka's KRaft design, KIP-500).
//!
//! - [`image`]: the immutable [`MetadataImage`] (cluster id, features,
//!   brokers, topics and partitions, configs, producer-id block), built by
//!   applying metadata records to a [`MetadataDelta`]; deterministic, no I/O.
//! - [`log`]: the local `__cluster_metadata-0` log in Kafka's layout and
//!   batch format, with KIP-630 snapshots; [`quorum_state`]: the
//!   `quorum-state` file; [`control`]: KRaft control records.
//! - [`commit`]: when a record is committed (a deterministic core);
//!   [`quorum`]: the interface callers use ([`MetadataQuorum`]:
//!   propose → committed offset; [`MetadataListener`]: committed batches in
//!   order) and [`LocalQuorum`], the one-voter quorum of a single node.
//!
//! Invariants: an image never changes once built (a delta makes a new one);
//! a proposal's future resolves only after its records are durable and the
//! listener has applied them; records reach the listener exactly once, in
//! offset order.

pub mod commit;
pub mod control;
pub mod delta;
mod fsutil;
pub mod image;
pub mod loader;
pub mod log;
pub mod quorum;
pub mod quorum_state;

pub use delta::MetadataDelta;
pub use image::{
    client_quota_record, AclEntry, ClientQuotas, ConfigResource, MetadataImage,
    PartitionRegistration, QuotaEntity, ScramCredentialData, ScramCredentials, TopicImage,
};
pub use loader::{
    frame_records, frame_records_for, ImageHandle, MetadataLoader, MetadataPublisher,
};
pub use log::{metadata_log_dir, MetadataLog, Snapshot, SnapshotId, METADATA_LOG_DIR};
pub use quorum::{
    CommittedBatch, LocalQuorum, LocalQuorumConfig, MetadataListener, MetadataQuorum, Proposal,
};

use std::path::Path;

/// Errors of the metadata layer.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("{0}")]
    Storage(#[from] fjord_storage::StorageError),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("metadata batch of {size} bytes exceeds {max}")]
    BatchTooLarge { size: usize, max: usize },
    #[error("invalid proposal: {0}")]
    InvalidProposal(String),
    #[error("invalid metadata record: {0}")]
    InvalidRecord(String),
    #[error("too many metadata proposals queued")]
    Busy,
    #[error("the metadata quorum is closed")]
    Closed,
    #[error("the metadata log failed: {0}")]
    Failed(String),
    /// No quorum leader could take the proposal (none elected yet, unreachable, or
    /// leadership moved before it committed): nothing was written; retrying may succeed.
    #[error("no metadata quorum leader: {0}")]
    NoLeader(String),
    /// Applying committed records to local state failed (e.g. opening a partition log).
    #[error("applying metadata: {0}")]
    Apply(String),
}

impl MetadataError {
    pub fn io(op: &'static str, path: &Path, source: std::io::Error) -> MetadataError {
        MetadataError::Io {
            op,
            path: path.display().to_string(),
            source,
        }
    }

    pub fn corrupt(path: &Path, reason: impl Into<String>) -> MetadataError {
        MetadataError::Corrupt {
            path: path.display().to_string(),
            reason: reason.into(),
        }
    }
}
