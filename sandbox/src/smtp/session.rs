//! One SMTP session: the command loop, the mail transaction, AUTH exchanges and the faults
//! injected into them.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::auth::{self, AuthError, Mechanism};
use super::command::{self, Command};
use super::data::{MessageBuffer, Progress, Refusal};
use super::fault::{Fault, FaultStage};
use super::stream::{Connection, Read, Stream};
use crate::Sandbox;
use crate::mailbox::Envelope;

/// Largest message accepted, as advertised with the `SIZE` extension.
const MAX_MESSAGE_SIZE: usize = 26_214_400;

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
pub(super) struct Session {
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
    pub(super) fn new(
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

    pub(super) async fn run(mut self) {
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
        if let Some(fault) = self
            .sandbox
            .smtp_faults
            .take(|fault| fault.matches(FaultStage::Rcpt, to))
        {
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
            .find_map(|rcpt| faults.take(|fault| fault.matches(FaultStage::Data, rcpt)));
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
    async fn wait_out(&mut self, fault: &Fault) -> io::Result<Option<Flow>> {
        if fault.delay().is_zero() {
            return Ok(None);
        }
        // Send what is already answered first, so only this reply is late.
        self.conn.flush().await?;
        tokio::select! {
            () = self.shutdown.cancelled() => self.hang_up(Read::Shutdown).await.map(Some),
            () = tokio::time::sleep(fault.delay()) => Ok(None),
        }
    }

    async fn reply_with_fault(&mut self, fault: Fault) -> io::Result<Flow> {
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
