//! Handler tests over `oneshot`: a real SQLite store, and an in-memory orchestrator standing in
//! for Temporal (the end-to-end suite covers the real one).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use fanout_domain::contracts::NotificationInput;
use fanout_domain::receipt::Progress;
use fanout_domain::{RequestId, TenantId};
use fanout_store::Store;
use fanout_store::tenants::generate_api_key;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::orchestrator::{LiveState, Orchestrator, OrchestratorError, StartOutcome};
use crate::{AppState, app};

/// Remembers started requests; a second start of the same id is a duplicate, as in Temporal.
#[derive(Default)]
struct FakeOrchestrator {
    started: Mutex<Vec<NotificationInput>>,
}

#[async_trait]
impl Orchestrator for FakeOrchestrator {
    async fn start(&self, input: NotificationInput) -> Result<StartOutcome, OrchestratorError> {
        let mut started = self.started.lock().unwrap();
        if started.iter().any(|s| s.request_id == input.request_id) {
            return Ok(StartOutcome::Duplicate);
        }
        started.push(input);
        Ok(StartOutcome::Started)
    }

    async fn live_state(&self, request_id: &RequestId) -> Result<LiveState, OrchestratorError> {
        let started = self.started.lock().unwrap();
        Ok(match started.iter().find(|s| &s.request_id == request_id) {
            Some(_) => LiveState::Running(Progress {
                pages_total: 1,
                recipients: 1,
                ..Progress::default()
            }),
            None => LiveState::Unknown,
        })
    }
}

struct Harness {
    router: axum::Router,
    orchestrator: Arc<FakeOrchestrator>,
    keys: Vec<String>,
}

/// Two tenants, `a` and `b`, each with a key and the same `welcome` template (in-app only).
async fn harness() -> Harness {
    let dir = std::env::temp_dir().join(format!("fanout-api-test-{}", rand_suffix()));
    let store = Store::connect(&fanout_domain::config::StoreConfig {
        url: format!("sqlite://{}/db.sqlite?mode=rwc", dir.display()),
        max_connections: 4,
    })
    .await
    .unwrap();
    let orchestrator = Arc::new(FakeOrchestrator::default());
    let router = app(AppState {
        store: store.clone(),
        orchestrator: orchestrator.clone(),
    });
    let mut keys = Vec::new();
    for tenant in ["a", "b"] {
        let tenant = TenantId::parse(tenant).unwrap();
        store.upsert_tenant(&tenant, "T").await.unwrap();
        let key = generate_api_key();
        store.add_api_key(&tenant, &key).await.unwrap();
        keys.push(key);
    }
    let h = Harness {
        router,
        orchestrator,
        keys,
    };
    for key in h.keys.clone() {
        let (status, body) = h
            .call(
                "PUT",
                "/v1/templates/welcome",
                Some(&key),
                Some(
                    json!({"name": "W", "in_app": {"title": "Hi", "body": "{{ actor }} says hi"}}),
                ),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    h
}

fn rand_suffix() -> String {
    format!("{}-{:?}", std::process::id(), std::thread::current().id()).replace(['(', ')'], "")
        + &format!("-{}", fanout_store::now_ms())
}

impl Harness {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(key) = key {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let body = match body {
            Some(v) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(request.body(body).unwrap()).await
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    fn key(&self, i: usize) -> &str {
        &self.keys[i]
    }
}

fn trigger(dedupe: &str) -> Value {
    json!({
        "template_id": "welcome",
        "recipients_query": {"type": "users", "user_ids": ["u1", "u2"]},
        "data": {"actor": "Dana"},
        "dedupe_key": dedupe
    })
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
    assert_eq!(
        (&own["state"], &own["source"]),
        (&json!("running"), &json!("workflow"))
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
async fn receipts_reject_bad_cursors_and_limits() {
    let h = harness().await;
    let (_, a) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(trigger("r")))
        .await;
    let id = a["request_id"].as_str().unwrap();
    let (status, page) = h
        .call(
            "GET",
            &format!("/v1/receipts?request_id={id}"),
            Some(h.key(0)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page, json!({"receipts": [], "next_cursor": null}));
    for (query, field) in [
        ("&limit=0", "limit"),
        ("&limit=5000", "limit"),
        ("&cursor=!!", "cursor"),
    ] {
        let uri = format!("/v1/receipts?request_id={id}{query}");
        let (status, answer) = h.call("GET", &uri, Some(h.key(0)), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}");
        assert_eq!(answer["error"]["field"], field);
    }
}

#[tokio::test]
async fn templates_with_syntax_errors_are_refused_with_part_and_line() {
    let h = harness().await;
    let body =
        json!({"name": "Broken", "in_app": {"title": "ok", "body": "line one\n{{ user.name"}});
    let (status, answer) = h
        .call("PUT", "/v1/templates/broken", Some(h.key(0)), Some(body))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["field"], "in_app.body");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 2"),
        "{answer}"
    );
    let (status, _) = h
        .call("GET", "/v1/templates/broken", Some(h.key(0)), None)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a refused template is not stored"
    );

    let (status, answer) = h
        .call(
            "PUT",
            "/v1/templates/empty",
            Some(h.key(0)),
            Some(json!({"name": "Empty"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");

    let (status, saved) = h
        .call("GET", "/v1/templates/welcome", Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(saved["version"], 1);
}

#[tokio::test]
async fn users_round_trip_and_bad_emails_are_422() {
    let h = harness().await;
    let (status, user) = h
        .call(
            "PUT",
            "/v1/users/u1",
            Some(h.key(0)),
            Some(json!({"email": "u1@example.com", "name": "U"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    let (status, got) = h.call("GET", "/v1/users/u1", Some(h.key(0)), None).await;
    assert_eq!((status, got), (StatusCode::OK, user));
    let (status, _) = h.call("GET", "/v1/users/u1", Some(h.key(1)), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, answer) = h
        .call(
            "PUT",
            "/v1/users/u2",
            Some(h.key(0)),
            Some(json!({"email": "nope"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["error"]["field"], "email");
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let h = harness().await;
    let (status, doc) = h.call("GET", "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let paths: HashSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let routed = [
        "/healthz",
        "/openapi.json",
        "/v1/notify",
        "/v1/status/{request_id}",
        "/v1/receipts",
        "/v1/users/{user_id}",
        "/v1/users/{user_id}/inbox",
        "/v1/templates/{template_id}",
    ];
    assert_eq!(paths, routed.into_iter().collect());
    let (status, health) = h.call("GET", "/healthz", None, None).await;
    assert_eq!((status, health), (StatusCode::OK, json!({"status": "ok"})));
}

#[tokio::test]
async fn users_keep_time_zones_and_deduplicated_devices() {
    let h = harness().await;
    let body = json!({
        "name": "U",
        "timezone": "Europe/Paris",
        "devices": [
            {"platform": "apns", "token": "t1"},
            {"platform": "fcm", "token": "t2"},
            {"platform": "apns", "token": "t1"}
        ]
    });
    let (status, user) = h
        .call("PUT", "/v1/users/u1", Some(h.key(0)), Some(body))
        .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["timezone"], "Europe/Paris");
    assert_eq!(
        user["devices"],
        json!([{"platform": "apns", "token": "t1"}, {"platform": "fcm", "token": "t2"}])
    );
    let (status, got) = h.call("GET", "/v1/users/u1", Some(h.key(0)), None).await;
    assert_eq!((status, got), (StatusCode::OK, user));

    // PUT replaces: without them, the time zone and the devices are cleared.
    let (_, user) = h
        .call("PUT", "/v1/users/u1", Some(h.key(0)), Some(json!({})))
        .await;
    assert_eq!(
        (&user["timezone"], &user["devices"]),
        (&json!(null), &json!([]))
    );

    let cases = [
        (json!({"timezone": "Europe/Paris "}), "timezone"),
        (json!({"timezone": ""}), "timezone"),
        (
            json!({"devices": [{"platform": "fcm", "token": "ok"}, {"platform": "fcm", "token": "a b"}]}),
            "devices[1].token",
        ),
        (
            json!({"devices": [{"platform": "sms", "token": "t"}]}),
            "devices[0].platform",
        ),
        (
            json!({"devices": [{"platform": "fcm"}]}),
            "devices[0].token",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = h
            .call("PUT", "/v1/users/u2", Some(h.key(0)), Some(body.clone()))
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} -> {answer}"
        );
        assert_eq!(answer["error"]["field"], field, "{body} -> {answer}");
    }
}
