use std::path::PathBuf;
use std::sync::atomic::AtomicU64;

use base64::Engine as _;
use fanout_sandbox::apns::{Auth, Fault, FaultList, Notification, NotificationList};
use reqwest::StatusCode;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::tests::{device, message};
use super::*;
use crate::sandbox;

/// An in-process sandbox on port 0 with its APNs credentials written to files, as the
/// worker would read them.
struct Sandbox {
    apns_url: String,
    api_url: String,
    http: reqwest::Client,
    dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<anyhow::Result<()>>,
}

impl Sandbox {
    async fn spawn(name: &str) -> Self {
        let listeners = fanout_sandbox::Listeners::bind_loopback().await.unwrap();
        let apns_url = format!("https://{}", listeners.apns.local_addr().unwrap());
        let api_url = format!("http://{}", listeners.http.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(fanout_sandbox::serve(listeners, async {
            let _ = stopped.await;
        }));
        let credentials = fanout_sandbox::apns::credentials().unwrap();
        let dir = std::env::temp_dir().join(format!("fanout-apns-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (file, content) in [
            ("ca.pem", &credentials.ca_pem),
            ("signing-key.p8", &credentials.signing_key_pem),
            ("client-cert.pem", &credentials.client_cert_pem),
            ("client-key.pem", &credentials.client_key_pem),
        ] {
            std::fs::write(dir.join(file), content).unwrap();
        }
        Self {
            apns_url,
            api_url,
            http: reqwest::Client::new(),
            dir,
            stop: Some(stop),
            server,
        }
    }

    /// Token auth with the sandbox key, trusting the sandbox CA.
    fn config(&self) -> ApnsConfig {
        ApnsConfig {
            enabled: true,
            endpoint: self.apns_url.clone(),
            topic: "com.example.app".into(),
            auth: ApnsAuthConfig {
                key_id: fanout_sandbox::apns::KEY_ID.into(),
                team_id: fanout_sandbox::apns::TEAM_ID.into(),
                key_path: Some(self.dir.join("signing-key.p8")),
                cert_path: None,
            },
            ca_path: Some(self.dir.join("ca.pem")),
            timeout_ms: 5_000,
        }
    }

    fn client(&self) -> ApnsClient {
        ApnsClient::new(&self.config()).unwrap()
    }

    async fn notifications(&self) -> Vec<Notification> {
        let url = format!("{}/api/apns/notifications", self.api_url);
        let list: NotificationList = sandbox::json(self.http.get(url)).await;
        list.notifications
    }

    async fn add_fault(&self, rule: serde_json::Value) {
        let url = format!("{}/api/apns/faults", self.api_url);
        let response = self.http.post(url).json(&rule).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }

    async fn faults(&self) -> Vec<Fault> {
        let url = format!("{}/api/apns/faults", self.api_url);
        let list: FaultList = sandbox::json(self.http.get(url)).await;
        list.faults
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.server.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn code(outcome: &SendOutcome) -> &str {
    match outcome {
        SendOutcome::Accepted { .. } => "accepted",
        SendOutcome::Permanent { code, .. }
        | SendOutcome::InvalidAddress { code, .. }
        | SendOutcome::Transient { code, .. } => code,
    }
}

#[tokio::test]
async fn sends_over_http2_with_a_shared_provider_token() {
    let sandbox = Sandbox::spawn("happy").await;
    let client = sandbox.client();
    let expires = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    let first = PushMessage {
        collapse_id: Some("match-42".into()),
        priority: PushPriority::Normal,
        expires_at: Some(expires),
        ..message(1)
    };
    let outcome = client.send(&device(1), &first).await;
    let expected_id = apns_id(&first.instance_id, &device(1));
    assert_eq!(
        outcome,
        SendOutcome::Accepted {
            provider_message_id: expected_id.clone()
        }
    );
    // A clone shares the connection pool and the token.
    let outcome = client.clone().send(&device(2), &message(2)).await;
    assert!(
        matches!(outcome, SendOutcome::Accepted { .. }),
        "{outcome:?}"
    );
    assert_eq!(client.tokens_minted(), 1);

    let stored = sandbox.notifications().await;
    assert_eq!(stored.len(), 2);
    let n = &stored[0];
    assert_eq!(n.token, device(1).as_str());
    assert_eq!(n.apns_id, expected_id);
    assert_eq!(n.topic, "com.example.app");
    assert_eq!(n.push_type.as_deref(), Some("alert"));
    assert_eq!(n.priority, Some(5));
    assert_eq!(n.expiration, Some(1_900_000_000));
    assert_eq!(n.collapse_id.as_deref(), Some("match-42"));
    assert_eq!(
        n.payload,
        json!({
            "aps": {
                "alert": {"title": "Goal!", "body": "2-1 in the 90th minute"},
                "sound": "default"
            },
            "match": 42
        })
    );
    assert!(matches!(n.auth, Auth::Token { .. }), "{:?}", n.auth);
    assert_eq!(n.auth, stored[1].auth, "both sends carry one token");
    assert_eq!(stored[1].priority, Some(10));
    assert_eq!(stored[1].expiration, Some(0));
    assert_eq!(stored[1].collapse_id, None);
}

#[tokio::test]
async fn concurrent_sends_share_one_connection_and_one_token() {
    let sandbox = Sandbox::spawn("concurrent").await;
    let client = sandbox.client();
    let sends = (0..50_u8).map(|n| {
        let client = client.clone();
        async move { client.send(&device(n), &message(u32::from(n))).await }
    });
    let outcomes = futures::future::join_all(sends).await;
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, SendOutcome::Accepted { .. })),
        "{outcomes:?}"
    );
    assert_eq!(client.tokens_minted(), 1);
    let stored = sandbox.notifications().await;
    assert_eq!(stored.len(), 50);
    let peers: std::collections::HashSet<_> = stored.iter().map(|n| &n.peer).collect();
    assert_eq!(peers.len(), 1, "{peers:?}");
}

#[tokio::test]
async fn authenticates_with_a_client_certificate() {
    let sandbox = Sandbox::spawn("certificate").await;
    let mut config = sandbox.config();
    config.auth = ApnsAuthConfig {
        key_path: Some(sandbox.dir.join("client-key.pem")),
        cert_path: Some(sandbox.dir.join("client-cert.pem")),
        ..ApnsAuthConfig::default()
    };
    let client = ApnsClient::new(&config).unwrap();
    let outcome = client.send(&device(3), &message(3)).await;
    assert!(
        matches!(outcome, SendOutcome::Accepted { .. }),
        "{outcome:?}"
    );
    let stored = sandbox.notifications().await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].auth, Auth::Certificate);
    assert_eq!(stored[0].topic, "com.example.app");
}

#[tokio::test]
async fn a_key_apns_does_not_know_is_permanent() {
    let sandbox = Sandbox::spawn("bad-key").await;
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
    );
    let path = sandbox.dir.join("other.p8");
    std::fs::write(&path, pem).unwrap();
    let mut config = sandbox.config();
    config.auth.key_path = Some(path);
    let client = ApnsClient::new(&config).unwrap();
    let outcome = client.send(&device(4), &message(4)).await;
    // The operator's key is at fault: the tenant's receipt says so generically.
    assert_eq!(code(&outcome), "provider_auth");
    assert!(
        matches!(outcome, SendOutcome::Permanent { .. }),
        "{outcome:?}"
    );
    assert!(sandbox.notifications().await.is_empty());
}

#[tokio::test]
async fn dead_tokens_are_invalid_addresses() {
    let sandbox = Sandbox::spawn("dead").await;
    let client = sandbox.client();
    sandbox
        .add_fault(json!({"token": device(5).as_str(), "status": 410}))
        .await;
    sandbox
        .add_fault(json!({
            "token": device(6).as_str(),
            "status": 400,
            "reason": "DeviceTokenNotForTopic"
        }))
        .await;
    let not_hex = DeviceToken::parse(&"zz".repeat(32)).unwrap();
    let not_alphanumeric = DeviceToken::parse("ab/../cd").unwrap();
    let cases = [
        (device(5), "apns_Unregistered"),
        (device(6), "apns_DeviceTokenNotForTopic"),
        (not_hex, "apns_BadDeviceToken"),
        (not_alphanumeric, "apns_BadDeviceToken"),
    ];
    for (token, expected) in cases {
        let outcome = client.send(&token, &message(5)).await;
        assert!(
            matches!(&outcome, SendOutcome::InvalidAddress { code, .. } if code == expected),
            "{token:?}: {outcome:?}"
        );
    }
    assert!(sandbox.notifications().await.is_empty());
}

#[tokio::test]
async fn throttling_and_server_errors_are_transient() {
    let sandbox = Sandbox::spawn("transient").await;
    let client = sandbox.client();
    let token = device(7);
    sandbox
        .add_fault(json!({
            "token": token.as_str(), "status": 429, "retry_after_s": 7, "times": 1
        }))
        .await;
    sandbox
        .add_fault(json!({"token": token.as_str(), "status": 500, "times": 1}))
        .await;
    sandbox
        .add_fault(json!({"token": token.as_str(), "status": 503, "times": 1}))
        .await;
    let outcome = client.send(&token, &message(7)).await;
    assert_eq!(
        outcome,
        SendOutcome::Transient {
            code: "apns_TooManyRequests".into(),
            message: "apns answered 429 TooManyRequests".into(),
            retry_after: Some(Duration::from_secs(7)),
        }
    );
    for expected in ["apns_InternalServerError", "apns_ServiceUnavailable"] {
        let outcome = client.send(&token, &message(7)).await;
        assert!(
            matches!(
                &outcome,
                SendOutcome::Transient { code, retry_after: None, .. } if code == expected
            ),
            "{outcome:?}"
        );
    }
    // The rules are used up: the resend goes through.
    let outcome = client.send(&token, &message(7)).await;
    assert!(
        matches!(outcome, SendOutcome::Accepted { .. }),
        "{outcome:?}"
    );
    assert_eq!(sandbox.notifications().await.len(), 1);
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_transient() {
    let sandbox = Sandbox::spawn("timeout").await;
    let token = device(8);
    sandbox
        .add_fault(json!({
            "token": token.as_str(), "status": 200, "delay_ms": 2_000, "times": 1
        }))
        .await;
    let mut config = sandbox.config();
    config.timeout_ms = 200;
    let outcome = ApnsClient::new(&config)
        .unwrap()
        .send(&token, &message(8))
        .await;
    assert_eq!(code(&outcome), "apns_timeout", "{outcome:?}");
    assert!(matches!(outcome, SendOutcome::Transient { .. }));

    // A port nothing listens on: bind one, note it, close it.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut config = sandbox.config();
    config.endpoint = format!("https://127.0.0.1:{port}");
    let outcome = ApnsClient::new(&config)
        .unwrap()
        .send(&token, &message(8))
        .await;
    assert_eq!(code(&outcome), "apns_connection", "{outcome:?}");
    assert!(matches!(outcome, SendOutcome::Transient { .. }));
}

#[tokio::test]
async fn provider_token_is_refreshed_once_it_is_fifty_minutes_old() {
    let sandbox = Sandbox::spawn("refresh").await;
    // The client's clock runs behind by `lag` seconds, so its tokens look as old to the
    // sandbox as the test wants without waiting.
    let lag = Arc::new(AtomicU64::new(55 * 60));
    let clock: Clock = {
        let lag = lag.clone();
        Arc::new(move || SystemTime::now() - Duration::from_secs(lag.load(Ordering::SeqCst)))
    };
    let client = ApnsClient::with_clock(&sandbox.config(), clock).unwrap();
    assert!(matches!(
        client.send(&device(9), &message(9)).await,
        SendOutcome::Accepted { .. }
    ));
    // 49 minutes later by the client's clock: still the same token.
    lag.store(6 * 60, Ordering::SeqCst);
    assert!(matches!(
        client.send(&device(9), &message(9)).await,
        SendOutcome::Accepted { .. }
    ));
    assert_eq!(client.tokens_minted(), 1);
    // 55 minutes later: a new one.
    lag.store(0, Ordering::SeqCst);
    assert!(matches!(
        client.send(&device(9), &message(9)).await,
        SendOutcome::Accepted { .. }
    ));
    assert_eq!(client.tokens_minted(), 2);

    let issued: Vec<u64> = sandbox
        .notifications()
        .await
        .iter()
        .map(|n| match n.auth {
            Auth::Token { issued_at, .. } => issued_at,
            Auth::Certificate => panic!("expected token auth"),
        })
        .collect();
    assert_eq!(issued.len(), 3);
    assert_eq!(issued[0], issued[1]);
    let refreshed_after = issued[2] - issued[0];
    assert!(
        (55 * 60 - 5..=55 * 60 + 5).contains(&refreshed_after),
        "{issued:?}"
    );
}

#[tokio::test]
async fn expired_provider_token_is_refreshed_and_retried_once() {
    let sandbox = Sandbox::spawn("expired").await;
    let client = sandbox.client();
    let token = device(10);
    sandbox
        .add_fault(json!({
            "token": token.as_str(), "status": 403, "reason": "ExpiredProviderToken", "times": 1
        }))
        .await;
    let outcome = client.send(&token, &message(10)).await;
    assert!(
        matches!(outcome, SendOutcome::Accepted { .. }),
        "{outcome:?}"
    );
    assert_eq!(client.tokens_minted(), 2);
    assert_eq!(sandbox.notifications().await.len(), 1);

    // Expired again after the refresh: no loop, the second answer stands.
    sandbox
        .add_fault(json!({
            "token": token.as_str(), "status": 403, "reason": "ExpiredProviderToken", "times": 3
        }))
        .await;
    let outcome = client.send(&token, &message(10)).await;
    assert_eq!(code(&outcome), "provider_auth");
    assert!(
        matches!(outcome, SendOutcome::Permanent { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        sandbox.faults().await[0].remaining,
        Some(1),
        "two requests, not three"
    );
    assert_eq!(client.tokens_minted(), 3);
}

#[tokio::test]
async fn oversized_payload_is_refused_without_a_request() {
    let sandbox = Sandbox::spawn("oversized").await;
    let client = sandbox.client();
    let message = PushMessage {
        body: "x".repeat(MAX_PAYLOAD),
        ..message(11)
    };
    let outcome = client.send(&device(11), &message).await;
    assert_eq!(code(&outcome), "apns_PayloadTooLarge");
    assert!(matches!(outcome, SendOutcome::Permanent { .. }));
    assert_eq!(client.tokens_minted(), 0);
    assert!(sandbox.notifications().await.is_empty());
}
