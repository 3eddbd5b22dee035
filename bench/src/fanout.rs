//! The "fanout" section of `make bench`, on the embedded stack (Temporal dev server, SQLite,
//! the provider sandbox):
//!
//! 1. Fanout itself: a followers fan-out over email and in-app, with the worker and the API as
//!    separate release processes (for their peak RSS), from `POST /v1/notify` to `completed`;
//!    Temporal history events across the whole workflow tree per delivery.
//! 2. The naive baseline: one activity per recipient (see [`crate::naive`]), on a smaller
//!    audience.
//! 3. The direct ceiling: the same audience through the same adapters from a loop, no Temporal
//!    (see [`crate::direct`]).
//! 4. Email over one SMTP connection: lettre's transport as published against Fanout's sender
//!    (see [`crate::connection`]).
//! 5. Per channel: Fanout on one channel at a time (email, in-app, push to users with one APNs
//!    device, push to users with one FCM device), each next to its sink's own ceiling, a minimal
//!    client blasting the same sink in the same run (see [`crate::ceiling`]).
//!
//! Sizes come from the environment: `BENCH_RECIPIENTS` (100000), `BENCH_NAIVE_RECIPIENTS`
//! (3000), `BENCH_PAGE_SIZE` (the platform default, 2000), `BENCH_CONCURRENCY` (32, sends in
//! flight per page and channel), `BENCH_CHANNEL_RECIPIENTS` (20000, recipients of each
//! per-channel run and sends of each ceiling).
//!
//! Over 600 lines as one file because [`run`] is one sequence over one seeded store, one worker
//! and one API whose results feed one table; cutting it along its five measurements is the
//! next step (issue 13).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use fanout_activities::apns::{ApnsClient, ApnsConfig};
use fanout_activities::fcm::{FcmClient, FcmConfig};
use fanout_activities::{EmailSender, SmtpConfig};
use fanout_domain::config::StoreConfig;
use fanout_domain::render::Compiled;
use fanout_domain::request::RecipientsQuery;
use fanout_domain::template::{
    ChannelContent, EmailContent, InAppContent, PushContent, TemplateSpec,
};
use fanout_domain::user::{Device, DeviceToken, Platform, User};
use fanout_domain::{DedupeKey, TemplateId, TenantId, UserId};
use fanout_store::Store;
use fanout_tests::stack::Shared;
use futures::StreamExt;
use serde_json::{Value, json};
use temporalio_client::{
    Client, WorkflowGetResultOptions, WorkflowListOptions, WorkflowStartOptions,
};

use crate::api::Api;
use crate::naive::{NaiveActivities, NaiveInput, NaiveWorkflow};
use crate::sink::Content;
use crate::{
    BenchWorker, ceiling, connection, cpu, direct, env_or, round, spawn, spawn_bench_worker,
    temporal_client, wait_for_api,
};

pub(crate) fn email_content() -> EmailContent {
    EmailContent {
        subject: "{{ data.actor }} posted".into(),
        text: "Hi {{ user.name }}, {{ data.actor }} posted something new.".into(),
        html: None,
    }
}

pub(crate) fn in_app_content() -> InAppContent {
    InAppContent {
        title: "{{ data.actor }} posted".into(),
        body: "Have a look, {{ user.name }}.".into(),
        action_url: None,
        payload: BTreeMap::new(),
    }
}

fn push_content() -> PushContent {
    PushContent {
        title: "{{ data.actor }} posted".into(),
        body: "Have a look, {{ user.name }}.".into(),
        data: [("thread".to_owned(), "{{ data.thread }}".to_owned())].into(),
    }
}

/// The worker's `FANOUT_*` settings for the sandbox's push simulators, as an operator would
/// set them.
fn push_env(apns: &ApnsConfig, fcm: &FcmConfig) -> anyhow::Result<Vec<(&'static str, String)>> {
    let path = |p: &Option<PathBuf>, what: &str| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .with_context(|| format!("the sandbox's push config has no {what}"))
    };
    Ok(vec![
        ("FANOUT_APNS__ENABLED", "true".to_owned()),
        ("FANOUT_APNS__ENDPOINT", apns.endpoint.clone()),
        ("FANOUT_APNS__TOPIC", apns.topic.clone()),
        ("FANOUT_APNS__AUTH__KEY_ID", apns.auth.key_id.clone()),
        ("FANOUT_APNS__AUTH__TEAM_ID", apns.auth.team_id.clone()),
        (
            "FANOUT_APNS__AUTH__KEY_PATH",
            path(&apns.auth.key_path, "apns key")?,
        ),
        ("FANOUT_APNS__CA_PATH", path(&apns.ca_path, "apns ca")?),
        ("FANOUT_FCM__ENABLED", "true".to_owned()),
        ("FANOUT_FCM__BASE_URL", fcm.base_url.clone()),
        (
            "FANOUT_FCM__SERVICE_ACCOUNT_PATH",
            path(&fcm.service_account_path, "fcm service account")?,
        ),
    ])
}

/// Users who can only be reached by push, each with one device on `platform`.
fn device_users(prefix: &str, platform: Platform, count: usize) -> anyhow::Result<Vec<User>> {
    (0..count)
        .map(|i| {
            let id = format!("{prefix}{i:07}");
            let token = match platform {
                Platform::Apns => format!("{i:064x}"),
                Platform::Fcm => format!("bench-{id}:APA91b"),
            };
            Ok(User {
                email: None,
                user_id: UserId::parse(&id)?,
                name: Some(id),
                locale: None,
                timezone: None,
                devices: vec![Device {
                    platform,
                    token: DeviceToken::parse(&token)?,
                }],
                quiet_hours: None,
            })
        })
        .collect()
}

/// One channel's run through Fanout beside its sink's ceiling, with the cores each used.
struct ChannelRun {
    name: &'static str,
    recipients: usize,
    fanout_s: f64,
    fanout_cpu: Value,
    ceiling: ceiling::Rate,
    ceiling_client: &'static str,
    ceiling_cpu: Value,
}

impl ChannelRun {
    fn to_json(&self) -> Value {
        let fanout_per_s = self.recipients as f64 / self.fanout_s;
        let ceiling_per_s = self.ceiling.per_s();
        json!({
            "recipients": self.recipients,
            "fanout_wall_s": round(self.fanout_s),
            "fanout_deliveries_per_s": round(fanout_per_s),
            "ceiling_sends": self.ceiling.count,
            "ceiling_per_s": round(ceiling_per_s),
            "fanout_over_ceiling": (fanout_per_s / ceiling_per_s * 1000.0).round() / 1000.0,
            "ceiling_client": self.ceiling_client,
            "fanout_cpu_cores": self.fanout_cpu,
            "ceiling_cpu_cores": self.ceiling_cpu,
        })
    }
}

/// Peak resident set size of a process, in MiB (VmHWM).
fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Sums history events over every execution (runs and children) whose id starts with `prefix`,
/// waiting for visibility to settle. Returns (events, executions, largest history).
async fn history_events(client: &Client, prefix: &str) -> anyhow::Result<(i64, usize, i64)> {
    let query = format!("WorkflowId STARTS_WITH '{prefix}'");
    let mut last = (-1, 0, 0);
    for _ in 0..20 {
        let mut stream = client.list_workflows(query.clone(), WorkflowListOptions::default());
        let (mut events, mut executions, mut largest) = (0i64, 0usize, 0i64);
        while let Some(execution) = stream.next().await {
            let length = execution?.history_length();
            events += length;
            executions += 1;
            largest = largest.max(length);
        }
        if (events, executions, largest) == last {
            return Ok(last);
        }
        last = (events, executions, largest);
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    Ok(last)
}

/// Runs the section; returns its results.
pub async fn run(shared: &'static Shared, bin_dir: &Path, dir: &Path) -> anyhow::Result<Value> {
    let recipients: usize = env_or("BENCH_RECIPIENTS", 100_000);
    let naive_recipients: usize = env_or("BENCH_NAIVE_RECIPIENTS", 3_000).min(recipients);
    let page_size: u32 = env_or(
        "BENCH_PAGE_SIZE",
        fanout_activities::DeliveryConfig::default().page_size,
    );
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 32);
    let channel_recipients: usize = env_or("BENCH_CHANNEL_RECIPIENTS", 20_000);

    // `make bench` points FANOUT_TEMPORAL_DB at a fresh file, as `make up` runs Temporal.
    let temporal_storage = if std::env::var_os("FANOUT_TEMPORAL_DB").is_some() {
        "sqlite file"
    } else {
        "memory"
    };
    println!(
        "fanout bench: {recipients} recipients x 2 channels (email, in_app), page size {page_size}, concurrency {concurrency}, temporal on {temporal_storage}, store on {}",
        crate::store_kind()?
    );
    // The direct loop and the naive activities stand in for a worker: a worker's pool.
    let store_config = StoreConfig {
        url: crate::store_url(dir, "bench").await?,
        max_connections: Some(StoreConfig::WORKER_POOL),
    };
    let store = Store::connect(&store_config).await?;

    // Seed: one tenant, its key, the template, the users and their follows.
    let tenant = TenantId::parse("bench")?;
    store.upsert_tenant(&tenant, "Bench").await?;
    let api_key = fanout_store::tenants::generate_api_key();
    store.add_api_key(&tenant, &api_key).await?;
    let template_id = TemplateId::parse("post")?;
    store
        .upsert_template(
            &tenant,
            &template_id,
            "Post",
            Some(email_content()),
            Some(in_app_content()),
        )
        .await?;
    let push_template = TemplateId::parse("push")?;
    let spec = TemplateSpec::new(
        "Push",
        ChannelContent {
            email: None,
            in_app: None,
            push: Some(push_content()),
        },
    );
    store.write_template(&tenant, &push_template, &spec).await?;
    let seeded = Instant::now();
    let users: Vec<User> = (0..recipients)
        .map(|i| crate::sink::email_user(&format!("u{i:07}"), "bench.test"))
        .collect::<anyhow::Result<_>>()?;
    store.upsert_users(&tenant, &users).await?;
    let star = UserId::parse("star")?;
    let followers: Vec<UserId> = users.iter().map(|u| u.user_id.clone()).collect();
    store.add_followers(&tenant, &star, &followers).await?;
    // One audience per channel run: followers of `star-<channel>`.
    let apns_users = device_users("a", Platform::Apns, channel_recipients)?;
    let fcm_users = device_users("f", Platform::Fcm, channel_recipients)?;
    store.upsert_users(&tenant, &apns_users).await?;
    store.upsert_users(&tenant, &fcm_users).await?;
    let ids = |users: &[User]| -> Vec<UserId> { users.iter().map(|u| u.user_id.clone()).collect() };
    let mail_recipients = channel_recipients.min(recipients);
    for (of, audience) in [
        ("star-email", followers[..mail_recipients].to_vec()),
        ("star-in-app", followers[..mail_recipients].to_vec()),
        ("star-apns", ids(&apns_users)),
        ("star-fcm", ids(&fcm_users)),
    ] {
        store
            .add_followers(&tenant, &UserId::parse(of)?, &audience)
            .await?;
    }
    println!(
        "seeded {} users and follows in {:.1}s",
        recipients + 2 * channel_recipients,
        seeded.elapsed().as_secs_f64()
    );

    // 1. Fanout, with the worker and API as release processes of their own.
    let task_queue = "bench".to_owned();
    let common = vec![
        (
            "FANOUT_TEMPORAL__ADDRESS",
            format!("http://{}", shared.temporal_address),
        ),
        ("FANOUT_TEMPORAL__TASK_QUEUE", task_queue.clone()),
        ("FANOUT_STORE__URL", store_config.url.clone()),
    ];
    let mut worker_env = common.clone();
    worker_env.extend([
        ("FANOUT_SMTP__HOST", "127.0.0.1".to_owned()),
        ("FANOUT_SMTP__PORT", shared.smtp_addr.port().to_string()),
        ("FANOUT_DELIVERY__PAGE_SIZE", page_size.to_string()),
        ("FANOUT_DELIVERY__CONCURRENCY", concurrency.to_string()),
    ]);
    worker_env.extend(push_env(&shared.apns, &shared.fcm)?);
    let api_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut api_env = common.clone();
    api_env.push(("FANOUT_LISTEN_ADDR", format!("127.0.0.1:{api_port}")));
    let mut worker = spawn(&bin_dir.join("fanout-worker"), &worker_env, &[])?;
    let mut api_process = spawn(&bin_dir.join("fanout-api"), &api_env, &["serve"])?;
    let api = Api::new(format!("http://127.0.0.1:{api_port}"), api_key);
    wait_for_api(&api.http, &api.url).await?;

    let watched = cpu::Watched {
        worker: Some(worker.id()),
        temporal: shared
            .temporal_address
            .rsplit_once(':')
            .and_then(|(_, port)| cpu::temporal_pid(port)),
    };
    let before = cpu::Snapshot::take(watched);
    let writes_before = crate::writes::counters(&store_config.url).await?;
    let (request_id, status, wall_s) = api
        .fan_out(json!({
            "template_id": "post",
            "recipients_query": {"type": "followers", "of": "star"},
            "data": {"actor": "Star"},
            "dedupe_key": "bench-fanout"
        }))
        .await?;
    let mixed_cpu = cpu::Snapshot::take(watched).since(&before);
    let deliveries: u64 = ["email", "in_app"]
        .iter()
        .map(|c| status["channels"][c]["delivered"].as_u64().unwrap_or(0))
        .sum();
    anyhow::ensure!(
        status["state"] == "completed" && deliveries == 2 * recipients as u64,
        "fan-out did not deliver everything: {status}"
    );
    let store_writes =
        crate::writes::per_delivery(&store_config.url, &request_id, deliveries, writes_before)
            .await?;
    // Read now: the peaks of the run above, not of the per-channel runs below.
    let worker_rss = peak_rss_mb(worker.id());
    let api_rss = peak_rss_mb(api_process.id());

    // 5a. One channel at a time through Fanout, on the same worker and API. First one
    // recipient, for the fixed cost of a request (start, resolve, one page, finalize) that
    // every run below pays once.
    store
        .add_followers(&tenant, &UserId::parse("star-one")?, &followers[..1])
        .await?;
    let (_, status, one_recipient_s) = api
        .fan_out(json!({
            "template_id": "post",
            "recipients_query": {"type": "followers", "of": "star-one"},
            "channel_prefs": ["email"],
            "data": {"actor": "Star"},
            "dedupe_key": "bench-channel-one"
        }))
        .await?;
    anyhow::ensure!(
        status["state"] == "completed",
        "the one-recipient run failed: {status}"
    );
    println!("fanout one recipient: {one_recipient_s:.2}s from trigger to completed");
    let mut fanout_channel_s = Vec::new();
    for (name, of, template, channel, count) in [
        ("email", "star-email", "post", "email", mail_recipients),
        ("in_app", "star-in-app", "post", "in_app", mail_recipients),
        ("push_apns", "star-apns", "push", "push", channel_recipients),
        ("push_fcm", "star-fcm", "push", "push", channel_recipients),
    ] {
        let before = cpu::Snapshot::take(watched);
        let (_, status, seconds) = api
            .fan_out(json!({
                "template_id": template,
                "recipients_query": {"type": "followers", "of": of},
                "channel_prefs": [channel],
                "data": {"actor": "Star", "thread": "bench"},
                "dedupe_key": format!("bench-channel-{name}")
            }))
            .await?;
        let delivered = status["channels"][channel]["delivered"]
            .as_u64()
            .unwrap_or(0);
        anyhow::ensure!(
            status["state"] == "completed" && delivered == count as u64,
            "the {name} run did not deliver everything: {status}"
        );
        println!(
            "fanout {name}: {delivered} deliveries in {seconds:.1}s = {:.0}/s",
            delivered as f64 / seconds
        );
        let used = cpu::Snapshot::take(watched).since(&before);
        fanout_channel_s.push((name, count, seconds, used));
    }
    let _ = worker.kill();
    let _ = api_process.kill();
    let _ = (worker.wait(), api_process.wait());

    let client = temporal_client(shared).await?;
    let (events, executions, largest_history) = history_events(&client, &request_id).await?;
    let deliveries_per_s = deliveries as f64 / wall_s;
    println!(
        "fanout: {deliveries} deliveries in {wall_s:.1}s = {deliveries_per_s:.0}/s; {events} history events in {executions} executions (largest {largest_history})"
    );

    // 2. The naive baseline, in this process. Each run gets its own sender and store pool:
    // pooled connections belong to the runtime that opened them (a PostgreSQL connection
    // opened in the naive worker's runtime dies with it).
    let smtp = SmtpConfig {
        host: "127.0.0.1".into(),
        port: shared.smtp_addr.port(),
        ..SmtpConfig::default()
    };
    let content = || -> anyhow::Result<Content> {
        Ok(Content {
            email: Compiled::email(&email_content())?,
            in_app: Compiled::in_app(&in_app_content())?,
        })
    };
    let naive_queue = "bench-naive".to_owned();
    let stop_naive = spawn_bench_worker(
        shared,
        naive_queue.clone(),
        BenchWorker::Naive(Box::new(NaiveActivities {
            store: Store::connect(&store_config).await?,
            sender: EmailSender::new(&smtp)?,
            content: content()?,
        })),
    );
    let naive_key = DedupeKey::new(tenant.clone(), "bench-naive")?;
    let data: serde_json::Map<String, Value> = json!({"actor": "Star"})
        .as_object()
        .cloned()
        .unwrap_or_default();
    let naive_started = Instant::now();
    let handle = client
        .start_workflow(
            NaiveWorkflow,
            NaiveInput {
                tenant_id: tenant.clone(),
                request_id: naive_key.request_id(),
                user_ids: followers[..naive_recipients].to_vec(),
                data: data.clone(),
                concurrency: 8 * concurrency,
            },
            WorkflowStartOptions::new(naive_queue, naive_key.request_id().to_string()).build(),
        )
        .await?;
    let naive_deliveries = handle
        .get_result(WorkflowGetResultOptions::default())
        .await?;
    let naive_s = naive_started.elapsed().as_secs_f64();
    let _ = stop_naive.send(());
    let naive_per_s = naive_deliveries as f64 / naive_s;
    let (naive_events, _, _) = history_events(&client, naive_key.request_id().as_str()).await?;
    println!(
        "naive: {naive_deliveries} deliveries in {naive_s:.1}s = {naive_per_s:.0}/s; {naive_events} history events"
    );

    // 3. The direct ceiling on the full audience.
    let direct_key = DedupeKey::new(tenant.clone(), "bench-direct")?;
    let (direct_deliveries, direct_s) = direct::run(
        &store,
        &EmailSender::new(&smtp)?,
        &content()?,
        &tenant,
        &direct_key.request_id(),
        &RecipientsQuery::Followers { of: star },
        &data,
        page_size,
        concurrency,
    )
    .await?;
    let direct_per_s = direct_deliveries as f64 / direct_s;

    // 4. One SMTP connection, sequential sends: lettre as published against Fanout's sender.
    let lettre_per_connection = connection::lettre_as_published(smtp.port, 200).await?;
    let fanout_per_connection = connection::fanout_sender(&EmailSender::new(&smtp)?, 2_000).await?;
    println!(
        "one connection: lettre as published {lettre_per_connection:.0} msg/s, fanout {fanout_per_connection:.0} msg/s"
    );
    println!("direct: {direct_deliveries} deliveries in {direct_s:.1}s = {direct_per_s:.0}/s");

    // 5b. Each sink's ceiling, with as many sends in flight as Fanout keeps on one channel:
    // `WINDOW` pages (fewer if the audience has fewer), each with `concurrency` sends.
    let pages = channel_recipients.div_ceil(page_size.max(1) as usize);
    let in_flight = pages.clamp(1, direct::WINDOW) * concurrency;
    let watched = cpu::Watched {
        worker: None,
        ..watched
    };
    let mut ceilings = Vec::new();
    let before = cpu::Snapshot::take(watched);
    let rate = ceiling::smtp(&EmailSender::new(&smtp)?, mail_recipients, in_flight).await?;
    ceilings.push((
        rate,
        "fanout's pooled smtp sender (lettre client, TCP_NODELAY) -> smtp sandbox",
        cpu::Snapshot::take(watched).since(&before),
    ));
    let before = cpu::Snapshot::take(watched);
    let rate = ceiling::in_app(
        &store,
        &tenant,
        mail_recipients,
        ceiling::FLUSH_BATCH,
        pages.clamp(1, direct::WINDOW),
        true,
    )
    .await?;
    ceilings.push((
        rate,
        "store alone: record_deliveries in fanout's flush batches, one writer per page in flight",
        cpu::Snapshot::take(watched).since(&before),
    ));
    let apns = ApnsClient::new(&shared.apns)?;
    let before = cpu::Snapshot::take(watched);
    let rate = ceiling::apns(&apns, channel_recipients, in_flight).await?;
    ceilings.push((
        rate,
        "ApnsClient alone (http/2, tls, provider token) -> apns simulator",
        cpu::Snapshot::take(watched).since(&before),
    ));
    let fcm = FcmClient::new(&shared.fcm)?;
    let before = cpu::Snapshot::take(watched);
    let rate = ceiling::fcm(&fcm, channel_recipients, in_flight).await?;
    ceilings.push((
        rate,
        "FcmClient alone (http v1, oauth) -> fcm simulator",
        cpu::Snapshot::take(watched).since(&before),
    ));
    // Not a channel: the receipt alone, which every channel's delivery writes, to tell the
    // store's share of each channel's cost.
    let before = cpu::Snapshot::take(watched);
    let receipts_only = ceiling::in_app(
        &store,
        &tenant,
        mail_recipients,
        ceiling::FLUSH_BATCH,
        pages.clamp(1, direct::WINDOW),
        false,
    )
    .await?;
    let receipts_only_cpu = cpu::Snapshot::take(watched).since(&before);
    println!(
        "store, receipts alone: {} in {:.1}s = {:.0}/s",
        receipts_only.count,
        receipts_only.seconds,
        receipts_only.per_s()
    );
    let mut per_channel = serde_json::Map::new();
    for ((name, count, seconds, fanout_cpu), (rate, client, ceiling_cpu)) in
        fanout_channel_s.into_iter().zip(ceilings)
    {
        let run = ChannelRun {
            name,
            recipients: count,
            fanout_s: seconds,
            fanout_cpu,
            ceiling: rate,
            ceiling_client: client,
            ceiling_cpu,
        };
        println!(
            "ceiling {}: {} sends in {:.1}s = {:.0}/s",
            run.name,
            rate.count,
            rate.seconds,
            rate.per_s()
        );
        per_channel.insert(run.name.to_owned(), run.to_json());
    }

    let results = json!({
        "temporal_storage": temporal_storage,
        "recipients": recipients,
        "channels": ["email", "in_app"],
        "page_size": page_size,
        "concurrency": concurrency,
        "wall_s": round(wall_s),
        "deliveries": deliveries,
        "deliveries_per_s": round(deliveries_per_s),
        "history_events": events,
        "workflow_executions": executions,
        "largest_history": largest_history,
        "history_events_per_delivery": (events as f64 / deliveries as f64 * 10_000.0).round() / 10_000.0,
        "worker_peak_rss_mb": round(worker_rss),
        "api_peak_rss_mb": round(api_rss),
        "naive_recipients": naive_recipients,
        "naive_deliveries_per_s": round(naive_per_s),
        "naive_history_events_per_delivery": (naive_events as f64 / naive_deliveries as f64 * 1000.0).round() / 1000.0,
        "direct_deliveries_per_s": round(direct_per_s),
        "email_per_connection_lettre_per_s": round(lettre_per_connection),
        "email_per_connection_fanout_per_s": round(fanout_per_connection),
        "email_per_connection_ratio": round(fanout_per_connection / lettre_per_connection),
        "speedup_vs_naive": round(deliveries_per_s / naive_per_s),
        "fraction_of_direct": (deliveries_per_s / direct_per_s * 1000.0).round() / 1000.0,
        "mixed_cpu_cores": mixed_cpu,
        "store_writes": store_writes,
        "channel_recipients": channel_recipients,
        "one_recipient_latency_s": (one_recipient_s * 100.0).round() / 100.0,
        "store_receipts_only_per_s": round(receipts_only.per_s()),
        "store_receipts_only_cpu_cores": receipts_only_cpu,
        "ceiling_in_flight": in_flight,
        "per_channel": per_channel,
    });
    Ok(results)
}
