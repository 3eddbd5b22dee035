//! Where and how the email channel sends: the relay, the `From:` mailbox, TLS and AUTH.

use std::path::PathBuf;

use fanout_domain::config::Secret;
use serde::{Deserialize, Serialize};

/// How the connection to the relay is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTlsMode {
    /// Plain text, for the local sandbox or a relay on the same host.
    #[default]
    None,
    /// Plain connect, then STARTTLS, which is required: a relay that does not offer it gets
    /// nothing (the send fails transiently), never a message in plain text.
    Starttls,
    /// TLS from the first byte, as on port 465.
    Tls,
}

/// Where and how to send email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SmtpConfig {
    /// The relay's name in receipts (`provider`), logs and metrics; `smtp` unless there are
    /// several ([`SmtpFailoverConfig`]), which need names of their own.
    pub name: String,
    /// Relay host.
    pub host: String,
    /// Relay port.
    pub port: u16,
    /// The `From:` mailbox, e.g. `Acme <notifications@acme.test>`.
    pub from: String,
    /// Idle connections kept open to the relay (more are opened while sends run concurrently).
    pub pool_size: u32,
    /// Per-command timeout; also bounds opening a connection (TCP, TLS, greeting and AUTH).
    pub timeout_ms: u64,
    /// How the connection is secured: `none`, `starttls` or `tls`.
    pub tls: SmtpTlsMode,
    /// User for AUTH; with `password`, every connection authenticates before sending.
    pub username: Option<String>,
    /// Password for AUTH.
    pub password: Option<Secret>,
    /// PEM file of extra root certificates to trust besides the public web roots, for a
    /// private relay or the sandbox (`GET /api/smtp/ca.pem`).
    pub ca_path: Option<PathBuf>,
    /// Name to announce in EHLO; the machine's host name when unset.
    pub hello_name: Option<String>,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            name: "smtp".into(),
            host: "127.0.0.1".into(),
            port: 2525,
            from: "Fanout <notifications@fanout.localhost>".into(),
            pool_size: 256,
            timeout_ms: 10_000,
            tls: SmtpTlsMode::None,
            username: None,
            password: None,
            ca_path: None,
            hello_name: None,
        }
    }
}

/// Relays to fail over to, in order, after the primary (`smtp`): a message the primary
/// answers with a transient error (a 4xx, a timeout, a refused connection) goes to the next
/// relay at once, and a relay that has failed `rest_after` times in a row is left to rest for
/// `rest_ms` before one message probes it again; its first success brings traffic back. The
/// last relay never rests: when all are down the provider breaker holds the sends.
/// Permanent rejections (5xx: an unknown mailbox, a refused message) are the answer and do not
/// fail over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SmtpFailoverConfig {
    /// The secondary relays, each named (`[[smtp_failover.relays]]` in the TOML file).
    pub relays: Vec<SmtpConfig>,
    /// Transient failures in a row that send a relay to rest.
    pub rest_after: u32,
    /// How long a failing relay rests before a probe, in milliseconds.
    pub rest_ms: u64,
}

impl Default for SmtpFailoverConfig {
    fn default() -> Self {
        Self {
            relays: Vec::new(),
            rest_after: 3,
            rest_ms: 30_000,
        }
    }
}

/// Why the email channel cannot start.
#[derive(Debug, thiserror::Error)]
#[error("invalid smtp configuration: {0}")]
pub struct SmtpConfigError(pub(super) String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_mode_reads_from_config_text() {
        let config: SmtpConfig =
            serde_json::from_str(r#"{"tls": "starttls", "username": "u", "password": "p"}"#)
                .unwrap();
        assert_eq!(config.tls, SmtpTlsMode::Starttls);
        assert_eq!(config.password.as_ref().map(Secret::expose), Some("p"));
        assert_eq!(config.port, SmtpConfig::default().port);
        let config: SmtpConfig = serde_json::from_str(r#"{"tls": "tls"}"#).unwrap();
        assert_eq!(config.tls, SmtpTlsMode::Tls);
        assert_eq!(SmtpConfig::default().tls, SmtpTlsMode::None);
        assert!(serde_json::from_str::<SmtpConfig>(r#"{"tls": "ssl"}"#).is_err());
    }
}
