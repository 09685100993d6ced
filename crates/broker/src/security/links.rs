//! How a cluster node reaches the other nodes, with Kafka's settings: the
//! inter-broker listener (`inter.broker.listener.name`, or the listener
//! named after `security.inter.broker.protocol`, PLAINTEXT by default) for
//! replica fetchers and the coordinators' sends, and the first of
//! `controller.listener.names` for the controller channel and the quorum.
//!
//! A listener that uses TLS is reached with the trust store of that
//! listener's settings (`ssl.truststore.*`, PEM), the key store
//! (`ssl.keystore.*`) as client certificate for mutual TLS, and the host
//! name checked unless `ssl.endpoint.identification.algorithm` is empty.
//! A SASL listener is logged in to with `sasl.mechanism.inter.broker.protocol`
//! or `sasl.mechanism.controller.protocol` (Kafka's default, GSSAPI, is not
//! supported) and the `username`/`password` of that mechanism's JAAS line
//! for the listener (`listener.name.<l>.<mech>.sasl.jaas.config`), as
//! Kafka's `ChannelBuilders` build the client side of a listener.

use std::sync::Arc;

use fjord_client::{Connector, SaslCredentials, SaslMechanism};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use super::sasl::parse_jaas;
use super::tls::{certificates, pem_text, provider, trust_roots};
use super::{invalid, SecurityProtocol, SecuritySettings};
use crate::config::ConfigError;
use crate::kraft::KraftConfig;

/// The listeners and connectors of a cluster node's channels to the others.
#[derive(Clone, Debug, Default)]
pub struct NodeLinks {
    /// The inter-broker listener's name (brokers' endpoints of that name
    /// are dialled).
    pub broker_listener: String,
    pub broker: Connector,
    pub controller: Connector,
}

const INTER_BROKER_NAME: &str = "inter.broker.listener.name";
const INTER_BROKER_PROTOCOL: &str = "security.inter.broker.protocol";
const INTER_BROKER_MECHANISM: &str = "sasl.mechanism.inter.broker.protocol";
const CONTROLLER_MECHANISM: &str = "sasl.mechanism.controller.protocol";

/// Verifies the server's chain but not its name
/// (`ssl.endpoint.identification.algorithm=`, as Kafka allows).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The TLS client side of `listener`.
pub fn tls_client(
    settings: &SecuritySettings,
    listener: &str,
) -> Result<Arc<rustls::ClientConfig>, ConfigError> {
    let roots = trust_roots(
        settings,
        listener,
        &format!("other nodes are reached on TLS listener {listener}: a PEM trust store is needed (Fjord has no JVM default trust store)"),
    )?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| invalid("ssl.truststore.location", e.to_string()))?;
    let check_name = settings
        .get_raw(listener, "ssl.endpoint.identification.algorithm")
        .is_none_or(|v| !v.is_empty());
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("ssl.enabled.protocols", e.to_string()))?;
    let builder = if check_name {
        builder.with_webpki_verifier(verifier)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(verifier)))
    };
    let keystore = pem_text(
        settings,
        listener,
        "ssl.keystore.location",
        &["ssl.keystore.key", "ssl.keystore.certificate.chain"],
    )?;
    let config = match keystore {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let chain = certificates(&pem, "ssl.keystore.location")?;
            let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| {
                invalid("ssl.keystore.location", "no unencrypted private key found")
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| invalid("ssl.keystore.location", e.to_string()))?
        }
    };
    Ok(Arc::new(config))
}

/// The SASL login on `listener` with the mechanism that `mechanism_key`
/// names: the credentials of its JAAS line. `enabled`: the listener's
/// `sasl.enabled.mechanisms`, which must hold it (checked when given).
fn sasl_login(
    settings: &SecuritySettings,
    listener: &str,
    mechanism_key: &str,
    check_enabled: bool,
) -> Result<SaslCredentials, ConfigError> {
    let name = settings
        .get(listener, mechanism_key)
        .unwrap_or("GSSAPI")
        .to_string();
    let mechanism = SaslMechanism::parse(&name).ok_or_else(|| {
        invalid(
            mechanism_key,
            format!("{name} is not supported for listener {listener}: set {mechanism_key}=PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (Kafka's default is GSSAPI)"),
        )
    })?;
    if check_enabled {
        let enabled = settings
            .get(listener, "sasl.enabled.mechanisms")
            .unwrap_or("GSSAPI");
        if !enabled.split(',').any(|m| m.trim() == name) {
            return Err(invalid(
                mechanism_key,
                format!("{mechanism_key} must be included in sasl.enabled.mechanisms when SASL is used for listener {listener}"),
            ));
        }
    }
    let key = format!("{}.sasl.jaas.config", name.to_lowercase());
    let prefixed = format!("listener.name.{}.{key}", listener.to_lowercase());
    let line = settings.get(listener, &key).ok_or_else(|| {
        invalid(
            &prefixed,
            format!("the other nodes are logged in to with {name}: its JAAS line needs username=\"...\" password=\"...\""),
        )
    })?;
    let options = parse_jaas(&prefixed, line)?;
    let option = |k: &str| {
        options
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    match (option("username"), option("password")) {
        (Some(user), Some(password)) if !user.is_empty() => {
            Ok(SaslCredentials::new(mechanism, user, password))
        }
        _ => Err(invalid(
            &prefixed,
            format!("the other nodes are logged in to with {name}: its JAAS line needs username=\"...\" password=\"...\""),
        )),
    }
}

/// The connector for a listener of `protocol`.
fn connector(
    settings: &SecuritySettings,
    listener: &str,
    protocol: SecurityProtocol,
    mechanism_key: &str,
    check_enabled: bool,
) -> Result<Connector, ConfigError> {
    let tls = protocol
        .uses_tls()
        .then(|| tls_client(settings, listener))
        .transpose()?;
    let sasl = protocol
        .uses_sasl()
        .then(|| sasl_login(settings, listener, mechanism_key, check_enabled))
        .transpose()?;
    Ok(Connector::new(tls, sasl))
}

/// The protocol of listener `name` in `listener.security.protocol.map`
/// (without a map: the protocol the name spells).
pub fn protocol_of(kraft: &KraftConfig, name: &str) -> Result<SecurityProtocol, ConfigError> {
    let given = if kraft.security_protocol_map.is_empty() {
        name
    } else {
        kraft
            .security_protocol_map
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.as_str())
            .ok_or_else(|| {
                invalid(
                    "listener.security.protocol.map",
                    format!("no entry for listener {name}"),
                )
            })?
    };
    SecurityProtocol::parse(given).ok_or_else(|| {
        invalid(
            "listener.security.protocol.map",
            format!("listener {name}: unknown protocol {given}"),
        )
    })
}

/// Checks the inter-broker and controller settings of a cluster node as
/// Kafka's `KafkaConfig` does and builds its connectors. `advertised`:
/// the names of the node's client listeners (empty for a controller-only
/// node).
pub fn node_links(
    settings: &SecuritySettings,
    kraft: &KraftConfig,
    advertised: &[String],
    broker_role: bool,
) -> Result<NodeLinks, ConfigError> {
    let broker_listener = match (
        settings.global(INTER_BROKER_NAME),
        settings.global(INTER_BROKER_PROTOCOL),
    ) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                INTER_BROKER_NAME,
                "Only one of inter.broker.listener.name and security.inter.broker.protocol should be set.",
            ))
        }
        (Some(name), None) => name.to_uppercase(),
        (None, Some(protocol)) => {
            SecurityProtocol::parse(protocol).ok_or_else(|| {
                invalid(
                    INTER_BROKER_PROTOCOL,
                    "expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
                )
            })?;
            protocol.to_uppercase()
        }
        (None, None) => "PLAINTEXT".to_string(),
    };
    let mut links = NodeLinks {
        broker_listener: broker_listener.clone(),
        ..NodeLinks::default()
    };
    if broker_role {
        if kraft.is_controller_name(&broker_listener) || !advertised.contains(&broker_listener) {
            return Err(invalid(
                INTER_BROKER_NAME,
                format!(
                    "inter.broker.listener.name must be a listener name defined in advertised.listeners. The valid options based on currently configured listeners are {}",
                    advertised.join(",")
                ),
            ));
        }
        let protocol = protocol_of(kraft, &broker_listener)?;
        links.broker = connector(
            settings,
            &broker_listener,
            protocol,
            INTER_BROKER_MECHANISM,
            true,
        )?;
    }
    let controller_listener = kraft
        .controller_listener_names
        .first()
        .cloned()
        .unwrap_or_else(|| "CONTROLLER".to_string());
    let protocol = protocol_of(kraft, &controller_listener)?;
    links.controller = connector(
        settings,
        &controller_listener,
        protocol,
        CONTROLLER_MECHANISM,
        false,
    )?;
    Ok(links)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(map: &str) -> KraftConfig {
        let mut k = KraftConfig::default();
        k.set("process.roles", "broker,controller").unwrap();
        k.set("controller.listener.names", "CONTROLLER").unwrap();
        k.set("listener.security.protocol.map", map).unwrap();
        k
    }

    const JAAS_PLAIN: &str = r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="broker" password="broker-secret" user_broker="broker-secret";"#;

    #[test]
    fn inter_broker_settings_are_checked_as_kafka_does() {
        let adv = vec!["INTERNAL".to_string(), "EXTERNAL".to_string()];
        let k = cluster("INTERNAL:SASL_PLAINTEXT,EXTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT");
        let mut s = SecuritySettings::default();
        // Default: the listener named PLAINTEXT, which is not defined.
        let e = node_links(&s, &k, &adv, true).unwrap_err().to_string();
        assert!(e.contains("advertised.listeners"), "{e}");
        s.set(INTER_BROKER_NAME, "internal");
        s.set(INTER_BROKER_PROTOCOL, "PLAINTEXT");
        let e = node_links(&s, &k, &adv, true).unwrap_err().to_string();
        assert!(e.contains("Only one of"), "{e}");
        let mut s = SecuritySettings::default();
        s.set(INTER_BROKER_NAME, "CONTROLLER");
        assert!(
            node_links(&s, &k, &adv, true).is_err(),
            "a controller listener"
        );
        s.set(INTER_BROKER_NAME, "INTERNAL");
        // SASL with Kafka's default mechanism, GSSAPI: refused.
        let e = node_links(&s, &k, &adv, true).unwrap_err().to_string();
        assert!(e.contains("GSSAPI"), "{e}");
        s.set(INTER_BROKER_MECHANISM, "PLAIN");
        s.set("sasl.enabled.mechanisms", "SCRAM-SHA-256");
        let e = node_links(&s, &k, &adv, true).unwrap_err().to_string();
        assert!(
            e.contains("must be included in sasl.enabled.mechanisms"),
            "{e}"
        );
        s.set("sasl.enabled.mechanisms", "PLAIN");
        let e = node_links(&s, &k, &adv, true).unwrap_err().to_string();
        assert!(e.contains("username"), "no JAAS line: {e}");
        s.set(
            "listener.name.internal.plain.sasl.jaas.config",
            r#"org.apache.kafka.common.security.plain.PlainLoginModule required user_broker="x";"#,
        );
        let e = node_links(&s, &k, &adv, true).unwrap_err().to_string();
        assert!(e.contains("username"), "server side only: {e}");
        assert!(!e.contains("broker-secret"));
        s.set("listener.name.internal.plain.sasl.jaas.config", JAAS_PLAIN);
        let links = node_links(&s, &k, &adv, true).unwrap();
        assert_eq!(links.broker_listener, "INTERNAL");
        let shown = format!("{links:?}");
        assert!(
            shown.contains("broker") && !shown.contains("broker-secret"),
            "{shown}"
        );
        // security.inter.broker.protocol names the listener of that name.
        let mut s = SecuritySettings::default();
        s.set(INTER_BROKER_PROTOCOL, "SSL");
        let e = node_links(&s, &k, &adv, true).unwrap_err().to_string();
        assert!(e.contains("INTERNAL,EXTERNAL"), "{e}");
        s.set(INTER_BROKER_PROTOCOL, "TLS");
        assert!(node_links(&s, &k, &adv, true).is_err());
        // A controller-only node has no inter-broker listener to check.
        let s = SecuritySettings::default();
        assert!(node_links(&s, &k, &[], false).is_ok());
    }

    #[test]
    fn tls_listeners_need_a_trust_store_and_the_controller_mechanism() {
        let adv = vec!["PLAINTEXT".to_string()];
        let k = cluster("PLAINTEXT:PLAINTEXT,CONTROLLER:SASL_SSL");
        let mut s = SecuritySettings::default();
        let e = node_links(&s, &k, &adv, true).unwrap_err().to_string();
        assert!(e.contains("ssl.truststore.type"), "{e}");
        s.set("ssl.truststore.type", "PEM");
        let e = node_links(&s, &k, &adv, true).unwrap_err().to_string();
        assert!(e.contains("trust store is needed"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, ca.cert.pem()).unwrap();
        s.set("ssl.truststore.location", path.to_str().unwrap());
        let e = node_links(&s, &k, &adv, true).unwrap_err().to_string();
        assert!(
            e.contains(CONTROLLER_MECHANISM) && e.contains("GSSAPI"),
            "{e}"
        );
        s.set(CONTROLLER_MECHANISM, "SCRAM-SHA-512");
        s.set(
            "listener.name.controller.scram-sha-512.sasl.jaas.config",
            r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="ctl" password="pw";"#,
        );
        s.set("ssl.endpoint.identification.algorithm", "");
        let links = node_links(&s, &k, &adv, true).unwrap();
        assert!(links.broker.is_plaintext());
        assert!(!links.controller.is_plaintext());
    }
}
