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
//! Layout: [`listener`] accepts connections and runs a [`session`] for each, which talks over
//! a [`stream`] (plain or TLS, buffered). The wire details live in the other submodules:
//! [`command`] parses command lines, [`data`] assembles message content, [`fault`] holds the
//! injected failures, [`auth`] decodes AUTH exchanges and [`tls`] makes the certificate.

mod auth;
mod command;
mod data;
mod fault;
mod listener;
mod session;
mod stream;
mod tls;

pub use auth::SmtpCredentials;
pub(crate) use fault::Faults;
pub use fault::{Fault, FaultList, FaultStage, NewFault};
pub(crate) use listener::run;
pub(crate) use tls::ca_pem;
pub use tls::{SmtpTls, TlsError};

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
