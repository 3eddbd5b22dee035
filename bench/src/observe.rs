//! Section "observe": what watching Fanout costs.
//!
//! - **Status reads.** 64 clients read the status of one running request (a fan-out to
//!   `BENCH_STATUS_RECIPIENTS` followers over email, capped at 200 deliveries a second so it
//!   runs throughout) for `BENCH_STATUS_SECONDS`, then the same request's once it is cancelled
//!   and its outcome recorded. The two rates come from the same API process in the same run:
//!   the running read counts from the store (shared for a second per API process), the
//!   finished one reads the recorded outcome.
//! - **Telemetry overhead.** The mixed fan-out (email + in-app) to `BENCH_OVERHEAD_RECIPIENTS`
//!   followers, in turns with telemetry off (`FANOUT_METRICS__ENABLED=false`, no trace
//!   exporter) and on (metrics recorded and scraped from the worker's listener every second,
//!   traces exported over OTLP/HTTP to the sandbox's receiver), `BENCH_OVERHEAD_ROUNDS` times
//!   each in the order off, on, on, off (which cancels the drift of a store that grows with
//!   every run), each run on a fresh worker and API: deliveries/s on against off.

use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fanout_domain::config::StoreConfig;
use fanout_domain::user::User;
use fanout_domain::{TemplateId, TenantId, UserId};
use fanout_store::Store;
use fanout_tests::stack::Shared;
use serde_json::{Value, json};

use crate::api::Api;
use crate::{Spread, env_or, round, spawn, wait_for_api};

/// Clients reading status at once (as a wall of dashboards would).
const CLIENTS: usize = 64;

/// The running request's delivery cap: slow enough that it outlasts the measurement.
const RUNNING_RATE: u32 = 200;

/// Reads of one request's status from [`CLIENTS`] clients for a while.
struct Reads {
    reads: u64,
    errors: u64,
    seconds: f64,
    latency_ms: Spread,
    /// The state every answer gave (they must all agree for the figure to mean anything).
    states: Vec<String>,
}

impl Reads {
    fn per_s(&self) -> f64 {
        self.reads as f64 / self.seconds
    }

    fn to_json(&self) -> Value {
        json!({
            "reads": self.reads,
            "errors": self.errors,
            "seconds": round(self.seconds),
            "reads_per_s": round(self.per_s()),
            "latency_ms": self.latency_ms.to_json(),
            "states": self.states,
        })
    }
}

/// [`CLIENTS`] clients reading the request's status back to back for `seconds`.
async fn hammer(api: &Arc<Api>, request_id: &str, seconds: f64) -> anyhow::Result<Reads> {
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let api = Arc::clone(api);
        let errors = Arc::clone(&errors);
        let request_id = request_id.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut states = Vec::new();
            while Instant::now() < until {
                let sent = Instant::now();
                match api.status(&request_id).await {
                    Ok(status) => {
                        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                        let state = status["state"].as_str().unwrap_or("").to_owned();
                        if !states.contains(&state) {
                            states.push(state);
                        }
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            (latencies, states)
        }));
    }
    let mut latencies = Vec::new();
    let mut states: Vec<String> = Vec::new();
    for task in tasks {
        let (l, s) = task.await?;
        latencies.extend(l);
        for state in s {
            if !states.contains(&state) {
                states.push(state);
            }
        }
    }
    Ok(Reads {
        reads: latencies.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
        latency_ms: Spread::of(latencies),
        states,
    })
}

/// Runs the section; returns its results.
pub async fn run(shared: &'static Shared, bin_dir: &Path, dir: &Path) -> anyhow::Result<Value> {
    let recipients: usize = env_or("BENCH_STATUS_RECIPIENTS", 20_000);
    let seconds: f64 = env_or("BENCH_STATUS_SECONDS", 5.0);
    println!(
        "observe bench: status reads by {CLIENTS} clients for {seconds}s, of a request to {recipients} followers capped at {RUNNING_RATE}/s, then of the same request finished; store on {}",
        crate::store_kind()?
    );
    let (store_url, key) = seeded_store(dir, "observe", recipients).await?;

    let (worker, api_process, api) =
        start_pair(shared, bin_dir, &store_url, "bench-observe", key, &[]).await?;
    let api = Arc::new(api);

    let request_id = api
        .notify_followers("post", "star", "bench-observe")
        .await?;
    api.post(
        &format!("/v1/requests/{request_id}/rate"),
        json!({"per_second": RUNNING_RATE}),
    )
    .await?;
    // Measure once it delivers under the cap, so the reads count real progress.
    api.wait_for(&request_id, "delivering", Duration::from_secs(60), |s| {
        s["rate_per_second"] == RUNNING_RATE && s["totals"]["delivered"].as_u64() > Some(0)
    })
    .await?;
    let running = hammer(&api, &request_id, seconds).await?;
    let during = api.status(&request_id).await?;
    anyhow::ensure!(
        running.states == ["running"] && during["state"] == "running",
        "the request did not run throughout the reads ({:?}); lower BENCH_STATUS_SECONDS or raise BENCH_STATUS_RECIPIENTS",
        running.states
    );
    api.post("/v1/cancel", json!({"request_id": request_id}))
        .await?;
    api.wait_for(&request_id, "cancelled", Duration::from_secs(60), |s| {
        s["state"] == "cancelled" && s["source"] == "store"
    })
    .await?;
    let finished = hammer(&api, &request_id, seconds).await?;
    stop(api_process);
    stop(worker);

    let overhead = overhead(shared, bin_dir, dir).await?;

    let ratio = finished.per_s() / running.per_s();
    println!(
        "observe status reads: running {:.0}/s (p50 {:.1} ms, p99 {:.1} ms), finished {:.0}/s (p50 {:.1} ms, p99 {:.1} ms): finished / running {ratio:.2} (target <= 2)",
        running.per_s(),
        running.latency_ms.p50,
        running.latency_ms.p99,
        finished.per_s(),
        finished.latency_ms.p50,
        finished.latency_ms.p99,
    );
    Ok(json!({
        "clients": CLIENTS,
        "recipients": recipients,
        "running_rate_per_s": RUNNING_RATE,
        "status_running": running.to_json(),
        "status_finished": finished.to_json(),
        "finished_over_running": (ratio * 100.0).round() / 100.0,
        "telemetry_overhead": overhead,
    }))
}

/// A worker and an API as release processes of their own, on `task_queue`, with `extra`
/// settings for both; the API as the bench drives it.
async fn start_pair(
    shared: &Shared,
    bin_dir: &Path,
    store_url: &str,
    task_queue: &str,
    key: String,
    extra: &[(&'static str, String)],
) -> anyhow::Result<(Child, Child, Api)> {
    let mut common = vec![
        (
            "FANOUT_TEMPORAL__ADDRESS",
            format!("http://{}", shared.temporal_address),
        ),
        ("FANOUT_TEMPORAL__TASK_QUEUE", task_queue.to_owned()),
        ("FANOUT_STORE__URL", store_url.to_owned()),
    ];
    common.extend_from_slice(extra);
    let mut worker_env = common.clone();
    worker_env.extend([
        ("FANOUT_SMTP__HOST", "127.0.0.1".to_owned()),
        ("FANOUT_SMTP__PORT", shared.smtp_addr.port().to_string()),
    ]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut api_env = common;
    api_env.push(("FANOUT_LISTEN_ADDR", format!("127.0.0.1:{port}")));
    let worker = spawn(&bin_dir.join("fanout-worker"), &worker_env, &[])?;
    let api_process = spawn(&bin_dir.join("fanout-api"), &api_env, &["serve"])?;
    let api = Api::new(format!("http://127.0.0.1:{port}"), key);
    wait_for_api(&api.http, &api.url).await?;
    Ok((worker, api_process, api))
}

/// Stops a process as an orchestrator would (SIGTERM: the worker drains, and both flush the
/// spans they have not exported), killing it if it has not exited within 10 s.
fn stop(mut process: Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &process.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = process.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = process.kill();
    let _ = process.wait();
}

/// A new store holding the tenant `observe` with its key, the `post` (email) and `mixed`
/// (email + in-app) templates, and `recipients` users following `star`; returns its URL and the
/// API key.
async fn seeded_store(
    dir: &Path,
    name: &str,
    recipients: usize,
) -> anyhow::Result<(String, String)> {
    let url = crate::store_url(dir, name).await?;
    let store = Store::connect(&StoreConfig {
        url: url.clone(),
        max_connections: Some(StoreConfig::WORKER_POOL),
    })
    .await?;
    let tenant = TenantId::parse("observe")?;
    store.upsert_tenant(&tenant, "Observe").await?;
    let key = fanout_store::tenants::generate_api_key();
    store.add_api_key(&tenant, &key).await?;
    for (id, in_app) in [
        ("post", None),
        ("mixed", Some(crate::fanout::in_app_content())),
    ] {
        store
            .upsert_template(
                &tenant,
                &TemplateId::parse(id)?,
                id,
                Some(crate::fanout::email_content()),
                in_app,
            )
            .await?;
    }
    let users: Vec<User> = (0..recipients)
        .map(|i| crate::sink::email_user(&format!("o{i:07}"), "observe.test"))
        .collect::<anyhow::Result<_>>()?;
    store.upsert_users(&tenant, &users).await?;
    let followers: Vec<UserId> = users.iter().map(|u| u.user_id.clone()).collect();
    store
        .add_followers(&tenant, &UserId::parse("star")?, &followers)
        .await?;
    Ok((url, key))
}

/// The mixed fan-out with telemetry off and on, in turns (see the module docs).
async fn overhead(shared: &Shared, bin_dir: &Path, dir: &Path) -> anyhow::Result<Value> {
    let recipients: usize = env_or("BENCH_OVERHEAD_RECIPIENTS", 40_000);
    let rounds: usize = env_or("BENCH_OVERHEAD_ROUNDS", 4);
    println!(
        "observe bench: telemetry overhead, {recipients} followers x 2 channels, {rounds} runs off and {rounds} on (off, on, on, off, ...), each on a new store"
    );

    let mut off = Vec::new();
    let mut on = Vec::new();
    let mut spans_before = received_spans(shared).await?;
    let mut spans = 0u64;
    for round in 0..rounds * 2 {
        // Off, on, on, off, ...: a steady drift of the machine cancels out, where off-on-off-on
        // would charge it to "on". Each run gets a store of its own, seeded before the clock
        // starts, so no run pays for the rows of the runs before it.
        let telemetry = matches!(round % 4, 1 | 2);
        let (store_url, key) = seeded_store(dir, &format!("overhead-{round}"), recipients).await?;
        let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let settings: Vec<(&'static str, String)> = if telemetry {
            vec![
                ("FANOUT_METRICS_ADDR", format!("127.0.0.1:{metrics_port}")),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", shared.sandbox_url.clone()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".to_owned()),
            ]
        } else {
            vec![("FANOUT_METRICS__ENABLED", "false".to_owned())]
        };
        let (worker, api_process, api) = start_pair(
            shared,
            bin_dir,
            &store_url,
            &format!("bench-overhead-{round}"),
            key,
            &settings,
        )
        .await?;
        // With telemetry on, a scraper reads the worker's metrics every second, as a
        // Prometheus with a short interval would.
        let scraper = telemetry.then(|| {
            let http = api.http.clone();
            tokio::spawn(async move {
                loop {
                    let _ = http
                        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
                        .send()
                        .await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            })
        });
        let started = Instant::now();
        let request_id = api
            .notify_followers("mixed", "star", &format!("bench-overhead-{round}"))
            .await?;
        let done = api
            .wait_for(&request_id, "completed", Duration::from_secs(600), |s| {
                s["state"] != "running"
            })
            .await?;
        let seconds = started.elapsed().as_secs_f64();
        if let Some(scraper) = scraper {
            scraper.abort();
        }
        let delivered = done["totals"]["delivered"].as_u64().unwrap_or(0);
        anyhow::ensure!(
            done["state"] == "completed" && delivered == 2 * recipients as u64,
            "the overhead run did not deliver everything: {done}"
        );
        // Stopping the worker flushes the spans it has not exported yet.
        stop(api_process);
        stop(worker);
        let per_s = delivered as f64 / seconds;
        println!(
            "observe overhead run {round} (telemetry {}): {per_s:.0} deliveries/s",
            if telemetry { "on" } else { "off" }
        );
        if telemetry {
            on.push(per_s);
            let now = received_spans(shared).await?;
            spans += now.saturating_sub(spans_before);
            spans_before = now;
        } else {
            off.push(per_s);
            spans_before = received_spans(shared).await?;
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (off_mean, on_mean) = (mean(&off), mean(&on));
    let cost = 1.0 - on_mean / off_mean;
    println!(
        "observe telemetry overhead: off {off_mean:.0}/s, on {on_mean:.0}/s ({:.1}% fewer deliveries/s; target < 5%); {spans} spans received",
        cost * 100.0
    );
    Ok(json!({
        "recipients": recipients,
        "runs_off_per_s": off.iter().map(|x| round(*x)).collect::<Vec<_>>(),
        "runs_on_per_s": on.iter().map(|x| round(*x)).collect::<Vec<_>>(),
        "off_per_s": round(off_mean),
        "on_per_s": round(on_mean),
        "cost_percent": round(cost * 100.0),
        "spans_per_run": spans / rounds.max(1) as u64,
    }))
}

/// Spans the sandbox's OTLP receiver has taken so far.
async fn received_spans(shared: &Shared) -> anyhow::Result<u64> {
    let list: Value = reqwest::get(format!("{}/api/spans?limit=0", shared.sandbox_url))
        .await?
        .json()
        .await?;
    Ok(list["received"].as_u64().unwrap_or(0))
}

/// Prints the section's table.
pub fn print_table(r: &Value) {
    println!();
    println!(
        "| status reads, {} clients | reads/s | p50 / p99 ms | errors |",
        r["clients"]
    );
    println!("|---|---|---|---|");
    for (label, key) in [
        ("running request (from the store)", "status_running"),
        ("finished request (recorded outcome)", "status_finished"),
    ] {
        let m = &r[key];
        println!(
            "| {label} | {} | {} / {} | {} |",
            m["reads_per_s"], m["latency_ms"]["p50"], m["latency_ms"]["p99"], m["errors"]
        );
    }
    println!(
        "finished / running: {} (target <= 2)",
        r["finished_over_running"]
    );
    let o = &r["telemetry_overhead"];
    println!();
    println!(
        "| mixed fan-out, {} followers x 2 channels | deliveries/s (mean) | runs |",
        o["recipients"]
    );
    println!("|---|---|---|");
    println!(
        "| telemetry off (no metrics recorded, no traces) | {} | {} |",
        o["off_per_s"], o["runs_off_per_s"]
    );
    println!(
        "| telemetry on (metrics scraped every 1 s, traces to OTLP) | {} | {} |",
        o["on_per_s"], o["runs_on_per_s"]
    );
    println!(
        "cost: {}% of deliveries/s (target < 5%); {} spans exported per run",
        o["cost_percent"], o["spans_per_run"]
    );
}
