use fanout_domain::config::Secret;
use fanout_sandbox::fcm::{FcmMessageList, FcmTokenStats, StoredFcmMessage};
use futures::future::join_all;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::*;
use crate::sandbox;

struct Sandbox {
    base_url: String,
    http: reqwest::Client,
    _stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Sandbox {
    async fn spawn() -> Self {
        let listeners = fanout_sandbox::Listeners::bind_loopback().await.unwrap();
        let base_url = format!("http://{}", listeners.http.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = fanout_sandbox::serve(listeners, async {
            let _ = stopped.await;
        });
        let server = tokio::spawn(async move {
            serving.await.unwrap();
        });
        Self {
            base_url,
            http: reqwest::Client::new(),
            _stop: stop,
            server,
        }
    }

    fn config(&self) -> FcmConfig {
        FcmConfig {
            enabled: true,
            base_url: self.base_url.clone(),
            timeout_ms: 10_000,
            ..FcmConfig::default()
        }
    }

    fn key(&self) -> ServiceAccountKey {
        let json = fanout_sandbox::fcm::service_account_json(&self.base_url);
        ServiceAccountKey::from_json(&json).unwrap()
    }

    fn client(&self) -> FcmClient {
        FcmClient::with_key(&self.config(), self.key()).unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    async fn add_fault(&self, rule: Value) {
        let response = self
            .http
            .post(self.url("/api/fcm/faults"))
            .json(&rule)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "{rule}");
    }

    async fn messages(&self, token: &str) -> Vec<StoredFcmMessage> {
        let request = self
            .http
            .get(self.url("/api/fcm/messages"))
            .query(&[("token", token)]);
        let list: FcmMessageList = sandbox::json(request).await;
        list.messages
    }

    async fn tokens(&self) -> FcmTokenStats {
        sandbox::json(self.http.get(self.url("/api/fcm/tokens"))).await
    }
}

fn device(token: &str) -> DeviceToken {
    DeviceToken::parse(token).unwrap()
}

fn push() -> PushMessage {
    PushMessage {
        instance_id: fanout_domain::InstanceId::parse("in_00112233445566778899aabbccddeeff")
            .unwrap(),
        title: "Goal!".into(),
        body: "2-1 in the 90th minute".into(),
        data: Map::new(),
        collapse_id: None,
        priority: PushPriority::High,
        expires_at: None,
    }
}

fn accepted_id(outcome: SendOutcome) -> String {
    match outcome {
        SendOutcome::Accepted {
            provider_message_id,
        } => provider_message_id,
        other => panic!("expected acceptance, got {other:?}"),
    }
}

#[tokio::test]
async fn configured_from_the_key_file_it_exchanges_a_token_and_delivers() {
    let sandbox = Sandbox::spawn().await;
    let path = std::env::temp_dir().join(format!(
        "fanout-fcm-key-{}-{}.json",
        std::process::id(),
        sandbox.base_url.rsplit(':').next().unwrap()
    ));
    std::fs::write(
        &path,
        fanout_sandbox::fcm::service_account_json(&sandbox.base_url),
    )
    .unwrap();
    let client = FcmClient::new(&FcmConfig {
        service_account_path: Some(path.clone()),
        ..sandbox.config()
    });
    std::fs::remove_file(&path).unwrap();
    let client = client.unwrap();

    let mut message = push();
    message.collapse_id = Some("match-42".into());
    message.priority = PushPriority::Normal;
    message.expires_at = Some(SystemTime::now() + Duration::from_secs(600));
    message.data.insert("match_id".into(), json!(42));
    message.data.insert("team".into(), json!("home"));
    let name = accepted_id(client.send(&device("phone-1"), &message).await);

    let stored = sandbox.messages("phone-1").await;
    assert_eq!(stored.len(), 1);
    let stored = &stored[0];
    assert_eq!(name, stored.name);
    assert_eq!(
        stored.name,
        format!("projects/{}/messages/{}", stored.project, stored.id)
    );
    assert_eq!(stored.project, fanout_sandbox::fcm::PROJECT_ID);
    let sent = &stored.message;
    assert_eq!(
        sent["notification"],
        json!({ "title": "Goal!", "body": "2-1 in the 90th minute" })
    );
    assert_eq!(sent["data"], json!({ "match_id": "42", "team": "home" }));
    assert_eq!(sent["android"]["priority"], "NORMAL");
    assert_eq!(sent["android"]["collapse_key"], "match-42");
    let ttl = sent["android"]["ttl"].as_str().unwrap();
    let ttl: f64 = ttl.strip_suffix('s').unwrap().parse().unwrap();
    assert!((590.0..=600.0).contains(&ttl), "{ttl}");
    assert_eq!(sent["apns"]["headers"]["apns-priority"], "5");
    assert_eq!(sent["apns"]["headers"]["apns-collapse-id"], "match-42");
    assert_eq!(
        sandbox.tokens().await,
        FcmTokenStats {
            issued: 1,
            active: 1
        }
    );
}

#[tokio::test]
async fn concurrent_and_later_sends_share_one_access_token() {
    let sandbox = Sandbox::spawn().await;
    let client = sandbox.client();
    let message = push();
    let tokens: Vec<_> = (0..20).map(|n| device(&format!("device-{n}"))).collect();
    let outcomes = join_all(tokens.iter().map(|token| client.send(token, &message))).await;
    for outcome in outcomes {
        accepted_id(outcome);
    }
    // A clone shares the cached token too.
    let clone = client.clone();
    for token in &tokens[..5] {
        accepted_id(clone.send(token, &message).await);
    }
    assert_eq!(sandbox.tokens().await.issued, 1);
    assert_eq!(sandbox.messages("device-0").await.len(), 2);
}

#[tokio::test]
async fn a_revoked_token_is_refreshed_once_and_the_send_retried() {
    let sandbox = Sandbox::spawn().await;
    let client = sandbox.client();
    accepted_id(client.send(&device("phone-1"), &push()).await);
    let revoked = sandbox
        .http
        .delete(sandbox.url("/api/fcm/tokens"))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);

    let (phone, message) = (device("phone-1"), push());
    let outcomes = join_all((0..5).map(|_| client.send(&phone, &message))).await;
    for outcome in outcomes {
        accepted_id(outcome);
    }
    assert_eq!(
        sandbox.tokens().await,
        FcmTokenStats {
            issued: 2,
            active: 1
        }
    );
    assert_eq!(sandbox.messages("phone-1").await.len(), 6);
}

#[tokio::test]
async fn fcm_errors_map_to_outcomes() {
    let sandbox = Sandbox::spawn().await;
    let client = sandbox.client();
    let cases = [
        ("UNREGISTERED", None, "invalid_address"),
        ("INVALID_ARGUMENT", None, "invalid_address"),
        ("SENDER_ID_MISMATCH", None, "invalid_address"),
        ("QUOTA_EXCEEDED", Some(7), "transient"),
        ("UNAVAILABLE", None, "transient"),
        ("UNAVAILABLE", Some(30), "transient"),
        ("INTERNAL", None, "transient"),
        ("THIRD_PARTY_AUTH_ERROR", None, "permanent"),
    ];
    for (index, (error, retry_after_s, expected)) in cases.into_iter().enumerate() {
        let token = format!("faulty-{index}");
        sandbox
            .add_fault(json!({
                "token": token,
                "error": error,
                "retry_after_s": retry_after_s,
                "times": 1,
            }))
            .await;
        let outcome = client.send(&device(&token), &push()).await;
        let code = format!("fcm_{error}");
        match (expected, outcome) {
            ("invalid_address", SendOutcome::InvalidAddress { code: got, .. })
            | ("permanent", SendOutcome::Permanent { code: got, .. }) => {
                assert_eq!(got, code);
            }
            (
                "transient",
                SendOutcome::Transient {
                    code: got,
                    retry_after,
                    ..
                },
            ) => {
                assert_eq!(got, code);
                assert_eq!(
                    retry_after,
                    retry_after_s.map(Duration::from_secs),
                    "{error}"
                );
            }
            (expected, outcome) => panic!("{error}: expected {expected}, got {outcome:?}"),
        }
        assert!(sandbox.messages(&token).await.is_empty());
        // The rule was used up: the same token is accepted now.
        accepted_id(client.send(&device(&token), &push()).await);
    }
    // None of these was an access-token problem.
    assert_eq!(sandbox.tokens().await.issued, 1);
}

#[tokio::test]
async fn a_rate_rule_answers_quota_exceeded_with_its_retry_after() {
    let sandbox = Sandbox::spawn().await;
    let client = sandbox.client();
    // Warm the token so the two sends below land well inside one second.
    accepted_id(client.send(&device("warm-up"), &push()).await);
    sandbox
        .add_fault(json!({ "token": "*", "max_per_second": 1, "retry_after_s": 2 }))
        .await;
    accepted_id(client.send(&device("phone-1"), &push()).await);
    let outcome = client.send(&device("phone-1"), &push()).await;
    assert!(
        matches!(
            &outcome,
            SendOutcome::Transient { code, retry_after: Some(after), .. }
                if code == "fcm_QUOTA_EXCEEDED" && *after == Duration::from_secs(2)
        ),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn payload_and_project_refusals_are_permanent() {
    let sandbox = Sandbox::spawn().await;
    let mut message = push();
    message.data.insert("from".into(), json!("reserved by fcm"));
    let outcome = sandbox.client().send(&device("phone-1"), &message).await;
    assert!(
        matches!(&outcome, SendOutcome::Permanent { code, .. } if code == "fcm_INVALID_ARGUMENT"),
        "{outcome:?}"
    );

    let config = FcmConfig {
        project_id: Some("someone-elses-project".into()),
        ..sandbox.config()
    };
    let client = FcmClient::with_key(&config, sandbox.key()).unwrap();
    let outcome = client.send(&device("phone-1"), &push()).await;
    assert!(
        matches!(&outcome, SendOutcome::Permanent { code, .. } if code == "fcm_PERMISSION_DENIED"),
        "{outcome:?}"
    );
    assert!(sandbox.messages("phone-1").await.is_empty());
}

#[tokio::test]
async fn timeouts_and_unreachable_hosts_are_transient() {
    let sandbox = Sandbox::spawn().await;
    let config = FcmConfig {
        timeout_ms: 1_000,
        ..sandbox.config()
    };
    let client = FcmClient::with_key(&config, sandbox.key()).unwrap();
    sandbox
        .add_fault(json!({ "token": "slow-phone", "delay_ms": 30_000 }))
        .await;
    let outcome = client.send(&device("slow-phone"), &push()).await;
    assert!(
        matches!(&outcome, SendOutcome::Transient { code, .. } if code == "fcm_timeout"),
        "{outcome:?}"
    );

    let closed = closed_port_url().await;
    let config = FcmConfig {
        base_url: closed.clone(),
        ..sandbox.config()
    };
    let client = FcmClient::with_key(&config, sandbox.key()).unwrap();
    let outcome = client.send(&device("phone-1"), &push()).await;
    assert!(
        matches!(&outcome, SendOutcome::Transient { code, .. } if code == "fcm_connection"),
        "{outcome:?}"
    );

    let mut key = sandbox.key();
    key.token_uri = Some(format!("{closed}/oauth2/token"));
    let client = FcmClient::with_key(&sandbox.config(), key).unwrap();
    let outcome = client.send(&device("phone-1"), &push()).await;
    assert!(
        matches!(&outcome, SendOutcome::Transient { code, .. } if code == "provider_auth_unavailable"),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_refused_grant_is_permanent() {
    let sandbox = Sandbox::spawn().await;
    let mut key = sandbox.key();
    key.client_email = "impostor@fanout-sandbox.iam.gserviceaccount.com".into();
    let client = FcmClient::with_key(&sandbox.config(), key).unwrap();
    let outcome = client.send(&device("phone-1"), &push()).await;
    assert!(
        matches!(&outcome, SendOutcome::Permanent { code, message }
                if code == "provider_auth" && !message.contains("impostor")),
        "the tenant's receipt says the platform's credentials failed, not how: {outcome:?}"
    );
    assert_eq!(sandbox.tokens().await.issued, 0);
}

#[test]
fn configuration_errors_are_reported() {
    let json = fanout_sandbox::fcm::service_account_json("http://127.0.0.1:9");
    let key = || ServiceAccountKey::from_json(&json).unwrap();
    let config = FcmConfig::default();
    assert!(matches!(
        FcmClient::new(&config),
        Err(FcmConfigError::MissingServiceAccount)
    ));
    let missing = FcmConfig {
        service_account_path: Some("/nonexistent/fcm.json".into()),
        ..FcmConfig::default()
    };
    assert!(matches!(
        FcmClient::new(&missing),
        Err(FcmConfigError::Read { .. })
    ));
    let bad_project = FcmConfig {
        project_id: Some("a/b".into()),
        ..FcmConfig::default()
    };
    assert!(matches!(
        FcmClient::with_key(&bad_project, key()),
        Err(FcmConfigError::Invalid {
            field: "project_id",
            ..
        })
    ));
    let mut no_project = key();
    no_project.project_id = None;
    assert!(matches!(
        FcmClient::with_key(&config, no_project),
        Err(FcmConfigError::MissingProject)
    ));
    let mut bad_pem = key();
    bad_pem.private_key = Secret::new("-----BEGIN PRIVATE KEY-----\nnope\n");
    assert!(matches!(
        FcmClient::with_key(&config, bad_pem),
        Err(FcmConfigError::InvalidKey(_))
    ));
    let bad_url = FcmConfig {
        base_url: "fcm.googleapis.com".into(),
        ..FcmConfig::default()
    };
    assert!(matches!(
        FcmClient::with_key(&bad_url, key()),
        Err(FcmConfigError::Invalid {
            field: "base_url",
            ..
        })
    ));
    assert!(matches!(
        ServiceAccountKey::from_json("{}"),
        Err(FcmConfigError::InvalidKey(_))
    ));
    // The key never shows in debug output.
    assert!(!format!("{:?}", key()).contains("PRIVATE KEY"));
    let loopback = FcmConfig {
        base_url: "http://127.0.0.1:9".into(),
        ..FcmConfig::default()
    };
    FcmClient::with_key(&loopback, key()).unwrap();
    // Plain http to anything but loopback is refused.
    let plain = FcmConfig {
        base_url: "http://fcm.example.com".into(),
        ..FcmConfig::default()
    };
    assert!(matches!(
        FcmClient::with_key(&plain, key()),
        Err(FcmConfigError::Invalid {
            field: "base_url",
            ..
        })
    ));
}

#[test]
fn the_sandbox_key_is_refused_anywhere_but_the_sandbox() {
    let committed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../sandbox/dev/fcm-service-account.json"),
    )
    .unwrap();
    let sandbox_key = || ServiceAccountKey::from_json(&committed).unwrap();
    let google = FcmConfig {
        base_url: "https://fcm.googleapis.com".into(),
        ..FcmConfig::default()
    };
    assert!(matches!(
        FcmClient::with_key(&google, sandbox_key()),
        Err(FcmConfigError::Invalid {
            field: "service_account_path",
            ..
        })
    ));
    // Against the sandbox on loopback, with a loopback token endpoint, it is what it is for.
    let mut local = sandbox_key();
    local.token_uri = Some("http://127.0.0.1:8025/oauth2/token".into());
    let sandbox = FcmConfig {
        base_url: "http://127.0.0.1:8025".into(),
        ..FcmConfig::default()
    };
    FcmClient::with_key(&sandbox, local).unwrap();
}

/// A loopback URL nothing listens on.
async fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}
