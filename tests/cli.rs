//! The `fanout` CLI as a user runs it: the real binary as a process against the test's API,
//! checked by its stdout, its stderr and its exit code.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::fanout::{post_template, slow_sink};
use crate::helpers::processes::binary;
use crate::helpers::{TestApp, poll, stack};

/// What one run of the CLI left.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_str(&self.stdout)
            .map_err(|e| anyhow::anyhow!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `fanout ARGS` with the test's API and key in its environment, from a directory without
/// a `.fanout/dev.env`, stdout piped (so not a terminal).
async fn fanout(app: &TestApp, args: &[&str]) -> anyhow::Result<Run> {
    let output = tokio::process::Command::new(binary("fanout")?)
        .args(args)
        .env("FANOUT_API_URL", &app.api_url)
        .env("FANOUT_API_KEY", &app.api_key)
        .env_remove("FANOUT_ADMIN_KEY")
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .output()
        .await?;
    Ok(Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// Sends the `post` template to `users` and answers the request id from `--json`.
async fn send(app: &TestApp, users: &str) -> anyhow::Result<String> {
    let run = fanout(
        app,
        &[
            "send",
            "--template",
            "post",
            "--users",
            users,
            "--data",
            "actor=Star",
            "--json",
        ],
    )
    .await?;
    anyhow::ensure!(run.code == 0, "send failed: {run}");
    let answer = run.json()?;
    assert_eq!(answer["duplicate"], false, "{run}");
    Ok(answer["request_id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no request_id: {run}"))?
        .to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn send_status_and_cancel_through_the_cli_with_meaningful_exit_codes() -> anyhow::Result<()> {
    // Four sends in flight, each email held half a second: 40 recipients take about 5 s.
    let app = TestApp::spawn_with("cli", 50, 4).await?;
    app.put_template("post", post_template()).await?;
    let users = app.seed_followers("star", 40).await?.join(",");
    slow_sink(&app, 500).await?;

    let request_id = send(&app, &users).await?;
    // Once the audience is counted (at once for a list, but a loaded machine may lag), status
    // shows the running request; its 40 emails take about 5 s at the slow sink.
    let status = poll(
        Duration::from_secs(60),
        "the audience in status",
        || async {
            let status = fanout(&app, &["status", &request_id, "--json"]).await?;
            assert_eq!(status.code, 0, "{status}");
            let counted = status.json()?["channels"]["email"]["total"] == 40;
            Ok(counted.then_some(status))
        },
    )
    .await?;
    let body = status.json()?;
    assert_eq!(body["request_id"], request_id.as_str());
    assert_eq!(body["state"], "running", "{status}");

    let cancel = fanout(&app, &["cancel", &request_id]).await?;
    assert_eq!(cancel.code, 0, "{cancel}");
    assert_eq!(cancel.stdout.trim(), format!("cancel sent to {request_id}"));
    let ended = poll(Duration::from_secs(60), "the request to end", || async {
        let run = fanout(&app, &["status", &request_id, "--json"]).await?;
        let state = run.json()?["state"].as_str().unwrap_or_default().to_owned();
        Ok((state != "running").then_some(state))
    })
    .await?;
    assert!(
        ended == "cancelled" || ended == "completed",
        "ended {ended}"
    );
    // Watching a request that ended cancelled says so with exit code 4.
    let watch = fanout(&app, &["status", &request_id, "--watch"]).await?;
    let want = if ended == "cancelled" { 4 } else { 0 };
    assert_eq!(watch.code, want, "{watch}");
    assert!(
        watch
            .stdout
            .contains(&format!("request {request_id} {ended}")),
        "{watch}"
    );

    // The plain text of a read command.
    let text = fanout(&app, &["status", &request_id]).await?;
    assert_eq!(text.code, 0, "{text}");
    assert!(
        text.stdout.contains(&format!("state      {ended}")),
        "{text}"
    );
    let receipts = fanout(&app, &["receipts", &request_id, "--json"]).await?;
    assert_eq!(receipts.code, 0, "{receipts}");
    assert!(receipts.json()?["receipts"].is_array(), "{receipts}");

    // Refused by the API: exit 1, its error on stderr, nothing on stdout.
    let unknown = fanout(&app, &["status", "ntf-nosuch-0123456789"]).await?;
    assert_eq!(unknown.code, 1, "{unknown}");
    assert!(unknown.stderr.contains("404 not_found"), "{unknown}");
    assert!(unknown.stdout.is_empty(), "{unknown}");
    let again = fanout(&app, &["cancel", &request_id]).await?;
    assert_eq!(
        again.code, 1,
        "a finished request cannot be cancelled: {again}"
    );
    assert!(again.stderr.contains("409"), "{again}");

    // A usage error is clap's 2; an API nobody listens on is 3.
    let usage = fanout(&app, &["send", "--template", "post"]).await?;
    assert_eq!(usage.code, 2, "no audience: {usage}");
    let nobody = format!("http://127.0.0.1:{}", stack::free_port()?);
    let down = fanout(&app, &["--api-url", &nobody, "status", &request_id]).await?;
    assert_eq!(down.code, 3, "{down}");
    assert!(down.stderr.contains("cannot reach the API"), "{down}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_send_scheduled_from_the_cli_shows_its_time_moves_and_cancels() -> anyhow::Result<()> {
    let app = TestApp::spawn("cli-scheduled").await?;
    app.put_template("post", post_template()).await?;
    app.put_user("sam", "Sam", true).await?;

    let run = fanout(
        &app,
        &[
            "send",
            "--template",
            "post",
            "--users",
            "sam",
            "--data",
            "actor=Star",
            "--in",
            "3600",
        ],
    )
    .await?;
    assert_eq!(run.code, 0, "{run}");
    let request_id = run
        .stdout
        .split_whitespace()
        .nth(1)
        .map(|id| id.trim_end_matches(':').to_owned())
        .ok_or_else(|| anyhow::anyhow!("no request id: {run}"))?;
    assert!(run.stdout.starts_with("scheduled "), "{run}");

    let at = "2031-01-02T03:04:05Z";
    let moved = fanout(&app, &["reschedule", &request_id, "--at", at]).await?;
    // More than 30 days ahead: refused, naming the flag's field.
    assert_eq!(moved.code, 1, "{moved}");
    assert!(moved.stderr.contains("send_at"), "{moved}");
    let at = fanout_domain::timing::format_instant(
        i64::try_from(crate::helpers::now_ms())? + 2 * 3_600_000,
    );
    let moved = fanout(&app, &["reschedule", &request_id, "--at", &at]).await?;
    assert_eq!(moved.code, 0, "{moved}");
    assert_eq!(
        moved.stdout.trim(),
        format!("{request_id} now runs at {at}")
    );

    let status = fanout(&app, &["status", &request_id]).await?;
    assert!(
        status.stdout.contains(&format!("scheduled, runs at {at}")),
        "{status}"
    );
    let cancel = fanout(&app, &["cancel", &request_id]).await?;
    assert_eq!(cancel.code, 0, "{cancel}");
    app.wait_for_state(&request_id, "cancelled").await?;
    assert!(app.emails_to(&app.email_of("sam")).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn status_watch_prints_one_plain_line_per_change_until_the_request_completes()
-> anyhow::Result<()> {
    let app = TestApp::spawn_with("cli-watch", 50, 4).await?;
    app.put_template("post", post_template()).await?;
    let users = app.seed_followers("star", 40).await?.join(",");
    slow_sink(&app, 500).await?;

    let request_id = send(&app, &users).await?;
    let started = std::time::Instant::now();
    let watch = fanout(&app, &["status", &request_id, "--watch"]).await?;
    // The README's captured run is this output (`cargo test ... -- cli:: --nocapture`).
    println!(
        "$ fanout status {request_id} --watch   # stdout not a terminal\n{}(exit {}, {:.1}s)",
        watch.stdout,
        watch.code,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(watch.code, 0, "{watch}");
    let lines: Vec<&str> = watch.stdout.lines().collect();
    assert!(lines.len() >= 3, "several updates: {watch}");
    assert!(
        !watch.stdout.contains('\u{1b}'),
        "no escape codes off a terminal: {watch}"
    );
    let progress = &lines[..lines.len() - 1];
    assert!(progress.iter().all(|l| l.contains("  total ")), "{watch}");
    assert!(
        progress
            .iter()
            .any(|l| l.contains("  email ") && l.contains("/40 (delivered ")),
        "{watch}"
    );
    assert!(
        progress
            .last()
            .is_some_and(|l| l.contains("completed") && l.contains("total 80/80")),
        "{watch}"
    );
    assert_eq!(
        lines
            .last()
            .copied()
            .unwrap_or_default()
            .split(" after ")
            .next(),
        Some(format!("request {request_id} completed").as_str()),
        "{watch}"
    );
    // Every email arrived: what the bars counted is what the sink saw.
    assert_eq!(crate::helpers::fanout::total_emails(&app).await?, 40);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn templates_push_validates_and_prints_each_located_problem() -> anyhow::Result<()> {
    let app = TestApp::spawn("cli-templates").await?;
    let dir = std::env::temp_dir().join(format!("fanout-cli-{}", app.tenant));
    std::fs::create_dir_all(&dir)?;
    let write = |name: &str, text: &str| -> anyhow::Result<String> {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        Ok(path_text(&path))
    };

    let good = write("digest.json", &post_template().to_string())?;
    let pushed = fanout(&app, &["templates", "push", &good]).await?;
    assert_eq!(pushed.code, 0, "{pushed}");
    assert_eq!(
        pushed.stdout.trim(),
        "template digest: version 1 written and active"
    );

    let bad = write(
        "broken.json",
        r#"{"name": "Broken", "email": {"subject": "{{ data.actor", "text": "Hi {{ nobody }}"}}"#,
    )?;
    let refused = fanout(&app, &["templates", "push", &bad]).await?;
    // The README shows this output.
    println!("$ fanout templates push broken.json\n{refused}");
    assert_eq!(refused.code, 1, "{refused}");
    assert!(refused.stderr.contains("400 invalid_template"), "{refused}");
    let problems: Vec<&str> = refused
        .stderr
        .lines()
        .filter(|l| l.starts_with("  "))
        .collect();
    assert!(
        problems
            .iter()
            .any(|l| l.starts_with("  email.subject:1") && l.contains(": syntax: ")),
        "{refused}"
    );
    assert!(
        problems
            .iter()
            .any(|l| l.starts_with("  email.text:1") && l.contains(": unknown_variable: ")),
        "{refused}"
    );
    // Nothing was written.
    let (status, _) = app.get("/v1/templates/broken").await?;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);

    let not_json = write("typo.json", "{\n  \"name\": \"x\",\n  oops\n}")?;
    let typo = fanout(&app, &["templates", "push", &not_json]).await?;
    assert_eq!(typo.code, 1, "{typo}");
    assert!(typo.stderr.contains("typo.json:3:3: not JSON"), "{typo}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn frequency_caps_are_set_listed_and_deleted_from_the_cli() -> anyhow::Result<()> {
    let app = TestApp::spawn("cli-frequency-caps").await?;
    let set = fanout(
        &app,
        &[
            "frequency-caps",
            "set",
            "marketing",
            "--max",
            "3",
            "--period",
            "86400",
        ],
    )
    .await?;
    assert_eq!(set.code, 0, "{set}");
    assert_eq!(
        set.stdout.trim(),
        "frequency cap on marketing: 3 per 86400 s per user and channel"
    );
    let listed = fanout(&app, &["frequency-caps"]).await?;
    assert_eq!(listed.code, 0, "{listed}");
    let rows: Vec<Vec<&str>> = listed
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec!["CATEGORY", "MAX", "PERIOD_SECONDS"],
            vec!["marketing", "3", "86400"]
        ],
        "{listed}"
    );

    // Out of bounds: the API's 422 names the field, exit code 1.
    let refused = fanout(
        &app,
        &[
            "frequency-caps",
            "set",
            "marketing",
            "--max",
            "0",
            "--period",
            "86400",
        ],
    )
    .await?;
    assert_eq!(refused.code, 1, "{refused}");
    assert!(refused.stderr.contains("max"), "{refused}");

    let deleted = fanout(&app, &["frequency-caps", "delete", "marketing"]).await?;
    assert_eq!(deleted.code, 0, "{deleted}");
    let listed = fanout(&app, &["--json", "frequency-caps", "list"]).await?;
    assert_eq!(listed.json()?["frequency_caps"], serde_json::json!([]));
    let again = fanout(&app, &["frequency-caps", "delete", "marketing"]).await?;
    assert_eq!(again.code, 1, "{again}");
    Ok(())
}
