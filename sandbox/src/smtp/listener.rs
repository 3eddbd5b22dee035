//! The SMTP listeners: accept connections on the plain and the implicit-TLS socket and run a
//! session for each, until shutdown.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use super::SmtpTls;
use super::session::Session;
use super::stream::{Stream, handshake};
use crate::Sandbox;

/// How long open connections get to finish after shutdown before they are cut.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Pause after a failed accept, so running out of file descriptors does not spin the loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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

fn log_panic(joined: Result<(), tokio::task::JoinError>) {
    if let Err(error) = joined
        && error.is_panic()
    {
        error!(%error, "smtp session panicked");
    }
}
