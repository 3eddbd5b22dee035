//! `fanout frequency-caps [list]`, `fanout frequency-caps set CATEGORY --max N --period
//! SECONDS` and `fanout frequency-caps delete CATEGORY`: the tenant's caps on how many
//! deliveries of a template category one user gets per channel and window
//! (`/v1/frequency-caps`). The API checks the bounds and names the field it refuses.

use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use crate::client::{Api, Auth, Failure};
use crate::output::{self, Table};

/// `fanout frequency-caps ...`.
#[derive(Debug, Subcommand)]
pub enum FrequencyCapsCommand {
    /// List the tenant's caps (the default).
    List,
    /// Set or replace a category's cap.
    Set {
        /// The template category.
        category: String,
        /// Deliveries allowed per user, channel and window (1 to 10,000).
        #[arg(long)]
        max: u32,
        /// The window in seconds (60 to 2,678,400); windows are aligned to the Unix epoch.
        #[arg(long = "period", value_name = "SECONDS")]
        period_seconds: u32,
    },
    /// Remove a category's cap.
    Delete {
        /// The template category.
        category: String,
    },
}

/// Runs a frequency-caps command (`list` when none is given).
pub async fn run(
    api: &Api,
    command: Option<FrequencyCapsCommand>,
    json: bool,
) -> Result<(), Failure> {
    match command.unwrap_or(FrequencyCapsCommand::List) {
        FrequencyCapsCommand::List => {
            let page = api.get(&["v1", "frequency-caps"], &[]).await?;
            if json {
                output::print_json(&page);
                return Ok(());
            }
            let mut table = Table::new(&["CATEGORY", "MAX", "PERIOD_SECONDS"]);
            for cap in page["frequency_caps"].as_array().into_iter().flatten() {
                table.row(vec![
                    output::cell(&cap["category"]),
                    output::cell(&cap["max"]),
                    output::cell(&cap["period_seconds"]),
                ]);
            }
            table.print();
        }
        FrequencyCapsCommand::Set {
            category,
            max,
            period_seconds,
        } => {
            let body = json!({"max": max, "period_seconds": period_seconds});
            let cap = api
                .send(
                    Auth::Tenant,
                    Method::PUT,
                    &["v1", "frequency-caps", &category],
                    Some(&body),
                )
                .await?;
            if json {
                output::print_json(&cap);
            } else {
                println!(
                    "frequency cap on {category}: {} per {} s per user and channel",
                    output::cell(&cap["max"]),
                    output::cell(&cap["period_seconds"])
                );
            }
        }
        FrequencyCapsCommand::Delete { category } => {
            api.send(
                Auth::Tenant,
                Method::DELETE,
                &["v1", "frequency-caps", &category],
                None,
            )
            .await?;
            if !json {
                println!("frequency cap on {category} removed");
            }
        }
    }
    Ok(())
}
