//! Shared vocabulary of Fjord: newtypes for offsets, epochs and ids, the
//! Kafka error codes, and every limit in one place (`limits`).
//!
//! This crate has no dependencies and does no I/O.

pub mod error_code;
pub mod histogram;
pub mod limits;

pub use error_code::ErrorCode;

use std::fmt;

macro_rules! newtype {
    ($(#[$m:meta])* $name:ident($inner:ty)) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub $inner);
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
        impl From<$inner> for $name {
            fn from(v: $inner) -> Self { $name(v) }
        }
    };
}

newtype!(
    /// Position of a record in a partition's log.
    Offset(i64)
);
newtype!(
    /// Epoch of a partition's leader.
    LeaderEpoch(i32)
);
newtype!(
    /// Id of a broker / controller node.
    NodeId(i32)
);
newtype!(
    /// Producer id handed out by InitProducerId.
    ProducerId(i64)
);
newtype!(
    /// Producer epoch handed out by InitProducerId.
    ProducerEpoch(i16)
);
newtype!(
    /// Index of a partition within its topic.
    PartitionIndex(i32)
);

impl Offset {
    pub const NONE: Offset = Offset(-1);
    pub fn next(self) -> Offset {
        Offset(self.0 + 1)
    }
}

impl LeaderEpoch {
    /// What Kafka sends when the epoch is not known.
    pub const UNKNOWN: LeaderEpoch = LeaderEpoch(-1);
}

/// A topic and partition.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: PartitionIndex,
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition.0)
    }
}

/// How record timestamps are set (`message.timestamp.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TimestampType {
    #[default]
    CreateTime,
    LogAppendTime,
}

impl TimestampType {
    pub fn parse(s: &str) -> Option<TimestampType> {
        match s {
            "CreateTime" => Some(TimestampType::CreateTime),
            "LogAppendTime" => Some(TimestampType::LogAppendTime),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        }
    }
}

/// The KRaft metadata log's name: no topic may take it (its partition directory would be
/// the metadata log's), as Kafka's controller refuses it.
pub const CLUSTER_METADATA_TOPIC: &str = "__cluster_metadata";

/// The answer to a CreateTopics of [`CLUSTER_METADATA_TOPIC`] (INVALID_REQUEST), Kafka's message.
pub fn cluster_metadata_creation_refused() -> String {
    format!("Creation of internal topic {CLUSTER_METADATA_TOPIC} is prohibited.")
}

/// Topic names follow Kafka's rules: 1..=249 chars of `[a-zA-Z0-9._-]`, not "." or "..".
pub fn is_valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= limits::TOPIC_NAME_BYTES_MAX
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(is_valid_topic_name("orders.v1_x-y"));
        assert!(!is_valid_topic_name(""));
        assert!(!is_valid_topic_name(".."));
        assert!(!is_valid_topic_name("a/b"));
        assert!(!is_valid_topic_name(&"a".repeat(250)));
        assert!(is_valid_topic_name(&"a".repeat(249)));
    }
}
