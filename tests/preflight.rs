//! Preflight end to end: a dry run predicts what delivery then does, and the blast-radius guard
//! refuses an audience over the tenant's limit until the sender confirms its size.

use fanout_domain::{Channel, UserId};
use fanout_store::suppressions::SuppressionReason;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, expect_status};

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_audience_is_refused_until_confirmed_and_then_completes() -> anyhow::Result<()>
{
    let app = TestApp::spawn("preflight-guard").await?;
    app.put_template(
        "launch",
        json!({"name": "Launch", "email": {"subject": "We launched", "text": "Hello {{ user.name }}"}}),
    )
    .await?;
    let fans = app.seed_followers("star", 20).await?;
    // One fan opted out of email, one address bounced before: 18 deliverable.
    app.store
        .set_preference(
            &app.tenant,
            &UserId::parse(&fans[0])?,
            Some(Channel::Email),
            None,
            false,
        )
        .await?;
    app.store
        .suppress(
            &app.tenant,
            Channel::Email,
            &app.email_of(&fans[1]),
            SuppressionReason::HardBounce,
            None,
        )
        .await?;
    let r = app
        .request(reqwest::Method::PUT, "/v1/settings/blast-radius")
        .json(&json!({"max_audience": 10}))
        .send()
        .await?;
    let setting = expect_status(r, StatusCode::OK).await?;
    assert_eq!(setting["effective"], 10, "{setting}");

    let mut trigger = json!({
        "template_id": "launch",
        "recipients_query": {"type": "followers", "of": "star"},
        "dedupe_key": "launch-1"
    });
    let (status, preview) = app
        .post("/v1/notify?dry_run=true", Some(trigger.clone()))
        .await?;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(
        preview["channels"]["email"],
        json!({"recipients": 20, "no_address": 0, "opted_out": 1, "suppressed": 1, "deliverable": 18}),
        "{preview}"
    );
    assert_eq!(preview["blast_radius"]["exceeded"], true, "{preview}");

    let (status, refusal) = app.notify(&trigger).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refusal}");
    assert_eq!(refusal["error"]["code"], "blast_radius_exceeded");
    assert_eq!(
        refusal["error"]["limit"],
        json!({"limit": 10, "source": "tenant"})
    );
    assert_eq!(refusal["error"]["estimated_audience"], 20);
    assert_eq!(refusal["error"]["override"]["field"], "confirm_audience");
    let recorded = app
        .store
        .find_request_by_dedupe_key(&app.tenant, "launch-1")
        .await?;
    assert!(recorded.is_none(), "a refused notify records nothing");

    trigger["confirm_audience"] = refusal["error"]["override"]["value"].clone();
    let (status, accepted) = app.notify(&trigger).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let request_id = accepted["request_id"].as_str().unwrap().to_owned();
    let done = app.wait_for_state(&request_id, "completed").await?;
    let email = &done["channels"]["email"];
    assert_eq!(
        (&email["delivered"], &email["suppressed"], &email["failed"]),
        (
            &preview["channels"]["email"]["deliverable"],
            &json!(2),
            &json!(0)
        ),
        "the dry run predicted the delivery: {done}"
    );
    for fan in &fans[2..] {
        assert_eq!(app.emails_to(&app.email_of(fan)).await?.len(), 1, "{fan}");
    }
    for fan in &fans[..2] {
        assert!(app.emails_to(&app.email_of(fan)).await?.is_empty(), "{fan}");
    }
    Ok(())
}
