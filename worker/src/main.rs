//! `fanout-worker`: loads its configuration (`--config FILE` or `FANOUT_CONFIG_FILE`, then
//! `FANOUT_*` variables) and runs until SIGINT or SIGTERM.

use clap::Parser;
use fanout_runtime::config::ConfigFile;
use fanout_runtime::shutdown_signal;
use fanout_worker::{Config, run};

#[derive(Parser)]
#[command(about = "Fanout worker: runs the workflows and activities")]
struct Cli {
    #[command(flatten)]
    config: ConfigFile,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = fanout_telemetry::init(
        "fanout-worker",
        fanout_telemetry::traces::Propagation::FromHeaders,
    )?;
    let config: Config = Cli::parse().config.load()?;
    run(config, shutdown_signal()).await
}
