//! SASL tokens as they arrive in SaslAuthenticate requests (or raw frames
//! after a SaslHandshake v0): parsing only, no policy and no secrets kept.
//!
//! PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`, UTF-8, each part
//! free of NUL. Kafka's `PlainSaslServer` requires exactly three parts, a
//! non-empty user name and password, and an authorization id that is empty
//! or equal to the user name; [`PlainMessage::parse`] checks the same.
//!
//! SCRAM (RFC 5802, RFC 7677), as Kafka's `ScramMessages` reads it:
//! [`ScramClientFirst`] (`n,[a=authzid],n=saslname,r=nonce[,ext...]`: no
//! channel binding, no mandatory extension) and [`ScramClientFinal`]
//! (`c=binding,r=nonce[,ext...],p=proof`, both base64), and the server's
//! two answers ([`scram_server_first`], [`scram_server_final`]).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
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
    #[error("Invalid SCRAM client first message: {0}")]
    ScramFirst(&'static str),
    #[error("Invalid SCRAM client final message: {0}")]
    ScramFinal(&'static str),
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

/// A SCRAM client-first message. The user name is decoded (`=2C` is `,`,
/// `=3D` is `=`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramClientFirst<'a> {
    /// `n,,` or `n,a=<authzid>,`: what the client-final `c=` must repeat.
    pub gs2_header: &'a str,
    pub authzid: String,
    pub username: String,
    pub nonce: &'a str,
    /// Extensions after the nonce (`key=value`), e.g. `tokenauth=true`.
    pub extensions: Vec<(&'a str, &'a str)>,
    /// The client-first-message-bare: part of the signed auth message.
    pub bare: &'a str,
}

/// Decodes a SCRAM `saslname`: `=2C` and `=3D` are the only escapes.
fn scram_name(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let esc = rest.get(at..at + 3)?;
        out.push(match esc {
            "=2C" => ',',
            "=3D" => '=',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// RFC 5802's `printable` (no `,`), non-empty.
fn printable(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// An extension attribute `key=value` (alphanumeric key).
fn split_ext(part: &str) -> Option<(&str, &str)> {
    let (k, v) = part.split_once('=')?;
    (!k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric())).then_some((k, v))
}

impl<'a> ScramClientFirst<'a> {
    pub fn parse(token: &'a [u8]) -> Result<ScramClientFirst<'a>, SaslTokenError> {
        use SaslTokenError::ScramFirst as bad;
        if token.len() > limits::SASL_TOKEN_BYTES_MAX {
            return Err(SaslTokenError::TooLarge(token.len()));
        }
        let text = std::str::from_utf8(token).map_err(|_| SaslTokenError::NotUtf8)?;
        let rest = text
            .strip_prefix("n,")
            .ok_or(bad("channel binding flag is not 'n'"))?;
        let (authz, bare) = rest.split_once(',').ok_or(bad("no gs2 header"))?;
        let authzid = if authz.is_empty() {
            String::new()
        } else {
            let raw = authz
                .strip_prefix("a=")
                .ok_or(bad("bad authorization id"))?;
            scram_name(raw).ok_or(bad("bad authorization id"))?
        };
        let gs2_header = &text[..text.len() - bare.len()];
        let mut parts = bare.split(',');
        let user = parts
            .next()
            .and_then(|p| p.strip_prefix("n="))
            .ok_or(bad("no user name"))?;
        let username = scram_name(user)
            .filter(|u| !u.is_empty())
            .ok_or(bad("bad user name"))?;
        let nonce = parts
            .next()
            .and_then(|p| p.strip_prefix("r="))
            .filter(|n| printable(n))
            .ok_or(bad("bad nonce"))?;
        let extensions = parts
            .map(|p| split_ext(p).ok_or(bad("bad extension")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ScramClientFirst {
            gs2_header,
            authzid,
            username,
            nonce,
            extensions,
            bare,
        })
    }
}

/// A SCRAM client-final message, its base64 fields decoded.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramClientFinal<'a> {
    pub channel_binding: Vec<u8>,
    pub nonce: &'a str,
    pub proof: Vec<u8>,
    /// The client-final-message-without-proof: part of the auth message.
    pub without_proof: &'a str,
}

impl std::fmt::Debug for ScramClientFinal<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramClientFinal")
            .field("nonce", &self.nonce)
            .field("proof", &"[hidden]")
            .finish()
    }
}

impl<'a> ScramClientFinal<'a> {
    pub fn parse(token: &'a [u8]) -> Result<ScramClientFinal<'a>, SaslTokenError> {
        use SaslTokenError::ScramFinal as bad;
        if token.len() > limits::SASL_TOKEN_BYTES_MAX {
            return Err(SaslTokenError::TooLarge(token.len()));
        }
        let text = std::str::from_utf8(token).map_err(|_| SaslTokenError::NotUtf8)?;
        let at = text.rfind(",p=").ok_or(bad("no proof"))?;
        let (without_proof, proof) = (&text[..at], &text[at + 3..]);
        let mut parts = without_proof.split(',');
        let binding = parts
            .next()
            .and_then(|p| p.strip_prefix("c="))
            .ok_or(bad("no channel binding"))?;
        let nonce = parts
            .next()
            .and_then(|p| p.strip_prefix("r="))
            .filter(|n| printable(n))
            .ok_or(bad("bad nonce"))?;
        for p in parts {
            split_ext(p).ok_or(bad("bad extension"))?;
        }
        let channel_binding = BASE64
            .decode(binding)
            .map_err(|_| bad("channel binding is not base64"))?;
        let proof = BASE64
            .decode(proof)
            .map_err(|_| bad("proof is not base64"))?;
        Ok(ScramClientFinal {
            channel_binding,
            nonce,
            proof,
            without_proof,
        })
    }
}

/// The server-first message: `r=<client nonce + server nonce>,s=<salt>,i=<iterations>`.
pub fn scram_server_first(nonce: &str, salt: &[u8], iterations: i32) -> String {
    format!("r={nonce},s={},i={iterations}", BASE64.encode(salt))
}

/// The server-final message: `v=<server signature>`.
pub fn scram_server_final(server_signature: &[u8]) -> String {
    format!("v={}", BASE64.encode(server_signature))
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

    #[test]
    fn scram_messages_parse_as_rfc_5802_writes_them() {
        // RFC 7677's example exchange.
        let first = ScramClientFirst::parse(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(first.gs2_header, "n,,");
        assert_eq!(first.username, "user");
        assert_eq!(first.authzid, "");
        assert_eq!(first.nonce, "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(first.bare, "n=user,r=rOprNGfwEbeRWgbNEkqO");
        assert!(first.extensions.is_empty());
        let escaped = ScramClientFirst::parse(b"n,a=a=2Cb,n=a=2Cb=3Dc,r=x,tokenauth=true").unwrap();
        assert_eq!(escaped.gs2_header, "n,a=a=2Cb,");
        assert_eq!(escaped.username, "a,b=c");
        assert_eq!(escaped.authzid, "a,b");
        assert_eq!(escaped.extensions, [("tokenauth", "true")]);
        for bad in [
            &b"y,,n=user,r=abc"[..],
            b"p=tls-unique,,n=user,r=abc",
            b"n,,n=,r=abc",
            b"n,,n=us=2Xer,r=abc",
            b"n,,n=user,r=",
            b"n,,n=user,r=a\x01b",
            b"n,,m=ext,n=user,r=abc",
            b"n,,n=user",
            b"n,,n=user,r=abc,=x",
            b"n,x,n=user,r=abc",
            b"n",
        ] {
            assert!(
                ScramClientFirst::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let fin = ScramClientFinal::parse(
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        )
        .unwrap();
        assert_eq!(fin.channel_binding, b"n,,");
        assert_eq!(
            fin.nonce,
            "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
        );
        assert_eq!(fin.proof.len(), 32);
        assert_eq!(
            fin.without_proof,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
        );
        assert!(!format!("{fin:?}").contains("dHzb"));
        for bad in [
            &b"c=biws,r=abc"[..],
            b"c=biws,p=AAAA",
            b"c=!!,r=abc,p=AAAA",
            b"c=biws,r=abc,p=not base64",
            b"r=abc,c=biws,p=AAAA",
        ] {
            assert!(
                ScramClientFinal::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            scram_server_first("ab", b"salt", 4096),
            "r=ab,s=c2FsdA==,i=4096"
        );
        assert_eq!(scram_server_final(b"sig"), "v=c2ln");
    }
}
