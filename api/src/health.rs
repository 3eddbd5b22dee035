//! Liveness, readiness, metrics and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;

/// The answer of `GET /healthz`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable` when the store does not answer.
    #[schema(pattern = "^(ok|unavailable)$")]
    pub status: String,
    /// `unreachable` when the store does not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
}

/// Liveness: 200 when the store answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    security(()),
    responses(
        (status = 200, description = "The store answers", body = Health,
            example = json!({"status": "ok"})),
        (status = 503, description = "The store is unreachable", body = Health,
            example = json!({"status": "unavailable", "store": "unreachable"})),
    )
)]
pub async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(Health {
                status: "ok".into(),
                store: None,
            }),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health {
                    status: "unavailable".into(),
                    store: Some("unreachable".into()),
                }),
            )
        }
    }
}

/// This document (OpenAPI 3.1), generated from the code.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "health",
    security(()),
    responses((status = 200, description = "The OpenAPI document", body = Object,
        content_type = "application/json"))
)]
pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::json(),
    )
}

/// The answer of `GET /readyz`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// `ready`, or `unavailable` when a dependency does not answer.
    #[schema(pattern = "^(ready|unavailable)$")]
    pub status: String,
    /// `ok` or `unreachable`. The schema is brought up to date before the API listens, so a
    /// reachable store has its migrations applied.
    #[schema(pattern = "^(ok|unreachable)$")]
    pub store: String,
    /// `ok` or `unreachable`.
    #[schema(pattern = "^(ok|unreachable)$")]
    pub temporal: String,
}

/// Readiness: 200 when the store and Temporal both answer, else 503 naming which does not.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    security(()),
    responses(
        (status = 200, description = "The store and Temporal answer", body = Readiness,
            example = json!({"status": "ready", "store": "ok", "temporal": "ok"})),
        (status = 503, description = "The store or Temporal does not answer", body = Readiness,
            example = json!({"status": "unavailable", "store": "ok", "temporal": "unreachable"})),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let (store, temporal) = tokio::join!(state.store.ping(), state.orchestrator.ping());
    let word = |ok: bool| if ok { "ok" } else { "unreachable" }.to_owned();
    if let Err(e) = &store {
        tracing::warn!(error = %e, "readiness: the store does not answer");
    }
    if let Err(e) = &temporal {
        tracing::warn!(error = %e, "readiness: temporal does not answer");
    }
    let ready = store.is_ok() && temporal.is_ok();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            status: if ready { "ready" } else { "unavailable" }.into(),
            store: word(store.is_ok()),
            temporal: word(temporal.is_ok()),
        }),
    )
}

/// Prometheus metrics of this API process, in the text format (see README, "Operating
/// Fanout"). Label values are bounded: no user or request ids.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    security(()),
    responses((status = 200, description = "Every metric, Prometheus text format 0.0.4",
        content_type = "text/plain", body = String))
)]
pub async fn metrics() -> axum::response::Response {
    fanout_telemetry::listener::metrics_text().await
}
