//! One connection to one broker: framing, correlation ids, many requests in
//! flight, ApiVersions negotiation.
//!
//! Requests are encoded with kafka-protocol's `Encodable` and written under a
//! lock that also hands out correlation ids, so ids go out on the wire in
//! order. A reader task routes every response frame to the request with its
//! correlation id; the caller decodes it (with kafka-protocol's `Decodable`)
//! in its own task. A response whose id matches no outstanding request closes
//! the connection, as does a frame larger than
//! `limits::CLIENT_RESPONSE_BYTES_MAX` (refused before allocating).

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fjord_model::limits::{
    CLIENT_CONNECT_TIMEOUT_MS_DEFAULT, CLIENT_IN_FLIGHT_REQUESTS_DEFAULT,
    CLIENT_REQUEST_TIMEOUT_MS_DEFAULT, CLIENT_RESPONSE_BYTES_MAX,
};
use fjord_protocol::frame_len;
use fjord_protocol::kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use fjord_protocol::kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Request, StrBytes,
};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::error::{ClientError, Result};
use crate::versions::{client_range, Versions};

/// Settings of a connection.
#[derive(Clone, Debug)]
pub struct ConnectionOptions {
    /// Sent in every request header.
    pub client_id: String,
    pub connect_timeout_ms: u64,
    /// How long `PendingResponse::wait` waits for an answer.
    pub request_timeout_ms: u64,
    /// Requests awaiting a response from the broker at once; `send` waits
    /// for a slot (freed when the response arrives, read or not).
    pub in_flight_max: usize,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        ConnectionOptions {
            client_id: "fjord-client".to_string(),
            connect_timeout_ms: CLIENT_CONNECT_TIMEOUT_MS_DEFAULT,
            request_timeout_ms: CLIENT_REQUEST_TIMEOUT_MS_DEFAULT,
            in_flight_max: CLIENT_IN_FLIGHT_REQUESTS_DEFAULT,
        }
    }
}

/// Short name of an API for messages.
pub fn api_name(api_key: i16) -> &'static str {
    match ApiKey::try_from(api_key) {
        Ok(ApiKey::Produce) => "Produce",
        Ok(ApiKey::Fetch) => "Fetch",
        Ok(ApiKey::ListOffsets) => "ListOffsets",
        Ok(ApiKey::Metadata) => "Metadata",
        Ok(ApiKey::ApiVersions) => "ApiVersions",
        Ok(ApiKey::CreateTopics) => "CreateTopics",
        _ => "request",
    }
}

/// Byte position of the correlation id in an encoded request frame (after
/// the size prefix, api key and api version).
const CORRELATION_ID_AT: usize = 8;

/// Encodes one request frame: size prefix, request header (at the header
/// version `R` uses for `version`) and body.
pub fn encode_request<R: Request>(
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: &str,
) -> Result<BytesMut> {
    let api = api_name(R::KEY);
    let encode_err = |e: &dyn std::fmt::Display| ClientError::Encode {
        api,
        version,
        message: e.to_string(),
    };
    let mut header = RequestHeader::default();
    header.request_api_key = R::KEY;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_string(client_id.to_string()));
    let header_version = R::header_version(version);
    let size = header
        .compute_size(header_version)
        .and_then(|h| request.compute_size(version).map(|b| h + b))
        .map_err(|e| encode_err(&e))?;
    let mut out = BytesMut::with_capacity(4 + size);
    out.extend_from_slice(&[0; 4]);
    header
        .encode(&mut out, header_version)
        .map_err(|e| encode_err(&e))?;
    request
        .encode(&mut out, version)
        .map_err(|e| encode_err(&e))?;
    let len = i32::try_from(out.len() - 4).map_err(|_| encode_err(&"request too large"))?;
    out[..4].copy_from_slice(&len.to_be_bytes());
    assert_eq!(
        out[CORRELATION_ID_AT..CORRELATION_ID_AT + 4],
        correlation_id.to_be_bytes()
    );
    Ok(out)
}

/// Decodes one response frame (without its size prefix): the response header
/// at the header version `T` uses for `version`, then the body. Returns the
/// correlation id and the body. Bytes after the body are ignored, as newer
/// brokers may add fields.
pub fn decode_response<T: Decodable + HeaderVersion>(
    mut frame: Bytes,
    version: i16,
) -> std::result::Result<(i32, T), String> {
    let header = ResponseHeader::decode(&mut frame, T::header_version(version))
        .map_err(|e| format!("response header: {e}"))?;
    let body = T::decode(&mut frame, version).map_err(|e| e.to_string())?;
    Ok((header.correlation_id, body))
}

/// Where a response goes, and the in-flight slot it frees when it arrives.
type Waiter = (oneshot::Sender<Result<Bytes>>, OwnedSemaphorePermit);

#[derive(Default)]
struct PendingState {
    waiters: HashMap<i32, Waiter>,
    /// Why the connection is closed, once it is.
    closed: Option<String>,
}

struct Shared {
    addr: Arc<str>,
    state: Mutex<PendingState>,
}

impl Shared {
    fn disconnected(&self, reason: &str) -> ClientError {
        ClientError::Disconnected {
            addr: self.addr.to_string(),
            reason: reason.to_string(),
        }
    }

    /// Marks the connection closed and fails every outstanding request.
    fn close(&self, reason: String) {
        let waiters = {
            let mut st = self.state.lock();
            if st.closed.is_none() {
                st.closed = Some(reason);
            }
            std::mem::take(&mut st.waiters)
        };
        let reason = self.state.lock().closed.clone().unwrap_or_default();
        for (_, (w, _permit)) in waiters {
            let _ = w.send(Err(self.disconnected(&reason)));
        }
    }

    fn closed_error(&self) -> Option<ClientError> {
        let st = self.state.lock();
        st.closed.as_deref().map(|r| self.disconnected(r))
    }
}

struct Writer {
    io: Box<dyn AsyncWrite + Send + Unpin>,
    next_correlation_id: i32,
}

/// Closes the connection if a write is abandoned half-way (its future
/// dropped): the stream would otherwise hold a torn frame.
struct TornWriteGuard<'a> {
    shared: &'a Shared,
    done: bool,
}

impl Drop for TornWriteGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.shared
                .close("a request was cancelled while being written".to_string());
        }
    }
}

/// A connection to one broker. Cheap to share behind an `Arc`; every method
/// takes `&self`, and any number of tasks may send on it at once.
pub struct Connection {
    shared: Arc<Shared>,
    writer: tokio::sync::Mutex<Writer>,
    in_flight: Arc<Semaphore>,
    options: ConnectionOptions,
    versions: OnceLock<Versions>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.shared.addr)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects over TCP to `addr` (`HOST:PORT`) and negotiates API versions.
    pub async fn connect(addr: &str, options: ConnectionOptions) -> Result<Connection> {
        let connect = tokio::net::TcpStream::connect(addr);
        let stream =
            match tokio::time::timeout(Duration::from_millis(options.connect_timeout_ms), connect)
                .await
            {
                Err(_) => {
                    return Err(ClientError::ConnectTimeout {
                        addr: addr.to_string(),
                        timeout_ms: options.connect_timeout_ms,
                    })
                }
                Ok(Err(e)) => {
                    return Err(ClientError::Connect {
                        addr: addr.to_string(),
                        reason: e.to_string(),
                    })
                }
                Ok(Ok(s)) => s,
            };
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let conn = Connection::from_io(addr, read, write, options);
        conn.negotiate().await?;
        Ok(conn)
    }

    /// Connects to `addr` through `connector` (TLS and the SASL login as
    /// it says, within the connect timeout) and negotiates API versions.
    pub async fn connect_with(
        addr: &str,
        options: ConnectionOptions,
        connector: &crate::Connector,
    ) -> Result<Connection> {
        if connector.is_plaintext() {
            return Connection::connect(addr, options).await;
        }
        let timeout = Duration::from_millis(options.connect_timeout_ms);
        let stream = connector
            .connect(addr, &options.client_id, timeout)
            .await
            .map_err(|reason| ClientError::Connect {
                addr: addr.to_string(),
                reason,
            })?;
        let (read, write) = tokio::io::split(stream);
        let conn = Connection::from_io(addr, read, write, options);
        conn.negotiate().await?;
        Ok(conn)
    }

    /// Wraps an already connected byte stream (split in halves); no
    /// negotiation yet (see `negotiate`). Must be called inside a tokio runtime.
    pub fn from_io<R, W>(addr: &str, read: R, write: W, options: ConnectionOptions) -> Connection
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let shared = Arc::new(Shared {
            addr: Arc::from(addr),
            state: Mutex::new(PendingState::default()),
        });
        let reader = tokio::spawn(read_loop(BufReader::new(read), shared.clone()));
        Connection {
            shared,
            writer: tokio::sync::Mutex::new(Writer {
                io: Box::new(write),
                next_correlation_id: 0,
            }),
            in_flight: Arc::new(Semaphore::new(options.in_flight_max.max(1))),
            options,
            versions: OnceLock::new(),
            reader,
        }
    }

    /// The address this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.shared.addr
    }

    pub fn options(&self) -> &ConnectionOptions {
        &self.options
    }

    /// True once the connection has failed or been closed by the broker.
    pub fn is_closed(&self) -> bool {
        self.shared.state.lock().closed.is_some()
    }

    /// Sends ApiVersions (v3, or the highest the broker lists if it refuses
    /// v3) and records the versions to use for every API.
    pub async fn negotiate(&self) -> Result<&Versions> {
        let (_, ours_max) = client_range(ApiKey::ApiVersions).unwrap_or((0, 0));
        let mut version = ours_max;
        let response = loop {
            let request = ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("fjord-client"))
                .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
            let frame = self
                .send::<ApiVersionsRequest>(&request, version)
                .await?
                .wait_frame()
                .await?;
            // A broker that does not know `version` answers in the v0 format
            // with UNSUPPORTED_VERSION and its own range.
            let decoded = decode_response::<ApiVersionsResponse>(frame.clone(), version)
                .or_else(|_| decode_response::<ApiVersionsResponse>(frame, 0));
            let (_, response) = decoded.map_err(|message| ClientError::Decode {
                addr: self.addr().to_string(),
                api: "ApiVersions",
                version,
                message,
            })?;
            if response.error_code == 35 && version > 0 {
                let broker_max = response
                    .api_keys
                    .iter()
                    .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                    .map_or(0, |k| k.max_version);
                version = broker_max.clamp(0, version - 1);
                continue;
            }
            if response.error_code != 0 {
                return Err(ClientError::kafka(
                    format!("{}: ApiVersions", self.addr()),
                    response.error_code,
                    None,
                ));
            }
            break response;
        };
        let versions = Versions::negotiate(
            response
                .api_keys
                .iter()
                .map(|k| (k.api_key, k.min_version, k.max_version)),
        );
        let _ = self.versions.set(versions);
        Ok(self.versions.get().unwrap_or_else(|| unreachable!()))
    }

    /// The negotiated versions (empty before `negotiate`).
    pub fn versions(&self) -> Option<&Versions> {
        self.versions.get()
    }

    /// The highest version of `api` both sides support.
    pub fn version(&self, api: ApiKey) -> Result<i16> {
        let unsupported = |detail: String| ClientError::Unsupported {
            addr: self.addr().to_string(),
            api: api_name(api as i16),
            detail,
        };
        let Some(versions) = self.versions.get() else {
            return Err(unsupported("versions not negotiated yet".to_string()));
        };
        let (ours_min, ours_max) = client_range(api).unwrap_or((0, -1));
        match versions.get(api) {
            None => Err(unsupported("the broker does not list it".to_string())),
            Some(n) => n.chosen.ok_or_else(|| {
                unsupported(format!(
                    "client {ours_min}..={ours_max}, broker {}..={}",
                    n.broker_min, n.broker_max
                ))
            }),
        }
    }

    /// Sends `request` at `version` and returns a handle for the response
    /// once the request is written. Waits first while `in_flight_max`
    /// requests are outstanding.
    pub async fn send<R: Request>(
        &self,
        request: &R,
        version: i16,
    ) -> Result<PendingResponse<R::Response>> {
        let frame = encode_request(request, version, 0, &self.options.client_id)?;
        let permit = self
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| self.shared.disconnected("closed"))?;
        let rx = self.write_frame(frame, Some(permit)).await?;
        let Some(rx) = rx else {
            unreachable!("write_frame returns a receiver when one is expected")
        };
        Ok(PendingResponse {
            rx,
            shared: self.shared.clone(),
            api_key: R::KEY,
            version,
            timeout_ms: self.options.request_timeout_ms,
            _response: PhantomData,
        })
    }

    /// Sends a request the broker will not answer (Produce with acks=0).
    pub async fn send_without_response<R: Request>(&self, request: &R, version: i16) -> Result<()> {
        let frame = encode_request(request, version, 0, &self.options.client_id)?;
        self.write_frame(frame, None).await.map(|_| ())
    }

    /// `send` at the negotiated version, then wait for the response.
    pub async fn call<R: Request>(&self, request: &R) -> Result<R::Response> {
        let api = ApiKey::try_from(R::KEY).map_err(|_| {
            ClientError::Invalid(format!("api key {} unknown to this client", R::KEY))
        })?;
        let version = self.version(api)?;
        self.send(request, version).await?.wait().await
    }

    async fn write_frame(
        &self,
        mut frame: BytesMut,
        response_slot: Option<OwnedSemaphorePermit>,
    ) -> Result<Option<oneshot::Receiver<Result<Bytes>>>> {
        let mut writer = self.writer.lock().await;
        let id = writer.next_correlation_id;
        writer.next_correlation_id = if id == i32::MAX { 0 } else { id + 1 };
        frame[CORRELATION_ID_AT..CORRELATION_ID_AT + 4].copy_from_slice(&id.to_be_bytes());
        let rx = {
            let mut st = self.shared.state.lock();
            if let Some(reason) = &st.closed {
                return Err(self.shared.disconnected(reason));
            }
            response_slot.map(|permit| {
                let (tx, rx) = oneshot::channel();
                st.waiters.insert(id, (tx, permit));
                rx
            })
        };
        let mut guard = TornWriteGuard {
            shared: &self.shared,
            done: false,
        };
        // A TLS stream may hold the frame back until flushed.
        let written = match writer.io.write_all(&frame).await {
            Ok(()) => writer.io.flush().await,
            Err(e) => Err(e),
        };
        guard.done = true;
        if let Err(e) = written {
            let reason = format!("write failed: {e}");
            self.shared.close(reason.clone());
            return Err(self.shared.disconnected(&reason));
        }
        Ok(rx)
    }
}

/// A request that has been written; `wait` yields its response.
#[must_use = "a request's response is only seen through wait()"]
pub struct PendingResponse<T> {
    rx: oneshot::Receiver<Result<Bytes>>,
    shared: Arc<Shared>,
    api_key: i16,
    version: i16,
    timeout_ms: u64,
    _response: PhantomData<fn() -> T>,
}

impl<T> PendingResponse<T> {
    /// The version the request was sent at (and the response is read at).
    pub fn version(&self) -> i16 {
        self.version
    }

    /// The raw response frame (correlation id first, no size prefix).
    pub async fn wait_frame(mut self) -> Result<Bytes> {
        let timeout = Duration::from_millis(self.timeout_ms);
        match tokio::time::timeout(timeout, &mut self.rx).await {
            Err(_) => Err(ClientError::Timeout {
                addr: self.shared.addr.to_string(),
                api: api_name(self.api_key),
                timeout_ms: self.timeout_ms,
            }),
            Ok(Err(_)) => Err(self
                .shared
                .closed_error()
                .unwrap_or_else(|| self.shared.disconnected("connection closed"))),
            Ok(Ok(frame)) => frame,
        }
    }
}

impl<T: Decodable + HeaderVersion> PendingResponse<T> {
    /// Waits for the response (at most the request timeout) and decodes it.
    pub async fn wait(self) -> Result<T> {
        let addr = self.shared.addr.clone();
        let (api_key, version) = (self.api_key, self.version);
        let frame = self.wait_frame().await?;
        decode_response::<T>(frame, version)
            .map(|(_, body)| body)
            .map_err(|message| ClientError::Decode {
                addr: addr.to_string(),
                api: api_name(api_key),
                version,
                message,
            })
    }
}

/// Reads response frames and hands each to the request with its correlation id.
async fn read_loop<R: AsyncRead + Unpin>(mut read: R, shared: Arc<Shared>) {
    let reason = loop {
        let mut prefix = [0u8; 4];
        if let Err(e) = read.read_exact(&mut prefix).await {
            break if e.kind() == std::io::ErrorKind::UnexpectedEof {
                "closed by the broker".to_string()
            } else {
                format!("read failed: {e}")
            };
        }
        let len = match frame_len(prefix, CLIENT_RESPONSE_BYTES_MAX) {
            Ok(len) if len >= 4 => len,
            Ok(len) => break format!("response frame of {len} bytes has no correlation id"),
            Err(e) => break format!("bad response frame: {e}"),
        };
        let mut buf = vec![0u8; len];
        if let Err(e) = read.read_exact(&mut buf).await {
            break format!("read failed inside a {len}-byte frame: {e}");
        }
        let correlation_id = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let waiter = shared.state.lock().waiters.remove(&correlation_id);
        match waiter {
            // The requester may have given up (timeout); that is fine.
            // The in-flight slot is freed now, whenever the caller looks.
            Some((w, _permit)) => {
                let _ = w.send(Ok(Bytes::from(buf)));
            }
            None => {
                break format!("response with correlation id {correlation_id} matches no request")
            }
        }
    };
    tracing::debug!(addr = %shared.addr, %reason, "connection closed");
    shared.close(reason);
}
