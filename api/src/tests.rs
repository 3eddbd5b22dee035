//! Handler tests over `oneshot`: a real SQLite store, and an in-memory orchestrator standing in
//! for Temporal (the end-to-end suite covers the real one).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use fanout_contracts::{DigestInput, NotificationInput, RedriveInput, TemplateQuota};
use fanout_domain::receipt::Progress;
use fanout_domain::{RequestId, TemplateId, TenantId};
use fanout_store::Store;
use fanout_store::tenants::generate_api_key;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::orchestrator::{Control, Orchestrator, OrchestratorError, RunState, StartOutcome};
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
    reschedules: Mutex<Vec<(RequestId, i64)>>,
    digests: Mutex<Vec<DigestInput>>,
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

    async fn start_digest(
        &self,
        input: DigestInput,
        _priority: TaskPriority,
    ) -> Result<StartOutcome, OrchestratorError> {
        let mut digests = self.digests.lock().unwrap();
        if digests.iter().any(|d| d.digest_id == input.digest_id) {
            return Ok(StartOutcome::Duplicate);
        }
        digests.push(input);
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

    async fn reschedule(
        &self,
        request_id: &RequestId,
        run_at_ms: i64,
    ) -> Result<(), OrchestratorError> {
        let started = self.started.lock().unwrap();
        // As the workflow's validator: only a request started with a time waits for one.
        if !started
            .iter()
            .any(|s| &s.request_id == request_id && s.run_at_ms.is_some())
        {
            return Err(OrchestratorError::NotRunning);
        }
        self.reschedules
            .lock()
            .unwrap()
            .push((request_id.clone(), run_at_ms));
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

    async fn run_state(&self, request_id: &RequestId) -> Result<RunState, OrchestratorError> {
        let started = self.started.lock().unwrap();
        Ok(match started.iter().find(|s| &s.request_id == request_id) {
            Some(_) => RunState::Running,
            None => RunState::Unknown,
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
        max_connections: Some(4),
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
        running_status: crate::requests::running_status_cache(),
        webhooks: fanout_domain::webhook::WebhooksConfig::default(),
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

fn trigger(dedupe: &str) -> Value {
    json!({
        "template_id": "welcome",
        "recipients_query": {"type": "users", "user_ids": ["u1", "u2"]},
        "data": {"actor": "Dana"},
        "dedupe_key": dedupe
    })
}

// ---- Preferences and the suppression list ----

// Templates: versions, rollback, locale variants and validation.

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

mod frequency_caps;

mod guardrails;

mod audiences;
mod digests;
mod limits;
mod notify;
mod openapi;
mod preferences;
mod quiet_hours;
mod requests;
mod scheduling;
mod templates;
mod timing;
mod users;
mod webhooks;
