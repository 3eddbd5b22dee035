//! What the SMTP and APNs servers share about their client connections: accepting them, the
//! TLS handshake deadline, and the set of connection tasks that is drained at shutdown.

use std::future::{Future, pending};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinError, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{error, warn};

/// Pause after a failed accept, so running out of file descriptors does not spin the loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How long a client gets to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long open connections get to finish after shutdown before they are cut.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Accepts the next connection on `listener`, retrying after a pause when accepting fails.
///
/// The socket gets `TCP_NODELAY`, so replies are not held back by Nagle's algorithm.
pub(crate) async fn accept(
    listener: &TcpListener,
    protocol: &'static str,
) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if let Err(error) = stream.set_nodelay(true) {
                    warn!(protocol, %peer, %error, "failed to set tcp_nodelay");
                }
                return (stream, peer);
            }
            Err(error) => {
                warn!(protocol, %error, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Runs the server side of a TLS handshake on `stream`, within [`HANDSHAKE_TIMEOUT`].
pub(crate) async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
) -> io::Result<TlsStream<TcpStream>> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "tls handshake timed out",
            ))
        })
}

/// The tasks serving one server's connections.
#[derive(Debug)]
pub(crate) struct Connections {
    tasks: JoinSet<()>,
    protocol: &'static str,
}

impl Connections {
    pub fn new(protocol: &'static str) -> Self {
        Self {
            tasks: JoinSet::new(),
            protocol,
        }
    }

    /// Serves a connection on a task of its own.
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Waits until a connection task ends and logs it if it panicked; while none runs, never
    /// resolves (an accept loop polls this next to its listener).
    pub async fn reap(&mut self) {
        match self.tasks.join_next().await {
            Some(joined) => log_panic(self.protocol, joined),
            None => pending().await,
        }
    }

    /// Gives the open connections [`SHUTDOWN_GRACE`] to finish, then cuts the rest. The
    /// connections watch the shutdown token themselves and say goodbye on their own.
    pub async fn drain(mut self) {
        let protocol = self.protocol;
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while let Some(joined) = self.tasks.join_next().await {
                log_panic(protocol, joined);
            }
        })
        .await;
        if drained.is_err() {
            warn!(
                protocol,
                open = self.tasks.len(),
                "connections cut at shutdown"
            );
            self.tasks.shutdown().await;
        }
    }
}

fn log_panic(protocol: &'static str, joined: Result<(), JoinError>) {
    if let Err(error) = joined
        && error.is_panic()
    {
        error!(protocol, %error, "connection panicked");
    }
}
