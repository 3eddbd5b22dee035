//! Digest templates: the declaration's bounds, triggers folded into one digest (no workflow of
//! their own), status naming the digest, and cancel taking a trigger out of an open digest.

use super::*;

/// Puts `likes` on tenant `a` with the given digest declaration; returns the answer.
async fn put_likes(h: &Harness, digest: Value) -> (StatusCode, Value) {
    h.call(
        "PUT",
        "/v1/templates/likes",
        Some(h.key(0)),
        Some(json!({
            "name": "Likes",
            "in_app": {"title": "{{ digest.count }} likes", "body": "{% for i in digest.items %}{{ i.actor }} {% endfor %}"},
            "digest": digest,
        })),
    )
    .await
}

fn like(dedupe: &str, post: &str) -> Value {
    json!({
        "template_id": "likes",
        "recipients_query": {"type": "users", "user_ids": ["u1", "u2"]},
        "data": {"actor": dedupe, "post_id": post},
        "dedupe_key": dedupe
    })
}

#[tokio::test]
async fn digest_bounds_are_422s_naming_the_field() {
    let h = harness().await;
    for (digest, field) in [
        (json!({"window_seconds": 0}), "digest.window_seconds"),
        (json!({"window_seconds": 86_401}), "digest.window_seconds"),
        (
            json!({"window_seconds": 60, "max_items": 0}),
            "digest.max_items",
        ),
        (
            json!({"window_seconds": 60, "max_items": 101}),
            "digest.max_items",
        ),
        (json!({"window_seconds": 60, "key": ""}), "digest.key"),
    ] {
        let (status, body) = put_likes(&h, digest.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{digest}: {body}");
        assert_eq!(body["error"]["field"], field, "{body}");
    }
    let (status, body) = put_likes(&h, json!({"window_seconds": 600, "key": "post_id"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["digest"],
        json!({"window_seconds": 600, "key": "post_id", "max_items": 20})
    );
}

#[tokio::test]
async fn triggers_fold_into_one_digest_per_key_and_cancel_takes_one_out() {
    let h = harness().await;
    let (status, body) = put_likes(&h, json!({"window_seconds": 600, "key": "post_id"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let mut ids = Vec::new();
    for (dedupe, post) in [("ann", "p1"), ("bob", "p1"), ("cy", "p2")] {
        let (status, body) = h
            .call(
                "POST",
                "/v1/notify",
                Some(h.key(0)),
                Some(like(dedupe, post)),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        ids.push(body["request_id"].as_str().unwrap().to_owned());
    }
    // No request workflow: one digest workflow per key.
    assert!(h.orchestrator.started.lock().unwrap().is_empty());
    assert_eq!(h.orchestrator.digests.lock().unwrap().len(), 2);

    let status_of = |id: String| {
        let h = &h;
        async move {
            let (status, body) = h
                .call("GET", &format!("/v1/status/{id}"), Some(h.key(0)), None)
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body
        }
    };
    let (ann, bob, cy) = (
        status_of(ids[0].clone()).await,
        status_of(ids[1].clone()).await,
        status_of(ids[2].clone()).await,
    );
    assert_eq!(ann["state"], "digested");
    assert_eq!(ann["digest"]["state"], "open");
    assert_eq!(ann["digest"]["digest_id"], bob["digest"]["digest_id"]);
    assert_ne!(ann["digest"]["digest_id"], cy["digest"]["digest_id"]);

    // A data key over its bound is refused before anything is recorded.
    let long = "x".repeat(fanout_domain::digest::MAX_DIGEST_KEY_VALUE_BYTES + 1);
    let (status, body) = h
        .call(
            "POST",
            "/v1/notify",
            Some(h.key(0)),
            Some(like("dee", &long)),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "data.post_id");

    let (status, body) = h
        .call(
            "POST",
            "/v1/cancel",
            Some(h.key(0)),
            Some(json!({"request_id": ids[1]})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(status_of(ids[1].clone()).await["state"], "cancelled");
    let digest_id =
        fanout_domain::DigestId::parse(ann["digest"]["digest_id"].as_str().unwrap()).unwrap();
    let views = h
        .store
        .digest_views(
            &digest_id,
            &[fanout_domain::UserId::parse("u1").unwrap()],
            20,
        )
        .await
        .unwrap();
    assert_eq!(views.values().next().unwrap().count, 1);
    // Cancelled twice: the request is over.
    let (status, _) = h
        .call(
            "POST",
            "/v1/cancel",
            Some(h.key(0)),
            Some(json!({"request_id": ids[1]})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_notify_may_declare_its_own_digest() {
    let h = harness().await;
    // `welcome` declares no digest: a trigger that brings its own is folded all the same.
    let mut body = trigger("own");
    body["digest"] = json!({"window_seconds": 30});
    let (status, accepted) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(body))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let id = accepted["request_id"].as_str().unwrap();
    let (_, status) = h
        .call("GET", &format!("/v1/status/{id}"), Some(h.key(0)), None)
        .await;
    assert_eq!(status["state"], "digested", "{status}");
    assert!(h.orchestrator.started.lock().unwrap().is_empty());
    let digests = h.orchestrator.digests.lock().unwrap().clone();
    assert_eq!(digests.len(), 1);
    // The notify's own window: the digest closes 30 s after the trigger that opened it.
    let window = digests[0].closes_at_ms - status["created_at_ms"].as_i64().unwrap();
    assert!((29_000..=31_000).contains(&window), "{window}");

    let mut bad = trigger("bad");
    bad["digest"] = json!({"window_seconds": 30, "max_items": 500});
    let (status, body) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(bad))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "digest.max_items");
    // Refused before anything was recorded.
    let (status, _) = h
        .call(
            "POST",
            "/v1/cancel",
            Some(h.key(0)),
            Some(json!({"dedupe_key": "bad"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Without one, the same template delivers as before.
    let (status, _) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(trigger("plain")))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(h.orchestrator.started.lock().unwrap().len(), 1);
}
