//! Handler tests over `oneshot`: a real SQLite store, and an in-memory orchestrator standing in
//! for Temporal (the end-to-end suite covers the real one).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use fanout_domain::contracts::{NotificationInput, RedriveInput, TemplateQuota};
use fanout_domain::receipt::Progress;
use fanout_domain::{RequestId, TemplateId, TenantId};
use fanout_store::Store;
use fanout_store::tenants::generate_api_key;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::orchestrator::{Control, LiveState, Orchestrator, OrchestratorError, StartOutcome};
use crate::scheduling::{SchedulingConfig, TaskPriority};
use crate::{AppState, app};

/// Remembers started requests; a second start of the same id is a duplicate, as in Temporal.
#[derive(Default)]
struct FakeOrchestrator {
    started: Mutex<Vec<NotificationInput>>,
    /// The priority of each start in `started`, in the same order.
    priorities: Mutex<Vec<TaskPriority>>,
    controls: Mutex<Vec<(RequestId, Control)>>,
    cancelled: Mutex<Vec<RequestId>>,
    redrives: Mutex<Vec<(RedriveInput, TaskPriority)>>,
    quota_signals: Mutex<Vec<(TemplateId, TemplateQuota)>>,
}

#[async_trait]
impl Orchestrator for FakeOrchestrator {
    async fn start(
        &self,
        input: NotificationInput,
        priority: TaskPriority,
    ) -> Result<StartOutcome, OrchestratorError> {
        let mut started = self.started.lock().unwrap();
        if started.iter().any(|s| s.request_id == input.request_id) {
            return Ok(StartOutcome::Duplicate);
        }
        started.push(input);
        self.priorities.lock().unwrap().push(priority);
        Ok(StartOutcome::Started)
    }

    async fn start_redrive(
        &self,
        input: RedriveInput,
        priority: TaskPriority,
    ) -> Result<StartOutcome, OrchestratorError> {
        self.redrives.lock().unwrap().push((input, priority));
        Ok(StartOutcome::Started)
    }

    async fn control(
        &self,
        request_id: &RequestId,
        control: Control,
    ) -> Result<(), OrchestratorError> {
        let started = self.started.lock().unwrap();
        if !started.iter().any(|s| &s.request_id == request_id) {
            return Err(OrchestratorError::NotRunning);
        }
        self.controls
            .lock()
            .unwrap()
            .push((request_id.clone(), control));
        Ok(())
    }

    async fn cancel(&self, request_id: &RequestId) -> Result<(), OrchestratorError> {
        self.cancelled.lock().unwrap().push(request_id.clone());
        Ok(())
    }

    async fn running_requests(
        &self,
        tenant_id: &TenantId,
        template_id: &fanout_domain::TemplateId,
    ) -> Result<Vec<RequestId>, OrchestratorError> {
        let cancelled = self.cancelled.lock().unwrap();
        let started = self.started.lock().unwrap();
        Ok(started
            .iter()
            .filter(|s| &s.tenant_id == tenant_id && &s.template_id == template_id)
            .filter(|s| !cancelled.contains(&s.request_id))
            .map(|s| s.request_id.clone())
            .collect())
    }

    async fn signal_template_quota(
        &self,
        tenant_id: &TenantId,
        template_id: &TemplateId,
        quota: TemplateQuota,
    ) -> Result<u32, OrchestratorError> {
        let started = self.started.lock().unwrap();
        let running = started
            .iter()
            .filter(|s| &s.tenant_id == tenant_id && &s.template_id == template_id)
            .count();
        self.quota_signals
            .lock()
            .unwrap()
            .push((template_id.clone(), quota));
        Ok(u32::try_from(running).unwrap_or(u32::MAX))
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
    store: Store,
    keys: Vec<String>,
}

/// Two tenants, `a` and `b`, each with a key and the same `welcome` template (in-app only).
async fn harness() -> Harness {
    harness_with_window(Duration::from_secs(3600)).await
}

/// As [`harness`], with the given dedupe window.
async fn harness_with_window(dedupe_window: Duration) -> Harness {
    harness_with(dedupe_window, SchedulingConfig::default()).await
}

/// As [`harness`], with the given dedupe window and scheduling switches.
async fn harness_with(dedupe_window: Duration, scheduling: SchedulingConfig) -> Harness {
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
        dedupe_window,
        inbox: crate::inbox::InboxHub::new(store.clone(), Default::default()),
        preflight: Default::default(),
        admin_key: Some(fanout_domain::config::Secret::new(ADMIN_KEY)),
        ingest: crate::ingest::IngestLimiter::new(store.clone(), Default::default()),
        direct_max_recipients: fanout_domain::request::DIRECT_MAX_RECIPIENTS,
        scheduling,
        http: Default::default(),
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
        store,
        keys,
    };
    for key in h.keys.clone() {
        let (status, body) = h
            .call(
                "PUT",
                "/v1/templates/welcome",
                Some(&key),
                Some(
                    json!({"name": "W", "in_app": {"title": "Hi", "body": "{{ data.actor }} says hi"}}),
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
        (large, "tree", "workflow"),
        (followers, "tree", "workflow"),
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
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
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
        "/v1/cancel",
        "/v1/dead-letters",
        "/v1/dead-letters/redrive",
        "/v1/requests/{request_id}/pause",
        "/v1/requests/{request_id}/resume",
        "/v1/requests/{request_id}/rate",
        "/v1/users/{user_id}",
        "/v1/users/{user_id}/inbox",
        "/v1/templates",
        "/v1/users/{user_id}/inbox-token",
        "/v1/users/{user_id}/inbox-tokens",
        "/v1/users/{user_id}/inbox-tokens/{token_id}",
        "/v1/inbox",
        "/v1/inbox/unread-count",
        "/v1/inbox/messages/{message_id}/read",
        "/v1/inbox/read-all",
        "/v1/inbox/stream",
        "/v1/inbox/ws",
        "/v1/templates/{template_id}",
        "/v1/templates/{template_id}/versions",
        "/v1/templates/{template_id}/versions/{version}",
        "/v1/templates/{template_id}/rollback",
        "/v1/users/{user_id}/followers",
        "/v1/users/{user_id}/followers/{follower_id}",
        "/v1/segments/{segment_id}",
        "/v1/segments/{segment_id}/members",
        "/v1/segments/{segment_id}/members/{user_id}",
        "/v1/users/{user_id}/preferences",
        "/v1/users/{user_id}/preferences/opt-out",
        "/v1/users/{user_id}/preferences/opt-in",
        "/v1/suppressions",
        "/v1/suppressions/{channel}/{address}",
        "/v1/kill-switches/channels",
        "/v1/kill-switches/channels/{channel}",
        "/v1/templates/{template_id}/disable",
        "/v1/templates/{template_id}/enable",
        "/v1/settings/blast-radius",
        "/v1/admin/tenants",
        "/v1/admin/tenants/{tenant_id}",
        "/v1/admin/tenants/{tenant_id}/keys",
        "/v1/admin/tenants/{tenant_id}/keys/{key_id}",
        "/v1/admin/kill-switches/channels/{channel}",
        "/v1/quotas",
        "/v1/quotas/tenant",
        "/v1/quotas/templates/{template_id}",
    ];
    assert_eq!(paths, routed.into_iter().collect());
    let (status, health) = h.call("GET", "/healthz", None, None).await;
    assert_eq!((status, health), (StatusCode::OK, json!({"status": "ok"})));
}

/// The names of a schema's properties in the OpenAPI document.
fn schema_properties(doc: &Value, schema: &str) -> HashSet<String> {
    doc["components"]["schemas"][schema]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("no schema {schema}"))
        .keys()
        .cloned()
        .collect()
}

fn keys(object: &Value) -> HashSet<String> {
    object.as_object().unwrap().keys().cloned().collect()
}

/// The document is written by hand: every field a status or tenant answer carries must be in
/// its schema, so a new field cannot ship undocumented.
#[tokio::test]
async fn the_openapi_schemas_name_every_field_of_a_status_and_a_tenant() {
    let h = harness().await;
    let (_, doc) = h.call("GET", "/openapi.json", None, None).await;
    let (_, accepted) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(trigger("doc")))
        .await;
    let status_uri = accepted["status_url"].as_str().unwrap();
    let (status, body) = h.call("GET", status_uri, Some(h.key(0)), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let documented = schema_properties(&doc, "Status");
    assert!(
        keys(&body).is_subset(&documented),
        "undocumented: {:?}",
        keys(&body).difference(&documented).collect::<Vec<_>>()
    );

    let (status, tenant) = h
        .call("GET", "/v1/admin/tenants/a", Some(ADMIN_KEY), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{tenant}");
    assert_eq!(keys(&tenant), schema_properties(&doc, "Tenant"));
    let settings = schema_properties(&doc, "TenantSettings");
    assert_eq!(keys(&tenant["settings"]), settings);
    assert_eq!(keys(&tenant["effective"]), settings);
    let patchable: HashSet<String> = settings.into_iter().chain(["name".to_owned()]).collect();
    assert_eq!(schema_properties(&doc, "TenantPatch"), patchable);
}

#[tokio::test]
async fn controls_reach_the_workflow_and_cancel_is_written_through() {
    let h = harness().await;
    let (_, a) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(trigger("c1")))
        .await;
    let id = a["request_id"].as_str().unwrap().to_owned();

    let (status, body) = h
        .call(
            "POST",
            &format!("/v1/requests/{id}/pause"),
            Some(h.key(0)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, _) = h
        .call(
            "POST",
            &format!("/v1/requests/{id}/rate"),
            Some(h.key(0)),
            Some(json!({"per_second": 5})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, body) = h
        .call(
            "POST",
            &format!("/v1/requests/{id}/rate"),
            Some(h.key(0)),
            Some(json!({"per_second": 0})),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["field"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("per_second"))
    );
    let (status, _) = h
        .call(
            "POST",
            &format!("/v1/requests/{id}/pause"),
            Some(h.key(1)),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another tenant cannot pause it"
    );
    let sent: Vec<Control> = h
        .orchestrator
        .controls
        .lock()
        .unwrap()
        .iter()
        .map(|(_, c)| *c)
        .collect();
    assert_eq!(sent, vec![Control::Pause, Control::SetRate(Some(5))]);

    for body in [json!({}), json!({"request_id": id, "dedupe_key": "c1"})] {
        let (status, answer) = h
            .call("POST", "/v1/cancel", Some(h.key(0)), Some(body))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    }
    let (status, _) = h
        .call(
            "POST",
            "/v1/cancel",
            Some(h.key(1)),
            Some(json!({"dedupe_key": "c1"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "dedupe keys are per tenant");
    let (status, body) = h
        .call(
            "POST",
            "/v1/cancel",
            Some(h.key(0)),
            Some(json!({"dedupe_key": "c1"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["request_id"], id.as_str());
    let request_id = RequestId::parse(&id).unwrap();
    assert_eq!(
        h.orchestrator.cancelled.lock().unwrap().clone(),
        vec![request_id.clone()]
    );
    assert!(h.store.get_controls(&request_id).await.unwrap().cancelled);

    h.store
        .finalize_request(
            &request_id,
            fanout_domain::receipt::RequestState::Cancelled,
            &Progress::default(),
        )
        .await
        .unwrap();
    let (status, body) = h
        .call(
            "POST",
            &format!("/v1/requests/{id}/resume"),
            Some(h.key(0)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

#[tokio::test]
async fn dead_letters_are_listed_per_tenant_and_redriven_once_finished() {
    use fanout_domain::receipt::{DeliveryStatus, Receipt, RequestState};
    use fanout_domain::{Channel, InstanceId, UserId};

    let h = harness().await;
    let (_, a) = h
        .call("POST", "/v1/notify", Some(h.key(0)), Some(trigger("dl1")))
        .await;
    let id = a["request_id"].as_str().unwrap().to_owned();
    let request_id = RequestId::parse(&id).unwrap();
    let tenant = TenantId::parse("a").unwrap();
    let failed = |user: &str, code: &str| Receipt {
        instance_id: InstanceId::derive(&request_id, &UserId::parse(user).unwrap(), Channel::Email),
        request_id: request_id.clone(),
        user_id: UserId::parse(user).unwrap(),
        channel: Channel::Email,
        status: DeliveryStatus::Failed,
        provider_message_id: None,
        attempts: 1,
        latency_ms: None,
        error_code: Some(code.into()),
        error_message: Some("550 mailbox unavailable".into()),
        updated_at_ms: 1,
    };
    h.store
        .record_page_deliveries(
            &tenant,
            3,
            &[failed("u1", "smtp_550"), failed("u2", "smtp_552")],
            &[],
        )
        .await
        .unwrap();

    let (status, body) = h
        .call(
            "GET",
            &format!("/v1/dead-letters?request_id={id}"),
            Some(h.key(0)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed = body["dead_letters"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{body}");
    let u1 = listed.iter().find(|d| d["user_id"] == "u1").unwrap();
    assert_eq!(
        (u1["page"].as_u64(), &u1["error_code"]),
        (Some(3), &json!("smtp_550"))
    );
    let (_, other) = h
        .call("GET", "/v1/dead-letters", Some(h.key(1)), None)
        .await;
    assert_eq!(other["dead_letters"], json!([]), "another tenant sees none");
    let (status, _) = h
        .call("GET", "/v1/dead-letters?channel=sms", Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let redrive = json!({"request_id": id});
    let (status, body) = h
        .call(
            "POST",
            "/v1/dead-letters/redrive",
            Some(h.key(0)),
            Some(redrive.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "still running: {body}");
    h.store
        .finalize_request(&request_id, RequestState::Completed, &Progress::default())
        .await
        .unwrap();
    let (status, _) = h
        .call(
            "POST",
            "/v1/dead-letters/redrive",
            Some(h.key(1)),
            Some(redrive.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another tenant's request");
    let (status, body) = h
        .call(
            "POST",
            "/v1/dead-letters/redrive",
            Some(h.key(0)),
            Some(json!({"request_id": id, "instance_ids": ["nope"]})),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["field"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("instance_ids[0]"))
    );
    let (status, body) = h
        .call(
            "POST",
            "/v1/dead-letters/redrive",
            Some(h.key(0)),
            Some(redrive.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["instances"], 2);
    let started = h.orchestrator.redrives.lock().unwrap().clone();
    assert_eq!(started.len(), 1);
    let (input, priority) = &started[0];
    assert_eq!(input.request.request_id, request_id);
    assert_eq!(input.request.template_id.as_str(), "welcome");
    assert_eq!(Some(input.redrive_id.as_str()), body["redrive_id"].as_str());
    // A re-drive runs at its request's priority, in its tenant's share of the queue.
    assert_eq!(
        priority,
        &TaskPriority {
            priority_key: Some(3),
            fairness_key: Some(tenant),
            fairness_weight: None,
        }
    );
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

#[tokio::test]
async fn followers_are_added_once_paged_and_removed() {
    let h = harness().await;
    h.call("PUT", "/v1/users/star", Some(h.key(0)), Some(json!({})))
        .await;
    let uri = "/v1/users/star/followers";
    let body = json!({"follower_ids": ["f3", "f1", "f2", "f1"]});
    let (status, answer) = h
        .call("POST", uri, Some(h.key(0)), Some(body.clone()))
        .await;
    assert_eq!((status, answer), (StatusCode::OK, json!({"added": 3})));
    let (status, answer) = h.call("POST", uri, Some(h.key(0)), Some(body)).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({"added": 0})));

    let (status, page) = h
        .call("GET", &format!("{uri}?limit=2"), Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["followers"], json!(["f1", "f2"]));
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, page) = h
        .call(
            "GET",
            &format!("{uri}?limit=2&cursor={cursor}"),
            Some(h.key(0)),
            None,
        )
        .await;
    assert_eq!(page, json!({"followers": ["f3"], "next_cursor": null}));

    let (status, _) = h
        .call("DELETE", &format!("{uri}/f2"), Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, answer) = h
        .call("DELETE", &format!("{uri}/f2"), Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let (_, page) = h.call("GET", uri, Some(h.key(0)), None).await;
    assert_eq!(
        page,
        json!({"followers": ["f1", "f3"], "next_cursor": null})
    );
}

#[tokio::test]
async fn followers_of_unknown_or_other_tenants_users_are_404() {
    let h = harness().await;
    h.call("PUT", "/v1/users/star", Some(h.key(0)), Some(json!({})))
        .await;
    let add = json!({"follower_ids": ["f1"]});
    h.call(
        "POST",
        "/v1/users/star/followers",
        Some(h.key(0)),
        Some(add.clone()),
    )
    .await;
    for (method, uri, body) in [
        ("POST", "/v1/users/star/followers", Some(add.clone())),
        ("GET", "/v1/users/star/followers", None),
        ("DELETE", "/v1/users/star/followers/f1", None),
    ] {
        let (status, answer) = h.call(method, uri, Some(h.key(1)), body).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{method} {uri} leaked: {answer}"
        );
    }
    let (status, answer) = h
        .call(
            "POST",
            "/v1/users/nobody/followers",
            Some(h.key(0)),
            Some(add),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["error"]["message"], "user 'nobody' not found");
    // Tenant b's attempts changed nothing in tenant a.
    let (_, page) = h
        .call("GET", "/v1/users/star/followers", Some(h.key(0)), None)
        .await;
    assert_eq!(page["followers"], json!(["f1"]));
}

#[tokio::test]
async fn follower_bodies_and_pages_are_validated() {
    let h = harness().await;
    h.call("PUT", "/v1/users/star", Some(h.key(0)), Some(json!({})))
        .await;
    let too_many: Vec<String> = (0..10_001).map(|i| format!("f{i}")).collect();
    let cases = [
        (json!({}), "follower_ids", "missing"),
        (json!({"follower_ids": []}), "follower_ids", "at least one"),
        (
            json!({"follower_ids": too_many}),
            "follower_ids",
            "at most 10000",
        ),
        (
            json!({"follower_ids": ["ok", " padded"]}),
            "follower_ids",
            "[1]",
        ),
        (
            json!({"follower_ids": ["f1", "star"]}),
            "follower_ids",
            "itself",
        ),
        (
            json!({"follower_ids": ["f1"], "extra": 1}),
            "extra",
            "unknown field",
        ),
    ];
    for (body, field, hint) in cases {
        let (status, answer) = h
            .call(
                "POST",
                "/v1/users/star/followers",
                Some(h.key(0)),
                Some(body),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field}: {answer}"
        );
        assert_eq!(answer["error"]["field"], field, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(hint), "'{message}' lacks '{hint}'");
    }
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("cursor=!!", "cursor"),
    ] {
        let uri = format!("/v1/users/star/followers?{query}");
        let (status, answer) = h.call("GET", &uri, Some(h.key(0)), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}");
        assert_eq!(answer["error"]["field"], field);
    }
    let (_, page) = h
        .call("GET", "/v1/users/star/followers", Some(h.key(0)), None)
        .await;
    assert_eq!(page["followers"], json!([]), "nothing invalid was added");
}

#[tokio::test]
async fn segments_are_created_counted_paged_and_edited() {
    let h = harness().await;
    let (status, segment) = h
        .call(
            "PUT",
            "/v1/segments/beta",
            Some(h.key(0)),
            Some(json!({"name": "Beta", "user_ids": ["m2", "m1", "m2"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{segment}");
    assert_eq!(
        (
            &segment["segment_id"],
            &segment["name"],
            &segment["members"]
        ),
        (&json!("beta"), &json!("Beta"), &json!(2))
    );
    // A rename keeps the members.
    let (status, segment) = h
        .call(
            "PUT",
            "/v1/segments/beta",
            Some(h.key(0)),
            Some(json!({"name": "Beta testers"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{segment}");
    assert_eq!(
        (&segment["name"], &segment["members"]),
        (&json!("Beta testers"), &json!(2))
    );

    let members = "/v1/segments/beta/members";
    let (status, answer) = h
        .call(
            "POST",
            members,
            Some(h.key(0)),
            Some(json!({"user_ids": ["m3", "m1"]})),
        )
        .await;
    assert_eq!((status, answer), (StatusCode::OK, json!({"added": 1})));
    let (_, got) = h
        .call("GET", "/v1/segments/beta", Some(h.key(0)), None)
        .await;
    assert_eq!(got["members"], 3);

    let (_, page) = h
        .call("GET", &format!("{members}?limit=2"), Some(h.key(0)), None)
        .await;
    assert_eq!(page["members"], json!(["m1", "m2"]));
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, page) = h
        .call(
            "GET",
            &format!("{members}?cursor={cursor}"),
            Some(h.key(0)),
            None,
        )
        .await;
    assert_eq!(page, json!({"members": ["m3"], "next_cursor": null}));

    let (status, _) = h
        .call("DELETE", &format!("{members}/m1"), Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h
        .call("DELETE", &format!("{members}/m1"), Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, got) = h
        .call("GET", "/v1/segments/beta", Some(h.key(0)), None)
        .await;
    assert_eq!(got["members"], 2);
}

#[tokio::test]
async fn segments_of_other_tenants_and_unknown_segments_are_404() {
    let h = harness().await;
    h.call(
        "PUT",
        "/v1/segments/beta",
        Some(h.key(0)),
        Some(json!({"name": "Beta", "user_ids": ["m1"]})),
    )
    .await;
    let add = json!({"user_ids": ["intruder"]});
    for (method, uri, body) in [
        ("GET", "/v1/segments/beta", None),
        ("POST", "/v1/segments/beta/members", Some(add.clone())),
        ("GET", "/v1/segments/beta/members", None),
        ("DELETE", "/v1/segments/beta/members/m1", None),
        ("GET", "/v1/segments/nope", None),
        ("GET", "/v1/segments/bad%20id", None),
    ] {
        let (status, answer) = h.call(method, uri, Some(h.key(1)), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}: {answer}");
    }
    let (status, answer) = h
        .call(
            "POST",
            "/v1/segments/nope/members",
            Some(h.key(0)),
            Some(add),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["error"]["message"], "segment 'nope' not found");
    let (_, page) = h
        .call("GET", "/v1/segments/beta/members", Some(h.key(0)), None)
        .await;
    assert_eq!(page["members"], json!(["m1"]), "tenant b changed nothing");
}

#[tokio::test]
async fn segment_bodies_are_validated() {
    let h = harness().await;
    let too_many: Vec<String> = (0..10_001).map(|i| format!("m{i}")).collect();
    let cases = [
        ("/v1/segments/bad%20id", json!({"name": "B"}), "segment_id"),
        ("/v1/segments/beta", json!({}), "name"),
        ("/v1/segments/beta", json!({"name": " "}), "name"),
        (
            "/v1/segments/beta",
            json!({"name": "B", "user_ids": [""]}),
            "user_ids",
        ),
        (
            "/v1/segments/beta",
            json!({"name": "B", "user_ids": too_many}),
            "user_ids",
        ),
        (
            "/v1/segments/beta",
            json!({"name": "B", "owner": "x"}),
            "owner",
        ),
    ];
    for (uri, body, field) in cases {
        let (status, answer) = h.call("PUT", uri, Some(h.key(0)), Some(body.clone())).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} -> {answer}"
        );
        assert_eq!(answer["error"]["field"], field, "{body} -> {answer}");
    }
    let (status, _) = h
        .call("GET", "/v1/segments/beta", Some(h.key(0)), None)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a refused segment is not stored"
    );
    h.call(
        "PUT",
        "/v1/segments/beta",
        Some(h.key(0)),
        Some(json!({"name": "B"})),
    )
    .await;
    for body in [json!({"user_ids": []}), json!({})] {
        let (status, answer) = h
            .call(
                "POST",
                "/v1/segments/beta/members",
                Some(h.key(0)),
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_eq!(answer["error"]["field"], "user_ids");
    }
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

#[tokio::test]
async fn deleting_a_user_erases_them_for_their_tenant_only() {
    let h = harness().await;
    for key in [h.key(0), h.key(1)] {
        let (status, _) = h
            .call(
                "PUT",
                "/v1/users/u9",
                Some(key),
                Some(json!({"email": "u9@example.com"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _) = h.call("DELETE", "/v1/users/u9", Some(h.key(0)), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h.call("GET", "/v1/users/u9", Some(h.key(0)), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h.call("DELETE", "/v1/users/u9", Some(h.key(0)), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "deleting twice is a 404");
    let (status, _) = h.call("GET", "/v1/users/u9", Some(h.key(1)), None).await;
    assert_eq!(status, StatusCode::OK, "the other tenant's u9 is untouched");
    let (status, _) = h.call("DELETE", "/v1/users/u9", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

// ---- Preferences and the suppression list ----

#[tokio::test]
async fn preference_documents_are_validated_with_the_offending_key_named() {
    let h = harness().await;
    let uri = "/v1/users/u1/preferences";
    for (body, field) in [
        (json!({"channels": {"sms": false}}), "channels.sms"),
        (
            json!({"categories": {"news": {"email": true, "sms": false}}}),
            "categories.news.sms",
        ),
        (
            json!({"categories": {"bad name": {"email": false}}}),
            "categories.bad name",
        ),
        (json!({"channels": {"email": "no"}}), "channels.email"),
        (json!({"user_id": "someone-else"}), "user_id"),
    ] {
        let (status, answer) = h.call("PUT", uri, Some(h.key(0)), Some(body.clone())).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} -> {answer}"
        );
        assert_eq!(answer["error"]["field"], field, "{body} -> {answer}");
    }
    let (status, _) = h
        .call("PUT", uri, Some(h.key(0)), Some(json!({"channel": {}})))
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown top-level key"
    );
    for (body, field) in [
        (json!({}), "channel"),
        (json!({"channel": "sms"}), "channel"),
        (json!({"category": "a b"}), "category"),
        (json!({"channel": "push", "category": ""}), "category"),
    ] {
        let (status, answer) = h
            .call(
                "POST",
                &format!("{uri}/opt-out"),
                Some(h.key(0)),
                Some(body.clone()),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} -> {answer}"
        );
        assert_eq!(answer["error"]["field"], field, "{body} -> {answer}");
    }
    // Nothing invalid was stored.
    let (status, doc) = h.call("GET", uri, Some(h.key(0)), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        doc,
        json!({"user_id": "u1", "channels": {}, "categories": {}})
    );
}

#[tokio::test]
async fn opting_out_and_back_in_round_trips_and_is_what_delivery_sees() {
    use fanout_domain::{Channel, UserId};

    let h = harness().await;
    let tenant = TenantId::parse("a").unwrap();
    // The user does not exist yet: products set preferences early.
    let uri = "/v1/users/later/preferences";
    let user = UserId::parse("later").unwrap();
    let blocked = |channel, category: &'static str| {
        let (store, tenant, user) = (h.store.clone(), tenant.clone(), user.clone());
        async move {
            store
                .blocked_by_preferences(&tenant, std::slice::from_ref(&user), channel, category)
                .await
                .unwrap()
                .contains(&user)
        }
    };

    let (status, doc) = h
        .call(
            "POST",
            &format!("{uri}/opt-out"),
            Some(h.key(0)),
            Some(json!({"category": "marketing"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(
        doc["categories"],
        json!({"marketing": {"email": false, "in_app": false, "push": false}})
    );
    assert!(blocked(Channel::Email, "marketing").await);
    assert!(!blocked(Channel::Email, "security").await);

    let (status, doc) = h
        .call(
            "POST",
            &format!("{uri}/opt-in"),
            Some(h.key(0)),
            Some(json!({"category": "marketing", "channel": "push"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["categories"]["marketing"]["push"], true);
    assert!(!blocked(Channel::Push, "marketing").await);
    assert!(blocked(Channel::InApp, "marketing").await);

    let (status, doc) = h
        .call(
            "POST",
            &format!("{uri}/opt-out"),
            Some(h.key(0)),
            Some(json!({"channel": "push"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["channels"], json!({"push": false}));
    assert!(blocked(Channel::Push, "security").await, "push is off");
    assert!(
        !blocked(Channel::Push, "marketing").await,
        "the marketing rule overrides the push default"
    );

    // GET returns what the calls built; PUT of that document changes nothing; PUT of {} clears.
    let (status, read) = h.call("GET", uri, Some(h.key(0)), None).await;
    assert_eq!((status, &read), (StatusCode::OK, &doc));
    let (status, put) = h.call("PUT", uri, Some(h.key(0)), Some(read.clone())).await;
    assert_eq!((status, &put), (StatusCode::OK, &read));
    let (status, cleared) = h.call("PUT", uri, Some(h.key(0)), Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        cleared,
        json!({"user_id": "later", "channels": {}, "categories": {}})
    );
    assert!(!blocked(Channel::Push, "security").await);
}

#[tokio::test]
async fn suppressions_are_added_listed_and_removed_by_encoded_address() {
    let h = harness().await;
    let add = |body: Value| h.call("POST", "/v1/suppressions", Some(h.key(0)), Some(body));
    let (status, entry) = add(json!({
        "channel": "email", "address": "Ada+news@Example.com", "detail": "asked by phone"
    }))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{entry}");
    assert_eq!(entry["address"], "ada+news@example.com");
    assert_eq!(entry["reason"], "manual");
    let (status, again) = add(json!({
        "channel": "email", "address": "ada+news@example.com", "reason": "complaint"
    }))
    .await;
    assert_eq!(status, StatusCode::OK, "already there");
    assert_eq!(again, entry, "the first reason is kept");
    for i in 0..3 {
        let (status, _) = add(json!({
            "channel": "push", "address": format!("tok/{i}"), "reason": "invalid_token"
        }))
        .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    for (body, field) in [
        (json!({"channel": "in_app", "address": "x"}), "channel"),
        (json!({"channel": "sms", "address": "x"}), "channel"),
        (
            json!({"channel": "email", "address": "not-an-email"}),
            "address",
        ),
        (
            json!({"channel": "push", "address": "has space"}),
            "address",
        ),
        (
            json!({"channel": "push", "address": "t", "reason": "soft_bounce"}),
            "reason",
        ),
        (
            json!({"channel": "push", "address": "t", "detail": "x".repeat(1025)}),
            "detail",
        ),
        (json!({"channel": "push"}), "address"),
    ] {
        let (status, answer) = add(body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} -> {answer}"
        );
        assert_eq!(answer["error"]["field"], field, "{body} -> {answer}");
    }

    // Pages of two walk all four entries in (channel, address) order.
    let mut seen = Vec::new();
    let mut uri = "/v1/suppressions?limit=2".to_owned();
    loop {
        let (status, page) = h.call("GET", &uri, Some(h.key(0)), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for e in page["suppressions"].as_array().unwrap() {
            seen.push(e["address"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/v1/suppressions?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ["ada+news@example.com", "tok/0", "tok/1", "tok/2"]);
    let (_, push) = h
        .call("GET", "/v1/suppressions?channel=push", Some(h.key(0)), None)
        .await;
    assert_eq!(push["suppressions"].as_array().unwrap().len(), 3);
    let (_, one) = h
        .call(
            "GET",
            "/v1/suppressions?address=ADA%2Bnews%40example.com",
            Some(h.key(0)),
            None,
        )
        .await;
    assert_eq!(one["suppressions"], json!([entry]));
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("channel=sms", "channel"),
        ("cursor=%25%25", "cursor"),
    ] {
        let (status, answer) = h
            .call(
                "GET",
                &format!("/v1/suppressions?{query}"),
                Some(h.key(0)),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(answer["error"]["field"], field, "{query}");
    }

    // Addresses travel percent-encoded: '/' in a token, '+' and '@' in an email address.
    let (status, got) = h
        .call("GET", "/v1/suppressions/push/tok%2F1", Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["address"], "tok/1");
    let (status, _) = h
        .call(
            "DELETE",
            "/v1/suppressions/push/tok%2F1",
            Some(h.key(0)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h
        .call(
            "DELETE",
            "/v1/suppressions/push/tok%2F1",
            Some(h.key(0)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "deleting twice is a 404");
    let (status, _) = h
        .call(
            "DELETE",
            "/v1/suppressions/email/Ada%2Bnews%40example.com",
            Some(h.key(0)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h
        .call("DELETE", "/v1/suppressions/sms/x", Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let tenant = TenantId::parse("a").unwrap();
    let left = h
        .store
        .suppressed_addresses(
            &tenant,
            fanout_domain::Channel::Push,
            &["tok/0", "tok/1", "tok/2"],
        )
        .await
        .unwrap();
    assert_eq!(
        left,
        HashSet::from(["tok/0".to_owned(), "tok/2".to_owned()])
    );
    let (status, _) = h.call("GET", "/v1/suppressions", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn preferences_and_suppressions_stay_in_their_tenant() {
    let h = harness().await;
    let (status, _) = h
        .call(
            "POST",
            "/v1/users/u1/preferences/opt-out",
            Some(h.key(0)),
            Some(json!({"channel": "email"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, theirs) = h
        .call("GET", "/v1/users/u1/preferences", Some(h.key(1)), None)
        .await;
    assert_eq!(theirs["channels"], json!({}), "tenant b's u1 has no rules");
    let (status, _) = h
        .call(
            "POST",
            "/v1/suppressions",
            Some(h.key(0)),
            Some(json!({"channel": "email", "address": "a@example.com"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, listed) = h
        .call("GET", "/v1/suppressions", Some(h.key(1)), None)
        .await;
    assert_eq!(listed["suppressions"], json!([]));
    let uri = "/v1/suppressions/email/a%40example.com";
    let (status, _) = h.call("GET", uri, Some(h.key(1)), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h.call("DELETE", uri, Some(h.key(1)), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "b cannot remove a's entry");
    let (status, _) = h.call("GET", uri, Some(h.key(0)), None).await;
    assert_eq!(status, StatusCode::OK, "a's entry is still there");
}

#[tokio::test]
async fn erasing_a_user_erases_their_preferences_and_suppressed_addresses() {
    let h = harness().await;
    let (status, _) = h
        .call(
            "PUT",
            "/v1/users/u7",
            Some(h.key(0)),
            Some(json!({
                "email": "u7@example.com",
                "devices": [{"platform": "apns", "token": "apns-u7"}]
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h
        .call(
            "POST",
            "/v1/users/u7/preferences/opt-out",
            Some(h.key(0)),
            Some(json!({"channel": "email"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for (channel, address) in [
        ("email", "U7@example.com"),
        ("push", "apns-u7"),
        ("email", "other@example.com"),
    ] {
        let (status, _) = h
            .call(
                "POST",
                "/v1/suppressions",
                Some(h.key(0)),
                Some(json!({"channel": channel, "address": address, "reason": "hard_bounce"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, _) = h.call("DELETE", "/v1/users/u7", Some(h.key(0)), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, doc) = h
        .call("GET", "/v1/users/u7/preferences", Some(h.key(0)), None)
        .await;
    assert_eq!(doc["channels"], json!({}));
    let (_, listed) = h
        .call("GET", "/v1/suppressions", Some(h.key(0)), None)
        .await;
    let addresses: Vec<&str> = listed["suppressions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["address"].as_str().unwrap())
        .collect();
    assert_eq!(addresses, ["other@example.com"]);
}

// Templates: versions, rollback, locale variants and validation.

/// A template body with email and in-app content and a French in-app variant.
fn localized_template(subject: &str) -> Value {
    json!({
        "name": "Post",
        "category": "social",
        "email": {"subject": subject, "text": "Hi {{ user.name }}"},
        "in_app": {"title": "{{ data.actor }} posted", "body": "Look", "action_url": "app://p/{{ data.id }}"},
        "push": {"title": "{{ data.actor }}", "body": "posted", "data": {"post": "{{ data.id }}"}},
        "locales": {"fr": {"in_app": {"title": "{{ data.actor }} a publié", "body": "Regardez"}}}
    })
}

#[tokio::test]
async fn templates_are_created_once_then_versioned_by_each_write() {
    let h = harness().await;
    let mut body = localized_template("{{ data.actor }} posted");
    body["template_id"] = json!("post");
    let (status, created) = h
        .call("POST", "/v1/templates", Some(h.key(0)), Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["version"], 1);
    assert_eq!(created["category"], "social");
    assert_eq!(created["default_locale"], "en");
    assert_eq!(
        created["locales"]["fr"]["in_app"]["title"],
        "{{ data.actor }} a publié"
    );
    assert_eq!(created["push"]["data"]["post"], "{{ data.id }}");
    let (status, answer) = h
        .call("POST", "/v1/templates", Some(h.key(0)), Some(body))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    // The same id is free in another tenant.
    let mut other = localized_template("x");
    other["template_id"] = json!("post");
    let (status, _) = h
        .call("POST", "/v1/templates", Some(h.key(1)), Some(other))
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, v2) = h
        .call(
            "PUT",
            "/v1/templates/post",
            Some(h.key(0)),
            Some(localized_template("New: {{ data.actor }}")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v2}");
    assert_eq!(v2["version"], 2);
    let (status, active) = h
        .call("GET", "/v1/templates/post", Some(h.key(0)), None)
        .await;
    assert_eq!((status, &active), (StatusCode::OK, &v2));

    let (status, page) = h
        .call("GET", "/v1/templates/post/versions", Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["active_version"], 2);
    let versions: Vec<_> = page["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].clone(), v["email"]["subject"].clone()))
        .collect();
    assert_eq!(
        versions,
        vec![
            (json!(2), json!("New: {{ data.actor }}")),
            (json!(1), json!("{{ data.actor }} posted")),
        ]
    );
    assert!(page.get("next_before").is_none_or(Value::is_null), "{page}");
    let (status, first_page) = h
        .call(
            "GET",
            "/v1/templates/post/versions?limit=1",
            Some(h.key(0)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first_page["versions"].as_array().unwrap().len(), 1);
    assert_eq!(first_page["next_before"], 2);
    let (status, rest) = h
        .call(
            "GET",
            "/v1/templates/post/versions?limit=1&before=2",
            Some(h.key(0)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rest["versions"][0]["version"], 1);
    let (status, _) = h
        .call(
            "GET",
            "/v1/templates/post/versions?limit=0",
            Some(h.key(0)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (status, v1) = h
        .call("GET", "/v1/templates/post/versions/1", Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v1["email"]["subject"], "{{ data.actor }} posted");
    for missing in [
        "/v1/templates/post/versions/3",
        "/v1/templates/post/versions/x",
    ] {
        let (status, _) = h.call("GET", missing, Some(h.key(0)), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    }
}

#[tokio::test]
async fn rollback_writes_a_new_version_with_the_old_content() {
    let h = harness().await;
    for subject in ["one", "two"] {
        let (status, answer) = h
            .call(
                "PUT",
                "/v1/templates/post",
                Some(h.key(0)),
                Some(localized_template(subject)),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let (status, rolled) = h
        .call(
            "POST",
            "/v1/templates/post/rollback",
            Some(h.key(0)),
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rolled}");
    assert_eq!(rolled["version"], 3);
    assert_eq!(rolled["restored_from"], 1);
    assert_eq!(rolled["email"]["subject"], "one");
    let (_, active) = h
        .call("GET", "/v1/templates/post", Some(h.key(0)), None)
        .await;
    assert_eq!(active, rolled);
    let (_, page) = h
        .call("GET", "/v1/templates/post/versions", Some(h.key(0)), None)
        .await;
    let history: Vec<_> = page["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["email"]["subject"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(history, ["one", "two", "one"], "history stays visible");

    let (status, _) = h
        .call(
            "POST",
            "/v1/templates/post/rollback",
            Some(h.key(0)),
            Some(json!({"version": 7})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn another_tenants_template_is_404_on_every_route() {
    let h = harness().await;
    let (status, _) = h
        .call(
            "PUT",
            "/v1/templates/mine",
            Some(h.key(0)),
            Some(localized_template("s")),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for uri in [
        "/v1/templates/mine",
        "/v1/templates/mine/versions",
        "/v1/templates/mine/versions/1",
    ] {
        let (status, _) = h.call("GET", uri, Some(h.key(1)), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
    }
    let (status, _) = h
        .call(
            "POST",
            "/v1/templates/mine/rollback",
            Some(h.key(1)),
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, page) = h
        .call("GET", "/v1/templates/mine/versions", Some(h.key(0)), None)
        .await;
    assert_eq!(
        page["active_version"], 1,
        "the failed rollback wrote nothing"
    );
}

#[tokio::test]
async fn invalid_template_content_is_400_with_channel_field_locale_and_position() {
    let h = harness().await;
    let mut body = localized_template("{{ data.actor }} posted");
    body["locales"]["fr"]["in_app"]["body"] = json!("Regardez\n  {{ user.nom }}");
    body["push"]["data"]["post"] = json!("{% if %}");
    let (status, answer) = h
        .call("PUT", "/v1/templates/post", Some(h.key(0)), Some(body))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let error = &answer["error"];
    assert_eq!(error["code"], "invalid_template");
    assert_eq!(error["field"], "push.data.post");
    let problems = error["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{answer}");
    assert_eq!(problems[0]["kind"], "syntax");
    assert_eq!(problems[0]["channel"], "push");
    assert_eq!(problems[0]["field"], "data.post");
    assert_eq!(problems[0]["locale"], Value::Null);
    assert_eq!(problems[0]["line"], 1);
    assert_eq!(problems[1]["kind"], "unknown_variable");
    assert_eq!(problems[1]["channel"], "in_app");
    assert_eq!(problems[1]["field"], "body");
    assert_eq!(problems[1]["locale"], "fr");
    assert_eq!(problems[1]["path"], "locales.fr.in_app.body");
    assert_eq!(
        (&problems[1]["line"], &problems[1]["column"]),
        (&json!(2), &json!(6))
    );
    assert!(
        error["message"].as_str().unwrap().contains("user.nom"),
        "{answer}"
    );

    // Top-level data keys are no longer variables: the message says where data lives.
    let (status, answer) = h
        .call(
            "PUT",
            "/v1/templates/post",
            Some(h.key(0)),
            Some(json!({"name": "P", "email": {"subject": "{{ actor }}", "text": "t"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["field"], "email.subject");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("data.actor"),
        "{answer}"
    );
    let (status, _) = h
        .call("GET", "/v1/templates/post", Some(h.key(0)), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing refused was stored");
}

#[tokio::test]
async fn malformed_template_structure_is_422_naming_the_field() {
    let h = harness().await;
    let cases = [
        (
            json!({"name": "P", "in_app": {"title": "t", "body": "b"}, "locales": {"french": {"in_app": {"title": "t", "body": "b"}}}}),
            "locales.french",
        ),
        (
            json!({"name": "P", "in_app": {"title": "t", "body": "b"}, "locales": {"fr": {"email": {"subject": "s", "text": "t"}}}}),
            "locales.fr.email",
        ),
        (
            json!({"name": "P", "in_app": {"title": "t", "body": "b"}, "locales": {"en": {"in_app": {"title": "t", "body": "b"}}}}),
            "locales.en",
        ),
        (
            json!({"name": "P", "in_app": {"title": "t", "body": "b"}, "category": "Not OK"}),
            "category",
        ),
        (
            json!({"name": "P", "in_app": {"title": "t", "body": "b"}, "default_locale": "x"}),
            "default_locale",
        ),
        (json!({"name": "P"}), "body"),
    ];
    for (body, field) in cases {
        let (status, answer) = h
            .call("PUT", "/v1/templates/p", Some(h.key(0)), Some(body))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }
}

#[tokio::test]
async fn the_demo_seed_writes_a_valid_localized_template_once() {
    let h = harness().await;
    let seeded = crate::seed::demo(&h.store, None).await.unwrap();
    crate::seed::demo(&h.store, Some(seeded.api_key.clone()))
        .await
        .unwrap();
    let (status, template) = h
        .call("GET", "/v1/templates/welcome", Some(&seeded.api_key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{template}");
    assert_eq!(template["version"], 1, "seeding again writes no version");
    assert!(template["locales"]["fr"]["email"].is_object());
    // What the seed wrote passes the API's own checks.
    let mut body = template.clone();
    for key in ["template_id", "version", "updated_at_ms"] {
        body.as_object_mut().unwrap().remove(key);
    }
    let (status, answer) = h
        .call(
            "PUT",
            "/v1/templates/welcome",
            Some(&seeded.api_key),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

// In-app inbox: per-user tokens, read state, and the SSE stream over `oneshot`.

mod inbox;

// Kill switches (api/src/kill.rs).
mod kill_switches;

mod preflight;

// Tenancy (issue 5): the operator's admin API, isolation between tenants on every tenant route,
// and the per-tenant ingest quota on notify.

/// The admin key every harness is configured with.
const ADMIN_KEY: &str = "test-admin-key-0123456789-abcdefghij";

mod tenancy;

mod quotas;

mod guardrails;

mod limits;
mod scheduling;
