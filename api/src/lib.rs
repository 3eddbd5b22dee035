//! The Fanout REST API.
//!
//! It authenticates callers by API key, parses request bodies into domain types at the edge,
//! starts one Temporal workflow per notification request, and serves status, receipts and the
//! in-app inbox from Temporal (while a request runs) and the store (once it has finished).
//!
//! Layout: [`app`] builds the router from one module per resource ([`notify`], [`requests`]
//! for status and receipts, [`control`] for pause/resume/rate/cancel, [`quotas`] for delivery
//! quotas, [`frequency_caps`] for how often a user hears from a category, [`kill`] for kill
//! switches, [`admin`] for the operator's tenants and keys, [`ingest`]
//! for the notify quota, [`preflight`] for dry runs and the blast-radius guard, [`scheduling`]
//! for the priority and fairness of each request's Temporal work, [`users`],
//! [`templates`], [`inbox`], [`health`]; [`openapi`] holds what the generated OpenAPI
//! document has beyond its routes); [`error`] maps every failure to a status; [`auth`] resolves the caller's tenant;
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
pub mod digests;
pub mod error;
pub mod follows;
pub mod frequency_caps;
pub mod health;
pub mod inbox;
pub mod ingest;
pub mod kill;
pub mod local_time;
pub mod notify;
pub mod observe;
pub mod openapi;
pub mod orchestrator;
pub mod preferences;
pub mod preflight;
pub mod quiet_hours;
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
pub mod webhooks;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use fanout_domain::config::{Secret, StoreConfig, TemporalConfig};
use fanout_store::Store;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::orchestrator::{Orchestrator, TemporalOrchestrator};

/// The API's configuration (see `fanout_runtime::config::load` for the layering).
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
    /// Metrics labels (`FANOUT_METRICS__TENANT_LABEL`).
    pub metrics: fanout_telemetry::metrics::MetricsConfig,
    /// Outbound webhooks: which private destinations endpoints may have, the rotation grace.
    pub webhooks: fanout_domain::webhook::WebhooksConfig,
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
            metrics: Default::default(),
            webhooks: Default::default(),
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
    /// Running requests' status, shared by status calls for a second.
    pub running_status: requests::RunningStatusCache,
    /// See [`Config::webhooks`].
    pub webhooks: fanout_domain::webhook::WebhooksConfig,
}

/// Builds the router: every route inside the [`bounds`] but the inbox streams, which stay open
/// by design and have caps of their own.
pub fn app(state: AppState) -> Router {
    let (router, _) = routes(&state.http).split_for_parts();
    router
        .route_layer(axum::middleware::from_fn(observe::http_metrics))
        .layer(axum::middleware::from_fn(observe::request_id))
        .with_state(state)
}

/// Every route with its documentation (see [`openapi`]): [`app`] serves the routes, the
/// document is what `GET /openapi.json` answers. `http` sets the bounds and the body limit.
pub fn routes(http: &bounds::HttpConfig) -> OpenApiRouter<AppState> {
    let bounds = bounds::Bounds::new(http);
    let max_body = DefaultBodyLimit::max(http.max_body_bytes);
    let streams = OpenApiRouter::new()
        .routes(routes!(inbox::stream::sse))
        .routes(routes!(inbox::stream::ws));
    let mut bounded = OpenApiRouter::new()
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(health::openapi))
        .routes(
            routes!(notify::notify)
                .layer(axum::middleware::from_fn(timing::server_timing))
                .layer(axum::middleware::from_fn(observe::notify_outcome)),
        )
        .routes(routes!(requests::status))
        .routes(routes!(requests::receipts))
        .routes(routes!(control::cancel))
        .routes(routes!(dead_letters::list))
        .routes(routes!(dead_letters::redrive))
        .routes(routes!(control::pause))
        .routes(routes!(control::resume))
        .routes(routes!(control::rate))
        .routes(routes!(control::schedule))
        .routes(routes!(
            users::put_user,
            users::get_user,
            users::delete_user
        ))
        .routes(routes!(inbox::list))
        .merge(templates::routes())
        .routes(routes!(inbox::issue_token))
        .routes(routes!(inbox::revoke_tokens))
        .routes(routes!(inbox::revoke_token))
        .routes(routes!(inbox::list_own))
        .routes(routes!(inbox::unread_count))
        .routes(routes!(inbox::read))
        .routes(routes!(inbox::read_all))
        .routes(routes!(inbox::token::issue_stream_ticket))
        .merge(follows::routes())
        .merge(segments::routes())
        .merge(preferences::routes())
        .merge(suppressions::routes())
        .merge(kill::routes())
        .routes(routes!(preflight::get_setting, preflight::put_setting))
        .routes(routes!(local_time::get_timezone, local_time::put_timezone))
        .routes(routes!(
            quiet_hours::get_quiet_hours,
            quiet_hours::put_quiet_hours
        ))
        .merge(admin::routes())
        .merge(quotas::routes())
        .merge(frequency_caps::routes())
        .merge(webhooks::routes());
    openapi::within_bounds(bounded.get_openapi_mut());
    let mut all = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(bounded.layer(axum::middleware::from_fn_with_state(bounds, bounds::bound)))
        .merge(streams)
        .layer(max_body);
    openapi::under_body_limit(all.get_openapi_mut());
    all
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
    fanout_telemetry::metrics::configure(&config.metrics);
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
        running_status: requests::running_status_cache(),
        webhooks: config.webhooks.clone(),
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
