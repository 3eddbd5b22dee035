//! Delivery rate limits and circuit breakers end to end, measured from the SMTP sandbox's
//! arrival times: two workers on one task queue together hold a provider rate; a template
//! quota set through the API slows a running fan-out within a second; provider push-back halves
//! the shared provider rate and sustained success raises it again; an open breaker holds a
//! relay outage's deliveries (more rounds than a page may fail, none dead-lettered) and
//! releases them on recovery, each delivered once.

use std::collections::HashMap;
use std::time::Duration;

use fanout_activities::breaker::BreakerConfig;
use fanout_domain::RequestId;
use fanout_domain::receipt::DeliveryStatus;
use fanout_domain::retry::MAX_ROUNDS;
use fanout_sandbox::{FaultStage, NewFault};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, busiest_window, now_ms, poll, stack};

fn template() -> Value {
    json!({
        "name": "Post",
        "email": {"subject": "{{ data.actor }} posted", "text": "Hello {{ user.name }}."}
    })
}

impl TestApp {
    async fn notify_followers(&self) -> anyhow::Result<String> {
        let (status, body) = self
            .notify(&json!({
                "template_id": "post",
                "recipients_query": {"type": "followers", "of": "star"},
                "channel_prefs": ["email"],
                "data": {"actor": "Star"}
            }))
            .await?;
        anyhow::ensure!(status == StatusCode::ACCEPTED, "{status}: {body}");
        Ok(body["request_id"].as_str().unwrap_or_default().to_owned())
    }

    async fn put_quota(&self, template: &str, per_second: u32) -> anyhow::Result<Value> {
        let r = self
            .request(
                reqwest::Method::PUT,
                &format!("/v1/quotas/templates/{template}"),
            )
            .json(&json!({"per_second": per_second}))
            .send()
            .await?;
        crate::helpers::expect_status(r, StatusCode::OK).await
    }
}

#[test]
fn busiest_window_counts_a_sliding_window() {
    assert_eq!(busiest_window(&[], 1000), 0);
    assert_eq!(busiest_window(&[0, 10, 999, 1000, 1500, 1600], 1000), 4);
    assert_eq!(busiest_window(&[0, 1000, 2000], 1000), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_together_hold_a_provider_rate() -> anyhow::Result<()> {
    const RATE: u32 = 20;
    const RECIPIENTS: usize = 200;
    // One lease (a tenth of a second) per worker plus the bucket's own tenth: 3 x 2 tokens,
    // and a little for SMTP latency jitter between send and arrival.
    const SLACK: usize = 8;

    let app = TestApp::spawn_full("limits-two-workers", 20, 16, false).await?;
    let mut config = app.worker_config.clone();
    config.limits.providers.smtp = Some(RATE);
    let mut a = config.clone();
    a.smtp.hello_name = Some("worker-a.test".into());
    let mut b = config;
    b.smtp.hello_name = Some("worker-b.test".into());
    let _stop_a = stack::spawn_worker(a);
    let _stop_b = stack::spawn_worker(b);

    app.put_template("post", template()).await?;
    app.seed_followers("star", RECIPIENTS).await?;
    let request_id = app.notify_followers().await?;
    // 10 s at the provider rate; longer on a slow machine.
    app.wait_for_state(&request_id, "completed").await?;

    let arrivals = app.arrivals().await?;
    assert_eq!(arrivals.len(), RECIPIENTS);
    let times: Vec<u64> = arrivals.iter().map(|a| a.at_ms).collect();
    let span = times[times.len() - 1] - times[0];
    // 200 tokens at 20/s, less the tokens on hand at the start: at least 9.5 s.
    assert!(
        span >= 9_000,
        "200 deliveries at {RATE}/s took only {span} ms"
    );
    let busiest = busiest_window(&times, 1_000);
    eprintln!(
        "two workers at {RATE}/s: {RECIPIENTS} emails over {span} ms, busiest second {busiest}"
    );
    assert!(
        busiest <= RATE as usize + SLACK,
        "{busiest} arrivals within one second at {RATE}/s"
    );
    let mut per_worker: HashMap<String, usize> = HashMap::new();
    for a in &arrivals {
        *per_worker
            .entry(a.helo.clone().unwrap_or_default())
            .or_default() += 1;
    }
    assert!(
        per_worker.get("worker-a.test").is_some_and(|n| *n > 0)
            && per_worker.get("worker-b.test").is_some_and(|n| *n > 0),
        "both workers sent: {per_worker:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_template_quota_slows_a_running_fan_out_within_a_second() -> anyhow::Result<()> {
    const FAST: u32 = 40;
    const SLOW: u32 = 4;
    let app = TestApp::spawn_with("limits-template-quota", 20, 8).await?;
    app.put_template("post", template()).await?;
    app.seed_followers("star", 300).await?;
    app.put_quota("post", FAST).await?;
    let request_id = app.notify_followers().await?;

    // Let it run at the fast quota for a while, then cut the quota.
    poll(Duration::from_secs(120), "fast deliveries", || async {
        Ok((app.arrivals().await?.len() >= 60).then_some(()))
    })
    .await?;
    let cut = app.put_quota("post", SLOW).await?;
    let changed_at = now_ms();
    assert_eq!(
        cut["signalled"], 1,
        "the running request was signalled: {cut}"
    );

    // Watch four seconds, starting one second after the call returned, and until it has
    // delivered a second's worth at the new quota since (on a slow machine, that takes longer).
    let from = changed_at + 1_000;
    let until = from + 4_000;
    let arrivals = poll(
        Duration::from_secs(120),
        "the observation window",
        || async {
            let arrivals = app.arrivals().await?;
            let since = arrivals.iter().filter(|a| a.at_ms >= from).count();
            Ok((now_ms() > until + 500 && since >= SLOW as usize).then_some(arrivals))
        },
    )
    .await?;
    let before: Vec<u64> = arrivals
        .iter()
        .map(|a| a.at_ms)
        .filter(|t| *t < changed_at)
        .collect();
    let after: Vec<u64> = arrivals
        .iter()
        .map(|a| a.at_ms)
        .filter(|t| (from..until).contains(t))
        .collect();
    let busiest_before = busiest_window(&before, 1_000);
    eprintln!(
        "template quota {FAST}/s -> {SLOW}/s: busiest second before {busiest_before}, {} arrivals in the 4 s from 1 s after (busiest second {})",
        after.len(),
        busiest_window(&after, 1_000)
    );
    // Before the cut it ran faster than the slow quota allows, or the cut would prove nothing.
    assert!(
        busiest_before > SLOW as usize + 1,
        "it ran at most {busiest_before} a second before the change to {SLOW}/s"
    );
    assert!(
        after.len() <= 4 * SLOW as usize + 2,
        "{} arrivals in the 4 s from 1 s after the change to {SLOW}/s",
        after.len()
    );
    assert!(
        busiest_window(&after, 1_000) <= SLOW as usize + 1,
        "{after:?}"
    );

    // Lift the quota: the rest goes out at full speed and nobody gets two.
    let r = app
        .request(reqwest::Method::DELETE, "/v1/quotas/templates/post")
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    app.wait_for_state(&request_id, "completed").await?;
    let counts = app.emails_per_recipient().await?;
    assert_eq!(counts.len(), 300);
    assert!(counts.values().all(|n| *n == 1), "duplicates: {counts:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_breaker_holds_an_outage_and_releases_it_on_recovery() -> anyhow::Result<()> {
    const USERS: usize = 30;
    let app = TestApp::spawn_full("limits-breaker", 50, 8, false).await?;
    let mut config = app.worker_config.clone();
    config.limits.breaker = BreakerConfig {
        enabled: true,
        window_ms: 10_000,
        min_requests: 5,
        error_percent: 50,
        open_ms: 500,
        probes: 2,
    };
    let _stop = stack::spawn_worker(config);
    app.put_template("post", template()).await?;
    app.seed_followers("star", USERS).await?;
    let outage = app
        .smtp_fault(&NewFault {
            rcpt: format!("@{}.test", app.tenant),
            code: 451,
            message: "4.3.0 relay down".into(),
            stage: FaultStage::Rcpt,
            times: None,
            delay_ms: 0,
        })
        .await?;
    let request_id = app.notify_followers().await?;
    let request = RequestId::parse(&request_id)?;

    // The breaker opens after a handful of failures and then holds the rest; every open
    // interval two probes fail and it opens again. Wait until more probe rounds than a page
    // may fail rounds have passed.
    let first_failures = 8; // at most one round of sends in flight before it opened
    let probe_rounds = u64::from(MAX_ROUNDS) + 2;
    poll(Duration::from_secs(120), "held probe rounds", || async {
        let receipts = app
            .store
            .list_receipts(&app.tenant, &request, None, 1000)
            .await?;
        let attempts: u64 = receipts.iter().map(|r| u64::from(r.attempts)).sum();
        Ok((attempts >= first_failures + 2 * probe_rounds).then_some(receipts))
    })
    .await?;
    let during = app.status(&request_id).await?;
    assert_eq!(during["state"], "running", "{during}");
    let email = &during["channels"]["email"];
    assert_eq!(
        (&email["delivered"], &email["failed"]),
        (&json!(0), &json!(0))
    );
    let receipts = app
        .store
        .list_receipts(&app.tenant, &request, None, 1000)
        .await?;
    assert_eq!(receipts.len(), USERS);
    assert!(
        receipts.iter().all(|r| r.status == DeliveryStatus::Pending),
        "every instance is pending: {receipts:?}"
    );
    assert!(
        receipts
            .iter()
            .any(|r| r.error_code.as_deref() == Some("circuit_open")),
        "sends were held by the breaker"
    );
    let attempted = receipts.iter().filter(|r| r.attempts > 0).count();
    assert!(
        attempted < USERS,
        "the breaker kept some instances from being tried at all: {attempted} of {USERS} tried"
    );
    let (_, dead) = app
        .get(&format!("/v1/dead-letters?request_id={request_id}"))
        .await?;
    assert_eq!(dead["dead_letters"], json!([]), "{dead}");
    assert!(app.arrivals().await?.is_empty());

    // Recovery: the next probe succeeds, the breaker closes, everything goes out once.
    app.remove_smtp_fault(outage).await?;
    let done = app.wait_for_state(&request_id, "completed").await?;
    let email = &done["channels"]["email"];
    assert_eq!(
        (&email["delivered"], &email["failed"], &email["pending"]),
        (&json!(USERS), &json!(0), &json!(0)),
        "{done}"
    );
    let counts = app.emails_per_recipient().await?;
    assert_eq!(counts.len(), USERS);
    assert!(counts.values().all(|n| *n == 1), "duplicates: {counts:?}");
    let (_, dead) = app
        .get(&format!("/v1/dead-letters?request_id={request_id}"))
        .await?;
    assert_eq!(dead["dead_letters"], json!([]), "{dead}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_push_back_lowers_the_shared_rate_and_success_restores_it() -> anyhow::Result<()> {
    const CEILING: u32 = 50;
    const USERS: usize = 300;
    let app = TestApp::spawn_full("limits-aimd", 50, 16, false).await?;
    let mut config = app.worker_config.clone();
    config.limits.providers.smtp = Some(CEILING);
    let _stop = stack::spawn_worker(config);
    app.put_template("post", template()).await?;
    app.seed_followers("star", USERS).await?;
    // The relay refuses the first ten sends with 451, then recovers.
    app.smtp_fault(&NewFault {
        rcpt: format!("@{}.test", app.tenant),
        code: 451,
        message: "4.7.0 slow down".into(),
        stage: FaultStage::Rcpt,
        times: Some(10),
        delay_ms: 0,
    })
    .await?;
    let request_id = app.notify_followers().await?;

    // Sample the shared bucket while the request runs.
    let key = fanout_store::limits::provider_key("smtp");
    let seen = std::sync::Mutex::new((i64::MAX, 0)); // (lowest, latest) rate in force
    poll(Duration::from_secs(180), "request completed", || async {
        if let Some(bucket) = app.store.bucket(&key).await? {
            let mut seen = seen.lock().unwrap();
            *seen = (seen.0.min(bucket.rate_milli), bucket.rate_milli);
        }
        let s = app.status(&request_id).await?;
        Ok((s["state"] == "completed").then_some(()))
    })
    .await?;
    let (lowest, latest) = *seen.lock().unwrap();
    eprintln!("smtp rate in force: lowest {lowest}, at the end {latest} (milli-tokens/s)");
    let ceiling = i64::from(CEILING) * 1000;
    assert!(
        lowest <= ceiling / 2,
        "push-back halved the rate: lowest {lowest}"
    );
    assert!(
        latest > lowest,
        "sustained success raised it again: {lowest} -> {latest}"
    );
    let counts = app.emails_per_recipient().await?;
    assert_eq!(counts.len(), USERS);
    assert!(counts.values().all(|n| *n == 1), "duplicates: {counts:?}");
    Ok(())
}
