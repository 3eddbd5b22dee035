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

mod inbox {
    use std::time::Duration;

    use tower::ServiceExt;

    use axum::body::{Body, BodyDataStream};
    use axum::http::{Request, StatusCode, header};
    use fanout_domain::inbox::InboxMessage;
    use fanout_domain::{Channel, DedupeKey, InstanceId, TenantId, UserId};
    use futures::StreamExt;
    use serde_json::{Value, json};

    use super::{Harness, harness};

    /// Creates `user` in tenant `a` and issues it a token.
    async fn user_with_token(h: &Harness, user: &str) -> String {
        let (status, body) = h
            .call(
                "PUT",
                &format!("/v1/users/{user}"),
                Some(h.key(0)),
                Some(json!({"name": user})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = h
            .call(
                "POST",
                &format!("/v1/users/{user}/inbox-token"),
                Some(h.key(0)),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["user_id"], user);
        body["token"].as_str().unwrap().to_owned()
    }

    /// Delivers one in-app message per key to `user` of tenant `a`, as the worker would.
    async fn deliver(h: &Harness, user: &str, keys: &[&str]) -> Vec<InboxMessage> {
        let tenant = TenantId::parse("a").unwrap();
        let user = UserId::parse(user).unwrap();
        let messages: Vec<InboxMessage> = keys
            .iter()
            .map(|key| {
                let request_id = DedupeKey::new(tenant.clone(), key).unwrap().request_id();
                InboxMessage {
                    id: InstanceId::derive(&request_id, &user, Channel::InApp),
                    user_id: user.clone(),
                    request_id,
                    title: (*key).to_owned(),
                    body: "b".into(),
                    action_url: None,
                    data: json!({"key": key}),
                    created_at_ms: fanout_store::now_ms(),
                    read_at_ms: None,
                }
            })
            .collect();
        h.store
            .record_deliveries(&tenant, &[], &messages)
            .await
            .unwrap();
        messages
    }

    #[tokio::test]
    async fn inbox_tokens_open_only_their_users_inbox_until_expired_or_revoked() {
        let h = harness().await;
        let token = user_with_token(&h, "u1").await;
        user_with_token(&h, "u2").await;
        deliver(&h, "u1", &["one"]).await;
        deliver(&h, "u2", &["two"]).await;

        let (status, page) = h.call("GET", "/v1/inbox", Some(&token), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let titles: Vec<&str> = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["title"].as_str().unwrap())
            .collect();
        assert_eq!(titles, ["one"], "u1's token shows u1's inbox only");
        assert_eq!(page["last_event_id"], 2);
        // The query parameter works only on the streams, where browsers cannot set headers:
        // anywhere else a token in a URL is refused rather than left in logs.
        for uri in ["/v1/inbox", "/v1/inbox/unread-count"] {
            let (status, _) = h
                .call("GET", &format!("{uri}?token={token}"), None, None)
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        }
        let (status, _) = h
            .call(
                "POST",
                &format!("/v1/inbox/read-all?token={token}"),
                None,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let response = h
            .router
            .clone()
            .oneshot(
                Request::get(format!("/v1/inbox/stream?token={token}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "the stream takes ?token="
        );

        // A user token is not an API key, an API key is not a user token, and no token is 401.
        for (uri, key) in [
            ("/v1/users/u1/inbox", Some(token.as_str())),
            ("/v1/inbox", Some(h.key(0))),
            ("/v1/inbox", None),
            ("/v1/inbox?token=fit_forged", None),
            ("/v1/inbox/stream", None),
            ("/v1/inbox/ws", Some("fit_forged")),
        ] {
            let (status, body) = h.call("GET", uri, key, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}: {body}");
        }
        // Tokens are issued for the caller's own, existing users, for a bounded time.
        let (status, _) = h
            .call("POST", "/v1/users/u1/inbox-token", Some(h.key(1)), None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "tenant b has no u1");
        let (status, _) = h.call("POST", "/v1/users/u1/inbox-token", None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        for ttl in [0, 365 * 24 * 3600] {
            let (status, body) = h
                .call(
                    "POST",
                    "/v1/users/u1/inbox-token",
                    Some(h.key(0)),
                    Some(json!({"ttl_seconds": ttl})),
                )
                .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(body["error"]["field"], "ttl_seconds");
        }
        let (status, short) = h
            .call(
                "POST",
                "/v1/users/u1/inbox-token",
                Some(h.key(0)),
                Some(json!({"ttl_seconds": 60})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let lifetime = short["expires_at_ms"].as_i64().unwrap() - fanout_store::now_ms();
        assert!((55_000..=60_000).contains(&lifetime), "{lifetime}");

        // Expired: written straight to the store, as time passing would leave it.
        let tenant = TenantId::parse("a").unwrap();
        let expired = h
            .store
            .issue_inbox_token(
                &tenant,
                &UserId::parse("u1").unwrap(),
                fanout_store::now_ms() - 1,
            )
            .await
            .unwrap();
        let (status, _) = h.call("GET", "/v1/inbox", Some(&expired.token), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "expired");

        // Revoked, one token: only another tenant's key or the wrong user cannot revoke it.
        let id = short["token_id"].as_str().unwrap();
        let short_token = short["token"].as_str().unwrap();
        for (uri, key) in [
            (format!("/v1/users/u1/inbox-tokens/{id}"), h.key(1)),
            (format!("/v1/users/u2/inbox-tokens/{id}"), h.key(0)),
            ("/v1/users/u1/inbox-tokens/itk_unknown".to_owned(), h.key(0)),
        ] {
            let (status, _) = h.call("DELETE", &uri, Some(key), None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        }
        let (status, _) = h.call("GET", "/v1/inbox", Some(short_token), None).await;
        assert_eq!(status, StatusCode::OK);
        let uri = format!("/v1/users/u1/inbox-tokens/{id}");
        let (status, _) = h.call("DELETE", &uri, Some(h.key(0)), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = h.call("GET", "/v1/inbox", Some(short_token), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked");
        let (status, _) = h.call("GET", "/v1/inbox", Some(&token), None).await;
        assert_eq!(status, StatusCode::OK, "u1's other token still works");

        // Revoked, all of a user's tokens.
        let (status, body) = h
            .call("DELETE", "/v1/users/u1/inbox-tokens", Some(h.key(0)), None)
            .await;
        assert_eq!((status, body), (StatusCode::OK, json!({"revoked": 1})));
        let (status, _) = h.call("GET", "/v1/inbox", Some(&token), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked with all of u1's");
    }

    #[tokio::test]
    async fn inbox_read_state_and_unread_count_follow_the_tokens_user() {
        let h = harness().await;
        let token = user_with_token(&h, "u1").await;
        let other = user_with_token(&h, "u2").await;
        let mine = deliver(&h, "u1", &["a", "b", "c"]).await;
        let theirs = deliver(&h, "u2", &["a"]).await;
        let unread = |token: String| {
            let h = &h;
            async move {
                let (status, body) = h
                    .call("GET", "/v1/inbox/unread-count", Some(&token), None)
                    .await;
                assert_eq!(status, StatusCode::OK, "{body}");
                body["unread"].as_u64().unwrap()
            }
        };
        assert_eq!(unread(token.clone()).await, 3);

        let read_uri = |m: &InboxMessage| format!("/v1/inbox/messages/{}/read", m.id);
        let (status, first) = h
            .call("POST", &read_uri(&mine[0]), Some(&token), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{first}");
        assert_eq!(first["message_id"], mine[0].id.as_str());
        // Idempotent: reading again keeps the first time.
        let (status, again) = h
            .call("POST", &read_uri(&mine[0]), Some(&token), None)
            .await;
        assert_eq!((status, &again), (StatusCode::OK, &first));
        // Another user's message, or no message at all, is not found.
        for uri in [
            read_uri(&theirs[0]),
            "/v1/inbox/messages/nope/read".to_owned(),
        ] {
            let (status, _) = h.call("POST", &uri, Some(&token), None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        }
        assert_eq!(unread(token.clone()).await, 2);
        assert_eq!(unread(other.clone()).await, 1);

        // Both listings show the read time.
        let (_, own) = h.call("GET", "/v1/inbox", Some(&token), None).await;
        let (_, tenant) = h
            .call("GET", "/v1/users/u1/inbox", Some(h.key(0)), None)
            .await;
        for page in [&own, &tenant] {
            let read: Vec<&Value> = page["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| !m["read_at_ms"].is_null())
                .collect();
            assert_eq!(read.len(), 1, "{page}");
            assert_eq!(read[0]["read_at_ms"], first["read_at_ms"]);
        }

        let (status, body) = h
            .call("POST", "/v1/inbox/read-all", Some(&token), None)
            .await;
        assert_eq!((status, body), (StatusCode::OK, json!({"marked": 2})));
        let (_, body) = h
            .call("POST", "/v1/inbox/read-all", Some(&token), None)
            .await;
        assert_eq!(body, json!({"marked": 0}));
        assert_eq!(unread(token).await, 0);
        assert_eq!(unread(other).await, 1, "u2's inbox is untouched");
    }

    /// Reads Server-Sent Events off a response body.
    struct Sse {
        body: BodyDataStream,
        buf: String,
    }

    impl Sse {
        /// The next event's `(event, id, data)`, skipping keep-alive comments.
        async fn next(&mut self) -> (String, String, Value) {
            loop {
                if let Some(end) = self.buf.find("\n\n") {
                    let block: String = self.buf.drain(..end + 2).collect();
                    let (mut event, mut id, mut data) = (String::new(), String::new(), None);
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event: ") {
                            event = v.to_owned();
                        } else if let Some(v) = line.strip_prefix("id: ") {
                            id = v.to_owned();
                        } else if let Some(v) = line.strip_prefix("data: ") {
                            data = Some(serde_json::from_str(v).unwrap());
                        }
                    }
                    if let Some(data) = data {
                        return (event, id, data);
                    }
                    continue;
                }
                let chunk = tokio::time::timeout(Duration::from_secs(10), self.body.next())
                    .await
                    .expect("an event within 10 s")
                    .expect("the stream stays open")
                    .unwrap();
                self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        }
    }

    async fn open_sse(h: &Harness, token: &str, last_event_id: Option<&str>) -> Sse {
        let mut request = Request::get("/v1/inbox/stream")
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response =
            tower::ServiceExt::oneshot(h.router.clone(), request.body(Body::empty()).unwrap())
                .await
                .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
        Sse {
            body: response.into_body().into_data_stream(),
            buf: String::new(),
        }
    }

    #[tokio::test]
    async fn inbox_sse_replays_after_the_last_event_id_then_streams_live() {
        let h = harness().await;
        let token = user_with_token(&h, "u1").await;
        user_with_token(&h, "u2").await;
        let early = deliver(&h, "u1", &["a", "b", "c"]).await;
        deliver(&h, "u2", &["x"]).await;

        // Resuming after the first message replays the other two, then says it is live (at the
        // user's last event: u2's message is no business of this stream).
        let mut sse = open_sse(&h, &token, Some("1")).await;
        for (m, want_id) in early[1..].iter().zip(["2", "3"]) {
            let (event, id, data) = sse.next().await;
            assert_eq!((event.as_str(), id.as_str()), ("message", want_id));
            assert_eq!(data["id"], json!(want_id.parse::<i64>().unwrap()));
            assert_eq!(data["message"]["id"], m.id.as_str());
            assert_eq!(data["message"]["title"], m.title.as_str());
        }
        let (event, id, _) = sse.next().await;
        assert_eq!((event.as_str(), id.as_str()), ("ready", "3"));

        // Live: a new message (written as the worker would, seen through the poller), then a
        // read from another device; u2's traffic never shows.
        deliver(&h, "u2", &["y"]).await;
        let late = deliver(&h, "u1", &["d"]).await;
        let (event, id, data) = sse.next().await;
        assert_eq!((event.as_str(), id.as_str()), ("message", "6"));
        assert_eq!(data["message"]["id"], late[0].id.as_str());
        let uri = format!("/v1/inbox/messages/{}/read", early[0].id);
        let (status, _) = h.call("POST", &uri, Some(&token), None).await;
        assert_eq!(status, StatusCode::OK);
        let (event, id, data) = sse.next().await;
        assert_eq!((event.as_str(), id.as_str()), ("read", "7"));
        assert_eq!(data["message_id"], early[0].id.as_str());

        // Without an id the stream starts at the current end: nothing is replayed.
        let mut fresh = open_sse(&h, &token, None).await;
        let (event, id, _) = fresh.next().await;
        assert_eq!((event.as_str(), id.as_str()), ("ready", "7"));
        let (status, _) = h
            .call("POST", "/v1/inbox/read-all", Some(&token), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        for stream in [&mut sse, &mut fresh] {
            let (event, id, _) = stream.next().await;
            assert_eq!((event.as_str(), id.as_str()), ("read_all", "8"));
        }

        // A malformed resume point is refused rather than silently replaying everything.
        let request = Request::get("/v1/inbox/stream?last_event_id=abc")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let (status, body) = h.send(request).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["error"]["field"], "last_event_id");
    }
}

// Kill switches (api/src/kill.rs).
mod kill_switches {
    use fanout_domain::{Channel, TemplateId};

    use super::*;

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).unwrap()
    }

    async fn accepted(h: &Harness, key: usize, dedupe: &str) -> RequestId {
        let (status, body) = h
            .call(
                "POST",
                "/v1/notify",
                Some(h.key(key)),
                Some(trigger(dedupe)),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        RequestId::parse(body["request_id"].as_str().unwrap()).unwrap()
    }

    fn sorted(ids: &Value) -> Vec<String> {
        let mut ids: Vec<String> = ids
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    }

    #[tokio::test]
    async fn a_channel_switch_applies_to_the_callers_tenant_only() {
        let h = harness().await;
        let (status, body) = h
            .call(
                "POST",
                "/v1/kill-switches/channels/email",
                Some(h.key(0)),
                Some(json!({"disabled": true, "reason": "  bad campaign  "})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["channel"], "email");
        assert_eq!(body["scope"], "tenant");
        assert_eq!(body["disabled"], true);
        assert_eq!(body["reason"], "bad campaign");

        let held = h.store.disabled_channel(&tenant("a"), Channel::Email).await;
        assert!(held.unwrap().is_some());
        let other = h.store.disabled_channel(&tenant("b"), Channel::Email).await;
        assert_eq!(other.unwrap(), None);

        let (_, listed) = h
            .call("GET", "/v1/kill-switches/channels", Some(h.key(0)), None)
            .await;
        assert_eq!(listed["switches"].as_array().unwrap().len(), 1);
        let (_, listed) = h
            .call("GET", "/v1/kill-switches/channels", Some(h.key(1)), None)
            .await;
        assert_eq!(listed["switches"], json!([]));

        let (status, body) = h
            .call(
                "POST",
                "/v1/kill-switches/channels/email",
                Some(h.key(0)),
                Some(json!({"disabled": false})),
            )
            .await;
        assert_eq!((status, &body["disabled"]), (StatusCode::OK, &json!(false)));
        let held = h.store.disabled_channel(&tenant("a"), Channel::Email).await;
        assert_eq!(held.unwrap(), None);
    }

    #[tokio::test]
    async fn channel_switches_are_validated_and_need_a_key() {
        let h = harness().await;
        let cases = [
            ("sms", json!({"disabled": true}), "channel"),
            ("email", json!({"reason": "x"}), "disabled"),
            ("email", json!({"disabled": true, "why": "x"}), "body"),
            (
                "push",
                json!({"disabled": true, "reason": "x".repeat(501)}),
                "reason",
            ),
        ];
        for (channel, body, field) in cases {
            let uri = format!("/v1/kill-switches/channels/{channel}");
            let (status, answer) = h.call("POST", &uri, Some(h.key(0)), Some(body)).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
            if field != "body" {
                assert_eq!(answer["error"]["field"], field, "{answer}");
            }
        }
        let (status, _) = h
            .call(
                "POST",
                "/v1/kill-switches/channels/email",
                None,
                Some(json!({"disabled": true})),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let listed = h.store.list_channel_switches(&tenant("a")).await.unwrap();
        assert!(listed.is_empty(), "{listed:?}");
    }

    #[tokio::test]
    async fn disabling_a_template_pauses_its_running_requests_and_enabling_resumes_them() {
        let h = harness().await;
        let first = accepted(&h, 0, "k1").await;
        let second = accepted(&h, 0, "k2").await;
        let other_tenant = accepted(&h, 1, "k1").await;

        let (status, body) = h
            .call(
                "POST",
                "/v1/templates/welcome/disable",
                Some(h.key(0)),
                Some(json!({"running": "pause", "reason": "wrong link"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["disabled"], true);
        assert_eq!(body["running"], "pause");
        assert_eq!(body["failed"], json!([]));
        let mut expected = vec![first.to_string(), second.to_string()];
        expected.sort();
        assert_eq!(sorted(&body["request_ids"]), expected);
        {
            let controls = h.orchestrator.controls.lock().unwrap();
            assert_eq!(controls.len(), 2, "{controls:?}");
            assert!(
                controls
                    .iter()
                    .all(|(id, c)| *c == Control::Pause && id != &other_tenant)
            );
        }
        assert!(h.orchestrator.cancelled.lock().unwrap().is_empty());

        // New requests of the template are refused for this tenant only.
        let (status, body) = h
            .call("POST", "/v1/notify", Some(h.key(0)), Some(trigger("k3")))
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("disabled") && message.contains("wrong link"),
            "{message}"
        );
        accepted(&h, 1, "k3").await;

        let (status, body) = h
            .call("POST", "/v1/templates/welcome/enable", Some(h.key(0)), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["disabled"], false);
        assert_eq!(sorted(&body["request_ids"]), expected);
        {
            let controls = h.orchestrator.controls.lock().unwrap();
            let resumed: Vec<_> = controls
                .iter()
                .filter(|(_, c)| *c == Control::Resume)
                .map(|(id, _)| id.to_string())
                .collect();
            assert_eq!(resumed.len(), 2);
            assert!(resumed.iter().all(|id| expected.contains(id)));
        }
        accepted(&h, 0, "k3").await;

        // Enabling again is a no-op: nothing is resumed twice.
        let (status, body) = h
            .call("POST", "/v1/templates/welcome/enable", Some(h.key(0)), None)
            .await;
        assert_eq!((status, &body["request_ids"]), (StatusCode::OK, &json!([])));
    }

    #[tokio::test]
    async fn disabling_a_template_with_cancel_writes_the_cancel_through() {
        let h = harness().await;
        let running = accepted(&h, 0, "k1").await;
        let (status, body) = h
            .call(
                "POST",
                "/v1/templates/welcome/disable",
                Some(h.key(0)),
                Some(json!({"running": "cancel"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["request_ids"], json!([running.to_string()]));
        assert_eq!(
            *h.orchestrator.cancelled.lock().unwrap(),
            vec![running.clone()]
        );
        assert!(h.store.get_controls(&running).await.unwrap().cancelled);
        assert!(h.orchestrator.controls.lock().unwrap().is_empty());

        let switch = h
            .store
            .get_template_switch(&tenant("a"), &TemplateId::parse("welcome").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert!(switch.disabled && switch.paused_requests.is_empty());
        // Cancelled requests are not resumed by an enable.
        let (_, body) = h
            .call("POST", "/v1/templates/welcome/enable", Some(h.key(0)), None)
            .await;
        assert_eq!(body["request_ids"], json!([]));
        assert!(h.orchestrator.controls.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn template_switches_are_validated_and_scoped_to_the_tenant() {
        let h = harness().await;
        let (status, body) = h
            .call(
                "PUT",
                "/v1/templates/only-a",
                Some(h.key(0)),
                Some(json!({"name": "A", "in_app": {"title": "Hi", "body": "hi"}})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");

        for body in [
            json!({}),
            json!({"running": "stop"}),
            json!({"running": "pause", "x": 1}),
        ] {
            let (status, answer) = h
                .call(
                    "POST",
                    "/v1/templates/only-a/disable",
                    Some(h.key(0)),
                    Some(body),
                )
                .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        }
        for (method_path, body) in [
            (
                "/v1/templates/only-a/disable",
                Some(json!({"running": "pause"})),
            ),
            ("/v1/templates/only-a/enable", None),
            (
                "/v1/templates/missing/disable",
                Some(json!({"running": "cancel"})),
            ),
            (
                "/v1/templates/BAD%20ID/disable",
                Some(json!({"running": "cancel"})),
            ),
        ] {
            let (status, answer) = h.call("POST", method_path, Some(h.key(1)), body).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method_path}: {answer}");
        }
        let (status, _) = h
            .call(
                "POST",
                "/v1/templates/only-a/disable",
                None,
                Some(json!({"running": "pause"})),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let switch = h
            .store
            .get_template_switch(&tenant("a"), &TemplateId::parse("only-a").unwrap())
            .await
            .unwrap();
        assert_eq!(switch, None, "nothing was disabled");
    }
}

/// Preflight (dry run) and the blast-radius guard.
mod preflight {
    use fanout_domain::user::{EmailAddress, User};
    use fanout_domain::{Channel, SegmentId, UserId};
    use fanout_store::preferences::Category;
    use fanout_store::suppressions::SuppressionReason;

    use super::*;

    fn id(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn user(name: &str, email: bool) -> User {
        User {
            user_id: id(name),
            email: email.then(|| EmailAddress::parse(&format!("{name}@example.com")).unwrap()),
            name: None,
            locale: None,
            timezone: None,
            devices: Vec::new(),
        }
    }

    /// Tenant `a` gets a marketing template `promo` (email and in-app, no push) and a segment
    /// `all` of: `ua` (reachable everywhere), `ub` (no email), `uc` (opted out of email), `ud`
    /// (email suppressed), `ue` (opted out of marketing in the inbox) and `ghost` (no profile).
    pub(super) async fn seeded() -> Harness {
        let h = harness().await;
        let (status, body) = h
            .call(
                "PUT",
                "/v1/templates/promo",
                Some(h.key(0)),
                Some(json!({
                    "name": "Promo",
                    "category": "marketing",
                    "email": {"subject": "Sale", "text": "Hi"},
                    "in_app": {"title": "Sale", "body": "Hi"}
                })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let t = TenantId::parse("a").unwrap();
        let users = [
            user("ua", true),
            user("ub", false),
            user("uc", true),
            user("ud", true),
            user("ue", true),
        ];
        h.store.upsert_users(&t, &users).await.unwrap();
        h.store
            .set_preference(&t, &id("uc"), Some(Channel::Email), None, false)
            .await
            .unwrap();
        let marketing = Category::parse("marketing").unwrap();
        h.store
            .set_preference(&t, &id("ue"), Some(Channel::InApp), Some(&marketing), false)
            .await
            .unwrap();
        h.store
            .suppress(
                &t,
                Channel::Email,
                "UD@example.com",
                SuppressionReason::HardBounce,
                None,
            )
            .await
            .unwrap();
        let segment = SegmentId::parse("all").unwrap();
        h.store.upsert_segment(&t, &segment, "All").await.unwrap();
        let members: Vec<UserId> = ["ua", "ub", "uc", "ud", "ue", "ghost"]
            .iter()
            .map(|u| id(u))
            .collect();
        h.store
            .add_segment_members(&t, &segment, &members)
            .await
            .unwrap();
        h
    }

    pub(super) fn promo(dedupe: &str) -> Value {
        json!({
            "template_id": "promo",
            "recipients_query": {"type": "segment", "segment_id": "all"},
            "dedupe_key": dedupe
        })
    }

    async fn recorded(h: &Harness, dedupe: &str) -> bool {
        h.store
            .find_request_by_dedupe_key(&TenantId::parse("a").unwrap(), dedupe)
            .await
            .unwrap()
            .is_some()
    }

    #[tokio::test]
    async fn a_dry_run_counts_exactly_and_records_nothing() {
        let h = seeded().await;
        let (status, body) = h
            .call(
                "POST",
                "/v1/notify?dry_run=true",
                Some(h.key(0)),
                Some(promo("dry")),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["dry_run"], true);
        assert_eq!(body["category"], "marketing");
        assert_eq!(
            body["audience"],
            json!({"type": "segment", "members": 6, "unknown_users": 1, "recipients": 5})
        );
        assert_eq!(
            body["channels"],
            json!({
                "email": {"recipients": 5, "no_address": 1, "opted_out": 1, "suppressed": 1, "deliverable": 2},
                "in_app": {"recipients": 5, "no_address": 0, "opted_out": 1, "suppressed": 0, "deliverable": 4}
            })
        );
        assert_eq!(body["channels_skipped"], json!({"push": "not_in_template"}));
        assert_eq!(body["deliverable"], 6);
        assert_eq!(body["exact"], true);
        assert_eq!(
            body["estimated_completion"],
            json!({"seconds": 6.0 / 5000.0, "deliveries_per_second": 5000, "limited_by": "platform_throughput"})
        );
        assert_eq!(
            body["blast_radius"],
            json!({"limit": 100_000, "source": "platform", "exceeded": false, "override_field": "confirm_audience"})
        );
        assert!(h.orchestrator.started.lock().unwrap().is_empty());
        assert!(!recorded(&h, "dry").await);

        // Channels asked for narrow the estimate; those the template has are "not requested".
        let mut email_only = promo("dry2");
        email_only["channel_prefs"] = json!(["email"]);
        let (status, body) = h
            .call(
                "POST",
                "/v1/notify?dry_run=true",
                Some(h.key(0)),
                Some(email_only),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["deliverable"], 2);
        assert_eq!(
            body["channels_skipped"],
            json!({"in_app": "not_requested", "push": "not_in_template"})
        );
        // An explicit list: unknown users are counted apart, another tenant sees none of it.
        let listed = json!({
            "template_id": "welcome",
            "recipients_query": {"type": "users", "user_ids": ["ua", "ghost", "nobody"]}
        });
        let (_, body) = h
            .call(
                "POST",
                "/v1/notify?dry_run=true",
                Some(h.key(0)),
                Some(listed.clone()),
            )
            .await;
        assert_eq!(
            body["audience"],
            json!({"type": "users", "members": 3, "unknown_users": 2, "recipients": 1})
        );
        let (_, body) = h
            .call(
                "POST",
                "/v1/notify?dry_run=true",
                Some(h.key(1)),
                Some(listed),
            )
            .await;
        assert_eq!(body["audience"]["recipients"], 0);
        // Validation is the notify's own: a missing segment is still 404.
        let mut missing = promo("dry3");
        missing["recipients_query"]["segment_id"] = json!("nope");
        let (status, _) = h
            .call(
                "POST",
                "/v1/notify?dry_run=true",
                Some(h.key(0)),
                Some(missing),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(h.orchestrator.started.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_audience_over_the_limit_is_refused_naming_the_override_until_confirmed() {
        let h = seeded().await;
        let (status, body) = h
            .call(
                "PUT",
                "/v1/settings/blast-radius",
                Some(h.key(0)),
                Some(json!({"max_audience": 3})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body,
            json!({"max_audience": 3, "platform_default": 100_000, "effective": 3})
        );

        let (status, body) = h
            .call("POST", "/v1/notify", Some(h.key(0)), Some(promo("big")))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let error = &body["error"];
        assert_eq!(error["code"], "blast_radius_exceeded");
        assert_eq!(error["field"], "confirm_audience");
        assert_eq!(error["limit"], json!({"limit": 3, "source": "tenant"}));
        assert_eq!(error["estimated_audience"], 5);
        assert_eq!(
            error["override"],
            json!({"field": "confirm_audience", "value": 5})
        );
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains("tenant") && message.contains("\"confirm_audience\": 5"),
            "{message}"
        );
        assert!(h.orchestrator.started.lock().unwrap().is_empty());
        assert!(!recorded(&h, "big").await, "a refusal records nothing");

        // The dry run says the same thing before anyone tries.
        let (_, preview) = h
            .call(
                "POST",
                "/v1/notify?dry_run=true",
                Some(h.key(0)),
                Some(promo("big")),
            )
            .await;
        assert_eq!(preview["blast_radius"]["exceeded"], true);
        assert_eq!(preview["blast_radius"]["source"], "tenant");

        // Confirming fewer than the estimate is not enough.
        let mut low = promo("big");
        low["confirm_audience"] = json!(4);
        let (status, body) = h
            .call("POST", "/v1/notify", Some(h.key(0)), Some(low))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(!recorded(&h, "big").await);

        let mut confirmed = promo("big");
        confirmed["confirm_audience"] = json!(5);
        let (status, body) = h
            .call("POST", "/v1/notify", Some(h.key(0)), Some(confirmed))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(h.orchestrator.started.lock().unwrap().len(), 1);
        assert!(recorded(&h, "big").await);

        // Small audiences need no confirmation; the other tenant keeps the platform default.
        let (status, body) = h
            .call("POST", "/v1/notify", Some(h.key(0)), Some(trigger("small")))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let (_, body) = h
            .call("GET", "/v1/settings/blast-radius", Some(h.key(1)), None)
            .await;
        assert_eq!(
            body,
            json!({"max_audience": null, "platform_default": 100_000, "effective": 100_000})
        );
    }

    #[tokio::test]
    async fn a_template_limit_overrides_the_tenant_limit_and_settings_are_validated() {
        let h = seeded().await;
        h.call(
            "PUT",
            "/v1/settings/blast-radius",
            Some(h.key(0)),
            Some(json!({"max_audience": 3})),
        )
        .await;
        let (status, body) = h
            .call(
                "PUT",
                "/v1/templates/promo",
                Some(h.key(0)),
                Some(json!({
                    "name": "Promo",
                    "category": "marketing",
                    "email": {"subject": "Sale", "text": "Hi"},
                    "max_audience": 10
                })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["max_audience"], 10);
        let (status, body) = h
            .call("POST", "/v1/notify", Some(h.key(0)), Some(promo("t")))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");

        let (status, body) = h
            .call(
                "PUT",
                "/v1/templates/promo",
                Some(h.key(0)),
                Some(json!({
                    "name": "Promo",
                    "email": {"subject": "Sale", "text": "Hi"},
                    "max_audience": 2
                })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = h
            .call("POST", "/v1/notify", Some(h.key(0)), Some(promo("t2")))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(
            body["error"]["limit"],
            json!({"limit": 2, "source": "template"})
        );

        let (status, body) = h
            .call(
                "PUT",
                "/v1/settings/blast-radius",
                Some(h.key(0)),
                Some(json!({"max_audience": 0})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["field"], "max_audience");
        let (status, body) = h
            .call(
                "PUT",
                "/v1/settings/blast-radius",
                Some(h.key(0)),
                Some(json!({"max_audience": null})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["effective"], 100_000);
        let (status, _) = h.call("GET", "/v1/settings/blast-radius", None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

// Tenancy (issue 5): the operator's admin API, isolation between tenants on every tenant route,
// and the per-tenant ingest quota on notify.

/// The admin key every harness is configured with.
const ADMIN_KEY: &str = "test-admin-key-0123456789-abcdefghij";

mod tenancy {
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use fanout_domain::inbox::InboxMessage;
    use fanout_domain::receipt::{DeliveryStatus, Receipt};
    use fanout_domain::{Channel, InstanceId, RequestId, TenantId, UserId};
    use futures::StreamExt;
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use super::{ADMIN_KEY, Harness, harness, trigger};
    use crate::{AppState, app};

    /// Marks every piece of tenant `a`'s data: no answer to tenant `b` may contain it.
    const MARK: &str = "alpha-secret";

    #[tokio::test]
    async fn the_operator_creates_tenants_issues_and_revokes_keys() {
        let h = harness().await;
        let admin = Some(ADMIN_KEY);
        let (status, created) = h
            .call(
                "POST",
                "/v1/admin/tenants",
                admin,
                Some(json!({"tenant_id": "acme", "name": "Acme"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(created["tenant_id"], "acme");
        assert_eq!(
            created["settings"],
            json!({"ingest_per_second": null, "ingest_burst": null, "fairness_weight": null, "max_data_bytes": null})
        );
        assert_eq!(
            created["effective"],
            json!({"ingest_per_second": 50, "ingest_burst": 100, "fairness_weight": 1.0, "max_data_bytes": 65536})
        );
        let (status, again) = h
            .call(
                "POST",
                "/v1/admin/tenants",
                admin,
                Some(json!({"tenant_id": "acme", "name": "Other"})),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{again}");
        let (status, got) = h.call("GET", "/v1/admin/tenants/acme", admin, None).await;
        assert_eq!((status, &got["name"]), (StatusCode::OK, &json!("Acme")));
        let (status, page) = h
            .call("GET", "/v1/admin/tenants?limit=2", admin, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let ids: Vec<&str> = page["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["tenant_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            (ids, &page["next_after"]),
            (vec!["a", "acme"], &json!("acme"))
        );
        let (_, rest) = h
            .call("GET", "/v1/admin/tenants?after=acme", admin, None)
            .await;
        assert_eq!(rest["tenants"][0]["tenant_id"], "b");
        assert_eq!(rest["next_after"], Value::Null);
        let (status, _) = h.call("GET", "/v1/admin/tenants/nope", admin, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // Two keys, one labelled; each acts as the tenant.
        let keys_uri = "/v1/admin/tenants/acme/keys";
        let (status, ci) = h
            .call("POST", keys_uri, admin, Some(json!({"label": "ci"})))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{ci}");
        let (status, plain) = h.call("POST", keys_uri, admin, None).await;
        assert_eq!(status, StatusCode::CREATED, "{plain}");
        let ci_key = ci["key"].as_str().unwrap();
        let plain_key = plain["key"].as_str().unwrap();
        assert!(ci_key.starts_with(ci["prefix"].as_str().unwrap()));
        assert_eq!(
            (&ci["label"], &plain["label"]),
            (&json!("ci"), &Value::Null)
        );
        for key in [ci_key, plain_key] {
            let (status, body) = h
                .call("PUT", "/v1/users/u1", Some(key), Some(json!({"name": "U"})))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }

        // The listing names keys and never shows them.
        let (status, listed) = h.call("GET", keys_uri, admin, None).await;
        assert_eq!(status, StatusCode::OK, "{listed}");
        let text = listed.to_string();
        assert!(
            !text.contains(ci_key) && !text.contains(plain_key),
            "{text}"
        );
        let keys = listed["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        assert!(
            keys.iter()
                .all(|k| k["revoked"] == false && k.get("key").is_none())
        );

        // Revoking is immediate, touches only that key, and is repeatable.
        let revoke = format!("{keys_uri}/{}", ci["key_id"].as_str().unwrap());
        let (status, _) = h.call("DELETE", &revoke, admin, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = h.call("GET", "/v1/users/u1", Some(ci_key), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = h.call("GET", "/v1/users/u1", Some(plain_key), None).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = h.call("DELETE", &revoke, admin, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (_, listed) = h.call("GET", keys_uri, admin, None).await;
        let revoked: Vec<bool> = listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["revoked"].as_bool().unwrap())
            .collect();
        assert_eq!(revoked.iter().filter(|r| **r).count(), 1, "{listed}");
        // Another tenant's path cannot reach the key; unknown keys and tenants are 404.
        let foreign = format!(
            "/v1/admin/tenants/a/keys/{}",
            plain["key_id"].as_str().unwrap()
        );
        for uri in [
            foreign.as_str(),
            "/v1/admin/tenants/acme/keys/key_0000000000000000",
            "/v1/admin/tenants/nope/keys/key_0000000000000000",
        ] {
            let (status, body) = h.call("DELETE", uri, admin, None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {body}");
        }
        let (status, _) = h.call("GET", "/v1/users/u1", Some(plain_key), None).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = h
            .call("POST", "/v1/admin/tenants/nope/keys", admin, None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn admin_and_tenant_keys_do_not_open_each_others_routes() {
        let h = harness().await;
        for key in [
            None,
            Some(h.key(0)),
            Some("wrong"),
            Some("test-admin-key-0123456788"),
        ] {
            for (method, uri) in [
                ("GET", "/v1/admin/tenants"),
                ("GET", "/v1/admin/tenants/a"),
                ("GET", "/v1/admin/tenants/a/keys"),
                ("POST", "/v1/admin/tenants/a/keys"),
            ] {
                let (status, body) = h.call(method, uri, key, None).await;
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {uri} {key:?}: {body}"
                );
            }
        }
        for (method, uri) in [("GET", "/v1/users/u1"), ("GET", "/v1/suppressions")] {
            let (status, _) = h.call(method, uri, Some(ADMIN_KEY), None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}");
        }
        let (status, _) = h
            .call("POST", "/v1/notify", Some(ADMIN_KEY), Some(trigger("k")))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // Without a configured key the admin API is off, and says why.
        let off = app(AppState {
            store: h.store.clone(),
            orchestrator: h.orchestrator.clone(),
            dedupe_window: Duration::from_secs(60),
            inbox: crate::inbox::InboxHub::new(h.store.clone(), Default::default()),
            admin_key: None,
            ingest: crate::ingest::IngestLimiter::new(h.store.clone(), Default::default()),
            preflight: Default::default(),
            direct_max_recipients: fanout_domain::request::DIRECT_MAX_RECIPIENTS,
            scheduling: Default::default(),
            http: Default::default(),
        });
        let request = Request::get("/v1/admin/tenants")
            .header(header::AUTHORIZATION, format!("Bearer {ADMIN_KEY}"))
            .body(Body::empty())
            .unwrap();
        let response = off.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("FANOUT_ADMIN_KEY"), "{message}");
    }

    #[tokio::test]
    async fn tenant_settings_are_validated_field_by_field_and_written_only_when_all_are_valid() {
        let h = harness().await;
        let uri = "/v1/admin/tenants/a";
        let admin = Some(ADMIN_KEY);
        for (body, field) in [
            (json!({"ingest_per_second": 0}), "ingest_per_second"),
            (json!({"ingest_per_second": 100_001}), "ingest_per_second"),
            (json!({"ingest_per_second": 1.5}), "ingest_per_second"),
            (json!({"ingest_per_second": "5"}), "ingest_per_second"),
            (json!({"ingest_burst": -1}), "ingest_burst"),
            (json!({"ingest_burst": 2_000_000}), "ingest_burst"),
            (
                json!({"ingest_per_second": 5, "ingest_burst": 0}),
                "ingest_burst",
            ),
            (json!({"name": "  "}), "name"),
            (json!({"name": 7}), "name"),
            (json!({"fairness_weight": 0}), "fairness_weight"),
            (
                json!({"fairness_weight": 0.0009, "max_data_bytes": 65536}),
                "fairness_weight",
            ),
            (
                json!({"fairness_weight": 1000.5, "max_data_bytes": 65536}),
                "fairness_weight",
            ),
            (json!({"fairness_weight": -1}), "fairness_weight"),
            (json!({"fairness_weight": "2"}), "fairness_weight"),
            (
                json!({"ingest_per_second": 5, "fairness_weight": 1e6}),
                "fairness_weight",
            ),
        ] {
            let (status, answer) = h.call("PATCH", uri, admin, Some(body.clone())).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
            assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
        }
        let (status, answer) = h
            .call("PATCH", uri, admin, Some(json!({"ingest_rate": 5})))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        // None of the refused patches wrote anything.
        let (_, tenant) = h.call("GET", uri, admin, None).await;
        assert_eq!(
            tenant["settings"],
            json!({"ingest_per_second": null, "ingest_burst": null, "fairness_weight": null, "max_data_bytes": null})
        );

        let (status, tenant) = h
            .call(
                "PATCH",
                uri,
                admin,
                Some(json!({"name": "Alpha", "ingest_per_second": 5, "ingest_burst": 20})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{tenant}");
        assert_eq!(tenant["name"], "Alpha");
        assert_eq!(
            tenant["effective"],
            json!({"ingest_per_second": 5, "ingest_burst": 20, "fairness_weight": 1.0, "max_data_bytes": 65536})
        );
        // Absent fields stay; null returns one to the platform default.
        let (_, tenant) = h
            .call("PATCH", uri, admin, Some(json!({"ingest_burst": null})))
            .await;
        assert_eq!(
            tenant["settings"],
            json!({"ingest_per_second": 5, "ingest_burst": null, "fairness_weight": null, "max_data_bytes": null})
        );
        assert_eq!(
            tenant["effective"],
            json!({"ingest_per_second": 5, "ingest_burst": 100, "fairness_weight": 1.0, "max_data_bytes": 65536})
        );
        let (status, _) = h
            .call("PATCH", "/v1/admin/tenants/nope", admin, Some(json!({})))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_burst_over_the_quota_is_429_with_retry_after_and_records_nothing() {
        let h = harness().await;
        let (status, _) = h
            .call(
                "PATCH",
                "/v1/admin/tenants/a",
                Some(ADMIN_KEY),
                Some(json!({"ingest_per_second": 1, "ingest_burst": 2})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        // Sequential triggers: two fit the burst, then one a second refills. The bounds below
        // hold however slowly the machine runs the loop.
        let started_at = std::time::Instant::now();
        let (mut accepted, mut refused) = (0usize, Vec::new());
        for i in 0..6 {
            let request = Request::post("/v1/notify")
                .header(header::AUTHORIZATION, format!("Bearer {}", h.key(0)))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(trigger(&format!("burst-{i}")).to_string()))
                .unwrap();
            let response = h.router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            if status == StatusCode::ACCEPTED {
                accepted += 1;
                continue;
            }
            assert!(i >= 2, "the burst of 2 is refused at {i}: {body}");
            assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
            // One token a second: the next one is under a second away.
            assert_eq!(retry_after.unwrap(), "1");
            assert_eq!(body["error"]["code"], "rate_limited");
            assert_eq!(
                (&body["error"]["rate_per_second"], &body["error"]["burst"]),
                (&json!(1), &json!(2))
            );
            assert_eq!(body["error"]["retry_after_seconds"], 1);
            let message = body["error"]["message"].as_str().unwrap();
            assert!(
                message.contains("notify requests of 1 per second"),
                "{message}"
            );
            refused.push(format!("burst-{i}"));
        }
        let refilled = started_at.elapsed().as_secs() as usize;
        assert!(
            accepted <= 2 + refilled,
            "{accepted} accepted in {refilled} s"
        );
        assert!(!refused.is_empty(), "nothing refused in {refilled} s");
        // Refused triggers were neither recorded nor started.
        assert_eq!(h.orchestrator.started.lock().unwrap().len(), accepted);
        let tenant = TenantId::parse("a").unwrap();
        for key in &refused {
            let found = h
                .store
                .find_request_by_dedupe_key(&tenant, key)
                .await
                .unwrap();
            assert!(found.is_none(), "{key} was recorded");
        }
        // The quota is per tenant: b still has its whole (default) burst.
        let (status, body) = h
            .call("POST", "/v1/notify", Some(h.key(1)), Some(trigger("b-1")))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        // Authentication still comes first.
        let (status, _) = h
            .call("POST", "/v1/notify", Some("fo_wrong"), Some(trigger("x")))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn the_admin_key_and_default_quota_come_from_the_environment() {
        let env = std::collections::HashMap::from([
            ("FANOUT_ADMIN_KEY".to_owned(), "s3cret".to_owned()),
            ("FANOUT_INGEST__PER_SECOND".to_owned(), "7".to_owned()),
        ]);
        let config: crate::Config = fanout_domain::config::load(None, &env).unwrap();
        assert_eq!(config.admin_key.unwrap().expose(), "s3cret");
        assert_eq!((config.ingest.per_second, config.ingest.burst), (7, 100));
        let config: crate::Config = fanout_domain::config::load(None, &Default::default()).unwrap();
        assert!(config.admin_key.is_none());
    }

    /// Whose credential a probe sends.
    #[derive(Clone, Copy)]
    enum As {
        /// Tenant b's API key.
        Key,
        /// An inbox token of tenant b's user.
        InboxToken,
    }

    /// What tenant b must get.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Expect {
        /// 404: a's item does not exist for b.
        NotFound,
        /// Success on b's own data (a collection, or an upsert of b's own item): nothing of a's
        /// may appear, and a's data must be unchanged afterwards.
        Own(StatusCode),
        /// Refused before any data is read (a WebSocket route without an upgrade).
        Refused,
    }

    /// One call of a tenant route with tenant b's credentials.
    struct Probe {
        method: &'static str,
        /// The route as the OpenAPI document names it.
        route: &'static str,
        uri: String,
        body: Option<Value>,
        by: As,
        expect: Expect,
    }

    fn probe(method: &'static str, route: &'static str, uri: String, expect: Expect) -> Probe {
        Probe {
            method,
            route,
            uri,
            body: None,
            by: As::Key,
            expect,
        }
    }

    impl Probe {
        fn body(mut self, body: Value) -> Self {
            self.body = Some(body);
            self
        }

        fn by(mut self, by: As) -> Self {
            self.by = by;
            self
        }
    }

    /// Ids of everything tenant a owns.
    struct AlphaData {
        request_id: String,
        message_id: String,
        token_id: String,
        inbox_token: String,
    }

    /// Gives tenant a one of every resource, each marked with [`MARK`].
    async fn seed_alpha(h: &Harness) -> AlphaData {
        let a = Some(h.key(0));
        let ok = |status: StatusCode, body: &Value| {
            assert!(status.is_success(), "{status}: {body}");
        };
        for (method, uri, body) in [
            (
                "PUT",
                "/v1/users/alice",
                json!({"name": format!("{MARK} Alice"), "email": format!("{MARK}@a.test")}),
            ),
            (
                "PUT",
                "/v1/users/bob",
                json!({"name": format!("{MARK} Bob")}),
            ),
            (
                "POST",
                "/v1/users/alice/followers",
                json!({"follower_ids": ["bob"]}),
            ),
            (
                "POST",
                "/v1/templates",
                json!({"template_id": "alpha-tpl", "name": MARK,
                       "in_app": {"title": MARK, "body": "one"}}),
            ),
            (
                "PUT",
                "/v1/templates/alpha-tpl",
                json!({"name": MARK, "in_app": {"title": MARK, "body": "two"}}),
            ),
            (
                "PUT",
                "/v1/segments/alpha-seg",
                json!({"name": MARK, "user_ids": ["alice"]}),
            ),
            (
                "POST",
                "/v1/users/alice/preferences/opt-out",
                json!({"category": "marketing", "channel": "push"}),
            ),
            (
                "POST",
                "/v1/suppressions",
                json!({"channel": "email", "address": "alice@a.test", "reason": "hard_bounce", "detail": MARK}),
            ),
            (
                "POST",
                "/v1/kill-switches/channels/push",
                json!({"disabled": true, "reason": MARK}),
            ),
            (
                "PUT",
                "/v1/settings/blast-radius",
                json!({"max_audience": 7777}),
            ),
            ("PUT", "/v1/quotas/tenant", json!({"per_second": 7777})),
            (
                "PUT",
                "/v1/quotas/templates/alpha-tpl",
                json!({"per_second": 77}),
            ),
        ] {
            let (status, answer) = h.call(method, uri, a, Some(body)).await;
            ok(status, &answer);
        }
        let (status, accepted) = h
            .call(
                "POST",
                "/v1/notify",
                a,
                Some(json!({
                    "template_id": "alpha-tpl",
                    "recipients_query": {"type": "users", "user_ids": ["alice"]},
                    "dedupe_key": "alpha",
                    "metadata": {"note": MARK}
                })),
            )
            .await;
        ok(status, &accepted);
        let request_id = accepted["request_id"].as_str().unwrap().to_owned();
        let (status, token) = h.call("POST", "/v1/users/alice/inbox-token", a, None).await;
        ok(status, &token);

        let tenant = TenantId::parse("a").unwrap();
        let rid = RequestId::parse(&request_id).unwrap();
        let alice = UserId::parse("alice").unwrap();
        let message = InboxMessage {
            id: InstanceId::derive(&rid, &alice, Channel::InApp),
            user_id: alice.clone(),
            request_id: rid.clone(),
            title: MARK.into(),
            body: MARK.into(),
            action_url: None,
            data: json!({}),
            created_at_ms: fanout_store::now_ms(),
            read_at_ms: None,
        };
        h.store
            .record_deliveries(&tenant, &[], std::slice::from_ref(&message))
            .await
            .unwrap();
        let failed = Receipt {
            instance_id: InstanceId::derive(&rid, &alice, Channel::Email),
            request_id: rid,
            user_id: alice,
            channel: Channel::Email,
            status: DeliveryStatus::Failed,
            provider_message_id: None,
            attempts: 1,
            latency_ms: None,
            error_code: Some("smtp_550".into()),
            error_message: Some(MARK.into()),
            updated_at_ms: 1,
        };
        h.store
            .record_page_deliveries(&tenant, 0, &[failed], &[])
            .await
            .unwrap();
        AlphaData {
            request_id,
            message_id: message.id.to_string(),
            token_id: token["token_id"].as_str().unwrap().to_owned(),
            inbox_token: token["token"].as_str().unwrap().to_owned(),
        }
    }

    /// Everything tenant a can read about its data, to compare before and after b's calls.
    async fn snapshot(h: &Harness, alpha: &AlphaData) -> BTreeMap<String, (StatusCode, Value)> {
        let rid = &alpha.request_id;
        let mut seen = BTreeMap::new();
        for uri in [
            "/v1/users/alice".to_owned(),
            "/v1/users/alice/followers".to_owned(),
            "/v1/users/alice/preferences".to_owned(),
            "/v1/kill-switches/channels".to_owned(),
            "/v1/settings/blast-radius".to_owned(),
            "/v1/quotas".to_owned(),
            "/v1/users/alice/inbox".to_owned(),
            "/v1/templates/alpha-tpl".to_owned(),
            "/v1/templates/alpha-tpl/versions".to_owned(),
            "/v1/segments/alpha-seg".to_owned(),
            "/v1/segments/alpha-seg/members".to_owned(),
            "/v1/suppressions".to_owned(),
            "/v1/dead-letters".to_owned(),
            format!("/v1/status/{rid}"),
            format!("/v1/receipts?request_id={rid}"),
        ] {
            let answer = h.call("GET", &uri, Some(h.key(0)), None).await;
            assert!(answer.0.is_success(), "{uri}: {answer:?}");
            seen.insert(uri, answer);
        }
        for uri in ["/v1/inbox", "/v1/inbox/unread-count"] {
            let answer = h.call("GET", uri, Some(&alpha.inbox_token), None).await;
            assert!(answer.0.is_success(), "{uri}: {answer:?}");
            seen.insert(format!("inbox {uri}"), answer);
        }
        seen
    }

    /// Reads tenant b's inbox stream from its start up to its `ready` event.
    async fn read_stream_until_ready(h: &Harness, token: &str) -> (StatusCode, String) {
        let request = Request::get("/v1/inbox/stream")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header("last-event-id", "0")
            .body(Body::empty())
            .unwrap();
        let response = h.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        if !status.is_success() {
            return (status, String::new());
        }
        let mut body = response.into_body().into_data_stream();
        let mut text = String::new();
        while !text.contains("event: ready") {
            let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
                .await
                .expect("the stream says ready within 10 s")
                .expect("the stream stays open")
                .unwrap();
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        (status, text)
    }

    /// Every (method, route) of the OpenAPI document that acts for a tenant: all but the
    /// public and operator routes.
    async fn tenant_routes(h: &Harness) -> BTreeSet<(String, String)> {
        let (_, doc) = h.call("GET", "/openapi.json", None, None).await;
        let mut routes = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            if ["/healthz", "/openapi.json"].contains(&path.as_str())
                || path.starts_with("/v1/admin/")
            {
                continue;
            }
            for method in item.as_object().unwrap().keys() {
                if ["get", "put", "post", "patch", "delete"].contains(&method.as_str()) {
                    routes.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        routes
    }

    #[tokio::test]
    async fn no_tenant_route_shows_or_changes_another_tenants_data() {
        use Expect::{NotFound, Own, Refused};

        let h = harness().await;
        let alpha = seed_alpha(&h).await;
        // Tenant b has a user with an inbox token of its own, for the inbox routes.
        let (status, _) = h
            .call(
                "PUT",
                "/v1/users/bee",
                Some(h.key(1)),
                Some(json!({"name": "Bee"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (_, token) = h
            .call("POST", "/v1/users/bee/inbox-token", Some(h.key(1)), None)
            .await;
        let b_inbox = token["token"].as_str().unwrap().to_owned();
        let before = snapshot(&h, &alpha).await;
        let started = h.orchestrator.started.lock().unwrap().len();

        let rid = alpha.request_id.as_str();
        let suppressed = "/v1/suppressions/email/alice%40a.test".to_owned();
        let ok = StatusCode::OK;
        // Reads and actions on a's ids first; upserts (which create b's own items under the
        // same ids) last, so they cannot mask a 404.
        let probes = vec![
            probe("POST", "/v1/notify", "/v1/notify".into(), NotFound).body(json!({
                "template_id": "alpha-tpl",
                "recipients_query": {"type": "users", "user_ids": ["alice"]}
            })),
            probe("GET", "/v1/status/{request_id}", format!("/v1/status/{rid}"), NotFound),
            probe("GET", "/v1/receipts", format!("/v1/receipts?request_id={rid}"), NotFound),
            probe("POST", "/v1/cancel", "/v1/cancel".into(), NotFound)
                .body(json!({"request_id": rid})),
            probe("GET", "/v1/dead-letters", "/v1/dead-letters".into(), Own(ok)),
            probe("POST", "/v1/dead-letters/redrive", "/v1/dead-letters/redrive".into(), NotFound)
                .body(json!({"request_id": rid})),
            probe(
                "POST",
                "/v1/requests/{request_id}/pause",
                format!("/v1/requests/{rid}/pause"),
                NotFound,
            ),
            probe(
                "POST",
                "/v1/requests/{request_id}/resume",
                format!("/v1/requests/{rid}/resume"),
                NotFound,
            ),
            probe(
                "POST",
                "/v1/requests/{request_id}/rate",
                format!("/v1/requests/{rid}/rate"),
                NotFound,
            )
            .body(json!({"per_second": 5})),
            probe("GET", "/v1/users/{user_id}", "/v1/users/alice".into(), NotFound),
            // User-keyed collections answer for b's own (empty) user of that id.
            probe("GET", "/v1/users/{user_id}/inbox", "/v1/users/alice/inbox".into(), Own(ok)),
            probe(
                "POST",
                "/v1/users/{user_id}/inbox-token",
                "/v1/users/alice/inbox-token".into(),
                NotFound,
            ),
            probe(
                "DELETE",
                "/v1/users/{user_id}/inbox-tokens/{token_id}",
                format!("/v1/users/alice/inbox-tokens/{}", alpha.token_id),
                NotFound,
            ),
            probe(
                "DELETE",
                "/v1/users/{user_id}/inbox-tokens",
                "/v1/users/alice/inbox-tokens".into(),
                Own(ok),
            ),
            probe("GET", "/v1/inbox", "/v1/inbox".into(), Own(ok)).by(As::InboxToken),
            probe("GET", "/v1/inbox/unread-count", "/v1/inbox/unread-count".into(), Own(ok))
                .by(As::InboxToken),
            probe(
                "POST",
                "/v1/inbox/messages/{message_id}/read",
                format!("/v1/inbox/messages/{}/read", alpha.message_id),
                NotFound,
            )
            .by(As::InboxToken),
            probe("POST", "/v1/inbox/read-all", "/v1/inbox/read-all".into(), Own(ok))
                .by(As::InboxToken),
            probe("GET", "/v1/inbox/stream", "/v1/inbox/stream".into(), Own(ok))
                .by(As::InboxToken),
            probe("GET", "/v1/inbox/ws", "/v1/inbox/ws".into(), Refused).by(As::InboxToken),
            probe("GET", "/v1/templates/{template_id}", "/v1/templates/alpha-tpl".into(), NotFound),
            probe(
                "GET",
                "/v1/templates/{template_id}/versions",
                "/v1/templates/alpha-tpl/versions".into(),
                NotFound,
            ),
            probe(
                "GET",
                "/v1/templates/{template_id}/versions/{version}",
                "/v1/templates/alpha-tpl/versions/1".into(),
                NotFound,
            ),
            probe(
                "POST",
                "/v1/templates/{template_id}/rollback",
                "/v1/templates/alpha-tpl/rollback".into(),
                NotFound,
            )
            .body(json!({"version": 1})),
            probe(
                "GET",
                "/v1/users/{user_id}/followers",
                "/v1/users/alice/followers".into(),
                NotFound,
            ),
            probe(
                "POST",
                "/v1/users/{user_id}/followers",
                "/v1/users/alice/followers".into(),
                NotFound,
            )
            .body(json!({"follower_ids": ["bob"]})),
            probe(
                "DELETE",
                "/v1/users/{user_id}/followers/{follower_id}",
                "/v1/users/alice/followers/bob".into(),
                NotFound,
            ),
            probe("GET", "/v1/segments/{segment_id}", "/v1/segments/alpha-seg".into(), NotFound),
            probe(
                "GET",
                "/v1/segments/{segment_id}/members",
                "/v1/segments/alpha-seg/members".into(),
                NotFound,
            ),
            probe(
                "POST",
                "/v1/segments/{segment_id}/members",
                "/v1/segments/alpha-seg/members".into(),
                NotFound,
            )
            .body(json!({"user_ids": ["alice"]})),
            probe(
                "DELETE",
                "/v1/segments/{segment_id}/members/{user_id}",
                "/v1/segments/alpha-seg/members/alice".into(),
                NotFound,
            ),
            probe(
                "GET",
                "/v1/users/{user_id}/preferences",
                "/v1/users/alice/preferences".into(),
                Own(ok),
            ),
            probe(
                "POST",
                "/v1/users/{user_id}/preferences/opt-out",
                "/v1/users/alice/preferences/opt-out".into(),
                Own(ok),
            )
            .body(json!({"category": "marketing", "channel": "email"})),
            probe(
                "POST",
                "/v1/users/{user_id}/preferences/opt-in",
                "/v1/users/alice/preferences/opt-in".into(),
                Own(ok),
            )
            .body(json!({"category": "marketing", "channel": "push"})),
            probe(
                "PUT",
                "/v1/users/{user_id}/preferences",
                "/v1/users/alice/preferences".into(),
                Own(ok),
            )
            .body(json!({})),
            probe("GET", "/v1/suppressions", "/v1/suppressions".into(), Own(ok)),
            probe("GET", "/v1/suppressions/{channel}/{address}", suppressed.clone(), NotFound),
            probe("DELETE", "/v1/suppressions/{channel}/{address}", suppressed, NotFound),
            probe("DELETE", "/v1/users/{user_id}", "/v1/users/alice".into(), NotFound),
            probe(
                "POST",
                "/v1/templates/{template_id}/disable",
                "/v1/templates/alpha-tpl/disable".into(),
                NotFound,
            )
            .body(json!({"running": "cancel"})),
            probe(
                "POST",
                "/v1/templates/{template_id}/enable",
                "/v1/templates/alpha-tpl/enable".into(),
                NotFound,
            ),
            probe(
                "GET",
                "/v1/quotas/templates/{template_id}",
                "/v1/quotas/templates/alpha-tpl".into(),
                NotFound,
            ),
            probe(
                "PUT",
                "/v1/quotas/templates/{template_id}",
                "/v1/quotas/templates/alpha-tpl".into(),
                NotFound,
            )
            .body(json!({"per_second": 1})),
            probe(
                "DELETE",
                "/v1/quotas/templates/{template_id}",
                "/v1/quotas/templates/alpha-tpl".into(),
                NotFound,
            ),
            // b has no tenant quota of its own: a's is not what it reads or removes.
            probe("GET", "/v1/quotas/tenant", "/v1/quotas/tenant".into(), NotFound),
            probe("DELETE", "/v1/quotas/tenant", "/v1/quotas/tenant".into(), NotFound),
            // Settings, quotas and switches are per tenant: b reads and sets its own.
            probe("GET", "/v1/quotas", "/v1/quotas".into(), Own(ok)),
            probe("PUT", "/v1/quotas/tenant", "/v1/quotas/tenant".into(), Own(ok))
                .body(json!({"per_second": 3})),
            probe("GET", "/v1/kill-switches/channels", "/v1/kill-switches/channels".into(), Own(ok)),
            probe(
                "POST",
                "/v1/kill-switches/channels/{channel}",
                "/v1/kill-switches/channels/email".into(),
                Own(ok),
            )
            .body(json!({"disabled": false})),
            probe("GET", "/v1/settings/blast-radius", "/v1/settings/blast-radius".into(), Own(ok)),
            probe("PUT", "/v1/settings/blast-radius", "/v1/settings/blast-radius".into(), Own(ok))
                .body(json!({"max_audience": 5})),
            // Upserts and creations: b gets its own item under the same id.
            probe("POST", "/v1/templates", "/v1/templates".into(), Own(StatusCode::CREATED)).body(
                json!({"template_id": "alpha-tpl", "name": "B", "in_app": {"title": "b", "body": "b"}}),
            ),
            probe(
                "PUT",
                "/v1/templates/{template_id}",
                "/v1/templates/alpha-tpl".into(),
                Own(ok),
            )
            .body(json!({"name": "B", "in_app": {"title": "b", "body": "b2"}})),
            probe("PUT", "/v1/segments/{segment_id}", "/v1/segments/alpha-seg".into(), Own(ok))
                .body(json!({"name": "B", "user_ids": ["bee"]})),
            probe("POST", "/v1/suppressions", "/v1/suppressions".into(), Own(StatusCode::CREATED))
                .body(json!({"channel": "email", "address": "alice@a.test"})),
            probe("PUT", "/v1/users/{user_id}", "/v1/users/alice".into(), Own(ok))
                .body(json!({"name": "B's alice"})),
        ];

        // The probes cover exactly the tenant routes the API documents (and the OpenAPI test
        // holds the document to the router), so a new route fails here until it is probed.
        let probed: BTreeSet<(String, String)> = probes
            .iter()
            .map(|p| (p.method.to_owned(), p.route.to_owned()))
            .collect();
        let documented = tenant_routes(&h).await;
        let unprobed: Vec<_> = documented.difference(&probed).collect();
        let undocumented: Vec<_> = probed.difference(&documented).collect();
        assert!(
            unprobed.is_empty() && undocumented.is_empty(),
            "tenant routes without an isolation probe: {unprobed:?}; probes of routes not in openapi.json: {undocumented:?}"
        );

        let mut wrong = Vec::new();
        for p in &probes {
            let credential = match p.by {
                As::Key => h.key(1),
                As::InboxToken => b_inbox.as_str(),
            };
            let (status, text) = if p.route == "/v1/inbox/stream" {
                read_stream_until_ready(&h, credential).await
            } else {
                let (status, body) = h
                    .call(p.method, &p.uri, Some(credential), p.body.clone())
                    .await;
                (status, body.to_string())
            };
            let status_ok = match p.expect {
                NotFound => status == StatusCode::NOT_FOUND,
                Own(want) => status == want,
                Refused => status.is_client_error() && status != StatusCode::NOT_FOUND,
            };
            // A 404 may echo the id it was asked for; a success must not mention a's items.
            let mut leaked = text.contains(MARK);
            if matches!(p.expect, Own(_)) {
                leaked |= text.contains(rid) || text.contains(&alpha.message_id);
            }
            if !status_ok || leaked {
                wrong.push(format!(
                    "{} {} -> {status} (want {:?}){}: {text}",
                    p.method,
                    p.uri,
                    p.expect,
                    if leaked { " LEAKED" } else { "" }
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "cross-tenant answers:\n{}",
            wrong.join("\n")
        );

        // Nothing b did changed a's data or reached a's workflow.
        assert_eq!(snapshot(&h, &alpha).await, before);
        assert_eq!(h.orchestrator.started.lock().unwrap().len(), started);
        assert!(h.orchestrator.controls.lock().unwrap().is_empty());
        assert!(h.orchestrator.cancelled.lock().unwrap().is_empty());
        assert!(h.orchestrator.redrives.lock().unwrap().is_empty());
    }
}

mod quotas {
    use super::*;

    #[tokio::test]
    async fn template_quotas_are_stored_per_tenant_and_signal_running_requests() {
        let h = harness().await;
        let (status, body) = h
            .call("POST", "/v1/notify", Some(h.key(0)), Some(trigger("q1")))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");

        let uri = "/v1/quotas/templates/welcome";
        let (status, body) = h
            .call("PUT", uri, Some(h.key(0)), Some(json!({"per_second": 7})))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["scope"], "template");
        assert_eq!(body["template_id"], "welcome");
        assert_eq!(body["per_second"], 7);
        assert_eq!(body["signalled"], 1, "the running request was signalled");
        let signals = h.orchestrator.quota_signals.lock().unwrap().clone();
        assert_eq!(
            signals,
            vec![(
                TemplateId::parse("welcome").unwrap(),
                TemplateQuota {
                    per_second: Some(7)
                }
            )]
        );
        // Deliveries read the same bucket.
        let tenant = TenantId::parse("a").unwrap();
        let key =
            fanout_store::limits::template_key(&tenant, &TemplateId::parse("welcome").unwrap());
        let bucket = h.store.bucket(&key).await.unwrap().unwrap();
        assert_eq!(bucket.ceiling_per_second, 7);

        // Tenant b sees none of it, and has its own.
        let (status, _) = h.call("GET", uri, Some(h.key(1)), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, body) = h.call("GET", "/v1/quotas", Some(h.key(1)), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["quotas"], json!([]));

        let (status, body) = h
            .call(
                "PUT",
                "/v1/quotas/tenant",
                Some(h.key(0)),
                Some(json!({"per_second": 100})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["scope"], "tenant");
        let (_, body) = h.call("GET", "/v1/quotas", Some(h.key(0)), None).await;
        let listed: Vec<(String, u64)> = body["quotas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| {
                (
                    q["scope"].as_str().unwrap().to_owned(),
                    q["per_second"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            listed,
            vec![("template".to_owned(), 7), ("tenant".to_owned(), 100)]
        );

        // Removing the template quota signals the lift.
        let (status, _) = h.call("DELETE", uri, Some(h.key(0)), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let last = h.orchestrator.quota_signals.lock().unwrap().last().cloned();
        assert_eq!(last.map(|(_, q)| q.per_second), Some(None));
        let (status, _) = h.call("DELETE", uri, Some(h.key(0)), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = h
            .call("DELETE", "/v1/quotas/tenant", Some(h.key(0)), None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }

    #[tokio::test]
    async fn quota_writes_are_validated() {
        let h = harness().await;
        let (status, body) = h
            .call(
                "PUT",
                "/v1/quotas/templates/welcome",
                Some(h.key(0)),
                Some(json!({"per_second": 0})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["field"], "per_second");
        let (status, _) = h
            .call(
                "PUT",
                "/v1/quotas/templates/nope",
                Some(h.key(0)),
                Some(json!({"per_second": 5})),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = h
            .call(
                "PUT",
                "/v1/quotas/tenant",
                None,
                Some(json!({"per_second": 5})),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(h.orchestrator.quota_signals.lock().unwrap().is_empty());
    }
}

/// Where the guardrails meet: preflight's estimate follows the delivery quotas, and the operator
/// switches a channel off for every tenant at once.
mod guardrails {
    use super::*;

    async fn estimate(h: &Harness) -> Value {
        let (status, body) = h
            .call(
                "POST",
                "/v1/notify?dry_run=true",
                Some(h.key(0)),
                Some(preflight::promo("dry")),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["estimated_completion"].clone()
    }

    #[tokio::test]
    async fn the_completion_estimate_follows_the_tightest_quota() {
        let h = preflight::seeded().await;
        assert_eq!(estimate(&h).await["limited_by"], "platform_throughput");
        let (status, body) = h
            .call(
                "PUT",
                "/v1/quotas/tenant",
                Some(h.key(0)),
                Some(json!({"per_second": 3})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = h
            .call(
                "PUT",
                "/v1/quotas/templates/promo",
                Some(h.key(0)),
                Some(json!({"per_second": 2})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let tight = estimate(&h).await;
        assert_eq!(
            (
                &tight["limited_by"],
                &tight["deliveries_per_second"],
                &tight["seconds"]
            ),
            (&json!("quota"), &json!(2), &json!(3.0)),
            "6 deliverable at the template's 2/s: {tight}"
        );
    }

    #[tokio::test]
    async fn the_operator_switches_a_channel_off_for_every_tenant() {
        let h = harness().await;
        let uri = "/v1/admin/kill-switches/channels/push";
        let off = json!({"disabled": true, "reason": "provider incident"});
        let (status, _) = h.call("POST", uri, Some(h.key(0)), Some(off.clone())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "a tenant key cannot");
        let (status, body) = h.call("POST", uri, Some(ADMIN_KEY), Some(off)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            (&body["scope"], &body["disabled"]),
            (&json!("global"), &json!(true))
        );
        for tenant in 0..2 {
            let (_, listed) = h
                .call(
                    "GET",
                    "/v1/kill-switches/channels",
                    Some(h.key(tenant)),
                    None,
                )
                .await;
            let global = listed["switches"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["scope"] == "global" && s["channel"] == "push")
                .cloned();
            assert_eq!(
                global.map(|s| s["disabled"].clone()),
                Some(json!(true)),
                "{listed}"
            );
        }
        let (status, body) = h
            .call(
                "POST",
                uri.replace("push", "sms").as_str(),
                Some(ADMIN_KEY),
                Some(json!({"disabled": true})),
            )
            .await;
        assert_eq!(
            (status, &body["error"]["field"]),
            (StatusCode::UNPROCESSABLE_ENTITY, &json!("channel"))
        );
    }
}

mod limits;
mod scheduling;
