//! `fanout-sandbox`: runs the provider sandbox on loopback until SIGINT or SIGTERM.
//!
//! Listens on `FANOUT_SANDBOX_SMTP_ADDR` (default `127.0.0.1:2525`) for SMTP with STARTTLS,
//! `FANOUT_SANDBOX_SMTPS_ADDR` (default `127.0.0.1:4650`) for SMTP over implicit TLS,
//! `FANOUT_SANDBOX_HTTP_ADDR` (default `127.0.0.1:8025`) for the read-back API, web inbox and
//! FCM simulator, and `FANOUT_SANDBOX_APNS_ADDR` (default `127.0.0.1:2197`) for the APNs
//! simulator. With `FANOUT_SANDBOX_SMTP_USERNAME` and `FANOUT_SANDBOX_SMTP_PASSWORD` set, SMTP
//! requires AUTH.

use anyhow::Context as _;
use fanout_runtime::shutdown_signal;
use tokio::net::TcpListener;
use tracing::info;

const DEFAULT_SMTP_ADDR: &str = "127.0.0.1:2525";
const DEFAULT_SMTPS_ADDR: &str = "127.0.0.1:4650";
const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8025";
const DEFAULT_APNS_ADDR: &str = "127.0.0.1:2197";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = fanout_telemetry::init(
        "fanout-sandbox",
        fanout_telemetry::traces::Propagation::FromHeaders,
    )?;

    let smtp = bind("smtp", "FANOUT_SANDBOX_SMTP_ADDR", DEFAULT_SMTP_ADDR).await?;
    let smtps = bind("smtps", "FANOUT_SANDBOX_SMTPS_ADDR", DEFAULT_SMTPS_ADDR).await?;
    let http = bind("http", "FANOUT_SANDBOX_HTTP_ADDR", DEFAULT_HTTP_ADDR).await?;
    let apns = bind("apns", "FANOUT_SANDBOX_APNS_ADDR", DEFAULT_APNS_ADDR).await?;
    info!(
        smtp = %smtp.local_addr()?,
        smtps = %smtps.local_addr()?,
        http = %http.local_addr()?,
        apns = %apns.local_addr()?,
        "fanout-sandbox listening"
    );
    let options = fanout_sandbox::SmtpOptions::from_env(|name| std::env::var(name).ok());
    let listeners = fanout_sandbox::Listeners {
        smtp,
        smtps: Some(smtps),
        http,
        apns,
    };
    fanout_sandbox::serve_with(listeners, options, shutdown_signal()).await?;
    info!("fanout-sandbox stopped");
    Ok(())
}

/// Binds the `name` listener on the address in `variable`, or on `default` when it is unset.
async fn bind(name: &str, variable: &str, default: &str) -> anyhow::Result<TcpListener> {
    let addr = std::env::var(variable).unwrap_or_else(|_| default.to_owned());
    TcpListener::bind(&addr)
        .await
        .with_context(|| format!("failed to bind {name} listener on {addr}"))
}
