//! `fanout dead-letters` lists what failed for good (`GET /v1/dead-letters`);
//! `fanout dead-letters redrive ID` delivers it again (`POST /v1/dead-letters/redrive`).

use clap::{Args, Subcommand};
use fanout_domain::Channel;
use reqwest::Method;
use serde_json::json;

use crate::client::{Api, Auth, Failure};
use crate::output::{self, Table};

/// `fanout dead-letters [redrive]`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DeadLettersArgs {
    /// `redrive`, or nothing to list.
    #[command(subcommand)]
    pub action: Option<DeadLetterAction>,
    /// Only this request's.
    #[arg(long, value_name = "REQUEST_ID")]
    pub request: Option<String>,
    /// Only this channel's.
    #[arg(long)]
    pub channel: Option<Channel>,
    /// Also list entries already re-driven.
    #[arg(long)]
    pub include_redriven: bool,
    /// Entries per page (1..1000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Start after this cursor (printed at the end of the previous page).
    #[arg(long)]
    pub cursor: Option<String>,
}

/// What to do with dead letters besides listing them.
#[derive(Debug, Subcommand)]
pub enum DeadLetterAction {
    /// Deliver a finished request's dead letters again, with the request's own content.
    Redrive {
        /// The request.
        request_id: String,
        /// Only this channel's.
        #[arg(long)]
        channel: Option<Channel>,
        /// Only these instances (repeat, or comma-separated).
        #[arg(long = "instance", value_delimiter = ',', value_name = "INSTANCE_ID")]
        instances: Vec<String>,
    },
}

/// Lists or re-drives.
pub async fn run(api: &Api, args: DeadLettersArgs, json: bool) -> Result<(), Failure> {
    match args.action {
        Some(DeadLetterAction::Redrive {
            request_id,
            channel,
            instances,
        }) => {
            let mut body = json!({"request_id": request_id});
            if let Some(channel) = channel {
                body["channel"] = json!(channel);
            }
            if !instances.is_empty() {
                body["instance_ids"] = json!(instances);
            }
            let answer = api
                .send(
                    Auth::Tenant,
                    Method::POST,
                    &["v1", "dead-letters", "redrive"],
                    Some(&body),
                )
                .await?;
            if json {
                output::print_json(&answer);
            } else if answer["instances"] == 0 {
                println!("no dead letter matched: nothing re-driven");
            } else {
                println!(
                    "re-driving {} dead letters of {request_id} (re-drive {}); follow: fanout status {request_id}",
                    output::cell(&answer["instances"]),
                    output::cell(&answer["redrive_id"])
                );
            }
        }
        None => {
            let page = api
                .get(
                    &["v1", "dead-letters"],
                    &[
                        ("request_id", args.request.clone()),
                        ("channel", args.channel.map(|c| c.as_str().to_owned())),
                        (
                            "include_redriven",
                            args.include_redriven.then(|| "true".to_owned()),
                        ),
                        ("limit", Some(args.limit.to_string())),
                        ("cursor", args.cursor.clone()),
                    ],
                )
                .await?;
            if json {
                output::print_json(&page);
            } else {
                print_list(&page);
            }
            output::next_page_hint(&page, "next_cursor", "--cursor");
        }
    }
    Ok(())
}

fn print_list(page: &serde_json::Value) {
    let mut table = Table::new(&[
        "REQUEST", "USER", "CHANNEL", "ATTEMPTS", "ERROR", "MESSAGE", "REDRIVEN",
    ]);
    for d in page["dead_letters"].as_array().into_iter().flatten() {
        table.row(vec![
            output::cell(&d["request_id"]),
            output::cell(&d["user_id"]),
            output::cell(&d["channel"]),
            output::cell(&d["attempts"]),
            output::cell(&d["error_code"]),
            output::cell(&d["error_message"]),
            if d["redriven_at_ms"].is_null() {
                "no"
            } else {
                "yes"
            }
            .to_owned(),
        ]);
    }
    if table.is_empty() {
        println!("no dead letters");
    } else {
        table.print();
    }
}
