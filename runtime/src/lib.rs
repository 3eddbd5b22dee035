//! What every Fanout binary does at start and stop, written once.
//!
//! - [`config`]: the layered loader (defaults, an optional TOML file, `FANOUT_*` environment
//!   variables) and the `--config FILE` flag (`FANOUT_CONFIG_FILE`) every binary takes.
//! - [`shutdown_signal`]: the future `run(config, .., shutdown)` is handed, resolved by SIGINT
//!   or SIGTERM.
//! - [`now_ms`]: the wall clock in Unix milliseconds, the one timestamp Fanout stores and
//!   exchanges (workflows never call it: they use Temporal's workflow time).
//!
//! Telemetry start-up is `fanout_telemetry::init`; the settings' types are in
//! `fanout_domain::config`, which does no I/O.

use std::time::{SystemTime, UNIX_EPOCH};

pub mod config;

/// The current time in Unix milliseconds (`fanout_domain::UnixMillis`); 0 if the clock is set
/// before 1970.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM, whichever comes first. If the SIGTERM handler cannot
/// be installed, only SIGINT ends the process.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            let _ = ctrl_c.await;
            return;
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
