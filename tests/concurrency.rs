//! Sixteen clients at once on every endpoint that reads before it writes: template write and
//! rollback, segment member adds, template disable and enable, preference opt-outs, inbox read
//! and read-all, and dead-letter re-drive. No answer is ever a 5xx, and what the writes add up
//! to is exactly what is stored: no lost update, no double claim. `make test` runs this suite on
//! SQLite and again on PostgreSQL, where transactions interleave rather than queue.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use fanout_sandbox::{FaultStage, NewFault};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use temporalio_common::protos::temporal::api::enums::v1::EventType;

use crate::helpers::{TestApp, poll};

const CLIENTS: usize = 16;
const ROUNDS: usize = 5;

/// One answer: which operation, and its status.
type Answer = (&'static str, StatusCode);

/// What one client saw: every answer, and the re-drives it started.
#[derive(Default)]
struct Seen {
    answers: Vec<Answer>,
    redrives: Vec<String>,
}

async fn call(what: &'static str, request: reqwest::RequestBuilder) -> anyhow::Result<Answer> {
    let response = request.send().await.with_context(|| what)?;
    let status = response.status();
    if status.is_server_error() {
        let body = response.text().await.unwrap_or_default();
        eprintln!("{what}: {status} {body}");
    }
    Ok((what, status))
}

/// Client `i`'s rounds; every answer is returned, whatever its status.
async fn client(app: &TestApp, i: usize, token: &str, request_id: &str) -> anyhow::Result<Seen> {
    let http = reqwest::Client::new();
    let inbox = |method: Method, path: &str| {
        http.request(method, format!("{}{path}", app.api_url))
            .bearer_auth(token)
    };
    let mut seen = Seen::default();
    let answers = &mut seen.answers;
    for round in 0..ROUNDS {
        let write = app
            .request(Method::PUT, "/v1/templates/shared")
            .json(&json!({
                "name": format!("Shared {i}.{round}"),
                "in_app": {"title": "Hi", "body": format!("from client {i}, round {round}")}
            }));
        answers.push(call("template write", write).await?);
        let rollback = app
            .request(Method::POST, "/v1/templates/shared/rollback")
            .json(&json!({"version": 1}));
        answers.push(call("template rollback", rollback).await?);
        let members = app
            .request(Method::POST, "/v1/segments/crowd/members")
            .json(&json!({"user_ids": [format!("m{i:02}-{round}"), "everyone"]}));
        answers.push(call("segment members", members).await?);
        let disable = app
            .request(Method::POST, "/v1/templates/switched/disable")
            .json(&json!({"running": "pause", "reason": "concurrency test"}));
        answers.push(call("template disable", disable).await?);
        let enable = app.request(Method::POST, "/v1/templates/switched/enable");
        answers.push(call("template enable", enable).await?);
        // Every client edits the same user's preferences document, each a category of its own.
        let opt_out = app
            .request(Method::POST, "/v1/users/u00/preferences/opt-out")
            .json(&json!({"channel": "email", "category": format!("c{i:02}-{round}")}));
        answers.push(call("preferences opt-out", opt_out).await?);
        let listed = inbox(Method::GET, "/v1/inbox?limit=5").send().await?;
        let listed: Value = listed.json().await?;
        if let Some(id) = listed["messages"][0]["id"].as_str() {
            let read = inbox(Method::POST, &format!("/v1/inbox/messages/{id}/read"));
            answers.push(call("inbox read", read).await?);
        }
        answers.push(call("inbox read-all", inbox(Method::POST, "/v1/inbox/read-all")).await?);
        let redrive = app
            .request(Method::POST, "/v1/dead-letters/redrive")
            .json(&json!({"request_id": request_id}))
            .send()
            .await?;
        let status = redrive.status();
        let body: Value = redrive.json().await.unwrap_or(Value::Null);
        if status.is_server_error() {
            eprintln!("dead-letter re-drive: {status} {body}");
        }
        answers.push(("dead-letter re-drive", status));
        if let Some(id) = body["redrive_id"].as_str() {
            seen.redrives.push(id.to_owned());
        }
    }
    Ok(seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn sixteen_clients_on_read_then_write_endpoints_see_no_5xx_and_lose_nothing()
-> anyhow::Result<()> {
    let app = TestApp::spawn("concurrency").await?;
    app.lift_ingest_quota().await?;
    let in_app = json!({"name": "Post", "email": {"subject": "Hi", "text": "hi"},
                        "in_app": {"title": "Hi", "body": "hi"}});
    app.put_template("post", in_app.clone()).await?;
    app.put_template("switched", in_app).await?;
    let users: Vec<String> = (0..CLIENTS).map(|i| format!("u{i:02}")).collect();
    for user in &users {
        app.put_user(user, user, true).await?;
    }
    let created = app
        .request(Method::PUT, "/v1/segments/crowd")
        .json(&json!({"name": "Crowd"}))
        .send()
        .await?;
    assert!(
        created.status().is_success(),
        "segment: {}",
        created.status()
    );

    // One dead letter: u00's email bounces for good on the first delivery.
    let bounce = app
        .smtp_fault(&NewFault {
            rcpt: app.email_of("u00"),
            code: 550,
            message: "5.1.1 no such mailbox".into(),
            stage: FaultStage::Rcpt,
            times: None,
            delay_ms: 0,
        })
        .await?;
    let (status, body) = app
        .notify(&json!({
            "template_id": "post",
            "recipients_query": {"type": "users", "user_ids": users},
        }))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let request_id = body["request_id"]
        .as_str()
        .context("request_id")?
        .to_owned();
    app.wait_for_state(&request_id, "completed").await?;
    app.remove_smtp_fault(bounce).await?;

    // Each client reads one user's inbox with a token of its own.
    let mut tokens = Vec::new();
    for user in &users {
        let (status, body) = app
            .post(&format!("/v1/users/{user}/inbox-token"), None)
            .await?;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        tokens.push(body["token"].as_str().context("token")?.to_owned());
    }

    let runs = tokens.iter().enumerate().map(|(i, token)| {
        let app = &app;
        let request_id = &request_id;
        async move { client(app, i, token, request_id).await }
    });
    let seen = futures::future::try_join_all(runs).await?;
    let answers: Vec<&Answer> = seen.iter().flat_map(|s| &s.answers).collect();
    let redrives: Vec<&String> = seen.iter().flat_map(|s| &s.redrives).collect();

    let mut tally: BTreeMap<(&str, u16), usize> = BTreeMap::new();
    for (what, status) in answers {
        *tally.entry((what, status.as_u16())).or_default() += 1;
    }
    eprintln!("answers by operation and status: {tally:?}");
    let failed: Vec<_> = tally.iter().filter(|((_, s), _)| *s >= 500).collect();
    assert!(failed.is_empty(), "5xx answers: {failed:?} of {tally:?}");
    for ((what, status), n) in &tally {
        // A re-drive of a request whose dead letters another client took is 200 (nothing to
        // do) or, started in the same millisecond as another, 409: both are answers, not errors.
        let fine =
            (200..300).contains(status) || (*what == "dead-letter re-drive" && *status == 409);
        assert!(fine, "{n} x {what}: {status} ({tally:?})");
    }

    // Every write and every rollback made exactly one version.
    let (_, template) = app.get("/v1/templates/shared").await?;
    assert_eq!(
        template["version"],
        json!(2 * CLIENTS * ROUNDS),
        "{template}"
    );
    // Every member add counted once.
    let (_, segment) = app.get("/v1/segments/crowd").await?;
    assert_eq!(segment["members"], json!(CLIENTS * ROUNDS + 1), "{segment}");
    // No opt-out lost to another's read-modify-write.
    let (_, preferences) = app.get("/v1/users/u00/preferences").await?;
    let categories = preferences["categories"]
        .as_object()
        .context("categories")?;
    assert_eq!(categories.len(), CLIENTS * ROUNDS, "{preferences}");
    // The switch ends enabled: the last call of every client was an enable.
    let (status, body) = app
        .notify(&json!({
            "template_id": "switched",
            "recipients_query": {"type": "users", "user_ids": ["u01"]},
        }))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // The one dead letter was claimed by exactly one re-drive: once every re-drive workflow
    // started has finished, u00 has had exactly one email from them.
    assert!(!redrives.is_empty(), "no re-drive started: {tally:?}");
    for id in &redrives {
        poll(
            Duration::from_secs(120),
            "the re-drive finished",
            || async {
                let events = app.history(id).await?;
                let last = events.last().map(|e| e.event_type());
                Ok((last == Some(EventType::WorkflowExecutionCompleted)).then_some(()))
            },
        )
        .await?;
    }
    let u00 = app.email_of("u00");
    let (_, status) = app.get(&format!("/v1/status/{request_id}")).await?;
    assert_eq!(
        app.emails_to(&u00).await?.len(),
        1,
        "{} re-drives; {status}",
        redrives.len()
    );
    assert_eq!(status["channels"]["email"]["failed"], json!(0), "{status}");
    Ok(())
}
