//! The metrics listener: a small HTTP/1.1 server (one request per
//! connection, answered with `Connection: close`) for `/metrics`,
//! `/health` and `/ready`. Request heads are bounded
//! (`limits::METRICS_HTTP_REQUEST_BYTES_MAX`, read within
//! `METRICS_HTTP_READ_TIMEOUT_MS`); anything else than `GET`/`HEAD` of a
//! known path gets a 4xx, and so does a malformed head.
//!
//! - `/health`: 200 while the process runs (liveness).
//! - `/ready`: 200 once storage is recovered, the metadata caught up (in a
//!   cluster: this broker registered and unfenced), the group coordinator's
//!   shards loaded and the client listener open; 503 before, naming the
//!   checks that fail.
//! - `/metrics`: the Prometheus text exposition ([`super::exposition`]).

use std::sync::Arc;
use std::time::Duration;

use fjord_model::limits::{
    METRICS_HTTP_CONNECTIONS_MAX, METRICS_HTTP_READ_TIMEOUT_MS, METRICS_HTTP_REQUEST_BYTES_MAX,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use super::{exposition, Health};

/// Serve until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    health: Arc<Health>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(METRICS_HTTP_CONNECTIONS_MAX));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    drop(stream);
                    continue;
                };
                let health = health.clone();
                tasks.spawn(async move {
                    let _ = connection(stream, &health).await;
                    drop(slot);
                });
            }
            _ = shutdown.changed() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    tasks.abort_all();
    Ok(())
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Asked {
    Get {
        path: String,
        head_only: bool,
    },
    /// A status to answer with at once (4xx).
    Refuse(u16),
}

/// Reads one request head (up to the blank line) and parses it.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Asked> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(METRICS_HTTP_READ_TIMEOUT_MS);
    loop {
        if let Some(end) = find_head_end(&buf) {
            return Ok(parse_head(&buf[..end]));
        }
        if buf.len() >= METRICS_HTTP_REQUEST_BYTES_MAX {
            return Ok(Asked::Refuse(431));
        }
        let want = chunk.len().min(METRICS_HTTP_REQUEST_BYTES_MAX - buf.len());
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut chunk[..want])).await {
            Err(_) => return Ok(Asked::Refuse(408)),
            Ok(r) => r?,
        };
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

fn parse_head(head: &[u8]) -> Asked {
    let Ok(head) = std::str::from_utf8(head) else {
        return Asked::Refuse(400);
    };
    let line = head.split("\r\n").next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Asked::Refuse(400);
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Asked::Refuse(400);
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => {
            return Asked::Refuse(405)
        }
        _ => return Asked::Refuse(400),
    };
    let path = target.split('?').next().unwrap_or(target).to_string();
    Asked::Get { path, head_only }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

async fn connection(mut stream: TcpStream, health: &Arc<Health>) -> std::io::Result<()> {
    let asked = read_head(&mut stream).await?;
    let (status, content_type, body, head_only) = match asked {
        Asked::Refuse(status) => (status, "text/plain", format!("{}\n", reason(status)), false),
        Asked::Get { path, head_only } => {
            let (status, ct, body) = answer(&path, health).await;
            (status, ct, body, head_only)
        }
    };
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await?;
    // A lingering close: read (and drop) what the client still sends, a
    // bounded amount for a bounded time, so that closing with unread bytes
    // does not reset the connection before the client reads the answer.
    let mut sink = [0u8; 4096];
    let mut left = LINGER_BYTES_MAX;
    let until = tokio::time::Instant::now() + Duration::from_millis(LINGER_MS);
    while left > 0 {
        match tokio::time::timeout_at(until, stream.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => break,
        }
    }
    Ok(())
}

/// How long and how much a closing connection keeps reading.
const LINGER_MS: u64 = 1_000;
const LINGER_BYTES_MAX: usize = 256 * 1024;

async fn answer(path: &str, health: &Arc<Health>) -> (u16, &'static str, String) {
    match path {
        "/health" => (200, "text/plain", "ok\n".to_string()),
        "/ready" => {
            let checks = health.checks();
            let body: String = checks
                .iter()
                .map(|c| format!("{}: {}\n", c.name, if c.ok { "ok" } else { "not ready" }))
                .collect();
            let status = if checks.iter().all(|c| c.ok) {
                200
            } else {
                503
            };
            (status, "text/plain", body)
        }
        "/metrics" => {
            // A scrape reads every partition: off the async workers.
            let h = health.clone();
            let text = tokio::task::spawn_blocking(move || exposition::render(&h))
                .await
                .unwrap_or_default();
            (200, exposition::CONTENT_TYPE, text)
        }
        _ => (404, "text/plain", "not found\n".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_parsed_or_refused() {
        assert_eq!(
            parse_head(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a"),
            Asked::Get {
                path: "/metrics".into(),
                head_only: false
            }
        );
        assert_eq!(
            parse_head(b"HEAD /health HTTP/1.0"),
            Asked::Get {
                path: "/health".into(),
                head_only: true
            }
        );
        assert_eq!(parse_head(b"POST /metrics HTTP/1.1"), Asked::Refuse(405));
        for bad in [
            &b"GET /metrics"[..],
            b"GET metrics HTTP/1.1",
            b"GET /metrics HTTP/2 x",
            b"GET /metrics SPDY/3",
            b"\xff\xfe / HTTP/1.1",
            b"get /metrics HTTP/1.1",
            b"",
        ] {
            assert_eq!(parse_head(bad), Asked::Refuse(400), "{bad:?}");
        }
    }
}
