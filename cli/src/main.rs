//! The `fanout` binary: parses the command line (clap exits 2 on a usage error) and runs it.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    fanout_cli::run(fanout_cli::Cli::parse()).await
}
