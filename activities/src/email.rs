//! The email channel: lettre's SMTP client over a small connection pool of our own.
//!
//! lettre's own transport never sets `TCP_NODELAY`, so every command waits out the peer's
//! delayed ACK (about 22 messages/s per connection; ARCHITECTURE.md, "Facts this code relies
//! on"). Its connection type accepts a stream we open ourselves, so this module connects with
//! `TCP_NODELAY` set and pools the connections; lettre still speaks the protocol.
//!
//! The same holds on every [`SmtpTlsMode`]: for STARTTLS lettre upgrades the stream we gave it
//! in place; for implicit TLS we run the handshake on our stream with tokio-rustls and hand
//! lettre the encrypted stream. AUTH (PLAIN, else LOGIN) runs once per connection, before it
//! joins the pool.
//!
//! The module is laid out along those lines: [`EmailSender`] here builds each message and sends
//! it on a pooled connection of the first relay that is not resting, `failover` keeps each
//! relay's record, `config` holds the settings, `pool` opens, secures and keeps the
//! connections, and `classify` turns the relay's replies into [`SendOutcome`]s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fanout_domain::InstanceId;
use fanout_domain::render::RenderedEmail;
use fanout_domain::user::EmailAddress;
use lettre::Message;
use lettre::message::{Mailbox, MultiPart, header};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::AsyncSmtpConnection;

use crate::credentials::is_loopback_host;
use crate::outcome::SendOutcome;

mod classify;
mod config;
mod failover;
mod pool;

use classify::{classify, queue_id, timed_out};
use failover::{Health, Turn};
use pool::Pool;

pub use config::{SmtpConfig, SmtpConfigError, SmtpFailoverConfig, SmtpTlsMode};

/// Sends email through pooled SMTP connections, to the primary relay or, while it fails, the
/// next ([`SmtpFailoverConfig`]). Cheap to share.
#[derive(Clone)]
pub struct EmailSender {
    relays: Arc<[Relay]>,
    rest_after: u32,
    rest: Duration,
}

/// What a send came to, and which relay gave the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailSent {
    /// The outcome.
    pub outcome: SendOutcome,
    /// The relay that answered last (its configured name).
    pub relay: Option<String>,
}

impl EmailSender {
    /// Prepares the sender for one relay; connections are opened on first use.
    pub fn new(config: &SmtpConfig) -> Result<Self, SmtpConfigError> {
        Self::with_failover(config, &SmtpFailoverConfig::default())
    }

    /// Prepares the sender for `primary` and the relays it fails over to.
    pub fn with_failover(
        primary: &SmtpConfig,
        failover: &SmtpFailoverConfig,
    ) -> Result<Self, SmtpConfigError> {
        let relays = std::iter::once(primary)
            .chain(&failover.relays)
            .map(Relay::new)
            .collect::<Result<Vec<_>, _>>()?;
        for (i, relay) in relays.iter().enumerate() {
            if relay.name.trim().is_empty() {
                return Err(SmtpConfigError("every relay needs a name".into()));
            }
            if relays[..i].iter().any(|r| r.name == relay.name) {
                return Err(SmtpConfigError(format!(
                    "two relays are named '{}'; give each failover relay a name of its own",
                    relay.name
                )));
            }
        }
        Ok(Self {
            relays: relays.into(),
            rest_after: failover.rest_after,
            rest: Duration::from_millis(failover.rest_ms),
        })
    }

    /// Sends one rendered email (see [`Self::send_via`]).
    pub async fn send(
        &self,
        instance: &InstanceId,
        to: &EmailAddress,
        email: &RenderedEmail,
    ) -> SendOutcome {
        self.send_via(instance, to, email).await.outcome
    }

    /// Sends one rendered email through the first relay that is not resting, and on through
    /// the next while they fail transiently; the last relay is always tried when it comes to
    /// it. The Message-ID derives from the instance id, so a
    /// resend (after a crash, or to the next relay) carries the same id and receivers can
    /// deduplicate.
    pub async fn send_via(
        &self,
        instance: &InstanceId,
        to: &EmailAddress,
        email: &RenderedEmail,
    ) -> EmailSent {
        // The last relay never rests: it is where a message goes when every other is down, and
        // its failures are the provider breaker's business (`crate::breaker`), as a single
        // relay's always were.
        let (last, others) = self
            .relays
            .split_last()
            .expect("a sender has at least its primary relay");
        for relay in others {
            if relay.health.turn(Instant::now()) == Turn::Skip {
                continue;
            }
            let outcome = relay.send(instance, to, email).await;
            if !matches!(outcome, SendOutcome::Transient { .. }) {
                relay.health.answered();
                return EmailSent {
                    outcome,
                    relay: Some(relay.name.clone()),
                };
            }
            relay
                .health
                .failed(Instant::now(), self.rest_after, self.rest);
        }
        EmailSent {
            outcome: last.send(instance, to, email).await,
            relay: Some(last.name.clone()),
        }
    }
}

/// One relay: its connections, `From:` and record.
struct Relay {
    name: String,
    pool: Arc<Pool>,
    from: Mailbox,
    health: Health,
}

impl Relay {
    fn new(config: &SmtpConfig) -> Result<Self, SmtpConfigError> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| SmtpConfigError(format!("from '{}': {e}", config.from)))?;
        let credentials = match (&config.username, &config.password) {
            (Some(user), Some(password)) => {
                Some(Credentials::new(user.clone(), password.expose().to_owned()))
            }
            (None, None) => None,
            _ => {
                return Err(SmtpConfigError(
                    "username and password must be set together".into(),
                ));
            }
        };
        if credentials.is_some()
            && config.tls == SmtpTlsMode::None
            && !is_loopback_host(&config.host)
        {
            return Err(SmtpConfigError(format!(
                "tls: AUTH credentials would cross the network to '{}' in plain text; set \
                 tls = starttls or tls (only a relay on loopback may go without)",
                config.host
            )));
        }
        Ok(Self {
            name: config.name.clone(),
            pool: Arc::new(Pool::new(config, credentials)?),
            from,
            health: Health::default(),
        })
    }

    /// Sends one rendered email on this relay.
    async fn send(
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
            Err(e) => return e.outcome(),
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

#[cfg(test)]
mod tests;

/// The sender against fanout-sandbox's SMTP relay, in process on port 0.
#[cfg(test)]
mod sandbox_tests;
