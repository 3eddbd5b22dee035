//! Preferences and the suppression list as delivery applies them: an opted-out user and a
//! suppressed address get a suppressed receipt with the reason, and nothing reaches the sink.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test(flavor = "multi_thread")]
async fn opted_out_users_and_suppressed_addresses_are_not_sent_to() -> anyhow::Result<()> {
    let app = TestApp::spawn("preferences").await?;
    app.put_template(
        "promo",
        json!({
            "name": "Promo",
            "category": "marketing",
            "email": {"subject": "Sale, {{ user.name }}", "text": "{{ data.pct }}% off"},
            "in_app": {"title": "Sale", "body": "{{ data.pct }}% off"}
        }),
    )
    .await?;
    for u in ["keen", "no-marketing-email", "no-email-at-all", "bounced"] {
        app.put_user(u, u, true).await?;
    }
    let (status, body) = app
        .post(
            "/v1/users/no-marketing-email/preferences/opt-out",
            Some(json!({"channel": "email", "category": "marketing"})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .post(
            "/v1/users/no-email-at-all/preferences/opt-out",
            Some(json!({"channel": "email"})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .post(
            "/v1/suppressions",
            Some(json!({"channel": "email", "address": app.email_of("bounced"), "reason": "hard_bounce"})),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let (status, body) = app
        .notify(&json!({
            "template_id": "promo",
            "recipients_query": {"type": "users", "user_ids": ["keen", "no-marketing-email", "no-email-at-all", "bounced"]},
            "data": {"pct": 20}
        }))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let request_id = body["request_id"].as_str().unwrap().to_owned();
    let done = app.wait_for_state(&request_id, "completed").await?;
    assert_eq!(
        (
            &done["channels"]["email"]["delivered"],
            &done["channels"]["email"]["suppressed"]
        ),
        (&json!(1), &json!(3)),
        "{done}"
    );
    assert_eq!(
        done["channels"]["in_app"]["delivered"], 4,
        "in-app was not opted out: {done}"
    );

    let receipts = app.all_receipts(&request_id).await?;
    let email_code = |user: &str| {
        receipts
            .iter()
            .find(|r| r["user_id"] == user && r["channel"] == "email")
            .map(|r| (r["status"].clone(), r["error_code"].clone()))
            .unwrap()
    };
    assert_eq!(email_code("keen"), (json!("delivered"), json!(null)));
    assert_eq!(
        email_code("no-marketing-email"),
        (json!("suppressed"), json!("opted_out"))
    );
    assert_eq!(
        email_code("no-email-at-all"),
        (json!("suppressed"), json!("opted_out"))
    );
    assert_eq!(
        email_code("bounced"),
        (json!("suppressed"), json!("suppressed_address"))
    );
    for (user, expected) in [
        ("keen", 1),
        ("no-marketing-email", 0),
        ("no-email-at-all", 0),
        ("bounced", 0),
    ] {
        assert_eq!(
            app.emails_to(&app.email_of(user)).await?.len(),
            expected,
            "{user}"
        );
    }

    // Opting back in takes effect on the next request.
    app.post(
        "/v1/users/no-marketing-email/preferences/opt-in",
        Some(json!({"channel": "email", "category": "marketing"})),
    )
    .await?;
    let (_, body) = app
        .notify(&json!({
            "template_id": "promo",
            "recipients_query": {"type": "users", "user_ids": ["no-marketing-email"]},
            "channel_prefs": ["email"],
            "data": {"pct": 30}
        }))
        .await?;
    let again = body["request_id"].as_str().unwrap().to_owned();
    app.wait_for_state(&again, "completed").await?;
    assert_eq!(
        app.emails_to(&app.email_of("no-marketing-email"))
            .await?
            .len(),
        1
    );
    Ok(())
}
