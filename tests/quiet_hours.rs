//! Quiet hours on the real stack: a recipient inside their window (their own, or the tenant's
//! default) gets a `deferred` receipt with its release time and the message when the window
//! ends; a `high` priority request, and a category the tenant lets bypass quiet hours, go out
//! at once. Windows are computed by the test to end a few seconds ahead in the recipient's
//! zone; the test workers release deferrals on the second. Times are read from the sandbox's
//! arrival stamps and the receipts, so the assertions hold however slow the machine is.

use fanout_domain::UnixMillis;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use reqwest::StatusCode;
use serde_json::{Value, json};
use temporalio_common::protos::temporal::api::enums::v1::EventType;

use crate::helpers::{Setup, TestApp, expect_status, now_ms, poll};

/// How far ahead each test's window ends: long enough for the first delivery round to run
/// inside it on a loaded machine, short enough to wait out.
const WINDOW_LEFT_MS: u64 = 8_000;

/// Email, which quiet hours hold back, and in-app, which they never do.
fn template(name: &str, category: &str) -> Value {
    json!({
        "name": name,
        "category": category,
        "email": {"subject": name, "text": "Hi {{ user.name }}"},
        "in_app": {"title": name, "body": "Hi {{ user.name }}"}
    })
}

/// The wall time (`HH:MM:SS`) of instant `at_ms` in `zone`.
fn wall(zone: &str, at_ms: u64) -> anyhow::Result<String> {
    let at = Timestamp::from_millisecond(i64::try_from(at_ms)?)?;
    Ok(at
        .to_zoned(TimeZone::get(zone)?)
        .strftime("%H:%M:%S")
        .to_string())
}

/// A window that opened an hour ago in `zone` and ends at `ends_ms` (to the second).
fn window(zone: &str, ends_ms: u64) -> anyhow::Result<Value> {
    Ok(json!({"start": wall(zone, ends_ms - 3_600_000)?, "end": wall(zone, ends_ms)?}))
}

/// Where a window ending at `ends_ms` releases its deferrals: its end to the second (the wall
/// time drops the milliseconds), which the tests' one-second bucket keeps.
fn release_of(ends_ms: u64) -> UnixMillis {
    (ends_ms / 1_000 * 1_000) as UnixMillis
}

async fn put_profile(app: &TestApp, user: &str, profile: Value) -> anyhow::Result<()> {
    let mut body = json!({"name": user, "email": app.email_of(user)});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), profile.as_object()) {
        body.extend(extra.clone());
    }
    let r = app
        .request(reqwest::Method::PUT, &format!("/v1/users/{user}"))
        .json(&body)
        .send()
        .await?;
    expect_status(r, StatusCode::OK).await?;
    Ok(())
}

async fn accepted(app: &TestApp, body: Value) -> anyhow::Result<String> {
    let (status, answer) = app.notify(&body).await?;
    anyhow::ensure!(status == StatusCode::ACCEPTED, "{status}: {answer}");
    Ok(answer["request_id"].as_str().unwrap_or_default().to_owned())
}

/// Waits until `user`'s receipt of `request_id` is deferred and returns its release time.
async fn deferred_until(app: &TestApp, request_id: &str, user: &str) -> anyhow::Result<u64> {
    poll(
        std::time::Duration::from_secs(30),
        &format!("{user} deferred"),
        || async {
            let receipts = app.all_receipts_for_user(request_id, user).await?;
            Ok(receipts
                .iter()
                .find(|r| r["status"] == "deferred" && r["channel"] == "email")
                .and_then(|r| {
                    assert_eq!(r["error_code"], "quiet_hours", "{r}");
                    r["release_at_ms"].as_u64()
                }))
        },
    )
    .await
}

/// The arrival time of `user`'s one email.
async fn arrival(app: &TestApp, user: &str) -> anyhow::Result<u64> {
    let emails = app.emails_to(&app.email_of(user)).await?;
    anyhow::ensure!(emails.len() == 1, "{user} got {} emails", emails.len());
    Ok(emails[0].received_at_ms)
}

/// After a request completed: `user`'s email receipt is delivered and still names its
/// release, and the email arrived after it; their in-app message went out at once.
async fn delivered_after_release(
    app: &TestApp,
    request_id: &str,
    user: &str,
    release: u64,
) -> anyhow::Result<()> {
    let receipts = app.all_receipts_for_user(request_id, user).await?;
    anyhow::ensure!(receipts.len() == 2, "{user}: {receipts:?}");
    for r in &receipts {
        assert_eq!(r["status"], "delivered", "{r}");
        if r["channel"] == "email" {
            assert_eq!(r["release_at_ms"], json!(release), "{r}");
        } else {
            assert_eq!(
                r["release_at_ms"],
                Value::Null,
                "in-app is never deferred: {r}"
            );
            let at = r["updated_at_ms"].as_u64().unwrap_or(u64::MAX);
            assert!(at < release, "{user}'s in-app message waited until {at}");
        }
    }
    let at = arrival(app, user).await?;
    assert!(
        at >= release,
        "{user}'s email arrived at {at}, before {release}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_in_quiet_hours_gets_it_when_they_end_and_a_high_priority_one_at_once()
-> anyhow::Result<()> {
    let app = TestApp::spawn("quiet-direct").await?;
    direct(&app).await.map(drop)
}

/// The direct path's scenario (also recorded for replay); answers the deferred request's id.
pub(crate) async fn direct(app: &TestApp) -> anyhow::Result<String> {
    app.put_template("reminder", template("Reminder", "social"))
        .await?;
    let ends = now_ms() + WINDOW_LEFT_MS;
    let release = release_of(ends) as u64;
    // Two users asleep in Paris; one awake (no window, and the tenant sets none).
    for user in ["owl", "owl-urgent"] {
        put_profile(
            app,
            user,
            json!({"timezone": "Europe/Paris", "quiet_hours": window("Europe/Paris", ends)?}),
        )
        .await?;
    }
    app.put_user("lark", "lark", true).await?;

    let normal = accepted(
        app,
        json!({
            "template_id": "reminder",
            "recipients_query": {"type": "users", "user_ids": ["owl", "lark"]},
        }),
    )
    .await?;
    let urgent = accepted(
        app,
        json!({
            "template_id": "reminder",
            "recipients_query": {"type": "users", "user_ids": ["owl-urgent"]},
            "priority": "high",
        }),
    )
    .await?;

    assert_eq!(deferred_until(app, &normal, "owl").await?, release);
    let waiting = app.status(&normal).await?;
    assert_eq!(waiting["state"], "running", "{waiting}");
    assert_eq!(waiting["totals"]["deferred"], 1, "{waiting}");
    // The high one does not wait, nor does the user outside quiet hours.
    app.wait_for_state(&urgent, "completed").await?;
    let urgent_at = arrival(app, "owl-urgent").await?;
    assert!(
        urgent_at < release,
        "high priority waited until {urgent_at}"
    );
    let lark_at = poll(
        std::time::Duration::from_secs(30),
        "lark's email",
        || async {
            let emails = app.emails_to(&app.email_of("lark")).await?;
            Ok(emails.first().map(|e| e.received_at_ms))
        },
    )
    .await?;
    assert!(lark_at < release, "lark waited until {lark_at}");

    let done = app.wait_for_state(&normal, "completed").await?;
    // Two users on email and in-app, each counted once.
    assert_eq!(done["totals"]["delivered"], 4, "{done}");
    delivered_after_release(app, &normal, "owl", release).await?;
    // One timer for the release, none per recipient.
    let timers = app
        .history(&normal)
        .await?
        .iter()
        .filter(|e| e.event_type() == EventType::TimerStarted)
        .count();
    assert_eq!(timers, 1, "timers in the direct request's history");
    Ok(normal)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fan_out_releases_the_tenants_quiet_users_on_one_timer_and_lets_a_bypass_category_through()
-> anyhow::Result<()> {
    let app = TestApp::spawn_setup("quiet-tree", tree_setup()).await?;
    tree(&app).await.map(drop)
}

/// Pages of two, every request down the tree.
pub(crate) fn tree_setup() -> Setup {
    Setup {
        page_size: 2,
        direct_max_recipients: 0,
        ..Setup::default()
    }
}

/// The tree's scenario (also recorded for replay); answers the fan-out's id.
pub(crate) async fn tree(app: &TestApp) -> anyhow::Result<String> {
    app.put_template("reminder", template("Reminder", "social"))
        .await?;
    app.put_template("code", template("Code", "security"))
        .await?;
    let ends = now_ms() + WINDOW_LEFT_MS;
    let release = release_of(ends) as u64;
    // The tenant's default window (in UTC, its default zone), with security codes let through.
    let r = app
        .request(reqwest::Method::PUT, "/v1/settings/quiet-hours")
        .json(&json!({"default": window("UTC", ends)?, "bypass_categories": ["security"]}))
        .send()
        .await?;
    let setting = expect_status(r, StatusCode::OK).await?;
    assert_eq!(
        setting["bypass_categories"],
        json!(["security"]),
        "{setting}"
    );
    let sleepers = ["s1", "s2", "s3", "s4", "s5"];
    for user in sleepers {
        app.put_user(user, user, true).await?;
    }
    // A user whose own window (later today in Tokyo) overrides the tenant's.
    put_profile(
        app,
        "day",
        json!({
            "timezone": "Asia/Tokyo",
            "quiet_hours": {"start": wall("Asia/Tokyo", now_ms() + 7_200_000)?,
                            "end": wall("Asia/Tokyo", now_ms() + 10_800_000)?}
        }),
    )
    .await?;
    app.put_user("coder", "coder", true).await?;

    let mut audience: Vec<&str> = sleepers.to_vec();
    audience.push("day");
    let fan_out = accepted(
        app,
        json!({
            "template_id": "reminder",
            "recipients_query": {"type": "users", "user_ids": audience},
        }),
    )
    .await?;
    let code = accepted(
        app,
        json!({
            "template_id": "code",
            "recipients_query": {"type": "users", "user_ids": ["coder"]},
        }),
    )
    .await?;

    for user in sleepers {
        assert_eq!(deferred_until(app, &fan_out, user).await?, release);
    }
    app.wait_for_state(&code, "completed").await?;
    let code_at = arrival(app, "coder").await?;
    assert!(
        code_at < release,
        "the security code waited until {code_at}"
    );

    let done = app.wait_for_state(&fan_out, "completed").await?;
    assert_eq!(done["path"], "tree", "{done}");
    // Six users on email and in-app, each counted once: the release pages leave the in-app
    // deliveries their first pages made alone.
    assert_eq!(done["totals"]["delivered"], 12, "{done}");
    assert_eq!(done["totals"]["total"], 12, "{done}");
    let day_at = arrival(app, "day").await?;
    assert!(day_at < release, "day waited until {day_at}");
    for user in sleepers {
        delivered_after_release(app, &fan_out, user, release).await?;
    }
    // The five deferred recipients went out on one timer, on three pages of their own.
    let history = app.history(&fan_out).await?;
    let count = |kind: EventType| history.iter().filter(|e| e.event_type() == kind).count();
    assert_eq!(count(EventType::TimerStarted), 1, "timers");
    assert_eq!(
        count(EventType::StartChildWorkflowExecutionInitiated),
        1 + 3 + 3,
        "the resolver, the snapshot's 3 pages and the 3 release pages"
    );
    Ok(fan_out)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_cancelled_while_deferred_sends_nothing_more() -> anyhow::Result<()> {
    let app = TestApp::spawn("quiet-cancel").await?;
    app.put_template("reminder", template("Reminder", "social"))
        .await?;
    // A window ending in an hour: the request would wait that long.
    let ends = now_ms() + 3_600_000;
    put_profile(
        &app,
        "owl",
        json!({"timezone": "America/Los_Angeles",
               "quiet_hours": window("America/Los_Angeles", ends)?}),
    )
    .await?;
    let request_id = accepted(
        &app,
        json!({
            "template_id": "reminder",
            "recipients_query": {"type": "users", "user_ids": ["owl"]},
        }),
    )
    .await?;
    deferred_until(&app, &request_id, "owl").await?;
    app.cancel(&request_id).await?;
    let done = app.wait_for_state(&request_id, "cancelled").await?;
    assert_eq!(done["totals"]["cancelled"], 1, "the deferred email: {done}");
    assert_eq!(done["totals"]["delivered"], 1, "the in-app message: {done}");
    let emails = app.emails_to(&app.email_of("owl")).await?;
    assert!(
        emails.is_empty(),
        "{} emails after the cancel",
        emails.len()
    );
    Ok(())
}
