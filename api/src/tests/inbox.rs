//! The in-app inbox over HTTP: listings, tokens (who may open which inbox, and where a token may travel), reads and the streams.

use std::time::Duration;

use tower::ServiceExt;

use axum::body::{Body, BodyDataStream};
use axum::http::{Request, StatusCode, header};
use fanout_domain::inbox::InboxMessage;
use fanout_domain::{Channel, DedupeKey, InstanceId, TenantId, UserId};
use futures::StreamExt;
use serde_json::{Value, json};

use super::{Harness, harness, user_with_token};

/// Delivers one in-app message per key to `user` of tenant `a`, as the worker would.
async fn deliver(h: &Harness, user: &str, keys: &[&str]) -> Vec<InboxMessage> {
    let tenant = TenantId::parse("a").unwrap();
    let user = UserId::parse(user).unwrap();
    let messages: Vec<InboxMessage> = keys
        .iter()
        .map(|key| {
            let request_id = DedupeKey::new(tenant.clone(), key).unwrap().request_id();
            InboxMessage {
                id: InstanceId::derive(&request_id, &user, Channel::InApp),
                user_id: user.clone(),
                request_id,
                title: (*key).to_owned(),
                body: "b".into(),
                action_url: None,
                data: json!({"key": key}),
                created_at_ms: fanout_store::now_ms(),
                read_at_ms: None,
            }
        })
        .collect();
    h.store
        .record_deliveries(&tenant, &[], &messages)
        .await
        .unwrap();
    messages
}

/// Opens `GET /v1/inbox/stream?ticket=` and answers its status.
async fn open_with_ticket(h: &Harness, ticket: &str) -> StatusCode {
    let response = h
        .router
        .clone()
        .oneshot(
            Request::get(format!("/v1/inbox/stream?ticket={ticket}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    response.status()
}

#[tokio::test]
async fn a_stream_ticket_opens_one_stream_and_no_other_route() {
    let h = harness().await;
    let token = user_with_token(&h, "u1").await;
    let (status, issued) = h
        .call("POST", "/v1/inbox/stream-ticket", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let ticket = issued["ticket"].as_str().unwrap().to_owned();
    assert!(issued["expires_at_ms"].as_i64().unwrap() > fanout_store::now_ms());
    // Only as ?ticket= on a stream route: not as a bearer, not on another route.
    for (uri, bearer) in [
        ("/v1/inbox".to_owned(), Some(ticket.as_str())),
        (format!("/v1/inbox?ticket={ticket}"), None),
        ("/v1/inbox/stream".to_owned(), Some(ticket.as_str())),
    ] {
        let (status, body) = h.call("GET", &uri, bearer, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}: {body}");
    }
    assert_eq!(open_with_ticket(&h, &ticket).await, StatusCode::OK);
    assert_eq!(
        open_with_ticket(&h, &ticket).await,
        StatusCode::UNAUTHORIZED,
        "a ticket opens one stream"
    );
    assert_eq!(
        open_with_ticket(&h, "fst_forged").await,
        StatusCode::UNAUTHORIZED
    );

    // Issued only to an inbox token; a ticket dies with its token.
    for credential in [None, Some(h.key(0))] {
        let (status, _) = h
            .call("POST", "/v1/inbox/stream-ticket", credential, None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (_, issued) = h
        .call("POST", "/v1/inbox/stream-ticket", Some(&token), None)
        .await;
    let orphan = issued["ticket"].as_str().unwrap().to_owned();
    let (status, _) = h
        .call("DELETE", "/v1/users/u1/inbox-tokens", Some(h.key(0)), None)
        .await;
    assert!(status.is_success());
    assert_eq!(
        open_with_ticket(&h, &orphan).await,
        StatusCode::UNAUTHORIZED,
        "the token was revoked"
    );
}

#[tokio::test]
async fn inbox_tokens_open_only_their_users_inbox_until_expired_or_revoked() {
    let h = harness().await;
    let token = user_with_token(&h, "u1").await;
    user_with_token(&h, "u2").await;
    deliver(&h, "u1", &["one"]).await;
    deliver(&h, "u2", &["two"]).await;

    let (status, page) = h.call("GET", "/v1/inbox", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let titles: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["one"], "u1's token shows u1's inbox only");
    assert_eq!(page["last_event_id"], 2);
    // The query parameter works only on the streams, where browsers cannot set headers:
    // anywhere else a token in a URL is refused rather than left in logs.
    for uri in ["/v1/inbox", "/v1/inbox/unread-count"] {
        let (status, _) = h
            .call("GET", &format!("{uri}?token={token}"), None, None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
    }
    let (status, _) = h
        .call(
            "POST",
            &format!("/v1/inbox/read-all?token={token}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let response = h
        .router
        .clone()
        .oneshot(
            Request::get(format!("/v1/inbox/stream?token={token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the stream takes ?token="
    );

    // A user token is not an API key, an API key is not a user token, and no token is 401.
    for (uri, key) in [
        ("/v1/users/u1/inbox", Some(token.as_str())),
        ("/v1/inbox", Some(h.key(0))),
        ("/v1/inbox", None),
        ("/v1/inbox?token=fit_forged", None),
        ("/v1/inbox/stream", None),
        ("/v1/inbox/ws", Some("fit_forged")),
    ] {
        let (status, body) = h.call("GET", uri, key, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}: {body}");
    }
    // Tokens are issued for the caller's own, existing users, for a bounded time.
    let (status, _) = h
        .call("POST", "/v1/users/u1/inbox-token", Some(h.key(1)), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "tenant b has no u1");
    let (status, _) = h.call("POST", "/v1/users/u1/inbox-token", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for ttl in [0, 365 * 24 * 3600] {
        let (status, body) = h
            .call(
                "POST",
                "/v1/users/u1/inbox-token",
                Some(h.key(0)),
                Some(json!({"ttl_seconds": ttl})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["field"], "ttl_seconds");
    }
    let (status, short) = h
        .call(
            "POST",
            "/v1/users/u1/inbox-token",
            Some(h.key(0)),
            Some(json!({"ttl_seconds": 60})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let lifetime = short["expires_at_ms"].as_i64().unwrap() - fanout_store::now_ms();
    assert!((55_000..=60_000).contains(&lifetime), "{lifetime}");

    // Expired: written straight to the store, as time passing would leave it.
    let tenant = TenantId::parse("a").unwrap();
    let expired = h
        .store
        .issue_inbox_token(
            &tenant,
            &UserId::parse("u1").unwrap(),
            fanout_store::now_ms() - 1,
        )
        .await
        .unwrap();
    let (status, _) = h.call("GET", "/v1/inbox", Some(&expired.token), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "expired");

    // Revoked, one token: only another tenant's key or the wrong user cannot revoke it.
    let id = short["token_id"].as_str().unwrap();
    let short_token = short["token"].as_str().unwrap();
    for (uri, key) in [
        (format!("/v1/users/u1/inbox-tokens/{id}"), h.key(1)),
        (format!("/v1/users/u2/inbox-tokens/{id}"), h.key(0)),
        ("/v1/users/u1/inbox-tokens/itk_unknown".to_owned(), h.key(0)),
    ] {
        let (status, _) = h.call("DELETE", &uri, Some(key), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
    }
    let (status, _) = h.call("GET", "/v1/inbox", Some(short_token), None).await;
    assert_eq!(status, StatusCode::OK);
    let uri = format!("/v1/users/u1/inbox-tokens/{id}");
    let (status, _) = h.call("DELETE", &uri, Some(h.key(0)), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h.call("GET", "/v1/inbox", Some(short_token), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked");
    let (status, _) = h.call("GET", "/v1/inbox", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK, "u1's other token still works");

    // Revoked, all of a user's tokens.
    let (status, body) = h
        .call("DELETE", "/v1/users/u1/inbox-tokens", Some(h.key(0)), None)
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"revoked": 1})));
    let (status, _) = h.call("GET", "/v1/inbox", Some(&token), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked with all of u1's");
}

#[tokio::test]
async fn inbox_read_state_and_unread_count_follow_the_tokens_user() {
    let h = harness().await;
    let token = user_with_token(&h, "u1").await;
    let other = user_with_token(&h, "u2").await;
    let mine = deliver(&h, "u1", &["a", "b", "c"]).await;
    let theirs = deliver(&h, "u2", &["a"]).await;
    let unread = |token: String| {
        let h = &h;
        async move {
            let (status, body) = h
                .call("GET", "/v1/inbox/unread-count", Some(&token), None)
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["unread"].as_u64().unwrap()
        }
    };
    assert_eq!(unread(token.clone()).await, 3);

    let read_uri = |m: &InboxMessage| format!("/v1/inbox/messages/{}/read", m.id);
    let (status, first) = h
        .call("POST", &read_uri(&mine[0]), Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["message_id"], mine[0].id.as_str());
    // Idempotent: reading again keeps the first time.
    let (status, again) = h
        .call("POST", &read_uri(&mine[0]), Some(&token), None)
        .await;
    assert_eq!((status, &again), (StatusCode::OK, &first));
    // Another user's message, or no message at all, is not found.
    for uri in [
        read_uri(&theirs[0]),
        "/v1/inbox/messages/nope/read".to_owned(),
    ] {
        let (status, _) = h.call("POST", &uri, Some(&token), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
    }
    assert_eq!(unread(token.clone()).await, 2);
    assert_eq!(unread(other.clone()).await, 1);

    // Both listings show the read time.
    let (_, own) = h.call("GET", "/v1/inbox", Some(&token), None).await;
    let (_, tenant) = h
        .call("GET", "/v1/users/u1/inbox", Some(h.key(0)), None)
        .await;
    for page in [&own, &tenant] {
        let read: Vec<&Value> = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| !m["read_at_ms"].is_null())
            .collect();
        assert_eq!(read.len(), 1, "{page}");
        assert_eq!(read[0]["read_at_ms"], first["read_at_ms"]);
    }

    let (status, body) = h
        .call("POST", "/v1/inbox/read-all", Some(&token), None)
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"marked": 2})));
    let (_, body) = h
        .call("POST", "/v1/inbox/read-all", Some(&token), None)
        .await;
    assert_eq!(body, json!({"marked": 0}));
    assert_eq!(unread(token).await, 0);
    assert_eq!(unread(other).await, 1, "u2's inbox is untouched");
}

/// Reads Server-Sent Events off a response body.
struct Sse {
    body: BodyDataStream,
    buf: String,
}

impl Sse {
    /// The next event's `(event, id, data)`, skipping keep-alive comments.
    async fn next(&mut self) -> (String, String, Value) {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::new(), String::new(), None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).unwrap());
                    }
                }
                if let Some(data) = data {
                    return (event, id, data);
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.body.next())
                .await
                .expect("an event within 10 s")
                .expect("the stream stays open")
                .unwrap();
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

async fn open_sse(h: &Harness, token: &str, last_event_id: Option<&str>) -> Sse {
    let mut request =
        Request::get("/v1/inbox/stream").header(header::AUTHORIZATION, format!("Bearer {token}"));
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response =
        tower::ServiceExt::oneshot(h.router.clone(), request.body(Body::empty()).unwrap())
            .await
            .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    Sse {
        body: response.into_body().into_data_stream(),
        buf: String::new(),
    }
}

#[tokio::test]
async fn inbox_sse_replays_after_the_last_event_id_then_streams_live() {
    let h = harness().await;
    let token = user_with_token(&h, "u1").await;
    user_with_token(&h, "u2").await;
    let early = deliver(&h, "u1", &["a", "b", "c"]).await;
    deliver(&h, "u2", &["x"]).await;

    // Resuming after the first message replays the other two, then says it is live (at the
    // user's last event: u2's message is no business of this stream).
    let mut sse = open_sse(&h, &token, Some("1")).await;
    for (m, want_id) in early[1..].iter().zip(["2", "3"]) {
        let (event, id, data) = sse.next().await;
        assert_eq!((event.as_str(), id.as_str()), ("message", want_id));
        assert_eq!(data["id"], json!(want_id.parse::<i64>().unwrap()));
        assert_eq!(data["message"]["id"], m.id.as_str());
        assert_eq!(data["message"]["title"], m.title.as_str());
    }
    let (event, id, _) = sse.next().await;
    assert_eq!((event.as_str(), id.as_str()), ("ready", "3"));

    // Live: a new message (written as the worker would, seen through the poller), then a
    // read from another device; u2's traffic never shows.
    deliver(&h, "u2", &["y"]).await;
    let late = deliver(&h, "u1", &["d"]).await;
    let (event, id, data) = sse.next().await;
    assert_eq!((event.as_str(), id.as_str()), ("message", "6"));
    assert_eq!(data["message"]["id"], late[0].id.as_str());
    let uri = format!("/v1/inbox/messages/{}/read", early[0].id);
    let (status, _) = h.call("POST", &uri, Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    let (event, id, data) = sse.next().await;
    assert_eq!((event.as_str(), id.as_str()), ("read", "7"));
    assert_eq!(data["message_id"], early[0].id.as_str());

    // Without an id the stream starts at the current end: nothing is replayed.
    let mut fresh = open_sse(&h, &token, None).await;
    let (event, id, _) = fresh.next().await;
    assert_eq!((event.as_str(), id.as_str()), ("ready", "7"));
    let (status, _) = h
        .call("POST", "/v1/inbox/read-all", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    for stream in [&mut sse, &mut fresh] {
        let (event, id, _) = stream.next().await;
        assert_eq!((event.as_str(), id.as_str()), ("read_all", "8"));
    }

    // A malformed resume point is refused rather than silently replaying everything.
    let request = Request::get("/v1/inbox/stream?last_event_id=abc")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let (status, body) = h.send(request).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "last_event_id");
}
