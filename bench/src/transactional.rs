//! The "transactional" section: one-recipient email requests, the bulk of a notification
//! platform's traffic, against the designs a team could otherwise build, in the same run on
//! the same dev server and SMTP sandbox:
//!
//! - **Fanout**, through its API and a release worker (a list of one user takes the direct
//!   path), and Fanout's **tree** path for the same requests (an API with
//!   `FANOUT_DIRECT_MAX_RECIPIENTS=0`: the design before the direct path);
//! - **minimal Temporal**: one workflow and one activity per request, the same read, email and
//!   receipt (see [`crate::minimal`]);
//! - **direct**: the same work from a plain loop, no Temporal.
//!
//! Each burst keeps `BENCH_TX_CONCURRENCY` (32) requests in flight until `BENCH_TX_REQUESTS`
//! (2000; the tree `BENCH_TX_TREE_REQUESTS`, 300) are accepted. Trigger-to-delivered runs from
//! the client's clock just before it sends the request to the receipt's time in the store
//! (written when the sandbox accepted the email); nothing is timed by polling. Then an open
//! loop offers 10 requests/s for 30 s, and the noisy neighbour: tenant A sends
//! `BENCH_TX_NOISY_REQUESTS` (2000) as fast as the API takes them while tenant B sends 20
//! `high` ones, one every 0.5 s, once with priority and fairness on and once with them off
//! (an API with `FANOUT_SCHEDULING__PRIORITY=false` and `FANOUT_SCHEDULING__FAIRNESS=false`).
//!
//! How each request is timed and costed is in [`measure`]; this file drives the runs.

use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fanout_activities::EmailSender;
use fanout_domain::render::Compiled;
use fanout_domain::template::{ChannelContent, EmailContent, TemplateSpec};
use fanout_domain::user::User;
use fanout_domain::{DedupeKey, RequestId, TemplateId, TenantId, UserId};
use fanout_store::tenants::TenantSettings;
use fanout_store::{Store, now_ms};
use fanout_tests::stack::Shared;
use futures::StreamExt;
use serde_json::{Value, json};
use temporalio_client::{Client, WorkflowStartOptions};

mod measure;
mod neighbours;
mod table;

use measure::{Run, Sent, cost, delivered_at, sample};
use neighbours::noisy_neighbour;
pub use table::print_table;

use crate::minimal::{MinimalActivities, MinimalWorkflow};
use crate::naive::OneInput;
use crate::{env_or, spawn, temporal_client};

/// Sizes of the section's runs.
struct Sizes {
    requests: usize,
    tree_requests: usize,
    concurrency: usize,
    open_per_s: u64,
    open_seconds: u64,
    noisy_requests: usize,
    quiet_requests: usize,
    quiet_every: Duration,
}

impl Sizes {
    fn from_env() -> Self {
        Self {
            requests: env_or("BENCH_TX_REQUESTS", 2_000),
            tree_requests: env_or("BENCH_TX_TREE_REQUESTS", 300),
            concurrency: env_or("BENCH_TX_CONCURRENCY", 32),
            open_per_s: 10,
            open_seconds: 30,
            noisy_requests: env_or("BENCH_TX_NOISY_REQUESTS", 2_000),
            quiet_requests: 20,
            quiet_every: Duration::from_millis(500),
        }
    }
}

fn otp_email() -> EmailContent {
    EmailContent {
        subject: "Your sign-in code".into(),
        text: "Hi {{ user.name }}, your code is {{ data.code }}.".into(),
        html: None,
    }
}

/// A tenant of the section, with its key and `users` one-recipient audiences.
struct Tenant {
    id: TenantId,
    key: String,
    users: Vec<UserId>,
}

async fn seed_tenant(store: &Store, id: &str, users: usize) -> anyhow::Result<Tenant> {
    let tenant = TenantId::parse(id)?;
    store.upsert_tenant(&tenant, id).await?;
    let key = fanout_store::tenants::generate_api_key();
    store.add_api_key(&tenant, &key).await?;
    let spec = TemplateSpec::new(
        "Sign-in code",
        ChannelContent {
            email: Some(otp_email()),
            in_app: None,
            push: None,
        },
    );
    store
        .write_template(&tenant, &TemplateId::parse("otp")?, &spec)
        .await?;
    let seeded: Vec<User> = (0..users)
        .map(|i| crate::sink::email_user(&format!("{id}-{i:05}"), "tx.bench.test"))
        .collect::<anyhow::Result<_>>()?;
    store.upsert_users(&tenant, &seeded).await?;
    // A burst is the point here: lift the notify quota (the default is 50/s).
    let lifted = TenantSettings {
        ingest_per_second: Some(100_000),
        ingest_burst: Some(100_000),
        ..TenantSettings::default()
    };
    store.set_tenant_settings(&tenant, &lifted).await?;
    Ok(Tenant {
        id: tenant,
        key,
        users: seeded.into_iter().map(|u| u.user_id).collect(),
    })
}

/// One Fanout API process.
struct Api {
    http: reqwest::Client,
    url: String,
    process: Child,
}

impl Api {
    async fn start(bin_dir: &Path, env: &[(&'static str, String)]) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut env = env.to_vec();
        env.push(("FANOUT_LISTEN_ADDR", format!("127.0.0.1:{port}")));
        let process = spawn(&bin_dir.join("fanout-api"), &env, &["serve"])?;
        let api = Self {
            http: reqwest::Client::new(),
            url: format!("http://127.0.0.1:{port}"),
            process,
        };
        crate::wait_for_api(&api.http, &api.url).await?;
        Ok(api)
    }

    /// Sends one one-recipient request and returns it as sent.
    async fn notify(
        &self,
        tenant: &Tenant,
        user: &UserId,
        dedupe: String,
        priority: &str,
    ) -> anyhow::Result<Sent> {
        let body = json!({
            "template_id": "otp",
            "recipients_query": {"type": "users", "user_ids": [user]},
            "data": {"code": "493021"},
            "dedupe_key": dedupe,
            "priority": priority,
        });
        let sent_at_ms = now_ms();
        let started = Instant::now();
        let response = self
            .http
            .post(format!("{}/v1/notify", self.url))
            .bearer_auth(&tenant.key)
            .json(&body)
            .send()
            .await?;
        let accept_ms = started.elapsed().as_secs_f64() * 1000.0;
        let phases = response
            .headers()
            .get("server-timing")
            .and_then(|h| h.to_str().ok())
            .map(fanout_api::timing::parse)
            .unwrap_or_default();
        let status = response.status();
        let answer: Value = response.json().await?;
        anyhow::ensure!(status.as_u16() == 202, "notify answered {status}: {answer}");
        Ok(Sent {
            request_id: RequestId::parse(answer["request_id"].as_str().unwrap_or_default())?,
            sent_at_ms,
            accept_ms,
            phases,
        })
    }

    /// Sends `count` requests of `tenant` with `in_flight` at a time; returns them in order.
    async fn burst(
        &self,
        tenant: &Tenant,
        label: &str,
        count: usize,
        in_flight: usize,
    ) -> anyhow::Result<Vec<Sent>> {
        futures::stream::iter(0..count)
            .map(|i| {
                let user = &tenant.users[i % tenant.users.len()];
                self.notify(tenant, user, format!("{label}-{i}"), "normal")
            })
            .buffered(in_flight)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Sends `count` one-recipient requests of `tenant` through `send`, `in_flight` at a time, and
/// returns them as sent, in order; `accept_ms` is how long `send` took (for the minimal design,
/// the start; for the direct loop, the whole delivery). `label` keeps each run's ids apart.
async fn burst_through<F, Fut>(
    tenant: &Tenant,
    label: &str,
    count: usize,
    in_flight: usize,
    send: F,
) -> anyhow::Result<Vec<Sent>>
where
    F: Fn(OneInput) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    futures::stream::iter(0..count)
        .map(|i| {
            let send = &send;
            async move {
                let request_id =
                    DedupeKey::new(tenant.id.clone(), &format!("{label}-{i}"))?.request_id();
                let input = OneInput {
                    tenant_id: tenant.id.clone(),
                    request_id: request_id.clone(),
                    user_id: tenant.users[i % tenant.users.len()].clone(),
                    data: data(),
                };
                let sent_at_ms = now_ms();
                let started = Instant::now();
                send(input).await?;
                anyhow::Ok(Sent {
                    request_id,
                    sent_at_ms,
                    accept_ms: started.elapsed().as_secs_f64() * 1000.0,
                    phases: Vec::new(),
                })
            }
        })
        .buffered(in_flight)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// The minimal design's burst: one workflow started per request.
async fn minimal_burst(
    client: &Client,
    task_queue: &str,
    tenant: &Tenant,
    count: usize,
    in_flight: usize,
) -> anyhow::Result<Vec<Sent>> {
    burst_through(tenant, "minimal", count, in_flight, |input| async move {
        let options =
            WorkflowStartOptions::new(task_queue.to_owned(), input.request_id.to_string()).build();
        client
            .start_workflow(MinimalWorkflow, input, options)
            .await?;
        Ok(())
    })
    .await
}

/// The direct loop: the same read, send and receipt, no Temporal.
async fn direct_burst(
    work: &MinimalActivities,
    tenant: &Tenant,
    count: usize,
    in_flight: usize,
) -> anyhow::Result<Vec<Sent>> {
    burst_through(tenant, "direct", count, in_flight, |input| async move {
        work.deliver(&input).await
    })
    .await
}

fn data() -> serde_json::Map<String, Value> {
    let mut data = serde_json::Map::new();
    data.insert("code".into(), json!("493021"));
    data
}

/// Offers `per_s` requests a second for `seconds`, each on its own task, whatever the
/// answers' pace.
async fn open_loop(
    api: &Arc<Api>,
    tenant: &Arc<Tenant>,
    per_s: u64,
    seconds: u64,
) -> anyhow::Result<Vec<Sent>> {
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / per_s.max(1)));
    let mut tasks = Vec::new();
    for i in 0..(per_s * seconds) as usize {
        tick.tick().await;
        let (api, tenant) = (api.clone(), tenant.clone());
        tasks.push(tokio::spawn(async move {
            let user = tenant.users[i % tenant.users.len()].clone();
            api.notify(&tenant, &user, format!("open-{i}"), "normal")
                .await
        }));
    }
    let mut sent = Vec::with_capacity(tasks.len());
    for task in tasks {
        sent.push(task.await??);
    }
    Ok(sent)
}

/// Runs the section on `shared`'s dev server and sandbox, with Fanout's release binaries from
/// `bin_dir`; scratch files go under `dir`. Returns the section's results.
pub async fn run(shared: &'static Shared, bin_dir: &Path, dir: &Path) -> anyhow::Result<Value> {
    let sizes = Sizes::from_env();
    println!(
        "transactional: {} one-recipient email requests, {} in flight (tree path: {}); open loop {}/s for {}s; noisy neighbour {} + {} high",
        sizes.requests,
        sizes.concurrency,
        sizes.tree_requests,
        sizes.open_per_s,
        sizes.open_seconds,
        sizes.noisy_requests,
        sizes.quiet_requests
    );
    let store_url = crate::store_url(dir, "transactional").await?;
    let store = Store::connect(&fanout_domain::config::StoreConfig {
        url: store_url.clone(),
        max_connections: Some(8),
    })
    .await?;
    let users = sizes.requests.max(sizes.tree_requests).max(1);
    let tx = Arc::new(seed_tenant(&store, "tx", users).await?);
    let noisy = Arc::new(seed_tenant(&store, "noisy-a", sizes.noisy_requests.max(1)).await?);
    let quiet = Arc::new(seed_tenant(&store, "quiet-b", sizes.quiet_requests).await?);

    let task_queue = "bench-tx".to_owned();
    let common = vec![
        (
            "FANOUT_TEMPORAL__ADDRESS",
            format!("http://{}", shared.temporal_address),
        ),
        ("FANOUT_TEMPORAL__TASK_QUEUE", task_queue.clone()),
        ("FANOUT_STORE__URL", store_url.clone()),
    ];
    let mut worker_env = common.clone();
    worker_env.extend([
        ("FANOUT_SMTP__HOST", "127.0.0.1".to_owned()),
        ("FANOUT_SMTP__PORT", shared.smtp_addr.port().to_string()),
    ]);
    let mut worker = spawn(&bin_dir.join("fanout-worker"), &worker_env, &[])?;
    let api = Arc::new(Api::start(bin_dir, &common).await?);
    let mut tree_env = common.clone();
    tree_env.push(("FANOUT_DIRECT_MAX_RECIPIENTS", "0".to_owned()));
    let tree_api = Api::start(bin_dir, &tree_env).await?;
    let mut off_env = common.clone();
    off_env.extend([
        ("FANOUT_SCHEDULING__PRIORITY", "false".to_owned()),
        ("FANOUT_SCHEDULING__FAIRNESS", "false".to_owned()),
    ]);
    let off_api = Arc::new(Api::start(bin_dir, &off_env).await?);
    let client = temporal_client(shared).await?;

    // Warm up every process and the dev server's queue before anything is timed.
    let warm = api.burst(&tx, "warm", 20, 4).await?;
    delivered_at(&store, &tx.id, &warm).await?;

    let sent = api
        .burst(&tx, "fanout", sizes.requests, sizes.concurrency)
        .await?;
    let at = delivered_at(&store, &tx.id, &sent).await?;
    let fanout = Run::of(&sent, &at);
    let fanout_cost = cost(&client, &sample(&sent)).await?;
    println!(
        "transactional fanout (direct path): {:.1} completed/s; accept p95 {:.0} ms; trigger-to-delivered p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms; {:?}",
        fanout.completed_per_s,
        fanout.accept_ms.p95,
        fanout.delivered_ms.p50,
        fanout.delivered_ms.p95,
        fanout.delivered_ms.p99,
        fanout_cost
    );

    let sent = tree_api
        .burst(&tx, "tree", sizes.tree_requests, sizes.concurrency)
        .await?;
    let at = delivered_at(&store, &tx.id, &sent).await?;
    let tree = Run::of(&sent, &at);
    let tree_cost = cost(&client, &sample(&sent)).await?;
    println!(
        "transactional fanout (tree path): {:.1} completed/s; trigger-to-delivered p50 {:.0} ms, p95 {:.0} ms; {:?}",
        tree.completed_per_s, tree.delivered_ms.p50, tree.delivered_ms.p95, tree_cost
    );

    let smtp = fanout_activities::SmtpConfig {
        host: "127.0.0.1".into(),
        port: shared.smtp_addr.port(),
        ..fanout_activities::SmtpConfig::default()
    };
    let minimal_queue = "bench-tx-minimal".to_owned();
    let stop_minimal = crate::spawn_bench_worker(
        shared,
        minimal_queue.clone(),
        crate::BenchWorker::Minimal(Box::new(MinimalActivities {
            store: store.clone(),
            sender: EmailSender::new(&smtp)?,
            email: Compiled::email(&otp_email())?,
        })),
    );
    // Warmed up as Fanout was; the burst then runs as another tenant, so its request ids
    // (derived from tenant and key) are new.
    let warm = minimal_burst(&client, &minimal_queue, &tx, 20, 4).await?;
    delivered_at(&store, &tx.id, &warm).await?;
    let sent = minimal_burst(
        &client,
        &minimal_queue,
        &noisy,
        sizes.requests,
        sizes.concurrency,
    )
    .await?;
    let at = delivered_at(&store, &noisy.id, &sent).await?;
    let minimal = Run::of(&sent, &at);
    let minimal_cost = cost(&client, &sample(&sent)).await?;
    let _ = stop_minimal.send(());
    println!(
        "transactional minimal temporal: {:.1} completed/s; start p95 {:.0} ms; trigger-to-delivered p50 {:.0} ms, p95 {:.0} ms; {:?}",
        minimal.completed_per_s,
        minimal.accept_ms.p95,
        minimal.delivered_ms.p50,
        minimal.delivered_ms.p95,
        minimal_cost
    );

    let work = MinimalActivities {
        store: store.clone(),
        sender: EmailSender::new(&smtp)?,
        email: Compiled::email(&otp_email())?,
    };
    let sent = direct_burst(&work, &quiet, sizes.requests, sizes.concurrency).await?;
    let at = delivered_at(&store, &quiet.id, &sent).await?;
    let direct = Run::of(&sent, &at);
    println!(
        "transactional direct loop: {:.1} completed/s; p50 {:.0} ms, p95 {:.0} ms",
        direct.completed_per_s, direct.delivered_ms.p50, direct.delivered_ms.p95
    );

    let sent = open_loop(&api, &tx, sizes.open_per_s, sizes.open_seconds).await?;
    let at = delivered_at(&store, &tx.id, &sent).await?;
    let open = Run::of(&sent, &at);
    println!(
        "open loop {}/s for {}s: trigger-to-delivered p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        sizes.open_per_s,
        sizes.open_seconds,
        open.delivered_ms.p50,
        open.delivered_ms.p95,
        open.delivered_ms.p99,
        open.delivered_ms.max
    );

    let on = noisy_neighbour(&api, &store, &noisy, &quiet, &sizes, "on").await?;
    let off = noisy_neighbour(&off_api, &store, &noisy, &quiet, &sizes, "off").await?;

    drop(tree_api);
    let _ = worker.kill();
    let _ = worker.wait();
    Ok(json!({
        "requests": sizes.requests,
        "concurrency": sizes.concurrency,
        "fanout": fanout.to_json(),
        "fanout_cost": fanout_cost.to_json(),
        "tree": tree.to_json(),
        "tree_cost": tree_cost.to_json(),
        "minimal": minimal.to_json(),
        "minimal_cost": minimal_cost.to_json(),
        "direct": direct.to_json(),
        "fanout_over_minimal": (fanout.completed_per_s / minimal.completed_per_s * 100.0).round() / 100.0,
        "fanout_over_tree": (fanout.completed_per_s / tree.completed_per_s * 100.0).round() / 100.0,
        "fanout_over_direct": (fanout.completed_per_s / direct.completed_per_s * 100.0).round() / 100.0,
        "open_loop": {
            "per_s": sizes.open_per_s,
            "seconds": sizes.open_seconds,
            "trigger_to_delivered_ms": open.delivered_ms.to_json(),
        },
        "noisy_neighbour_on": on.to_json(),
        "noisy_neighbour_off": off.to_json(),
        "noisy_neighbour_p95_off_over_on": (off.quiet.p95 / on.quiet.p95.max(1.0) * 10.0).round() / 10.0,
    }))
}
