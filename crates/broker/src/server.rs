//! The network layer: accept connections, read size-prefixed frames, decode
//! them with the bounds-checked decoders, dispatch to handlers, and write
//! responses in request order.
//!
//! Per connection, a reader task decodes requests one by one and calls the
//! handler's synchronous part in arrival order (so pipelined Produce requests
//! append in order); what a handler waits for (fsync, long-poll) runs as its
//! own task, and a writer task sends the responses in request order.
//!
//! Memory per connection is bounded: at most
//! `IN_FLIGHT_REQUESTS_PER_CONNECTION_MAX` requests and
//! `IN_FLIGHT_REQUEST_BYTES_PER_CONNECTION_MAX` bytes of request frames are
//! read and not yet answered; past either the reader waits for the writer.
//! With `queued.max.request.bytes` a frame also takes its size from the
//! broker-wide pool before its body is read (a Produce until answered,
//! anything else until dispatched), and the accept loop applies the
//! connection limits (`crate::connection_quotas`).
//!
//! Each listener is served by [`serve_listener`] with its
//! [`ListenerSecurity`]: on SSL and SASL_SSL listeners the TLS handshake
//! comes first (a client that is not speaking TLS is closed), and on
//! SASL listeners a connection gets nothing but ApiVersions and the SASL
//! handshake until it authenticated ([`SaslSession`]). A connection that
//! has not finished its TLS handshake and authentication within
//! `AUTHENTICATION_TIMEOUT_MS` is closed. With `connections.max.reauth.ms`
//! (KIP-368) an authenticated session expires: a request after that closes
//! the connection, unless it is the SaslHandshake of a re-authentication
//! sent in time (which gets the same `AUTHENTICATION_TIMEOUT_MS`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fjord_model::limits;
use fjord_model::ErrorCode;
use fjord_protocol::{decode_request, Request};
use fjord_protocol::{decode_request_header, frame_len, Reader};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::connection_quotas::Admission;
use crate::handlers::{self, Pending};
use crate::quotas::ConnectionThrottle;
use crate::response::Writer;
use crate::security::sasl::{SaslSession, SaslState};
use crate::security::{KafkaPrincipal, ListenerSecurity};
use crate::state::Broker;

// A frame's share of the budget is a u32 (what `acquire_many` takes), and
// never more than the whole budget, so the reader cannot wait forever.
const _: () = assert!(limits::IN_FLIGHT_REQUEST_BYTES_PER_CONNECTION_MAX <= u32::MAX as usize);

/// Accept connections until `shutdown` turns true; then wait (bounded) for
/// open connections to finish answering what they have read. A PLAINTEXT
/// listener named as the broker's first client listener.
pub async fn serve(
    broker: Arc<Broker>,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let name = broker
        .config
        .client_listeners()
        .ok()
        .and_then(|ls| ls.into_iter().next())
        .map_or_else(|| "PLAINTEXT".to_string(), |l| l.name);
    let security = Arc::new(ListenerSecurity::plaintext(&name));
    serve_listener(broker, listener, security, shutdown).await
}

/// [`serve`] for one listener secured as `security` says.
pub async fn serve_listener(
    broker: Arc<Broker>,
    listener: TcpListener,
    security: Arc<ListenerSecurity>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let connections = broker.connections.clone();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        // `max.connections`: as Kafka's acceptor, accept nothing more
        // until a connection closes (clients wait in the backlog).
        tokio::select! {
            _ = connections.wait_for_slot() => {}
            _ = shutdown.changed() => break,
        }
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                // `max.connection.creation.rate`: the listener waits.
                let delay = connections.record_connection(wall_ms());
                if delay > 0 {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(delay)) => {}
                        _ = shutdown.changed() => break,
                    }
                }
                let slot = match connections.admit(peer.ip(), wall_ms()) {
                    Ok(slot) => slot,
                    Err(Admission::Throttled { ms }) => {
                        // Kafka's delayed close: not served, closed after
                        // its throttle time (at most a quota window).
                        tracing::debug!(%peer, ms, "connection_creation_rate reached, closing later");
                        broker.metrics.connection_throttled();
                        tasks.spawn(async move {
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                            drop(stream);
                        });
                        continue;
                    }
                    Err(refused) => {
                        tracing::info!(%peer, ?refused, "max.connections.per.ip reached, closing");
                        broker.metrics.connection_rejected();
                        drop(stream);
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let broker = broker.clone();
                let shutdown = shutdown.clone();
                let security = security.clone();
                tasks.spawn(async move {
                    if let Err(e) = accept(broker, stream, security, shutdown).await {
                        tracing::debug!(%peer, "connection closed: {e}");
                    }
                    drop(slot);
                });
            }
            _ = shutdown.changed() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    // Let connections answer the requests they already read.
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        tasks.abort_all();
    }
    Ok(())
}

/// A request's API key and when its frame was read (for its latency).
type Arrival = (i16, Instant);

/// Wall-clock ms (connection quotas' clock).
fn wall_ms() -> u64 {
    u64::try_from(crate::state::now_ms()).unwrap_or(0)
}

/// A request's shares of the byte budgets: its connection's, and the
/// broker's (`queued.max.request.bytes`) while it holds its frame.
struct Held {
    _connection: OwnedSemaphorePermit,
    _broker: Option<OwnedSemaphorePermit>,
}

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame: {0}")]
    Frame(#[from] fjord_protocol::FrameError),
    #[error("bad request header: {0}")]
    Header(#[from] fjord_protocol::DecodeError),
    #[error("idle timeout")]
    Idle,
    #[error("TLS handshake and authentication not done in time")]
    AuthTimeout,
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("authentication: {0}")]
    Auth(String),
}

/// The TLS handshake (on SSL and SASL_SSL listeners), then the connection.
async fn accept(
    broker: Arc<Broker>,
    stream: TcpStream,
    security: Arc<ListenerSecurity>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ConnError> {
    let peer = stream.peer_addr().ok();
    let Some(tls) = &security.tls else {
        let (rd, wr) = stream.into_split();
        let anonymous = KafkaPrincipal::anonymous();
        return connection(
            broker,
            rd,
            Writer::new(wr),
            peer,
            anonymous,
            security,
            shutdown,
        )
        .await;
    };
    let within = Duration::from_millis(limits::AUTHENTICATION_TIMEOUT_MS);
    // A client that does not speak TLS fails here and is closed.
    let stream = match tokio::time::timeout(within, tls.acceptor.accept(stream)).await {
        Err(_) => return Err(ConnError::AuthTimeout),
        Ok(Err(e)) => return Err(ConnError::Tls(e)),
        Ok(Ok(s)) => s,
    };
    let principal = tls.principal(stream.get_ref().1.peer_certificates());
    let Some(principal) = principal else {
        return Err(ConnError::Auth(
            "no ssl.principal.mapping.rules rule applies to the client certificate".into(),
        ));
    };
    tracing::debug!(?peer, %principal, listener = %security.name, "TLS connection");
    let (rd, wr) = tokio::io::split(stream);
    connection(
        broker,
        rd,
        Writer::tls(wr),
        peer,
        principal,
        security,
        shutdown,
    )
    .await
}

/// What the connection does with one frame on a SASL listener before the
/// client authenticated.
enum Gate {
    /// Not a SASL listener, or authenticated: dispatch as usual.
    Dispatch(Reader, fjord_protocol::RequestHeader),
    /// Answer this (a request of this API key) and go on.
    Answer(i16, Option<BytesMut>),
    /// Answer this (a request of this API key) and close.
    AnswerAndClose(i16, Option<BytesMut>),
    /// Close without an answer.
    Close(&'static str),
}

/// A size-prefixed raw frame (a SASL token after SaslHandshake v0).
fn raw_frame(token: &[u8]) -> Option<BytesMut> {
    let len = u32::try_from(token.len()).ok()?;
    let mut out = BytesMut::with_capacity(4 + token.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(token);
    Some(out)
}

/// The SASL gate for one frame read at `now_ms` (the connection's age;
/// `sasl` is the connection's session, `None` on a listener without SASL).
fn sasl_gate(
    broker: &Arc<Broker>,
    peer: Option<std::net::SocketAddr>,
    security: &ListenerSecurity,
    sasl: Option<&mut SaslSession>,
    frame: Bytes,
    now_ms: u64,
) -> Result<Gate, ConnError> {
    let Some(session) = sasl else {
        let mut reader = Reader::new(frame);
        let header = decode_request_header(&mut reader)?;
        return Ok(Gate::Dispatch(reader, header));
    };
    if session.principal().is_some() {
        // KIP-368, Kafka's `SocketServer` rule: any request after the
        // session expired closes the connection, unanswered.
        if session.expired(now_ms) {
            return Ok(Gate::Close(
                "SASL session expired: not re-authenticated in time",
            ));
        }
        let mut reader = Reader::new(frame);
        let header = decode_request_header(&mut reader)?;
        let handshake = fjord_protocol::kafka_protocol::messages::ApiKey::SaslHandshake as i16;
        if header.api_key != handshake || !session.begin_reauthentication(now_ms) {
            return Ok(Gate::Dispatch(reader, header));
        }
        tracing::debug!(?peer, listener = %security.name, "SASL re-authentication");
        return sasl_request(broker, peer, security, session, reader, header, now_ms);
    }
    if let SaslState::Authenticate { raw: true, .. } = session.state() {
        // After SaslHandshake v0 the token comes without a request header;
        // a failure closes without an answer, as in Kafka.
        let out = session.authenticate(&frame, broker.as_ref(), now_ms);
        if out.close {
            return Ok(Gate::Close("SASL authentication failed"));
        }
        let key = fjord_protocol::kafka_protocol::messages::ApiKey::SaslAuthenticate as i16;
        return Ok(Gate::Answer(key, raw_frame(&out.token)));
    }
    let mut reader = Reader::new(frame);
    let header = decode_request_header(&mut reader)?;
    sasl_request(broker, peer, security, session, reader, header, now_ms)
}

/// A request (its header decoded) while `session` is not authenticated:
/// ApiVersions (before the handshake), SaslHandshake, SaslAuthenticate.
fn sasl_request(
    broker: &Arc<Broker>,
    peer: Option<std::net::SocketAddr>,
    security: &ListenerSecurity,
    session: &mut SaslSession,
    mut reader: Reader,
    header: fjord_protocol::RequestHeader,
    now_ms: u64,
) -> Result<Gate, ConnError> {
    let ctx = handlers::Ctx {
        broker: broker.clone(),
        api_key: header.api_key,
        api_version: header.api_version,
        correlation_id: header.correlation_id,
        client_id: header.client_id.clone(),
        peer,
        listener: Some(security.name.clone()),
        principal: None,
        request_bytes: 0,
        throttle: None,
    };
    let expecting_handshake = *session.state() == SaslState::Handshake;
    let key = header.api_key;
    if key == handlers::api_versions::API_KEY && expecting_handshake && !session.reauthenticating()
    {
        return Ok(Gate::Dispatch(reader, header));
    }
    let versions = if expecting_handshake {
        handlers::sasl::HANDSHAKE_VERSIONS
    } else {
        handlers::sasl::AUTHENTICATE_VERSIONS
    };
    let wanted = if expecting_handshake {
        fjord_protocol::kafka_protocol::messages::ApiKey::SaslHandshake as i16
    } else {
        fjord_protocol::kafka_protocol::messages::ApiKey::SaslAuthenticate as i16
    };
    if key != wanted || !versions.contains(&header.api_version) {
        return Ok(Gate::Close("unexpected request during SASL authentication"));
    }
    let Ok(request) = decode_request(key, header.api_version, &mut reader) else {
        return Ok(Gate::Close("undecodable SASL request"));
    };
    Ok(match request {
        Request::SaslHandshake(r) => {
            let out = session.handshake(r.mechanism.as_str(), header.api_version);
            let mechanisms = session.config().mechanism_names();
            let resp = handlers::sasl::handshake_response(&ctx, out.error, mechanisms);
            if out.close {
                Gate::AnswerAndClose(key, resp)
            } else {
                Gate::Answer(key, resp)
            }
        }
        Request::SaslAuthenticate(r) => {
            let out = session.authenticate(&r.auth_bytes, broker.as_ref(), now_ms);
            if out.error == ErrorCode::NONE {
                if let Some(p) = session.principal() {
                    tracing::debug!(?peer, principal = %p, listener = %security.name, lifetime_ms = out.session_lifetime_ms, "SASL authenticated");
                }
            } else {
                tracing::info!(?peer, listener = %security.name, "SASL authentication failed");
            }
            if out.silent {
                return Ok(Gate::Close("SASL re-authentication with another mechanism"));
            }
            let resp = handlers::sasl::authenticate_response(&ctx, &out);
            if out.close {
                Gate::AnswerAndClose(key, resp)
            } else {
                Gate::Answer(key, resp)
            }
        }
        _ => Gate::Close("unexpected request during SASL authentication"),
    })
}

async fn connection<R: AsyncRead + Unpin>(
    broker: Arc<Broker>,
    mut rd: R,
    out: Writer,
    peer: Option<std::net::SocketAddr>,
    // The principal the TLS handshake established (`User:ANONYMOUS`
    // without TLS or a client certificate); SASL's replaces it.
    tls_principal: KafkaPrincipal,
    security: Arc<ListenerSecurity>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnError> {
    let mut sasl = security.sasl.clone().map(SaslSession::new);
    // The session's clock (KIP-368 lifetimes): the connection's age.
    let opened = tokio::time::Instant::now();
    let age_ms = || u64::try_from(opened.elapsed().as_millis()).unwrap_or(u64::MAX);
    // TLS and SASL together must be done by then (a re-authentication
    // gets as long from its handshake).
    let mut auth_deadline =
        tokio::time::Instant::now() + Duration::from_millis(limits::AUTHENTICATION_TIMEOUT_MS);
    // Requests and latency per API, counted by the writer (`crate::metrics`).
    let metered = broker.metrics.connection_opened();
    let metering = broker.metrics.enabled();
    // Each request travels with its share of the byte budget, given back once
    // its response is handed to the writer, and its API key and arrival time.
    let (tx, mut rx) =
        mpsc::channel::<(Pending, Held, Arrival)>(limits::IN_FLIGHT_REQUESTS_PER_CONNECTION_MAX);
    let budget = Arc::new(Semaphore::new(
        limits::IN_FLIGHT_REQUEST_BYTES_PER_CONNECTION_MAX,
    ));
    let writer = tokio::spawn(async move {
        let mut out = out;
        let stats = &metered.stats;
        while let Some((pending, permit, (api_key, at))) = rx.recv().await {
            let Ok(resp) = pending.resolve().await else {
                break;
            };
            if metering {
                stats.answered(api_key, at.elapsed());
            }
            if let Some(resp) = resp {
                out.push(resp).await?;
            }
            drop(permit);
            // Responses already done share a write; keep order.
            while let Ok((next, permit, (api_key, at))) = rx.try_recv() {
                if !next.is_ready() {
                    out.flush().await?;
                }
                let resolved = next.resolve().await;
                if metering {
                    stats.answered(api_key, at.elapsed());
                }
                match resolved {
                    Ok(Some(resp)) => out.push(resp).await?,
                    Ok(None) => {}
                    Err(()) => return out.shutdown().await,
                }
                drop(permit);
            }
            out.flush().await?;
        }
        out.shutdown().await
    });

    // Muted while a client quota throttles it (`crate::quotas`).
    let throttle = Arc::new(ConnectionThrottle::default());
    let idle = Duration::from_millis(broker.config.connection_idle_ms);
    let result = loop {
        let authenticating = sasl.as_ref().is_some_and(|s| s.principal().is_none());
        let wait = if authenticating {
            auth_deadline.saturating_duration_since(tokio::time::Instant::now())
        } else {
            idle
        };
        let mut prefix = [0u8; 4];
        let read = tokio::select! {
            r = tokio::time::timeout(wait, rd.read_exact(&mut prefix)) => r,
            _ = shutdown.changed() => break Ok(()),
        };
        match read {
            Err(_) if authenticating => break Err(ConnError::AuthTimeout),
            Err(_) => break Err(ConnError::Idle),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break Ok(()),
            Ok(Err(e)) => break Err(e.into()),
            Ok(Ok(_)) => {}
        }
        let len = match frame_len(prefix, broker.config.request_bytes_max) {
            Ok(len) => len,
            Err(e) => break Err(e.into()),
        };
        // Wait (without reading the body) until answers free enough of the budget.
        let share = len.clamp(1, limits::IN_FLIGHT_REQUEST_BYTES_PER_CONNECTION_MAX) as u32;
        let permit = tokio::select! {
            p = budget.clone().acquire_many_owned(share) => match p {
                Ok(p) => p,
                Err(_) => break Ok(()),
            },
            _ = shutdown.changed() => break Ok(()),
        };
        // `queued.max.request.bytes`: the broker-wide pool, taken before
        // the body is read (Kafka mutes the channel while the pool is empty).
        let pooled = match broker.connections.request_pool() {
            None => None,
            Some((size, pool)) => {
                let share = len.clamp(1, size.min(u32::MAX as usize)) as u32;
                tokio::select! {
                    p = pool.clone().acquire_many_owned(share) => match p {
                        Ok(p) => Some(p),
                        Err(_) => break Ok(()),
                    },
                    _ = shutdown.changed() => break Ok(()),
                }
            }
        };
        let mut permit = Held {
            _connection: permit,
            _broker: pooled,
        };
        if authenticating && len > limits::SASL_TOKEN_BYTES_MAX {
            break Err(ConnError::Auth(
                "frame larger than a SASL token may be".into(),
            ));
        }
        let frame = match read_frame(&mut rd, len, if authenticating { wait } else { idle }).await {
            Ok(f) => f,
            Err(ConnError::Idle) if authenticating => break Err(ConnError::AuthTimeout),
            Err(e) => break Err(e),
        };
        // KIP-219: a throttled client's next request waits out its throttle
        // time (a client that honours throttle_time_ms never notices).
        if throttle.until_ms() > 0 {
            let now = u64::try_from(crate::state::now_ms()).unwrap_or(0);
            let muted = throttle.muted_for_ms(now);
            if muted > 0 {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(muted)) => {}
                    _ = shutdown.changed() => break Ok(()),
                }
            }
        }
        let read_at = Instant::now();
        let gate = sasl_gate(&broker, peer, &security, sasl.as_mut(), frame, age_ms());
        if !authenticating && sasl.as_ref().is_some_and(|s| s.reauthenticating()) {
            auth_deadline = tokio::time::Instant::now()
                + Duration::from_millis(limits::AUTHENTICATION_TIMEOUT_MS);
        }
        let (reader, header) = match gate {
            Ok(Gate::Dispatch(reader, header)) => (reader, header),
            Ok(Gate::Answer(api_key, resp)) => {
                let sent = tx.send((Pending::Ready(resp), permit, (api_key, read_at)));
                if sent.await.is_err() {
                    break Ok(());
                }
                continue;
            }
            Ok(Gate::AnswerAndClose(api_key, resp)) => {
                let _ = tx
                    .send((Pending::Ready(resp), permit, (api_key, read_at)))
                    .await;
                break Err(ConnError::Auth("authentication failed".into()));
            }
            Ok(Gate::Close(why)) => break Err(ConnError::Auth(why.into())),
            Err(e) => break Err(e),
        };
        // The gate let through only what an unauthenticated client may send.
        assert!(
            sasl.as_ref().is_none_or(|s| s.principal().is_some())
                || header.api_key == handlers::api_versions::API_KEY,
            "a request dispatched before SASL authentication"
        );
        let arrival = (header.api_key, read_at);
        let principal = sasl
            .as_ref()
            .and_then(|s| s.principal())
            .unwrap_or(&tls_principal)
            .clone();
        let listener = Some(security.name.clone());
        let mut pending = match handlers::dispatch_on(
            &broker,
            peer,
            listener,
            Some(principal),
            Some(throttle.clone()),
            header,
            reader,
        ) {
            Some(p) => p,
            // The request could not be understood and has no error response: close.
            None => break Ok(()),
        };
        let barrier = pending.take_barrier();
        // Only a Produce keeps its frame (its records) until answered; any
        // other request's frame was decoded (Kafka's `releaseBuffer` for
        // requests that do not reference their buffer).
        if arrival.0 != fjord_protocol::kafka_protocol::messages::ApiKey::Produce as i16 {
            permit._broker = None;
        }
        if tx.send((pending, permit, arrival)).await.is_err() {
            break Ok(());
        }
        // A handler that appends after an asynchronous step (a Produce that
        // adds partitions to its transaction) holds the next request back
        // until it appended: appends stay in request order, as Kafka's one
        // request at a time per connection keeps them.
        if let Some(barrier) = barrier {
            let _ = barrier.await;
        }
    };
    drop(tx);
    // Answer what was read before closing (a clean close after the last response).
    let _ = writer.await;
    result
}

/// Read a frame body of `len` bytes (already checked against the frame
/// limit). The first read goes into a small buffer; only once the client has
/// actually sent that much is the rest of the frame reserved, in one step, so
/// a size prefix alone allocates little and a large frame is copied at most
/// once while it grows.
async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    len: usize,
    idle: Duration,
) -> Result<Bytes, ConnError> {
    const FIRST_READ_BYTES: usize = 64 * 1024;
    let mut buf = BytesMut::with_capacity(len.min(FIRST_READ_BYTES));
    while buf.len() < len {
        if buf.len() == buf.capacity() {
            buf.reserve(len - buf.len());
        }
        let want = len - buf.len();
        let n = match tokio::time::timeout(idle, rd.read_buf(&mut (&mut buf).limit(want))).await {
            Err(_) => return Err(ConnError::Idle),
            Ok(r) => r?,
        };
        if n == 0 {
            return Err(ConnError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
    Ok(buf.freeze())
}

use bytes::BufMut as _;

/// The CONTROLLER listener's security when it is not PLAINTEXT (issue 18):
/// the TLS handshake and the SASL login as on a client listener (nothing
/// but ApiVersions and the SASL requests before it), then the quorum
/// serves the connection. Every request after it must be allowed to the
/// principal, as Kafka's `ControllerApis` checks: CLUSTER_ACTION on the
/// cluster for the quorum's and the brokers' APIs, DESCRIBE for
/// DescribeQuorum and DescribeCluster.
pub struct ControllerListenerSecurity {
    broker: std::sync::Weak<Broker>,
    security: Arc<ListenerSecurity>,
}

impl std::fmt::Debug for ControllerListenerSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerListenerSecurity")
            .field("listener", &self.security.name)
            .field("protocol", &self.security.protocol)
            .finish()
    }
}

impl ControllerListenerSecurity {
    pub fn new(
        broker: std::sync::Weak<Broker>,
        security: Arc<ListenerSecurity>,
    ) -> ControllerListenerSecurity {
        ControllerListenerSecurity { broker, security }
    }
}

impl fjord_quorum::net::ControllerSecurity for ControllerListenerSecurity {
    fn accept(
        &self,
        stream: TcpStream,
        peer: std::net::SocketAddr,
    ) -> fjord_quorum::net::SecuredFuture {
        let broker = self.broker.clone();
        let security = self.security.clone();
        Box::pin(async move {
            secure_controller_connection(broker, security, stream, peer)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Whether `principal` may send `api` on the CONTROLLER listener.
fn controller_api_allowed(
    broker: &Arc<Broker>,
    principal: &KafkaPrincipal,
    peer: std::net::SocketAddr,
    api: i16,
) -> bool {
    use crate::security::authorizer::Operation;
    use fjord_protocol::kafka_protocol::messages::ApiKey;
    let ctx = handlers::Ctx {
        broker: broker.clone(),
        api_key: api,
        api_version: 0,
        correlation_id: 0,
        client_id: None,
        peer: Some(peer),
        listener: None,
        principal: Some(principal.clone()),
        request_bytes: 0,
        throttle: None,
    };
    match ApiKey::try_from(api) {
        Ok(ApiKey::ApiVersions) => true,
        Ok(ApiKey::DescribeQuorum | ApiKey::DescribeCluster) => {
            ctx.may_on_cluster(Operation::Describe)
        }
        // Fjord's forwarded proposals (FORWARD_PROPOSAL_API_KEY) too.
        _ => ctx.may_on_cluster(Operation::ClusterAction),
    }
}

async fn write_flushed<W: tokio::io::AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    frame: Option<BytesMut>,
) -> Result<(), ConnError> {
    use tokio::io::AsyncWriteExt as _;
    if let Some(frame) = frame {
        w.write_all(&frame).await?;
        w.flush().await?;
    }
    Ok(())
}

async fn secure_controller_connection(
    weak: std::sync::Weak<Broker>,
    security: Arc<ListenerSecurity>,
    stream: TcpStream,
    peer: std::net::SocketAddr,
) -> Result<fjord_quorum::net::Secured, ConnError> {
    let broker = weak
        .upgrade()
        .ok_or_else(|| ConnError::Auth("the broker is closed".into()))?;
    let within = Duration::from_millis(limits::AUTHENTICATION_TIMEOUT_MS);
    let deadline = tokio::time::Instant::now() + within;
    let (mut stream, tls_principal): (Box<dyn fjord_client::AsyncStream>, KafkaPrincipal) =
        match &security.tls {
            None => (Box::new(stream), KafkaPrincipal::anonymous()),
            Some(tls) => {
                let s = match tokio::time::timeout(within, tls.acceptor.accept(stream)).await {
                    Err(_) => return Err(ConnError::AuthTimeout),
                    Ok(Err(e)) => return Err(ConnError::Tls(e)),
                    Ok(Ok(s)) => s,
                };
                let principal = tls
                    .principal(s.get_ref().1.peer_certificates())
                    .ok_or_else(|| {
                        ConnError::Auth(
                            "no ssl.principal.mapping.rules rule applies to the client certificate"
                                .into(),
                        )
                    })?;
                (Box::new(s), principal)
            }
        };
    let mut sasl = security.sasl.clone().map(SaslSession::new);
    while let Some(session) = sasl.as_mut().filter(|s| s.principal().is_none()) {
        let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
        let mut prefix = [0u8; 4];
        match tokio::time::timeout(wait, stream.read_exact(&mut prefix)).await {
            Err(_) => return Err(ConnError::AuthTimeout),
            Ok(r) => r?,
        };
        let len = frame_len(prefix, limits::SASL_TOKEN_BYTES_MAX)?;
        let frame = match read_frame(&mut stream, len, wait).await {
            Err(ConnError::Idle) => return Err(ConnError::AuthTimeout),
            other => other?,
        };
        // Controller connections are handed to the quorum once
        // authenticated: no KIP-368 expiry there.
        match sasl_gate(&broker, Some(peer), &security, Some(session), frame, 0)? {
            // Only ApiVersions passes the gate before authentication.
            Gate::Dispatch(reader, header) => {
                let listener = Some(security.name.clone());
                let pending = handlers::dispatch_on(
                    &broker,
                    Some(peer),
                    listener,
                    None,
                    None,
                    header,
                    reader,
                );
                let answer = match pending {
                    Some(Pending::Ready(r)) => r,
                    Some(Pending::Task(t)) => t.await.ok().flatten(),
                    _ => None,
                };
                write_flushed(&mut stream, answer).await?;
            }
            Gate::Answer(_, resp) => write_flushed(&mut stream, resp).await?,
            Gate::AnswerAndClose(_, resp) => {
                write_flushed(&mut stream, resp).await?;
                return Err(ConnError::Auth("authentication failed".into()));
            }
            Gate::Close(why) => return Err(ConnError::Auth(why.into())),
        }
    }
    let principal = sasl
        .as_ref()
        .and_then(|s| s.principal())
        .unwrap_or(&tls_principal)
        .clone();
    tracing::debug!(%peer, %principal, listener = %security.name, "controller connection authenticated");
    let may = move |api| {
        weak.upgrade()
            .is_some_and(|b| controller_api_allowed(&b, &principal, peer, api))
    };
    Ok(fjord_quorum::net::Secured {
        stream,
        may: Box::new(may),
    })
}
