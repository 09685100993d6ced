//! The one place where Fjord's errors become Kafka error codes.

use fjord_model::ErrorCode;
use fjord_partition::PartitionError;
use fjord_storage::StorageError;

use crate::state::StateError;

/// Kafka's default message for UNKNOWN_TOPIC_OR_PARTITION (`Errors.message`),
/// which it sends where an answer carries the error's message.
pub const UNKNOWN_TOPIC_OR_PARTITION_MESSAGE: &str =
    "This server does not host this topic-partition.";

/// Kafka code and message for a storage error.
pub fn storage_error(e: &StorageError) -> (ErrorCode, String) {
    (e.kafka_code(), e.to_string())
}

/// Kafka code and message for a partition's refusal.
pub fn partition_error(e: &PartitionError) -> (ErrorCode, String) {
    (e.kafka_code(), e.to_string())
}

/// Kafka code and message for a broker-state error.
pub fn state_error(e: &StateError) -> (ErrorCode, String) {
    match e {
        StateError::Storage(s) => storage_error(s),
        StateError::Metadata { .. } => (ErrorCode::KAFKA_STORAGE_ERROR, e.to_string()),
        StateError::Kafka { code, message } => (*code, message.clone()),
    }
}
