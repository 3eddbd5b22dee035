//! The SMTP listeners: accept connections on the plain and the implicit-TLS socket and run a
//! session for each, until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error};

use super::SmtpTls;
use super::session::Session;
use super::stream::Stream;
use crate::Sandbox;
use crate::connections::{self, Connections};

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
    let mut sessions = Connections::new("smtp");
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            (stream, peer) = connections::accept(&listener, "smtp") => {
                let session = Session::new(Stream::Plain(stream), peer, sandbox.clone(), shutdown.clone());
                sessions.spawn(session.run());
            }
            (stream, peer, acceptor) = accept_tls(smtps.as_ref()) => {
                let (sandbox, shutdown) = (sandbox.clone(), shutdown.clone());
                // The handshake runs in the session's task so a slow client holds up no one.
                sessions.spawn(async move {
                    match Stream::handshake(&acceptor, stream).await {
                        Ok(stream) => Session::new(stream, peer, sandbox, shutdown).run().await,
                        Err(error) => debug!(%peer, %error, "smtps handshake failed"),
                    }
                });
            }
            () = sessions.reap() => {}
        }
    }
    // Sessions watch the same token and say goodbye with a 421 on their own.
    sessions.drain().await;
}

/// Accepts on the implicit-TLS listener, or waits forever when there is none.
async fn accept_tls(
    smtps: Option<&(TcpListener, TlsAcceptor)>,
) -> (TcpStream, SocketAddr, TlsAcceptor) {
    match smtps {
        Some((listener, acceptor)) => {
            let (stream, peer) = connections::accept(listener, "smtps").await;
            (stream, peer, acceptor.clone())
        }
        None => std::future::pending().await,
    }
}
