//! The APNs part of the read-back API: credentials, accepted notifications, fault rules.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::credentials::{self, Credentials};
use super::notifications::{NotificationCount, NotificationList};
use crate::Sandbox;
use crate::http::{ApiError, ApiResult};

/// Page size of `GET /api/apns/notifications` when the request gives none.
const DEFAULT_LIMIT: usize = 100;

/// Largest page size of `GET /api/apns/notifications`; larger requests are capped.
const MAX_LIMIT: usize = 1000;

/// Body of `GET /api/apns/credentials`: where the simulator listens and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialsInfo {
    /// Base URL of the simulator, e.g. `https://127.0.0.1:2197`.
    pub endpoint: Option<String>,
    /// Trust root and dev credentials.
    #[serde(flatten)]
    pub credentials: Credentials,
}

/// Builds the `/api/apns/*` routes, merged into the read-back API's router.
pub(crate) fn routes() -> Router<Arc<Sandbox>> {
    Router::new()
        .route("/api/apns/credentials", get(get_credentials))
        .route("/api/apns/credentials/{file}", get(get_credential_file))
        .route(
            "/api/apns/notifications",
            get(list_notifications).delete(clear_notifications),
        )
        .route("/api/apns/notifications/count", get(count_notifications))
        .merge(crate::fault::routes("/api/apns/faults", |sandbox| {
            &sandbox.apns.faults
        }))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    token: Option<String>,
    after_id: Option<u64>,
    limit: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct CountQuery {
    token: Option<String>,
}

async fn get_credentials(State(sandbox): State<Arc<Sandbox>>) -> ApiResult<Json<CredentialsInfo>> {
    Ok(Json(CredentialsInfo {
        endpoint: sandbox.apns.endpoint(),
        credentials: credentials::credentials()?.clone(),
    }))
}

/// Serves one credential as a file, so a setup script can `curl -o` it where the worker reads.
async fn get_credential_file(
    file: Result<Path<String>, PathRejection>,
) -> ApiResult<impl IntoResponse> {
    let Path(file) = file?;
    let credentials = credentials::credentials()?;
    let pem = match file.as_str() {
        "ca.pem" => &credentials.ca_pem,
        "signing-key.p8" => &credentials.signing_key_pem,
        "client-cert.pem" => &credentials.client_cert_pem,
        "client-key.pem" => &credentials.client_key_pem,
        _ => return Err(ApiError::NotFound("credential file")),
    };
    Ok((
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        pem.clone(),
    ))
}

async fn list_notifications(
    State(sandbox): State<Arc<Sandbox>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<NotificationList>> {
    let Query(query) = query?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let (page, more) =
        sandbox
            .apns
            .notifications
            .list(query.token.as_deref(), query.after_id, limit);
    let next_after_id = more.then(|| page.last().map(|n| n.id)).flatten();
    Ok(Json(NotificationList {
        notifications: page.iter().map(|n| n.as_ref().clone()).collect(),
        next_after_id,
    }))
}

async fn count_notifications(
    State(sandbox): State<Arc<Sandbox>>,
    query: Result<Query<CountQuery>, QueryRejection>,
) -> ApiResult<Json<NotificationCount>> {
    let Query(query) = query?;
    let count = sandbox.apns.notifications.count(query.token.as_deref());
    Ok(Json(NotificationCount { count }))
}

async fn clear_notifications(State(sandbox): State<Arc<Sandbox>>) -> StatusCode {
    sandbox.apns.notifications.clear();
    StatusCode::NO_CONTENT
}
