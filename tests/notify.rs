//! The first path end to end: a trigger over HTTP becomes a workflow, emails at the SMTP
//! sandbox, inbox rows, receipts and status.

use std::time::Duration;

use fanout_sandbox::{FaultStage, NewFault};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, poll, tally};

fn welcome_template() -> Value {
    json!({
        "name": "Welcome",
        "email": {
            "subject": "Welcome to {{ data.product }}, {{ user.name }}!",
            "text": "Hi {{ user.name }}, {{ data.actor }} invited you.",
            "html": "<p>Hi {{ user.name }}, <b>{{ data.actor }}</b> invited you.</p>"
        },
        "in_app": {"title": "Welcome to {{ data.product }}", "body": "{{ data.actor }} invited you, {{ user.name }}."}
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notification_reaches_smtp_and_the_inbox_with_receipts_and_status() -> anyhow::Result<()>
{
    let app = TestApp::spawn("first-path").await?;
    app.put_template("welcome", welcome_template()).await?;
    for (id, name) in [("alice", "Alice"), ("bob", "Bob"), ("carol", "Carol")] {
        app.put_user(id, name, true).await?;
    }
    app.put_user("dave", "Dave", false).await?;

    let (status, body) = app
        .notify(&json!({
            "template_id": "welcome",
            "recipients_query": {"type": "users", "user_ids": ["alice", "bob", "carol", "dave", "zed"]},
            "data": {"product": "Fanout", "actor": "Dana"},
            "dedupe_key": "invite-1",
            "metadata": {"source": "e2e"}
        }))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["duplicate"], false);
    let request_id = body["request_id"].as_str().unwrap().to_owned();

    let done = app.wait_for_state(&request_id, "completed").await?;
    assert_eq!(
        (&done["source"], &done["path"]),
        (&json!("store"), &json!("direct")),
        "{done}"
    );
    assert_eq!(done["metadata"]["source"], "e2e");
    // zed does not exist: left out of the snapshot and counted as suppressed on both channels;
    // dave has no address: suppressed on email.
    assert_eq!(
        (&done["recipients"], &done["excluded"]),
        (&json!(4), &json!(1)),
        "{done}"
    );
    let email = &done["channels"]["email"];
    assert_eq!(
        (
            &email["total"],
            &email["delivered"],
            &email["suppressed"],
            &email["failed"],
            &email["pending"]
        ),
        (&json!(5), &json!(3), &json!(2), &json!(0), &json!(0)),
        "{done}"
    );
    let in_app = &done["channels"]["in_app"];
    assert_eq!(
        (
            &in_app["total"],
            &in_app["delivered"],
            &in_app["suppressed"],
            &in_app["pending"]
        ),
        (&json!(5), &json!(4), &json!(1), &json!(0)),
        "{done}"
    );

    for (id, name) in [("alice", "Alice"), ("bob", "Bob"), ("carol", "Carol")] {
        let emails = app.emails_to(&app.email_of(id)).await?;
        assert_eq!(emails.len(), 1, "{id} got {} emails", emails.len());
        let email = &emails[0];
        assert_eq!(
            email.subject.as_deref(),
            Some(format!("Welcome to Fanout, {name}!").as_str())
        );
        let text = email.text.as_deref().unwrap_or_default();
        assert!(
            text.contains(&format!("Hi {name}, Dana invited you.")),
            "{text}"
        );
        let html = email.html.as_deref().unwrap_or_default();
        assert!(html.contains("<b>Dana</b>"), "{html}");
        assert_eq!(email.rcpt_to, vec![app.email_of(id)]);
    }

    for (id, name) in [("alice", "Alice"), ("dave", "Dave")] {
        let inbox = app.inbox(id).await?;
        assert_eq!(inbox.len(), 1, "{id}: {inbox:?}");
        assert_eq!(inbox[0]["title"], "Welcome to Fanout");
        assert_eq!(inbox[0]["body"], format!("Dana invited you, {name}."));
        assert_eq!(inbox[0]["request_id"], request_id.as_str());
    }
    assert!(app.inbox("zed").await?.is_empty());

    let receipts = app.all_receipts(&request_id).await?;
    assert_eq!(
        receipts.len(),
        8,
        "one receipt per snapshot member and channel"
    );
    let by_outcome = tally(&receipts, |r| {
        format!(
            "{}:{}:{}",
            r["channel"].as_str().unwrap(),
            r["status"].as_str().unwrap(),
            r["error_code"].as_str().unwrap_or("-")
        )
    });
    assert_eq!(by_outcome["email:delivered:-"], 3);
    assert_eq!(by_outcome["email:suppressed:no_email_address"], 1);
    assert_eq!(by_outcome["in_app:delivered:-"], 4);
    assert_eq!(by_outcome.len(), 3, "{by_outcome:?}");
    for r in receipts.iter().filter(|r| r["status"] == "delivered") {
        assert!(r["provider_message_id"].is_string(), "{r}");
        assert!(r["latency_ms"].is_u64(), "{r}");
        assert_eq!(r["attempts"], 1);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_trigger_returns_the_same_request_and_delivers_once() -> anyhow::Result<()> {
    let app = TestApp::spawn("duplicate").await?;
    app.put_template("welcome", welcome_template()).await?;
    app.put_user("alice", "Alice", true).await?;
    let trigger = json!({
        "template_id": "welcome",
        "recipients_query": {"type": "users", "user_ids": ["alice"]},
        "channel_prefs": ["email"],
        "data": {"product": "Fanout", "actor": "Dana"},
        "dedupe_key": "comment-42"
    });

    let (first_status, first) = app.notify(&trigger).await?;
    let (second_status, second) = app.notify(&trigger).await?;
    assert_eq!(first_status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(second_status, StatusCode::OK, "{second}");
    assert_eq!(second["duplicate"], true);
    assert_eq!(first["request_id"], second["request_id"]);

    let request_id = first["request_id"].as_str().unwrap();
    let done = app.wait_for_state(request_id, "completed").await?;
    assert_eq!(done["path"], "direct", "{done}");
    // A third trigger after completion is still the same request.
    let (third_status, third) = app.notify(&trigger).await?;
    assert_eq!(
        (third_status, &third["request_id"]),
        (StatusCode::OK, &first["request_id"])
    );
    assert_eq!(app.emails_to(&app.email_of("alice")).await?.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn status_is_live_while_running_and_a_rejected_address_is_a_failed_receipt()
-> anyhow::Result<()> {
    let app = TestApp::spawn("live-status").await?;
    app.put_template("welcome", welcome_template()).await?;
    for id in ["slow", "bounce", "ok"] {
        app.put_user(id, id, true).await?;
    }
    app.smtp_fault(&NewFault {
        rcpt: app.email_of("slow"),
        code: 250,
        message: "ok, slowly".into(),
        stage: FaultStage::Rcpt,
        times: None,
        delay_ms: 3_000,
    })
    .await?;
    app.smtp_fault(&NewFault {
        rcpt: app.email_of("bounce"),
        code: 550,
        message: "5.1.1 mailbox unavailable".into(),
        stage: FaultStage::Rcpt,
        times: None,
        delay_ms: 0,
    })
    .await?;

    let (status, body) = app
        .notify(&json!({
            "template_id": "welcome",
            "recipients_query": {"type": "users", "user_ids": ["slow", "bounce", "ok"]},
            "channel_prefs": ["email"],
            "data": {"product": "Fanout", "actor": "Dana"}
        }))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let request_id = body["request_id"].as_str().unwrap().to_owned();

    // The slow recipient holds the delivery open for 3 s. Three listed users take the direct
    // path, whose one workflow task stays open while it delivers, so live counts come from the
    // receipts already written (the two quick ones), not from a query that would wait.
    let running = poll(Duration::from_secs(60), "live progress", || async {
        let s = app.status(&request_id).await?;
        let email = &s["channels"]["email"];
        Ok(
            (s["state"] == "running" && email["delivered"] == 1 && email["failed"] == 1)
                .then_some(s),
        )
    })
    .await?;
    assert_eq!(
        (&running["source"], &running["path"]),
        (&json!("receipts"), &json!("direct")),
        "{running}"
    );
    let email = &running["channels"]["email"];
    assert_eq!(
        (&email["total"], &email["pending"]),
        (&json!(3), &json!(1)),
        "{running}"
    );
    assert_eq!(running["pages_total"], 1, "{running}");

    let done = app.wait_for_state(&request_id, "completed").await?;
    let email = &done["channels"]["email"];
    assert_eq!(
        (&email["delivered"], &email["failed"]),
        (&json!(2), &json!(1)),
        "{done}"
    );
    let receipts = app.all_receipts(&request_id).await?;
    let bounced: Vec<&Value> = receipts
        .iter()
        .filter(|r| r["user_id"] == "bounce")
        .collect();
    assert_eq!(bounced.len(), 1);
    assert_eq!(bounced[0]["status"], "failed");
    assert_eq!(bounced[0]["error_code"], "smtp_550");
    assert!(app.emails_to(&app.email_of("bounce")).await?.is_empty());
    assert_eq!(app.emails_to(&app.email_of("slow")).await?.len(), 1);
    Ok(())
}
