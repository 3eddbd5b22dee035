//! The workflow tree at work: thousands of followers paged through child workflows, and
//! control while running (pause, resume, cancel from the API and from the Temporal CLI).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::fanout::{
    PAGES_IN_FLIGHT, assert_holding, first_emails, notify_followers, past_the_gate,
    post_template as template, set_rate, slow_sink, total_emails,
};
use crate::helpers::{TestApp, busiest_window, now_ms, poll};

#[tokio::test(flavor = "multi_thread")]
async fn thousands_of_followers_each_get_exactly_one_email_and_one_inbox_row() -> anyhow::Result<()>
{
    const FOLLOWERS: usize = 2_500;
    // 13 pages of 200: more than the window of 8, so pages are started as others finish.
    let app = TestApp::spawn_with("followers", 200, 32).await?;
    app.put_template("post", template()).await?;
    let ids = app.seed_followers("star", FOLLOWERS).await?;
    let request_id = notify_followers(&app, &["email", "in_app"]).await?;

    let done = poll(Duration::from_secs(180), "fan-out completed", || async {
        let s = app.status(&request_id).await?;
        Ok((s["state"] == "completed").then_some(s))
    })
    .await?;
    assert_eq!(done["pages_total"], 13, "{done}");
    assert_eq!(done["pages_done"], 13, "{done}");
    for channel in ["email", "in_app"] {
        let c = &done["channels"][channel];
        assert_eq!(
            (&c["total"], &c["delivered"], &c["pending"]),
            (&json!(FOLLOWERS), &json!(FOLLOWERS), &json!(0)),
            "{done}"
        );
    }

    let emails = app.emails_per_recipient().await?;
    assert_eq!(emails.len(), FOLLOWERS, "distinct recipients");
    let repeated: Vec<_> = emails.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        repeated.is_empty(),
        "recipients with more than one email: {repeated:?}"
    );
    for id in &ids {
        assert_eq!(emails.get(&app.email_of(id)), Some(&1), "{id}");
        let user = fanout_domain::UserId::parse(id)?;
        let inbox = app.store.list_inbox(&app.tenant, &user, None, 10).await?;
        assert_eq!(inbox.len(), 1, "{id} inbox");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_mid_fanout_stops_sending_and_records_the_rest_as_cancelled() -> anyhow::Result<()> {
    const FOLLOWERS: usize = 600;
    const CONCURRENCY: usize = 8;
    let app = TestApp::spawn_with("cancel", 50, CONCURRENCY).await?;
    app.put_template("post", template()).await?;
    app.seed_followers("star", FOLLOWERS).await?;
    slow_sink(&app, 500).await?;
    let request_id = notify_followers(&app, &["email"]).await?;

    first_emails(&app, 20).await?;
    let (status, body) = app
        .post("/v1/cancel", Some(json!({"request_id": request_id})))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let at_cancel = total_emails(&app).await?;

    let done = app.wait_for_state(&request_id, "cancelled").await?;
    // Let any straggler (500 ms at the sink) land before counting for good.
    let after = app.quiet_email_count(Duration::from_secs(1)).await?;
    // The cancel is in the store when the call returns: only sends already past the gate land.
    let in_flight_bound = past_the_gate(PAGES_IN_FLIGHT, CONCURRENCY);
    assert!(
        after - at_cancel <= in_flight_bound,
        "{} emails arrived after cancel returned (bound {in_flight_bound})",
        after - at_cancel
    );
    assert!(
        after < FOLLOWERS,
        "cancel did not stop the fan-out: {after} of {FOLLOWERS}"
    );

    let email = &done["channels"]["email"];
    let delivered = email["delivered"].as_u64().unwrap();
    assert_eq!(
        delivered as usize, after,
        "receipts agree with the sink: {done}"
    );
    assert_eq!(
        email["cancelled"].as_u64().unwrap(),
        FOLLOWERS as u64 - delivered,
        "{done}"
    );
    assert_eq!(email["pending"], 0, "{done}");
    let (status, _) = app
        .post("/v1/cancel", Some(json!({"request_id": request_id})))
        .await?;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a cancelled request cannot be cancelled again"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_holds_deliveries_and_resume_completes_them() -> anyhow::Result<()> {
    const FOLLOWERS: usize = 300;
    const CONCURRENCY: usize = 8;
    let app = TestApp::spawn_with("pause", 50, CONCURRENCY).await?;
    app.put_template("post", template()).await?;
    app.seed_followers("star", FOLLOWERS).await?;
    slow_sink(&app, 300).await?;
    let request_id = notify_followers(&app, &["email"]).await?;

    first_emails(&app, 10).await?;
    let (status, body) = app
        .post(&format!("/v1/requests/{request_id}/pause"), None)
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let in_flight = past_the_gate(PAGES_IN_FLIGHT, CONCURRENCY);
    assert_holding(&app, &request_id, FOLLOWERS, in_flight, "paused").await?;

    let (status, _) = app
        .post(&format!("/v1/requests/{request_id}/resume"), None)
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED);
    app.wait_for_state(&request_id, "completed").await?;
    let emails = app.emails_per_recipient().await?;
    assert_eq!(emails.len(), FOLLOWERS);
    assert!(
        emails.values().all(|n| *n == 1),
        "a recipient got two emails"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_from_the_temporal_cli_has_the_same_effect() -> anyhow::Result<()> {
    const FOLLOWERS: usize = 400;
    let app = TestApp::spawn_with("cli-cancel", 50, 8).await?;
    app.put_template("post", template()).await?;
    app.seed_followers("star", FOLLOWERS).await?;
    slow_sink(&app, 500).await?;
    let request_id = notify_followers(&app, &["email"]).await?;
    first_emails(&app, 10).await?;

    let output = std::process::Command::new(&app.shared.temporal_bin)
        .args(["workflow", "cancel", "--workflow-id", &request_id])
        .args(["--address", &app.shared.temporal_address])
        .output()?;
    assert!(
        output.status.success(),
        "temporal workflow cancel: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let done = app.wait_for_state(&request_id, "cancelled").await?;
    let after = app.quiet_email_count(Duration::from_secs(1)).await?;
    assert!(after < FOLLOWERS, "the CLI cancel did not stop the fan-out");
    let email = &done["channels"]["email"];
    assert_eq!(
        email["delivered"].as_u64().unwrap() as usize,
        after,
        "{done}"
    );
    assert_eq!(
        email["cancelled"].as_u64().unwrap() as usize,
        FOLLOWERS - after,
        "{done}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limit_caps_a_running_request() -> anyhow::Result<()> {
    const FOLLOWERS: usize = 400;
    const RATE: usize = 10;
    const CONCURRENCY: usize = 8;
    let app = TestApp::spawn_with("rate", 50, CONCURRENCY).await?;
    app.put_template("post", template()).await?;
    app.seed_followers("star", FOLLOWERS).await?;
    slow_sink(&app, 200).await?;
    let request_id = notify_followers(&app, &["email"]).await?;
    first_emails(&app, 10).await?;

    // The cap is set while the request is held, so that every send it started uncapped has
    // landed first: each email that arrives after the resume went through the gate under the
    // cap, and the sandbox's arrival times show what the cap let through.
    let (status, body) = app
        .post(&format!("/v1/requests/{request_id}/pause"), None)
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let in_flight = past_the_gate(PAGES_IN_FLIGHT, CONCURRENCY);
    assert_holding(&app, &request_id, FOLLOWERS, in_flight, "paused").await?;
    set_rate(&app, &request_id, Some(RATE as u64)).await?;
    let limited = poll(Duration::from_secs(60), "rate in status", || async {
        let s = app.status(&request_id).await?;
        Ok((s["rate_per_second"] == RATE).then_some(s))
    })
    .await?;
    assert_eq!(limited["state"], "running", "{limited}");
    let resumed_at = now_ms();
    let (status, body) = app
        .post(&format!("/v1/requests/{request_id}/resume"), None)
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // It keeps delivering under the cap: three seconds' worth (longer on a slow machine).
    let capped = poll(
        Duration::from_secs(120),
        "deliveries under the cap",
        || async {
            let times: Vec<u64> = app
                .arrivals()
                .await?
                .iter()
                .map(|a| a.at_ms)
                .filter(|t| *t >= resumed_at)
                .collect();
            Ok((times.len() >= 3 * RATE).then_some(times))
        },
    )
    .await?;
    // The cap holds in every second: the bucket holds one token (a tenth of a second at 10/s),
    // and SMTP latency may bunch arrivals admitted up to 0.9 s apart into one second.
    let busiest = busiest_window(&capped, 1_000);
    assert!(
        busiest <= 2 * RATE,
        "{busiest} emails within one second under a {RATE}/s cap: {capped:?}"
    );

    set_rate(&app, &request_id, None).await?;
    app.wait_for_state(&request_id, "completed").await?;
    let emails = app.emails_per_recipient().await?;
    assert_eq!(emails.len(), FOLLOWERS);
    assert!(emails.values().all(|n| *n == 1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_deleted_while_a_request_runs_gets_nothing_more() -> anyhow::Result<()> {
    const FOLLOWERS: usize = 1_000;
    // 20 pages of 50 through a window of 8, 8 sends at a time at 200 ms each: a page takes
    // over a second, and the last page starts seconds after the trigger.
    let app = TestApp::spawn_with("gdpr", 50, 8).await?;
    app.put_template("post", template()).await?;
    let ids = app.seed_followers("star", FOLLOWERS).await?;
    slow_sink(&app, 200).await?;
    let request_id = notify_followers(&app, &["email", "in_app"]).await?;
    // Erase, once the first emails land, two users of the resolved snapshot: the last one of
    // page 0 (its profile already loaded by a delivery in progress) and one on the last page.
    first_emails(&app, 1).await?;
    let erased = [ids[49].clone(), ids[FOLLOWERS - 1].clone()];
    for user in &erased {
        let r = app
            .request(reqwest::Method::DELETE, &format!("/v1/users/{user}"))
            .send()
            .await?;
        let status = r.status();
        assert_eq!(status, StatusCode::NO_CONTENT, "{}", r.text().await?);
    }

    let done = app.wait_for_state(&request_id, "completed").await?;
    let emails = app.emails_per_recipient().await?;
    assert_eq!(emails.len(), FOLLOWERS - erased.len());
    for user in &erased {
        assert_eq!(
            emails.get(&app.email_of(user)),
            None,
            "{user} was emailed after erasure"
        );
        assert!(
            app.inbox(user).await?.is_empty(),
            "{user} still has inbox rows"
        );
        let receipts = app.all_receipts_for_user(&request_id, user).await?;
        let email = receipts.iter().find(|r| r["channel"] == "email");
        assert!(
            email.is_some_and(|r| r["status"] == "suppressed" && r["error_code"] == "unknown_user"),
            "{receipts:?}"
        );
    }
    // The last page started after the erasure: nothing at all for that user. (Page 0's in-app
    // delivery is instant and may have happened before the erasure, which then removed it.)
    let last = app.all_receipts_for_user(&request_id, &erased[1]).await?;
    assert_eq!(last.len(), 2, "{last:?}");
    assert!(last.iter().all(|r| r["status"] == "suppressed"), "{last:?}");
    let email = &done["channels"]["email"];
    assert_eq!(
        (&email["delivered"], &email["suppressed"]),
        (&json!(FOLLOWERS - erased.len()), &json!(erased.len())),
        "{done}"
    );
    let in_app = &done["channels"]["in_app"];
    let suppressed = in_app["suppressed"].as_u64().unwrap();
    assert!((1..=2).contains(&suppressed), "{done}");
    assert_eq!(
        in_app["delivered"].as_u64().unwrap() + suppressed,
        FOLLOWERS as u64,
        "{done}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn status_moves_while_a_rate_limited_request_delivers_and_never_falls() -> anyhow::Result<()>
{
    // 6,000 followers in pages of 2,000, capped at 600 deliveries a second: about 10 s in
    // which no page finishes for seconds at a time. Status is read from the store, not the
    // workflow, and must still move every second or so.
    const FOLLOWERS: usize = 6_000;
    const RATE: u64 = 600;
    let app = TestApp::spawn_with("live-status", 2_000, 32).await?;
    app.put_template("post", template()).await?;
    app.seed_followers("star", FOLLOWERS).await?;
    let request_id = notify_followers(&app, &["email"]).await?;
    set_rate(&app, &request_id, Some(RATE)).await?;

    // Every status read while the request runs, until it completes.
    let mut seen: Vec<(u64, u64)> = Vec::new();
    let mut capped = false;
    let done = poll(
        Duration::from_secs(300),
        "the request to complete",
        || async {
            let s = app.status(&request_id).await?;
            Ok(Some(s).filter(|s| s["state"] == "completed"))
        },
    );
    tokio::pin!(done);
    let done = loop {
        tokio::select! {
            done = &mut done => break done?,
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                let s = app.status(&request_id).await?;
                if s["state"] == "running" {
                    assert_eq!(s["source"], "receipts", "{s}");
                    capped |= s["rate_per_second"] == RATE;
                    seen.push((
                        s["channels"]["email"]["delivered"].as_u64().unwrap_or(0),
                        s["pages_done"].as_u64().unwrap_or(0),
                    ));
                }
            }
        }
    };
    let delivered: Vec<u64> = seen.iter().map(|s| s.0).collect();
    let rises = delivered.windows(2).filter(|w| w[1] > w[0]).count();
    println!(
        "live status: delivered rose {rises} times over {} reads: {delivered:?}",
        seen.len()
    );
    assert!(capped, "status never showed the rate cap: {seen:?}");
    assert!(
        seen.windows(2)
            .all(|w| w[1].0 >= w[0].0 && w[1].1 >= w[0].1),
        "delivered or pages_done fell while running: {seen:?}"
    );
    assert!(rises >= 3, "delivered rose only {rises} times: {seen:?}");
    let email = &done["channels"]["email"];
    assert_eq!(
        (&email["delivered"], &email["pending"], &done["pages_done"]),
        (&json!(FOLLOWERS), &json!(0), &json!(3)),
        "{done}"
    );
    let receipts = app.all_receipts(&request_id).await?;
    let delivered = receipts
        .iter()
        .filter(|r| r["status"] == "delivered")
        .count();
    assert_eq!(
        delivered, FOLLOWERS,
        "the final counts agree with the receipts"
    );
    Ok(())
}
