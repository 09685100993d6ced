//! The client side of Kafka's secured listeners, for every connection one
//! node opens to another (replica fetchers, the controller channel,
//! inter-broker sends): TLS with rustls (the caller builds the
//! `rustls::ClientConfig`: trust store, client certificate for mTLS, host
//! name check), then the SASL exchange Kafka's `SaslClientAuthenticator`
//! runs: SaslHandshake v1 naming the mechanism, then SaslAuthenticate v2
//! frames carrying PLAIN (RFC 4616) or SCRAM-SHA-256/512 (RFC 5802, no
//! channel binding) tokens, the server's final SCRAM signature checked.
//!
//! [`SaslExchange`] is sans-IO (request frames out, response frames in);
//! [`Connector::connect`] drives it on tokio and
//! [`Connector::connect_blocking`] on a blocking socket. The password is
//! never formatted: `Debug` hides it and errors do not carry tokens.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use fjord_model::limits::CLIENT_RESPONSE_BYTES_MAX;
use fjord_protocol::frame_len;
use fjord_protocol::kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use ring::{digest, hmac, pbkdf2};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::conn::{decode_response, encode_request};

/// SaslHandshake and SaslAuthenticate versions sent (Kafka 4.3's newest).
const HANDSHAKE_VERSION: i16 = 1;
const AUTHENTICATE_VERSION: i16 = 2;

/// A SASL mechanism a node can log in with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    pub fn parse(name: &str) -> Option<SaslMechanism> {
        match name {
            "PLAIN" => Some(SaslMechanism::Plain),
            "SCRAM-SHA-256" => Some(SaslMechanism::ScramSha256),
            "SCRAM-SHA-512" => Some(SaslMechanism::ScramSha512),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// A SCRAM hash (the client's computations; the broker's server side
/// shares them through [`scram_client_final`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScramHash {
    Sha256,
    Sha512,
}

impl ScramHash {
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        let alg = match self {
            ScramHash::Sha256 => hmac::HMAC_SHA256,
            ScramHash::Sha512 => hmac::HMAC_SHA512,
        };
        hmac::sign(&hmac::Key::new(alg, key), data)
            .as_ref()
            .to_vec()
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        let alg = match self {
            ScramHash::Sha256 => &digest::SHA256,
            ScramHash::Sha512 => &digest::SHA512,
        };
        digest::digest(alg, data).as_ref().to_vec()
    }

    /// `Hi(password, salt, i)`: PBKDF2 with this hash.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: i32) -> Vec<u8> {
        let (alg, len) = match self {
            ScramHash::Sha256 => (pbkdf2::PBKDF2_HMAC_SHA256, 32),
            ScramHash::Sha512 => (pbkdf2::PBKDF2_HMAC_SHA512, 64),
        };
        let mut out = vec![0u8; len];
        let rounds = std::num::NonZeroU32::new(iterations.max(1).unsigned_abs())
            .unwrap_or(std::num::NonZeroU32::MIN);
        pbkdf2::derive(alg, rounds, salt, password, &mut out);
        out
    }
}

/// The client's final round (RFC 5802 section 3): from the server-first
/// message, the client-final message (`c=biws`, no channel binding) and
/// the server-final message the client must then receive. The server
/// nonce must extend `client_nonce` (empty: not checked).
pub fn scram_client_final(
    hash: ScramHash,
    password: &[u8],
    client_first_bare: &str,
    client_nonce: &str,
    server_first: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), String> {
    let text = std::str::from_utf8(server_first).map_err(|_| "server-first is not UTF-8")?;
    let (mut nonce, mut salt, mut iterations) = (None, None, None);
    for part in text.split(',') {
        match part.split_at_checked(2) {
            Some(("r=", v)) => nonce = Some(v),
            Some(("s=", v)) => salt = BASE64.decode(v).ok(),
            Some(("i=", v)) => iterations = v.parse::<i32>().ok(),
            _ => {}
        }
    }
    let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
        return Err("bad server-first message".into());
    };
    if !nonce.starts_with(client_nonce) || nonce.len() <= client_nonce.len() {
        return Err("the server nonce does not extend the client's".into());
    }
    let salted = hash.salted_password(password, &salt, iterations);
    let client_key = hash.hmac(&salted, b"Client Key");
    let stored_key = hash.hash(&client_key);
    let without_proof = format!("c=biws,r={nonce}");
    let auth = format!("{client_first_bare},{text},{without_proof}");
    let signature = hash.hmac(&stored_key, auth.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(a, b)| a ^ b)
        .collect();
    let server_key = hash.hmac(&salted, b"Server Key");
    let server_final = format!(
        "v={}",
        BASE64.encode(hash.hmac(&server_key, auth.as_bytes()))
    );
    Ok((
        format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes(),
        server_final.into_bytes(),
    ))
}

/// A login: mechanism, user name and password (from the listener's JAAS
/// line). `Debug` shows the user, never the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslCredentials {
    pub mechanism: SaslMechanism,
    pub username: String,
    password: String,
}

impl SaslCredentials {
    pub fn new(mechanism: SaslMechanism, username: &str, password: &str) -> SaslCredentials {
        SaslCredentials {
            mechanism,
            username: username.to_string(),
            password: password.to_string(),
        }
    }
}

impl std::fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslCredentials")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// SCRAM's `saslname`: `=` and `,` escaped.
fn sasl_name(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

enum Step {
    Handshake,
    /// SCRAM: the client-first message was sent.
    ScramFirst {
        bare: String,
        nonce: String,
    },
    /// SCRAM: the client-final message was sent; the server must answer this.
    ScramFinal {
        expected: Vec<u8>,
    },
    /// PLAIN: the one token was sent.
    PlainSent,
    Done,
}

/// One SASL login, sans-IO: [`SaslExchange::start`] gives the first
/// request frame, [`SaslExchange::on_response`] takes each response frame
/// (without its size prefix) and gives the next request, or `None` once
/// authenticated.
pub struct SaslExchange {
    credentials: SaslCredentials,
    client_id: String,
    nonce: String,
    step: Step,
    correlation_id: i32,
}

impl SaslExchange {
    /// `nonce`: the SCRAM client nonce (printable, no comma).
    pub fn new(credentials: SaslCredentials, client_id: &str, nonce: String) -> SaslExchange {
        SaslExchange {
            credentials,
            client_id: client_id.to_string(),
            nonce,
            step: Step::Handshake,
            correlation_id: 0,
        }
    }

    /// A fresh random nonce (24 bytes, base64).
    pub fn random_nonce() -> String {
        use ring::rand::SecureRandom as _;
        let mut bytes = [0u8; 24];
        let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
        BASE64.encode(bytes)
    }

    /// The SaslHandshake request frame.
    pub fn start(&mut self) -> Result<BytesMut, String> {
        let request = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(self.credentials.mechanism.name()));
        self.frame(&request, HANDSHAKE_VERSION)
    }

    fn frame<R: fjord_protocol::kafka_protocol::protocol::Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<BytesMut, String> {
        self.correlation_id += 1;
        encode_request(request, version, self.correlation_id, &self.client_id)
            .map_err(|e| e.to_string())
    }

    fn authenticate(&mut self, token: Vec<u8>) -> Result<BytesMut, String> {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
        self.frame(&request, AUTHENTICATE_VERSION)
    }

    /// Takes the answer to the last request; the next request, or `None`
    /// when the login succeeded.
    pub fn on_response(&mut self, frame: Bytes) -> Result<Option<BytesMut>, String> {
        let step = std::mem::replace(&mut self.step, Step::Done);
        match step {
            Step::Handshake => {
                let (_, r) = decode_response::<SaslHandshakeResponse>(frame, HANDSHAKE_VERSION)?;
                if r.error_code != 0 {
                    let offered: Vec<&str> = r.mechanisms.iter().map(|m| m.as_str()).collect();
                    return Err(format!(
                        "SASL mechanism {} refused (error {}; the listener offers {})",
                        self.credentials.mechanism.name(),
                        r.error_code,
                        offered.join(",")
                    ));
                }
                let token = match self.credentials.mechanism {
                    SaslMechanism::Plain => {
                        self.step = Step::PlainSent;
                        let c = &self.credentials;
                        format!("\0{}\0{}", c.username, c.password).into_bytes()
                    }
                    SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                        let bare = format!(
                            "n={},r={}",
                            sasl_name(&self.credentials.username),
                            self.nonce
                        );
                        let token = format!("n,,{bare}").into_bytes();
                        self.step = Step::ScramFirst {
                            bare,
                            nonce: self.nonce.clone(),
                        };
                        token
                    }
                };
                self.authenticate(token).map(Some)
            }
            Step::ScramFirst { bare, nonce } => {
                let token = self.authenticated_token(frame)?;
                let hash = if self.credentials.mechanism == SaslMechanism::ScramSha512 {
                    ScramHash::Sha512
                } else {
                    ScramHash::Sha256
                };
                let (client_final, expected) = scram_client_final(
                    hash,
                    self.credentials.password.as_bytes(),
                    &bare,
                    &nonce,
                    &token,
                )?;
                self.step = Step::ScramFinal { expected };
                self.authenticate(client_final).map(Some)
            }
            Step::ScramFinal { expected } => {
                let token = self.authenticated_token(frame)?;
                if token != expected {
                    return Err("the server's SCRAM signature is wrong".into());
                }
                Ok(None)
            }
            Step::PlainSent => self.authenticated_token(frame).map(|_| None),
            Step::Done => Err("the SASL login is over".into()),
        }
    }

    /// The token of a SaslAuthenticate response, or its error.
    fn authenticated_token(&self, frame: Bytes) -> Result<Vec<u8>, String> {
        let (_, r) = decode_response::<SaslAuthenticateResponse>(frame, AUTHENTICATE_VERSION)?;
        if r.error_code != 0 {
            return Err(format!(
                "SASL authentication of {} failed (error {}: {})",
                self.credentials.username,
                r.error_code,
                r.error_message.as_deref().unwrap_or("")
            ));
        }
        Ok(r.auth_bytes.to_vec())
    }
}

/// A byte stream a connection runs on (TCP, or TLS over TCP).
pub trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncStream for T {}

/// A blocking connection: TCP, or TLS over TCP.
pub enum BlockingStream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl BlockingStream {
    /// The socket (to set its timeouts).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            BlockingStream::Plain(s) => s,
            BlockingStream::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for BlockingStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            BlockingStream::Plain(s) => s.read(buf),
            BlockingStream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for BlockingStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            BlockingStream::Plain(s) => s.write(buf),
            BlockingStream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            BlockingStream::Plain(s) => s.flush(),
            BlockingStream::Tls(s) => s.flush(),
        }
    }
}

/// How a node connects to a listener of another node: TLS (with this
/// client configuration) and/or a SASL login, or neither (PLAINTEXT).
#[derive(Clone, Default)]
pub struct Connector {
    tls: Option<Arc<rustls::ClientConfig>>,
    sasl: Option<SaslCredentials>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl)
            .finish()
    }
}

/// The TLS server name of `host` (an IP address or a DNS name).
fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string()).map_err(|e| format!("bad TLS server name {host}: {e}"))
}

/// The host part of `HOST:PORT` (brackets of IPv6 removed).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

impl Connector {
    /// PLAINTEXT: a bare TCP connection.
    pub fn plaintext() -> Connector {
        Connector::default()
    }

    pub fn new(tls: Option<Arc<rustls::ClientConfig>>, sasl: Option<SaslCredentials>) -> Connector {
        Connector { tls, sasl }
    }

    pub fn is_plaintext(&self) -> bool {
        self.tls.is_none() && self.sasl.is_none()
    }

    /// Opens `addr` (`HOST:PORT`; the host is the TLS server name), then
    /// TLS and the SASL login as configured, all within `timeout`.
    pub async fn connect(
        &self,
        addr: &str,
        client_id: &str,
        timeout: Duration,
    ) -> Result<Box<dyn AsyncStream>, String> {
        match tokio::time::timeout(timeout, self.connect_inner(addr, client_id)).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "connecting to {addr} took more than {} ms",
                timeout.as_millis()
            )),
        }
    }

    async fn connect_inner(
        &self,
        addr: &str,
        client_id: &str,
    ) -> Result<Box<dyn AsyncStream>, String> {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let mut stream: Box<dyn AsyncStream> = match &self.tls {
            None => Box::new(tcp),
            Some(config) => {
                let name = server_name(host_of(addr))?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS with {addr}: {e}"))?;
                Box::new(tls)
            }
        };
        if let Some(creds) = &self.sasl {
            let mut exchange =
                SaslExchange::new(creds.clone(), client_id, SaslExchange::random_nonce());
            let mut next = Some(exchange.start()?);
            while let Some(frame) = next {
                stream
                    .write_all(&frame)
                    .await
                    .map_err(|e| format!("{addr}: {e}"))?;
                stream.flush().await.map_err(|e| format!("{addr}: {e}"))?;
                let mut prefix = [0u8; 4];
                stream
                    .read_exact(&mut prefix)
                    .await
                    .map_err(|e| format!("{addr} closed the SASL exchange: {e}"))?;
                let len =
                    frame_len(prefix, CLIENT_RESPONSE_BYTES_MAX).map_err(|e| e.to_string())?;
                let mut buf = vec![0u8; len];
                stream
                    .read_exact(&mut buf)
                    .await
                    .map_err(|e| format!("{addr}: {e}"))?;
                next = exchange.on_response(Bytes::from(buf))?;
            }
        }
        Ok(stream)
    }

    /// [`Connector::connect`] on a blocking socket: `addr` is dialled, the
    /// TLS server name is `host`; `io_timeout` bounds each read and write
    /// of the handshakes (the caller sets its own afterwards).
    pub fn connect_blocking(
        &self,
        host: &str,
        addr: SocketAddr,
        client_id: &str,
        connect_timeout: Duration,
        io_timeout: Duration,
    ) -> Result<BlockingStream, String> {
        let tcp = TcpStream::connect_timeout(&addr, connect_timeout)
            .map_err(|e| format!("{addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        tcp.set_read_timeout(Some(io_timeout))
            .and_then(|_| tcp.set_write_timeout(Some(io_timeout)))
            .map_err(|e| e.to_string())?;
        let mut stream = match &self.tls {
            None => BlockingStream::Plain(tcp),
            Some(config) => {
                let conn = rustls::ClientConnection::new(config.clone(), server_name(host)?)
                    .map_err(|e| format!("TLS with {addr}: {e}"))?;
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                while tls.conn.is_handshaking() {
                    tls.conn
                        .complete_io(&mut tls.sock)
                        .map_err(|e| format!("TLS with {addr}: {e}"))?;
                }
                BlockingStream::Tls(Box::new(tls))
            }
        };
        if let Some(creds) = &self.sasl {
            let mut exchange =
                SaslExchange::new(creds.clone(), client_id, SaslExchange::random_nonce());
            let mut next = Some(exchange.start()?);
            while let Some(frame) = next {
                stream
                    .write_all(&frame)
                    .and_then(|_| stream.flush())
                    .map_err(|e| format!("{addr}: {e}"))?;
                let mut prefix = [0u8; 4];
                stream
                    .read_exact(&mut prefix)
                    .map_err(|e| format!("{addr} closed the SASL exchange: {e}"))?;
                let len =
                    frame_len(prefix, CLIENT_RESPONSE_BYTES_MAX).map_err(|e| e.to_string())?;
                let mut buf = vec![0u8; len];
                stream
                    .read_exact(&mut buf)
                    .map_err(|e| format!("{addr}: {e}"))?;
                next = exchange.on_response(Bytes::from(buf))?;
            }
        }
        Ok(stream)
    }
}
