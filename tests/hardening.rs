//! Tenant input that could hurt every tenant, end to end on the real stack: a template that
//! runs away for one recipient fails that recipient with `template_limit` while the worker
//! delivers the others and the next request; inbox rows hold the template's payload, not the
//! request's data; a WebSocket client sending a 1 MiB frame loses its own connection and no
//! other.

use std::time::Duration;

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;

use crate::helpers::{TestApp, poll};

/// Nested loops that only run for users with long names: the trial render at write time (a
/// six-letter sample name) passes, a long-named recipient runs out of fuel.
const RUNAWAY_FOR_LONG_NAMES: &str = "{% if user.name | length > 20 %}\
    {% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}\
    {% endif %}Hi {{ user.name }}";

#[tokio::test(flavor = "multi_thread")]
async fn a_runaway_render_fails_its_recipient_and_the_worker_delivers_the_others()
-> anyhow::Result<()> {
    let app = TestApp::spawn("runaway").await?;
    // Refused outright where the trial render can tell.
    let r = app
        .request(reqwest::Method::PUT, "/v1/templates/loop")
        .json(&json!({"name": "Loop", "in_app": {"title": "t", "body":
            "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}"}}))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let refused: Value = r.json().await?;
    assert_eq!(
        refused["error"]["problems"][0]["kind"], "limit",
        "{refused}"
    );

    app.put_template(
        "greet",
        json!({"name": "Greet", "in_app": {"title": "Hello", "body": RUNAWAY_FOR_LONG_NAMES}}),
    )
    .await?;
    app.put_user("short", "Ada", false).await?;
    app.put_user("long", &"L".repeat(30), false).await?;
    let (status, body) = app
        .notify(&json!({
            "template_id": "greet",
            "recipients_query": {"type": "users", "user_ids": ["short", "long"]},
        }))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let request_id = body["request_id"].as_str().context("request_id")?;
    app.wait_for_state(request_id, "completed").await?;
    let receipts = app.all_receipts(request_id).await?;
    let of = |user: &str| {
        receipts
            .iter()
            .find(|r| r["user_id"] == user)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(of("short")["status"], "delivered", "{receipts:?}");
    assert_eq!(of("long")["status"], "failed", "{receipts:?}");
    assert_eq!(of("long")["error_code"], "template_limit", "{receipts:?}");
    assert_eq!(app.inbox("short").await?[0]["body"], "Hi Ada");

    // The worker is free: the next request is delivered.
    let (status, body) = app
        .notify(&json!({
            "template_id": "greet",
            "recipients_query": {"type": "users", "user_ids": ["short"]},
        }))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    app.wait_for_state(body["request_id"].as_str().unwrap(), "completed")
        .await?;
    assert_eq!(app.inbox("short").await?.len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn inbox_rows_keep_the_templates_payload_not_the_requests_data() -> anyhow::Result<()> {
    let app = TestApp::spawn("payload").await?;
    app.put_template(
        "post",
        json!({"name": "Post", "in_app": {
            "title": "{{ data.actor }} posted",
            "body": "Look",
            "action_url": "app://posts/{{ data.post_id }}",
            "payload": {"post_id": "{{ data.post_id }}"}
        }}),
    )
    .await?;
    app.put_user("bob", "Bob", false).await?;
    let (status, body) = app
        .notify(&json!({
            "template_id": "post",
            "recipients_query": {"type": "users", "user_ids": ["bob"]},
            "data": {"actor": "Ada", "post_id": "p7", "internal_note": "x".repeat(10_000)},
        }))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    app.wait_for_state(body["request_id"].as_str().unwrap(), "completed")
        .await?;
    let message = &app.inbox("bob").await?[0];
    assert_eq!(message["title"], "Ada posted");
    assert_eq!(message["action_url"], "app://posts/p7");
    assert_eq!(message["data"], json!({"post_id": "p7"}), "{message}");
    Ok(())
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open_ws(app: &TestApp, token: &str) -> anyhow::Result<Socket> {
    let base = app.api_url.replacen("http://", "ws://", 1);
    let (socket, _) =
        tokio_tungstenite::connect_async(format!("{base}/v1/inbox/ws?token={token}")).await?;
    Ok(socket)
}

/// The next text frame's JSON, or `None` once the socket is closed or broken.
async fn next_frame(socket: &mut Socket) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(60), socket.next()).await {
            Ok(Some(Ok(tungstenite::Message::Text(text)))) => {
                return serde_json::from_str(&text).ok();
            }
            Ok(Some(Ok(tungstenite::Message::Close(_)) | Err(_)) | None) | Err(_) => {
                return None;
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_1_mib_websocket_frame_closes_that_connection_only() -> anyhow::Result<()> {
    let app = TestApp::spawn("ws-frame").await?;
    app.put_template(
        "wave",
        json!({"name": "Wave", "in_app": {"title": "Hi", "body": "{{ data.actor }} waved"}}),
    )
    .await?;
    app.put_user("alice", "Alice", false).await?;
    let (status, body) = app.post("/v1/users/alice/inbox-token", None).await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["token"].as_str().context("token")?.to_owned();
    let mut abuser = open_ws(&app, &token).await?;
    let mut bystander = open_ws(&app, &token).await?;
    for socket in [&mut abuser, &mut bystander] {
        let ready = next_frame(socket).await.context("ready frame")?;
        assert_eq!(ready["type"], "ready", "{ready}");
    }
    // The send itself may fail once the server has closed the connection.
    let _ = abuser
        .send(tungstenite::Message::Text("x".repeat(1 << 20).into()))
        .await;
    assert_eq!(
        next_frame(&mut abuser).await,
        None,
        "the abuser's socket ends"
    );

    let (status, body) = app
        .notify(&json!({
            "template_id": "wave",
            "recipients_query": {"type": "users", "user_ids": ["alice"]},
            "data": {"actor": "Dana"},
        }))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let frame = next_frame(&mut bystander)
        .await
        .context("the bystander's socket stays open")?;
    assert_eq!(frame["type"], "message", "{frame}");
    assert_eq!(frame["message"]["body"], "Dana waved");
    // The server still takes new connections.
    poll(Duration::from_secs(60), "a new socket", || async {
        let mut socket = open_ws(&app, &token).await?;
        Ok(next_frame(&mut socket)
            .await
            .filter(|f| f["type"] == "ready"))
    })
    .await?;
    Ok(())
}
