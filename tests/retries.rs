//! Retries and failures end to end over email: a relay outage ends with every instance
//! delivered once it recovers, and a permanent rejection lands on the dead-letter list and is
//! re-driven through the API. Each runs on both delivery paths: the direct one (a small list of
//! users, one workflow execution) and the tree (child workflows per page).

use std::time::Duration;

use fanout_domain::request::DeliveryPath;
use fanout_sandbox::{FaultStage, NewFault};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, poll};

fn template() -> Value {
    json!({
        "name": "Digest",
        "email": {"subject": "Your digest, {{ user.name }}", "text": "{{ data.count }} new items."}
    })
}

fn fault(rcpt: String, code: u16, times: Option<u32>) -> NewFault {
    NewFault {
        rcpt,
        code,
        message: format!("{code} injected"),
        stage: FaultStage::Rcpt,
        times,
        delay_ms: 0,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_outage_ends_with_every_email_delivered_once_it_recovers_direct()
-> anyhow::Result<()> {
    relay_outage(DeliveryPath::Direct).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_outage_ends_with_every_email_delivered_once_it_recovers_tree() -> anyhow::Result<()>
{
    relay_outage(DeliveryPath::Tree).await
}

async fn relay_outage(path: DeliveryPath) -> anyhow::Result<()> {
    let app = TestApp::spawn_on("smtp-outage", path).await?;
    app.put_template("digest", template()).await?;
    let users: Vec<String> = (0..30).map(|i| format!("reader{i:02}")).collect();
    for u in &users {
        app.put_user(u, u, true).await?;
    }
    // Every address of this test's domain is refused with 451 until the rule is removed.
    let domain = format!("@{}.test", app.tenant);
    let outage = app.smtp_fault(&fault(domain, 451, None)).await?;

    let (status, body) = app
        .notify(&json!({
            "template_id": "digest",
            "recipients_query": {"type": "users", "user_ids": users},
            "channel_prefs": ["email"],
            "data": {"count": 3}
        }))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let request_id = body["request_id"].as_str().unwrap().to_owned();

    // Let the outage last through a few delivery rounds.
    app.wait_for_attempts(&request_id, users.len(), 3).await?;
    let during = app.status(&request_id).await?;
    assert_eq!(during["state"], "running", "{during}");
    assert_eq!(during["channels"]["email"]["delivered"], 0, "{during}");
    app.remove_smtp_fault(outage).await?;

    let done = app.wait_for_state(&request_id, "completed").await?;
    assert_eq!(done["path"], path.as_str(), "{done}");
    let email = &done["channels"]["email"];
    assert_eq!(
        (&email["delivered"], &email["failed"], &email["pending"]),
        (&json!(users.len()), &json!(0), &json!(0)),
        "{done}"
    );
    for u in &users {
        let got = app.emails_to(&app.email_of(u)).await?.len();
        assert_eq!(got, 1, "{u} got {got} emails");
    }
    let receipts = app.all_receipts(&request_id).await?;
    assert!(
        receipts
            .iter()
            .all(|r| r["status"] == "delivered" && r["attempts"].as_u64() >= Some(4)),
        "every receipt counts its attempts: {receipts:?}"
    );
    let (_, dead) = app
        .get(&format!("/v1/dead-letters?request_id={request_id}"))
        .await?;
    assert_eq!(dead["dead_letters"], json!([]), "{dead}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permanent_rejection_is_dead_lettered_and_redriven_direct() -> anyhow::Result<()> {
    dead_letter_and_redrive(DeliveryPath::Direct).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permanent_rejection_is_dead_lettered_and_redriven_tree() -> anyhow::Result<()> {
    dead_letter_and_redrive(DeliveryPath::Tree).await
}

async fn dead_letter_and_redrive(path: DeliveryPath) -> anyhow::Result<()> {
    let app = TestApp::spawn_on("smtp-dead-letter", path).await?;
    app.put_template("digest", template()).await?;
    for u in ["bounce", "fine"] {
        app.put_user(u, u, true).await?;
    }
    let rejection = app
        .smtp_fault(&fault(app.email_of("bounce"), 550, None))
        .await?;
    let (_, body) = app
        .notify(&json!({
            "template_id": "digest",
            "recipients_query": {"type": "users", "user_ids": ["bounce", "fine"]},
            "channel_prefs": ["email"],
            "data": {"count": 1}
        }))
        .await?;
    let request_id = body["request_id"].as_str().unwrap().to_owned();
    let done = app.wait_for_state(&request_id, "completed").await?;
    assert_eq!(done["path"], path.as_str(), "{done}");
    assert_eq!(done["channels"]["email"]["failed"], 1, "{done}");

    let (status, dead) = app
        .get(&format!("/v1/dead-letters?request_id={request_id}"))
        .await?;
    assert_eq!(status, StatusCode::OK, "{dead}");
    let entries = dead["dead_letters"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{dead}");
    assert_eq!(
        (&entries[0]["user_id"], &entries[0]["error_code"]),
        (&json!("bounce"), &json!("smtp_550"))
    );
    assert!(app.emails_to(&app.email_of("bounce")).await?.is_empty());

    // The mailbox is fixed; the operator re-drives.
    app.remove_smtp_fault(rejection).await?;
    let redrive = app.redrive(&request_id).await?;
    assert_eq!(redrive["instances"], 1);

    let after = poll(
        Duration::from_secs(120),
        "re-driven and recounted",
        || async {
            let s = app.status(&request_id).await?;
            Ok((s["channels"]["email"]["delivered"] == 2).then_some(s))
        },
    )
    .await?;
    assert_eq!(
        (&after["state"], &after["channels"]["email"]["failed"]),
        (&json!("completed"), &json!(0)),
        "{after}"
    );
    assert_eq!(app.emails_to(&app.email_of("bounce")).await?.len(), 1);
    assert_eq!(
        app.emails_to(&app.email_of("fine")).await?.len(),
        1,
        "the recipient that succeeded first time is not sent again"
    );
    let (_, dead) = app
        .get(&format!("/v1/dead-letters?request_id={request_id}"))
        .await?;
    assert_eq!(dead["dead_letters"], json!([]), "{dead}");
    let (status, again) = app
        .post(
            "/v1/dead-letters/redrive",
            Some(json!({"request_id": request_id})),
        )
        .await?;
    assert_eq!(
        (status, &again["instances"]),
        (StatusCode::OK, &json!(0)),
        "{again}"
    );
    Ok(())
}
