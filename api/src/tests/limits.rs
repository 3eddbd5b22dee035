//! Size limits and the accept-time checks that keep one tenant's input from hurting others:
//! each refusal is a 422 naming the field and the limit, and records nothing.

use axum::http::StatusCode;
use fanout_domain::limits::{DEFAULT_MAX_DATA_BYTES, MAX_DEVICES_PER_USER};
use serde_json::{Value, json};

use super::{ADMIN_KEY, Harness, harness, trigger, user_with_token};

/// How many workflows the fake orchestrator has been asked to start.
fn started(h: &Harness) -> usize {
    h.orchestrator.started.lock().unwrap().len()
}

async fn notify(h: &Harness, key: usize, body: Value) -> (StatusCode, Value) {
    h.call("POST", "/v1/notify", Some(h.key(key)), Some(body))
        .await
}

/// A trigger whose `data` is `bytes` long in JSON, give or take the wrapper.
fn with_data_of(dedupe: &str, bytes: usize) -> Value {
    let mut body = trigger(dedupe);
    body["data"] = json!({"actor": "Dana", "blob": "x".repeat(bytes)});
    body
}

#[tokio::test]
async fn data_over_64_kib_is_422_naming_the_field_and_the_operator_can_raise_it_per_tenant() {
    let h = harness().await;
    let (status, answer) = notify(&h, 0, with_data_of("big", 65 * 1024)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["field"], "data");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&DEFAULT_MAX_DATA_BYTES.to_string()),
        "{message}"
    );
    assert_eq!(started(&h), 0, "a refused notify starts nothing");
    let (status, _) = notify(&h, 0, with_data_of("fits", 60 * 1024)).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let (status, tenant) = h
        .call(
            "PATCH",
            "/v1/admin/tenants/a",
            Some(ADMIN_KEY),
            Some(json!({"max_data_bytes": 100_000})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tenant}");
    assert_eq!(tenant["effective"]["max_data_bytes"], 100_000);
    let (status, answer) = notify(&h, 0, with_data_of("raised", 65 * 1024)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    // Only tenant a's cap moved.
    let (status, _) = notify(&h, 1, with_data_of("other", 65 * 1024)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // The operator cannot set it past the ceiling that keeps pages under Temporal's limits.
    let (status, answer) = h
        .call(
            "PATCH",
            "/v1/admin/tenants/a",
            Some(ADMIN_KEY),
            Some(json!({"max_data_bytes": 10_000_000})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["field"], "max_data_bytes");
}

#[tokio::test]
async fn metadata_is_bounded_in_entries_keys_and_values() {
    let h = harness().await;
    let many: serde_json::Map<String, Value> =
        (0..33).map(|i| (format!("k{i}"), json!("v"))).collect();
    for (metadata, field) in [
        (Value::Object(many), "metadata"),
        (json!({"team": "x".repeat(513)}), "metadata.team"),
        (json!({"k".repeat(65): "v"}), "metadata (a key)"),
    ] {
        let mut body = trigger("meta");
        body["metadata"] = metadata;
        let (status, answer) = notify(&h, 0, body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }
    assert_eq!(started(&h), 0);
}

#[tokio::test]
async fn a_notify_missing_a_value_the_template_needs_is_422_naming_it_and_dry_run_shows_it() {
    let h = harness().await;
    let (status, body) = h
        .call(
            "PUT",
            "/v1/templates/order",
            Some(h.key(0)),
            Some(json!({"name": "Order", "email": {
                "subject": "Your {{ data.product }}",
                "text": "Hi {{ user.name }}{% if data.note is defined %}: {{ data.note }}{% endif %} \
                         from {{ data.shop | default('us') }}"
            }})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let order = |dedupe: &str, data: Value| {
        json!({
            "template_id": "order",
            "recipients_query": {"type": "users", "user_ids": ["u1", "u2", "u3"]},
            "data": data,
            "dedupe_key": dedupe,
        })
    };
    let (status, answer) = notify(&h, 0, order("forgot", json!({"qty": 1}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["field"], "data.product");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("data.product"), "{message}");
    assert!(message.contains("default"), "{message}");
    assert_eq!(started(&h), 0);

    let (status, preview) = h
        .call(
            "POST",
            "/v1/notify?dry_run=true",
            Some(h.key(0)),
            Some(order("preview", json!({}))),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["missing_data"], json!(["data.product"]));

    // Values behind a default or an `is defined` test are optional.
    let (status, answer) = notify(&h, 0, order("ok", json!({"product": "Lamp"}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
}

#[tokio::test]
async fn the_actor_is_left_out_of_the_audience() {
    let h = harness().await;
    let mut body = trigger("actor");
    body["actor_id"] = json!("u1");
    let (status, answer) = notify(&h, 0, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let input = h.orchestrator.started.lock().unwrap()[0].clone();
    assert_eq!(
        serde_json::to_value(&input.recipients).unwrap(),
        json!({"type": "users", "user_ids": ["u2"]})
    );
    // Followers and segments leave the actor out when they are resolved.
    let mut body = trigger("actor-followers");
    body["actor_id"] = json!("u9");
    body["recipients_query"] = json!({"type": "followers", "of": "u1"});
    let (status, _) = notify(&h, 0, body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let input = h.orchestrator.started.lock().unwrap()[1].clone();
    assert_eq!(input.actor_id.as_ref().map(|a| a.as_str()), Some("u9"));
    // An audience of only the actor is a mistake worth naming.
    let mut body = trigger("only-actor");
    body["actor_id"] = json!("u1");
    body["recipients_query"] = json!({"type": "users", "user_ids": ["u1"]});
    let (status, answer) = notify(&h, 0, body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["field"], "actor_id");
}

#[tokio::test]
async fn runaway_and_oversized_templates_are_refused_when_written() {
    let h = harness().await;
    let put = |body: Value| {
        let h = &h;
        async move {
            h.call("PUT", "/v1/templates/t", Some(h.key(0)), Some(body))
                .await
        }
    };
    let (status, answer) = put(json!({"name": "Loop", "in_app": {
        "title": "t",
        "body": "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}"
    }}))
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["problems"][0]["kind"], "limit", "{answer}");
    assert_eq!(answer["error"]["field"], "in_app.body");

    let (status, answer) = put(json!({"name": "Big", "email": {
        "subject": "s", "text": "x".repeat(64 * 1024 + 1)
    }}))
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["field"], "email.text");

    let keys: serde_json::Map<String, Value> =
        (0..33).map(|i| (format!("k{i}"), json!("v"))).collect();
    let (status, answer) = put(json!({"name": "Keys", "push": {
        "title": "t", "body": "b", "data": keys
    }}))
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["field"], "push.data");
}

#[tokio::test]
async fn profiles_are_bounded_in_devices_name_and_locale() {
    let h = harness().await;
    let devices: Vec<Value> = (0..=MAX_DEVICES_PER_USER)
        .map(|i| json!({"platform": "fcm", "token": format!("token-{i}")}))
        .collect();
    for (body, field) in [
        (json!({"devices": devices}), "devices"),
        (json!({"name": "n".repeat(257)}), "name"),
        (json!({"locale": "l".repeat(36)}), "locale"),
    ] {
        let (status, answer) = h
            .call("PUT", "/v1/users/u1", Some(h.key(0)), Some(body))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }
    let twenty = &devices[..MAX_DEVICES_PER_USER];
    let (status, answer) = h
        .call(
            "PUT",
            "/v1/users/u1",
            Some(h.key(0)),
            Some(json!({"devices": twenty})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

/// Opens an SSE stream; the response (and so the stream) stays open while it is held.
async fn open_stream(h: &Harness, token: &str) -> axum::response::Response {
    use axum::body::Body;
    use axum::http::{Request, header};
    use tower::ServiceExt;
    h.router
        .clone()
        .oneshot(
            Request::get("/v1/inbox/stream")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn the_21st_stream_of_a_user_is_refused_and_closing_one_makes_room() {
    let h = harness().await;
    let token = user_with_token(&h, "u1").await;
    let mut open = Vec::new();
    for _ in 0..20 {
        let response = open_stream(&h, &token).await;
        assert_eq!(response.status(), StatusCode::OK);
        open.push(response);
    }
    let refused = open_stream(&h, &token).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let body = axum::body::to_bytes(refused.into_body(), 1 << 16)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("20 inbox streams"), "{message}");
    // Another user of the same tenant is not affected.
    let other = user_with_token(&h, "u2").await;
    assert_eq!(open_stream(&h, &other).await.status(), StatusCode::OK);
    drop(open.pop());
    assert_eq!(open_stream(&h, &token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn inbox_writes_are_limited_per_token() {
    let h = harness().await;
    let token = user_with_token(&h, "u1").await;
    let read_all = |token: String| {
        let h = &h;
        async move {
            h.call("POST", "/v1/inbox/read-all", Some(&token), None)
                .await
                .0
        }
    };
    // The burst of 20 goes through; writes after it are refused as soon as they outrun the
    // refill of 5 a second, which a loop of local calls does at once.
    for i in 0..20 {
        assert_eq!(read_all(token.clone()).await, StatusCode::OK, "write {i}");
    }
    let mut tries = 0;
    while read_all(token.clone()).await != StatusCode::TOO_MANY_REQUESTS {
        tries += 1;
        assert!(tries < 10_000, "writes were never limited");
    }
    // Another token (another device) has its own quota.
    let (status, body) = h
        .call("POST", "/v1/users/u1/inbox-token", Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let second = body["token"].as_str().unwrap().to_owned();
    assert_eq!(read_all(second).await, StatusCode::OK);
    // A message that does not exist is 404 before any write.
    let (status, _) = h
        .call(
            "POST",
            "/v1/inbox/messages/nope/read",
            Some(&user_with_token(&h, "u3").await),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn dry_runs_have_their_own_lower_quota() {
    let h = harness().await;
    let mut refused = None;
    for i in 0..50 {
        let (status, answer) = h
            .call(
                "POST",
                "/v1/notify?dry_run=true",
                Some(h.key(0)),
                Some(trigger(&format!("dry-{i}"))),
            )
            .await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some((i, answer));
            break;
        }
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let (at, answer) = refused.expect("dry runs are limited");
    assert!((10..50).contains(&at), "refused after {at}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("dry-run"), "{message}");
    // Real notifies draw on their own bucket.
    let (status, answer) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(trigger("real")))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
}

#[tokio::test]
async fn a_body_over_the_router_limit_is_413_naming_the_body() {
    let h = harness().await;
    let mut body = trigger("huge");
    body["data"] = json!({"blob": "x".repeat(3 * 1024 * 1024)});
    let (status, answer) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(body))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(answer["error"]["field"], "body");
    assert_eq!(started(&h), 0);
}

#[tokio::test]
async fn a_stream_resuming_from_before_the_retention_window_is_told_to_re_list() {
    use axum::body::Body;
    use axum::http::{Request, header};
    use fanout_domain::inbox::InboxMessage;
    use fanout_domain::{Channel, DedupeKey, InstanceId, TenantId, UserId};
    use fanout_store::retention::RetentionPolicy;
    use futures::StreamExt;
    use tower::ServiceExt;

    let h = harness().await;
    let token = user_with_token(&h, "u1").await;
    let tenant = TenantId::parse("a").unwrap();
    let user = UserId::parse("u1").unwrap();
    let request_id = DedupeKey::new(tenant.clone(), "old").unwrap().request_id();
    let message = InboxMessage {
        id: InstanceId::derive(&request_id, &user, Channel::InApp),
        user_id: user.clone(),
        request_id,
        title: "old".into(),
        body: "b".into(),
        action_url: None,
        data: json!({}),
        created_at_ms: fanout_store::now_ms(),
        read_at_ms: None,
    };
    h.store
        .record_deliveries(&tenant, &[], &[message])
        .await
        .unwrap();
    let first = |token: String, last_event_id: i64| {
        let h = &h;
        async move {
            let response = h
                .router
                .clone()
                .oneshot(
                    Request::get("/v1/inbox/stream")
                        .header(header::AUTHORIZATION, format!("Bearer {token}"))
                        .header("last-event-id", last_event_id.to_string())
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let chunk = response.into_body().into_data_stream().next().await;
            String::from_utf8(chunk.unwrap().unwrap().to_vec()).unwrap()
        }
    };
    // Within the window, a resume replays what it missed.
    assert!(first(token, 0).await.contains("event: message"));
    let week_on = fanout_store::now_ms() + 8 * 24 * 3600 * 1000;
    let policy = RetentionPolicy {
        inbox_events_days: 7,
        requests_days: 90,
        dead_letters_days: 30,
        batch: 100,
    };
    let pruned = h.store.prune_at(&policy, week_on).await.unwrap();
    assert_eq!(pruned.inbox_events, 1);
    // From before what was pruned: a reset, then the stream goes on from the current end. (The
    // week-old token went with the pruning too.)
    let token = user_with_token(&h, "u1").await;
    let frame = first(token, 0).await;
    assert!(frame.contains("event: reset"), "{frame}");
}

#[tokio::test]
async fn bad_query_strings_are_422_naming_the_parameter() {
    let h = harness().await;
    for (uri, field) in [
        ("/v1/receipts", "request_id"),
        ("/v1/receipts?request_id=x&limit=lots", "limit"),
        ("/v1/dead-letters?limit=-1", "limit"),
    ] {
        let (status, answer) = h.call("GET", uri, Some(h.key(0)), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{uri}: {answer}");
    }
}
