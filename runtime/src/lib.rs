//! What every Fanout binary does at start and stop, written once.
//!
//! - [`config`]: the layered loader (defaults, an optional TOML file, `FANOUT_*` environment
//!   variables) and the `--config FILE` flag (`FANOUT_CONFIG_FILE`) every binary takes.
//! - [`shutdown_signal`]: the future `run(config, .., shutdown)` is handed, resolved by SIGINT
//!   or SIGTERM.
//!
//! Telemetry start-up is `fanout_telemetry::init`; the settings' types are in
//! `fanout_domain::config`, which does no I/O.

pub mod config;

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
