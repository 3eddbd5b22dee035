//! Frequency caps as delivery enforces them: three requests of a capped category started at
//! once to the same users deliver exactly the cap to each, on the direct path and on the tree.

use std::time::Duration;

use fanout_domain::request::DeliveryPath;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, now_ms, tally};

const DAY_MS: u64 = 86_400_000;

#[tokio::test(flavor = "multi_thread")]
async fn parallel_requests_deliver_exactly_the_cap_to_each_user_direct() -> anyhow::Result<()> {
    parallel_requests_meet_the_cap(DeliveryPath::Direct).await
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_requests_deliver_exactly_the_cap_to_each_user_tree() -> anyhow::Result<()> {
    parallel_requests_meet_the_cap(DeliveryPath::Tree).await
}

async fn parallel_requests_meet_the_cap(path: DeliveryPath) -> anyhow::Result<()> {
    let app = TestApp::spawn_on("frequency-caps", path).await?;
    app.put_template(
        "promo",
        json!({
            "name": "Promo",
            "category": "marketing",
            "email": {"subject": "Sale, {{ user.name }}", "text": "{{ data.pct }}% off"}
        }),
    )
    .await?;
    let users = ["ann", "bob", "cyd"];
    for u in users {
        app.put_user(u, u, true).await?;
    }
    let (status, body) = app
        .request(reqwest::Method::PUT, "/v1/frequency-caps/marketing")
        .json(&json!({"max": 2, "period_seconds": 86400}))
        .send()
        .await
        .map(|r| (r.status(), r))?;
    assert_eq!(status, StatusCode::OK, "{:?}", body.text().await);

    // The cap counts per epoch-aligned day: three requests straddling 00:00 UTC would be in two
    // windows. Close to the end of one, start in the next instead.
    let into_day = now_ms() % DAY_MS;
    if DAY_MS - into_day < 120_000 {
        tokio::time::sleep(Duration::from_millis(DAY_MS - into_day + 1_000)).await;
    }

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
