//! The direct path end to end: a request to a small list of users runs in one workflow
//! execution (no resolution or page children), as cheaply as Temporal allows, with every
//! guarantee of the tree. The retry, Retry-After and dead-letter scenarios run on both paths in
//! `retries.rs` and `push.rs`; duplicates in `notify.rs`; the crash test in `crash.rs`.

use std::time::Duration;

use fanout_sandbox::{FaultStage, NewFault};
use reqwest::StatusCode;
use serde_json::{Value, json};
use temporalio_common::protos::temporal::api::enums::v1::EventType;
use temporalio_common::protos::temporal::api::history::v1::HistoryEvent;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

use crate::helpers::fanout::{assert_holding, first_emails, past_the_gate, slow_sink};
use crate::helpers::{TestApp, poll};
use crate::push::token;

fn template() -> Value {
    json!({
        "name": "Sign-in code",
        "email": {"subject": "Your code, {{ user.name }}", "text": "Code {{ data.code }}"},
        "in_app": {"title": "Sign-in code", "body": "Code {{ data.code }}"},
        "push": {"title": "Sign-in code", "body": "Code {{ data.code }}", "data": {"code": "{{ data.code }}"}}
    })
}

async fn notify(app: &TestApp, users: &[&str], channels: &[&str]) -> anyhow::Result<String> {
    let (status, body) = app
        .notify(&json!({
            "template_id": "otp",
            "recipients_query": {"type": "users", "user_ids": users},
            "channel_prefs": channels,
            "data": {"code": "428913"}
        }))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    Ok(body["request_id"].as_str().unwrap().to_owned())
}

fn count(events: &[HistoryEvent], kind: EventType) -> usize {
    events.iter().filter(|e| e.event_type() == kind).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_one_recipient_request_is_one_execution_of_a_few_events() -> anyhow::Result<()> {
    let app = TestApp::spawn("direct-cost").await?;
    app.put_template("otp", template()).await?;
    app.put_user("alice", "Alice", true).await?;

    let request_id = notify(&app, &["alice"], &["email"]).await?;
    let done = app.wait_for_state(&request_id, "completed").await?;
    assert_eq!(done["path"], "direct", "{done}");
    assert_eq!(done["channels"]["email"]["delivered"], 1, "{done}");
    assert_eq!(app.emails_to(&app.email_of("alice")).await?.len(), 1);

    let events = app.history(&request_id).await?;
    let kinds: Vec<_> = events.iter().map(HistoryEvent::event_type).collect();
    let actions = fanout_tests::history::billable_actions(&events);
    println!(
        "direct one-recipient history: {} events, {actions} billable actions {kinds:?}",
        events.len()
    );
    assert!(events.len() <= 12, "{} events: {kinds:?}", events.len());
    assert!(actions <= 3, "{actions} billable actions: {kinds:?}");
    for absent in [
        EventType::StartChildWorkflowExecutionInitiated,
        EventType::ActivityTaskScheduled,
        EventType::TimerStarted,
        EventType::UpsertWorkflowSearchAttributes,
    ] {
        assert_eq!(count(&events, absent), 0, "{absent:?} in {kinds:?}");
    }
    assert_eq!(count(&events, EventType::MarkerRecorded), 1, "{kinds:?}");
    assert_eq!(
        count(&events, EventType::WorkflowExecutionCompleted),
        1,
        "{kinds:?}"
    );
    // No resolution child was ever started.
    let resolve = app.history(&format!("{request_id}/resolve")).await;
    assert!(resolve.is_err(), "a resolve child exists");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_channel_is_delivered_on_the_direct_path() -> anyhow::Result<()> {
    let app = TestApp::spawn("direct-channels").await?;
    app.put_template("otp", template()).await?;
    let (ios, android) = (token("apns", "direct"), token("fcm", "direct"));
    for (user, platform, device) in [("alice", "apns", &ios), ("bob", "fcm", &android)] {
        let r = app
            .request(reqwest::Method::PUT, &format!("/v1/users/{user}"))
            .json(&json!({
                "name": user,
                "email": app.email_of(user),
                "devices": [{"platform": platform, "token": device}]
            }))
            .send()
            .await?;
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await?);
    }

    let request_id = notify(&app, &["alice", "bob"], &["email", "in_app", "push"]).await?;
    let done = app.wait_for_state(&request_id, "completed").await?;
    assert_eq!(done["path"], "direct", "{done}");
    for channel in ["email", "in_app", "push"] {
        let counts = &done["channels"][channel];
        assert_eq!(
            (&counts["delivered"], &counts["pending"]),
            (&json!(2), &json!(0)),
            "{channel}: {done}"
        );
    }
    let receipts = app.all_receipts(&request_id).await?;
    assert_eq!(receipts.len(), 6, "one receipt per user and channel");
    assert!(
        receipts.iter().all(|r| r["status"] == "delivered"),
        "{receipts:?}"
    );
    for user in ["alice", "bob"] {
        assert_eq!(app.emails_to(&app.email_of(user)).await?.len(), 1, "{user}");
        assert_eq!(app.inbox(user).await?.len(), 1, "{user}");
    }
    let apple = app.apns_notifications(&ios).await?;
    let google = app.fcm_messages(&android).await?;
    assert_eq!((apple.len(), google.len()), (1, 1));
    assert_eq!(apple[0]["payload"]["code"], "428913");
    assert_eq!(google[0]["message"]["data"]["code"], "428913");

    let events = app.history(&request_id).await?;
    assert_eq!(
        count(&events, EventType::StartChildWorkflowExecutionInitiated),
        0
    );
    assert_eq!(count(&events, EventType::MarkerRecorded), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transient_refusal_is_retried_after_its_backoff_in_the_same_execution()
-> anyhow::Result<()> {
    let app = TestApp::spawn("direct-451").await?;
    app.put_template("otp", template()).await?;
    app.put_user("alice", "Alice", true).await?;
    app.smtp_fault(&NewFault {
        rcpt: app.email_of("alice"),
        code: 451,
        message: "4.3.0 try again later".into(),
        stage: FaultStage::Rcpt,
        times: Some(1),
        delay_ms: 0,
    })
    .await?;

    let request_id = notify(&app, &["alice"], &["email"]).await?;
    let done = app.wait_for_state(&request_id, "completed").await?;
    assert_eq!(done["path"], "direct", "{done}");
    assert_eq!(done["channels"]["email"]["delivered"], 1, "{done}");
    let emails = app.emails_to(&app.email_of("alice")).await?;
    assert_eq!(emails.len(), 1, "one email, however many attempts");
    let receipts = app.all_receipts(&request_id).await?;
    assert_eq!(
        (&receipts[0]["status"], &receipts[0]["attempts"]),
        (&json!("delivered"), &json!(2)),
        "{receipts:?}"
    );

    // One execution: two local deliveries with a durable backoff timer between them, and the
    // second attempt went out no sooner than the timer allowed.
    let events = app.history(&request_id).await?;
    assert_eq!(count(&events, EventType::MarkerRecorded), 2);
    let timers: Vec<Duration> = events
        .iter()
        .filter_map(|e| match &e.attributes {
            Some(Attributes::TimerStartedEventAttributes(t)) => t
                .start_to_fire_timeout
                .and_then(|d| Duration::try_from(d).ok()),
            _ => None,
        })
        .collect();
    assert_eq!(timers.len(), 1, "{events:?}");
    let accepted = done["created_at_ms"].as_u64().unwrap();
    let waited = Duration::from_millis(emails[0].received_at_ms.saturating_sub(accepted));
    assert!(
        waited >= timers[0],
        "resent after {waited:?}, backoff {:?}",
        timers[0]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_before_the_send_sends_nothing_and_records_cancelled() -> anyhow::Result<()> {
    let app = TestApp::spawn("direct-cancel").await?;
    app.put_template("otp", template()).await?;
    app.put_user("alice", "Alice", true).await?;
    // The tenant's email is switched off, so the send is held (not attempted) until cancelled.
    let (status, body) = app
        .post(
            "/v1/kill-switches/channels/email",
            Some(json!({"disabled": true, "reason": "relay incident"})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");

    let request_id = notify(&app, &["alice"], &["email"]).await?;
    poll(Duration::from_secs(60), "the send held", || async {
        let receipts = app.all_receipts(&request_id).await?;
        Ok(receipts
            .iter()
            .any(|r| r["error_code"] == "channel_disabled")
            .then_some(()))
    })
    .await?;
    let (status, body) = app
        .post("/v1/cancel", Some(json!({"request_id": request_id})))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    let done = app.wait_for_state(&request_id, "cancelled").await?;
    assert_eq!(done["path"], "direct", "{done}");
    assert_eq!(done["channels"]["email"]["cancelled"], 1, "{done}");
    let receipts = app.all_receipts(&request_id).await?;
    assert_eq!(
        (&receipts[0]["status"], &receipts[0]["attempts"]),
        (&json!("cancelled"), &json!(0)),
        "{receipts:?}"
    );
    // Switching the channel back on sends nothing for the cancelled request.
    app.post(
        "/v1/kill-switches/channels/email",
        Some(json!({"disabled": false})),
    )
    .await?;
    let closed = app.history(&request_id).await?;
    assert_eq!(
        count(&closed, EventType::WorkflowExecutionCanceled),
        1,
        "the workflow itself ended cancelled"
    );
    assert!(app.emails_to(&app.email_of("alice")).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_holds_a_direct_request_and_resume_completes_it_once() -> anyhow::Result<()> {
    const USERS: usize = 40;
    const CONCURRENCY: usize = 4;
    let app = TestApp::spawn_with("direct-pause", 50, CONCURRENCY).await?;
    app.put_template("otp", template()).await?;
    let users: Vec<String> = (0..USERS).map(|i| format!("u{i:02}")).collect();
    for u in &users {
        app.put_user(u, u, true).await?;
    }
    slow_sink(&app, 250).await?;
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    let request_id = notify(&app, &names, &["email"]).await?;
    first_emails(&app, 4).await?;
    let (status, body) = app
        .post(&format!("/v1/requests/{request_id}/pause"), None)
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // One delivery sends the whole list.
    let in_flight = past_the_gate(1, CONCURRENCY);
    let held = assert_holding(&app, &request_id, USERS, in_flight, "paused").await?;

    let (status, body) = app
        .post(&format!("/v1/requests/{request_id}/resume"), None)
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let done = app.wait_for_state(&request_id, "completed").await?;
    assert_eq!(done["path"], "direct", "{done}");
    assert_eq!(done["channels"]["email"]["delivered"], USERS, "{done}");
    let emails = app.emails_per_recipient().await?;
    assert_eq!(emails.len(), USERS);
    assert!(emails.values().all(|n| *n == 1), "{emails:?}");
    println!("direct pause: {held} of {USERS} emails before the pause took hold");
    // The local run handed the paused rest to a normal, heartbeating activity.
    let events = app.history(&request_id).await?;
    assert_eq!(count(&events, EventType::ActivityTaskScheduled), 1);
    assert_eq!(
        count(&events, EventType::StartChildWorkflowExecutionInitiated),
        0
    );
    Ok(())
}
