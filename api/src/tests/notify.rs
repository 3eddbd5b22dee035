//! `POST /v1/notify`: who may trigger, what a body must hold, deduplication, and which path each audience takes.

use super::*;

#[tokio::test]
async fn small_lists_take_the_direct_path_and_larger_audiences_the_tree() {
    let h = harness().await;
    let many: Vec<String> = (0..=fanout_domain::request::DIRECT_MAX_RECIPIENTS)
        .map(|i| format!("u{i}"))
        .collect();
    let mut followers = trigger("followers");
    followers["recipients_query"] = json!({"type": "followers", "of": "u1"});
    let mut large = trigger("large");
    large["recipients_query"] = json!({"type": "users", "user_ids": many});
    for (body, path, source) in [
        (trigger("small"), "direct", "receipts"),
        (large, "tree", "receipts"),
        (followers, "tree", "receipts"),
    ] {
        let (status, accepted) = h
            .call("POST", "/v1/notify", Some(h.key(0)), Some(body))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        let id = accepted["request_id"].as_str().unwrap();
        let started = h.orchestrator.started.lock().unwrap().clone();
        let input = started
            .iter()
            .find(|s| s.request_id.as_str() == id)
            .unwrap();
        assert_eq!(input.path.as_str(), path);
        let (_, status) = h
            .call("GET", &format!("/v1/status/{id}"), Some(h.key(0)), None)
            .await;
        assert_eq!(
            (&status["path"], &status["source"]),
            (&json!(path), &json!(source)),
            "{status}"
        );
    }
}

#[tokio::test]
async fn missing_or_wrong_keys_are_401_with_a_challenge() {
    let h = harness().await;
    let (status, body) = h.call("POST", "/v1/notify", None, Some(trigger("k"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = h
        .call(
            "POST",
            "/v1/notify",
            Some("fo_not-a-key"),
            Some(trigger("k")),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let response = h
        .router
        .clone()
        .oneshot(
            Request::get("/v1/status/ntf-a-x")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    assert!(h.orchestrator.started.lock().unwrap().is_empty());
}

#[tokio::test]
async fn malformed_bodies_are_400_or_415() {
    let h = harness().await;
    let request = Request::post("/v1/notify")
        .header(header::AUTHORIZATION, format!("Bearer {}", h.key(0)))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    let (status, body) = h.send(request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let request = Request::post("/v1/notify")
        .header(header::AUTHORIZATION, format!("Bearer {}", h.key(0)))
        .body(Body::from(trigger("k").to_string()))
        .unwrap();
    let (status, body) = h.send(request).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
}

#[tokio::test]
async fn invalid_fields_are_422_naming_the_field() {
    let h = harness().await;
    let cases = [
        (
            json!({"recipients_query": {"type": "users", "user_ids": ["u1"]}}),
            "template_id",
            "missing",
        ),
        (
            json!({"template_id": "welcome", "recipients_query": {"type": "users"}}),
            "recipients_query.user_ids",
            "missing",
        ),
        (
            json!({"template_id": "welcome", "recipients_query": {"type": "users", "user_ids": ["u1", ""]}}),
            "recipients_query.user_ids",
            "[1]",
        ),
        (
            json!({"template_id": "welcome", "recipients_query": {"type": "users", "user_ids": []}}),
            "recipients_query.user_ids",
            "at least one",
        ),
        (
            json!({"template_id": "welcome", "recipients_query": {"type": "everyone"}}),
            "recipients_query.type",
            "everyone",
        ),
        (
            json!({"template_id": "welcome", "recipients_query": {"type": "users", "user_ids": ["u1"]}, "channel_prefs": ["sms"]}),
            "channel_prefs",
            "sms",
        ),
        (
            json!({"template_id": "welcome", "recipients_query": {"type": "users", "user_ids": ["u1"]}, "channel_prefs": ["email"]}),
            "channel_prefs",
            "no email content",
        ),
        (
            json!({"template_id": "welcome", "recipients_query": {"type": "users", "user_ids": ["u1"]}, "ttl_seconds": 0}),
            "ttl_seconds",
            "between 1",
        ),
        (
            json!({"template_id": "bad id!", "recipients_query": {"type": "users", "user_ids": ["u1"]}}),
            "template_id",
            "letters",
        ),
        (
            json!({"template_id": "welcome", "recipients_query": {"type": "users", "user_ids": ["u1"]}, "dedupe_key": "a\u{7}"}),
            "dedupe_key",
            "control",
        ),
        (
            json!({"template_id": "welcome", "recipients_query": {"type": "users", "user_ids": ["u1"]}, "colour": "red"}),
            "colour",
            "unknown field",
        ),
    ];
    for (body, field, hint) in cases {
        let (status, answer) = h
            .call("POST", "/v1/notify", Some(h.key(0)), Some(body.clone()))
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} -> {answer}"
        );
        assert_eq!(answer["error"]["field"], field, "{body} -> {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(hint), "{body}: '{message}' lacks '{hint}'");
    }
    assert!(
        h.orchestrator.started.lock().unwrap().is_empty(),
        "nothing invalid may start"
    );
}

#[tokio::test]
async fn unknown_templates_are_404() {
    let h = harness().await;
    let mut body = trigger("k");
    body["template_id"] = json!("nope");
    let (status, answer) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(body))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nope")
    );
}

#[tokio::test]
async fn a_trigger_is_accepted_once_then_reported_duplicate() {
    let h = harness().await;
    let (status, first) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(trigger("k1")))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, second) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(trigger("k1")))
        .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["duplicate"], true);
    assert_eq!(first["request_id"], second["request_id"]);

    let started = h.orchestrator.started.lock().unwrap().clone();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].tenant_id.as_str(), "a");
    // channel_prefs omitted: every channel the template has.
    assert_eq!(started[0].channels, vec![fanout_domain::Channel::InApp]);
    assert_eq!(started[0].data["actor"], "Dana");
}

#[tokio::test]
async fn the_same_dedupe_key_in_two_tenants_is_two_requests_and_each_is_private() {
    let h = harness().await;
    let (_, a) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(trigger("same")))
        .await;
    let (status, b) = h
        .call("POST", "/v1/notify", Some(h.key(1)), Some(trigger("same")))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{b}");
    assert_ne!(a["request_id"], b["request_id"]);

    let a_id = a["request_id"].as_str().unwrap();
    let (status, own) = h
        .call("GET", &format!("/v1/status/{a_id}"), Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{own}");
    // Two listed users take the direct path: live counts come from the receipts.
    assert_eq!(
        (&own["state"], &own["source"], &own["path"]),
        (&json!("running"), &json!("receipts"), &json!("direct"))
    );
    for uri in [
        format!("/v1/status/{a_id}"),
        format!("/v1/receipts?request_id={a_id}"),
    ] {
        let (status, _) = h.call("GET", &uri, Some(h.key(1)), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri} leaked across tenants");
    }
    let (status, _) = h
        .call("GET", "/v1/status/garbage", Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn notify_accepts_followers_and_segment_audiences() {
    let h = harness().await;
    h.call(
        "PUT",
        "/v1/segments/beta",
        Some(h.key(0)),
        Some(json!({"name": "Beta"})),
    )
    .await;
    let mut followers = trigger("f");
    followers["recipients_query"] = json!({"type": "followers", "of": "star"});
    let mut segment = trigger("s");
    segment["recipients_query"] = json!({"type": "segment", "segment_id": "beta"});
    for body in [&followers, &segment] {
        let (status, answer) = h
            .call("POST", "/v1/notify", Some(h.key(0)), Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }
    let started = h.orchestrator.started.lock().unwrap().clone();
    let queries: Vec<Value> = started
        .iter()
        .map(|s| serde_json::to_value(&s.recipients).unwrap())
        .collect();
    assert_eq!(
        queries,
        [
            followers["recipients_query"].clone(),
            segment["recipients_query"].clone()
        ]
    );
}

#[tokio::test]
async fn notify_to_a_missing_or_foreign_segment_is_404() {
    let h = harness().await;
    h.call(
        "PUT",
        "/v1/segments/beta",
        Some(h.key(0)),
        Some(json!({"name": "Beta"})),
    )
    .await;
    let mut body = trigger("s");
    body["recipients_query"] = json!({"type": "segment", "segment_id": "beta"});
    let (status, answer) = h
        .call("POST", "/v1/notify", Some(h.key(1)), Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(answer["error"]["message"], "segment 'beta' not found");
    body["recipients_query"]["segment_id"] = json!("gamma");
    let (status, answer) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(body))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["error"]["message"], "segment 'gamma' not found");
    assert!(h.orchestrator.started.lock().unwrap().is_empty());
}

#[tokio::test]
async fn invalid_followers_and_segment_queries_are_422_naming_the_field() {
    let h = harness().await;
    let cases = [
        (
            json!({"type": "followers"}),
            "recipients_query.of",
            "missing",
        ),
        (
            json!({"type": "followers", "of": ""}),
            "recipients_query.of",
            "empty",
        ),
        (
            json!({"type": "segment"}),
            "recipients_query.segment_id",
            "missing",
        ),
        (
            json!({"type": "segment", "segment_id": "no spaces"}),
            "recipients_query.segment_id",
            "letters",
        ),
        (
            json!({"type": "followers", "of": "star", "user_ids": ["u1"]}),
            "recipients_query",
            "unknown field",
        ),
    ];
    for (query, field, hint) in cases {
        let mut body = trigger("k");
        body["recipients_query"] = query;
        let (status, answer) = h
            .call("POST", "/v1/notify", Some(h.key(0)), Some(body.clone()))
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} -> {answer}"
        );
        assert_eq!(answer["error"]["field"], field, "{body} -> {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(hint), "{body}: '{message}' lacks '{hint}'");
    }
    assert!(h.orchestrator.started.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_dedupe_key_starts_a_new_request_once_its_window_has_passed() {
    let h = harness_with_window(Duration::ZERO).await;
    let (first_status, first) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(trigger("w")))
        .await;
    let (second_status, second) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(trigger("w")))
        .await;
    assert_eq!(
        (first_status, second_status),
        (StatusCode::ACCEPTED, StatusCode::ACCEPTED)
    );
    assert_eq!(second["duplicate"], false);
    assert_ne!(first["request_id"], second["request_id"]);
    assert!(
        second["request_id"].as_str().unwrap().ends_with("-g1"),
        "{second}"
    );
    assert_eq!(h.orchestrator.started.lock().unwrap().len(), 2);
    // Each generation is a request of its own, with its own status.
    for r in [&first, &second] {
        let id = r["request_id"].as_str().unwrap();
        let (status, _) = h
            .call("GET", &format!("/v1/status/{id}"), Some(h.key(0)), None)
            .await;
        assert_eq!(status, StatusCode::OK);
    }
}
