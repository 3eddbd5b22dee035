//! `make bench`: one run on the embedded stack (Temporal dev server, SQLite, the provider
//! sandbox) of three sections, each measuring Fanout against baselines in the same process:
//!
//! - [`fanout`]: one large fan-out (100,000 followers over email and in-app) against a naive
//!   design and a direct loop, and each channel against its sink's ceiling;
//! - [`transactional`]: one-recipient requests against a minimal workflow-per-request design
//!   and a direct loop, an open loop, and the noisy neighbour with priority and fairness on and
//!   off;
//! - [`observe`]: status reads of a running request against a finished one.
//!
//! `BENCH_SECTIONS` picks sections (all by default); each prints its tables, and
//! `bench-results/latest.json` gets the results of those that ran (the others keep theirs).
//! `BENCH_STORE=postgres` runs Fanout's store on PostgreSQL instead of SQLite: each section on
//! a new database on the server `BENCH_POSTGRES_URL` names (`make bench` starts one), with its
//! results in `bench-results/latest-postgres.json`.
//! Temporal runs file-backed, like `make up`'s, when `FANOUT_TEMPORAL_DB` names a file (which
//! `make bench` does), in memory otherwise.

mod api;
mod ceiling;
mod connection;
mod cpu;
mod direct;
mod fanout;
mod minimal;
mod naive;
mod observe;
mod sink;
mod tables;
mod transactional;
mod writes;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;

use anyhow::{Context, bail};
use fanout_tests::stack::{self, Shared};
use serde_json::{Value, json};
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions, Url};
use temporalio_sdk::runtime::PollerBehavior;
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

use crate::naive::{NaiveActivities, NaiveWorkflow};

fn env_or<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn spawn(binary: &Path, envs: &[(&str, String)], args: &[&str]) -> anyhow::Result<Child> {
    let mut cmd = Command::new(binary);
    cmd.args(args)
        .env(
            "RUST_LOG",
            std::env::var("BENCH_CHILD_LOG").unwrap_or_else(|_| "warn".to_owned()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn()
        .with_context(|| format!("starting {}", binary.display()))
}

/// Waits up to a minute for a Fanout API at `url` to answer `/healthz`.
async fn wait_for_api(http: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while http.get(format!("{url}/healthz")).send().await.is_err() {
        if std::time::Instant::now() > deadline {
            bail!("the api at {url} did not come up");
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    Ok(())
}

async fn temporal_client(shared: &Shared) -> anyhow::Result<Client> {
    let url = Url::from_str(&format!("http://{}", shared.temporal_address))?;
    let connection = Connection::connect(ConnectionOptions::new(url).build()).await?;
    Ok(Client::new(
        connection,
        ClientOptions::new("default").build(),
    )?)
}

/// Which store the run uses: `sqlite` (the default) or `postgres` (`BENCH_STORE`).
fn store_kind() -> anyhow::Result<&'static str> {
    match std::env::var("BENCH_STORE").as_deref() {
        Err(_) | Ok("sqlite") => Ok("sqlite"),
        Ok("postgres") => Ok("postgres"),
        Ok(other) => bail!("BENCH_STORE is {other:?}; use sqlite or postgres"),
    }
}

/// A new store for one section, named `name`: a SQLite file under `dir`, or a new database on
/// the PostgreSQL server `BENCH_POSTGRES_URL` names.
async fn store_url(dir: &Path, name: &str) -> anyhow::Result<String> {
    if store_kind()? == "postgres" {
        let admin = std::env::var("BENCH_POSTGRES_URL")
            .context("BENCH_STORE=postgres needs BENCH_POSTGRES_URL (make bench sets it)")?;
        return Ok(fanout_store::create_scratch_database(&admin, name).await?);
    }
    Ok(format!("sqlite://{}/{name}.db?mode=rwc", dir.display()))
}

/// The sections `BENCH_SECTIONS` (comma-separated) names: `fanout` (the mixed fan-out, the
/// naive baseline, the direct ceiling, the per-channel runs), `transactional` (see
/// [`transactional`]) and `observe` (see [`observe`]). All by default.
const SECTIONS: [&str; 3] = ["fanout", "transactional", "observe"];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let chosen = std::env::var("BENCH_SECTIONS").unwrap_or_else(|_| SECTIONS.join(","));
    let chosen: Vec<&str> = chosen.split(',').map(str::trim).collect();
    if let Some(unknown) = chosen.iter().find(|s| !SECTIONS.contains(s)) {
        bail!("BENCH_SECTIONS names {unknown:?}; the sections are {SECTIONS:?}");
    }
    let bin_dir = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .context("no directory for the bench binary")?;
    let shared = stack::shared()?;
    let dir = std::env::temp_dir().join(format!("fanout-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // A section that did not run keeps its last results in the file.
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench-results");
    std::fs::create_dir_all(&out)?;
    let latest = out.join(match store_kind()? {
        "postgres" => "latest-postgres.json",
        _ => "latest.json",
    });
    let mut results: serde_json::Map<String, Value> = std::fs::read_to_string(&latest)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    if chosen.contains(&"fanout") {
        let fanout = fanout::run(shared, &bin_dir, &dir).await?;
        tables::print_table(&fanout);
        tables::print_channel_table(&fanout);
        if let Value::Object(fanout) = fanout {
            results.extend(fanout);
        }
    }
    if chosen.contains(&"transactional") {
        let transactional = transactional::run(shared, &bin_dir, &dir).await?;
        transactional::print_table(&transactional);
        results.insert("transactional".into(), transactional);
    }
    if chosen.contains(&"observe") {
        let observe = observe::run(shared, &bin_dir, &dir).await?;
        observe::print_table(&observe);
        results.insert("observe".into(), observe);
    }
    std::fs::write(
        &latest,
        serde_json::to_string_pretty(&Value::Object(results))? + "\n",
    )?;
    println!("wrote {}", latest.display());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The 50th, 95th and 99th percentiles and the maximum of a sample.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Spread {
    pub(crate) p50: f64,
    pub(crate) p95: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

impl Spread {
    pub(crate) fn of(mut sample: Vec<f64>) -> Self {
        if sample.is_empty() {
            return Self::default();
        }
        sample.sort_by(f64::total_cmp);
        let at =
            |q: f64| sample[((q * sample.len() as f64).ceil() as usize).clamp(1, sample.len()) - 1];
        Self {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: sample[sample.len() - 1],
        }
    }

    pub(crate) fn to_json(self) -> Value {
        json!({"p50": round(self.p50), "p95": round(self.p95), "p99": round(self.p99), "max": round(self.max)})
    }
}

/// A baseline's worker: its workflow and activities.
enum BenchWorker {
    /// See [`naive`].
    Naive(Box<NaiveActivities>),
    /// See [`minimal`]; polls as Fanout's worker does by default, so the two compare like
    /// for like.
    Minimal(Box<minimal::MinimalActivities>),
}

/// Runs a baseline's worker on its own thread until the sender fires.
fn spawn_bench_worker(
    shared: &'static Shared,
    task_queue: String,
    which: BenchWorker,
) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("bench worker runtime");
        let result: anyhow::Result<()> = runtime.block_on(async move {
            let core = Runtime::from_current_tokio(Default::default())
                .map_err(|e| anyhow::anyhow!("runtime: {e}"))?;
            let client = temporal_client(shared).await?;
            let options = match which {
                BenchWorker::Naive(activities) => WorkerOptions::new(task_queue)
                    .register_workflow::<NaiveWorkflow>()?
                    .register_activities(*activities)
                    .build(),
                BenchWorker::Minimal(activities) => {
                    let pollers = fanout_worker::PollersConfig::default();
                    WorkerOptions::new(task_queue)
                        .register_workflow::<minimal::MinimalWorkflow>()?
                        .register_activities(*activities)
                        .workflow_task_poller_behavior(PollerBehavior::SimpleMaximum(
                            pollers.workflow_tasks,
                        ))
                        .nonsticky_to_sticky_poll_ratio(f32::from(pollers.shared_percent) / 100.0)
                        .activity_task_poller_behavior(PollerBehavior::SimpleMaximum(
                            pollers.activity_tasks,
                        ))
                        .build()
                }
            };
            let mut worker = Worker::new(&core, client, options)?;
            let shutdown = worker.shutdown_handle();
            let running = worker.run();
            tokio::pin!(running);
            tokio::select! {
                r = &mut running => r?,
                _ = stopped => { shutdown(); running.await?; }
            }
            Ok(())
        });
        if let Err(e) = result {
            eprintln!("bench worker stopped: {e:#}");
        }
    });
    stop
}
