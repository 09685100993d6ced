//! The storage crate's error type and its mapping to Kafka error codes.

use std::io;
use std::path::Path;

use fjord_model::ErrorCode;
use fjord_records::RecordsError;

/// Everything that can go wrong in a partition log.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A batch handed to `append` failed validation (framing, CRC, counts, ...).
    #[error("invalid record batch: {0}")]
    InvalidRecord(#[source] RecordsError),
    /// Data on disk is not what we wrote (found while reading).
    #[error("corrupt data in {path} at position {position}: {detail}")]
    Corrupt {
        path: String,
        position: u64,
        detail: String,
    },
    /// One batch is larger than `message.max.bytes`.
    #[error("record batch of {size} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge { size: usize, max: usize },
    /// The batches of one append do not fit into a segment.
    #[error("record set of {size} bytes exceeds the segment size of {max} bytes")]
    RecordListTooLarge { size: usize, max: u64 },
    /// Offset outside `[log_start, log_end]`.
    #[error("offset {requested} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        requested: i64,
        log_start: i64,
        log_end: i64,
    },
    /// An I/O call failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// The log stopped accepting writes after an earlier I/O error.
    #[error("log {dir} is offline after an I/O error: {reason}")]
    Offline { dir: String, reason: String },
    /// The log was closed.
    #[error("log {dir} is closed")]
    Closed { dir: String },
    /// Idempotent-producer checks refused the batches (sequence, epoch).
    #[error("{0}")]
    Producer(#[from] crate::producer_state::ProducerError),
    /// `append_as_leader` with an epoch below the latest one recorded in the log.
    #[error("leader epoch {epoch} is below the latest epoch {latest} of the log")]
    FencedLeaderEpoch { epoch: i32, latest: i32 },
    /// `append_as_follower` with batches that do not continue the log (Kafka's
    /// `OffsetsOutOfOrderException` / `UnexpectedAppendOffsetException`).
    #[error("follower append expected offset {expected}, found {found}: {detail}")]
    OffsetsOutOfOrder {
        expected: i64,
        found: i64,
        detail: String,
    },
    /// A caller broke an API precondition (e.g. a leader epoch going backwards).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl StorageError {
    /// The Kafka error code the broker answers with.
    pub fn kafka_code(&self) -> ErrorCode {
        match self {
            StorageError::InvalidRecord(e) if e.is_corrupt() => ErrorCode::CORRUPT_MESSAGE,
            StorageError::InvalidRecord(_) => ErrorCode::INVALID_RECORD,
            StorageError::Corrupt { .. } => ErrorCode::CORRUPT_MESSAGE,
            StorageError::MessageTooLarge { .. } => ErrorCode::MESSAGE_TOO_LARGE,
            StorageError::RecordListTooLarge { .. } => ErrorCode::RECORD_LIST_TOO_LARGE,
            StorageError::OffsetOutOfRange { .. } => ErrorCode::OFFSET_OUT_OF_RANGE,
            StorageError::Io { .. }
            | StorageError::Offline { .. }
            | StorageError::Closed { .. } => ErrorCode::KAFKA_STORAGE_ERROR,
            StorageError::Producer(e) => e.kafka_code(),
            StorageError::InvalidArgument(_) => ErrorCode::INVALID_REQUEST,
            StorageError::FencedLeaderEpoch { .. } => ErrorCode::FENCED_LEADER_EPOCH,
            // Kafka has no wire code for these (an internal exception of the fetcher).
            StorageError::OffsetsOutOfOrder { .. } => ErrorCode::UNKNOWN_SERVER_ERROR,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> StorageError {
        StorageError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn io_path(what: &str, path: &Path, source: io::Error) -> StorageError {
        StorageError::Io {
            context: format!("{what} {}", path.display()),
            source,
        }
    }
}
