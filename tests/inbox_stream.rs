//! The in-app inbox in real time: clients on SSE and WebSocket receive a notification's
//! message as the worker (on its own store connection, as another process would) writes it,
//! and a client that disconnects in the middle of a burst and resumes by event id receives
//! every message exactly once.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;

use crate::helpers::{TestApp, expect_status, poll};

/// How long a test waits for any one frame.
const FRAME_TIMEOUT: Duration = Duration::from_secs(90);

fn template() -> Value {
    json!({
        "name": "Wave",
        "in_app": {"title": "Hi {{ user.name }}", "body": "{{ data.actor }} waved ({{ data.n }})"}
    })
}

async fn issue_token(app: &TestApp, user: &str) -> anyhow::Result<String> {
    let (status, body) = app
        .post(&format!("/v1/users/{user}/inbox-token"), None)
        .await?;
    if status != StatusCode::CREATED {
        bail!("token for {user}: {status} {body}");
    }
    Ok(body["token"].as_str().context("token")?.to_owned())
}

/// One inbox stream client, over either transport, yielding JSON frames.
enum Client {
    Sse {
        response: reqwest::Response,
        buf: String,
    },
    Ws(
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    ),
}

impl Client {
    /// Opens an SSE stream, resuming after `last` (sent as `Last-Event-ID`, as `EventSource`
    /// does), and reads up to its `ready` frame, returning the frames before it.
    async fn sse(
        app: &TestApp,
        token: &str,
        last: Option<i64>,
    ) -> anyhow::Result<(Self, Vec<Value>)> {
        let mut request = reqwest::Client::new()
            .get(format!("{}/v1/inbox/stream?token={token}", app.api_url))
            .header("accept", "text/event-stream");
        if let Some(id) = last {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await?;
        if response.status() != StatusCode::OK {
            bail!("sse: {}", response.status());
        }
        Self::Sse {
            response,
            buf: String::new(),
        }
        .until_ready()
        .await
    }

    /// Opens a WebSocket stream as a browser would, with a single-use stream ticket (the SSE
    /// client above sends the token itself, as clients before tickets do), resuming after
    /// `last` (`?last_event_id=`), and reads up to its `ready` frame.
    async fn ws(
        app: &TestApp,
        token: &str,
        last: Option<i64>,
    ) -> anyhow::Result<(Self, Vec<Value>)> {
        let issued: Value = reqwest::Client::new()
            .post(format!("{}/v1/inbox/stream-ticket", app.api_url))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let ticket = issued["ticket"].as_str().context("no ticket")?;
        let base = app.api_url.replacen("http://", "ws://", 1);
        let mut url = format!("{base}/v1/inbox/ws?ticket={ticket}");
        if let Some(id) = last {
            url.push_str(&format!("&last_event_id={id}"));
        }
        let (socket, _) = tokio_tungstenite::connect_async(url).await?;
        Self::Ws(socket).until_ready().await
    }

    async fn until_ready(mut self) -> anyhow::Result<(Self, Vec<Value>)> {
        let mut before = Vec::new();
        loop {
            let frame = self.next().await?;
            if frame["type"] == "ready" {
                return Ok((self, before));
            }
            before.push(frame);
        }
    }

    /// The next frame (keep-alives skipped).
    async fn next(&mut self) -> anyhow::Result<Value> {
        tokio::time::timeout(FRAME_TIMEOUT, self.next_frame())
            .await
            .context("no inbox frame in time")?
    }

    async fn next_frame(&mut self) -> anyhow::Result<Value> {
        match self {
            Self::Sse { response, buf } => loop {
                if let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    let (mut id, mut event, mut data) = (None, None, None);
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("id: ") {
                            id = Some(v.parse::<i64>()?);
                        } else if let Some(v) = line.strip_prefix("event: ") {
                            event = Some(v.to_owned());
                        } else if let Some(v) = line.strip_prefix("data: ") {
                            data = Some(serde_json::from_str::<Value>(v)?);
                        }
                    }
                    let Some(data) = data else {
                        continue; // a keep-alive comment
                    };
                    // The SSE envelope must agree with the frame it carries.
                    if id != data["id"].as_i64() || event.as_deref() != data["type"].as_str() {
                        bail!("sse envelope {id:?}/{event:?} disagrees with {data}");
                    }
                    return Ok(data);
                }
                let chunk = response.chunk().await?.context("sse stream ended")?;
                buf.push_str(std::str::from_utf8(&chunk)?);
            },
            Self::Ws(socket) => loop {
                match socket.next().await.context("websocket ended")?? {
                    tungstenite::Message::Text(text) => return Ok(serde_json::from_str(&text)?),
                    tungstenite::Message::Close(_) => bail!("websocket closed"),
                    _ => {}
                }
            },
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_and_websocket_clients_receive_a_notifications_in_app_message() -> anyhow::Result<()> {
    let app = TestApp::spawn("inbox-live").await?;
    app.put_template("wave", template()).await?;
    app.put_user("alice", "Alice", false).await?;
    app.put_user("bob", "Bob", false).await?;
    let token = issue_token(&app, "alice").await?;

    let (mut sse, replayed) = Client::sse(&app, &token, None).await?;
    assert!(replayed.is_empty(), "{replayed:?}");
    let (mut ws, replayed) = Client::ws(&app, &token, None).await?;
    assert!(replayed.is_empty(), "{replayed:?}");
    // A WebSocket with a forged token is refused at the handshake.
    let forged = format!(
        "{}/v1/inbox/ws?token=fit_forged",
        app.api_url.replacen("http://", "ws://", 1)
    );
    match tokio_tungstenite::connect_async(forged).await {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => bail!("forged token: expected 401, got {:?}", other.map(|_| ())),
    }

    let (status, body) = app
        .notify(&json!({
            "template_id": "wave",
            "recipients_query": {"type": "users", "user_ids": ["bob", "alice"]},
            "data": {"actor": "Dana", "n": 1},
            "dedupe_key": "wave-1"
        }))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let request_id = body["request_id"].as_str().unwrap().to_owned();

    let from_sse = sse.next().await?;
    let from_ws = ws.next().await?;
    assert_eq!(from_sse, from_ws, "both transports carry the same frame");
    assert_eq!(from_sse["type"], "message", "{from_sse}");
    let message = &from_sse["message"];
    assert_eq!(message["user_id"], "alice", "bob's message is not alice's");
    assert_eq!(message["title"], "Hi Alice");
    assert_eq!(message["body"], "Dana waved (1)");
    assert_eq!(message["request_id"], request_id.as_str());
    assert!(message["read_at_ms"].is_null());
    // It is the message the listing shows.
    let listed = app.inbox("alice").await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(&listed[0], message);

    // Read on one device: both streams hear of it, with the next event id.
    let id = message["id"].as_str().unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/v1/inbox/messages/{id}/read", app.api_url))
        .bearer_auth(&token)
        .send()
        .await?;
    let read = expect_status(r, StatusCode::OK).await?;
    for client in [&mut sse, &mut ws] {
        let frame = client.next().await?;
        assert_eq!(frame["type"], "read", "{frame}");
        assert_eq!(frame["message_id"], id);
        assert_eq!(frame["read_at_ms"], read["read_at_ms"]);
        assert!(frame["id"].as_i64() > from_sse["id"].as_i64());
    }
    app.wait_for_state(&request_id, "completed").await?;
    Ok(())
}

/// Triggers `n` requests to alice and bob, a few at a time, from a task of its own.
fn trigger_burst(app: &TestApp, n: usize) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let (url, key) = (app.api_url.clone(), app.api_key.clone());
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let posts = futures::stream::iter(0..n).map(|i| {
            let request = http
                .post(format!("{url}/v1/notify"))
                .bearer_auth(&key)
                .json(&json!({
                    "template_id": "wave",
                    "recipients_query": {"type": "users", "user_ids": ["alice", "bob"]},
                    "data": {"actor": "Dana", "n": i},
                    "dedupe_key": format!("burst-{i}")
                }));
            async move { expect_status(request.send().await?, StatusCode::ACCEPTED).await }
        });
        let results: Vec<_> = posts.buffer_unordered(8).collect().await;
        results.into_iter().try_for_each(|r| r.map(|_| ()))
    })
}

/// What one client has received across all its connections.
#[derive(Default)]
struct Received {
    event_ids: Vec<i64>,
    message_ids: Vec<String>,
    texts: HashSet<String>,
}

impl Received {
    fn take(&mut self, frame: &Value) -> anyhow::Result<()> {
        let id = frame["id"].as_i64().context("frame id")?;
        if let Some(&last) = self.event_ids.last()
            && id <= last
        {
            bail!("event {id} after {last}: {frame}");
        }
        self.event_ids.push(id);
        if frame["type"] == "message" {
            let m = &frame["message"];
            if m["user_id"] != "alice" {
                bail!("someone else's message: {frame}");
            }
            self.message_ids
                .push(m["id"].as_str().context("id")?.to_owned());
            self.texts
                .insert(m["body"].as_str().context("body")?.to_owned());
        }
        Ok(())
    }

    fn last(&self) -> Option<i64> {
        self.event_ids.last().copied()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_resuming_by_event_id_gets_every_message_exactly_once() -> anyhow::Result<()> {
    const N: usize = 100;
    let app = TestApp::spawn("inbox-resume").await?;
    app.put_template("wave", template()).await?;
    app.put_user("alice", "Alice", false).await?;
    app.put_user("bob", "Bob", false).await?;
    let token = issue_token(&app, "alice").await?;
    let unread = || async {
        let r = reqwest::Client::new()
            .get(format!("{}/v1/inbox/unread-count", app.api_url))
            .bearer_auth(&token)
            .send()
            .await?;
        let body = expect_status(r, StatusCode::OK).await?;
        body["unread"].as_u64().context("unread")
    };

    let mut got = Received::default();
    let (mut sse, replayed) = Client::sse(&app, &token, None).await?;
    assert!(replayed.is_empty());
    let burst = trigger_burst(&app, N);

    // Connection 1 (SSE): a quarter of the burst, then the client goes away mid-stream.
    while got.message_ids.len() < N / 4 {
        got.take(&sse.next().await?)?;
    }
    drop(sse);
    // While it is away, more messages are delivered; it must get them from the replay.
    let away_from = got.message_ids.len() as u64;
    poll(Duration::from_secs(90), "messages while away", || async {
        Ok((unread().await? >= away_from + 10).then_some(()))
    })
    .await?;

    // Connection 2 (WebSocket), resuming by id: the replay, then live, up to three quarters.
    let (mut ws, replayed) = Client::ws(&app, &token, got.last()).await?;
    assert!(
        replayed.len() >= 10,
        "the replay covers the gap: {}",
        replayed.len()
    );
    for frame in &replayed {
        got.take(frame)?;
    }
    while got.message_ids.len() < 3 * N / 4 {
        got.take(&ws.next().await?)?;
    }
    drop(ws);

    // Connection 3 (SSE with Last-Event-ID) to the end of the burst.
    let (mut sse, replayed) = Client::sse(&app, &token, got.last()).await?;
    for frame in &replayed {
        got.take(frame)?;
    }
    while got.message_ids.len() < N {
        got.take(&sse.next().await?)?;
    }
    burst.await??;

    // Nothing more is owed: a read-all is the very next event, with no stray message first.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/inbox/read-all", app.api_url))
        .bearer_auth(&token)
        .send()
        .await?;
    let marked = expect_status(r, StatusCode::OK).await?;
    assert_eq!(marked["marked"], json!(N));
    let frame = sse.next().await?;
    assert_eq!(frame["type"], "read_all", "{frame}");
    got.take(&frame)?;

    let distinct: HashSet<&String> = got.message_ids.iter().collect();
    assert_eq!(got.message_ids.len(), N, "exactly one frame per message");
    assert_eq!(distinct.len(), N, "no message twice");
    let want: HashSet<String> = (0..N).map(|i| format!("Dana waved ({i})")).collect();
    assert_eq!(got.texts, want, "every request's message");
    assert_eq!(unread().await?, 0);
    Ok(())
}
