//! Section "observe": what watching Fanout costs.
//!
//! - **Status reads.** 64 clients read the status of one running request (a fan-out to
//!   `BENCH_STATUS_RECIPIENTS` followers over email, capped at 200 deliveries a second so it
//!   runs throughout) for `BENCH_STATUS_SECONDS`, then the same request's once it is cancelled
//!   and its outcome recorded. The two rates come from the same API process in the same run:
//!   the running read counts from the store (shared for a second per API process), the
//!   finished one reads the recorded outcome.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use fanout_domain::config::StoreConfig;
use fanout_domain::user::User;
use fanout_domain::{TemplateId, TenantId, UserId};
use fanout_store::Store;
use fanout_tests::stack::Shared;
use serde_json::{Value, json};

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

/// The API as this section drives it.
struct Api {
    http: reqwest::Client,
    url: String,
    key: String,
}

impl Api {
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        anyhow::ensure!(status.is_success(), "POST {path}: {status} {body}");
        Ok(body)
    }

    async fn status(&self, request_id: &str) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!("{}/v1/status/{request_id}", self.url))
            .bearer_auth(&self.key)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// Waits up to `timeout` for the request's status to satisfy `done`.
    async fn wait_for(
        &self,
        request_id: &str,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status(request_id).await?;
            if done(&status) {
                return Ok(status);
            }
            anyhow::ensure!(Instant::now() < deadline, "{what}: still {status}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// [`CLIENTS`] clients reading the request's status back to back for `seconds`.
    async fn hammer(self: &Arc<Self>, request_id: &str, seconds: f64) -> anyhow::Result<Reads> {
        let errors = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let until = started + Duration::from_secs_f64(seconds);
        let mut tasks = Vec::new();
        for _ in 0..CLIENTS {
            let api = Arc::clone(self);
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
}

/// Runs the section; returns its results.
pub async fn run(shared: &'static Shared, bin_dir: &Path, dir: &Path) -> anyhow::Result<Value> {
    let recipients: usize = env_or("BENCH_STATUS_RECIPIENTS", 20_000);
    let seconds: f64 = env_or("BENCH_STATUS_SECONDS", 5.0);
    println!(
        "observe bench: status reads by {CLIENTS} clients for {seconds}s, of a request to {recipients} followers capped at {RUNNING_RATE}/s, then of the same request finished; store on {}",
        crate::store_kind()?
    );
    let store_config = StoreConfig {
        url: crate::store_url(dir, "observe").await?,
        max_connections: Some(StoreConfig::WORKER_POOL),
    };
    let store = Store::connect(&store_config).await?;
    let tenant = TenantId::parse("observe")?;
    store.upsert_tenant(&tenant, "Observe").await?;
    let key = fanout_store::tenants::generate_api_key();
    store.add_api_key(&tenant, &key).await?;
    store
        .upsert_template(
            &tenant,
            &TemplateId::parse("post")?,
            "Post",
            Some(crate::fanout::email_content()),
            None,
        )
        .await?;
    let users: Vec<User> = (0..recipients)
        .map(|i| crate::sink::email_user(&format!("o{i:07}"), "observe.test"))
        .collect::<anyhow::Result<_>>()?;
    store.upsert_users(&tenant, &users).await?;
    let followers: Vec<UserId> = users.iter().map(|u| u.user_id.clone()).collect();
    store
        .add_followers(&tenant, &UserId::parse("star")?, &followers)
        .await?;

    let common = vec![
        (
            "FANOUT_TEMPORAL__ADDRESS",
            format!("http://{}", shared.temporal_address),
        ),
        ("FANOUT_TEMPORAL__TASK_QUEUE", "bench-observe".to_owned()),
        ("FANOUT_STORE__URL", store_config.url.clone()),
    ];
    let mut worker_env = common.clone();
    worker_env.extend([
        ("FANOUT_SMTP__HOST", "127.0.0.1".to_owned()),
        ("FANOUT_SMTP__PORT", shared.smtp_addr.port().to_string()),
    ]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut api_env = common.clone();
    api_env.push(("FANOUT_LISTEN_ADDR", format!("127.0.0.1:{port}")));
    let mut worker = spawn(&bin_dir.join("fanout-worker"), &worker_env, &[])?;
    let mut api_process = spawn(&bin_dir.join("fanout-api"), &api_env, &["serve"])?;
    let api = Arc::new(Api {
        http: reqwest::Client::new(),
        url: format!("http://127.0.0.1:{port}"),
        key,
    });
    wait_for_api(&api.http, &api.url).await?;

    let accepted = api
        .post(
            "/v1/notify",
            json!({
                "template_id": "post",
                "recipients_query": {"type": "followers", "of": "star"},
                "data": {"actor": "Star"},
                "dedupe_key": "bench-observe"
            }),
        )
        .await?;
    let request_id = accepted["request_id"]
        .as_str()
        .with_context(|| format!("notify failed: {accepted}"))?
        .to_owned();
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
    let running = api.hammer(&request_id, seconds).await?;
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
    let finished = api.hammer(&request_id, seconds).await?;
    let _ = worker.kill();
    let _ = api_process.kill();
    let _ = worker.wait();
    let _ = api_process.wait();

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
    }))
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
}
