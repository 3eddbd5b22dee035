//! Scheduled sends on the real stack: a request with `send_at` or `delay_seconds` waits on its
//! workflow's durable timer, sends nothing before its time and everything after, can be moved
//! while it waits and cancelled with nothing sent. Times are read from the sandbox's arrival
//! stamps and the status' `run_at_ms`, so the assertions hold however slow the machine is.

use std::time::Duration;

use fanout_domain::timing::format_instant;
use reqwest::StatusCode;
use serde_json::{Value, json};
use temporalio_common::protos::temporal::api::enums::v1::EventType;

use crate::helpers::{TestApp, expect_status, now_ms, poll, wait_for_timer};

fn reminder() -> Value {
    json!({"name": "Reminder", "email": {"subject": "Reminder", "text": "Hi {{ user.name }}"}})
}

async fn with_users(app: &TestApp, users: &[&str]) -> anyhow::Result<()> {
    app.put_template("reminder", reminder()).await?;
    for user in users {
        app.put_user(user, user, true).await?;
    }
    Ok(())
}

/// The earliest arrival at the sandbox for each of `users`, once each has exactly one email.
async fn arrivals(app: &TestApp, users: &[&str]) -> anyhow::Result<Vec<u64>> {
    let mut out = Vec::new();
    for user in users {
        let emails = app.emails_to(&app.email_of(user)).await?;
        anyhow::ensure!(emails.len() == 1, "{user} got {} emails", emails.len());
        out.push(emails[0].received_at_ms);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_request_sends_nothing_before_its_time_and_everything_after()
-> anyhow::Result<()> {
    let app = TestApp::spawn("timing-send-at").await?;
    let users = ["ann", "ben", "cat"];
    with_users(&app, &users).await?;
    let send_at = now_ms() + 4_000;

    let (status, body) = app
        .notify(&json!({
            "template_id": "reminder",
            "recipients_query": {"type": "users", "user_ids": users},
            "send_at": format_instant(send_at as i64),
        }))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let request_id = body["request_id"].as_str().unwrap().to_owned();
    let waiting = app.status(&request_id).await?;
    assert_eq!(waiting["state"], "scheduled", "{waiting}");
    assert_eq!(waiting["run_at_ms"], json!(send_at), "{waiting}");

    let done = app.wait_for_state(&request_id, "completed").await?;
    assert_eq!(done["totals"]["delivered"], 3, "{done}");
    for at in arrivals(&app, &users).await? {
        assert!(
            at >= send_at,
            "an email arrived at {at}, before send_at {send_at}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delayed_fan_out_waits_then_runs_its_whole_tree() -> anyhow::Result<()> {
    let app = TestApp::spawn("timing-delay-tree").await?;
    app.put_template("reminder", reminder()).await?;
    let followers = app.seed_followers("star", 30).await?;
    let before = now_ms();

    let (status, body) = app
        .notify(&json!({
            "template_id": "reminder",
            "recipients_query": {"type": "followers", "of": "star"},
            "delay_seconds": 3,
        }))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let request_id = body["request_id"].as_str().unwrap().to_owned();
    let waiting = app.status(&request_id).await?;
    let run_at = waiting["run_at_ms"].as_u64().expect("run_at_ms");
    assert!(run_at >= before + 3_000, "{waiting}");

    let done = app.wait_for_state(&request_id, "completed").await?;
    assert_eq!(done["path"], "tree", "{done}");
    assert_eq!(done["totals"]["delivered"], followers.len(), "{done}");
    let followers: Vec<&str> = followers.iter().map(String::as_str).collect();
    for at in arrivals(&app, &followers).await? {
        assert!(
            at >= run_at,
            "an email arrived at {at}, before run_at {run_at}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_cancelled_while_scheduled_sends_nothing() -> anyhow::Result<()> {
    let app = TestApp::spawn("timing-cancel").await?;
    let users = ["dan", "eve"];
    with_users(&app, &users).await?;

    let (status, body) = app
        .notify(&json!({
            "template_id": "reminder",
            "recipients_query": {"type": "users", "user_ids": users},
            "delay_seconds": 3,
        }))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let request_id = body["request_id"].as_str().unwrap().to_owned();
    let run_at = app.status(&request_id).await?["run_at_ms"]
        .as_u64()
        .expect("run_at_ms");

    let r = app
        .request(reqwest::Method::POST, "/v1/cancel")
        .json(&json!({"request_id": request_id}))
        .send()
        .await?;
    expect_status(r, StatusCode::ACCEPTED).await?;
    let cancelled = app.wait_for_state(&request_id, "cancelled").await?;
    assert_eq!(cancelled["totals"]["delivered"], 0, "{cancelled}");

    // Past the time it would have run, and a second more: still nothing.
    poll(
        Duration::from_secs(30),
        "the scheduled time passed",
        || async { Ok((now_ms() > run_at + 1_000).then_some(())) },
    )
    .await?;
    for user in users {
        assert!(app.emails_to(&app.email_of(user)).await?.is_empty());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_request_moves_until_it_starts() -> anyhow::Result<()> {
    let app = TestApp::spawn("timing-reschedule").await?;
    let users = ["fay"];
    with_users(&app, &users).await?;

    let (status, body) = app
        .notify(&json!({
            "template_id": "reminder",
            "recipients_query": {"type": "users", "user_ids": users},
            "delay_seconds": 3600,
        }))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let request_id = body["request_id"].as_str().unwrap().to_owned();
    // Moved once its timer runs, so the move cancels that timer and starts another.
    wait_for_timer(&app, &request_id).await?;
    let schedule = |body: Value| {
        app.request(
            reqwest::Method::POST,
            &format!("/v1/requests/{request_id}/schedule"),
        )
        .json(&body)
        .send()
    };

    let bad = schedule(json!({"send_at": "next tuesday"})).await?;
    let bad = expect_status(bad, StatusCode::UNPROCESSABLE_ENTITY).await?;
    assert_eq!(bad["error"]["field"], "send_at", "{bad}");

    let moved = schedule(json!({"delay_seconds": 2})).await?;
    let moved = expect_status(moved, StatusCode::OK).await?;
    let run_at = moved["run_at_ms"].as_u64().expect("run_at_ms");
    assert_eq!(app.status(&request_id).await?["run_at_ms"], json!(run_at));

    app.wait_for_state(&request_id, "completed").await?;
    let events = app.history(&request_id).await?;
    let count = |kind: EventType| events.iter().filter(|e| e.event_type() == kind).count();
    assert_eq!(
        (
            count(EventType::TimerStarted),
            count(EventType::TimerCanceled),
            count(EventType::TimerFired)
        ),
        (2, 1, 1),
        "the move cancels the first timer and the second one fires"
    );
    let at = arrivals(&app, &users).await?[0];
    assert!(
        at >= run_at,
        "the email arrived at {at}, before run_at {run_at}"
    );

    let late = schedule(json!({"delay_seconds": 60})).await?;
    let late = expect_status(late, StatusCode::CONFLICT).await?;
    assert!(
        late["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not scheduled")),
        "{late}"
    );
    Ok(())
}
