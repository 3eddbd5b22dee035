//! The connections to the relay: opened with `TCP_NODELAY`, secured as [`SmtpTlsMode`] says,
//! authenticated once, and kept idle between sends (see the module's header for why).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::config::{SmtpConfig, SmtpConfigError, SmtpTlsMode};

/// AUTH mechanisms offered to the relay, in order of preference.
const AUTH_MECHANISMS: [Mechanism; 2] = [Mechanism::Plain, Mechanism::Login];

/// Idle connections to the relay.
pub(super) struct Pool {
    host: String,
    port: u16,
    pub(super) timeout: Duration,
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
pub(super) enum ConnectError {
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

impl Pool {
    /// Prepares the pool and its TLS settings for `config`; connections are opened on first use.
    pub(super) fn new(
        config: &SmtpConfig,
        credentials: Option<Credentials>,
    ) -> Result<Self, SmtpConfigError> {
        let hello = match &config.hello_name {
            Some(name) => ClientId::Domain(name.clone()),
            None => ClientId::default(),
        };
        Ok(Self {
            host: config.host.clone(),
            port: config.port,
            timeout: Duration::from_millis(config.timeout_ms),
            max_idle: config.pool_size as usize,
            hello,
            security: security(config)?,
            credentials,
            idle: Mutex::new(Vec::new()),
        })
    }

    pub(super) fn take(&self) -> Option<AsyncSmtpConnection> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    pub(super) fn give_back(&self, connection: AsyncSmtpConnection) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if !connection.has_broken() && idle.len() < self.max_idle {
            idle.push(connection);
        }
    }

    /// Opens a connection, retrying a refused or reset connect once: a burst of new
    /// connections can overflow the relay's accept backlog for a moment.
    pub(super) async fn connect(&self) -> Result<AsyncSmtpConnection, ConnectError> {
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
