//! The Fanout REST API.
//!
//! It authenticates callers by API key, parses request bodies into domain types at the edge,
//! starts one Temporal workflow per notification request, and serves status, receipts and the
//! in-app inbox from Temporal (while a request runs) and the store (once it has finished).
//!
//! Layout: [`app`] builds the router from one module per resource ([`notify`], [`requests`]
//! for status and receipts, [`control`] for pause/resume/rate/cancel, [`quotas`] for delivery
//! quotas, [`kill`] for kill switches, [`admin`] for the operator's tenants and keys, [`ingest`]
//! for the notify quota, [`preflight`] for dry runs and the blast-radius guard, [`scheduling`]
//! for the priority and fairness of each request's Temporal work, [`users`],
//! [`templates`], [`inbox`], [`health`] with the OpenAPI
//! document); [`error`] maps every failure to a status; [`auth`] resolves the caller's tenant;
//! [`orchestrator`] is the API's narrow view of Temporal; [`seed`] writes the demo tenant;
//! [`cache`] keeps short-lived copies of hot reads; [`timing`] reports where a notify's time
//! went (`Server-Timing`); [`bounds`] holds every route to a body limit, a timeout and a number
//! in flight, and [`bucket`] is the token bucket behind the quotas; [`retention`] prunes the
//! store on an interval. [`run`] serves on a given listener until a shutdown future resolves.

pub mod admin;
pub mod audience;
pub mod auth;
pub mod bounds;
pub mod bucket;
pub mod cache;
pub mod control;
pub mod cursor;
pub mod dead_letters;
pub mod error;
pub mod follows;
pub mod health;
pub mod inbox;
pub mod ingest;
pub mod kill;
pub mod notify;
pub mod orchestrator;
pub mod preferences;
pub mod preflight;
pub mod quotas;
pub mod requests;
pub mod retention;
pub mod scheduling;
pub mod seed;
pub mod segments;
pub mod suppressions;
pub mod templates;
pub mod timing;
pub mod users;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use fanout_domain::config::{Secret, StoreConfig, TemporalConfig};
use fanout_store::Store;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::orchestrator::{Orchestrator, TemporalOrchestrator};

/// The API's configuration (see `fanout_domain::config::load` for the layering).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address to listen on.
    pub listen_addr: String,
    /// Temporal frontend, namespace and task queue.
    pub temporal: TemporalConfig,
    /// The store.
    pub store: StoreConfig,
    /// How long a dedupe key keeps returning its request; after that a trigger with the same
    /// key starts a new one.
    pub dedupe_window_seconds: u64,
    /// The in-app inbox's streams and tokens.
    pub inbox: inbox::InboxConfig,
    /// Dry runs and the blast-radius guard.
    pub preflight: preflight::PreflightConfig,
    /// The operator's key for `/v1/admin/` (`FANOUT_ADMIN_KEY`); unset, the admin API is off.
    pub admin_key: Option<Secret>,
    /// The default per-tenant ingest quota on `POST /v1/notify` (`FANOUT_INGEST__PER_SECOND`, ..).
    pub ingest: ingest::IngestConfig,
    /// Explicit audiences of at most this many users take the direct path (one workflow
    /// execution, no child workflows); larger ones and followers or segments take the tree.
    /// 0 sends everything down the tree (`FANOUT_DIRECT_MAX_RECIPIENTS`).
    pub direct_max_recipients: usize,
    /// Whether workflow starts carry a priority key and a per-tenant fairness key
    /// (`FANOUT_SCHEDULING__PRIORITY`, `FANOUT_SCHEDULING__FAIRNESS`; both on by default).
    pub scheduling: scheduling::SchedulingConfig,
    /// The body limit, request timeout and requests in flight of every non-streaming route
    /// (`FANOUT_HTTP__MAX_BODY_BYTES`, `..__REQUEST_TIMEOUT_SECONDS`, `..__MAX_IN_FLIGHT`).
    pub http: bounds::HttpConfig,
    /// What the store keeps and for how long (`FANOUT_RETENTION__*`).
    pub retention: retention::RetentionConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen_addr: "127.0.0.1:8080".into(),
            temporal: TemporalConfig::default(),
            store: StoreConfig::default(),
            dedupe_window_seconds: 24 * 3600,
            inbox: inbox::InboxConfig::default(),
            preflight: preflight::PreflightConfig::default(),
            admin_key: None,
            ingest: ingest::IngestConfig::default(),
            direct_max_recipients: fanout_domain::request::DIRECT_MAX_RECIPIENTS,
            scheduling: scheduling::SchedulingConfig::default(),
            http: bounds::HttpConfig::default(),
            retention: retention::RetentionConfig::default(),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// Temporal, behind the API's narrow interface.
    pub orchestrator: Arc<dyn Orchestrator>,
    /// See [`Config::dedupe_window_seconds`].
    pub dedupe_window: Duration,
    /// The process's inbox stream fan-out (one store poller for all connections).
    pub inbox: inbox::InboxHub,
    /// See [`Config::preflight`].
    pub preflight: preflight::PreflightConfig,
    /// See [`Config::admin_key`].
    pub admin_key: Option<Secret>,
    /// The process's per-tenant ingest buckets.
    pub ingest: ingest::IngestLimiter,
    /// See [`Config::direct_max_recipients`].
    pub direct_max_recipients: usize,
    /// See [`Config::scheduling`].
    pub scheduling: scheduling::SchedulingConfig,
    /// See [`Config::http`].
    pub http: bounds::HttpConfig,
}

/// Builds the router: every route inside the [`bounds`] but the inbox streams, which stay open
/// by design and have caps of their own.
pub fn app(state: AppState) -> Router {
    let bounds = bounds::Bounds::new(&state.http);
    let max_body = DefaultBodyLimit::max(state.http.max_body_bytes);
    let streams = Router::new()
        .route("/v1/inbox/stream", get(inbox::stream::sse))
        .route("/v1/inbox/ws", get(inbox::stream::ws));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/openapi.json", get(health::openapi))
        .route(
            "/v1/notify",
            post(notify::notify).layer(axum::middleware::from_fn(timing::server_timing)),
        )
        .route("/v1/status/{request_id}", get(requests::status))
        .route("/v1/receipts", get(requests::receipts))
        .route("/v1/cancel", post(control::cancel))
        .route("/v1/dead-letters", get(dead_letters::list))
        .route("/v1/dead-letters/redrive", post(dead_letters::redrive))
        .route("/v1/requests/{request_id}/pause", post(control::pause))
        .route("/v1/requests/{request_id}/resume", post(control::resume))
        .route("/v1/requests/{request_id}/rate", post(control::rate))
        .route(
            "/v1/users/{user_id}",
            put(users::put_user)
                .get(users::get_user)
                .delete(users::delete_user),
        )
        .route("/v1/users/{user_id}/inbox", get(inbox::list))
        .merge(templates::routes())
        .route("/v1/users/{user_id}/inbox-token", post(inbox::issue_token))
        .route(
            "/v1/users/{user_id}/inbox-tokens",
            delete(inbox::revoke_tokens),
        )
        .route(
            "/v1/users/{user_id}/inbox-tokens/{token_id}",
            delete(inbox::revoke_token),
        )
        .route("/v1/inbox", get(inbox::list_own))
        .route("/v1/inbox/unread-count", get(inbox::unread_count))
        .route("/v1/inbox/messages/{message_id}/read", post(inbox::read))
        .route("/v1/inbox/read-all", post(inbox::read_all))
        .merge(follows::routes())
        .merge(segments::routes())
        .merge(preferences::routes())
        .merge(suppressions::routes())
        .merge(kill::routes())
        .route(
            "/v1/settings/blast-radius",
            get(preflight::get_setting).put(preflight::put_setting),
        )
        .merge(admin::routes())
        .merge(quotas::routes())
        .layer(axum::middleware::from_fn_with_state(bounds, bounds::bound))
        .merge(streams)
        .layer(max_body)
        .with_state(state)
}

/// Connects to the store and Temporal, then serves on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if let Some(key) = config.admin_key.as_ref().filter(|k| !k.expose().is_empty()) {
        auth::check_admin_key(key.expose()).map_err(anyhow::Error::msg)?;
    }
    let store = Store::connect(&config.store).await?;
    let orchestrator = TemporalOrchestrator::connect(&config.temporal).await?;
    let pruning = retention::spawn(store.clone(), &config.retention);
    let state = AppState {
        inbox: inbox::InboxHub::new(store.clone(), config.inbox.clone()),
        admin_key: config.admin_key.clone(),
        ingest: ingest::IngestLimiter::new(store.clone(), config.ingest.clone()),
        store,
        orchestrator: Arc::new(orchestrator),
        dedupe_window: Duration::from_secs(config.dedupe_window_seconds),
        preflight: config.preflight.clone(),
        direct_max_recipients: config.direct_max_recipients,
        scheduling: config.scheduling,
        http: config.http.clone(),
    };
    tracing::info!(addr = %listener.local_addr()?, "api listening");
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    if let Some(pruning) = pruning {
        pruning.abort();
    }
    Ok(())
}

#[cfg(test)]
mod tests;
