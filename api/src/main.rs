//! `fanout-api`: serves the REST API (`serve`, the default), seeds the demo tenant
//! (`seed-demo`, used by `make up`), or prints the OpenAPI document (`openapi`, used by
//! `make openapi`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use fanout_api::{Config, run, seed};
use fanout_runtime::config::ConfigFile;
use fanout_runtime::shutdown_signal;
use fanout_store::Store;

#[derive(Parser)]
#[command(about = "Fanout REST API")]
struct Cli {
    #[command(flatten)]
    config: ConfigFile,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Seed the demo tenant and print its settings as KEY=value lines.
    SeedDemo {
        /// Register this API key instead of generating one (keeps dev.env stable).
        #[arg(long)]
        api_key: Option<String>,
    },
    /// Print the OpenAPI document the code generates (what GET /openapi.json serves).
    Openapi {
        /// Write it to this file instead of stdout (`make openapi` writes api/openapi.json).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = fanout_telemetry::init(
        "fanout-api",
        fanout_telemetry::traces::Propagation::FromSpans,
    )?;
    let cli = Cli::parse();
    let config: Config = cli.config.load()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let listener = tokio::net::TcpListener::bind(&config.listen_addr).await?;
            run(config, listener, shutdown_signal()).await
        }
        Command::SeedDemo { api_key } => {
            let store = Store::connect(&config.store).await?;
            let seeded = seed::demo(&store, api_key).await?;
            let users: Vec<&str> = seeded.user_ids.iter().map(|u| u.as_str()).collect();
            println!("FANOUT_DEMO_TENANT_ID={}", seeded.tenant_id);
            println!("FANOUT_API_KEY={}", seeded.api_key);
            println!("FANOUT_DEMO_TEMPLATE_ID={}", seeded.template_id);
            println!("FANOUT_DEMO_USER_IDS={}", users.join(","));
            Ok(())
        }
        Command::Openapi { out } => {
            let document = fanout_api::openapi::json();
            match out {
                Some(path) => std::fs::write(&path, document)?,
                None => print!("{document}"),
            }
            Ok(())
        }
    }
}
