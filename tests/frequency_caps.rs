//! Frequency caps as delivery enforces them: three requests of a capped category started at
//! once to the same users deliver exactly the cap to each, on the direct path and on the tree;
//! a send that fails for good gives its slot back.

use std::time::Duration;

use fanout_domain::request::DeliveryPath;
use fanout_sandbox::{FaultStage, NewFault};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, now_ms, poll, tally};

const DAY_MS: u64 = 86_400_000;

#[tokio::test(flavor = "multi_thread")]
async fn parallel_requests_deliver_exactly_the_cap_to_each_user_direct() -> anyhow::Result<()> {
    parallel_requests_meet_the_cap(DeliveryPath::Direct).await
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_requests_deliver_exactly_the_cap_to_each_user_tree() -> anyhow::Result<()> {
    parallel_requests_meet_the_cap(DeliveryPath::Tree).await
}

/// A template of the capped category, and a cap of `max` a day on it.
async fn capped_promo(app: &TestApp, max: u32) -> anyhow::Result<()> {
    app.put_template(
        "promo",
        json!({
            "name": "Promo",
            "category": "marketing",
            "email": {"subject": "Sale, {{ user.name }}", "text": "{{ data.pct }}% off"}
        }),
    )
    .await?;
    let r = app
        .request(reqwest::Method::PUT, "/v1/frequency-caps/marketing")
        .json(&json!({"max": max, "period_seconds": 86400}))
        .send()
        .await?;
    let status = r.status();
    assert_eq!(status, StatusCode::OK, "{:?}", r.text().await);
    // The cap counts per epoch-aligned day: requests straddling 00:00 UTC would be in two
    // windows. Close to the end of one, start in the next instead.
    poll(
        Duration::from_secs(180),
        "two minutes clear of 00:00 UTC",
        || async { Ok((DAY_MS - now_ms() % DAY_MS >= 120_000).then_some(())) },
    )
    .await
}

/// Each user's email receipt of a finished request: (status, error code).
async fn outcome(app: &TestApp, request_id: &str, user: &str) -> anyhow::Result<(Value, Value)> {
    let receipts = app.all_receipts(request_id).await?;
    let mine: Vec<&Value> = receipts.iter().filter(|r| r["user_id"] == user).collect();
    assert_eq!(mine.len(), 1, "{receipts:?}");
    Ok((mine[0]["status"].clone(), mine[0]["error_code"].clone()))
}

async fn parallel_requests_meet_the_cap(path: DeliveryPath) -> anyhow::Result<()> {
    let app = TestApp::spawn_on("frequency-caps", path).await?;
    let users = ["ann", "bob", "cyd"];
    for u in users {
        app.put_user(u, u, true).await?;
    }
    capped_promo(&app, 2).await?;

    let trigger = |n: u32| {
        let app = &app;
        async move {
            app.notify(&json!({
                "template_id": "promo",
                "recipients_query": {"type": "users", "user_ids": users},
                "dedupe_key": format!("promo-{n}"),
                "data": {"pct": 10 * n}
            }))
            .await
        }
    };
    let (a, b, c) = tokio::join!(trigger(1), trigger(2), trigger(3));
    let mut request_ids = Vec::new();
    for answer in [a, b, c] {
        let (status, body) = answer?;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        request_ids.push(body["request_id"].as_str().unwrap().to_owned());
    }

    let mut receipts = Vec::new();
    for id in &request_ids {
        let done = app.wait_for_state(id, "completed").await?;
        assert_eq!(done["path"], path.as_str(), "{done}");
        receipts.extend(app.all_receipts(id).await?);
    }
    assert_eq!(receipts.len(), 9, "{receipts:?}");
    let outcomes = tally(&receipts, |r| {
        format!(
            "{} {} {}",
            r["user_id"].as_str().unwrap_or_default(),
            r["status"].as_str().unwrap_or_default(),
            r["error_code"].as_str().unwrap_or("-")
        )
    });
    for u in users {
        assert_eq!(
            outcomes.get(&format!("{u} delivered -")),
            Some(&2),
            "{u}: {outcomes:?}"
        );
        assert_eq!(
            outcomes.get(&format!("{u} suppressed frequency_capped")),
            Some(&1),
            "{u}: {outcomes:?}"
        );
        // What the user would see: two emails, not three.
        assert_eq!(app.emails_to(&app.email_of(u)).await?.len(), 2, "{u}");
    }
    Ok(())
}

/// A slot counts deliveries: a send rejected for good gives its slot back, so the user's next
/// message of the category is delivered, and the one after that is capped.
#[tokio::test(flavor = "multi_thread")]
async fn a_permanently_failed_send_gives_its_slot_back() -> anyhow::Result<()> {
    let app = TestApp::spawn("frequency-caps-release").await?;
    for u in ["flaky", "steady"] {
        app.put_user(u, u, true).await?;
    }
    capped_promo(&app, 1).await?;
    // The relay refuses flaky's first message for good (550), then accepts.
    app.smtp_fault(&NewFault {
        rcpt: app.email_of("flaky"),
        code: 550,
        message: "550 injected".into(),
        stage: FaultStage::Rcpt,
        times: Some(1),
        delay_ms: 0,
    })
    .await?;

    let mut outcomes = Vec::new();
    for n in 1..=3 {
        let (status, body) = app
            .notify(&json!({
                "template_id": "promo",
                "recipients_query": {"type": "users", "user_ids": ["flaky", "steady"]},
                "dedupe_key": format!("release-{n}"),
                "data": {"pct": n}
            }))
            .await?;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let request_id = body["request_id"].as_str().unwrap().to_owned();
        app.wait_for_state(&request_id, "completed").await?;
        outcomes.push((
            outcome(&app, &request_id, "flaky").await?,
            outcome(&app, &request_id, "steady").await?,
        ));
    }
    let failed = (json!("failed"), json!("smtp_550"));
    let delivered = (json!("delivered"), json!(null));
    let capped = (json!("suppressed"), json!("frequency_capped"));
    assert_eq!(
        outcomes,
        vec![
            (failed, delivered.clone()),
            (delivered, capped.clone()),
            (capped.clone(), capped),
        ]
    );
    assert_eq!(app.emails_to(&app.email_of("flaky")).await?.len(), 1);
    assert_eq!(app.emails_to(&app.email_of("steady")).await?.len(), 1);
    Ok(())
}
