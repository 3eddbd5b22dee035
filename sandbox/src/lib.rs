//! Provider sandbox for development and tests: real provider protocols on loopback, with a
//! read-back API that shows what arrived.
//!
//! It stands in for a mail relay, for APNs and for FCM. It speaks SMTP (pipelining, 8BITMIME,
//! SMTPUTF8, SIZE, STARTTLS, optional implicit TLS and AUTH PLAIN/LOGIN, see [`SmtpOptions`]),
//! stores every accepted message in memory, and serves an HTTP API and a small web inbox for
//! reading them back. Tests can also inject SMTP failures per recipient. The [`apns`] simulator
//! speaks Apple's provider API over HTTP/2 and TLS on its own listener, with its read-back and
//! fault routes under `/api/apns/`; the [`fcm`] simulator serves Google's OAuth token endpoint
//! and FCM HTTP v1 `messages:send` on the HTTP listener, with routes under `/api/fcm/`.
//!
//! Layout, one module per provider plus what they share:
//! - `smtp`: the SMTP server, its command parser and the fault rules.
//! - `mailbox`: the bounded in-memory store of accepted emails (the newest
//!   [`MAILBOX_CAPACITY`] are kept) and the JSON types the API returns.
//! - `http`: the read-back API and the HTML inbox.
//! - [`apns`]: the APNs simulator, its credentials, fault rules and stored notifications.
//! - [`fcm`]: the FCM simulator (OAuth token endpoint and `messages:send`), faults and read-back.
//! - [`otlp`]: an OTLP/HTTP trace receiver with read-back.
//! - [`webhooks`]: a webhook receiver that verifies signatures, with read-back and faults.
//! - `fault`: the fault-rule set the providers share (order, `times`, rate windows) and its
//!   routes; each provider's rules say what they match and what they answer ([`RuleList`]).
//! - `connections`: what the SMTP and APNs servers share about client connections (accepting,
//!   the TLS handshake deadline, draining at shutdown).
//!
//! [`serve`] runs everything on listeners the caller binds, so tests use port 0:
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! let smtp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let apns = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let listeners = fanout_sandbox::Listeners { smtp, smtps: None, http, apns };
//! let server = tokio::spawn(fanout_sandbox::serve(listeners, async {
//!     let _ = stopped.await;
//! }));
//! // ... send mail, then GET /api/emails on the http listener ...
//! let _ = stop.send(());
//! server.await??;
//! # Ok(())
//! # }
//! ```
//!
//! HTTP routes:
//! - `GET /healthz`: `{"status":"ok"}`.
//! - `GET /api/emails?to=&after_id=&limit=`: [`EmailList`], oldest first; `to` matches an
//!   envelope recipient case-insensitively (`@domain` matches every address there); `limit` defaults to 100 and is capped at 1000.
//! - `GET /api/emails/count?to=`: [`EmailCount`].
//! - `GET /api/emails/{id}`: [`StoredEmail`]; `GET /api/emails/{id}/raw`: the message as
//!   received (`message/rfc822`).
//! - `DELETE /api/emails`: removes all emails (204); ids keep increasing.
//! - `GET /api/smtp/ca.pem`: the CA certificate that signed the SMTP server's certificate
//!   (generated at start-up, see [`SmtpTls`]).
//! - `GET|POST|DELETE /api/smtp/faults`, `DELETE /api/smtp/faults/{id}`: fault rules
//!   ([`FaultList`], [`NewFault`], [`Fault`]).
//! - `GET /` and `GET /emails/{id}`: the HTML inbox for a browser.
//! - `GET /api/apns/credentials` ([`apns::CredentialsInfo`]) and
//!   `GET /api/apns/credentials/{ca.pem,signing-key.p8,client-cert.pem,client-key.pem}`: what an
//!   APNs client needs to trust and authenticate to the simulator.
//! - `GET|DELETE /api/apns/notifications?token=&after_id=&limit=` ([`apns::NotificationList`]),
//!   `GET /api/apns/notifications/count?token=` ([`apns::NotificationCount`]).
//! - `GET|POST|DELETE /api/apns/faults`, `DELETE /api/apns/faults/{id}`: APNs fault rules
//!   ([`apns::FaultList`], [`apns::NewFault`], [`apns::Fault`]).
//! - `POST /v1/traces`: an OTLP/HTTP trace receiver (JSON encoding); `GET /api/spans?trace_id=
//!   &attribute=key=value&limit=` ([`otlp::SpanList`]) and `DELETE /api/spans` read back and
//!   forget what it received (see [`otlp`]).
//! - `POST /hooks/{name}`: a webhook receiver; `PUT /api/webhooks/{name}/secrets` sets the
//!   secrets its signatures verify against, `GET /api/webhooks/{name}/calls?after_id=&limit=`
//!   ([`webhooks::CallList`]) reads its calls back, `DELETE /api/webhooks` forgets them all;
//!   `GET|POST|DELETE /api/webhooks/faults`, `DELETE /api/webhooks/faults/{id}`: its fault
//!   rules ([`webhooks::WebhookFaultList`], [`webhooks::NewWebhookFault`]).
//!
//! Errors are JSON [`ErrorResponse`] bodies with a matching status code.

pub mod apns;
mod arrivals;
mod connections;
mod fault;
pub mod fcm;
mod http;
mod mailbox;
pub mod otlp;
mod smtp;
pub mod webhooks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use fault::RuleList;
pub use http::{Count, ErrorResponse};
pub use mailbox::{Address, CAPACITY as MAILBOX_CAPACITY, EmailCount, EmailList, StoredEmail};
pub use smtp::{
    Fault, FaultList, FaultStage, NewFault, SmtpCredentials, SmtpOptions, SmtpTls, TlsError,
};

use mailbox::Mailbox;
use smtp::Faults;

/// State shared by the protocol servers and the read-back API.
#[derive(Debug)]
pub(crate) struct Sandbox {
    /// Where the SMTP server listens, shown in the web inbox.
    pub smtp_addr: Option<SocketAddr>,
    pub mailbox: Mailbox,
    pub smtp_faults: Faults,
    pub fcm: fcm::Fcm,
    pub apns: apns::Apns,
    /// Spans received by the OTLP receiver.
    pub spans: otlp::Spans,
    /// The webhook receivers' calls, secrets and fault rules.
    pub webhooks: webhooks::Receivers,
    /// STARTTLS, implicit TLS and AUTH settings of the SMTP listeners.
    pub smtp_options: SmtpOptions,
}

impl Sandbox {
    fn new(smtp_addr: Option<SocketAddr>) -> Self {
        Self {
            smtp_addr,
            mailbox: Mailbox::new(MAILBOX_CAPACITY),
            smtp_faults: Faults::default(),
            fcm: fcm::Fcm::new(),
            apns: apns::Apns::default(),
            spans: otlp::Spans::default(),
            webhooks: webhooks::Receivers::default(),
            smtp_options: SmtpOptions::default(),
        }
    }
}

/// The sockets the sandbox serves, bound by the caller (port 0 in tests).
#[derive(Debug)]
pub struct Listeners {
    /// SMTP, plain text with STARTTLS.
    pub smtp: TcpListener,
    /// SMTP over implicit TLS (port 465 style), if wanted.
    pub smtps: Option<TcpListener>,
    /// The read-back API and web inbox.
    pub http: TcpListener,
    /// The APNs simulator: HTTP/2 over TLS.
    pub apns: TcpListener,
}

impl Listeners {
    /// Binds every listener, implicit TLS included, on a free loopback port.
    pub async fn bind_loopback() -> std::io::Result<Self> {
        let any = || TcpListener::bind("127.0.0.1:0");
        Ok(Self {
            smtp: any().await?,
            smtps: Some(any().await?),
            http: any().await?,
            apns: any().await?,
        })
    }
}

/// Serves each protocol on its listener until `shutdown` resolves.
///
/// Open SMTP connections are told `421` at shutdown and get a few seconds to close; HTTP
/// requests in flight are completed.
pub async fn serve(
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with(listeners, SmtpOptions::default(), shutdown).await
}

/// Like [`serve`], with SMTP security settings (credentials, certificate, STARTTLS on or off).
pub async fn serve_with(
    listeners: Listeners,
    smtp_options: SmtpOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let Listeners {
        smtp,
        smtps,
        http,
        apns,
    } = listeners;
    let mut sandbox = Sandbox::new(smtp.local_addr().ok());
    sandbox.smtp_options = smtp_options.with_certificate()?;
    sandbox.apns.addr = apns.local_addr().ok();
    let sandbox = Arc::new(sandbox);
    let token = CancellationToken::new();
    let trigger = token.clone();
    let watcher = tokio::spawn(async move {
        shutdown.await;
        trigger.cancel();
    });
    let smtp_server = async {
        smtp::run(smtp, smtps, sandbox.clone(), token.clone()).await;
        Ok(())
    };
    let http_server = async {
        axum::serve(http, http::router(sandbox.clone()))
            .with_graceful_shutdown(token.clone().cancelled_owned())
            .await
            .context("http server failed")
    };
    let apns_server = apns::run(apns, sandbox.clone(), token.clone());
    // If one server fails the others are dropped with it, which closes their connections.
    let result = tokio::try_join!(smtp_server, http_server, apns_server);
    watcher.abort();
    result.map(|((), (), ())| ())
}
