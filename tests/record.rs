//! Records the workflow histories the replay tests in `workflows/tests/replay.rs` check.
//!
//! Ignored by default: it rewrites files under `workflows/histories/`. Run it with
//! `make record-histories` after an intended change to workflow code, and commit the result.

use std::path::PathBuf;

use fanout_sandbox::{FaultStage, NewFault};
use reqwest::StatusCode;
use serde_json::json;
use temporalio_client::{UntypedWorkflow, WorkflowFetchHistoryOptions};

use crate::helpers::{Setup, TestApp};

#[tokio::test(flavor = "multi_thread")]
#[ignore = "rewrites workflows/histories; run `make record-histories`"]
async fn record_histories() -> anyhow::Result<()> {
    // Three pages, two channels, a suppressed recipient, a permanent SMTP failure and a
    // transient one (two delivery rounds on page 0, with a backoff timer): every branch the
    // workflow takes on the way to completion. Then a re-drive of the dead letter.
    let app = TestApp::spawn_setup(
        "record",
        Setup {
            page_size: 2,
            concurrency: 16,
            direct_max_recipients: 0,
            ..Setup::default()
        },
    )
    .await?;
    app.put_template(
        "welcome",
        json!({
            "name": "Welcome",
            "email": {"subject": "Hi {{ user.name }}", "text": "{{ data.actor }} says hi"},
            "in_app": {"title": "Hi", "body": "{{ data.actor }} says hi"}
        }),
    )
    .await?;
    for id in ["u1", "u2", "u3", "u4"] {
        app.put_user(id, id, true).await?;
    }
    let bounce = app
        .smtp_fault(&NewFault {
            rcpt: app.email_of("u4"),
            code: 550,
            message: "5.1.1 no such mailbox".into(),
            stage: FaultStage::Rcpt,
            times: None,
            delay_ms: 0,
        })
        .await?;
    app.smtp_fault(&NewFault {
        rcpt: app.email_of("u2"),
        code: 451,
        message: "4.3.0 try again later".into(),
        stage: FaultStage::Rcpt,
        times: Some(2),
        delay_ms: 0,
    })
    .await?;
    let (status, body) = app
        .notify(&json!({
            "template_id": "welcome",
            "recipients_query": {"type": "users", "user_ids": ["u1", "u2", "u3", "u4", "ghost"]},
            "data": {"actor": "Dana"},
            "dedupe_key": "record-completed"
        }))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let request_id = body["request_id"].as_str().unwrap();
    app.wait_for_state(request_id, "completed").await?;
    app.remove_smtp_fault(bounce).await?;
    let redrive = app.redrive(request_id).await?;
    let redrive_id = redrive["redrive_id"].as_str().unwrap().to_owned();
    crate::helpers::poll(
        std::time::Duration::from_secs(60),
        "re-drive delivered",
        || async {
            let s = app.status(request_id).await?;
            Ok((s["channels"]["email"]["failed"] == 0).then_some(()))
        },
    )
    .await?;

    save(
        &app,
        &[
            (request_id.to_owned(), "notification_completed.json"),
            (format!("{request_id}/resolve"), "resolve_audience.json"),
            // Two snapshot members a page in user-id order (ghost, u1 | u2, u3 | u4): page 1
            // holds u2, whose transient failures take two extra delivery rounds.
            (format!("{request_id}/page-0"), "fanout_page.json"),
            (
                format!("{request_id}/page-1"),
                "fanout_page_retry_rounds.json",
            ),
            (redrive_id.clone(), "redrive.json"),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "rewrites workflows/histories; run `make record-histories`"]
async fn record_histories_direct() -> anyhow::Result<()> {
    // The direct path's branches: first-time success (one local activity), a transient
    // refusal (a backoff timer and a second round), a paused request handed from the local run
    // to a normal activity (signals written through as local activities), and a cancel while a
    // held send waits.
    let app = TestApp::spawn_with("record-direct", 50, 2).await?;
    app.put_template(
        "code",
        json!({"name": "Code", "email": {"subject": "Code", "text": "{{ data.code }}"}}),
    )
    .await?;
    let users: Vec<String> = (0..12).map(|i| format!("u{i:02}")).collect();
    for u in &users {
        app.put_user(u, u, true).await?;
    }
    let notify = |users: Vec<&str>, key: &str| {
        let body = json!({
            "template_id": "code",
            "recipients_query": {"type": "users", "user_ids": users},
            "data": {"code": "1234"},
            "dedupe_key": key
        });
        let app = &app;
        async move {
            let (status, body) = app.notify(&body).await?;
            anyhow::ensure!(status == StatusCode::ACCEPTED, "{body}");
            Ok::<String, anyhow::Error>(body["request_id"].as_str().unwrap().to_owned())
        }
    };

    let completed = notify(vec!["u00"], "direct-completed").await?;
    app.wait_for_state(&completed, "completed").await?;

    app.smtp_fault(&NewFault {
        rcpt: app.email_of("u01"),
        code: 451,
        message: "4.3.0 try again later".into(),
        stage: FaultStage::Rcpt,
        times: Some(1),
        delay_ms: 0,
    })
    .await?;
    let retried = notify(vec!["u01"], "direct-retried").await?;
    app.wait_for_state(&retried, "completed").await?;

    let slow: Vec<&str> = users[2..].iter().map(String::as_str).collect();
    for u in &slow {
        app.smtp_fault(&NewFault {
            rcpt: app.email_of(u),
            code: 250,
            message: "ok, slowly".into(),
            stage: FaultStage::Rcpt,
            times: None,
            delay_ms: 500,
        })
        .await?;
    }
    let paused = notify(slow, "direct-paused").await?;
    app.post(&format!("/v1/requests/{paused}/pause"), None)
        .await?;
    // Held past the local run's send window, then resumed.
    crate::helpers::poll(
        std::time::Duration::from_secs(30),
        "handed to a normal activity",
        || async {
            let events = app.history(&paused).await?;
            Ok(events
                .iter()
                .any(|e| {
                    e.event_type()
                        == temporalio_common::protos::temporal::api::enums::v1::EventType::ActivityTaskScheduled
                })
                .then_some(()))
        },
    )
    .await?;
    app.post(&format!("/v1/requests/{paused}/resume"), None)
        .await?;
    app.wait_for_state(&paused, "completed").await?;

    app.post(
        "/v1/kill-switches/channels/email",
        Some(json!({"disabled": true, "reason": "recording"})),
    )
    .await?;
    let cancelled = notify(vec!["u00"], "direct-cancelled").await?;
    crate::helpers::poll(std::time::Duration::from_secs(30), "held", || async {
        let receipts = app.all_receipts(&cancelled).await?;
        Ok((!receipts.is_empty()).then_some(()))
    })
    .await?;
    app.post("/v1/cancel", Some(json!({"request_id": cancelled})))
        .await?;
    app.wait_for_state(&cancelled, "cancelled").await?;

    save(
        &app,
        &[
            (completed, "direct_completed.json"),
            (retried, "direct_retried.json"),
            (paused, "direct_paused_handoff.json"),
            (cancelled, "direct_cancelled.json"),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "rewrites workflows/histories; run `make record-histories`"]
async fn record_histories_scheduled() -> anyhow::Result<()> {
    // Scheduled sends: a direct request that waits for its time, one moved by a reschedule
    // (a cancelled timer and a new one), one cancelled while it waits, and a fan-out (the tree)
    // that waits before resolving.
    let app = TestApp::spawn_setup(
        "record-scheduled",
        Setup {
            page_size: 2,
            ..Setup::default()
        },
    )
    .await?;
    app.put_template(
        "code",
        json!({"name": "Code", "email": {"subject": "Code", "text": "{{ data.code }}"}}),
    )
    .await?;
    for u in ["s1", "s2"] {
        app.put_user(u, u, true).await?;
    }
    app.seed_followers("star", 3).await?;
    let notify = |recipients: serde_json::Value, delay: u32, key: &str| {
        let body = json!({
            "template_id": "code",
            "recipients_query": recipients,
            "data": {"code": "1234"},
            "dedupe_key": key,
            "delay_seconds": delay,
        });
        let app = &app;
        async move {
            let (status, body) = app.notify(&body).await?;
            anyhow::ensure!(status == StatusCode::ACCEPTED, "{body}");
            Ok::<String, anyhow::Error>(body["request_id"].as_str().unwrap().to_owned())
        }
    };
    let users = json!({"type": "users", "user_ids": ["s1", "s2"]});

    let waited = notify(users.clone(), 2, "scheduled-direct").await?;
    let moved = notify(users.clone(), 3600, "scheduled-moved").await?;
    crate::helpers::wait_for_timer(&app, &moved).await?;
    app.post(
        &format!("/v1/requests/{moved}/schedule"),
        Some(json!({"delay_seconds": 1})),
    )
    .await?;
    let cancelled = notify(users, 3600, "scheduled-cancelled").await?;
    app.post("/v1/cancel", Some(json!({"request_id": cancelled})))
        .await?;
    let tree = notify(
        json!({"type": "followers", "of": "star"}),
        2,
        "scheduled-tree",
    )
    .await?;
    // Local time: the same dated wall time, a few seconds ahead in Paris and already past in
    // Tokyo, is two release groups, one at once and one on a timer.
    for (user, zone) in [("paris", "Europe/Paris"), ("tokyo", "Asia/Tokyo")] {
        let r = app
            .request(reqwest::Method::PUT, &format!("/v1/users/{user}"))
            .json(&json!({"name": user, "email": app.email_of(user), "timezone": zone}))
            .send()
            .await?;
        anyhow::ensure!(r.status() == StatusCode::OK, "{user}: {}", r.text().await?);
    }
    let soon_in_paris =
        jiff::Timestamp::from_millisecond(i64::try_from(crate::helpers::now_ms())? + 3_000)?
            .to_zoned(jiff::tz::TimeZone::get("Europe/Paris")?)
            .strftime("%Y-%m-%dT%H:%M:%S")
            .to_string();
    let (status, body) = app
        .notify(&json!({
            "template_id": "code",
            "recipients_query": {"type": "users", "user_ids": ["paris", "tokyo"]},
            "data": {"code": "1234"},
            "dedupe_key": "local-time",
            "send_at_local": soon_in_paris,
        }))
        .await?;
    anyhow::ensure!(status == StatusCode::ACCEPTED, "{body}");
    let local = body["request_id"].as_str().unwrap().to_owned();
    for (id, state) in [
        (&waited, "completed"),
        (&moved, "completed"),
        (&cancelled, "cancelled"),
        (&tree, "completed"),
        (&local, "completed"),
    ] {
        app.wait_for_state(id, state).await?;
    }

    save(
        &app,
        &[
            (waited, "scheduled_direct.json"),
            (moved, "scheduled_rescheduled.json"),
            (cancelled, "scheduled_cancelled.json"),
            (tree, "scheduled_tree.json"),
            (local, "local_time.json"),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "rewrites workflows/histories; run `make record-histories`"]
async fn record_histories_quiet_hours() -> anyhow::Result<()> {
    // Quiet hours: a direct request whose recipient's window ends a few seconds on (a deferred
    // receipt, one timer to its release, a second round), and a fan-out whose deferred
    // recipients go to release pages (`plan_deferred`, one timer, the release pages).
    let direct = TestApp::spawn("record-quiet-direct").await?;
    let tree = TestApp::spawn_setup("record-quiet-tree", crate::quiet_hours::tree_setup()).await?;
    let (direct_id, tree_id) = tokio::try_join!(
        crate::quiet_hours::direct(&direct),
        crate::quiet_hours::tree(&tree)
    )?;
    save(&direct, &[(direct_id, "quiet_hours_direct.json")]).await?;
    save(&tree, &[(tree_id, "quiet_hours_tree.json")]).await
}

/// Writes each workflow's history under `workflows/histories/`.
async fn save(app: &TestApp, workflows: &[(String, &str)]) -> anyhow::Result<()> {
    let client = app.temporal_client().await?;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../workflows/histories");
    for (workflow_id, file) in workflows {
        let history = client
            .get_workflow_handle::<UntypedWorkflow>(workflow_id)
            .fetch_history(WorkflowFetchHistoryOptions::default())
            .to_json()
            .await?;
        let path = dir.join(file);
        std::fs::write(&path, history)?;
        println!("recorded {}", path.display());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "rewrites workflows/histories; run `make record-histories`"]
async fn record_histories_digest() -> anyhow::Result<()> {
    // A digest: two triggers folded into one, the workflow's timer to the window's end, the
    // close and the digest's request as its child.
    let app = TestApp::spawn_with("record-digest", 2, 4).await?;
    app.put_template(
        "likes",
        json!({
            "name": "Likes",
            "digest": {"window_seconds": 1},
            "email": {"subject": "{{ digest.count }} likes", "text": "{% for i in digest.items %}{{ i.actor }} {% endfor %}"}
        }),
    )
    .await?;
    for id in ["u1", "u2", "u3"] {
        app.put_user(id, id, true).await?;
    }
    let mut triggers = Vec::new();
    for (actor, users) in [("ann", json!(["u1", "u2"])), ("bob", json!(["u2", "u3"]))] {
        let (status, body) = app
            .notify(&json!({
                "template_id": "likes",
                "recipients_query": {"type": "users", "user_ids": users},
                "data": {"actor": actor},
            }))
            .await?;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        triggers.push(body["request_id"].as_str().unwrap().to_owned());
    }
    let digest = crate::helpers::poll(
        std::time::Duration::from_secs(60),
        "digest closed",
        || async {
            let s = app.status(&triggers[0]).await?;
            Ok((s["digest"]["state"] == "closed").then_some(s["digest"].clone()))
        },
    )
    .await?;
    let request_id = digest["request_id"].as_str().unwrap().to_owned();
    app.wait_for_state(&request_id, "completed").await?;
    let digest_id = digest["digest_id"].as_str().unwrap().to_owned();
    // The digest's workflow ends once its request has.
    crate::helpers::poll(
        std::time::Duration::from_secs(60),
        "digest workflow done",
        || async {
            let history = app.history(&digest_id).await?;
            let done = history.last().is_some_and(|e| {
                e.event_type
                    == temporalio_common::protos::temporal::api::enums::v1::EventType::WorkflowExecutionCompleted
                        as i32
            });
            Ok(done.then_some(()))
        },
    )
    .await?;
    save(
        &app,
        &[
            (digest_id, "digest.json"),
            (request_id, "digest_request_notification.json"),
        ],
    )
    .await
}
