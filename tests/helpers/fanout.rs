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

/// Waits until `at_least` emails arrived at this test's domain, so the fan-out is visibly under
/// way.
pub async fn first_emails(app: &TestApp, at_least: usize) -> anyhow::Result<()> {
    poll(Duration::from_secs(60), "first emails", || async {
        Ok((total_emails(app).await? >= at_least).then_some(()))
    })
    .await
}

/// Pages a fan-out keeps in flight (the notification workflow's `WINDOW`).
pub const PAGES_IN_FLIGHT: usize = 8;

/// The most emails that may still land once a pause or a cancel is in the store, for a request
/// with `pages` pages in flight, each sending `concurrency` at a time: every send already past
/// the gate, and one more per send slot let through by a view of the controls up to 100 ms
/// stale (each send takes longer than that at these tests' slow sinks).
pub fn past_the_gate(pages: usize, concurrency: usize) -> usize {
    2 * pages * concurrency
}

/// How long the sink must stay quiet before a held request counts as holding: several times the
/// slowest sink's delay (500 ms), during which a request still sending would deliver dozens.
const HOLDING_QUIET: Duration = Duration::from_secs(3);

/// Waits until the request's status says paused, then until the sink has been quiet for
/// [`HOLDING_QUIET`], and checks that at most `in_flight` emails (see [`past_the_gate`]) landed
/// after the status said paused; returns how many had arrived. `why` names what held the
/// request in the failure messages.
///
/// A send in flight when the pause landed may arrive late on a slow machine: it restarts the
/// quiet wait rather than failing it, so slowness only makes this wait longer. What a request
/// that holds cannot do, however slow the machine, is deliver more than `in_flight` after the
/// pause, or all of its `followers`; one that does not hold never goes quiet (the wait times
/// out) or finishes.
pub async fn assert_holding(
    app: &TestApp,
    request_id: &str,
    followers: usize,
    in_flight: usize,
    why: &str,
) -> anyhow::Result<usize> {
    let paused = poll(Duration::from_secs(60), "paused status", || async {
        let s = app.status(request_id).await?;
        Ok((s["paused"] == true).then_some(s))
    })
    .await?;
    assert_eq!(paused["state"], "running");
    // Status reads the controls every send obeys: from here on only sends already past the
    // gate may land.
    let at_pause = total_emails(app).await?;
    let held = app.quiet_email_count(HOLDING_QUIET).await?;
    assert!(
        held - at_pause <= in_flight,
        "{} emails arrived after the request was {why} (bound {in_flight})",
        held - at_pause
    );
    assert!(held < followers, "finished before the {why} took effect");
    Ok(held)
}
