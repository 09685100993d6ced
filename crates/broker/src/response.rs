//! A response on its way to the socket: encoded bytes, and for Fetch, ranges
//! of segment files that are sent with sendfile(2) straight from the page
//! cache instead of being copied through user space. Over TLS the bytes
//! must be encrypted in user space, so file ranges are read into a buffer
//! and written through the TLS stream instead. Ranges that the batch cache
//! held (`FileSlice::cached`) are written from memory like encoded bytes.

use std::io;
use std::os::fd::AsRawFd;

use bytes::{Bytes, BytesMut};
use fjord_storage::FileSlice;
use tokio::io::{AsyncWriteExt, Interest, WriteHalf};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// One piece of a response frame.
pub enum Chunk {
    Bytes(Bytes),
    File(FileSlice),
}

impl Chunk {
    pub fn len(&self) -> usize {
        match self {
            Chunk::Bytes(b) => b.len(),
            Chunk::File(f) => f.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A whole response frame (size prefix included), in order.
pub struct Response {
    pub chunks: Vec<Chunk>,
}

impl Response {
    /// The frame as one buffer, file ranges read in (for tests and tools;
    /// the server sends file ranges with sendfile instead).
    pub fn to_bytes(&self) -> io::Result<Bytes> {
        let mut out = Vec::with_capacity(self.chunks.iter().map(Chunk::len).sum());
        for c in &self.chunks {
            match c {
                Chunk::Bytes(b) => out.extend_from_slice(b),
                Chunk::File(f) => f.read_into(&mut out)?,
            }
        }
        Ok(Bytes::from(out))
    }
}

impl From<BytesMut> for Response {
    fn from(b: BytesMut) -> Response {
        Response {
            chunks: vec![Chunk::Bytes(b.freeze())],
        }
    }
}

/// Buffers small pieces and writes them in as few syscalls as it can; file
/// ranges go out with sendfile after what was buffered before them.
pub struct Writer {
    wr: Sink,
    buf: BytesMut,
}

/// Where the bytes go: the socket itself, or a TLS stream over it.
enum Sink {
    Tcp(OwnedWriteHalf),
    Tls(Box<WriteHalf<TlsStream<TcpStream>>>),
}

impl Sink {
    async fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        match self {
            Sink::Tcp(w) => w.write_all(b).await,
            Sink::Tls(w) => w.write_all(b).await,
        }
    }
}

/// Below this, a bytes chunk is copied into the buffer to share a write.
const COALESCE_BYTES_MAX: usize = 64 * 1024;

impl Writer {
    pub fn new(wr: OwnedWriteHalf) -> Writer {
        Writer {
            wr: Sink::Tcp(wr),
            buf: BytesMut::new(),
        }
    }

    /// A writer to a TLS stream (file ranges are read, not sent with sendfile).
    pub fn tls(wr: WriteHalf<TlsStream<TcpStream>>) -> Writer {
        Writer {
            wr: Sink::Tls(Box::new(wr)),
            buf: BytesMut::new(),
        }
    }

    /// Queue a response; may write some of it already.
    pub async fn push(&mut self, resp: Response) -> io::Result<()> {
        for chunk in resp.chunks {
            match chunk {
                Chunk::Bytes(b) if b.len() <= COALESCE_BYTES_MAX => self.buf.extend_from_slice(&b),
                Chunk::Bytes(b) => {
                    self.flush().await?;
                    self.wr.write_all(&b).await?;
                }
                // From the batch cache: bytes like any other.
                Chunk::File(FileSlice {
                    cached: Some(b), ..
                }) if b.len() <= COALESCE_BYTES_MAX => self.buf.extend_from_slice(&b),
                Chunk::File(FileSlice {
                    cached: Some(b), ..
                }) => {
                    self.flush().await?;
                    self.wr.write_all(&b).await?;
                }
                Chunk::File(f) => {
                    self.flush().await?;
                    self.send_file(&f).await?;
                }
            }
        }
        Ok(())
    }

    /// Write whatever is buffered.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.wr.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }

    pub async fn shutdown(mut self) -> io::Result<()> {
        self.flush().await?;
        match &mut self.wr {
            Sink::Tcp(w) => w.shutdown().await,
            // Sends TLS close_notify, then closes the socket's write side.
            Sink::Tls(w) => w.shutdown().await,
        }
    }

    async fn send_file(&mut self, f: &FileSlice) -> io::Result<()> {
        let stream = match &mut self.wr {
            Sink::Tcp(w) => {
                let w: &OwnedWriteHalf = w;
                w.as_ref()
            }
            Sink::Tls(w) => {
                // Bounded by the fetch's size limits, like the frame it is part of.
                let mut bytes = Vec::with_capacity(f.len);
                f.read_into(&mut bytes)?;
                return w.write_all(&bytes).await;
            }
        };
        let sock = stream.as_raw_fd();
        let file = f.file.as_raw_fd();
        let mut offset = i64::try_from(f.position)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file position"))?;
        let mut left = f.len;
        while left > 0 {
            stream.writable().await?;
            let sent = stream.try_io(Interest::WRITABLE, || {
                // SAFETY: both descriptors are open for the whole call (`stream`
                // and `f.file` are borrowed), and `offset` is a valid pointer.
                let n = unsafe { libc::sendfile(sock, file, &mut offset, left) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match sent {
                // The file is shorter than the range we promised: the frame
                // cannot be completed, so the connection must close.
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "segment file shorter than the range being sent",
                    ))
                }
                Ok(n) => left -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
