//! The ingest quota end to end: a burst of triggers against a tenant with a small quota is
//! partly refused with 429 and `Retry-After`, a client that honours `Retry-After` gets every
//! trigger in, and every accepted request completes with its messages delivered once.

use std::collections::HashMap;
use std::time::Duration;

use fanout_store::tenants::TenantSettings;
use futures::future::join_all;
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// Sends one trigger; returns the status, `Retry-After` in seconds (if any) and the body.
async fn trigger(app: &TestApp, key: &str) -> anyhow::Result<(StatusCode, Option<u64>, Value)> {
    let response = app
        .request(Method::POST, "/v1/notify")
        .json(&json!({
            "template_id": "ping",
            "recipients_query": {"type": "users", "user_ids": ["ann", "ben"]},
            "data": {"n": key},
            "dedupe_key": key
        }))
        .send()
        .await?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().map(str::parse::<u64>))
        .transpose()?
        .transpose()?;
    Ok((status, retry_after, response.json().await?))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_over_the_quota_gets_429s_and_every_accepted_request_completes()
-> anyhow::Result<()> {
    let app = TestApp::spawn("ingest-quota").await?;
    app.put_template(
        "ping",
        json!({"name": "Ping", "in_app": {"title": "ping {{ data.n }}", "body": "b"}}),
    )
    .await?;
    for user in ["ann", "ben"] {
        app.put_user(user, user, false).await?;
    }
    app.store
        .set_tenant_settings(
            &app.tenant,
            &TenantSettings {
                ingest_per_second: Some(2),
                ingest_burst: Some(3),
                ..TenantSettings::default()
            },
        )
        .await?;

    let keys: Vec<String> = (0..10).map(|i| format!("burst-{i}")).collect();
    let first = join_all(keys.iter().map(|k| trigger(&app, k))).await;
    let mut accepted: HashMap<String, String> = HashMap::new();
    let mut refused: Vec<(String, u64)> = Vec::new();
    for (key, answer) in keys.iter().zip(first) {
        let (status, retry_after, body) = answer?;
        match status {
            StatusCode::ACCEPTED => {
                accepted.insert(key.clone(), body["request_id"].as_str().unwrap().to_owned());
            }
            StatusCode::TOO_MANY_REQUESTS => {
                let wait = retry_after.expect("a 429 carries Retry-After");
                assert!((1..=2).contains(&wait), "{wait} s for a 2/s quota");
                assert_eq!(body["error"]["code"], "rate_limited", "{body}");
                assert_eq!(body["error"]["rate_per_second"], 2, "{body}");
                assert_eq!(body["error"]["retry_after_seconds"], wait, "{body}");
                refused.push((key.clone(), wait));
            }
            other => panic!("{key}: unexpected {other}: {body}"),
        }
    }
    // The burst of 3 gets in at once; ten triggers in well under a second cannot all.
    assert!(accepted.len() >= 3, "{accepted:?}");
    assert!(!refused.is_empty(), "no trigger was refused: {accepted:?}");
    let refused_at_first = refused.len();

    // A client that waits as told gets every refused trigger in (the bucket refills at 2/s),
    // and nothing refused was recorded meanwhile: each retry is a new request, not a duplicate.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Some((key, wait)) = refused.pop() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "retries took over 60 s"
        );
        tokio::time::sleep(Duration::from_secs(wait)).await;
        let (status, retry_after, body) = trigger(&app, &key).await?;
        match status {
            StatusCode::ACCEPTED => {
                assert_eq!(body["duplicate"], false, "{key} was recorded when refused");
                accepted.insert(key, body["request_id"].as_str().unwrap().to_owned());
            }
            StatusCode::TOO_MANY_REQUESTS => refused.push((key, retry_after.unwrap())),
            other => panic!("{key}: unexpected {other}: {body}"),
        }
    }
    assert_eq!(accepted.len(), keys.len());

    for (key, request_id) in &accepted {
        let done = app.wait_for_state(request_id, "completed").await?;
        let in_app = &done["channels"]["in_app"];
        assert_eq!(
            (&in_app["delivered"], &in_app["failed"], &in_app["pending"]),
            (&json!(2), &json!(0), &json!(0)),
            "{key}: {done}"
        );
    }
    for user in ["ann", "ben"] {
        let inbox = app.inbox(user).await?;
        assert_eq!(inbox.len(), keys.len(), "{user}: {inbox:?}");
    }
    eprintln!(
        "ingest quota: {refused_at_first} of {} refused at first, all {} completed",
        keys.len(),
        accepted.len()
    );
    Ok(())
}
