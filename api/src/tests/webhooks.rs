//! `/v1/webhooks`: registration checks its input and destination, secrets are shown only when
//! made, and each tenant sees only its own endpoints.

use axum::http::StatusCode;
use serde_json::json;

use super::harness;

/// A public address: registering it needs no DNS.
const URL: &str = "https://93.184.216.34/fanout";

#[tokio::test]
async fn endpoints_are_registered_read_changed_rotated_and_deleted_per_tenant() {
    let h = harness().await;
    let (status, created) = h
        .call(
            "POST",
            "/v1/webhooks",
            Some(h.key(0)),
            Some(json!({"url": URL, "event_types": ["delivery.failed", "request.completed"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{created}");
    assert_eq!(
        created["event_types"],
        json!(["request.completed", "delivery.failed"])
    );
    let id = created["endpoint_id"].as_str().unwrap().to_owned();
    let path = format!("/v1/webhooks/{id}");

    let (status, seen) = h.call("GET", &path, Some(h.key(0)), None).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert!(
        seen.get("secret").is_none(),
        "the secret is shown once: {seen}"
    );
    assert_eq!(
        (&seen["enabled"], &seen["pending_events"]),
        (&json!(true), &json!(0))
    );
    let (status, _) = h.call("GET", &path, Some(h.key(1)), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another tenant's endpoint");
    let (_, listed) = h.call("GET", "/v1/webhooks", Some(h.key(1)), None).await;
    assert_eq!(listed["endpoints"], json!([]));

    let (status, changed) = h
        .call(
            "PATCH",
            &path,
            Some(h.key(0)),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["enabled"], false);
    assert_eq!(changed["event_types"], seen["event_types"]);

    let (status, rotated) = h
        .call("POST", &format!("{path}/rotate"), Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_ne!(rotated["secret"].as_str().unwrap(), secret);
    assert!(rotated["previous_secret_until_ms"].as_i64().unwrap() > 0);

    let (status, _) = h.call("DELETE", &path, Some(h.key(1)), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h.call("DELETE", &path, Some(h.key(0)), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h.call("GET", &path, Some(h.key(0)), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_input_is_422_naming_the_field() {
    let h = harness().await;
    for (body, field, says) in [
        (json!({"url": "http://10.1.2.3/x"}), "url", "private"),
        (json!({"url": "http://127.0.0.1:9/x"}), "url", "loopback"),
        (
            json!({"url": "gopher://93.184.216.34/"}),
            "url",
            "http or https",
        ),
        (json!({"url": "nope"}), "url", "absolute URL"),
        (
            json!({"url": URL, "event_types": ["delivery.bounced"]}),
            "event_types[0]",
            "delivery.delivered",
        ),
        (
            json!({"url": URL, "event_types": []}),
            "event_types",
            "at least one",
        ),
    ] {
        let (status, answer) = h
            .call("POST", "/v1/webhooks", Some(h.key(0)), Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
    }
    let (status, listed) = h.call("GET", "/v1/webhooks", Some(h.key(0)), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["endpoints"], json!([]), "nothing was registered");
}

#[tokio::test]
async fn a_tenant_has_at_most_twenty_endpoints() {
    let h = harness().await;
    for i in 0..crate::webhooks::MAX_ENDPOINTS {
        let (status, body) = h
            .call(
                "POST",
                "/v1/webhooks",
                Some(h.key(0)),
                Some(json!({"url": format!("{URL}/{i}")})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = h
        .call(
            "POST",
            "/v1/webhooks",
            Some(h.key(0)),
            Some(json!({"url": URL})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = h
        .call(
            "POST",
            "/v1/webhooks",
            Some(h.key(1)),
            Some(json!({"url": URL})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "another tenant's count is its own"
    );
}
