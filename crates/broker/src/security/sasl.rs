//! SASL authentication of a connection on a SASL_PLAINTEXT or SASL_SSL
//! listener, as Kafka's `SaslServerAuthenticator` does it: a sans-IO state
//! machine ([`SaslSession`]) fed the handshake and the tokens, and told
//! nothing about sockets or time (the connection closes one that does not
//! finish within `AUTHENTICATION_TIMEOUT_MS`).
//!
//! 1. Before the handshake: ApiVersions and SaslHandshake only.
//! 2. SaslHandshake v0–v1 names a mechanism of `sasl.enabled.mechanisms`
//!    (else UNSUPPORTED_SASL_MECHANISM and the connection closes). After
//!    v1, tokens come in SaslAuthenticate requests; after v0, as raw
//!    size-prefixed frames (the connection layer reads them).
//! 3. A token that authenticates moves to authenticated; one that fails is
//!    answered SASL_AUTHENTICATION_FAILED and the connection closes.
//! 4. KIP-368 re-authentication: with `connections.max.reauth.ms` (per
//!    listener, and per mechanism as `listener.name.<l>.<mechanism>.connections.max.reauth.ms`)
//!    a successful SaslAuthenticate answers the session's lifetime, and the
//!    session expires that long after it authenticated: the connection is
//!    closed on its next request after that ([`SaslSession::expired`]). A
//!    SaslHandshake from an authenticated client whose session has an
//!    expiry (at most once a second) starts a re-authentication
//!    ([`SaslSession::begin_reauthentication`]): the same mechanism, and it
//!    must end with the same principal; it resets the lifetime. A failed
//!    re-authentication closes the connection, as a failed authentication.
//!
//! Mechanisms: PLAIN, with the users of the listener's JAAS line
//! (`listener.name.<l>.plain.sasl.jaas.config=... user_alice="alice-secret";`);
//! SCRAM-SHA-256 and SCRAM-SHA-512 ([`super::scram`]), with the
//! credentials of the metadata image (`listener.name.<l>.scram-sha-256.sasl.jaas.config=
//! org.apache.kafka.common.security.scram.ScramLoginModule required;`), in
//! two rounds: client-first / server-first, client-final / server-final;
//! OAUTHBEARER ([`super::oauth`]): a JWT checked against the keys of a JWKS
//! file, whose `exp` bounds the session (an invalid token is answered with
//! Kafka's error challenge, and the client's `\x01` then fails it).
//! What a session needs from outside (credentials, a fresh nonce) comes
//! through [`SaslContext`].
//! Passwords are compared in constant time for equal lengths and never
//! logged or put in a `Debug` output.

use std::collections::BTreeMap;

use fjord_model::{limits, ErrorCode};
use fjord_protocol::sasl::PlainMessage;

use super::oauth::JwtValidator;
use super::scram::{ScramExchange, ScramMechanism, StoredCredential};
use super::{invalid, KafkaPrincipal, SecuritySettings};
use crate::config::ConfigError;

/// A SASL mechanism Fjord serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Scram(ScramMechanism),
    OAuthBearer,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(m) => m.name(),
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    pub fn parse(name: &str) -> Option<Mechanism> {
        match name.to_uppercase().as_str() {
            "PLAIN" => Some(Mechanism::Plain),
            "SCRAM-SHA-256" => Some(Mechanism::Scram(ScramMechanism::Sha256)),
            "SCRAM-SHA-512" => Some(Mechanism::Scram(ScramMechanism::Sha512)),
            "OAUTHBEARER" => Some(Mechanism::OAuthBearer),
            _ => None,
        }
    }
}

/// What a session asks of the broker: SCRAM credentials (from the
/// metadata image) and fresh randomness for the server nonce.
pub trait SaslContext {
    fn scram_credential(&self, user: &str, mechanism: ScramMechanism) -> Option<StoredCredential>;
    /// A new nonce: printable ASCII without ','.
    fn server_nonce(&self) -> String;
    /// The wall clock, in ms since the epoch (a JWT's `exp`, `nbf`).
    fn wall_clock_ms(&self) -> i64;
}

/// A secret from the configuration; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[hidden]")
    }
}

/// Equal-length secrets compared without an early exit.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A listener's SASL settings.
#[derive(Clone, Debug)]
pub struct SaslConfig {
    pub mechanisms: Vec<Mechanism>,
    plain_users: BTreeMap<String, Secret>,
    /// KIP-368: a session's longest lifetime, per mechanism (only the
    /// mechanisms with `connections.max.reauth.ms` > 0).
    max_reauth_ms: Vec<(Mechanism, u64)>,
    /// OAUTHBEARER's JWT validation, when enabled.
    oauth: Option<std::sync::Arc<JwtValidator>>,
}

/// Kafka's name of the KIP-368 session lifetime setting.
pub const CONNECTIONS_MAX_REAUTH_MS: &str = "connections.max.reauth.ms";

/// The options of one JAAS login-module line
/// (`Module required key="value" key2=value2;`), in order.
pub fn parse_jaas(name: &str, text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let text = text.trim();
    let body = text
        .strip_suffix(';')
        .ok_or_else(|| invalid(name, "a JAAS line ends with ';'"))?;
    let mut rest = body.trim_start();
    // The login module's class and its control flag.
    // The flag may end the line (`ScramLoginModule required;`: no options).
    for what in ["login module", "control flag"] {
        let end = match rest.find(char::is_whitespace) {
            Some(end) => end,
            None if what == "control flag" && !rest.is_empty() => rest.len(),
            None => return Err(invalid(name, format!("no {what}"))),
        };
        rest = rest[end..].trim_start();
    }
    let mut options = Vec::new();
    while !rest.is_empty() {
        if options.len() >= limits::SASL_PLAIN_USERS_MAX {
            return Err(invalid(name, "too many options"));
        }
        let eq = rest
            .find('=')
            .ok_or_else(|| invalid(name, "expected key=\"value\""))?;
        let key = rest[..eq].trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(invalid(name, "expected key=\"value\""));
        }
        let after = rest[eq + 1..].trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut end = None;
            let mut chars = quoted.char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    c => value.push(c),
                }
            }
            let end = end.ok_or_else(|| invalid(name, "an unterminated quoted value"))?;
            (value, &quoted[end..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        options.push((key.to_string(), value));
        rest = next.trim_start();
    }
    Ok(options)
}

impl SaslConfig {
    pub fn build(settings: &SecuritySettings, listener: &str) -> Result<SaslConfig, ConfigError> {
        const MECHANISMS: &str = "sasl.enabled.mechanisms";
        let given = settings.get(listener, MECHANISMS).ok_or_else(|| {
            invalid(
                MECHANISMS,
                format!("listener {listener} uses SASL: set sasl.enabled.mechanisms=PLAIN (Kafka's default, GSSAPI, is not supported)"),
            )
        })?;
        let mut mechanisms = Vec::new();
        for m in given.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            match Mechanism::parse(m) {
                Some(m) => mechanisms.push(m),
                None => {
                    return Err(invalid(
                        MECHANISMS,
                        format!(
                            "{m} is not supported (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER are)"
                        ),
                    ))
                }
            }
        }
        for m in &mechanisms {
            // Kafka needs the mechanism's JAAS line (ScramLoginModule,
            // OAuthBearerLoginModule); its options (none for a broker) are
            // not used.
            let module = match m {
                Mechanism::Plain => continue,
                Mechanism::Scram(_) => "org.apache.kafka.common.security.scram.ScramLoginModule",
                Mechanism::OAuthBearer => {
                    "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule"
                }
            };
            let key = format!("{}.sasl.jaas.config", m.name().to_lowercase());
            let prefixed = format!("listener.name.{}.{key}", listener.to_lowercase());
            let line = settings.get(listener, &key).ok_or_else(|| {
                invalid(
                    &prefixed,
                    format!(
                        "{} is enabled: its JAAS line is needed ({module} required;)",
                        m.name()
                    ),
                )
            })?;
            parse_jaas(&prefixed, line)?;
        }
        let oauth = if mechanisms.contains(&Mechanism::OAuthBearer) {
            Some(std::sync::Arc::new(super::oauth::validator(
                settings, listener,
            )?))
        } else {
            None
        };
        if mechanisms.is_empty() {
            return Err(invalid(MECHANISMS, "no mechanism"));
        }
        let mut plain_users = BTreeMap::new();
        if mechanisms.contains(&Mechanism::Plain) {
            let key = "plain.sasl.jaas.config";
            let prefixed = format!("listener.name.{}.{key}", listener.to_lowercase());
            let line = settings.get(listener, key).ok_or_else(|| {
                invalid(
                    &prefixed,
                    "PLAIN is enabled: its JAAS line with user_NAME=\"password\" options is needed",
                )
            })?;
            for (k, v) in parse_jaas(&prefixed, line)? {
                if let Some(user) = k.strip_prefix("user_") {
                    plain_users.insert(user.to_string(), Secret(v));
                }
            }
        }
        // Kafka's order: `listener.name.<l>.<mechanism>.connections.max.reauth.ms`,
        // then the listener's (or the broker's) `connections.max.reauth.ms`.
        let mut max_reauth_ms = Vec::new();
        for m in &mechanisms {
            let per_mechanism = format!("{}.{CONNECTIONS_MAX_REAUTH_MS}", m.name().to_lowercase());
            let given = match settings.get(listener, &per_mechanism) {
                Some(v) => Some((per_mechanism, v)),
                None => settings
                    .get(listener, CONNECTIONS_MAX_REAUTH_MS)
                    .map(|v| (CONNECTIONS_MAX_REAUTH_MS.to_string(), v)),
            };
            let Some((key, value)) = given else { continue };
            let ms: i64 = value
                .parse()
                .map_err(|_| invalid(&key, "a number of milliseconds"))?;
            // 0 (Kafka's default) or less: sessions never expire.
            if let Ok(ms @ 1..) = u64::try_from(ms) {
                max_reauth_ms.push((*m, ms));
            }
        }
        Ok(SaslConfig {
            mechanisms,
            plain_users,
            max_reauth_ms,
            oauth,
        })
    }

    /// The longest lifetime of a session authenticated with `mechanism`
    /// (`None`: it never expires).
    pub fn max_reauth_ms(&self, mechanism: Mechanism) -> Option<u64> {
        self.max_reauth_ms
            .iter()
            .find(|(m, _)| *m == mechanism)
            .map(|(_, ms)| *ms)
    }

    pub fn mechanism_names(&self) -> Vec<String> {
        self.mechanisms
            .iter()
            .map(|m| m.name().to_string())
            .collect()
    }
}

/// Where a connection is in its authentication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SaslState {
    /// ApiVersions or SaslHandshake expected.
    Handshake,
    /// Tokens expected, in SaslAuthenticate requests or raw (handshake v0).
    Authenticate {
        mechanism: Mechanism,
        raw: bool,
    },
    Authenticated(KafkaPrincipal),
    Failed,
}

/// The answer to a handshake or a token.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub error: ErrorCode,
    pub message: Option<String>,
    /// The server's token (empty for PLAIN).
    pub token: Vec<u8>,
    /// Close the connection once this answer is sent.
    pub close: bool,
    /// Send no answer (only with `close`): a re-authentication that asked
    /// for another mechanism is closed without one, as in Kafka.
    pub silent: bool,
    /// KIP-368: once authenticated, the session's lifetime (0: it never
    /// expires), answered in SaslAuthenticate v1+.
    pub session_lifetime_ms: i64,
}

impl Outcome {
    fn ok(token: Vec<u8>) -> Outcome {
        Outcome {
            error: ErrorCode::NONE,
            message: None,
            token,
            close: false,
            silent: false,
            session_lifetime_ms: 0,
        }
    }

    fn failed(error: ErrorCode, message: Option<String>) -> Outcome {
        Outcome {
            error,
            message,
            token: Vec::new(),
            close: true,
            silent: false,
            session_lifetime_ms: 0,
        }
    }
}

/// What a re-authentication must keep (KIP-368).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Reauthentication {
    mechanism: Mechanism,
    principal: KafkaPrincipal,
    /// The handshake named another mechanism: the next token fails.
    other_mechanism: Option<String>,
}

/// One connection's authentication. Times are milliseconds of a monotonic
/// clock the caller chooses (the connection's age), passed in.
#[derive(Debug)]
pub struct SaslSession {
    config: std::sync::Arc<SaslConfig>,
    state: SaslState,
    /// A SCRAM exchange between its first and its final message.
    scram: Option<ScramExchange>,
    /// The mechanism of the current (or last) successful authentication.
    authenticated_with: Option<Mechanism>,
    /// When the authenticated session expires (KIP-368), if it does.
    expires_at_ms: Option<u64>,
    /// When the last re-authentication began.
    reauth_began_ms: Option<u64>,
    /// While re-authenticating: what the new authentication must keep.
    reauth: Option<Reauthentication>,
    /// OAUTHBEARER: the error challenge sent for an invalid token, until
    /// the client's `\x01` ends the exchange.
    oauth_error: Option<String>,
}

/// One step of a mechanism: the principal once authenticated, the server's
/// token, and the credential's own expiry (ms since the epoch), if any.
type Step = (Option<KafkaPrincipal>, Vec<u8>, Option<i64>);

impl SaslSession {
    pub fn new(config: std::sync::Arc<SaslConfig>) -> SaslSession {
        SaslSession {
            config,
            state: SaslState::Handshake,
            scram: None,
            authenticated_with: None,
            expires_at_ms: None,
            reauth_began_ms: None,
            reauth: None,
            oauth_error: None,
        }
    }

    /// Whether the authenticated session's lifetime is over at `now_ms`
    /// (Kafka's rule: strictly after its expiry). Its connection is closed
    /// on the next request it sends, unless that request re-authenticates
    /// in time.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.principal().is_some() && self.expires_at_ms.is_some_and(|at| now_ms > at)
    }

    /// Whether a re-authentication is under way.
    pub fn reauthenticating(&self) -> bool {
        self.reauth.is_some()
    }

    /// A SaslHandshake from an authenticated client at `now_ms`: starts a
    /// re-authentication (true) if its session has an expiry and the last
    /// re-authentication began at least a second ago, as Kafka's
    /// `maybeBeginServerReauthentication`; otherwise (false) the handshake
    /// is a request like any other (answered ILLEGAL_SASL_STATE).
    pub fn begin_reauthentication(&mut self, now_ms: u64) -> bool {
        let (SaslState::Authenticated(principal), Some(mechanism)) =
            (&self.state, self.authenticated_with)
        else {
            return false;
        };
        if self.expires_at_ms.is_none() {
            return false;
        }
        if self.reauth_began_ms.is_some_and(|began| {
            now_ms.saturating_sub(began) < limits::REAUTHENTICATION_INTERVAL_MIN_MS
        }) {
            return false;
        }
        self.reauth = Some(Reauthentication {
            mechanism,
            principal: principal.clone(),
            other_mechanism: None,
        });
        self.reauth_began_ms = Some(now_ms);
        self.state = SaslState::Handshake;
        true
    }

    pub fn state(&self) -> &SaslState {
        &self.state
    }

    pub fn config(&self) -> &SaslConfig {
        &self.config
    }

    pub fn principal(&self) -> Option<&KafkaPrincipal> {
        match &self.state {
            SaslState::Authenticated(p) => Some(p),
            _ => None,
        }
    }

    /// A SaslHandshake naming `mechanism`, at request `version`.
    pub fn handshake(&mut self, mechanism: &str, version: i16) -> Outcome {
        assert!(
            self.state == SaslState::Handshake,
            "a handshake is only handled before one succeeded"
        );
        match self
            .config
            .mechanisms
            .iter()
            .find(|m| m.name() == mechanism)
        {
            Some(m) => {
                self.state = SaslState::Authenticate {
                    mechanism: *m,
                    raw: version == 0,
                };
                // Kafka answers the handshake and fails the next token.
                if let Some(reauth) = self.reauth.as_mut().filter(|r| r.mechanism != *m) {
                    reauth.other_mechanism = Some(m.name().to_string());
                }
                Outcome::ok(Vec::new())
            }
            None => {
                self.state = SaslState::Failed;
                self.reauth = None;
                Outcome::failed(ErrorCode::UNSUPPORTED_SASL_MECHANISM, None)
            }
        }
    }

    /// A client token at `now_ms`, after a successful handshake.
    pub fn authenticate(&mut self, token: &[u8], cx: &dyn SaslContext, now_ms: u64) -> Outcome {
        let SaslState::Authenticate { mechanism, .. } = self.state else {
            panic!("tokens are only handled after a handshake");
        };
        if let Some(reauth) = &self.reauth {
            if let Some(other) = &reauth.other_mechanism {
                tracing::debug!(
                    "SASL mechanism '{other}' requested by client is not supported for re-authentication of mechanism '{}'",
                    reauth.mechanism.name()
                );
                self.state = SaslState::Failed;
                self.reauth = None;
                let mut out = Outcome::failed(ErrorCode::SASL_AUTHENTICATION_FAILED, None);
                out.silent = true;
                return out;
            }
        }
        let result = match mechanism {
            Mechanism::Plain => self.plain(token).map(|p| (Some(p), Vec::new(), None)),
            Mechanism::Scram(m) => self.scram(m, token, cx).map(|(p, token)| (p, token, None)),
            Mechanism::OAuthBearer => self.oauthbearer(token, cx),
        };
        let result = result.and_then(|step| match (&self.reauth, &step.0) {
            (Some(r), Some(p)) if r.principal != *p => Err(format!(
                "Cannot change principals during re-authentication from User.{}: User.{}",
                r.principal.name, p.name
            )),
            _ => Ok(step),
        });
        match result {
            Ok((principal, token, credential_expires_at_ms)) => {
                let mut out = Outcome::ok(token);
                if let Some(principal) = principal {
                    assert!(
                        self.scram.is_none(),
                        "no exchange left open once authenticated"
                    );
                    self.state = SaslState::Authenticated(principal);
                    self.authenticated_with = Some(mechanism);
                    self.reauth = None;
                    // Kafka's rule: the shorter of `connections.max.reauth.ms`
                    // and what is left of the credential's own lifetime (a
                    // JWT's `exp`; PLAIN and SCRAM have none), 0 at least.
                    let left = credential_expires_at_ms.map(|exp| {
                        u64::try_from(exp.saturating_sub(cx.wall_clock_ms())).unwrap_or(0)
                    });
                    let lifetime = match (left, self.config.max_reauth_ms(mechanism)) {
                        (Some(left), Some(max)) => Some(left.min(max)),
                        (left, max) => left.or(max),
                    };
                    self.expires_at_ms = lifetime.map(|ms| now_ms.saturating_add(ms));
                    out.session_lifetime_ms =
                        lifetime.map_or(0, |ms| i64::try_from(ms).unwrap_or(i64::MAX));
                }
                out
            }
            Err(message) => {
                self.state = SaslState::Failed;
                self.scram = None;
                self.reauth = None;
                self.oauth_error = None;
                Outcome::failed(ErrorCode::SASL_AUTHENTICATION_FAILED, Some(message))
            }
        }
    }

    /// One SCRAM round: the first message opens the exchange (answer:
    /// server-first), the final one closes it (answer: server-final and the
    /// principal).
    fn scram(
        &mut self,
        m: ScramMechanism,
        token: &[u8],
        cx: &dyn SaslContext,
    ) -> Result<(Option<KafkaPrincipal>, Vec<u8>), String> {
        match self.scram.take() {
            None => {
                let nonce = cx.server_nonce();
                let (exchange, server_first) =
                    ScramExchange::start(m, token, |u| cx.scram_credential(u, m), &nonce)?;
                self.scram = Some(exchange);
                Ok((None, server_first))
            }
            Some(exchange) => {
                let (user, server_final) = exchange.finish(token)?;
                Ok((Some(KafkaPrincipal::user(user)), server_final))
            }
        }
    }

    /// OAUTHBEARER, as Kafka's `OAuthBearerSaslServer`: a valid token
    /// authenticates in one round; an invalid one is answered with the error
    /// challenge (not yet a failure), and the client's `\x01` after it fails.
    fn oauthbearer(&mut self, token: &[u8], cx: &dyn SaslContext) -> Result<Step, String> {
        if let (Some(error), [1]) = (self.oauth_error.take(), token) {
            return Err(error);
        }
        let Some(oauth) = self.config.oauth.clone() else {
            return Err("OAUTHBEARER is not configured".into());
        };
        let (authzid, jwt) = super::oauth::parse_initial_response(token).map_err(|why| {
            tracing::debug!("invalid OAUTHBEARER client message: {why}");
            "Authentication failed during authentication due to invalid credentials with SASL mechanism OAUTHBEARER".to_string()
        })?;
        match oauth.validate(&jwt, cx.wall_clock_ms()) {
            Err(why) => {
                tracing::debug!("OAUTHBEARER token refused: {why}");
                let challenge = super::oauth::INVALID_TOKEN.to_string();
                self.oauth_error = Some(challenge.clone());
                Ok((None, challenge.into_bytes(), None))
            }
            Ok(t) if !authzid.is_empty() && authzid != t.principal => Err(format!(
                "Authentication failed: Client requested an authorization id ({authzid}) that is different from the token's principal name ({})",
                t.principal
            )),
            Ok(t) => Ok((
                Some(KafkaPrincipal::user(t.principal)),
                Vec::new(),
                Some(t.expires_at_ms),
            )),
        }
    }

    fn plain(&self, token: &[u8]) -> Result<KafkaPrincipal, String> {
        let m = PlainMessage::parse(token).map_err(|e| e.to_string())?;
        let ok = self
            .config
            .plain_users
            .get(m.username)
            .is_some_and(|s| same_secret(s.0.as_bytes(), m.password.as_bytes()));
        if ok {
            Ok(KafkaPrincipal::user(m.username))
        } else {
            Err("Authentication failed: Invalid username or password".to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// No SCRAM users; a fixed nonce.
    struct NoScram;
    impl SaslContext for NoScram {
        fn scram_credential(&self, _: &str, _: ScramMechanism) -> Option<StoredCredential> {
            None
        }
        fn server_nonce(&self) -> String {
            "n".into()
        }
        fn wall_clock_ms(&self) -> i64 {
            1_000_000
        }
    }

    fn config() -> Arc<SaslConfig> {
        let mut s = SecuritySettings::default();
        s.set("sasl.enabled.mechanisms", "PLAIN");
        s.set(
            "listener.name.sasl_plaintext.plain.sasl.jaas.config",
            r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="admin-secret" user_admin="admin-secret" user_alice="a\"lice";"#,
        );
        Arc::new(SaslConfig::build(&s, "SASL_PLAINTEXT").unwrap())
    }

    #[test]
    fn plain_authenticates_known_users_only() {
        let c = config();
        assert!(!format!("{c:?}").contains("admin-secret"));
        let mut ok = SaslSession::new(c.clone());
        assert_eq!(ok.handshake("PLAIN", 1).error, ErrorCode::NONE);
        assert_eq!(
            ok.state(),
            &SaslState::Authenticate {
                mechanism: Mechanism::Plain,
                raw: false
            }
        );
        let out = ok.authenticate(b"\0alice\0a\"lice", &NoScram, 0);
        assert_eq!((out.error, out.close), (ErrorCode::NONE, false));
        assert_eq!(ok.principal(), Some(&KafkaPrincipal::user("alice")));

        let mut bad = SaslSession::new(c.clone());
        bad.handshake("PLAIN", 0);
        assert!(matches!(
            bad.state(),
            SaslState::Authenticate { raw: true, .. }
        ));
        let out = bad.authenticate(b"\0alice\0wrong", &NoScram, 0);
        assert_eq!(out.error, ErrorCode::SASL_AUTHENTICATION_FAILED);
        assert!(out.close);
        assert_eq!(bad.principal(), None);
        let mut unknown = SaslSession::new(c.clone());
        unknown.handshake("PLAIN", 1);
        assert!(
            unknown
                .authenticate(b"\0mallory\0admin-secret", &NoScram, 0)
                .close
        );

        let mut other = SaslSession::new(c);
        let out = other.handshake("SCRAM-SHA-256", 1);
        assert_eq!(out.error, ErrorCode::UNSUPPORTED_SASL_MECHANISM);
        assert!(out.close);
    }

    #[test]
    fn settings_are_checked_at_build() {
        let mut s = SecuritySettings::default();
        assert!(SaslConfig::build(&s, "X").is_err(), "GSSAPI default");
        s.set("sasl.enabled.mechanisms", "GSSAPI");
        assert!(SaslConfig::build(&s, "X").is_err());
        s.set("sasl.enabled.mechanisms", "SCRAM-SHA-512");
        assert!(
            SaslConfig::build(&s, "X").is_err(),
            "no ScramLoginModule line"
        );
        s.set(
            "listener.name.x.scram-sha-512.sasl.jaas.config",
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        );
        assert_eq!(
            SaslConfig::build(&s, "X").unwrap().mechanism_names(),
            ["SCRAM-SHA-512"]
        );
        s.set("sasl.enabled.mechanisms", "PLAIN");
        assert!(SaslConfig::build(&s, "X").is_err(), "no JAAS line");
        s.set(
            "listener.name.x.plain.sasl.jaas.config",
            "Module required user_a=\"b\"",
        );
        assert!(SaslConfig::build(&s, "X").is_err(), "no ';'");
        s.set(
            "listener.name.x.plain.sasl.jaas.config",
            "Module required user_a=b;",
        );
        let c = SaslConfig::build(&s, "X").unwrap();
        assert_eq!(c.mechanism_names(), ["PLAIN"]);
        assert!(parse_jaas("n", "M required a=\"unterminated;").is_err());
        assert!(parse_jaas("n", "M required;").unwrap().is_empty());
        assert!(parse_jaas("n", "M;").is_err(), "no control flag");
        assert_eq!(
            parse_jaas("n", "M required  a=\"x y\" b=z ;").unwrap(),
            [
                ("a".to_string(), "x y".to_string()),
                ("b".to_string(), "z".to_string())
            ]
        );
    }

    fn reauth_config(extra: &[(&str, &str)]) -> Arc<SaslConfig> {
        let mut s = SecuritySettings::default();
        s.set("sasl.enabled.mechanisms", "PLAIN,SCRAM-SHA-256");
        s.set(
            "listener.name.l.plain.sasl.jaas.config",
            r#"M required user_alice="a" user_bob="b";"#,
        );
        s.set("scram-sha-256.sasl.jaas.config", "M required;");
        for (k, v) in extra {
            s.set(k, v);
        }
        Arc::new(SaslConfig::build(&s, "L").unwrap())
    }

    fn plain_login(session: &mut SaslSession, user: &str, password: &str, now_ms: u64) -> Outcome {
        assert_eq!(session.handshake("PLAIN", 1).error, ErrorCode::NONE);
        let token = format!("\0{user}\0{password}");
        session.authenticate(token.as_bytes(), &NoScram, now_ms)
    }

    #[test]
    fn connections_max_reauth_ms_is_per_listener_and_mechanism() {
        let c = reauth_config(&[]);
        assert_eq!(c.max_reauth_ms(Mechanism::Plain), None, "Kafka's default 0");
        let c = reauth_config(&[("connections.max.reauth.ms", "3000")]);
        assert_eq!(c.max_reauth_ms(Mechanism::Plain), Some(3000));
        let c = reauth_config(&[
            ("connections.max.reauth.ms", "3000"),
            ("listener.name.l.connections.max.reauth.ms", "4000"),
            ("listener.name.l.plain.connections.max.reauth.ms", "0"),
        ]);
        assert_eq!(
            c.max_reauth_ms(Mechanism::Plain),
            None,
            "mechanism's 0 wins"
        );
        let sha = Mechanism::Scram(ScramMechanism::Sha256);
        assert_eq!(c.max_reauth_ms(sha), Some(4000), "listener's wins");
        let mut s = SecuritySettings::default();
        s.set("sasl.enabled.mechanisms", "PLAIN");
        s.set("plain.sasl.jaas.config", "M required;");
        s.set("listener.name.l.plain.connections.max.reauth.ms", "soon");
        assert!(SaslConfig::build(&s, "L").is_err());
    }

    #[test]
    fn a_session_expires_after_its_lifetime_unless_it_reauthenticates() {
        // Without a lifetime: no expiry, and a handshake is no re-authentication.
        let mut forever = SaslSession::new(reauth_config(&[]));
        let out = plain_login(&mut forever, "alice", "a", 0);
        assert_eq!((out.error, out.session_lifetime_ms), (ErrorCode::NONE, 0));
        assert!(!forever.expired(u64::MAX));
        assert!(!forever.begin_reauthentication(10_000));
        assert!(forever.principal().is_some());

        let c = reauth_config(&[("connections.max.reauth.ms", "3000")]);
        let mut s = SaslSession::new(c.clone());
        let out = plain_login(&mut s, "alice", "a", 100);
        assert_eq!(
            (out.error, out.session_lifetime_ms),
            (ErrorCode::NONE, 3000)
        );
        assert!(!s.expired(3100), "expired only strictly after its end");
        assert!(s.expired(3101));

        // Re-authentication in time: same mechanism and principal; the
        // lifetime starts again from its end.
        assert!(s.begin_reauthentication(2000));
        assert!(s.reauthenticating());
        assert_eq!(s.principal(), None, "nothing but SASL requests meanwhile");
        assert!(!s.expired(9999));
        let out = plain_login(&mut s, "alice", "a", 2500);
        assert_eq!(
            (out.error, out.session_lifetime_ms),
            (ErrorCode::NONE, 3000)
        );
        assert!(!s.reauthenticating());
        assert_eq!(s.principal(), Some(&KafkaPrincipal::user("alice")));
        assert!(!s.expired(5500));
        assert!(s.expired(5501));
        // At most one re-authentication a second (from its start).
        assert!(!s.begin_reauthentication(2999));
        assert!(s.begin_reauthentication(3000));

        // Another principal: refused, closed.
        let mut s = SaslSession::new(c.clone());
        plain_login(&mut s, "alice", "a", 0);
        assert!(s.begin_reauthentication(1000));
        let out = plain_login(&mut s, "bob", "b", 1000);
        assert_eq!(out.error, ErrorCode::SASL_AUTHENTICATION_FAILED);
        assert!(out.close && !out.silent);
        assert_eq!(
            out.message.as_deref(),
            Some("Cannot change principals during re-authentication from User.alice: User.bob")
        );
        assert_eq!(s.state(), &SaslState::Failed);

        // A wrong password on re-authentication fails as a first login does.
        let mut s = SaslSession::new(c.clone());
        plain_login(&mut s, "alice", "a", 0);
        assert!(s.begin_reauthentication(1000));
        let out = plain_login(&mut s, "alice", "wrong", 1000);
        assert_eq!(
            (out.error, out.close),
            (ErrorCode::SASL_AUTHENTICATION_FAILED, true)
        );

        // Another mechanism: the handshake is answered, the token closes
        // the connection without an answer (Kafka's REAUTH_BAD_MECHANISM).
        let mut s = SaslSession::new(c);
        plain_login(&mut s, "alice", "a", 0);
        assert!(s.begin_reauthentication(1000));
        assert_eq!(s.handshake("SCRAM-SHA-256", 1).error, ErrorCode::NONE);
        let out = s.authenticate(b"n,,n=alice,r=cli", &NoScram, 1000);
        assert!(out.close && out.silent);
        assert_eq!(s.principal(), None);
    }

    /// Alice's SCRAM-SHA-256 credential.
    struct Alice(StoredCredential);
    impl SaslContext for Alice {
        fn scram_credential(&self, user: &str, m: ScramMechanism) -> Option<StoredCredential> {
            (user == "alice" && m == ScramMechanism::Sha256).then(|| self.0.clone())
        }
        fn server_nonce(&self) -> String {
            "srv".into()
        }
        fn wall_clock_ms(&self) -> i64 {
            1_000_000
        }
    }

    #[test]
    fn scram_takes_two_rounds_and_fails_closed() {
        let mut s = SecuritySettings::default();
        s.set("sasl.enabled.mechanisms", "SCRAM-SHA-256,PLAIN");
        s.set("plain.sasl.jaas.config", "M required user_x=\"y\";");
        s.set("scram-sha-256.sasl.jaas.config", "M required;");
        let c = Arc::new(SaslConfig::build(&s, "L").unwrap());
        assert_eq!(c.mechanism_names(), ["SCRAM-SHA-256", "PLAIN"]);
        let m = ScramMechanism::Sha256;
        let alice = Alice(m.credential(b"salt", &m.salted_password(b"pw", b"salt", 4096), 4096));

        let mut bad = SaslSession::new(c.clone());
        assert_eq!(bad.handshake("SCRAM-SHA-256", 1).error, ErrorCode::NONE);
        let first = bad.authenticate(b"n,,n=alice,r=cli", &alice, 0);
        assert_eq!((first.error, first.close), (ErrorCode::NONE, false));
        assert!(first.token.starts_with(b"r=clisrv,s=c2FsdA==,i=4096"));
        assert_eq!(bad.principal(), None, "not after one round");
        let last = bad.authenticate(b"c=biws,r=clisrv,p=AAAA", &alice, 0);
        assert_eq!(last.error, ErrorCode::SASL_AUTHENTICATION_FAILED);
        assert!(last.close);
        assert_eq!(bad.state(), &SaslState::Failed);

        let mut unknown = SaslSession::new(c.clone());
        unknown.handshake("SCRAM-SHA-256", 1);
        let out = unknown.authenticate(b"n,,n=bob,r=cli", &alice, 0);
        assert_eq!(out.error, ErrorCode::SASL_AUTHENTICATION_FAILED);
        assert_eq!(
            out.message.as_deref(),
            Some(super::super::scram::INVALID_CREDENTIALS)
        );

        let mut other = SaslSession::new(c);
        let out = other.handshake("SCRAM-SHA-512", 1);
        assert_eq!(out.error, ErrorCode::UNSUPPORTED_SASL_MECHANISM);
    }
}
