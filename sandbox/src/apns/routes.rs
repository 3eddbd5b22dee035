//! The APNs part of the read-back API: credentials, accepted notifications, fault rules.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::credentials::{self, Credentials};
use crate::Sandbox;
use crate::http::{ApiError, ApiResult};

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
        .merge(crate::arrivals::routes(
            "/api/apns/notifications",
            |sandbox| &sandbox.apns.notifications,
        ))
        .merge(crate::fault::routes("/api/apns/faults", |sandbox| {
            &sandbox.apns.faults
        }))
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
