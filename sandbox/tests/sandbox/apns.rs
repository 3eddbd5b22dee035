//! The APNs simulator over real HTTP/2 and TLS: auth, validation, read-back and faults, driven
//! by reqwest the way a provider client talks to Apple.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fanout_sandbox::apns::{
    self, Auth, CredentialsInfo, Fault, FaultList, Notification, NotificationCount,
    NotificationList,
};
use reqwest::{Certificate, Identity, StatusCode, Version};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

use crate::helpers::TestSandbox;

const TOPIC: &str = "com.example.app";

fn device(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HTTP/2-only client trusting the sandbox CA, with the sandbox client certificate when
/// `with_cert`.
fn client(with_cert: bool) -> reqwest::Client {
    let credentials = apns::credentials().unwrap();
    let mut builder = reqwest::Client::builder()
        .http2_prior_knowledge()
        .add_root_certificate(Certificate::from_pem(credentials.ca_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(10));
    if with_cert {
        let pem = format!(
            "{}{}",
            credentials.client_cert_pem, credentials.client_key_pem
        );
        builder = builder.identity(Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

/// A provider token signed with `key_pem`.
fn jwt_with(key_pem: &str, kid: &str, iss: &str, iat: u64) -> String {
    let der = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let rng = SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        der.secret_pkcs8_der(),
        &rng,
    )
    .unwrap();
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "kid": kid}).to_string());
    let claims = URL_SAFE_NO_PAD.encode(json!({"iss": iss, "iat": iat}).to_string());
    let signed = format!("{header}.{claims}");
    let signature = key.sign(&rng, signed.as_bytes()).unwrap();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

/// A valid provider token issued `age_s` seconds ago.
fn jwt(age_s: u64) -> String {
    let credentials = apns::credentials().unwrap();
    jwt_with(
        &credentials.signing_key_pem,
        &credentials.key_id,
        &credentials.team_id,
        now_s() - age_s,
    )
}

fn alert() -> Value {
    json!({"aps": {"alert": {"title": "Hi", "body": "There"}}, "order": 7})
}

/// A valid token-authenticated push to `token`, to adjust before sending.
fn push(sandbox: &TestSandbox, http: &reqwest::Client, token: &str) -> reqwest::RequestBuilder {
    http.post(format!("{}/3/device/{token}", sandbox.apns_url))
        .bearer_auth(jwt(0))
        .header("apns-topic", TOPIC)
        .json(&alert())
}

/// Status, `reason` (if the body has one) and `Retry-After` of a response.
async fn answer(request: reqwest::RequestBuilder) -> (StatusCode, Option<String>, Option<String>) {
    let response = request.send().await.unwrap();
    assert_eq!(response.version(), Version::HTTP_2);
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Option<Value> = response.json().await.ok();
    let reason = body.and_then(|b| b["reason"].as_str().map(str::to_owned));
    (status, reason, retry_after)
}

async fn notifications(sandbox: &TestSandbox, query: &str) -> Vec<Notification> {
    let list: NotificationList = sandbox
        .get_json(&format!("/api/apns/notifications{query}"))
        .await;
    list.notifications
}

async fn count(sandbox: &TestSandbox, token: &str) -> u64 {
    let count: NotificationCount = sandbox
        .get_json(&format!("/api/apns/notifications/count?token={token}"))
        .await;
    count.count
}

async fn add_fault(sandbox: &TestSandbox, rule: Value) -> Fault {
    let response = sandbox
        .http
        .post(sandbox.url("/api/apns/faults"))
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

#[tokio::test]
async fn token_auth_push_is_read_back_with_its_headers() {
    let sandbox = TestSandbox::spawn().await;
    let http = client(false);
    let token = device(1);
    let apns_id = "6e1c2c4a-3f5b-4d8e-9a7b-0c1d2e3f4a5b";
    let response = push(&sandbox, &http, &token)
        .header("apns-id", apns_id)
        .header("apns-push-type", "alert")
        .header("apns-priority", "5")
        .header("apns-expiration", "1900000000")
        .header("apns-collapse-id", "score")
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["apns-id"], apns_id);
    assert!(response.bytes().await.unwrap().is_empty());

    // Without an apns-id the simulator makes one up and says which.
    let response = push(&sandbox, &http, &device(2)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let generated = response.headers()["apns-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::try_parse(&generated).is_ok(), "{generated}");

    let all = notifications(&sandbox, "").await;
    assert_eq!(all.len(), 2);
    let first = &all[0];
    assert_eq!(first.token, token);
    assert_eq!(first.apns_id, apns_id);
    assert_eq!(first.topic, TOPIC);
    assert_eq!(first.push_type.as_deref(), Some("alert"));
    assert_eq!(first.priority, Some(5));
    assert_eq!(first.expiration, Some(1_900_000_000));
    assert_eq!(first.collapse_id.as_deref(), Some("score"));
    assert_eq!(first.payload, alert());
    let Auth::Token {
        key_id,
        team_id,
        issued_at,
    } = &first.auth
    else {
        panic!("expected token auth: {:?}", first.auth);
    };
    assert_eq!(
        (key_id.as_str(), team_id.as_str()),
        (apns::KEY_ID, apns::TEAM_ID)
    );
    assert!(now_s() - issued_at < 60);
    assert_eq!(all[1].apns_id, generated);
    assert_eq!(all[1].push_type, None);
    assert_eq!(all[0].peer, all[1].peer, "one HTTP/2 connection for both");

    assert_eq!(count(&sandbox, &token).await, 1);
    let after_first = notifications(&sandbox, &format!("?after_id={}", first.id)).await;
    assert_eq!(after_first.len(), 1);
    assert_eq!(after_first[0].token, device(2));
    let page: NotificationList = sandbox.get_json("/api/apns/notifications?limit=1").await;
    assert_eq!(page.next_after_id, Some(first.id));
    let by_token = notifications(&sandbox, &format!("?token={}", device(2))).await;
    assert_eq!(by_token.len(), 1);

    let response = sandbox
        .http
        .delete(sandbox.url("/api/apns/notifications"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(notifications(&sandbox, "").await.is_empty());
}

#[tokio::test]
async fn client_certificate_authenticates_without_token_or_topic() {
    let sandbox = TestSandbox::spawn().await;
    let token = device(3);
    let with_cert = client(true);
    let (status, reason, _) = answer(
        with_cert
            .post(format!("{}/3/device/{token}", sandbox.apns_url))
            .json(&alert()),
    )
    .await;
    assert_eq!((status, reason), (StatusCode::OK, None));
    let stored = notifications(&sandbox, "").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].auth, Auth::Certificate);
    assert_eq!(stored[0].topic, apns::TOPIC);

    // Without a certificate the same request lacks a provider token.
    let (status, reason, _) = answer(
        client(false)
            .post(format!("{}/3/device/{token}", sandbox.apns_url))
            .json(&alert()),
    )
    .await;
    assert_eq!(
        (status, reason.as_deref()),
        (StatusCode::FORBIDDEN, Some("MissingProviderToken"))
    );
    assert_eq!(count(&sandbox, &token).await, 1);
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused_at_the_handshake() {
    let sandbox = TestSandbox::spawn().await;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.self_signed(&key).unwrap();
    let pem = format!("{}{}", cert.pem(), key.serialize_pem());
    let credentials = apns::credentials().unwrap();
    let http = reqwest::Client::builder()
        .http2_prior_knowledge()
        .add_root_certificate(Certificate::from_pem(credentials.ca_pem.as_bytes()).unwrap())
        .identity(Identity::from_pem(pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let result = http
        .post(format!("{}/3/device/{}", sandbox.apns_url, device(4)))
        .json(&alert())
        .send()
        .await;
    assert!(result.is_err(), "{result:?}");
    assert!(notifications(&sandbox, "").await.is_empty());
}

#[tokio::test]
async fn provider_token_problems_are_403_with_apple_reasons() {
    let sandbox = TestSandbox::spawn().await;
    let http = client(false);
    let credentials = apns::credentials().unwrap();
    let other_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let (kid, iss, key) = (
        credentials.key_id.as_str(),
        credentials.team_id.as_str(),
        credentials.signing_key_pem.as_str(),
    );
    let cases = [
        (jwt(2 * 60 * 60), "ExpiredProviderToken"),
        (
            jwt_with(&other_key, kid, iss, now_s()),
            "InvalidProviderToken",
        ),
        (
            jwt_with(key, "OTHERKEY00", iss, now_s()),
            "InvalidProviderToken",
        ),
        (
            jwt_with(key, kid, "OTHERTEAM0", now_s()),
            "InvalidProviderToken",
        ),
        (
            jwt_with(key, kid, iss, now_s() + 600),
            "InvalidProviderToken",
        ),
        ("garbage".to_owned(), "InvalidProviderToken"),
    ];
    for (token, expected) in cases {
        let request = http
            .post(format!("{}/3/device/{}", sandbox.apns_url, device(5)))
            .bearer_auth(token)
            .header("apns-topic", TOPIC)
            .json(&alert());
        let (status, reason, _) = answer(request).await;
        assert_eq!(
            (status, reason.as_deref()),
            (StatusCode::FORBIDDEN, Some(expected))
        );
    }
    // 59 minutes is still fine.
    let request = http
        .post(format!("{}/3/device/{}", sandbox.apns_url, device(5)))
        .bearer_auth(jwt(59 * 60))
        .header("apns-topic", TOPIC)
        .json(&alert());
    assert_eq!(answer(request).await.0, StatusCode::OK);
    assert_eq!(count(&sandbox, &device(5)).await, 1);
}

#[tokio::test]
async fn requests_are_validated_like_apns() {
    let sandbox = TestSandbox::spawn().await;
    let http = client(false);
    let url = |token: &str| format!("{}/3/device/{token}", sandbox.apns_url);
    let valid = || push(&sandbox, &http, &device(6));
    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            http.post(url(&device(6)))
                .bearer_auth(jwt(0))
                .json(&alert()),
            StatusCode::BAD_REQUEST,
            "MissingTopic",
        ),
        (
            push(&sandbox, &http, "not-hex"),
            StatusCode::BAD_REQUEST,
            "BadDeviceToken",
        ),
        (
            push(&sandbox, &http, &"ab".repeat(16)),
            StatusCode::BAD_REQUEST,
            "BadDeviceToken",
        ),
        (
            valid().header("apns-priority", "7"),
            StatusCode::BAD_REQUEST,
            "BadPriority",
        ),
        (
            valid().header("apns-collapse-id", "c".repeat(65)),
            StatusCode::BAD_REQUEST,
            "BadCollapseId",
        ),
        (
            valid().header("apns-id", "not-a-uuid"),
            StatusCode::BAD_REQUEST,
            "BadMessageId",
        ),
        (
            valid().header("apns-push-type", "shout"),
            StatusCode::BAD_REQUEST,
            "InvalidPushType",
        ),
        (
            valid().header("apns-expiration", "tomorrow"),
            StatusCode::BAD_REQUEST,
            "BadExpirationDate",
        ),
        (
            valid()
                .header("apns-priority", "10")
                .header("apns-priority", "5"),
            StatusCode::BAD_REQUEST,
            "DuplicateHeaders",
        ),
        (valid().body(""), StatusCode::BAD_REQUEST, "PayloadEmpty"),
        (
            valid().json(&json!({"alert": "no aps"})),
            StatusCode::BAD_REQUEST,
            "BadPayload",
        ),
        (
            valid().json(&json!({"aps": {}, "pad": "x".repeat(4096)})),
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
        ),
        (
            valid().body(vec![b' '; 100_000]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
        ),
        (
            http.post(format!("{}/3/devices/{}", sandbox.apns_url, device(6)))
                .bearer_auth(jwt(0)),
            StatusCode::NOT_FOUND,
            "BadPath",
        ),
        (
            http.get(url(&device(6))).bearer_auth(jwt(0)),
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
        ),
    ];
    for (request, expected_status, expected_reason) in cases {
        let (status, reason, _) = answer(request).await;
        assert_eq!(
            (status, reason.as_deref()),
            (expected_status, Some(expected_reason))
        );
    }
    assert!(notifications(&sandbox, "").await.is_empty());

    // The limits themselves are inclusive: exactly 4096 bytes and a 64-byte collapse id pass,
    // and VoIP pushes may be larger.
    let mut padded = json!({"aps": {}, "pad": ""});
    let overhead = padded.to_string().len();
    padded["pad"] = json!("x".repeat(apns::MAX_PAYLOAD - overhead));
    let request = valid()
        .header("apns-collapse-id", "c".repeat(64))
        .body(padded.to_string());
    assert_eq!(answer(request).await.0, StatusCode::OK);
    padded["pad"] = json!("x".repeat(apns::MAX_VOIP_PAYLOAD - overhead));
    let request = valid()
        .header("apns-push-type", "voip")
        .body(padded.to_string());
    assert_eq!(answer(request).await.0, StatusCode::OK);
    assert_eq!(count(&sandbox, &device(6)).await, 2);
}

#[tokio::test]
async fn unregistered_token_stays_unregistered() {
    let sandbox = TestSandbox::spawn().await;
    let http = client(false);
    let dead = device(7);
    let fault = add_fault(&sandbox, json!({"token": dead, "status": 410})).await;
    assert_eq!(fault.reason.as_deref(), Some("Unregistered"));
    for _ in 0..3 {
        let response = push(&sandbox, &http, &dead).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::GONE);
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            json!({"reason": "Unregistered", "timestamp": fault.created_at_ms})
        );
    }
    let (status, _, _) = answer(push(&sandbox, &http, &device(8))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(count(&sandbox, &dead).await, 0);
    assert_eq!(count(&sandbox, &device(8)).await, 1);
}

#[tokio::test]
async fn limited_faults_answer_then_get_out_of_the_way() {
    let sandbox = TestSandbox::spawn().await;
    let http = client(false);
    let token = device(9);
    add_fault(
        &sandbox,
        json!({"token": token, "status": 429, "retry_after_s": 7, "times": 1}),
    )
    .await;
    add_fault(
        &sandbox,
        json!({"token": "*", "status": 500, "reason": "InternalServerError", "times": 1}),
    )
    .await;
    let answers = [
        answer(push(&sandbox, &http, &token)).await,
        answer(push(&sandbox, &http, &token)).await,
        answer(push(&sandbox, &http, &token)).await,
    ];
    assert_eq!(
        answers,
        [
            (
                StatusCode::TOO_MANY_REQUESTS,
                Some("TooManyRequests".to_owned()),
                Some("7".to_owned())
            ),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Some("InternalServerError".to_owned()),
                None
            ),
            (StatusCode::OK, None, None),
        ]
    );
    let faults: FaultList = sandbox.get_json("/api/apns/faults").await;
    assert!(faults.faults.is_empty());
    assert_eq!(count(&sandbox, &token).await, 1);
}

#[tokio::test]
async fn latency_rule_only_delays_acceptance() {
    let sandbox = TestSandbox::spawn().await;
    let http = client(false);
    let token = device(10);
    add_fault(
        &sandbox,
        json!({"token": token, "status": 200, "delay_ms": 300, "times": 1}),
    )
    .await;
    let started = Instant::now();
    let (status, _, _) = answer(push(&sandbox, &http, &token)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(count(&sandbox, &token).await, 1);
}

#[tokio::test]
async fn rate_rule_answers_429_beyond_its_limit() {
    let sandbox = TestSandbox::spawn().await;
    let http = client(false);
    let fault = add_fault(&sandbox, json!({"token": "*", "max_per_second": 3})).await;
    assert_eq!(fault.status, 429);
    let started = Instant::now();
    let mut statuses = Vec::new();
    for n in 0..10 {
        statuses.push(answer(push(&sandbox, &http, &device(20 + n))).await.0);
    }
    let elapsed = started.elapsed();
    // The window opens with the first request, so the first three always pass.
    assert!(
        statuses[..3].iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    if elapsed < Duration::from_secs(1) {
        assert_eq!(limited, 7, "{statuses:?}");
    } else {
        assert!(limited >= 1, "{statuses:?} in {elapsed:?}");
    }
    let stored: NotificationCount = sandbox.get_json("/api/apns/notifications/count").await;
    assert_eq!(stored.count as usize, 10 - limited);
}

#[tokio::test]
async fn faults_api_validates_lists_and_removes() {
    let sandbox = TestSandbox::spawn().await;
    let response = sandbox
        .http
        .post(sandbox.url("/api/apns/faults"))
        .json(&json!({"token": "aa", "status": 302}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error: fanout_sandbox::ErrorResponse = response.json().await.unwrap();
    assert_eq!(
        error.error,
        "status must be 200 (accept after delay_ms) or between 400 and 599"
    );

    let first = add_fault(&sandbox, json!({"token": "aa", "status": 500})).await;
    let second = add_fault(&sandbox, json!({"token": "bb", "status": 503})).await;
    assert_eq!(second.reason.as_deref(), Some("ServiceUnavailable"));
    let url = sandbox.url(&format!("/api/apns/faults/{}", first.id));
    let response = sandbox.http.delete(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = sandbox.http.delete(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let faults: FaultList = sandbox.get_json("/api/apns/faults").await;
    assert_eq!(faults.faults, [second]);
    let response = sandbox
        .http
        .delete(sandbox.url("/api/apns/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let faults: FaultList = sandbox.get_json("/api/apns/faults").await;
    assert!(faults.faults.is_empty());
}

#[tokio::test]
async fn credentials_are_served_as_json_and_files() {
    let sandbox = TestSandbox::spawn().await;
    let info: CredentialsInfo = sandbox.get_json("/api/apns/credentials").await;
    assert_eq!(info.endpoint.as_deref(), Some(sandbox.apns_url.as_str()));
    assert_eq!(&info.credentials, apns::credentials().unwrap());
    let files = [
        ("ca.pem", &info.credentials.ca_pem),
        ("signing-key.p8", &info.credentials.signing_key_pem),
        ("client-cert.pem", &info.credentials.client_cert_pem),
        ("client-key.pem", &info.credentials.client_key_pem),
    ];
    for (file, expected) in files {
        let response = sandbox
            .http
            .get(sandbox.url(&format!("/api/apns/credentials/{file}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{file}");
        assert_eq!(&response.text().await.unwrap(), expected, "{file}");
    }
    let response = sandbox
        .http
        .get(sandbox.url("/api/apns/credentials/ca-key.pem"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
