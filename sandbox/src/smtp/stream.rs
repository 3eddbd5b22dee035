//! The socket a session talks over: plain TCP or TLS, with buffered line reading and reply
//! writing, and the upgrade to TLS that STARTTLS asks for.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter, ReadBuf,
};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::connections;

/// What reading one line produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Read {
    /// A whole line, terminator included, is in the session's line buffer.
    Line,
    /// The line exceeded the limit; it was consumed and discarded up to its terminator.
    TooLong,
    /// The client closed the connection.
    Eof,
    /// The session waited too long for the line (set by the session, not the stream).
    Idle,
    /// The sandbox is shutting down (set by the session, not the stream).
    Shutdown,
}

/// A client socket, in plain text or inside TLS.
pub(super) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// Runs the server side of a TLS handshake on `stream`.
    pub(super) async fn handshake(acceptor: &TlsAcceptor, stream: TcpStream) -> io::Result<Self> {
        let tls = connections::handshake(acceptor, stream).await?;
        Ok(Self::Tls(Box::new(tls)))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Tls(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Tls(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Self::Tls(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Tls(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}

/// Buffered line reading and reply writing on one socket.
pub(super) struct Connection {
    /// Reads are buffered by the outer layer, replies by the inner one.
    io: BufReader<BufWriter<Stream>>,
}

impl Connection {
    pub(super) fn new(stream: Stream) -> Self {
        Self {
            io: BufReader::new(BufWriter::new(stream)),
        }
    }

    pub(super) fn is_tls(&self) -> bool {
        matches!(self.io.get_ref().get_ref(), Stream::Tls(_))
    }

    /// Sends what is queued, then runs the TLS handshake on the socket.
    ///
    /// Anything the client sent after STARTTLS before the handshake is dropped with the read
    /// buffer: such bytes came in plain text and must not be taken as commands from inside the
    /// encrypted session (the STARTTLS command injection flaw, CVE-2011-0411).
    pub(super) async fn start_tls(mut self, acceptor: &TlsAcceptor) -> io::Result<Self> {
        self.io.flush().await?;
        match self.io.into_inner().into_inner() {
            Stream::Plain(stream) => Ok(Self::new(Stream::handshake(acceptor, stream).await?)),
            Stream::Tls(_) => Err(io::Error::other("tls is already active")),
        }
    }

    /// Queues a single-line reply.
    pub(super) async fn reply(&mut self, code: u16, text: &str) -> io::Result<()> {
        let reply = format!("{code} {text}\r\n");
        self.io.write_all(reply.as_bytes()).await
    }

    /// Queues a multi-line reply: every line but the last continues with a dash.
    pub(super) async fn reply_lines(&mut self, code: u16, lines: &[&str]) -> io::Result<()> {
        let mut reply = String::new();
        for (index, line) in lines.iter().enumerate() {
            let separator = if index + 1 == lines.len() { ' ' } else { '-' };
            reply.push_str(&format!("{code}{separator}{line}\r\n"));
        }
        self.io.write_all(reply.as_bytes()).await
    }

    pub(super) async fn flush(&mut self) -> io::Result<()> {
        self.io.flush().await
    }

    /// Reads one line into `line`, keeping at most `max` bytes of it.
    ///
    /// Queued replies are flushed before waiting on the socket: a pipelining client gets the
    /// replies to a whole batch in one write, any other client gets each reply at once.
    pub(super) async fn read_line(&mut self, line: &mut Vec<u8>, max: usize) -> io::Result<Read> {
        line.clear();
        let mut too_long = false;
        loop {
            if self.io.buffer().is_empty() {
                self.io.flush().await?;
            }
            let available = self.io.fill_buf().await?;
            if available.is_empty() {
                return Ok(Read::Eof);
            }
            let (chunk, complete) = match available.iter().position(|&b| b == b'\n') {
                Some(end) => (&available[..=end], true),
                None => (available, false),
            };
            let consumed = chunk.len();
            if !too_long {
                if line.len() + consumed > max {
                    too_long = true;
                    line.clear();
                } else {
                    line.extend_from_slice(chunk);
                }
            }
            self.io.consume(consumed);
            if complete {
                return Ok(if too_long { Read::TooLong } else { Read::Line });
            }
        }
    }
}
