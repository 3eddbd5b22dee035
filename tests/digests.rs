//! Digests: triggers of a digest template collected while the window is open become one
//! notification per recipient, rendered with every trigger's data; the digest runs as one
//! workflow and the usual tree, never a workflow per trigger or per recipient.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use temporalio_client::WorkflowListOptions;

use crate::helpers::{Setup, TestApp, poll};

/// The digest template: every trigger's actor listed, newest first, and the count.
fn likes_template(window_seconds: u32, channels: Value) -> Value {
    let mut body = json!({
        "name": "Likes",
        "digest": {"window_seconds": window_seconds, "key": "post_id", "max_items": 20},
    });
    for (channel, content) in channels.as_object().unwrap() {
        body[channel] = content.clone();
    }
    body
}

fn email_content() -> Value {
    json!({"email": {
        "subject": "{{ digest.count }} new likes on {{ data.post_id }}",
        "text": "count={{ digest.count }} items={% for i in digest.items %}{{ i.actor }};{% endfor %}",
    }})
}

/// Triggers a like of `post` by `actor` to `users`; returns the trigger's request id.
async fn like(app: &TestApp, actor: &str, post: &str, users: &[String]) -> anyhow::Result<String> {
    let (status, body) = app
        .notify(&json!({
            "template_id": "likes",
            "recipients_query": {"type": "users", "user_ids": users},
            "data": {"actor": actor, "post_id": post},
        }))
        .await?;
    anyhow::ensure!(status == StatusCode::ACCEPTED, "notify: {status} {body}");
    Ok(body["request_id"].as_str().unwrap().to_owned())
}

/// Waits until the trigger's digest has closed and its request has completed; returns the
/// trigger's status and the digest request's.
async fn delivered(app: &TestApp, trigger: &str) -> anyhow::Result<(Value, Value)> {
    let status = poll(Duration::from_secs(120), "the digest closed", || async {
        let s = app.status(trigger).await?;
        Ok((s["digest"]["state"] == "closed").then_some(s))
    })
    .await?;
    let request_id = status["digest"]["request_id"].as_str().unwrap().to_owned();
    let request = app.wait_for_state(&request_id, "completed").await?;
    Ok((status, request))
}

/// The text of every email at the test's domain, by recipient, oldest first.
async fn bodies(app: &TestApp) -> anyhow::Result<HashMap<String, Vec<(String, String)>>> {
    let mut out: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for email in app.domain_emails().await? {
        for rcpt in &email.rcpt_to {
            out.entry(rcpt.clone()).or_default().push((
                email.subject.clone().unwrap_or_default(),
                email.text.clone().unwrap_or_default().trim().to_owned(),
            ));
        }
    }
    Ok(out)
}

#[tokio::test]
async fn five_likes_in_the_window_make_one_email_per_recipient() -> anyhow::Result<()> {
    let app = TestApp::spawn_setup(
        "digest-emails",
        Setup {
            page_size: 250,
            ..Setup::default()
        },
    )
    .await?;
    app.lift_ingest_quota().await?;
    app.put_template("likes", likes_template(5, email_content()))
        .await?;
    let users = app.seed_followers("nobody", 1_000).await?;

    let actors = ["ann", "bob", "cy", "dee", "eve"];
    let mut triggers = Vec::new();
    for actor in actors {
        triggers.push(like(&app, actor, "p1", &users).await?);
    }
    // Every trigger is folded into the same digest, none delivers by itself.
    let mut digest_ids = Vec::new();
    for trigger in &triggers {
        let status = app.status(trigger).await?;
        assert_eq!(status["state"], "digested", "{status}");
        digest_ids.push(status["digest"]["digest_id"].clone());
    }
    digest_ids.dedup();
    assert_eq!(digest_ids.len(), 1, "{digest_ids:?}");

    let (_, request) = delivered(&app, &triggers[0]).await?;
    assert_eq!(request["recipients"], 1_000, "{request}");
    assert_eq!(request["totals"]["delivered"], 1_000, "{request}");
    assert_eq!(request["metadata"]["digest_items"], "5", "{request}");

    let by_user = poll(Duration::from_secs(60), "1,000 digest emails", || async {
        let by_user = bodies(&app).await?;
        let total: usize = by_user.values().map(Vec::len).sum();
        Ok((total >= 1_000).then_some(by_user))
    })
    .await?;
    assert_eq!(by_user.len(), 1_000);
    let newest_first = "count=5 items=eve;dee;cy;bob;ann;";
    for user in &users {
        let emails = &by_user[&app.email_of(user)];
        assert_eq!(emails.len(), 1, "{user}: {emails:?}");
        assert_eq!(emails[0].0, "5 new likes on p1");
        assert_eq!(emails[0].1, newest_first);
    }

    // After the close, a like opens the next digest: one more email each, with one item.
    let late = like(&app, "fay", "p1", &users).await?;
    let (status, _) = delivered(&app, &late).await?;
    assert_ne!(status["digest"]["digest_id"], digest_ids[0]);
    let by_user = poll(Duration::from_secs(60), "the second digest", || async {
        let by_user = bodies(&app).await?;
        let total: usize = by_user.values().map(Vec::len).sum();
        Ok((total >= 2_000).then_some(by_user))
    })
    .await?;
    for user in &users {
        let emails = &by_user[&app.email_of(user)];
        assert_eq!(emails.len(), 2, "{user}: {emails:?}");
        assert!(
            emails.contains(&(
                "1 new likes on p1".to_owned(),
                "count=1 items=fay;".to_owned()
            )),
            "{user}: {emails:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_digest_to_ten_thousand_runs_one_workflow_and_the_trees() -> anyhow::Result<()> {
    const PAGE_SIZE: u32 = 1_000;
    let app = TestApp::spawn_setup(
        "digest-workflows",
        Setup {
            page_size: PAGE_SIZE,
            concurrency: 64,
            ..Setup::default()
        },
    )
    .await?;
    app.lift_ingest_quota().await?;
    app.put_template(
        "likes",
        likes_template(
            2,
            json!({"in_app": {"title": "{{ digest.count }} likes", "body": "{% for i in digest.items %}{{ i.actor }} {% endfor %}"}}),
        ),
    )
    .await?;
    let users = app.seed_followers("nobody", 10_000).await?;
    let mut triggers = Vec::new();
    for actor in ["ann", "bob", "cy"] {
        triggers.push(like(&app, actor, "p1", &users).await?);
    }
    let (status, request) = delivered(&app, &triggers[0]).await?;
    assert_eq!(request["totals"]["delivered"], 10_000, "{request}");
    let inbox = app.inbox(&users[9_999]).await?;
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert_eq!(inbox[0]["title"], "3 likes");

    // Every workflow the test's task queue ran: one digest, one request, its resolution and
    // a page each, whatever the triggers and recipients number.
    let pages = 10_000 / PAGE_SIZE as usize;
    let want: HashMap<String, usize> = [
        ("DigestWorkflow", 1),
        ("NotificationWorkflow", 1),
        ("ResolveAudienceWorkflow", 1),
        ("FanoutPageWorkflow", pages),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let client = app.temporal_client().await?;
    let query = format!("TaskQueue = '{}'", app.worker_config.temporal.task_queue);
    let seen = poll(Duration::from_secs(60), "the workflows listed", || async {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut listed = client.list_workflows(query.clone(), WorkflowListOptions::default());
        while let Some(execution) = listed.next().await {
            *seen
                .entry(execution?.workflow_type().to_owned())
                .or_default() += 1;
        }
        Ok((seen == want).then_some(seen))
    })
    .await;
    let seen = seen.map_err(|e| anyhow::anyhow!("{e}; digest {}", status["digest"]))?;
    assert_eq!(seen, want);
    Ok(())
}

#[tokio::test]
async fn a_like_cancelled_while_the_digest_is_open_is_left_out() -> anyhow::Result<()> {
    let app = TestApp::spawn("digest-cancel").await?;
    app.put_template("likes", likes_template(3, email_content()))
        .await?;
    let users: Vec<String> = ["u1", "u2"].map(str::to_owned).to_vec();
    for user in &users {
        app.put_user(user, user, true).await?;
    }
    let kept = like(&app, "ann", "p9", &users).await?;
    let dropped = like(&app, "bob", "p9", &users[1..]).await?;
    let (status, body) = app
        .post("/v1/cancel", Some(json!({"request_id": dropped})))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(app.status(&dropped).await?["state"], "cancelled");

    let (_, request) = delivered(&app, &kept).await?;
    assert_eq!(request["metadata"]["digest_items"], "1", "{request}");
    let by_user = poll(Duration::from_secs(60), "two digest emails", || async {
        let by_user = bodies(&app).await?;
        Ok((by_user.values().map(Vec::len).sum::<usize>() >= 2).then_some(by_user))
    })
    .await?;
    for user in &users {
        assert_eq!(
            by_user[&app.email_of(user)],
            [(
                "1 new likes on p9".to_owned(),
                "count=1 items=ann;".to_owned()
            )]
        );
    }
    // Once closed, the trigger is part of the digest's request: cancel it there instead.
    let (status, body) = app
        .post("/v1/cancel", Some(json!({"request_id": kept})))
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    Ok(())
}
