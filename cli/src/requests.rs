//! A request once sent: `status` (`GET /v1/status/{id}`), `cancel` (`POST /v1/cancel`),
//! `pause`, `resume` and `rate` (`POST /v1/requests/{id}/...`), and `receipts`
//! (`GET /v1/receipts?request_id=`).

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Args;
use fanout_domain::Channel;
use fanout_domain::receipt::{ChannelCounts, RequestState};
use fanout_domain::timing::format_instant;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::client::{Api, Auth, Failure};
use crate::output::{self, Table};
use crate::watch;

/// A request's status as the CLI reads it (the API's `Status`; other fields are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct Status {
    /// The request.
    pub request_id: String,
    /// Where it stands.
    pub state: RequestState,
    /// Its template.
    #[serde(default)]
    pub template_id: String,
    /// `direct` or `tree`.
    #[serde(default)]
    pub path: String,
    /// Recipients in the audience snapshot.
    #[serde(default)]
    pub recipients: u64,
    /// Members left out (no such user).
    #[serde(default)]
    pub excluded: u64,
    /// Whether it is paused.
    #[serde(default)]
    pub paused: bool,
    /// Its rate cap.
    #[serde(default)]
    pub rate_per_second: Option<u32>,
    /// Audience pages.
    #[serde(default)]
    pub pages_total: u32,
    /// Pages done.
    #[serde(default)]
    pub pages_done: u32,
    /// Per channel counts.
    #[serde(default)]
    pub channels: BTreeMap<Channel, ChannelCounts>,
    /// Over all channels.
    #[serde(default)]
    pub totals: ChannelCounts,
    /// When it starts, if it was scheduled.
    #[serde(default)]
    pub run_at_ms: Option<i64>,
}

impl Status {
    /// Parses the API's answer.
    pub fn from_json(value: &Value) -> Result<Self, Failure> {
        serde_json::from_value(value.clone()).map_err(|e| {
            Failure::Unavailable(format!("the API's status answer is not one: {e}: {value}"))
        })
    }
}

/// `fanout status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The request id (as `send` printed it).
    pub request_id: String,
    /// Follow it live until it ends: a bar per channel on a terminal, one line per change
    /// otherwise (one JSON object per line with --json). Exits 0 when it completed, 4 when it
    /// ended failed or cancelled.
    #[arg(long, short)]
    pub watch: bool,
    /// How often --watch polls, in milliseconds.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    pub interval_ms: u64,
}

/// `pause` and `resume`: just the request.
#[derive(Debug, Args)]
pub struct RequestArg {
    /// The request id.
    pub request_id: String,
}

/// `fanout cancel`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct CancelArgs {
    /// The request id.
    pub request_id: Option<String>,
    /// Cancel the request triggered with this dedupe key instead.
    #[arg(long)]
    pub dedupe_key: Option<String>,
}

/// `fanout rate`.
#[derive(Debug, Args)]
pub struct RateArgs {
    /// The request id.
    pub request_id: String,
    /// Deliveries per second (at least 1), or `off` to lift the cap.
    #[arg(value_name = "PER_SECOND|off")]
    pub per_second: String,
}

/// `fanout reschedule`.
#[derive(Debug, Args)]
pub struct RescheduleArgs {
    /// The scheduled request's id.
    pub request_id: String,
    /// Its new time.
    #[command(flatten)]
    pub when: crate::send::When,
}

/// `fanout receipts`.
#[derive(Debug, Args)]
pub struct ReceiptsArgs {
    /// The request id.
    pub request_id: String,
    /// Receipts per page (1..1000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Start after this cursor (printed at the end of the previous page).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Follow every page to the end (with --json: one page object per line).
    #[arg(long)]
    pub all: bool,
}

/// Prints a request's status once, or watches it (see [`watch`]).
pub async fn status(api: &Api, args: StatusArgs, json: bool) -> Result<ExitCode, Failure> {
    if args.watch {
        return watch::watch(api, &args.request_id, args.interval_ms, json).await;
    }
    let value = fetch(api, &args.request_id).await?;
    if json {
        output::print_json(&value);
    } else {
        print_status(&Status::from_json(&value)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// `GET /v1/status/{id}`.
pub async fn fetch(api: &Api, request_id: &str) -> Result<Value, Failure> {
    api.get(&["v1", "status", request_id], &[]).await
}

fn print_status(s: &Status) {
    let mut state = s.state.as_str().to_owned();
    if s.paused {
        state.push_str(" (paused)");
    }
    if let Some(rate) = s.rate_per_second {
        state.push_str(&format!(", capped at {rate}/s"));
    }
    if let Some(at) = s.run_at_ms {
        let verb = if s.state == RequestState::Scheduled {
            "runs"
        } else {
            "ran"
        };
        state.push_str(&format!(", {verb} at {}", format_instant(at)));
    }
    println!("request    {}", s.request_id);
    println!("state      {state}");
    println!("template   {}", s.template_id);
    println!(
        "audience   {} recipients ({} excluded), {} path, pages {}/{}",
        s.recipients, s.excluded, s.path, s.pages_done, s.pages_total
    );
    let mut table = Table::new(&[
        "CHANNEL",
        "TOTAL",
        "DELIVERED",
        "FAILED",
        "SUPPRESSED",
        "CANCELLED",
        "PENDING",
        "DEFERRED",
    ]);
    let rows = s
        .channels
        .iter()
        .map(|(c, counts)| (c.as_str(), counts))
        .chain([("all", &s.totals)]);
    for (name, c) in rows {
        table.row(vec![
            name.to_owned(),
            c.total.to_string(),
            c.delivered.to_string(),
            c.failed.to_string(),
            c.suppressed.to_string(),
            c.cancelled.to_string(),
            c.pending.to_string(),
            c.deferred.to_string(),
        ]);
    }
    table.print();
}

/// `POST /v1/cancel` by request id or dedupe key.
pub async fn cancel(api: &Api, args: CancelArgs, json: bool) -> Result<(), Failure> {
    let body = match (&args.request_id, &args.dedupe_key) {
        (Some(id), _) => json!({"request_id": id}),
        (None, Some(key)) => json!({"dedupe_key": key}),
        (None, None) => return Err(Failure::Usage("name a request id or --dedupe-key".into())),
    };
    let answer = api
        .send(Auth::Tenant, Method::POST, &["v1", "cancel"], Some(&body))
        .await?;
    print_control(&answer, json);
    Ok(())
}

/// `POST /v1/requests/{id}/{action}` with no body (`pause`, `resume`).
pub async fn control(api: &Api, request_id: &str, action: &str, json: bool) -> Result<(), Failure> {
    let answer = api
        .send(
            Auth::Tenant,
            Method::POST,
            &["v1", "requests", request_id, action],
            None,
        )
        .await?;
    print_control(&answer, json);
    Ok(())
}

/// `POST /v1/requests/{id}/rate`.
pub async fn rate(api: &Api, args: RateArgs, json: bool) -> Result<(), Failure> {
    let per_second = parse_rate(&args.per_second)?;
    let answer = api
        .send(
            Auth::Tenant,
            Method::POST,
            &["v1", "requests", &args.request_id, "rate"],
            Some(&json!({"per_second": per_second})),
        )
        .await?;
    print_control(&answer, json);
    Ok(())
}

/// Moves a scheduled request (`POST /v1/requests/{id}/schedule`) and prints its new time.
pub async fn reschedule(api: &Api, args: RescheduleArgs, json: bool) -> Result<(), Failure> {
    if args.when.at.is_none() && args.when.delay.is_none() {
        return Err(Failure::Usage(
            "give the new time: --at INSTANT or --in SECONDS".into(),
        ));
    }
    let mut body = json!({});
    args.when.write(&mut body);
    let answer = api
        .send(
            Auth::Tenant,
            Method::POST,
            &["v1", "requests", &args.request_id, "schedule"],
            Some(&body),
        )
        .await?;
    if json {
        output::print_json(&answer);
    } else {
        let at = answer["run_at_ms"]
            .as_i64()
            .map_or_else(|| output::cell(&answer["run_at_ms"]), format_instant);
        println!("{} now runs at {at}", output::cell(&answer["request_id"]));
    }
    Ok(())
}

/// A rate argument: a positive count, or `off` / `none` for no cap.
pub fn parse_rate(raw: &str) -> Result<Option<u32>, Failure> {
    match raw {
        "off" | "none" => Ok(None),
        n => match n.parse::<u32>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(Failure::Usage(format!(
                "rate '{raw}' is neither a positive number of deliveries per second nor `off`"
            ))),
        },
    }
}

fn print_control(answer: &Value, json: bool) {
    if json {
        output::print_json(answer);
    } else {
        println!(
            "{} sent to {}",
            output::cell(&answer["action"]),
            output::cell(&answer["request_id"])
        );
    }
}

/// Lists a request's receipts: one page, or every page with `--all`.
pub async fn receipts(api: &Api, args: ReceiptsArgs, json: bool) -> Result<(), Failure> {
    let mut cursor = args.cursor.clone();
    loop {
        let page = api
            .get(
                &["v1", "receipts"],
                &[
                    ("request_id", Some(args.request_id.clone())),
                    ("limit", Some(args.limit.to_string())),
                    ("cursor", cursor.clone()),
                ],
            )
            .await?;
        match (json, args.all) {
            (true, false) => output::print_json(&page),
            (true, true) => println!("{page}"),
            (false, _) => print_receipts(&page),
        }
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if !args.all || cursor.is_none() {
            if !args.all {
                output::next_page_hint(&page, "next_cursor", "--cursor");
            }
            return Ok(());
        }
    }
}

fn print_receipts(page: &Value) {
    let mut table = Table::new(&[
        "USER",
        "CHANNEL",
        "STATUS",
        "ATTEMPTS",
        "LATENCY_MS",
        "ERROR",
        "PROVIDER_ID",
    ]);
    for r in page["receipts"].as_array().into_iter().flatten() {
        table.row(vec![
            output::cell(&r["user_id"]),
            output::cell(&r["channel"]),
            output::cell(&r["status"]),
            output::cell(&r["attempts"]),
            output::cell(&r["latency_ms"]),
            output::cell(&r["error_code"]),
            output::cell(&r["provider_message_id"]),
        ]);
    }
    if table.is_empty() {
        println!("no receipts yet");
    } else {
        table.print();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_is_a_positive_count_or_off() {
        assert_eq!(parse_rate("50").unwrap(), Some(50));
        assert_eq!(parse_rate("off").unwrap(), None);
        for bad in ["0", "-1", "fast", ""] {
            assert_eq!(parse_rate(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn the_apis_status_parses() {
        let value = json!({
            "request_id": "ntf-t-1", "state": "running", "template_id": "welcome",
            "source": "receipts", "path": "direct", "recipients": 2, "excluded": 0,
            "paused": false, "rate_per_second": null, "pages_total": 1, "pages_done": 0,
            "channels": {"email": {"total": 2, "delivered": 1, "failed": 0, "suppressed": 0,
                                   "cancelled": 0, "pending": 1}},
            "totals": {"total": 2, "delivered": 1, "failed": 0, "suppressed": 0, "cancelled": 0,
                       "pending": 1},
            "metadata": {}, "created_at_ms": 1
        });
        let s = Status::from_json(&value).unwrap();
        assert_eq!(s.state, RequestState::Running);
        assert_eq!(s.channels[&Channel::Email].pending, 1);
    }
}
