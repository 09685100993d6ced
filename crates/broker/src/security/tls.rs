//! TLS for SSL and SASL_SSL listeners, with rustls (ring provider).
//!
//! Kafka's PEM settings: `ssl.keystore.type=PEM` with `ssl.keystore.location`
//! naming one file that holds the private key and the certificate chain
//! (or the PEM text itself in `ssl.keystore.key` and
//! `ssl.keystore.certificate.chain`); `ssl.truststore.type=PEM` with
//! `ssl.truststore.location` (or `ssl.truststore.certificates`) holding the
//! CA certificates that client certificates must chain to;
//! `ssl.client.auth=required|requested|none`. Encrypted private keys
//! (`ssl.key.password`) and JKS/PKCS12 stores are refused with a message.
//!
//! A client's principal is its certificate's subject, in RFC 2253 form,
//! mapped by `ssl.principal.mapping.rules` ([`super::principal`]); without
//! a client certificate it is `User:ANONYMOUS`.

use std::sync::Arc;

use fjord_model::limits;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

use super::{invalid, KafkaPrincipal, SecuritySettings};
use crate::config::ConfigError;
use fjord_auth::principal::PrincipalRules;

/// `ssl.client.auth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

/// What an SSL or SASL_SSL listener needs: its acceptor and how to name
/// a client from its certificate.
#[derive(Clone)]
pub struct TlsServer {
    pub acceptor: TlsAcceptor,
    pub client_auth: ClientAuth,
    pub rules: PrincipalRules,
}

/// rustls with ring: small, pure Rust and assembly, no C toolchain (cmake)
/// to build, unlike aws-lc-rs. rustls 0.23.48 marks ring's provider
/// deprecated only because it lacks post-quantum key exchange.
#[allow(deprecated)]
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The PEM text of `location_key` (a file, size-bounded) or of `inline_key`.
pub(crate) fn pem_text(
    settings: &SecuritySettings,
    listener: &str,
    location_key: &str,
    inline_key: &[&str],
) -> Result<Option<Vec<u8>>, ConfigError> {
    if let Some(path) = settings.get(listener, location_key) {
        let len = std::fs::metadata(path)
            .map_err(|e| invalid(location_key, format!("cannot read {path}: {e}")))?
            .len();
        if len > limits::PEM_FILE_BYTES_MAX {
            return Err(invalid(
                location_key,
                format!("{path} is larger than a PEM store may be"),
            ));
        }
        return std::fs::read(path)
            .map(Some)
            .map_err(|e| invalid(location_key, format!("cannot read {path}: {e}")));
    }
    let mut text = Vec::new();
    for k in inline_key {
        if let Some(v) = settings.get(listener, k) {
            text.extend_from_slice(v.as_bytes());
            text.push(b'\n');
        }
    }
    Ok((!text.is_empty()).then_some(text))
}

fn require_pem(settings: &SecuritySettings, listener: &str, key: &str) -> Result<(), ConfigError> {
    match settings.get(listener, key) {
        Some(t) if t.eq_ignore_ascii_case("PEM") => Ok(()),
        other => Err(invalid(
            key,
            format!(
                "Fjord reads PEM stores only: set {key}=PEM (got {})",
                other.unwrap_or("Kafka's default, JKS")
            ),
        )),
    }
}

/// `listener`'s trust store (`ssl.truststore.*`, PEM); `missing` says
/// why one is needed when none is given.
pub(crate) fn trust_roots(
    settings: &SecuritySettings,
    listener: &str,
    missing: &str,
) -> Result<rustls::RootCertStore, ConfigError> {
    require_pem(settings, listener, "ssl.truststore.type")?;
    let trust = pem_text(
        settings,
        listener,
        "ssl.truststore.location",
        &["ssl.truststore.certificates"],
    )?
    .ok_or_else(|| invalid("ssl.truststore.location", missing))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in certificates(&trust, "ssl.truststore.location")? {
        roots.add(c).map_err(|e| {
            invalid(
                "ssl.truststore.location",
                format!("bad CA certificate: {e}"),
            )
        })?;
    }
    Ok(roots)
}

pub(crate) fn certificates(
    pem: &[u8],
    key: &str,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(key, format!("bad PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(key, "no certificate found"));
    }
    Ok(certs)
}

impl TlsServer {
    pub fn build(settings: &SecuritySettings, listener: &str) -> Result<TlsServer, ConfigError> {
        require_pem(settings, listener, "ssl.keystore.type")?;
        if settings.get(listener, "ssl.key.password").is_some() {
            return Err(invalid(
                "ssl.key.password",
                "encrypted PEM private keys are not supported: give the key unencrypted (PKCS#8 or PKCS#1) and restrict the file's permissions",
            ));
        }
        let keystore = pem_text(
            settings,
            listener,
            "ssl.keystore.location",
            &["ssl.keystore.key", "ssl.keystore.certificate.chain"],
        )?
        .ok_or_else(|| {
            invalid(
                "ssl.keystore.location",
                format!("listener {listener} uses TLS and has no key store"),
            )
        })?;
        let chain = certificates(&keystore, "ssl.keystore.location")?;
        let key = PrivateKeyDer::from_pem_slice(&keystore).map_err(|_| {
            invalid(
                "ssl.keystore.location",
                "no unencrypted private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY) found",
            )
        })?;
        let client_auth = match settings
            .get(listener, "ssl.client.auth")
            .map(str::to_lowercase)
            .as_deref()
        {
            None | Some("none") => ClientAuth::None,
            Some("requested") => ClientAuth::Requested,
            Some("required") => ClientAuth::Required,
            Some(_) => {
                return Err(invalid(
                    "ssl.client.auth",
                    "expected required, requested or none",
                ))
            }
        };
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("ssl.enabled.protocols", e.to_string()))?;
        let builder = if client_auth == ClientAuth::None {
            builder.with_no_client_auth()
        } else {
            let roots = trust_roots(
                settings,
                listener,
                "ssl.client.auth asks for client certificates: a trust store is needed",
            )?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if client_auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| invalid("ssl.truststore.location", e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        };
        let config = builder
            .with_single_cert(chain, key)
            .map_err(|e| invalid("ssl.keystore.location", format!("key and certificate: {e}")))?;
        let rules = match settings.get(listener, "ssl.principal.mapping.rules") {
            Some(text) => PrincipalRules::parse(text)
                .map_err(|why| invalid("ssl.principal.mapping.rules", why))?,
            None => PrincipalRules::default(),
        };
        Ok(TlsServer {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            client_auth,
            rules,
        })
    }

    /// The principal of a client that presented `certs` (leaf first);
    /// `None` when no mapping rule applies (authentication fails).
    pub fn principal(&self, certs: Option<&[CertificateDer<'_>]>) -> Option<KafkaPrincipal> {
        let Some(leaf) = certs.and_then(|c| c.first()) else {
            return Some(KafkaPrincipal::anonymous());
        };
        let dn = fjord_auth::certificate::subject(leaf.as_ref())?;
        self.rules.apply(&dn).map(KafkaPrincipal::user)
    }
}
