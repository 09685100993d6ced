//! The client's error type.

use fjord_model::NodeId;
use fjord_protocol::kafka_protocol::ResponseError;
use fjord_protocol::FrameError;

/// Everything that can go wrong talking to a broker.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("connecting to {addr} timed out after {timeout_ms} ms")]
    ConnectTimeout { addr: String, timeout_ms: u64 },
    #[error("connection to {addr} lost: {reason}")]
    Disconnected { addr: String, reason: String },
    #[error("{addr}: no answer to {api} within {timeout_ms} ms")]
    Timeout {
        addr: String,
        api: &'static str,
        timeout_ms: u64,
    },
    #[error("{addr}: bad response frame: {source}")]
    Frame { addr: String, source: FrameError },
    #[error("encoding {api} v{version}: {message}")]
    Encode {
        api: &'static str,
        version: i16,
        message: String,
    },
    #[error("{addr}: cannot decode {api} v{version} response: {message}")]
    Decode {
        addr: String,
        api: &'static str,
        version: i16,
        message: String,
    },
    #[error("{addr}: broker speaks no version of {api} this client knows ({detail})")]
    Unsupported {
        addr: String,
        api: &'static str,
        detail: String,
    },
    #[error("{context}: {}", kafka_error_text(*.code, .message.as_deref()))]
    Kafka {
        context: String,
        code: i16,
        message: Option<String>,
    },
    #[error("broker {0} is not in the cluster metadata")]
    UnknownBroker(NodeId),
    #[error("{addr}: protocol violation: {reason}")]
    Protocol { addr: String, reason: String },
    #[error("{0}")]
    Invalid(String),
}

impl ClientError {
    /// A Kafka error code in a response, with what it was about.
    pub fn kafka(context: impl Into<String>, code: i16, message: Option<String>) -> ClientError {
        ClientError::Kafka {
            context: context.into(),
            code,
            message: message.filter(|m| !m.is_empty()),
        }
    }

    /// The Kafka error code, for `Kafka` errors.
    pub fn code(&self) -> Option<i16> {
        match self {
            ClientError::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True when retrying (perhaps after refreshing metadata) may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Kafka { code, .. } => {
                ResponseError::try_from_code(*code).is_some_and(|e| e.is_retriable())
            }
            ClientError::Timeout { .. } | ClientError::Disconnected { .. } => true,
            _ => false,
        }
    }
}

/// `NAME (code N): message`, with Kafka's error name in upper snake case.
pub fn kafka_error_text(code: i16, message: Option<&str>) -> String {
    let name = kafka_error_name(code);
    match message {
        Some(m) => format!("{name} (code {code}): {m}"),
        None => format!("{name} (code {code})"),
    }
}

/// Kafka's name for an error code (`TOPIC_AUTHORIZATION_FAILED`), or
/// `UNKNOWN_ERROR_CODE` for codes this client does not know.
pub fn kafka_error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(ResponseError::Unknown(_)) => "UNKNOWN_ERROR_CODE".to_string(),
        Some(e) => upper_snake(&format!("{e}")),
    }
}

fn upper_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(kafka_error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(kafka_error_name(29), "TOPIC_AUTHORIZATION_FAILED");
        assert_eq!(kafka_error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(kafka_error_name(31000), "UNKNOWN_ERROR_CODE");
        let e = ClientError::kafka("topic t", 36, Some("exists".into()));
        assert_eq!(
            e.to_string(),
            "topic t: TOPIC_ALREADY_EXISTS (code 36): exists"
        );
        assert!(ClientError::kafka("x", 6, None).is_retriable());
        assert!(!ClientError::kafka("x", 29, None).is_retriable());
    }
}
