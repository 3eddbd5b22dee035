//! The email channel: lettre's SMTP client over a small connection pool of our own.
//!
//! lettre's own transport never sets `TCP_NODELAY`, so every command waits out the peer's
//! delayed ACK (about 22 messages/s per connection, see ARCHITECTURE.md). Its connection type
//! accepts a stream we open ourselves, so this module connects with `TCP_NODELAY` set and pools
//! the connections; lettre still speaks the protocol.
//!
//! The same holds on every [`SmtpTlsMode`]: for STARTTLS lettre upgrades the stream we gave it
//! in place; for implicit TLS we run the handshake on our stream with tokio-rustls and hand
//! lettre the encrypted stream. AUTH (PLAIN, else LOGIN) runs once per connection, before it
//! joins the pool.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use fanout_domain::InstanceId;
use fanout_domain::config::Secret;
use fanout_domain::render::RenderedEmail;
use fanout_domain::user::EmailAddress;
use lettre::Message;
use lettre::message::{Mailbox, MultiPart, header};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::credentials::is_loopback_host;
use crate::outcome::SendOutcome;

/// AUTH mechanisms offered to the relay, in order of preference.
const AUTH_MECHANISMS: [Mechanism; 2] = [Mechanism::Plain, Mechanism::Login];

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
    security: Security,
    credentials: Option<Credentials>,
    idle: Mutex<Vec<AsyncSmtpConnection>>,
}

/// The TLS settings of each [`SmtpTlsMode`], prepared once.
enum Security {
    None,
    /// lettre runs the upgrade, so it takes its own settings type.
    StartTls(TlsParameters),
    Tls {
        connector: TlsConnector,
        server_name: ServerName<'static>,
    },
}

/// Why a connection could not be had.
enum ConnectError {
    Io(io::Error),
    Smtp(lettre::transport::smtp::Error),
    /// The TLS handshake failed (certificate not trusted, no common protocol, ...).
    Tls(io::Error),
    /// STARTTLS is required but the relay did not offer it.
    StartTlsUnavailable,
    /// Credentials are configured but the relay offers neither PLAIN nor LOGIN.
    AuthUnavailable,
    Timeout,
}

impl ConnectError {
    fn outcome(self) -> SendOutcome {
        match self {
            Self::Smtp(e) => classify(&e),
            Self::Io(e) => SendOutcome::transient("smtp_connection", e.to_string()),
            Self::Tls(e) => SendOutcome::transient("smtp_tls", e.to_string()),
            // Transient: a relay that usually offers it may be misbehaving, or someone on the
            // path stripped it; either way the message waits rather than going out in clear.
            Self::StartTlsUnavailable => SendOutcome::transient(
                "smtp_starttls_unavailable",
                "the relay does not offer starttls, which is required",
            ),
            Self::AuthUnavailable => SendOutcome::transient(
                "smtp_auth_unavailable",
                "the relay offers no supported auth mechanism (plain, login)",
            ),
            Self::Timeout => timed_out("connecting to the relay timed out"),
        }
    }
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
        tokio::time::timeout(self.timeout, self.open())
            .await
            .map_err(|_| ConnectError::Timeout)?
    }

    /// Connects, secures and authenticates one connection.
    async fn open(&self) -> Result<AsyncSmtpConnection, ConnectError> {
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(ConnectError::Io)?;
        // The point of this pool: no delayed-ACK stall between SMTP commands. TLS records
        // go out on this same socket, so every mode keeps it.
        stream.set_nodelay(true).map_err(ConnectError::Io)?;
        let mut connection = match &self.security {
            Security::None => self.greet(Box::new(stream)).await?,
            Security::StartTls(parameters) => {
                let mut connection = self.greet(Box::new(stream)).await?;
                if !connection.can_starttls() {
                    connection.abort().await;
                    return Err(ConnectError::StartTlsUnavailable);
                }
                // A reply code means the relay refused STARTTLS (classified like any reply);
                // without one, the handshake itself failed.
                connection
                    .starttls(parameters.clone(), &self.hello)
                    .await
                    .map_err(|e| match e.status() {
                        Some(_) => ConnectError::Smtp(e),
                        None => ConnectError::Tls(io::Error::other(e)),
                    })?;
                connection
            }
            Security::Tls {
                connector,
                server_name,
            } => {
                let tls = connector
                    .connect(server_name.clone(), stream)
                    .await
                    .map_err(ConnectError::Tls)?;
                self.greet(Box::new(ImplicitTls(tls))).await?
            }
        };
        if let Some(credentials) = &self.credentials {
            if connection
                .server_info()
                .get_auth_mechanism(&AUTH_MECHANISMS)
                .is_none()
            {
                connection.abort().await;
                return Err(ConnectError::AuthUnavailable);
            }
            if let Err(e) = connection.auth(&AUTH_MECHANISMS, credentials).await {
                connection.abort().await;
                return Err(ConnectError::Smtp(e));
            }
        }
        Ok(connection)
    }

    /// Reads the greeting and sends EHLO on a fresh stream.
    async fn greet(
        &self,
        stream: Box<dyn AsyncTokioStream>,
    ) -> Result<AsyncSmtpConnection, ConnectError> {
        AsyncSmtpConnection::connect_with_transport(stream, &self.hello)
            .await
            .map_err(ConnectError::Smtp)
    }
}

/// The client side of implicit TLS, in the shape lettre accepts a ready stream in.
#[derive(Debug)]
struct ImplicitTls(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncRead for ImplicitTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ImplicitTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl EmailSender {
    /// Prepares the sender; connections are opened on first use.
    pub fn new(config: &SmtpConfig) -> Result<Self, SmtpConfigError> {
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
        let hello = match &config.hello_name {
            Some(name) => ClientId::Domain(name.clone()),
            None => ClientId::default(),
        };
        Ok(Self {
            pool: Arc::new(Pool {
                host: config.host.clone(),
                port: config.port,
                timeout: Duration::from_millis(config.timeout_ms),
                max_idle: config.pool_size as usize,
                hello,
                security: security(config)?,
                credentials,
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

/// Prepares the TLS settings for `config.tls`: the public web roots plus `ca_path`.
fn security(config: &SmtpConfig) -> Result<Security, SmtpConfigError> {
    if config.tls == SmtpTlsMode::None {
        return Ok(Security::None);
    }
    let extra_roots = match &config.ca_path {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| SmtpConfigError(format!("ca_path '{}': {e}", path.display())))?;
            let certificates = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| SmtpConfigError(format!("ca_path '{}': {e}", path.display())))?;
            if certificates.is_empty() {
                let message = format!("ca_path '{}': no certificate in the file", path.display());
                return Err(SmtpConfigError(message));
            }
            Some((pem, certificates))
        }
        None => None,
    };
    match config.tls {
        SmtpTlsMode::None => Ok(Security::None),
        SmtpTlsMode::Starttls => {
            // lettre's default store for rustls is the same public web roots used below.
            let mut builder = TlsParameters::builder(config.host.clone());
            if let Some((pem, _)) = &extra_roots {
                let certificate = Certificate::from_pem(pem)
                    .map_err(|e| SmtpConfigError(format!("ca_path: {e}")))?;
                builder = builder.add_root_certificate(certificate);
            }
            let parameters = builder
                .build_rustls()
                .map_err(|e| SmtpConfigError(format!("tls: {e}")))?;
            Ok(Security::StartTls(parameters))
        }
        SmtpTlsMode::Tls => {
            let mut roots = RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            for certificate in extra_roots.into_iter().flat_map(|(_, certs)| certs) {
                roots
                    .add(certificate)
                    .map_err(|e| SmtpConfigError(format!("ca_path: {e}")))?;
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let tls = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| SmtpConfigError(format!("tls: {e}")))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            let server_name = ServerName::try_from(config.host.clone())
                .map_err(|e| SmtpConfigError(format!("host '{}': {e}", config.host)))?;
            Ok(Security::Tls {
                connector: TlsConnector::from(Arc::new(tls)),
                server_name,
            })
        }
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
    use std::path::Path;

    use fanout_sandbox::{EmailList, Listeners, SmtpCredentials, SmtpOptions, SmtpTls};
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    use super::*;

    /// A sandbox relay on port 0, with its CA written to a file for `ca_path`.
    struct Relay {
        smtp_port: u16,
        smtps_port: u16,
        base_url: String,
        ca_path: PathBuf,
        _stop: oneshot::Sender<()>,
        server: JoinHandle<()>,
    }

    impl Relay {
        async fn spawn(name: &str, mut options: SmtpOptions) -> Self {
            let tls = SmtpTls::generate().unwrap();
            let ca_path = std::env::temp_dir()
                .join(format!("fanout-email-{}-{name}.pem", std::process::id()));
            std::fs::write(&ca_path, tls.ca_pem()).unwrap();
            options.tls = Some(tls);
            let listeners = Listeners::bind_loopback().await.unwrap();
            let smtp_port = listeners.smtp.local_addr().unwrap().port();
            let smtps_port = listeners
                .smtps
                .as_ref()
                .and_then(|l| l.local_addr().ok())
                .map(|a| a.port())
                .unwrap();
            let base_url = format!("http://{}", listeners.http.local_addr().unwrap());
            let (stop, stopped) = oneshot::channel::<()>();
            let shutdown = async {
                let _ = stopped.await;
            };
            let server = tokio::spawn(async move {
                fanout_sandbox::serve_with(listeners, options, shutdown)
                    .await
                    .unwrap();
            });
            Self {
                smtp_port,
                smtps_port,
                base_url,
                ca_path,
                _stop: stop,
                server,
            }
        }

        /// A sender for this relay; `port` picks the plain or the implicit-TLS listener.
        fn config(&self, tls: SmtpTlsMode, port: u16) -> SmtpConfig {
            SmtpConfig {
                host: "127.0.0.1".into(),
                port,
                tls,
                ca_path: Some(self.ca_path.clone()),
                hello_name: Some("sender.test".into()),
                timeout_ms: 5_000,
                ..SmtpConfig::default()
            }
        }

        async fn emails_to(&self, to: &str) -> EmailList {
            let url = format!("{}/api/emails", self.base_url);
            let response = reqwest::Client::new()
                .get(url)
                .query(&[("to", to)])
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success());
            response.json().await.unwrap()
        }
    }

    impl Drop for Relay {
        fn drop(&mut self) {
            self.server.abort();
            let _ = std::fs::remove_file(&self.ca_path);
        }
    }

    fn alice() -> SmtpOptions {
        SmtpOptions {
            credentials: Some(SmtpCredentials::new("alice", "s3cret")),
            ..SmtpOptions::default()
        }
    }

    fn with_login(mut config: SmtpConfig, password: &str) -> SmtpConfig {
        config.username = Some("alice".into());
        config.password = Some(Secret::new(password));
        config
    }

    async fn send(sender: &EmailSender, n: u32, to: &str) -> SendOutcome {
        let instance = InstanceId::parse(&format!("in_{n:032x}")).unwrap();
        let email = RenderedEmail {
            subject: format!("Message {n}"),
            text: "Hello".into(),
            html: None,
        };
        sender
            .send(&instance, &EmailAddress::parse(to).unwrap(), &email)
            .await
    }

    fn is_accepted(outcome: &SendOutcome) -> bool {
        matches!(outcome, SendOutcome::Accepted { .. })
    }

    #[tokio::test]
    async fn starttls_with_auth_delivers_over_one_pooled_connection() {
        let relay = Relay::spawn("starttls", alice()).await;
        let config = with_login(
            relay.config(SmtpTlsMode::Starttls, relay.smtp_port),
            "s3cret",
        );
        let sender = EmailSender::new(&config).unwrap();
        for n in 0..3 {
            let outcome = send(&sender, n, "bob@example.com").await;
            assert!(is_accepted(&outcome), "{outcome:?}");
        }
        let list = relay.emails_to("bob@example.com").await;
        assert_eq!(list.emails.len(), 3);
        for email in &list.emails {
            assert!(email.tls, "{email:?}");
            assert_eq!(email.auth_user.as_deref(), Some("alice"));
            assert_eq!(email.helo.as_deref(), Some("sender.test"));
            assert_eq!(email.peer, list.emails[0].peer, "one pooled connection");
        }
    }

    #[tokio::test]
    async fn implicit_tls_delivers() {
        let relay = Relay::spawn("implicit", alice()).await;
        let config = with_login(relay.config(SmtpTlsMode::Tls, relay.smtps_port), "s3cret");
        let sender = EmailSender::new(&config).unwrap();
        let outcome = send(&sender, 1, "carol@example.com").await;
        assert!(is_accepted(&outcome), "{outcome:?}");
        let list = relay.emails_to("carol@example.com").await;
        let [email] = &list.emails[..] else {
            panic!("expected one email, got {list:?}")
        };
        assert!(email.tls);
        assert_eq!(email.auth_user.as_deref(), Some("alice"));
    }

    #[tokio::test]
    async fn required_starttls_never_falls_back_to_plain_text() {
        let options = SmtpOptions {
            starttls: false,
            ..SmtpOptions::default()
        };
        let relay = Relay::spawn("no-starttls", options).await;
        let sender =
            EmailSender::new(&relay.config(SmtpTlsMode::Starttls, relay.smtp_port)).unwrap();
        let outcome = send(&sender, 1, "dave@example.com").await;
        let SendOutcome::Transient { code, .. } = &outcome else {
            panic!("expected a transient failure, got {outcome:?}")
        };
        assert_eq!(code, "smtp_starttls_unavailable");
        // The relay takes mail from anyone in plain text, so nothing arriving proves that
        // nothing was sent.
        assert!(relay.emails_to("dave@example.com").await.emails.is_empty());
        let plain = EmailSender::new(&relay.config(SmtpTlsMode::None, relay.smtp_port)).unwrap();
        assert!(is_accepted(&send(&plain, 2, "dave@example.com").await));
        assert_eq!(relay.emails_to("dave@example.com").await.emails.len(), 1);
    }

    #[tokio::test]
    async fn wrong_password_is_permanent() {
        let relay = Relay::spawn("bad-password", alice()).await;
        let config = with_login(
            relay.config(SmtpTlsMode::Starttls, relay.smtp_port),
            "wrong",
        );
        let sender = EmailSender::new(&config).unwrap();
        let outcome = send(&sender, 1, "erin@example.com").await;
        let SendOutcome::Permanent { code, .. } = &outcome else {
            panic!("expected a permanent failure, got {outcome:?}")
        };
        assert_eq!(code, "smtp_535");
        // Without credentials the relay says 530 at MAIL: also permanent.
        let anonymous = relay.config(SmtpTlsMode::Starttls, relay.smtp_port);
        let outcome = send(
            &EmailSender::new(&anonymous).unwrap(),
            2,
            "erin@example.com",
        )
        .await;
        assert!(
            matches!(&outcome, SendOutcome::Permanent { code, .. } if code == "smtp_530"),
            "{outcome:?}"
        );
        assert!(relay.emails_to("erin@example.com").await.emails.is_empty());
    }

    #[tokio::test]
    async fn untrusted_certificates_are_refused() {
        let relay = Relay::spawn("untrusted", SmtpOptions::default()).await;
        for (mode, port) in [
            (SmtpTlsMode::Tls, relay.smtps_port),
            (SmtpTlsMode::Starttls, relay.smtp_port),
        ] {
            let config = SmtpConfig {
                ca_path: None,
                ..relay.config(mode, port)
            };
            let outcome = send(&EmailSender::new(&config).unwrap(), 1, "frank@example.com").await;
            assert!(
                matches!(&outcome, SendOutcome::Transient { code, message, .. }
                    if code == "smtp_tls" && message.contains("UnknownIssuer")),
                "{mode:?}: {outcome:?}"
            );
        }
        assert!(relay.emails_to("frank@example.com").await.emails.is_empty());
    }

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

    #[test]
    fn half_credentials_and_bad_ca_files_are_config_errors() {
        let user_only = SmtpConfig {
            username: Some("alice".into()),
            ..SmtpConfig::default()
        };
        assert!(EmailSender::new(&user_only).is_err());
        let missing = SmtpConfig {
            tls: SmtpTlsMode::Tls,
            ca_path: Some(Path::new("/nonexistent/ca.pem").to_owned()),
            ..SmtpConfig::default()
        };
        let error = EmailSender::new(&missing).err().unwrap().to_string();
        assert!(error.contains("ca_path"), "{error}");
        let empty =
            std::env::temp_dir().join(format!("fanout-email-{}-empty.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let no_certificate = SmtpConfig {
            tls: SmtpTlsMode::Starttls,
            ca_path: Some(empty.clone()),
            ..SmtpConfig::default()
        };
        let result = EmailSender::new(&no_certificate);
        let _ = std::fs::remove_file(&empty);
        assert!(result.is_err());
    }

    #[test]
    fn auth_without_tls_is_refused_except_to_loopback() {
        let remote = SmtpConfig {
            host: "relay.example.com".into(),
            username: Some("alice".into()),
            password: Some(Secret::new("s3cret")),
            ..SmtpConfig::default()
        };
        let error = EmailSender::new(&remote).err().unwrap().to_string();
        assert!(error.contains("tls"), "{error}");
        let starttls = SmtpConfig {
            tls: SmtpTlsMode::Starttls,
            ..remote.clone()
        };
        assert!(EmailSender::new(&starttls).is_ok());
        let loopback = SmtpConfig {
            host: "127.0.0.1".into(),
            ..remote
        };
        assert!(EmailSender::new(&loopback).is_ok());
    }

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
