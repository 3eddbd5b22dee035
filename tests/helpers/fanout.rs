//! Fan-out scenarios the orchestration and kill-switch tests share: a `post` template, followers
//! of `star`, and a slow SMTP sink to keep a fan-out running while the test acts on it.

use std::time::Duration;

use fanout_sandbox::{FaultStage, NewFault};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{TestApp, poll};

/// The `post` template: email and in-app.
pub fn post_template() -> Value {
    json!({
        "name": "New post",
        "email": {"subject": "{{ data.actor }} posted", "text": "Hi {{ user.name }}, {{ data.actor }} posted."},
        "in_app": {"title": "{{ data.actor }} posted", "body": "Have a look, {{ user.name }}."}
    })
}

/// Makes every send to this test's domain take `delay_ms` (accepted normally afterwards).
pub async fn slow_sink(app: &TestApp, delay_ms: u64) -> anyhow::Result<()> {
    app.smtp_fault(&NewFault {
        rcpt: format!("@{}.test", app.tenant),
        code: 250,
        message: "ok, slowly".into(),
        stage: FaultStage::Rcpt,
        times: None,
        delay_ms,
    })
    .await
    .map(|_| ())
}

/// Notifies the followers of `star` with the `post` template on `channels`.
pub async fn notify_followers(app: &TestApp, channels: &[&str]) -> anyhow::Result<String> {
    let (status, body) = app
        .notify(&json!({
            "template_id": "post",
            "recipients_query": {"type": "followers", "of": "star"},
            "channel_prefs": channels,
            "data": {"actor": "Star"}
        }))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    Ok(body["request_id"].as_str().unwrap().to_owned())
}

/// Caps a running request at `per_second` deliveries (`None` lifts the cap).
pub async fn set_rate(
    app: &TestApp,
    request_id: &str,
    per_second: Option<u64>,
) -> anyhow::Result<()> {
    let (status, body) = app
        .post(
            &format!("/v1/requests/{request_id}/rate"),
            Some(json!({"per_second": per_second})),
        )
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    Ok(())
}

/// Emails this test's domain received so far.
pub async fn total_emails(app: &TestApp) -> anyhow::Result<usize> {
    Ok(app.emails_per_recipient().await?.values().sum())
}

/// Waits until the request's status says paused, lets the sends in flight land, then checks
/// that no email arrives for two seconds; returns how many had arrived. `why` names what held
/// the request in the failure messages.
pub async fn assert_holding(
    app: &TestApp,
    request_id: &str,
    followers: usize,
    why: &str,
) -> anyhow::Result<usize> {
    let paused = poll(Duration::from_secs(5), "paused status", || async {
        let s = app.status(request_id).await?;
        Ok((s["paused"] == true).then_some(s))
    })
    .await?;
    assert_eq!(paused["state"], "running");
    // Once the sends in flight have landed (the sink quiet for longer than its delay), nothing
    // moves: the count is still the same after a further two seconds of holding.
    let held = app.quiet_email_count(Duration::from_secs(1)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(total_emails(app).await?, held, "emails arrived while {why}");
    assert!(held < followers, "finished before the {why} took effect");
    Ok(held)
}
