//! SASL tokens as they arrive in SaslAuthenticate requests (or raw frames
//! after a SaslHandshake v0): parsing only, no policy and no secrets kept.
//!
//! PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`, UTF-8, each part
//! free of NUL. Kafka's `PlainSaslServer` requires exactly three parts, a
//! non-empty user name and password, and an authorization id that is empty
//! or equal to the user name; [`PlainMessage::parse`] checks the same.

use fjord_model::limits;

/// Why a token was refused. The text never contains the token's bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslTokenError {
    #[error("SASL token of {0} bytes is larger than the limit")]
    TooLarge(usize),
    #[error("Invalid SASL/PLAIN request: expected 3 tokens, got {0}")]
    PlainParts(usize),
    #[error("Invalid SASL/PLAIN request: not UTF-8")]
    NotUtf8,
    #[error("Authentication failed: username not specified")]
    NoUser,
    #[error("Authentication failed: password not specified")]
    NoPassword,
    #[error("Authentication failed: Client requested an authorization id that is different from username")]
    OtherAuthzid,
}

/// A parsed PLAIN message. Its `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainMessage<'a> {
    pub authzid: &'a str,
    pub username: &'a str,
    pub password: &'a str,
}

impl std::fmt::Debug for PlainMessage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainMessage")
            .field("authzid", &self.authzid)
            .field("username", &self.username)
            .field("password", &"[hidden]")
            .finish()
    }
}

impl<'a> PlainMessage<'a> {
    /// Parses a PLAIN client message.
    pub fn parse(token: &'a [u8]) -> Result<PlainMessage<'a>, SaslTokenError> {
        if token.len() > limits::SASL_TOKEN_BYTES_MAX {
            return Err(SaslTokenError::TooLarge(token.len()));
        }
        let text = std::str::from_utf8(token).map_err(|_| SaslTokenError::NotUtf8)?;
        let mut parts = text.split('\u{0}');
        let (Some(authzid), Some(username), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SaslTokenError::PlainParts(text.split('\u{0}').count()));
        };
        if username.is_empty() {
            return Err(SaslTokenError::NoUser);
        }
        if password.is_empty() {
            return Err(SaslTokenError::NoPassword);
        }
        if !authzid.is_empty() && authzid != username {
            return Err(SaslTokenError::OtherAuthzid);
        }
        Ok(PlainMessage {
            authzid,
            username,
            password,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_messages_parse_as_kafka_reads_them() {
        let m = PlainMessage::parse(b"\0alice\0alice-secret").unwrap();
        assert_eq!(
            (m.authzid, m.username, m.password),
            ("", "alice", "alice-secret")
        );
        let m = PlainMessage::parse(b"alice\0alice\0pw").unwrap();
        assert_eq!(m.authzid, "alice");
        assert!(!format!("{m:?}").contains("pw\""), "{m:?}");
        assert_eq!(
            PlainMessage::parse(b"bob\0alice\0pw"),
            Err(SaslTokenError::OtherAuthzid)
        );
        assert_eq!(PlainMessage::parse(b"\0\0pw"), Err(SaslTokenError::NoUser));
        assert_eq!(
            PlainMessage::parse(b"\0alice\0"),
            Err(SaslTokenError::NoPassword)
        );
        assert_eq!(
            PlainMessage::parse(b"alice\0pw"),
            Err(SaslTokenError::PlainParts(2))
        );
        assert_eq!(
            PlainMessage::parse(b"\0a\0b\0c"),
            Err(SaslTokenError::PlainParts(4))
        );
        assert_eq!(
            PlainMessage::parse(b"\0a\0\xff"),
            Err(SaslTokenError::NotUtf8)
        );
        let big = vec![b'a'; limits::SASL_TOKEN_BYTES_MAX + 1];
        assert!(matches!(
            PlainMessage::parse(&big),
            Err(SaslTokenError::TooLarge(_))
        ));
    }
}
