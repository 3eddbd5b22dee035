//! The `fanout` command line: sends notifications, follows and controls requests, reads
//! receipts and dead letters, pushes templates and administers tenants, all over the REST API
//! (it never touches Temporal or the store).
//!
//! Layout: [`Cli`] is the whole command line (clap derive) and [`run`] dispatches it; one
//! module per command group ([`send`], [`requests`] with its live [`watch`], [`dead_letters`],
//! [`templates`], [`frequency_caps`], [`admin`]); [`settings`] finds the API's address and keys (flags, then
//! environment, then `.fanout/dev.env`); [`client`] is the one HTTP client and [`Failure`] the
//! one error, which decides the exit code; [`output`] prints JSON and plain tables.

pub mod admin;
pub mod client;
pub mod dead_letters;
pub mod frequency_caps;
pub mod output;
pub mod requests;
pub mod send;
pub mod settings;
pub mod templates;
pub mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use client::Failure;

use crate::client::Api;
use crate::settings::{Flags, Settings};

/// What each exit code means; printed by `fanout --help` and kept in step with
/// [`Failure::exit_code`].
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success (for `status --watch`: the request completed)
  1  the API refused the call (4xx): its code, message and field are printed on stderr
     (also a template file that is not JSON, located, before any call)
  2  usage error (bad arguments, no API key configured)
  3  the API is unreachable or failed (network error, timeout, 5xx)
  4  `status --watch` only: the request ended failed or cancelled

Settings: --api-url, --api-key, --admin-key; else FANOUT_API_URL, FANOUT_API_KEY,
FANOUT_ADMIN_KEY; else the same keys in .fanout/dev.env (written by `make up`; looked up
from the current directory upwards).";

/// The `fanout` command line.
#[derive(Debug, Parser)]
#[command(
    name = "fanout",
    version,
    about = "Send and follow Fanout notifications from the command line",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// Where the API and its keys are.
    #[command(flatten)]
    pub flags: Flags,
    /// Print the API's JSON answer (pretty) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Trigger a notification (POST /v1/notify), or preview it with --dry-run.
    Send(send::SendArgs),
    /// A request's state and per-channel counts; --watch follows it live until it ends.
    Status(requests::StatusArgs),
    /// Cancel a running request (POST /v1/cancel).
    Cancel(requests::CancelArgs),
    /// Pause a running request's deliveries.
    Pause(requests::RequestArg),
    /// Resume a paused request.
    Resume(requests::RequestArg),
    /// Cap a running request's deliveries per second, or lift the cap with `off`.
    Rate(requests::RateArgs),
    /// Move a scheduled request (sent with --at or --in) to another time, until it starts.
    Reschedule(requests::RescheduleArgs),
    /// A request's delivery receipts, one per (user, channel).
    Receipts(requests::ReceiptsArgs),
    /// Deliveries that failed for good; `redrive` delivers them again.
    #[command(name = "dead-letters")]
    DeadLetters(dead_letters::DeadLettersArgs),
    /// Templates: push one from a JSON file, read one.
    #[command(subcommand)]
    Templates(templates::TemplatesCommand),
    /// Frequency caps per template category: list (the default), set, delete.
    #[command(name = "frequency-caps")]
    FrequencyCaps {
        /// What to do [default: list].
        #[command(subcommand)]
        command: Option<frequency_caps::FrequencyCapsCommand>,
    },
    /// Operator commands (admin key): tenants and their API keys.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
}

/// Runs a parsed command line with the process's environment and working directory, prints
/// what went wrong on stderr, and returns the exit code [`EXIT_CODES`] describes.
pub async fn run(cli: Cli) -> ExitCode {
    let settings = Settings::resolve(&cli.flags, settings::dev_env_from_cwd().as_deref());
    match dispatch(cli, settings).await {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("{}", failure.report());
            ExitCode::from(failure.exit_code())
        }
    }
}

async fn dispatch(cli: Cli, settings: Settings) -> Result<ExitCode, Failure> {
    let api = Api::new(settings)?;
    let json = cli.json;
    match cli.command {
        Command::Send(args) => send::send(&api, args, json).await?,
        Command::Status(args) => return requests::status(&api, args, json).await,
        Command::Cancel(args) => requests::cancel(&api, args, json).await?,
        Command::Pause(arg) => requests::control(&api, &arg.request_id, "pause", json).await?,
        Command::Resume(arg) => requests::control(&api, &arg.request_id, "resume", json).await?,
        Command::Rate(args) => requests::rate(&api, args, json).await?,
        Command::Reschedule(args) => requests::reschedule(&api, args, json).await?,
        Command::Receipts(args) => requests::receipts(&api, args, json).await?,
        Command::DeadLetters(args) => dead_letters::run(&api, args, json).await?,
        Command::Templates(command) => templates::run(&api, command, json).await?,
        Command::FrequencyCaps { command } => frequency_caps::run(&api, command, json).await?,
        Command::Admin(command) => admin::run(&api, command, json).await?,
    }
    Ok(ExitCode::SUCCESS)
}
