//! Security of the client listeners, configured with Kafka's names.
//!
//! - `listeners` names one or more client listeners beside the CONTROLLER
//!   one; `listener.security.protocol.map` gives each its protocol
//!   (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL); `advertised.listeners`
//!   gives each the address announced to clients. A client is told the
//!   brokers' endpoints of the listener it connected on
//!   ([`ClientListener`], [`crate::Broker::live_brokers_on`]).
//! - TLS ([`tls`]): rustls, PEM key and trust stores (`ssl.keystore.type=PEM`),
//!   `ssl.client.auth` for mutual TLS, the principal taken from the client
//!   certificate's subject through `ssl.principal.mapping.rules` ([`principal`]).
//! - SASL ([`sasl`]): SaslHandshake v0–v1 and SaslAuthenticate v0–v2 with
//!   PLAIN, users from the listener's JAAS line
//!   (`listener.name.<l>.plain.sasl.jaas.config`), and SCRAM-SHA-256/512
//!   ([`scram`]), credentials from the metadata image, and OAUTHBEARER
//!   ([`oauth`]), JWTs checked against a JWKS file.
//!
//! Every security setting may be prefixed by `listener.name.<listener>.`
//! (lower case), which wins over the unprefixed name, as in Kafka. Values
//! are kept in [`SecuritySettings`], whose `Debug` shows names only: no
//! secret is ever logged.

pub mod authorizer;
pub mod links;
pub mod oauth;
pub mod sasl;
pub mod scram;
pub mod tls;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::ConfigError;

/// Kafka's `SecurityProtocol`, with its ids as registered in metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(name: &str) -> Option<SecurityProtocol> {
        match name.trim().to_uppercase().as_str() {
            "PLAINTEXT" => Some(SecurityProtocol::Plaintext),
            "SSL" => Some(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Some(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Some(SecurityProtocol::SaslSsl),
            _ => None,
        }
    }

    /// The id Kafka registers (`BrokerEndpoint.security_protocol`).
    pub fn id(self) -> i16 {
        match self {
            SecurityProtocol::Plaintext => 0,
            SecurityProtocol::Ssl => 1,
            SecurityProtocol::SaslPlaintext => 2,
            SecurityProtocol::SaslSsl => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// One client listener: where it binds, what it announces, how it is secured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientListener {
    /// Upper case, as Kafka normalises listener names.
    pub name: String,
    pub bind_host: String,
    pub bind_port: u16,
    pub advertised_host: String,
    pub advertised_port: u16,
    pub protocol: SecurityProtocol,
}

/// The security settings Fjord acts on (besides `listener.name.*`), in name order.
pub const SECURITY_BROKER_CONFIGS: &[&str] = &[
    "connections.max.reauth.ms",
    "inter.broker.listener.name",
    "sasl.enabled.mechanisms",
    "sasl.mechanism.controller.protocol",
    "sasl.mechanism.inter.broker.protocol",
    "sasl.oauthbearer.clock.skew.seconds",
    "sasl.oauthbearer.expected.audience",
    "sasl.oauthbearer.expected.issuer",
    "sasl.oauthbearer.jwks.endpoint.url",
    "sasl.oauthbearer.sub.claim.name",
    "security.inter.broker.protocol",
    "ssl.client.auth",
    "ssl.endpoint.identification.algorithm",
    "ssl.key.password",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.keystore.location",
    "ssl.keystore.password",
    "ssl.keystore.type",
    "ssl.principal.mapping.rules",
    "ssl.truststore.certificates",
    "ssl.truststore.location",
    "ssl.truststore.password",
    "ssl.truststore.type",
];

/// Security settings by their Kafka names, raw until the listeners are built.
#[derive(Clone, Default)]
pub struct SecuritySettings {
    values: BTreeMap<String, String>,
}

impl std::fmt::Debug for SecuritySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: values may be passwords or keys.
        f.debug_set().entries(self.values.keys()).finish()
    }
}

impl SecuritySettings {
    /// Whether broker config `name` is a security setting kept here.
    pub fn handles(name: &str) -> bool {
        name.starts_with("listener.name.") || SECURITY_BROKER_CONFIGS.contains(&name)
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.values
            .insert(name.to_string(), value.trim().to_string());
    }

    /// `key` for `listener`: `listener.name.<listener>.<key>` first, then `key`.
    pub fn get(&self, listener: &str, key: &str) -> Option<&str> {
        self.get_raw(listener, key).filter(|v| !v.is_empty())
    }

    /// `key` for `listener` as given, even empty (prefixed first).
    pub fn get_raw(&self, listener: &str, key: &str) -> Option<&str> {
        let prefixed = format!("listener.name.{}.{key}", listener.to_lowercase());
        self.values
            .get(&prefixed)
            .or_else(|| self.values.get(key))
            .map(String::as_str)
    }

    /// A setting that has no per-listener form (empty: unset).
    pub fn global(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The settings given by their Kafka names (not `listener.name.*`).
    pub fn unprefixed(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values
            .iter()
            .filter(|(k, _)| !k.starts_with("listener.name."))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// A Kafka principal (`User:alice`); `User:ANONYMOUS` when nothing authenticated.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KafkaPrincipal {
    pub name: String,
}

impl KafkaPrincipal {
    pub fn user(name: impl Into<String>) -> KafkaPrincipal {
        KafkaPrincipal { name: name.into() }
    }

    pub fn anonymous() -> KafkaPrincipal {
        KafkaPrincipal::user("ANONYMOUS")
    }
}

impl std::fmt::Display for KafkaPrincipal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "User:{}", self.name)
    }
}

/// What one listener needs at run time, built once at start (files read,
/// settings checked): its TLS acceptor and SASL settings.
pub struct ListenerSecurity {
    pub name: Arc<str>,
    pub protocol: SecurityProtocol,
    pub tls: Option<tls::TlsServer>,
    pub sasl: Option<Arc<sasl::SaslConfig>>,
}

impl ListenerSecurity {
    /// A PLAINTEXT listener called `name`.
    pub fn plaintext(name: &str) -> ListenerSecurity {
        ListenerSecurity {
            name: Arc::from(name),
            protocol: SecurityProtocol::Plaintext,
            tls: None,
            sasl: None,
        }
    }

    /// Builds `listener`'s security from `settings`: an error names the
    /// setting that is missing or refused.
    pub fn build(
        settings: &SecuritySettings,
        listener: &ClientListener,
    ) -> Result<ListenerSecurity, ConfigError> {
        let tls = if listener.protocol.uses_tls() {
            Some(tls::TlsServer::build(settings, &listener.name)?)
        } else {
            None
        };
        let sasl = if listener.protocol.uses_sasl() {
            Some(Arc::new(sasl::SaslConfig::build(settings, &listener.name)?))
        } else {
            None
        };
        Ok(ListenerSecurity {
            name: Arc::from(listener.name.as_str()),
            protocol: listener.protocol,
            tls,
            sasl,
        })
    }
}

pub(crate) fn invalid(name: &str, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_string(),
        // Never the value: it may be a secret.
        value: String::new(),
        reason: why.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_prefixed_settings_win_and_debug_hides_values() {
        let mut s = SecuritySettings::default();
        s.set("ssl.keystore.location", "/global.pem");
        s.set(
            "listener.name.internal.ssl.keystore.location",
            "/internal.pem",
        );
        s.set("ssl.truststore.password", "hunter2");
        assert_eq!(
            s.get("INTERNAL", "ssl.keystore.location"),
            Some("/internal.pem")
        );
        assert_eq!(
            s.get("EXTERNAL", "ssl.keystore.location"),
            Some("/global.pem")
        );
        assert_eq!(s.get("EXTERNAL", "ssl.client.auth"), None);
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(SecuritySettings::handles(
            "listener.name.x.plain.sasl.jaas.config"
        ));
        assert!(!SecuritySettings::handles("log.dirs"));
        for p in ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] {
            let parsed = SecurityProtocol::parse(p).unwrap();
            assert_eq!(parsed.name(), p);
        }
        assert_eq!(SecurityProtocol::parse("sasl_ssl").map(|p| p.id()), Some(3));
        assert_eq!(SecurityProtocol::parse("TLS"), None);
        let mut sorted = SECURITY_BROKER_CONFIGS.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, SECURITY_BROKER_CONFIGS);
    }
}
