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

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fjord_model::limits;
use fjord_protocol::{decode_request_header, frame_len, Reader};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::handlers::{self, Pending};
use crate::response::Writer;
use crate::state::Broker;

// A frame's share of the budget is a u32 (what `acquire_many` takes), and
// never more than the whole budget, so the reader cannot wait forever.
const _: () = assert!(limits::IN_FLIGHT_REQUEST_BYTES_PER_CONNECTION_MAX <= u32::MAX as usize);

/// Accept connections until `shutdown` turns true; then wait (bounded) for
/// open connections to finish answering what they have read.
pub async fn serve(
    broker: Arc<Broker>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let open = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
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
                if open.load(Ordering::Relaxed) >= broker.config.connections_max {
                    tracing::warn!(%peer, "connection limit reached, closing");
                    broker.metrics.connection_rejected();
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                open.fetch_add(1, Ordering::Relaxed);
                let broker = broker.clone();
                let open = open.clone();
                let shutdown = shutdown.clone();
                tasks.spawn(async move {
                    if let Err(e) = connection(broker, stream, shutdown).await {
                        tracing::debug!(%peer, "connection closed: {e}");
                    }
                    open.fetch_sub(1, Ordering::Relaxed);
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
}

async fn connection(
    broker: Arc<Broker>,
    stream: TcpStream,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnError> {
    let peer = stream.peer_addr().ok();
    let (mut rd, wr) = stream.into_split();
    // Requests and latency per API, counted by the writer (`crate::metrics`).
    let metered = broker.metrics.connection_opened();
    let metering = broker.metrics.enabled();
    // Each request travels with its share of the byte budget, given back once
    // its response is handed to the writer, and its API key and arrival time.
    let (tx, mut rx) = mpsc::channel::<(Pending, OwnedSemaphorePermit, Arrival)>(
        limits::IN_FLIGHT_REQUESTS_PER_CONNECTION_MAX,
    );
    let budget = Arc::new(Semaphore::new(
        limits::IN_FLIGHT_REQUEST_BYTES_PER_CONNECTION_MAX,
    ));
    let writer = tokio::spawn(async move {
        let mut out = Writer::new(wr);
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

    let idle = Duration::from_millis(broker.config.connection_idle_ms);
    let result = loop {
        let mut prefix = [0u8; 4];
        let read = tokio::select! {
            r = tokio::time::timeout(idle, rd.read_exact(&mut prefix)) => r,
            _ = shutdown.changed() => break Ok(()),
        };
        match read {
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
        let frame = match read_frame(&mut rd, len, idle).await {
            Ok(f) => f,
            Err(e) => break Err(e),
        };
        let mut reader = Reader::new(frame);
        let header = match decode_request_header(&mut reader) {
            Ok(h) => h,
            Err(e) => break Err(e.into()),
        };
        let arrival = (header.api_key, Instant::now());
        let pending = match handlers::dispatch_from(&broker, peer, header, reader) {
            Some(p) => p,
            // The request could not be understood and has no error response: close.
            None => break Ok(()),
        };
        if tx.send((pending, permit, arrival)).await.is_err() {
            break Ok(());
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
async fn read_frame(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
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
