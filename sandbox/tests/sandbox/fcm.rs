//! FCM HTTP v1 in: the token exchange and `messages:send` over HTTP as a client would do them,
//! Google's error shapes, fault injection and read-back.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fanout_sandbox::fcm::{
    CLIENT_EMAIL, FcmErrorCode, FcmFault, FcmFaultList, FcmMessageCount, FcmMessageList,
    PROJECT_ID, SCOPE,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::TestSandbox;

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The served key file, parsed.
async fn key_file(sandbox: &TestSandbox) -> Value {
    sandbox.get_json("/api/fcm/service-account.json").await
}

/// An assertion signed with the key file's key, with `change` applied to the usual claims.
fn assertion(key_file: &Value, change: Value) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut claims = json!({
        "iss": key_file["client_email"],
        "aud": key_file["token_uri"],
        "scope": SCOPE,
        "iat": now,
        "exp": now + 3600,
    });
    for (name, value) in change.as_object().unwrap() {
        claims[name] = value.clone();
    }
    let key =
        EncodingKey::from_rsa_pem(key_file["private_key"].as_str().unwrap().as_bytes()).unwrap();
    let header = Header {
        kid: key_file["private_key_id"].as_str().map(str::to_owned),
        ..Header::new(Algorithm::RS256)
    };
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

async fn exchange(sandbox: &TestSandbox, assertion: &str) -> Response {
    sandbox
        .http
        .post(sandbox.url("/oauth2/token"))
        .form(&[("grant_type", JWT_BEARER), ("assertion", assertion)])
        .send()
        .await
        .unwrap()
}

/// An access token obtained as a client would.
async fn access_token(sandbox: &TestSandbox) -> String {
    let key_file = key_file(sandbox).await;
    let response = exchange(sandbox, &assertion(&key_file, json!({}))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let granted: Value = response.json().await.unwrap();
    granted["access_token"].as_str().unwrap().to_owned()
}

async fn send(sandbox: &TestSandbox, access_token: &str, project: &str, body: &Value) -> Response {
    sandbox
        .http
        .post(sandbox.url(&format!("/v1/projects/{project}/messages:send")))
        .bearer_auth(access_token)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn to(token: &str) -> Value {
    json!({ "message": {
        "token": token,
        "notification": { "title": "Hello", "body": "World" },
    } })
}

/// Asserts a Google error body and returns it.
async fn google_error(response: Response, status: StatusCode, canonical: &str) -> Value {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    let error = &body["error"];
    assert_eq!(error["code"], status.as_u16(), "{body}");
    assert_eq!(error["status"], canonical, "{body}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    error.clone()
}

/// The `errorCode` of the error's `FcmError` detail.
fn fcm_error_code(error: &Value) -> Option<&str> {
    error["details"]
        .as_array()?
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.firebase.fcm.v1.FcmError")?["errorCode"]
        .as_str()
}

async fn count(sandbox: &TestSandbox, token: &str) -> u64 {
    let count: FcmMessageCount = sandbox
        .get_json(&format!("/api/fcm/messages/count?token={token}"))
        .await;
    count.count
}

async fn add_fault(sandbox: &TestSandbox, rule: Value) -> FcmFault {
    let response = sandbox
        .http
        .post(sandbox.url("/api/fcm/faults"))
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED, "{rule}");
    response.json().await.unwrap()
}

#[tokio::test]
async fn served_key_file_exchanges_for_a_token_that_sends() {
    let sandbox = TestSandbox::spawn().await;
    let key_file = key_file(&sandbox).await;
    assert_eq!(key_file["type"], "service_account");
    assert_eq!(key_file["project_id"], PROJECT_ID);
    assert_eq!(key_file["client_email"], CLIENT_EMAIL);
    assert_eq!(key_file["token_uri"], sandbox.url("/oauth2/token"));

    let response = exchange(&sandbox, &assertion(&key_file, json!({}))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let granted: Value = response.json().await.unwrap();
    assert_eq!(granted["token_type"], "Bearer");
    assert_eq!(granted["expires_in"], 3599);
    let access_token = granted["access_token"].as_str().unwrap();

    let body = json!({ "message": {
        "token": "phone-1",
        "notification": { "title": "Hello", "body": "World" },
        "data": { "order": "42" },
        "android": { "priority": "HIGH", "ttl": "3.5s", "collapse_key": "orders" },
        "apns": { "headers": { "apns-priority": "10" }, "payload": { "aps": { "badge": 1 } } },
    } });
    let response = send(&sandbox, access_token, PROJECT_ID, &body).await;
    assert_eq!(response.status(), StatusCode::OK);
    let sent: Value = response.json().await.unwrap();
    let name = sent["name"].as_str().unwrap();
    assert!(
        name.starts_with(&format!("projects/{PROJECT_ID}/messages/")),
        "{name}"
    );

    let list: FcmMessageList = sandbox.get_json("/api/fcm/messages").await;
    assert_eq!(list.messages.len(), 1);
    let stored = &list.messages[0];
    assert_eq!(stored.name, name);
    assert_eq!(stored.token, "phone-1");
    assert_eq!(stored.project, PROJECT_ID);
    assert_eq!(stored.message, body["message"]);
    assert_eq!(count(&sandbox, "phone-1").await, 1);

    let stats: Value = sandbox.get_json("/api/fcm/tokens").await;
    assert_eq!(stats, json!({ "issued": 1, "active": 1 }));
}

#[tokio::test]
async fn token_endpoint_refuses_like_google() {
    let sandbox = TestSandbox::spawn().await;
    let key_file = key_file(&sandbox).await;
    let refusals = [
        (
            json!({ "aud": "https://oauth2.googleapis.com/token" }),
            "invalid_grant",
        ),
        (json!({ "iss": "someone@example.com" }), "invalid_grant"),
        (json!({ "exp": 4_000_000_000u64 }), "invalid_grant"),
        (
            json!({ "scope": "https://www.googleapis.com/auth/devstorage.read_only" }),
            "invalid_scope",
        ),
    ];
    for (change, code) in refusals {
        let response = exchange(&sandbox, &assertion(&key_file, change.clone())).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{change}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], code, "{change}: {body}");
        assert!(body["error_description"].as_str().is_some(), "{body}");
    }

    let unsupported = sandbox
        .http
        .post(sandbox.url("/oauth2/token"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let body: Value = unsupported.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_grant_type");
    let not_a_form = sandbox
        .http
        .post(sandbox.url("/oauth2/token"))
        .json(&json!({ "grant_type": JWT_BEARER }))
        .send()
        .await
        .unwrap();
    assert_eq!(not_a_form.status(), StatusCode::BAD_REQUEST);
    let body: Value = not_a_form.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");

    let stats: Value = sandbox.get_json("/api/fcm/tokens").await;
    assert_eq!(stats["issued"], 0);
}

#[tokio::test]
async fn send_requires_a_valid_token_for_the_project() {
    let sandbox = TestSandbox::spawn().await;
    let anonymous = sandbox
        .http
        .post(sandbox.url(&format!("/v1/projects/{PROJECT_ID}/messages:send")))
        .json(&to("phone-1"))
        .send()
        .await
        .unwrap();
    assert!(anonymous.headers().contains_key("www-authenticate"));
    google_error(anonymous, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
    let made_up = send(&sandbox, "ya29.made-up", PROJECT_ID, &to("phone-1")).await;
    google_error(made_up, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;

    let token = access_token(&sandbox).await;
    let other_project = send(&sandbox, &token, "someone-else", &to("phone-1")).await;
    google_error(other_project, StatusCode::FORBIDDEN, "PERMISSION_DENIED").await;
    let response = send(&sandbox, &token, PROJECT_ID, &to("phone-1")).await;
    assert_eq!(response.status(), StatusCode::OK);

    let revoked = sandbox
        .http
        .delete(sandbox.url("/api/fcm/tokens"))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    let response = send(&sandbox, &token, PROJECT_ID, &to("phone-1")).await;
    google_error(response, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
    assert_eq!(count(&sandbox, "phone-1").await, 1);
}

#[tokio::test]
async fn malformed_messages_are_invalid_arguments() {
    let sandbox = TestSandbox::spawn().await;
    let token = access_token(&sandbox).await;
    let cases = [
        (
            json!({ "message": { "token": "t", "data": { "count": 3 } } }),
            Some("message.data[count].value"),
        ),
        (
            json!({ "message": { "token": "t", "android": { "priority": "URGENT" } } }),
            Some("message.android.priority"),
        ),
        (
            json!({ "message": { "token": "t", "android": { "ttl": "an hour" } } }),
            Some("message.android.ttl"),
        ),
        (
            json!({ "message": { "notification": { "title": "no token" } } }),
            Some("message.token"),
        ),
        (
            json!({ "message": { "token": "t", "priority": "high" } }),
            None,
        ),
        (json!({ "registration_ids": ["t"] }), None),
    ];
    for (body, field) in cases {
        let response = send(&sandbox, &token, PROJECT_ID, &body).await;
        let error = google_error(response, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT").await;
        let violation = error["details"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|d| d["fieldViolations"][0]["field"].as_str());
        assert_eq!(violation, field, "{body}: {error}");
    }
    let dry_run = json!({ "message": to("t")["message"], "validate_only": true });
    let response = send(&sandbox, &token, PROJECT_ID, &dry_run).await;
    assert_eq!(response.status(), StatusCode::OK);
    let sent: Value = response.json().await.unwrap();
    assert_eq!(
        sent["name"],
        format!("projects/{PROJECT_ID}/messages/fake_message_id")
    );
    let all: FcmMessageCount = sandbox.get_json("/api/fcm/messages/count").await;
    assert_eq!(all.count, 0);
}

#[tokio::test]
async fn faults_answer_per_token_in_googles_shape() {
    let sandbox = TestSandbox::spawn().await;
    let token = access_token(&sandbox).await;
    let dead = add_fault(
        &sandbox,
        json!({ "token": "dead", "error": "UNREGISTERED" }),
    )
    .await;
    assert_eq!(dead.error, Some(FcmErrorCode::Unregistered));
    assert_eq!(dead.remaining, None);
    let busy = add_fault(
        &sandbox,
        json!({ "token": "*", "error": "QUOTA_EXCEEDED", "retry_after_s": 5, "times": 1 }),
    )
    .await;

    // The wildcard rule applies first to any token but dead's, once.
    let response = send(&sandbox, &token, PROJECT_ID, &to("phone-1")).await;
    assert_eq!(response.headers()["retry-after"], "5");
    let error = google_error(
        response,
        StatusCode::TOO_MANY_REQUESTS,
        "RESOURCE_EXHAUSTED",
    )
    .await;
    assert_eq!(fcm_error_code(&error), Some("QUOTA_EXCEEDED"));
    let response = send(&sandbox, &token, PROJECT_ID, &to("phone-1")).await;
    assert_eq!(response.status(), StatusCode::OK);

    for _ in 0..2 {
        let response = send(&sandbox, &token, PROJECT_ID, &to("dead")).await;
        let error = google_error(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
        assert_eq!(fcm_error_code(&error), Some("UNREGISTERED"));
    }
    let faults: FcmFaultList = sandbox.get_json("/api/fcm/faults").await;
    assert_eq!(faults.faults, std::slice::from_ref(&dead));
    assert_ne!(busy.id, dead.id);

    for (error, status, canonical) in [
        (
            "INVALID_ARGUMENT",
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
        ),
        (
            "UNAVAILABLE",
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
        ),
        ("INTERNAL", StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        (
            "SENDER_ID_MISMATCH",
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
        ),
    ] {
        add_fault(
            &sandbox,
            json!({ "token": "flaky", "error": error, "times": 1 }),
        )
        .await;
        let response = send(&sandbox, &token, PROJECT_ID, &to("flaky")).await;
        assert!(!response.headers().contains_key("retry-after"));
        let body = google_error(response, status, canonical).await;
        assert_eq!(fcm_error_code(&body), Some(error));
    }

    let removed = sandbox
        .http
        .delete(sandbox.url(&format!("/api/fcm/faults/{}", dead.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    let response = send(&sandbox, &token, PROJECT_ID, &to("dead")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(count(&sandbox, "dead").await, 1);
    assert_eq!(count(&sandbox, "flaky").await, 0);

    add_fault(&sandbox, json!({ "token": "*", "error": "INTERNAL" })).await;
    let cleared = sandbox
        .http
        .delete(sandbox.url("/api/fcm/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
    let faults: FcmFaultList = sandbox.get_json("/api/fcm/faults").await;
    assert!(faults.faults.is_empty());

    let invalid = sandbox
        .http
        .post(sandbox.url("/api/fcm/faults"))
        .json(&json!({ "token": "x", "error": "UNAVAILABLE", "max_per_second": 3 }))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = invalid.json().await.unwrap();
    assert_eq!(
        body["error"],
        "a rule with max_per_second answers QUOTA_EXCEEDED only"
    );
    let missing = sandbox
        .http
        .delete(sandbox.url("/api/fcm/faults/999"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_latency_rule_delays_an_accepted_message() {
    let sandbox = TestSandbox::spawn().await;
    let token = access_token(&sandbox).await;
    add_fault(
        &sandbox,
        json!({ "token": "slow", "delay_ms": 300, "times": 1 }),
    )
    .await;
    let started = Instant::now();
    let response = send(&sandbox, &token, PROJECT_ID, &to("slow")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(count(&sandbox, "slow").await, 1);
}

#[tokio::test]
async fn a_rate_rule_refuses_requests_above_its_rate() {
    let sandbox = TestSandbox::spawn().await;
    let token = access_token(&sandbox).await;
    let rule = add_fault(&sandbox, json!({ "token": "*", "max_per_second": 2 })).await;
    assert_eq!(rule.error, Some(FcmErrorCode::QuotaExceeded));
    assert_eq!(rule.retry_after_s, Some(1));
    let started = Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let response = send(&sandbox, &token, PROJECT_ID, &to("phone-1")).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(response.headers()["retry-after"], "1");
        }
        statuses.push(response.status().as_u16());
    }
    // Six loopback requests take far less than the rule's one-second window.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "too slow to judge"
    );
    assert_eq!(statuses, [200, 200, 429, 429, 429, 429]);
    assert_eq!(count(&sandbox, "phone-1").await, 2);
}

#[tokio::test]
async fn read_back_pages_filters_and_clears() {
    let sandbox = TestSandbox::spawn().await;
    let token = access_token(&sandbox).await;
    for device in ["a", "b", "a", "a"] {
        let response = send(&sandbox, &token, PROJECT_ID, &to(device)).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let page: FcmMessageList = sandbox.get_json("/api/fcm/messages?token=a&limit=2").await;
    let tokens: Vec<_> = page.messages.iter().map(|m| m.token.as_str()).collect();
    assert_eq!(tokens, ["a", "a"]);
    let after = page.next_after_id.unwrap();
    assert_eq!(after, page.messages[1].id);
    let rest: FcmMessageList = sandbox
        .get_json(&format!("/api/fcm/messages?token=a&after_id={after}"))
        .await;
    assert_eq!(rest.messages.len(), 1);
    assert_eq!(rest.next_after_id, None);
    assert!(rest.messages[0].id > after);
    assert!(rest.messages[0].received_at_ms > 0);
    assert_eq!(count(&sandbox, "a").await, 3);
    assert_eq!(count(&sandbox, "b").await, 1);

    let cleared = sandbox
        .http
        .delete(sandbox.url("/api/fcm/messages"))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
    let all: FcmMessageCount = sandbox.get_json("/api/fcm/messages/count").await;
    assert_eq!(all.count, 0);
    let bad = sandbox
        .http
        .get(sandbox.url("/api/fcm/messages?limit=lots"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}
