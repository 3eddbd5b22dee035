//! `fanout-worker`: loads its configuration and runs until SIGINT or SIGTERM.

use std::collections::HashMap;
use std::path::PathBuf;

use fanout_worker::{Config, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = fanout_telemetry::init(
        "fanout-worker",
        fanout_telemetry::traces::Propagation::FromHeaders,
    )?;
    let env: HashMap<String, String> = std::env::vars().collect();
    let file = env.get("FANOUT_CONFIG_FILE").map(PathBuf::from);
    let config: Config = fanout_domain::config::load(file.as_deref(), &env)?;
    run(config, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
