//! SASL/OAUTHBEARER with JWT validation, as Kafka's broker does it with
//! `org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler`
//! (its `BrokerJwtValidator`): the client's initial response (RFC 7628:
//! `n,[a=authzid],` `\x01auth=Bearer <jwt>\x01...\x01`) carries a JWS-signed
//! JWT, checked against the keys of a JWKS file
//! (`sasl.oauthbearer.jwks.endpoint.url=file:///...`): the signature
//! (RS256/384/512, PS256/384/512, ES256/384; never `none`), `exp` and
//! `iat` present, `exp` not past and `nbf` not ahead (both with
//! `sasl.oauthbearer.clock.skew.seconds`, default 30), `aud` among
//! `sasl.oauthbearer.expected.audience` (a token with an `aud` is refused when
//! none is configured, as jose4j does), `iss` equal to
//! `sasl.oauthbearer.expected.issuer` when set; the principal is the
//! `sasl.oauthbearer.sub.claim.name` claim (default `sub`); the token's `exp`
//! bounds the session (KIP-368).
//!
//! The checks themselves are `fjord_auth::oauth` (fuzzed there); this
//! module reads a listener's settings into a [`JwtValidator`]. The token is
//! never logged.

use fjord_model::limits;

pub use fjord_auth::oauth::{parse_initial_response, JwtValidator, ValidToken, INVALID_TOKEN};

use super::{invalid, SecuritySettings};
use crate::config::ConfigError;

/// The callback handler class a listener names for JWT validation.
pub const VALIDATOR_CALLBACK_HANDLER: &str =
    "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler";

/// A listener's JWT validation, from its OAUTHBEARER settings (read at start).
pub fn validator(settings: &SecuritySettings, listener: &str) -> Result<JwtValidator, ConfigError> {
    const HANDLER: &str = "oauthbearer.sasl.server.callback.handler.class";
    let handler_name = format!("listener.name.{}.{HANDLER}", listener.to_lowercase());
    match settings.get(listener, HANDLER) {
        Some(VALIDATOR_CALLBACK_HANDLER) => {}
        Some(_) => {
            return Err(invalid(
                &handler_name,
                format!("only {VALIDATOR_CALLBACK_HANDLER} (JWT validation) is supported"),
            ))
        }
        None => {
            return Err(invalid(
                &handler_name,
                format!("OAUTHBEARER is enabled: set it to {VALIDATOR_CALLBACK_HANDLER} (Kafka's default accepts unsigned tokens; Fjord does not)"),
            ))
        }
    }
    const URL: &str = "sasl.oauthbearer.jwks.endpoint.url";
    let url = settings
        .get(listener, URL)
        .ok_or_else(|| invalid(URL, "OAUTHBEARER needs the JWKS of its token issuer"))?;
    let path = url.strip_prefix("file://").ok_or_else(|| {
        invalid(
            URL,
            "only a file:// URL is supported (a JWKS file, as Kafka reads one)",
        )
    })?;
    let meta = std::fs::metadata(path).map_err(|e| invalid(URL, format!("{path}: {e}")))?;
    if meta.len() > limits::PEM_FILE_BYTES_MAX {
        return Err(invalid(URL, format!("{path} is larger than a JWKS may be")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| invalid(URL, format!("{path}: {e}")))?;
    let audiences = settings
        .get(listener, "sasl.oauthbearer.expected.audience")
        .map(|a| {
            a.split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let issuer = settings
        .get(listener, "sasl.oauthbearer.expected.issuer")
        .map(String::from);
    let sub_claim = settings
        .get(listener, "sasl.oauthbearer.sub.claim.name")
        .unwrap_or("sub")
        .to_string();
    const SKEW: &str = "sasl.oauthbearer.clock.skew.seconds";
    let clock_skew_ms = match settings.get(listener, SKEW) {
        None => 30_000,
        Some(v) => match v.parse::<i32>() {
            Ok(s @ 0..) => i64::from(s) * 1000,
            _ => return Err(invalid(SKEW, "a number of seconds, 0 or more")),
        },
    };
    JwtValidator::new(&text, audiences, issuer, sub_claim, clock_skew_ms)
        .map_err(|e| invalid(URL, format!("{path}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &[(&str, &str)]) -> (tempfile::TempDir, Result<JwtValidator, ConfigError>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        // A P-256 public key (any valid point will do for reading settings).
        std::fs::write(
            &path,
            r#"{"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
                "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#,
        )
        .unwrap();
        let mut s = SecuritySettings::default();
        s.set(
            "listener.name.l.oauthbearer.sasl.server.callback.handler.class",
            VALIDATOR_CALLBACK_HANDLER,
        );
        s.set(
            "sasl.oauthbearer.jwks.endpoint.url",
            &format!("file://{}", path.display()),
        );
        s.set("sasl.oauthbearer.expected.audience", "kafka");
        s.set("sasl.oauthbearer.expected.issuer", "https://issuer");
        for (k, v) in extra {
            s.set(k, v);
        }
        let c = validator(&s, "L");
        (dir, c)
    }

    #[test]
    fn settings_are_checked_at_build() {
        assert!(config(&[]).1.is_ok());
        let other = "org.apache.kafka.common.security.oauthbearer.OAuthBearerUnsecuredValidatorCallbackHandler";
        for extra in [
            (
                "listener.name.l.oauthbearer.sasl.server.callback.handler.class",
                other,
            ),
            ("sasl.oauthbearer.jwks.endpoint.url", "https://issuer/jwks"),
            (
                "sasl.oauthbearer.jwks.endpoint.url",
                "file:///nonexistent/jwks.json",
            ),
            ("sasl.oauthbearer.clock.skew.seconds", "-1"),
        ] {
            assert!(config(&[extra]).1.is_err(), "{extra:?}");
        }
        let mut s = SecuritySettings::default();
        s.set("sasl.oauthbearer.jwks.endpoint.url", "file:///x");
        assert!(validator(&s, "L").is_err(), "no callback handler");
    }
}
