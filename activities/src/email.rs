//! The email channel: lettre's SMTP client over a small connection pool of our own.
//!
//! lettre's own transport never sets `TCP_NODELAY`, so every command waits out the peer's
//! delayed ACK (about 22 messages/s per connection, see ARCHITECTURE.md). Its connection type
//! accepts a stream we open ourselves, so this module connects with `TCP_NODELAY` set and pools
//! the connections; lettre still speaks the protocol.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fanout_domain::InstanceId;
use fanout_domain::render::RenderedEmail;
use fanout_domain::user::EmailAddress;
use lettre::Message;
use lettre::message::{Mailbox, MultiPart, header};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

use crate::outcome::SendOutcome;

/// Where and how to send email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SmtpConfig {
    /// Relay host.
    pub host: String,
    /// Relay port.
    pub port: u16,
    /// The `From:` mailbox, e.g. `Acme <notifications@acme.test>`.
    pub from: String,
    /// Idle connections kept open to the relay (more are opened while sends run concurrently).
    pub pool_size: u32,
    /// Per-command timeout.
    pub timeout_ms: u64,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 2525,
            from: "Fanout <notifications@fanout.localhost>".into(),
            pool_size: 256,
            timeout_ms: 10_000,
        }
    }
}

/// Why the email channel cannot start.
#[derive(Debug, thiserror::Error)]
#[error("invalid smtp configuration: {0}")]
pub struct SmtpConfigError(String);

/// Sends email through pooled SMTP connections. Cheap to share.
#[derive(Clone)]
pub struct EmailSender {
    pool: Arc<Pool>,
    from: Mailbox,
}

/// Idle connections to the relay.
struct Pool {
    host: String,
    port: u16,
    timeout: Duration,
    max_idle: usize,
    hello: ClientId,
    idle: Mutex<Vec<AsyncSmtpConnection>>,
}

/// Why a connection could not be had.
enum ConnectError {
    Io(std::io::Error),
    Smtp(lettre::transport::smtp::Error),
    Timeout,
}

impl Pool {
    fn take(&self) -> Option<AsyncSmtpConnection> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn give_back(&self, connection: AsyncSmtpConnection) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if !connection.has_broken() && idle.len() < self.max_idle {
            idle.push(connection);
        }
    }

    /// Opens a connection, retrying a refused or reset connect once: a burst of new
    /// connections can overflow the relay's accept backlog for a moment.
    async fn connect(&self) -> Result<AsyncSmtpConnection, ConnectError> {
        match self.connect_once().await {
            Err(ConnectError::Io(_)) => {
                tokio::time::sleep(Duration::from_millis(25)).await;
                self.connect_once().await
            }
            other => other,
        }
    }

    async fn connect_once(&self) -> Result<AsyncSmtpConnection, ConnectError> {
        let connecting = async {
            let stream = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(ConnectError::Io)?;
            // The point of this pool: no delayed-ACK stall between SMTP commands.
            stream.set_nodelay(true).map_err(ConnectError::Io)?;
            AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello)
                .await
                .map_err(ConnectError::Smtp)
        };
        tokio::time::timeout(self.timeout, connecting)
            .await
            .map_err(|_| ConnectError::Timeout)?
    }
}

impl EmailSender {
    /// Prepares the sender; connections are opened on first use.
    pub fn new(config: &SmtpConfig) -> Result<Self, SmtpConfigError> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| SmtpConfigError(format!("from '{}': {e}", config.from)))?;
        // Plain SMTP for the local relay and sandbox; TLS and auth arrive with the channels
        // work (see README limitations).
        Ok(Self {
            pool: Arc::new(Pool {
                host: config.host.clone(),
                port: config.port,
                timeout: Duration::from_millis(config.timeout_ms),
                max_idle: config.pool_size as usize,
                hello: ClientId::default(),
                idle: Mutex::new(Vec::new()),
            }),
            from,
        })
    }

    /// Sends one rendered email. The Message-ID derives from the instance id, so a resend
    /// after a crash carries the same id and receivers can deduplicate.
    pub async fn send(
        &self,
        instance: &InstanceId,
        to: &EmailAddress,
        email: &RenderedEmail,
    ) -> SendOutcome {
        let message_id = format!("<{instance}@fanout>");
        let message = match self.build(&message_id, to, email) {
            Ok(m) => m,
            Err(message) => {
                return SendOutcome::Permanent {
                    code: "invalid_message".into(),
                    message,
                };
            }
        };
        let body = message.formatted();
        // A pooled connection may have been closed by the relay while idle: if it fails before
        // the relay answered anything, the message was not taken, so try once more on a fresh
        // connection.
        if let Some(pooled) = self.pool.take() {
            match self.send_on(pooled, &message, &body, &message_id).await {
                Err(e) if e.status().is_none() => {}
                Err(e) => return classify(&e),
                Ok(outcome) => return outcome,
            }
        }
        let connection = match self.pool.connect().await {
            Ok(c) => c,
            Err(ConnectError::Smtp(e)) => return classify(&e),
            Err(ConnectError::Io(e)) => {
                return SendOutcome::transient("smtp_connection", e.to_string());
            }
            Err(ConnectError::Timeout) => return timed_out("connecting to the relay timed out"),
        };
        match self.send_on(connection, &message, &body, &message_id).await {
            Ok(outcome) => outcome,
            Err(e) => classify(&e),
        }
    }

    /// Sends on one connection, returning it to the pool on success. lettre aborts the
    /// connection on any error, so it is never returned then.
    async fn send_on(
        &self,
        mut connection: AsyncSmtpConnection,
        message: &Message,
        body: &[u8],
        message_id: &str,
    ) -> Result<SendOutcome, lettre::transport::smtp::Error> {
        let sending = connection.send(message.envelope(), body);
        match tokio::time::timeout(self.pool.timeout, sending).await {
            Ok(Ok(response)) => {
                self.pool.give_back(connection);
                Ok(SendOutcome::Accepted {
                    provider_message_id: queue_id(response.message())
                        .unwrap_or_else(|| message_id.to_owned()),
                })
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Ok(timed_out("the relay did not answer in time")),
        }
    }

    fn build(
        &self,
        message_id: &str,
        to: &EmailAddress,
        email: &RenderedEmail,
    ) -> Result<Message, String> {
        let to: Mailbox = to.as_str().parse().map_err(|e| format!("to: {e}"))?;
        let builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject.clone())
            .message_id(Some(message_id.to_owned()));
        let built = match &email.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                email.text.clone(),
                html.clone(),
            )),
            None => builder
                .header(header::ContentType::TEXT_PLAIN)
                .body(email.text.clone()),
        };
        built.map_err(|e| e.to_string())
    }
}

/// Picks the relay's queue id out of a "250 ... queued as X" reply.
fn queue_id<'a>(lines: impl Iterator<Item = &'a str>) -> Option<String> {
    lines
        .filter_map(|l| l.split_once("queued as "))
        .map(|(_, id)| id.trim().to_owned())
        .find(|id| !id.is_empty())
}

fn timed_out(message: &str) -> SendOutcome {
    SendOutcome::transient("smtp_timeout", message)
}

fn classify(e: &lettre::transport::smtp::Error) -> SendOutcome {
    let code = e
        .status()
        .map_or_else(|| "smtp_connection".to_owned(), |c| format!("smtp_{c}"));
    let message = e.to_string();
    if e.is_permanent() {
        SendOutcome::Permanent { code, message }
    } else {
        SendOutcome::transient(code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_ids_are_read_from_replies() {
        assert_eq!(queue_id(["OK queued as 42"].into_iter()), Some("42".into()));
        assert_eq!(queue_id(["OK"].into_iter()), None);
    }

    #[test]
    fn bad_from_is_a_config_error() {
        let cfg = SmtpConfig {
            from: "not an address".into(),
            ..Default::default()
        };
        assert!(EmailSender::new(&cfg).is_err());
    }
}
