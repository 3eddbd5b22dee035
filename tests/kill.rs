//! Kill switches on the real stack: a template disabled while its fan-out runs stops sending
//! (by cancelling or pausing the request, found through Temporal's visibility), and a channel
//! switched off holds its deliveries until it is switched back on, then delivers every one once.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::fanout::{
    PAGES_IN_FLIGHT, assert_holding, first_emails, notify_followers, past_the_gate,
    post_template as template, slow_sink, total_emails,
};
use crate::helpers::{TestApp, poll};

/// Disables the template `post`, returning the ids the call acted on.
async fn disable(app: &TestApp, running: &str) -> anyhow::Result<Vec<String>> {
    let (status, body) = app
        .post(
            "/v1/templates/post/disable",
            Some(json!({"running": running, "reason": "wrong content"})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["failed"], json!([]), "{body}");
    Ok(body["request_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn disabling_a_template_cancels_its_running_fan_out() -> anyhow::Result<()> {
    const FOLLOWERS: usize = 400;
    const CONCURRENCY: usize = 8;
    let app = TestApp::spawn_with("kill-template-cancel", 50, CONCURRENCY).await?;
    app.put_template("post", template()).await?;
    app.seed_followers("star", FOLLOWERS).await?;
    slow_sink(&app, 500).await?;
    let request_id = notify_followers(&app, &["email"]).await?;
    first_emails(&app, 20).await?;

    let acted = disable(&app, "cancel").await?;
    let at_call = total_emails(&app).await?;
    assert_eq!(
        acted,
        vec![request_id.clone()],
        "found by the visibility query"
    );

    let done = app.wait_for_state(&request_id, "cancelled").await?;
    // Let any send that was in flight when the call returned (500 ms at the sink) land before
    // counting for good.
    let after = app.quiet_email_count(Duration::from_secs(1)).await?;
    // The cancel is in the store when the call returns: only sends already past the gate land.
    let in_flight_bound = past_the_gate(PAGES_IN_FLIGHT, CONCURRENCY);
    assert!(
        after - at_call <= in_flight_bound,
        "{} emails arrived after the template was disabled (bound {in_flight_bound})",
        after - at_call
    );
    assert!(after < FOLLOWERS, "the disable did not stop the fan-out");
    assert_eq!(
        done["channels"]["email"]["delivered"].as_u64().unwrap() as usize,
        after,
        "receipts agree with the sink: {done}"
    );

    // New requests of the template are refused while it is disabled.
    let (status, body) = app
        .notify(&json!({
            "template_id": "post",
            "recipients_query": {"type": "followers", "of": "star"},
            "data": {"actor": "Star"},
            "dedupe_key": "after-the-disable"
        }))
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("disabled")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn disabling_a_template_pauses_its_fan_out_and_enabling_finishes_it() -> anyhow::Result<()> {
    const FOLLOWERS: usize = 200;
    const CONCURRENCY: usize = 8;
    let app = TestApp::spawn_with("kill-template-pause", 50, CONCURRENCY).await?;
    app.put_template("post", template()).await?;
    app.seed_followers("star", FOLLOWERS).await?;
    slow_sink(&app, 300).await?;
    let request_id = notify_followers(&app, &["email"]).await?;
    first_emails(&app, 10).await?;

    let acted = disable(&app, "pause").await?;
    assert_eq!(acted, vec![request_id.clone()]);
    let in_flight = past_the_gate(PAGES_IN_FLIGHT, CONCURRENCY);
    assert_holding(&app, &request_id, FOLLOWERS, in_flight, "disabled").await?;

    let (status, body) = app.post("/v1/templates/post/enable", None).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["request_ids"], json!([request_id]), "{body}");
    app.wait_for_state(&request_id, "completed").await?;
    let emails = app.emails_per_recipient().await?;
    assert_eq!(emails.len(), FOLLOWERS);
    assert!(
        emails.values().all(|n| *n == 1),
        "a recipient got two emails"
    );
    Ok(())
}

fn latest_email_update(receipts: &[Value]) -> Option<i64> {
    receipts
        .iter()
        .filter(|r| r["channel"] == "email")
        .filter_map(|r| r["updated_at_ms"].as_i64())
        .max()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_channel_holds_deliveries_until_it_is_enabled() -> anyhow::Result<()> {
    const FOLLOWERS: usize = 20;
    let app = TestApp::spawn_with("kill-channel", 50, 8).await?;
    app.put_template("post", template()).await?;
    app.seed_followers("star", FOLLOWERS).await?;
    let (status, body) = app
        .post(
            "/v1/kill-switches/channels/email",
            Some(json!({"disabled": true, "reason": "relay incident"})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");

    let request_id = notify_followers(&app, &["email", "in_app"]).await?;
    // In-app goes out; every email is held: pending, marked as held by the switch, and no
    // attempt counted.
    let receipts = poll(
        Duration::from_secs(60),
        "email held, in-app delivered",
        || async {
            let receipts = app.all_receipts(&request_id).await?;
            let held = receipts
                .iter()
                .filter(|r| r["channel"] == "email" && r["status"] == "pending")
                .filter(|r| r["error_code"] == "channel_disabled")
                .count();
            let in_app = receipts
                .iter()
                .filter(|r| r["channel"] == "in_app" && r["status"] == "delivered")
                .count();
            Ok((held == FOLLOWERS && in_app == FOLLOWERS).then_some(receipts))
        },
    )
    .await?;
    assert!(
        receipts
            .iter()
            .filter(|r| r["channel"] == "email")
            .all(|r| r["attempts"] == 0),
        "a held delivery counted as an attempt"
    );
    // Another round holds them again (the page waits 5 s between held rounds): still nothing
    // is sent or given up on.
    let first_round = latest_email_update(&receipts);
    poll(Duration::from_secs(60), "a second held round", || async {
        let receipts = app.all_receipts(&request_id).await?;
        let again = receipts
            .iter()
            .filter(|r| r["channel"] == "email")
            .all(|r| r["status"] == "pending" && r["updated_at_ms"].as_i64() > first_round);
        Ok(again.then_some(()))
    })
    .await?;
    assert_eq!(
        total_emails(&app).await?,
        0,
        "an email left while the channel was off"
    );
    assert_eq!(app.status(&request_id).await?["state"], "running");

    let (status, body) = app
        .post(
            "/v1/kill-switches/channels/email",
            Some(json!({"disabled": false})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let done = app.wait_for_state(&request_id, "completed").await?;
    assert_eq!(done["channels"]["email"]["delivered"], FOLLOWERS, "{done}");
    assert_eq!(done["channels"]["email"]["failed"], 0, "{done}");
    let emails = app.emails_per_recipient().await?;
    assert_eq!(emails.len(), FOLLOWERS);
    assert!(
        emails.values().all(|n| *n == 1),
        "a recipient got two emails"
    );
    Ok(())
}
