//! Scheduled sends on the real stack: a request with `send_at` or `delay_seconds` waits on its
//! workflow's durable timer, sends nothing before its time and everything after, can be moved
//! while it waits and cancelled with nothing sent. Times are read from the sandbox's arrival
//! stamps and the status' `run_at_ms`, so the assertions hold however slow the machine is.

use std::time::Duration;

use fanout_domain::timing::format_instant;
use reqwest::StatusCode;
use serde_json::{Value, json};
use temporalio_common::protos::temporal::api::enums::v1::EventType;

use fanout_domain::UserId;
use fanout_domain::user::{Timezone, User};
use temporalio_common::protos::temporal::api::history::v1::HistoryEvent;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

use crate::helpers::{Setup, TestApp, expect_status, now_ms, poll, wait_for_timer};

fn reminder() -> Value {
    json!({"name": "Reminder", "email": {"subject": "Reminder", "text": "Hi {{ user.name }}"}})
}

async fn with_users(app: &TestApp, users: &[&str]) -> anyhow::Result<()> {
    app.put_template("reminder", reminder()).await?;
    for user in users {
        app.put_user(user, user, true).await?;
    }
    Ok(())
}

/// Posts a notify that must be accepted (202) and answers its request id.
async fn accepted(app: &TestApp, body: &Value) -> anyhow::Result<String> {
    let (status, answer) = app.notify(body).await?;
    anyhow::ensure!(status == StatusCode::ACCEPTED, "{status}: {answer}");
    Ok(answer["request_id"].as_str().unwrap_or_default().to_owned())
}

/// Checks that each of `users` got exactly one email, none of them before `at` (`what` names
/// the time in the failure).
async fn none_before(app: &TestApp, users: &[&str], at: u64, what: &str) -> anyhow::Result<()> {
    for arrived in arrivals(app, users).await? {
        anyhow::ensure!(
            arrived >= at,
            "an email arrived at {arrived}, before {what} {at}"
        );
    }
    Ok(())
}

/// The earliest arrival at the sandbox for each of `users`, once each has exactly one email.
async fn arrivals(app: &TestApp, users: &[&str]) -> anyhow::Result<Vec<u64>> {
    let mut out = Vec::new();
    for user in users {
        let emails = app.emails_to(&app.email_of(user)).await?;
        anyhow::ensure!(emails.len() == 1, "{user} got {} emails", emails.len());
        out.push(emails[0].received_at_ms);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_request_sends_nothing_before_its_time_and_everything_after()
-> anyhow::Result<()> {
    let app = TestApp::spawn("timing-send-at").await?;
    let users = ["ann", "ben", "cat"];
    with_users(&app, &users).await?;
    let send_at = now_ms() + 4_000;

    let request_id = accepted(
        &app,
        &json!({
            "template_id": "reminder",
            "recipients_query": {"type": "users", "user_ids": users},
            "send_at": format_instant(send_at as i64),
        }),
    )
    .await?;
    let waiting = app.status(&request_id).await?;
    assert_eq!(waiting["state"], "scheduled", "{waiting}");
    assert_eq!(waiting["run_at_ms"], json!(send_at), "{waiting}");

    let done = app.wait_for_state(&request_id, "completed").await?;
    assert_eq!(done["totals"]["delivered"], 3, "{done}");
    none_before(&app, &users, send_at, "send_at").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delayed_fan_out_waits_then_runs_its_whole_tree() -> anyhow::Result<()> {
    let app = TestApp::spawn("timing-delay-tree").await?;
    app.put_template("reminder", reminder()).await?;
    let followers = app.seed_followers("star", 30).await?;
    let before = now_ms();

    let request_id = accepted(
        &app,
        &json!({
            "template_id": "reminder",
            "recipients_query": {"type": "followers", "of": "star"},
            "delay_seconds": 3,
        }),
    )
    .await?;
    let waiting = app.status(&request_id).await?;
    let run_at = waiting["run_at_ms"].as_u64().expect("run_at_ms");
    assert!(run_at >= before + 3_000, "{waiting}");

    let done = app.wait_for_state(&request_id, "completed").await?;
    assert_eq!(done["path"], "tree", "{done}");
    assert_eq!(done["totals"]["delivered"], followers.len(), "{done}");
    let followers: Vec<&str> = followers.iter().map(String::as_str).collect();
    none_before(&app, &followers, run_at, "run_at").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_cancelled_while_scheduled_sends_nothing() -> anyhow::Result<()> {
    let app = TestApp::spawn("timing-cancel").await?;
    let users = ["dan", "eve"];
    with_users(&app, &users).await?;

    let request_id = accepted(
        &app,
        &json!({
            "template_id": "reminder",
            "recipients_query": {"type": "users", "user_ids": users},
            "delay_seconds": 3,
        }),
    )
    .await?;
    let run_at = app.status(&request_id).await?["run_at_ms"]
        .as_u64()
        .expect("run_at_ms");

    app.cancel(&request_id).await?;
    let cancelled = app.wait_for_state(&request_id, "cancelled").await?;
    assert_eq!(cancelled["totals"]["delivered"], 0, "{cancelled}");

    // Past the time it would have run, and a second more: still nothing.
    poll(
        Duration::from_secs(30),
        "the scheduled time passed",
        || async { Ok((now_ms() > run_at + 1_000).then_some(())) },
    )
    .await?;
    for user in users {
        assert!(app.emails_to(&app.email_of(user)).await?.is_empty());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_request_moves_until_it_starts() -> anyhow::Result<()> {
    let app = TestApp::spawn("timing-reschedule").await?;
    let users = ["fay"];
    with_users(&app, &users).await?;

    let request_id = accepted(
        &app,
        &json!({
            "template_id": "reminder",
            "recipients_query": {"type": "users", "user_ids": users},
            "delay_seconds": 3600,
        }),
    )
    .await?;
    // Moved once its timer runs, so the move cancels that timer and starts another.
    wait_for_timer(&app, &request_id).await?;
    let schedule = |body: Value| {
        app.request(
            reqwest::Method::POST,
            &format!("/v1/requests/{request_id}/schedule"),
        )
        .json(&body)
        .send()
    };

    let bad = schedule(json!({"send_at": "next tuesday"})).await?;
    let bad = expect_status(bad, StatusCode::UNPROCESSABLE_ENTITY).await?;
    assert_eq!(bad["error"]["field"], "send_at", "{bad}");

    let moved = schedule(json!({"delay_seconds": 2})).await?;
    let moved = expect_status(moved, StatusCode::OK).await?;
    let run_at = moved["run_at_ms"].as_u64().expect("run_at_ms");
    assert_eq!(app.status(&request_id).await?["run_at_ms"], json!(run_at));

    app.wait_for_state(&request_id, "completed").await?;
    let events = app.history(&request_id).await?;
    let count = |kind: EventType| events.iter().filter(|e| e.event_type() == kind).count();
    assert_eq!(
        (
            count(EventType::TimerStarted),
            count(EventType::TimerCanceled),
            count(EventType::TimerFired)
        ),
        (2, 1, 1),
        "the move cancels the first timer and the second one fires"
    );
    let at = arrivals(&app, &users).await?[0];
    assert!(
        at >= run_at,
        "the email arrived at {at}, before run_at {run_at}"
    );

    let late = schedule(json!({"delay_seconds": 60})).await?;
    let late = expect_status(late, StatusCode::CONFLICT).await?;
    assert!(
        late["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not scheduled")),
        "{late}"
    );
    Ok(())
}

/// The wall-clock time (`HH:MM:SS`) in `zone` of the instant `ms`, once that time of day is
/// still today in the zone a few seconds on (a target that crosses midnight would mean
/// tomorrow's).
async fn local_wall_time(zone: &str, lead_ms: u64) -> anyhow::Result<(u64, String)> {
    let tz = jiff::tz::TimeZone::get(zone)?;
    poll(Duration::from_secs(30), "a target before midnight", || {
        let tz = tz.clone();
        async move {
            let now = now_ms();
            let target = now + lead_ms;
            let day = |ms: u64| -> anyhow::Result<jiff::Zoned> {
                Ok(jiff::Timestamp::from_millisecond(i64::try_from(ms)?)?.to_zoned(tz.clone()))
            };
            let (today, at) = (day(now)?, day(target)?);
            Ok((today.date() == at.date()).then(|| {
                // Whole seconds: the request names a second, so the target is that second.
                let second = at.timestamp().as_second() as u64 * 1000;
                (second, at.strftime("%H:%M:%S").to_string())
            }))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn each_recipient_gets_a_local_time_send_at_that_time_in_their_own_zone() -> anyhow::Result<()>
{
    let app = TestApp::spawn("timing-local").await?;
    app.put_template("reminder", reminder()).await?;
    let zones = [
        ("kiri", "Pacific/Auckland"),
        ("amelie", "Europe/Paris"),
        ("lou", "America/Los_Angeles"),
    ];
    for (user, zone) in zones {
        let r = app
            .request(reqwest::Method::PUT, &format!("/v1/users/{user}"))
            .json(&json!({"name": user, "email": app.email_of(user), "timezone": zone}))
            .send()
            .await?;
        expect_status(r, StatusCode::OK).await?;
    }
    let everyone: Vec<&str> = zones.iter().map(|(u, _)| *u).collect();

    // One request per zone, each to all three users, at a wall time a few seconds ahead in
    // that zone: its own user gets it then; the others' same wall time is hours away.
    let mut requests = Vec::new();
    for (user, zone) in zones {
        let (target, wall) = local_wall_time(zone, 4_000).await?;
        let (status, body) = app
            .notify(&json!({
                "template_id": "reminder",
                "recipients_query": {"type": "users", "user_ids": everyone},
                "send_at_local": wall,
            }))
            .await?;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        requests.push((
            user,
            target,
            body["request_id"].as_str().unwrap().to_owned(),
        ));
    }
    for (user, target, request_id) in &requests {
        let email = poll(Duration::from_secs(60), "the local-time email", || async {
            let emails = app.emails_to(&app.email_of(user)).await?;
            Ok(emails.into_iter().next())
        })
        .await?;
        assert!(
            email.received_at_ms >= *target,
            "{user}'s email arrived at {}, before its local target {target}",
            email.received_at_ms
        );
        let receipts = app.all_receipts(request_id).await?;
        let delivered: Vec<&str> = receipts
            .iter()
            .filter(|r| r["status"] == "delivered")
            .filter_map(|r| r["user_id"].as_str())
            .collect();
        assert_eq!(delivered, [*user], "{receipts:?}");
    }
    // Nobody got anyone else's: one email each, and every request still waits for the rest.
    for user in &everyone {
        assert_eq!(app.emails_to(&app.email_of(user)).await?.len(), 1, "{user}");
    }
    for (_, _, request_id) in &requests {
        assert_eq!(app.status(request_id).await?["state"], "running");
        app.cancel(request_id).await?;
        let done = app.wait_for_state(request_id, "cancelled").await?;
        assert_eq!(done["totals"]["delivered"], 1, "{done}");
        // Three zones, three groups, one timer each: the first fired, the second was waiting.
        let events = app.history(request_id).await?;
        let count = |kind: EventType| events.iter().filter(|e| e.event_type() == kind).count();
        assert_eq!(
            (count(EventType::TimerStarted), count(EventType::TimerFired)),
            (2, 1),
            "{request_id}"
        );
    }
    Ok(())
}

/// Forty zones with forty different offsets in December (half and quarter hours included).
const FORTY_ZONES: [&str; 40] = [
    "Etc/GMT+12",
    "Pacific/Pago_Pago",
    "Pacific/Honolulu",
    "Pacific/Marquesas",
    "America/Anchorage",
    "America/Los_Angeles",
    "America/Denver",
    "America/Chicago",
    "America/New_York",
    "America/Halifax",
    "America/St_Johns",
    "America/Sao_Paulo",
    "Atlantic/South_Georgia",
    "Atlantic/Azores",
    "UTC",
    "Europe/Paris",
    "Europe/Athens",
    "Europe/Moscow",
    "Asia/Tehran",
    "Asia/Dubai",
    "Asia/Kabul",
    "Asia/Karachi",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Dhaka",
    "Asia/Yangon",
    "Asia/Bangkok",
    "Asia/Shanghai",
    "Australia/Eucla",
    "Asia/Tokyo",
    "Australia/Darwin",
    "Australia/Brisbane",
    "Australia/Adelaide",
    "Australia/Sydney",
    "Pacific/Norfolk",
    "Pacific/Fiji",
    "Pacific/Chatham",
    "Pacific/Auckland",
    "Pacific/Kiritimati",
    "Etc/GMT-12",
];

#[tokio::test(flavor = "multi_thread")]
async fn a_local_time_send_to_100_000_recipients_in_40_zones_holds_one_timer_per_zone()
-> anyhow::Result<()> {
    const RECIPIENTS: usize = 100_000;
    // Released 600 times faster than real time, the day of zones passes in under 3 minutes,
    // so the whole run's history is counted, not estimated.
    const SPEEDUP: u32 = 600;
    let app = TestApp::spawn_setup(
        "timing-local-scale",
        Setup {
            page_size: 2_000,
            local_time_speedup: SPEEDUP,
            ..Setup::default()
        },
    )
    .await?;
    app.put_template(
        "nudge",
        json!({"name": "Nudge", "in_app": {"title": "Good morning", "body": "Hi {{ user.name }}"}}),
    )
    .await?;
    // Recipient i lives in zone i % 40.
    let ids: Vec<UserId> = (0..RECIPIENTS)
        .map(|i| UserId::parse(&format!("r{i:06}")))
        .collect::<Result<_, _>>()?;
    for chunk in ids.chunks(5_000) {
        let users: Vec<User> = chunk
            .iter()
            .map(|id| {
                let i: usize = id.as_str()[1..].parse().expect("numbered ids");
                Ok(User {
                    user_id: id.clone(),
                    email: None,
                    name: Some(id.to_string()),
                    locale: None,
                    timezone: Some(Timezone::parse(FORTY_ZONES[i % 40])?),
                    devices: Vec::new(),
                    quiet_hours: None,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        app.store.upsert_users(&app.tenant, &users).await?;
    }
    app.store
        .add_followers(&app.tenant, &UserId::parse("star")?, &ids)
        .await?;

    // A wall time a few seconds ahead in Paris: every other zone's same wall time is later
    // today or tomorrow, each at its own instant.
    let (_, wall) = local_wall_time("Europe/Paris", 5_000).await?;
    let request_id = accepted(
        &app,
        &json!({
            "template_id": "nudge",
            "recipients_query": {"type": "followers", "of": "star"},
            "send_at_local": wall,
        }),
    )
    .await?;
    let done = poll(Duration::from_secs(600), "the whole run", || async {
        let status = app.status(&request_id).await?;
        Ok((status["state"] == "completed").then_some(status))
    })
    .await?;
    assert_eq!(done["totals"]["delivered"], RECIPIENTS, "{done}");

    // The plan: one group per distinct instant, which the test computes for itself.
    let events = app.history(&request_id).await?;
    let plan = plan_of(&events)?;
    let accepted = done["created_at_ms"].as_i64().expect("created_at_ms");
    let local = fanout_domain::timing::LocalTime::parse(&wall)?;
    let mut instants: Vec<i64> = FORTY_ZONES
        .iter()
        .map(|z| local.release_at(&jiff::tz::TimeZone::get(z).unwrap(), accepted))
        .collect();
    instants.sort_unstable();
    instants.dedup();
    let groups = plan["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), instants.len(), "{plan}");
    let pages: u64 = groups.iter().map(|g| g["pages"].as_u64().unwrap()).sum();
    // The request's one execution (75 pages, under the 200 a run starts before continuing as
    // new): one timer per group whose instant had not passed when its turn came (at this
    // speed the first few pass while the plan is written), a page child per page.
    let count = |kind: EventType| events.iter().filter(|e| e.event_type() == kind).count();
    let (started, fired) = (count(EventType::TimerStarted), count(EventType::TimerFired));
    assert!(
        started == fired && started <= groups.len() && started <= 200,
        "{started} timers started, {fired} fired, {} groups",
        groups.len()
    );
    assert_eq!(
        count(EventType::StartChildWorkflowExecutionInitiated) as u64,
        1 + pages,
        "the resolver and every page"
    );
    assert_eq!(count(EventType::WorkflowExecutionContinuedAsNew), 0);
    println!(
        "local-time scale: {RECIPIENTS} recipients, {} zones, {} groups, {pages} pages, {started} timers, {} events in the request's whole history",
        FORTY_ZONES.len(),
        groups.len(),
        events.len()
    );
    assert!(events.len() <= 2_000, "{}", events.len());
    Ok(())
}

/// The `plan_release` activity's result in a request's history.
fn plan_of(events: &[HistoryEvent]) -> anyhow::Result<Value> {
    let scheduled = events
        .iter()
        .find_map(|e| match &e.attributes {
            Some(Attributes::ActivityTaskScheduledEventAttributes(a))
                if a.activity_type
                    .as_ref()
                    .is_some_and(|t| t.name == "plan_release") =>
            {
                Some(e.event_id)
            }
            _ => None,
        })
        .ok_or_else(|| anyhow::anyhow!("no plan_release in the history"))?;
    let result = events
        .iter()
        .find_map(|e| match &e.attributes {
            Some(Attributes::ActivityTaskCompletedEventAttributes(a))
                if a.scheduled_event_id == scheduled =>
            {
                a.result.as_ref()
            }
            _ => None,
        })
        .and_then(|r| r.payloads.first())
        .ok_or_else(|| anyhow::anyhow!("plan_release did not complete"))?;
    Ok(serde_json::from_slice(&result.data)?)
}
