//! The email channel: lettre over SMTP with a pooled async transport.

use std::time::Duration;

use fanout_domain::InstanceId;
use fanout_domain::render::RenderedEmail;
use fanout_domain::user::EmailAddress;
use lettre::message::{Mailbox, MultiPart, header};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

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
    /// Pooled connections kept open to the relay.
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
            pool_size: 8,
            timeout_ms: 10_000,
        }
    }
}

/// Why the email channel cannot start.
#[derive(Debug, thiserror::Error)]
#[error("invalid smtp configuration: {0}")]
pub struct SmtpConfigError(String);

/// The outcome of one send, classified for retry decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The relay accepted the message; carries its queue id (or our Message-ID).
    Accepted {
        /// The provider's id for the message.
        provider_message_id: String,
    },
    /// The relay rejected it for good (5xx) or the message cannot be built.
    Permanent {
        /// Stable code, e.g. `smtp_550`.
        code: String,
        /// The relay's words.
        message: String,
    },
    /// Worth retrying (4xx, connection trouble, timeouts).
    Transient {
        /// Stable code, e.g. `smtp_451` or `smtp_connection`.
        code: String,
        /// What happened.
        message: String,
    },
}

/// Sends email through one pooled SMTP transport. Cheap to share.
#[derive(Clone)]
pub struct EmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl EmailSender {
    /// Builds the transport; connections are opened lazily on first send.
    pub fn new(config: &SmtpConfig) -> Result<Self, SmtpConfigError> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| SmtpConfigError(format!("from '{}': {e}", config.from)))?;
        // Plain SMTP for the local relay and sandbox; TLS and auth arrive with the channels
        // work (see README limitations).
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(config.port)
            .timeout(Some(Duration::from_millis(config.timeout_ms)))
            .pool_config(PoolConfig::new().max_size(config.pool_size.max(1)))
            .build();
        Ok(Self { transport, from })
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
        match self.transport.send(message).await {
            Ok(response) => SendOutcome::Accepted {
                provider_message_id: queue_id(response.message()).unwrap_or(message_id),
            },
            Err(e) => classify(&e),
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

fn classify(e: &lettre::transport::smtp::Error) -> SendOutcome {
    let code = e
        .status()
        .map_or_else(|| "smtp_connection".to_owned(), |c| format!("smtp_{c}"));
    let message = e.to_string();
    if e.is_permanent() {
        SendOutcome::Permanent { code, message }
    } else {
        SendOutcome::Transient { code, message }
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
