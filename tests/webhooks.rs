//! Outbound webhooks end to end: endpoints registered over the API, events written by real
//! deliveries, signed calls from the worker's dispatcher to the sandbox's receiver, which
//! verifies each signature with an implementation of its own.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::Context;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Setup, TestApp, WEBHOOK_BATCH, expect_status, poll};

const DELIVERY_EVENTS: [&str; 4] = [
    "delivery.delivered",
    "delivery.failed",
    "delivery.suppressed",
    "delivery.dead_lettered",
];

async fn app(name: &str) -> anyhow::Result<TestApp> {
    let app = TestApp::spawn_setup(
        name,
        Setup {
            webhooks: true,
            ..Setup::default()
        },
    )
    .await?;
    app.put_template(
        "note",
        json!({"name": "Note", "in_app": {"title": "Hi {{ user.name }}", "body": "{{ data.n }}"}}),
    )
    .await?;
    app.lift_ingest_quota().await?;
    Ok(app)
}

/// The URL of sandbox receiver `name`, unique to this test's tenant.
fn receiver_url(app: &TestApp, name: &str) -> String {
    format!("{}/hooks/{}", app.shared.sandbox_url, receiver(app, name))
}

fn receiver(app: &TestApp, name: &str) -> String {
    format!("{}-{name}", app.tenant)
}

/// Registers an endpoint for `events` at receiver `name`; returns its id and secret, and tells
/// the receiver the secret.
async fn register(app: &TestApp, name: &str, events: &[&str]) -> anyhow::Result<(String, String)> {
    let (status, body) = app
        .post(
            "/v1/webhooks",
            Some(json!({"url": receiver_url(app, name), "event_types": events})),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let secret = body["secret"].as_str().context("no secret")?.to_owned();
    set_receiver_secrets(app, name, &[&secret]).await?;
    Ok((
        body["endpoint_id"].as_str().context("no id")?.to_owned(),
        secret,
    ))
}

async fn set_receiver_secrets(app: &TestApp, name: &str, secrets: &[&str]) -> anyhow::Result<()> {
    let url = format!(
        "{}/api/webhooks/{}/secrets",
        app.shared.sandbox_url,
        receiver(app, name)
    );
    let r = reqwest::Client::new()
        .put(url)
        .json(&json!({"secrets": secrets}))
        .send()
        .await?;
    expect_status(r, StatusCode::NO_CONTENT).await.map(|_| ())
}

/// Every call receiver `name` got, oldest first.
async fn calls(app: &TestApp, name: &str) -> anyhow::Result<Vec<Value>> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let url = format!(
            "{}/api/webhooks/{}/calls?after_id={after}&limit=1000",
            app.shared.sandbox_url,
            receiver(app, name)
        );
        let page = expect_status(reqwest::get(url).await?, StatusCode::OK).await?;
        let batch = page["calls"].as_array().cloned().unwrap_or_default();
        let Some(last) = batch.last() else {
            return Ok(all);
        };
        after = last["id"].as_u64().context("call without id")?;
        all.extend(batch);
    }
}

/// The events of the calls answered 2xx, in arrival order.
fn taken_events(calls: &[Value]) -> Vec<Value> {
    calls
        .iter()
        .filter(|c| (200..300).contains(&c["answered"].as_u64().unwrap_or(0)))
        .flat_map(|c| c["body"]["events"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn distinct_ids(events: &[Value]) -> HashSet<String> {
    events
        .iter()
        .filter_map(|e| e["id"].as_str().map(str::to_owned))
        .collect()
}

/// Waits until receiver `name` has taken `n` distinct events and nothing more arrives for a
/// second; returns its calls.
async fn wait_for_events(app: &TestApp, name: &str, n: usize) -> anyhow::Result<Vec<Value>> {
    let last = std::sync::Mutex::new((usize::MAX, tokio::time::Instant::now()));
    poll(
        Duration::from_secs(180),
        &format!("{n} webhook events"),
        || async {
            let calls = calls(app, name).await?;
            let seen = distinct_ids(&taken_events(&calls)).len();
            anyhow::ensure!(seen <= n, "{seen} distinct events, more than {n}");
            let mut last = last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if seen != last.0 {
                *last = (seen, tokio::time::Instant::now());
                return Ok(None);
            }
            Ok((seen == n && last.1.elapsed() >= Duration::from_secs(1)).then_some(calls))
        },
    )
    .await
}

async fn notify_followers(app: &TestApp, key: &str) -> anyhow::Result<String> {
    let (status, body) = app
        .notify(&json!({
            "template_id": "note",
            "recipients_query": {"type": "followers", "of": "star"},
            "data": {"n": key},
            "dedupe_key": key,
        }))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["request_id"]
        .as_str()
        .context("no request id")?
        .to_owned();
    app.wait_for_state(&id, "completed").await?;
    Ok(id)
}

async fn endpoint(app: &TestApp, id: &str) -> anyhow::Result<Value> {
    let (status, body) = app.get(&format!("/v1/webhooks/{id}")).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    Ok(body)
}

/// A 2,000-recipient fan-out reaches one endpoint as one `delivery.delivered` event per
/// delivery, each id once, in full batches, every call's signature verified by the receiver.
#[tokio::test(flavor = "multi_thread")]
async fn a_fan_out_reaches_an_endpoint_once_per_delivery_in_signed_batches() -> anyhow::Result<()> {
    const N: usize = 2_000;
    let app = app("webhook-fanout").await?;
    app.seed_followers("star", N).await?;
    let (endpoint_id, _) = register(&app, "main", &DELIVERY_EVENTS).await?;
    let request_id = notify_followers(&app, "fanout-1").await?;

    let calls = wait_for_events(&app, "main", N).await?;
    let events = taken_events(&calls);
    assert_eq!(events.len(), N, "every event once, none twice");
    assert!(
        calls.iter().all(|c| c["verified"] == json!(true)),
        "every call verified: {:?}",
        calls.iter().map(|c| &c["verified"]).collect::<Vec<_>>()
    );
    let max_calls = N / WEBHOOK_BATCH as usize;
    assert!(
        calls.len() <= max_calls,
        "{} calls for {N} events, batches of {WEBHOOK_BATCH}: at most {max_calls}",
        calls.len()
    );
    let receipts = app.all_receipts(&request_id).await?;
    let instances: HashSet<&str> = receipts
        .iter()
        .filter_map(|r| r["instance_id"].as_str())
        .collect();
    let reported: HashSet<&str> = events
        .iter()
        .filter_map(|e| e["data"]["instance_id"].as_str())
        .collect();
    assert_eq!(reported, instances, "one event per delivery");
    let types: HashMap<&str, usize> = events.iter().fold(HashMap::new(), |mut m, e| {
        *m.entry(e["type"].as_str().unwrap_or("?")).or_default() += 1;
        m
    });
    assert_eq!(types, HashMap::from([("delivery.delivered", N)]));
    assert!(
        events
            .iter()
            .all(|e| e["data"]["request_id"] == json!(request_id)),
        "events name their request"
    );

    let seen = endpoint(&app, &endpoint_id).await?;
    assert_eq!(
        (
            &seen["delivered_events"],
            &seen["pending_events"],
            &seen["failures"]
        ),
        (&json!(N), &json!(0), &json!(0)),
        "{seen}"
    );
    Ok(())
}

/// An endpoint answering 500 for 30 s loses nothing: its events wait in the outbox, retried
/// with backoff, and all arrive once it recovers; its errors said why meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_failing_for_thirty_seconds_gets_everything_once_it_recovers()
-> anyhow::Result<()> {
    const N: usize = 200;
    let app = app("webhook-outage").await?;
    app.seed_followers("star", N).await?;
    let (endpoint_id, _) = register(&app, "down", &DELIVERY_EVENTS).await?;
    let sandbox = reqwest::Client::new();
    let fault = sandbox
        .post(format!("{}/api/webhooks/faults", app.shared.sandbox_url))
        .json(&json!({"receiver": receiver(&app, "down"), "status": 500}))
        .send()
        .await?;
    let fault_id = expect_status(fault, StatusCode::CREATED).await?["id"]
        .as_u64()
        .context("fault without id")?;
    let outage = tokio::time::Instant::now();
    notify_followers(&app, "outage-1").await?;

    let failing = poll(Duration::from_secs(120), "the endpoint failing", || async {
        let seen = endpoint(&app, &endpoint_id).await?;
        Ok((seen["failures"].as_u64().unwrap_or(0) >= 2).then_some(seen))
    })
    .await?;
    assert!(
        failing["last_errors"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("500"),
        "{failing}"
    );
    assert!(
        failing["pending_events"].as_u64().unwrap_or(0) > 0,
        "{failing}"
    );
    // The receiver stays down for 30 s, as the outage this test stands for does.
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(outage.elapsed())).await;
    let r = sandbox
        .delete(format!(
            "{}/api/webhooks/faults/{fault_id}",
            app.shared.sandbox_url
        ))
        .send()
        .await?;
    expect_status(r, StatusCode::NO_CONTENT).await?;

    let calls = wait_for_events(&app, "down", N).await?;
    assert!(
        calls.iter().any(|c| c["answered"] == json!(500)),
        "the outage was seen"
    );
    assert!(calls.iter().all(|c| c["verified"] == json!(true)));
    let recovered = endpoint(&app, &endpoint_id).await?;
    assert_eq!(
        (
            &recovered["pending_events"],
            &recovered["failures"],
            &recovered["enabled"]
        ),
        (&json!(0), &json!(0), &json!(true)),
        "{recovered}"
    );
    Ok(())
}

/// Private, loopback and link-local destinations are refused at registration, naming the
/// field; a redirect is not followed, and the endpoint's errors say so.
#[tokio::test(flavor = "multi_thread")]
async fn private_destinations_and_redirects_are_refused() -> anyhow::Result<()> {
    let app = app("webhook-ssrf").await?;
    let sandbox_port = app
        .shared
        .sandbox_url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .context("sandbox port")?;
    for (url, why) in [
        ("http://10.0.0.7/hook".to_owned(), "private"),
        (
            "http://169.254.169.254/latest/meta-data".to_owned(),
            "link-local",
        ),
        (
            format!("http://127.0.0.1:{}/hook", sandbox_port.wrapping_add(1)),
            "loopback",
        ),
        ("ftp://example.com/hook".to_owned(), "http or https"),
    ] {
        let (status, body) = app.post("/v1/webhooks", Some(json!({"url": url}))).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {body}");
        assert_eq!(body["error"]["field"], "url", "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{body}");
    }

    app.seed_followers("star", 5).await?;
    let (endpoint_id, _) = register(&app, "moved", &DELIVERY_EVENTS).await?;
    let fault = reqwest::Client::new()
        .post(format!("{}/api/webhooks/faults", app.shared.sandbox_url))
        .json(&json!({
            "receiver": receiver(&app, "moved"),
            "status": 302,
            "location": receiver_url(&app, "elsewhere"),
        }))
        .send()
        .await?;
    expect_status(fault, StatusCode::CREATED).await?;
    notify_followers(&app, "redirect-1").await?;
    let refused = poll(Duration::from_secs(120), "a refused redirect", || async {
        let seen = endpoint(&app, &endpoint_id).await?;
        let error = seen["last_errors"][0]["error"].as_str().unwrap_or_default();
        Ok(error.contains("redirect").then_some(seen))
    })
    .await?;
    assert!(
        refused["pending_events"].as_u64().unwrap_or(0) > 0,
        "kept: {refused}"
    );
    assert!(calls(&app, "elsewhere").await?.is_empty(), "not followed");
    Ok(())
}

/// After a rotation, calls verify with the new secret alone (each carries a signature per
/// secret during the grace period, so a receiver still on the old one verifies too).
#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_secret_is_honoured() -> anyhow::Result<()> {
    let app = app("webhook-rotation").await?;
    app.seed_followers("star", 3).await?;
    let (endpoint_id, old) = register(&app, "rotating", &["delivery.delivered"]).await?;
    notify_followers(&app, "before").await?;
    let before = wait_for_events(&app, "rotating", 3).await?.len();

    let (status, rotated) = app
        .post(&format!("/v1/webhooks/{endpoint_id}/rotate"), None)
        .await?;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new = rotated["secret"].as_str().context("no secret")?.to_owned();
    assert_ne!(new, old);
    set_receiver_secrets(&app, "rotating", &[&new]).await?;
    notify_followers(&app, "after").await?;
    let calls = wait_for_events(&app, "rotating", 6).await?;
    let after = &calls[before..];
    assert!(!after.is_empty(), "calls after the rotation");
    for call in after {
        assert_eq!(
            call["verified"],
            json!(true),
            "verified with the new secret: {call}"
        );
        let signatures = call["signature"].as_str().unwrap_or_default();
        assert_eq!(
            signatures.split(' ').count(),
            2,
            "one per secret: {signatures}"
        );
    }
    Ok(())
}
