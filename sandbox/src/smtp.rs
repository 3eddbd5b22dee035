//! The SMTP server: a relay stand-in that accepts every well-formed message into the mailbox,
//! unless a fault rule says otherwise.
//!
//! One task serves each connection, for as many messages as the client sends (pooling clients
//! keep connections open). Replies are buffered and flushed whenever the server is about to
//! wait for input, which serves pipelined commands in one write and otherwise answers at once.
//! Accepted sockets get `TCP_NODELAY` so replies are not held back by Nagle's algorithm.
//!
//! The wire details live in submodules: [`command`] parses command lines, [`data`] assembles
//! message content, [`fault`] holds the injected failures.

mod command;
mod data;
mod fault;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

pub use fault::{Fault, FaultList, FaultStage, NewFault};
pub(crate) use fault::{Faults, InvalidFault};

use crate::Sandbox;
use crate::mailbox::Envelope;
use command::Command;
use data::{MessageBuffer, Progress, Refusal};
use fault::FaultReply;

/// Largest message accepted, as advertised with the `SIZE` extension.
pub(crate) const MAX_MESSAGE_SIZE: usize = 26_214_400;

/// Name the server gives itself in the greeting and in replies.
const HOSTNAME: &str = "localhost";

/// Longest command line accepted, terminator included; RFC 5321 requires at least 512.
const MAX_COMMAND_LINE: usize = 2048;

/// Longest line of message content, terminator included (RFC 5321 section 4.5.3.1.6).
const MAX_DATA_LINE: usize = 1000;

/// Most recipients one message may have.
const MAX_RECIPIENTS: usize = 1000;

/// How long a connection may stay silent before the server hangs up.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How long open connections get to finish after shutdown before they are cut.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Pause after a failed accept, so running out of file descriptors does not spin the loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts connections on `listener` until `shutdown` is cancelled.
pub(crate) async fn run(listener: TcpListener, sandbox: Arc<Sandbox>, shutdown: CancellationToken) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if let Err(error) = stream.set_nodelay(true) {
                        warn!(%peer, %error, "failed to set tcp_nodelay");
                    }
                    let session = Session::new(stream, peer, sandbox.clone(), shutdown.clone());
                    sessions.spawn(session.run());
                }
                Err(error) => {
                    warn!(%error, "smtp accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(joined) = sessions.join_next(), if !sessions.is_empty() => log_panic(joined),
        }
    }
    // Sessions watch the same token and say goodbye with a 421 on their own.
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while let Some(joined) = sessions.join_next().await {
            log_panic(joined);
        }
    })
    .await;
    if drained.is_err() {
        warn!(open = sessions.len(), "smtp connections cut at shutdown");
        sessions.shutdown().await;
    }
}

fn log_panic(joined: Result<(), tokio::task::JoinError>) {
    if let Err(error) = joined
        && error.is_panic()
    {
        error!(%error, "smtp session panicked");
    }
}

/// The envelope of the message being composed.
#[derive(Debug)]
struct Transaction {
    mail_from: String,
    rcpt_to: Vec<String>,
}

/// Whether a session goes on after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// What reading one line produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// A whole line, terminator included, is in the session's line buffer.
    Line,
    /// The line exceeded the limit; it was consumed and discarded up to its terminator.
    TooLong,
    Eof,
    Idle,
    Shutdown,
}

/// One SMTP connection.
struct Session {
    conn: Connection,
    peer: SocketAddr,
    sandbox: Arc<Sandbox>,
    shutdown: CancellationToken,
    helo: Option<String>,
    transaction: Option<Transaction>,
    line: Vec<u8>,
}

impl Session {
    fn new(
        stream: TcpStream,
        peer: SocketAddr,
        sandbox: Arc<Sandbox>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            conn: Connection::new(stream),
            peer,
            sandbox,
            shutdown,
            helo: None,
            transaction: None,
            line: Vec::new(),
        }
    }

    async fn run(mut self) {
        let peer = self.peer;
        debug!(%peer, "smtp connection opened");
        match self.converse().await {
            Ok(()) => debug!(%peer, "smtp connection closed"),
            Err(error) => debug!(%peer, %error, "smtp connection failed"),
        }
    }

    async fn converse(&mut self) -> io::Result<()> {
        let greeting = format!("{HOSTNAME} ESMTP fanout-sandbox");
        self.conn.reply(220, &greeting).await?;
        loop {
            let flow = match self.next_line(MAX_COMMAND_LINE).await? {
                Read::Line => {
                    let line = std::mem::take(&mut self.line);
                    let flow = match command::parse(trim_line_end(&line), MAX_MESSAGE_SIZE as u64) {
                        Ok(command) => self.execute(command).await?,
                        Err(error) => {
                            let (code, text) = error.reply();
                            self.conn.reply(code, text).await?;
                            Flow::Continue
                        }
                    };
                    self.line = line;
                    flow
                }
                Read::TooLong => {
                    self.conn.reply(500, "5.5.2 line too long").await?;
                    Flow::Continue
                }
                read => self.hang_up(read).await?,
            };
            if flow == Flow::Close {
                return self.conn.flush().await;
            }
        }
    }

    /// Ends the session on end of input, idleness or shutdown.
    async fn hang_up(&mut self, read: Read) -> io::Result<Flow> {
        match read {
            Read::Idle => self.conn.reply(421, "4.4.2 idle timeout").await?,
            Read::Shutdown => {
                self.conn.reply(421, "4.3.2 service shutting down").await?;
            }
            _ => {}
        }
        Ok(Flow::Close)
    }

    async fn execute(&mut self, command: Command<'_>) -> io::Result<Flow> {
        match command {
            Command::Ehlo { domain } => {
                self.helo = Some(domain.to_owned());
                self.transaction = None;
                let greets = format!("{HOSTNAME} greets {domain}");
                let size = format!("SIZE {MAX_MESSAGE_SIZE}");
                let lines = [&greets, "PIPELINING", "8BITMIME", "SMTPUTF8", &size];
                self.conn.reply_lines(250, &lines).await?;
            }
            Command::Helo { domain } => {
                self.helo = Some(domain.to_owned());
                self.transaction = None;
                let greets = format!("{HOSTNAME} greets {domain}");
                self.conn.reply(250, &greets).await?;
            }
            Command::Mail { from } => {
                if self.helo.is_none() {
                    self.conn
                        .reply(503, "5.5.1 send EHLO or HELO first")
                        .await?;
                } else if self.transaction.is_some() {
                    self.conn.reply(503, "5.5.1 nested MAIL command").await?;
                } else {
                    self.transaction = Some(Transaction {
                        mail_from: from.to_owned(),
                        rcpt_to: Vec::new(),
                    });
                    self.conn.reply(250, "OK").await?;
                }
            }
            Command::Rcpt { to } => return self.add_recipient(to).await,
            Command::Data => match &self.transaction {
                None => self.conn.reply(503, "5.5.1 need MAIL command").await?,
                Some(transaction) if transaction.rcpt_to.is_empty() => {
                    self.conn.reply(503, "5.5.1 need RCPT command").await?;
                }
                Some(_) => {
                    self.conn
                        .reply(354, "end data with <CR><LF>.<CR><LF>")
                        .await?;
                    return self.receive_message().await;
                }
            },
            Command::Rset => {
                self.transaction = None;
                self.conn.reply(250, "OK").await?;
            }
            Command::Noop => self.conn.reply(250, "OK").await?,
            Command::Vrfy => {
                let text = "2.5.2 cannot verify user, but will accept message and attempt delivery";
                self.conn.reply(252, text).await?;
            }
            Command::Help => {
                let text = "2.0.0 supported: EHLO HELO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT";
                self.conn.reply(214, text).await?;
            }
            Command::Quit => {
                let bye = format!("2.0.0 {HOSTNAME} closing connection");
                self.conn.reply(221, &bye).await?;
                return Ok(Flow::Close);
            }
            Command::NotImplemented => {
                self.conn
                    .reply(502, "5.5.1 command not implemented")
                    .await?;
            }
        }
        Ok(Flow::Continue)
    }

    async fn add_recipient(&mut self, to: &str) -> io::Result<Flow> {
        let recipients = match &self.transaction {
            None => {
                self.conn.reply(503, "5.5.1 need MAIL command").await?;
                return Ok(Flow::Continue);
            }
            Some(transaction) => transaction.rcpt_to.len(),
        };
        if recipients >= MAX_RECIPIENTS {
            self.conn.reply(452, "4.5.3 too many recipients").await?;
            return Ok(Flow::Continue);
        }
        if let Some(fault) = self.sandbox.smtp_faults.take(FaultStage::Rcpt, to) {
            debug!(peer = %self.peer, rcpt = to, code = fault.code, "injected fault at rcpt");
            if !fault.accepts() {
                return self.reply_with_fault(fault).await;
            }
            if let Some(flow) = self.wait_out(&fault).await? {
                return Ok(flow);
            }
        }
        if let Some(transaction) = &mut self.transaction {
            transaction.rcpt_to.push(to.to_owned());
        }
        self.conn.reply(250, "OK").await?;
        Ok(Flow::Continue)
    }

    /// Reads the message content after the 354 reply and stores or refuses it.
    async fn receive_message(&mut self) -> io::Result<Flow> {
        let mut buffer = MessageBuffer::new(MAX_MESSAGE_SIZE);
        loop {
            match self.next_line(MAX_DATA_LINE).await? {
                Read::Line => {
                    if buffer.push_line(&self.line) == Progress::End {
                        break;
                    }
                }
                Read::TooLong => buffer.line_too_long(),
                read => return self.hang_up(read).await,
            }
        }
        let Some(transaction) = self.transaction.take() else {
            return Ok(Flow::Continue);
        };
        let content = match buffer.finish() {
            Ok(content) => content,
            Err(Refusal::TooLarge) => {
                let text = "5.3.4 message size exceeds fixed maximum message size";
                self.conn.reply(552, text).await?;
                return Ok(Flow::Continue);
            }
            Err(Refusal::LineTooLong) => {
                self.conn.reply(500, "5.5.2 line too long").await?;
                return Ok(Flow::Continue);
            }
        };
        let faults = &self.sandbox.smtp_faults;
        let fault = transaction
            .rcpt_to
            .iter()
            .find_map(|rcpt| faults.take(FaultStage::Data, rcpt));
        if let Some(fault) = fault {
            debug!(peer = %self.peer, code = fault.code, "injected fault at data");
            if !fault.accepts() {
                return self.reply_with_fault(fault).await;
            }
            if let Some(flow) = self.wait_out(&fault).await? {
                return Ok(flow);
            }
        }
        let size = content.len();
        let recipients = transaction.rcpt_to.len();
        let envelope = Envelope {
            mail_from: transaction.mail_from,
            rcpt_to: transaction.rcpt_to,
            peer: self.peer.to_string(),
            helo: self.helo.clone(),
        };
        let id = self.sandbox.mailbox.store(envelope, content);
        debug!(id, peer = %self.peer, recipients, size, "message stored");
        self.conn.reply(250, &format!("OK queued as {id}")).await?;
        Ok(Flow::Continue)
    }

    /// Sleeps for the rule's delay; returns the flow to end with if the server shuts down first.
    async fn wait_out(&mut self, fault: &FaultReply) -> io::Result<Option<Flow>> {
        if fault.delay.is_zero() {
            return Ok(None);
        }
        // Send what is already answered first, so only this reply is late.
        self.conn.flush().await?;
        tokio::select! {
            () = self.shutdown.cancelled() => self.hang_up(Read::Shutdown).await.map(Some),
            () = tokio::time::sleep(fault.delay) => Ok(None),
        }
    }

    async fn reply_with_fault(&mut self, fault: FaultReply) -> io::Result<Flow> {
        if let Some(flow) = self.wait_out(&fault).await? {
            return Ok(flow);
        }
        self.conn.reply(fault.code, &fault.message).await?;
        // 421 means the server is closing the channel (RFC 5321 section 3.8).
        Ok(if fault.code == 421 {
            Flow::Close
        } else {
            Flow::Continue
        })
    }

    async fn next_line(&mut self, max: usize) -> io::Result<Read> {
        tokio::select! {
            biased;
            () = self.shutdown.cancelled() => Ok(Read::Shutdown),
            read = tokio::time::timeout(IDLE_TIMEOUT, self.conn.read_line(&mut self.line, max)) => {
                read.unwrap_or(Ok(Read::Idle))
            }
        }
    }
}

/// Strips the CRLF (or bare LF) that ends a line.
fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Buffered line reading and reply writing on one socket.
struct Connection {
    reader: BufReader<OwnedReadHalf>,
    writer: BufWriter<OwnedWriteHalf>,
}

impl Connection {
    fn new(stream: TcpStream) -> Self {
        let (reader, writer) = stream.into_split();
        Self {
            reader: BufReader::new(reader),
            writer: BufWriter::new(writer),
        }
    }

    /// Queues a single-line reply.
    async fn reply(&mut self, code: u16, text: &str) -> io::Result<()> {
        let reply = format!("{code} {text}\r\n");
        self.writer.write_all(reply.as_bytes()).await
    }

    /// Queues a multi-line reply: every line but the last continues with a dash.
    async fn reply_lines(&mut self, code: u16, lines: &[&str]) -> io::Result<()> {
        let mut reply = String::new();
        for (index, line) in lines.iter().enumerate() {
            let separator = if index + 1 == lines.len() { ' ' } else { '-' };
            reply.push_str(&format!("{code}{separator}{line}\r\n"));
        }
        self.writer.write_all(reply.as_bytes()).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.writer.flush().await
    }

    /// Reads one line into `line`, keeping at most `max` bytes of it.
    ///
    /// Queued replies are flushed before waiting on the socket: a pipelining client gets the
    /// replies to a whole batch in one write, any other client gets each reply at once.
    async fn read_line(&mut self, line: &mut Vec<u8>, max: usize) -> io::Result<Read> {
        line.clear();
        let mut too_long = false;
        loop {
            if self.reader.buffer().is_empty() {
                self.writer.flush().await?;
            }
            let available = self.reader.fill_buf().await?;
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
            self.reader.consume(consumed);
            if complete {
                return Ok(if too_long { Read::TooLong } else { Read::Line });
            }
        }
    }
}
