//! The SMTP server: a relay stand-in that accepts every well-formed message into the mailbox,
//! unless a fault rule says otherwise.
//!
//! One task serves each connection, for as many messages as the client sends (pooling clients
//! keep connections open). Replies are buffered and flushed whenever the server is about to
//! wait for input, which serves pipelined commands in one write and otherwise answers at once.
//! Accepted sockets get `TCP_NODELAY` so replies are not held back by Nagle's algorithm.
//!
//! Like a real submission relay it offers STARTTLS on the plain listener, can serve implicit TLS
//! (port 465 style) on a second listener, and requires AUTH before MAIL when [`SmtpOptions`]
//! carry credentials. Each stored email records whether it arrived encrypted and who had
//! authenticated.
//!
//! The wire details live in submodules: [`command`] parses command lines, [`data`] assembles
//! message content, [`fault`] holds the injected failures, [`auth`] decodes AUTH exchanges and
//! [`tls`] makes the certificate.

mod auth;
mod command;
mod data;
mod fault;
mod tls;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter, ReadBuf,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

pub use auth::SmtpCredentials;
pub use fault::{Fault, FaultList, FaultStage, NewFault};
pub(crate) use fault::{Faults, InvalidFault};
pub(crate) use tls::ca_pem;
pub use tls::{SmtpTls, TlsError};

use crate::Sandbox;
use crate::mailbox::Envelope;
use auth::{AuthError, Mechanism};
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

/// How long a client gets to complete a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How the SMTP listeners secure and authenticate sessions.
#[derive(Debug, Clone)]
pub struct SmtpOptions {
    /// Whether the plain listener offers STARTTLS (default `true`); turn it off to stand in for
    /// a relay that does not.
    pub starttls: bool,
    /// When set, AUTH PLAIN and LOGIN are offered and MAIL is refused with 530 until a client
    /// authenticates with these credentials; when `None` (default), anyone may send.
    pub credentials: Option<SmtpCredentials>,
    /// The certificate to present; `None` generates one when the sandbox starts.
    pub tls: Option<SmtpTls>,
}

impl Default for SmtpOptions {
    fn default() -> Self {
        Self {
            starttls: true,
            credentials: None,
            tls: None,
        }
    }
}

impl SmtpOptions {
    /// Reads the options of the `fanout-sandbox` binary: credentials from
    /// `FANOUT_SANDBOX_SMTP_USERNAME` and `FANOUT_SANDBOX_SMTP_PASSWORD` when both are set.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Self {
        let username = var("FANOUT_SANDBOX_SMTP_USERNAME");
        let password = var("FANOUT_SANDBOX_SMTP_PASSWORD");
        Self {
            credentials: username
                .zip(password)
                .map(|(username, password)| SmtpCredentials::new(username, password)),
            ..Self::default()
        }
    }

    /// Fills in a freshly generated certificate when none was given.
    pub(crate) fn with_certificate(mut self) -> Result<Self, TlsError> {
        if self.tls.is_none() {
            self.tls = Some(SmtpTls::generate()?);
        }
        Ok(self)
    }
}

/// Accepts connections on `listener`, and on `tls_listener` (implicit TLS) when given, until
/// `shutdown` is cancelled.
pub(crate) async fn run(
    listener: TcpListener,
    tls_listener: Option<TcpListener>,
    sandbox: Arc<Sandbox>,
    shutdown: CancellationToken,
) {
    let acceptor = sandbox.smtp_options.tls.as_ref().map(SmtpTls::acceptor);
    let smtps = match (tls_listener, acceptor) {
        (Some(listener), Some(acceptor)) => Some((listener, acceptor.clone())),
        (Some(_), None) => {
            error!("smtps listener needs a certificate; not serving it");
            None
        }
        (None, _) => None,
    };
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    set_nodelay(&stream, peer);
                    let session = Session::new(Stream::Plain(stream), peer, sandbox.clone(), shutdown.clone());
                    sessions.spawn(session.run());
                }
                Err(error) => {
                    warn!(%error, "smtp accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            accepted = accept_tls(smtps.as_ref()) => match accepted {
                Ok((stream, peer, acceptor)) => {
                    set_nodelay(&stream, peer);
                    let (sandbox, shutdown) = (sandbox.clone(), shutdown.clone());
                    // The handshake runs in the session's task so a slow client holds up no one.
                    sessions.spawn(async move {
                        match handshake(&acceptor, stream).await {
                            Ok(stream) => Session::new(stream, peer, sandbox, shutdown).run().await,
                            Err(error) => debug!(%peer, %error, "smtps handshake failed"),
                        }
                    });
                }
                Err(error) => {
                    warn!(%error, "smtps accept failed");
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

/// Accepts on the implicit-TLS listener, or waits forever when there is none.
async fn accept_tls(
    smtps: Option<&(TcpListener, TlsAcceptor)>,
) -> io::Result<(TcpStream, SocketAddr, TlsAcceptor)> {
    match smtps {
        Some((listener, acceptor)) => {
            let (stream, peer) = listener.accept().await?;
            Ok((stream, peer, acceptor.clone()))
        }
        None => std::future::pending().await,
    }
}

fn set_nodelay(stream: &TcpStream, peer: SocketAddr) {
    if let Err(error) = stream.set_nodelay(true) {
        warn!(%peer, %error, "failed to set tcp_nodelay");
    }
}

/// Runs the server side of a TLS handshake on `stream`, within [`HANDSHAKE_TIMEOUT`].
async fn handshake(acceptor: &TlsAcceptor, stream: TcpStream) -> io::Result<Stream> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Ok(Stream::Tls(Box::new(tls))),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "tls handshake timed out",
        )),
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
    /// The client was told to start TLS: the next bytes are its handshake.
    StartTls,
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

/// How an AUTH exchange went, before the credentials are checked.
#[derive(Debug)]
enum Exchange {
    Presented {
        user: String,
        password: String,
    },
    Refused(AuthError),
    /// The connection ended, idled out or the server is shutting down mid-exchange.
    Ended(Read),
}

/// One SMTP connection.
struct Session {
    conn: Connection,
    peer: SocketAddr,
    sandbox: Arc<Sandbox>,
    shutdown: CancellationToken,
    helo: Option<String>,
    transaction: Option<Transaction>,
    /// The user that authenticated, when AUTH succeeded.
    auth_user: Option<String>,
    line: Vec<u8>,
}

impl Session {
    fn new(
        stream: Stream,
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
            auth_user: None,
            line: Vec::new(),
        }
    }

    async fn run(mut self) {
        let peer = self.peer;
        debug!(%peer, tls = self.conn.is_tls(), "smtp connection opened");
        let mut greet = true;
        let ended = loop {
            match self.converse(greet).await {
                Ok(Flow::StartTls) => {
                    greet = false;
                    let Some(tls) = self.sandbox.smtp_options.tls.clone() else {
                        break Err(io::Error::other("starttls without a certificate"));
                    };
                    match self.conn.start_tls(tls.acceptor()).await {
                        Ok(conn) => self.conn = conn,
                        Err(error) => break Err(error),
                    }
                }
                Ok(_) => break Ok(()),
                Err(error) => break Err(error),
            }
        };
        match ended {
            Ok(()) => debug!(%peer, "smtp connection closed"),
            Err(error) => debug!(%peer, %error, "smtp connection failed"),
        }
    }

    /// Serves commands until the session closes or switches to TLS; `greet` is false after
    /// STARTTLS, where the client speaks first (RFC 3207 section 4.2).
    async fn converse(&mut self, greet: bool) -> io::Result<Flow> {
        if greet {
            let greeting = format!("{HOSTNAME} ESMTP fanout-sandbox");
            self.conn.reply(220, &greeting).await?;
        }
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
            match flow {
                Flow::Continue => {}
                Flow::Close => {
                    self.conn.flush().await?;
                    return Ok(Flow::Close);
                }
                Flow::StartTls => return Ok(Flow::StartTls),
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
                let mut lines = vec![greets.as_str(), "PIPELINING", "8BITMIME", "SMTPUTF8"];
                if self.offers_starttls() {
                    lines.push("STARTTLS");
                }
                if self.sandbox.smtp_options.credentials.is_some() {
                    lines.push(Mechanism::ADVERTISED);
                }
                lines.push(&size);
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
                } else if self.sandbox.smtp_options.credentials.is_some()
                    && self.auth_user.is_none()
                {
                    self.conn
                        .reply(530, "5.7.0 authentication required")
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
            Command::StartTls => return self.start_tls().await,
            Command::Auth {
                mechanism,
                initial_response,
            } => return self.authenticate(mechanism, initial_response).await,
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
                let text = "2.0.0 supported: EHLO HELO STARTTLS AUTH MAIL RCPT DATA RSET NOOP VRFY HELP QUIT";
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

    fn offers_starttls(&self) -> bool {
        let options = &self.sandbox.smtp_options;
        options.starttls && options.tls.is_some() && !self.conn.is_tls()
    }

    /// Answers STARTTLS; the caller performs the handshake when this returns [`Flow::StartTls`].
    async fn start_tls(&mut self) -> io::Result<Flow> {
        if self.conn.is_tls() {
            self.conn.reply(503, "5.5.1 tls already active").await?;
            return Ok(Flow::Continue);
        }
        if !self.offers_starttls() {
            self.conn
                .reply(502, "5.5.1 command not implemented")
                .await?;
            return Ok(Flow::Continue);
        }
        self.conn.reply(220, "2.0.0 ready to start tls").await?;
        // Everything learnt in plain text is forgotten (RFC 3207 section 4.2).
        self.helo = None;
        self.transaction = None;
        self.auth_user = None;
        Ok(Flow::StartTls)
    }

    /// Runs an AUTH exchange and answers with its outcome.
    async fn authenticate(
        &mut self,
        mechanism: &str,
        initial_response: Option<&str>,
    ) -> io::Result<Flow> {
        let Some(credentials) = self.sandbox.smtp_options.credentials.clone() else {
            self.conn
                .reply(502, "5.5.1 command not implemented")
                .await?;
            return Ok(Flow::Continue);
        };
        let refusal = if self.helo.is_none() {
            Some("5.5.1 send EHLO first")
        } else if self.auth_user.is_some() {
            Some("5.5.1 already authenticated")
        } else if self.transaction.is_some() {
            Some("5.5.1 mail transaction in progress")
        } else {
            None
        };
        if let Some(text) = refusal {
            self.conn.reply(503, text).await?;
            return Ok(Flow::Continue);
        }
        let exchange = match Mechanism::parse(mechanism) {
            Some(Mechanism::Plain) => self.plain(initial_response).await?,
            Some(Mechanism::Login) => self.login(initial_response).await?,
            None => {
                self.conn
                    .reply(504, "5.5.4 unrecognized authentication type")
                    .await?;
                return Ok(Flow::Continue);
            }
        };
        match exchange {
            Exchange::Presented { user, password } if credentials.accepts(&user, &password) => {
                debug!(peer = %self.peer, user, "smtp client authenticated");
                self.auth_user = Some(user);
                self.conn
                    .reply(235, "2.7.0 authentication successful")
                    .await?;
            }
            Exchange::Presented { user, .. } => {
                debug!(peer = %self.peer, user, "smtp authentication failed");
                self.conn
                    .reply(535, "5.7.8 authentication credentials invalid")
                    .await?;
            }
            Exchange::Refused(error) => {
                let (code, text) = error.reply();
                self.conn.reply(code, text).await?;
            }
            Exchange::Ended(read) => return self.hang_up(read).await,
        }
        Ok(Flow::Continue)
    }

    /// PLAIN: the credentials come in the initial response or after an empty challenge.
    async fn plain(&mut self, initial_response: Option<&str>) -> io::Result<Exchange> {
        let decoded = match initial_response {
            Some(response) => auth::decode(response),
            None => match self.challenge("").await? {
                Ok(decoded) => decoded,
                Err(read) => return Ok(Exchange::Ended(read)),
            },
        };
        Ok(match decoded.and_then(|d| auth::plain(&d)) {
            Ok((user, password)) => Exchange::Presented { user, password },
            Err(error) => Exchange::Refused(error),
        })
    }

    /// LOGIN: the user name (possibly as the initial response), then the password.
    async fn login(&mut self, initial_response: Option<&str>) -> io::Result<Exchange> {
        let user = match initial_response {
            Some(response) => auth::decode(response),
            None => match self.challenge(auth::USERNAME_CHALLENGE).await? {
                Ok(decoded) => decoded,
                Err(read) => return Ok(Exchange::Ended(read)),
            },
        };
        let user = match user.and_then(auth::login_answer) {
            Ok(user) => user,
            Err(error) => return Ok(Exchange::Refused(error)),
        };
        let password = match self.challenge(auth::PASSWORD_CHALLENGE).await? {
            Ok(decoded) => decoded,
            Err(read) => return Ok(Exchange::Ended(read)),
        };
        Ok(match password.and_then(auth::login_answer) {
            Ok(password) => Exchange::Presented { user, password },
            Err(error) => Exchange::Refused(error),
        })
    }

    /// Sends a 334 challenge and decodes the client's answer, or returns how reading ended.
    async fn challenge(
        &mut self,
        text: &str,
    ) -> io::Result<Result<Result<Vec<u8>, AuthError>, Read>> {
        self.conn.reply(334, text).await?;
        Ok(match self.next_line(MAX_COMMAND_LINE).await? {
            Read::Line => {
                let line = String::from_utf8_lossy(trim_line_end(&self.line)).into_owned();
                Ok(auth::decode(&line))
            }
            Read::TooLong => Ok(Err(AuthError::Malformed)),
            read => Err(read),
        })
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
            tls: self.conn.is_tls(),
            auth_user: self.auth_user.clone(),
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

/// A client socket, in plain text or inside TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
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
struct Connection {
    /// Reads are buffered by the outer layer, replies by the inner one.
    io: BufReader<BufWriter<Stream>>,
}

impl Connection {
    fn new(stream: Stream) -> Self {
        Self {
            io: BufReader::new(BufWriter::new(stream)),
        }
    }

    fn is_tls(&self) -> bool {
        matches!(self.io.get_ref().get_ref(), Stream::Tls(_))
    }

    /// Sends what is queued, then runs the TLS handshake on the socket.
    ///
    /// Anything the client sent after STARTTLS before the handshake is dropped with the read
    /// buffer: such bytes came in plain text and must not be taken as commands from inside the
    /// encrypted session (the STARTTLS command injection flaw, CVE-2011-0411).
    async fn start_tls(mut self, acceptor: &TlsAcceptor) -> io::Result<Self> {
        self.io.flush().await?;
        match self.io.into_inner().into_inner() {
            Stream::Plain(stream) => Ok(Self::new(handshake(acceptor, stream).await?)),
            Stream::Tls(_) => Err(io::Error::other("tls is already active")),
        }
    }

    /// Queues a single-line reply.
    async fn reply(&mut self, code: u16, text: &str) -> io::Result<()> {
        let reply = format!("{code} {text}\r\n");
        self.io.write_all(reply.as_bytes()).await
    }

    /// Queues a multi-line reply: every line but the last continues with a dash.
    async fn reply_lines(&mut self, code: u16, lines: &[&str]) -> io::Result<()> {
        let mut reply = String::new();
        for (index, line) in lines.iter().enumerate() {
            let separator = if index + 1 == lines.len() { ' ' } else { '-' };
            reply.push_str(&format!("{code}{separator}{line}\r\n"));
        }
        self.io.write_all(reply.as_bytes()).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.io.flush().await
    }

    /// Reads one line into `line`, keeping at most `max` bytes of it.
    ///
    /// Queued replies are flushed before waiting on the socket: a pipelining client gets the
    /// replies to a whole batch in one write, any other client gets each reply at once.
    async fn read_line(&mut self, line: &mut Vec<u8>, max: usize) -> io::Result<Read> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_environment_only_in_pairs() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            }
        };
        let both = SmtpOptions::from_env(env(&[
            ("FANOUT_SANDBOX_SMTP_USERNAME", "alice"),
            ("FANOUT_SANDBOX_SMTP_PASSWORD", "s3cret"),
        ]));
        assert_eq!(
            both.credentials,
            Some(SmtpCredentials::new("alice", "s3cret"))
        );
        assert!(both.starttls);
        let user_only = SmtpOptions::from_env(env(&[("FANOUT_SANDBOX_SMTP_USERNAME", "alice")]));
        assert_eq!(user_only.credentials, None);
    }
}
