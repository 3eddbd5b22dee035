//! Scale-out: two API processes and three worker processes on one store and one Temporal
//! server, as production runs them (`make test` runs this on SQLite and again on PostgreSQL).
//! A 50,000-follower fan-out and a trickle of small requests go in through both APIs; one worker
//! is SIGKILLed and one API restarted mid-way. Every follower gets exactly one inbox message and
//! at least one email (repeats counted and bounded by what was in flight on the killed worker),
//! the shared SMTP rate holds across the three workers, and both APIs tell the same story.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Row;

use crate::helpers::processes::{Process, start_api, start_worker_with};
use crate::helpers::{TestApp, busiest_window, poll, stack};

const FOLLOWERS: usize = 50_000;
const SMALL_REQUESTS: usize = 20;
const PAGE_SIZE: u32 = 1_000;
const CONCURRENCY: usize = 32;
/// The SMTP rate the three workers share (sends a second).
const SMTP_RATE: usize = 1_500;

/// One API replica: its process and base URL.
struct Replica {
    url: String,
    addr: String,
    process: Process,
}

impl Replica {
    fn start(app: &TestApp) -> anyhow::Result<Self> {
        let addr = format!("127.0.0.1:{}", stack::free_port()?);
        let process = start_api(app, &addr)?;
        Ok(Self {
            url: format!("http://{addr}"),
            addr,
            process,
        })
    }

    /// Stops it and starts it again on the same address.
    fn restart(&mut self, app: &TestApp) -> anyhow::Result<()> {
        self.process.kill()?;
        self.process = start_api(app, &self.addr)?;
        Ok(())
    }

    async fn call(
        &self,
        app: &TestApp,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&app.api_key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    async fn ready(&self) -> anyhow::Result<()> {
        poll(Duration::from_secs(60), "the API replica up", || async {
            let ok = reqwest::get(format!("{}/healthz", self.url)).await;
            Ok(ok.is_ok_and(|r| r.status().is_success()).then_some(()))
        })
        .await
    }

    async fn notify(&self, app: &TestApp, body: Value) -> anyhow::Result<String> {
        let (status, answer) = self
            .call(app, Method::POST, "/v1/notify", Some(body))
            .await?;
        anyhow::ensure!(status == StatusCode::ACCEPTED, "notify: {status} {answer}");
        Ok(answer["request_id"]
            .as_str()
            .context("request_id")?
            .to_owned())
    }
}

/// Inbox rows of `request_id`: (rows, distinct users), read from the store itself.
async fn inbox_rows(app: &TestApp, request_id: &str) -> anyhow::Result<(i64, i64)> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app.worker_config.store.url).await?;
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, COUNT(DISTINCT user_id) AS users FROM inbox WHERE request_id = $1",
    )
    .bind(request_id)
    .fetch_one(&pool)
    .await?;
    Ok((row.try_get("n")?, row.try_get("users")?))
}

#[tokio::test(flavor = "multi_thread")]
async fn two_apis_and_three_workers_share_a_fan_out_through_a_kill_and_a_restart()
-> anyhow::Result<()> {
    let app = TestApp::spawn_full("scale-out", PAGE_SIZE, CONCURRENCY, false).await?;
    app.lift_ingest_quota().await?;
    app.put_template(
        "post",
        json!({"name": "Post",
               "email": {"subject": "{{ data.actor }} posted", "text": "Hi {{ user.name }}"},
               "in_app": {"title": "New post", "body": "{{ data.actor }} posted"}}),
    )
    .await?;
    let followers = app.seed_followers("star", FOLLOWERS).await?;

    let rate = [("FANOUT_LIMITS__PROVIDERS__SMTP", SMTP_RATE.to_string())];
    let mut workers: Vec<Process> = (0..3)
        .map(|_| start_worker_with(&app, &rate))
        .collect::<anyhow::Result<_>>()?;
    let mut apis = [Replica::start(&app)?, Replica::start(&app)?];
    for api in &apis {
        api.ready().await?;
    }

    let small = |i: usize| {
        json!({"template_id": "post",
               "recipients_query": {"type": "users", "user_ids": [followers[i * 7]]},
               "data": {"actor": format!("small {i}")}})
    };
    let big = apis[0]
        .notify(
            &app,
            json!({"template_id": "post",
                   "recipients_query": {"type": "followers", "of": "star"},
                   "data": {"actor": "Star"}}),
        )
        .await?;
    let mut small_ids = Vec::new();
    for i in 0..SMALL_REQUESTS / 2 {
        small_ids.push(apis[i % 2].notify(&app, small(i)).await?);
    }

    // A third of the way in: SIGKILL one worker, restart one API.
    let emailed =
        || async { Ok::<usize, anyhow::Error>(app.emails_per_recipient().await?.values().sum()) };
    poll(
        Duration::from_secs(300),
        "a third of the emails",
        || async { Ok((emailed().await? >= FOLLOWERS / 3).then_some(())) },
    )
    .await?;
    workers[0].kill()?;
    let at_kill = emailed().await?;
    apis[1].restart(&app)?;
    apis[1].ready().await?;
    for i in SMALL_REQUESTS / 2..SMALL_REQUESTS {
        small_ids.push(apis[i % 2].notify(&app, small(i)).await?);
    }
    assert!(at_kill < FOLLOWERS, "the fan-out finished before the kill");

    for id in std::iter::once(&big).chain(&small_ids) {
        poll(
            Duration::from_secs(600),
            "every request completed",
            || async {
                let (_, s) = apis[0]
                    .call(&app, Method::GET, &format!("/v1/status/{id}"), None)
                    .await?;
                Ok((s["state"] == "completed").then_some(()))
            },
        )
        .await?;
    }
    let done = app.status(&big).await?;

    // Both APIs (and the test's own) tell the same story.
    for path in [
        format!("/v1/status/{big}"),
        format!("/v1/receipts?request_id={big}&limit=200"),
    ] {
        let (a, from_a) = apis[0].call(&app, Method::GET, &path, None).await?;
        let (b, from_b) = apis[1].call(&app, Method::GET, &path, None).await?;
        assert_eq!((a, b), (StatusCode::OK, StatusCode::OK), "{path}");
        assert_eq!(from_a, from_b, "{path}");
    }
    assert_eq!(done["channels"]["in_app"]["delivered"], FOLLOWERS, "{done}");
    assert_eq!(done["channels"]["email"]["delivered"], FOLLOWERS, "{done}");

    // Exactly one inbox message for every follower.
    let (rows, users) = inbox_rows(&app, &big).await?;
    assert_eq!((rows, users), (FOLLOWERS as i64, FOLLOWERS as i64));

    // At least one email each; repeats only of sends in flight on the killed worker.
    let emails: HashMap<String, usize> = app.emails_per_recipient().await?;
    let missing = followers
        .iter()
        .filter(|u| !emails.contains_key(&app.email_of(u)))
        .count();
    let duplicates: usize = emails.values().map(|n| n - 1).sum::<usize>() - SMALL_REQUESTS;
    let arrivals: Vec<u64> = app.arrivals().await?.iter().map(|a| a.at_ms).collect();
    let span_ms = arrivals.last().unwrap_or(&0) - arrivals.first().unwrap_or(&0);
    let busiest = busiest_window(&arrivals, 1_000);
    println!(
        "scale-out: {} emails ({at_kill} before the kill) over {span_ms} ms, busiest second {busiest} at {SMTP_RATE}/s shared, {missing} followers missing, {duplicates} repeated sends",
        arrivals.len()
    );
    assert_eq!(missing, 0, "followers never emailed");
    // The fan-out keeps at most 8 pages in flight; each records its receipts every 32 sends
    // (and every 250 ms) with at most CONCURRENCY sends in flight, and a retried page skips
    // everything recorded. The small requests each had one recipient.
    let bound = 8 * (32 + CONCURRENCY) + SMALL_REQUESTS;
    assert!(
        duplicates <= bound,
        "{duplicates} repeated sends (bound {bound})"
    );
    // The shared rate holds across the three workers: each holds at most a tenth of a second's
    // lease, and the bucket a tenth more.
    let slack = 4 * SMTP_RATE / 10;
    assert!(
        busiest <= SMTP_RATE + slack,
        "{busiest} emails within one second at {SMTP_RATE}/s shared by three workers"
    );
    drop(workers);
    Ok(())
}
