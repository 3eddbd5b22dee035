//! Control of running requests: `POST /v1/requests/{id}/pause|resume|rate` (signals on the
//! request's workflow) and `POST /v1/cancel` (by request id or dedupe key).
//!
//! Pause and rate reach in-flight deliveries within a fraction of a second: the workflow writes
//! them through to the store, which every send consults. A cancel is written to the store
//! first, so no send starts more than 100 ms (the controls' cache in each delivery) after this
//! call returns, then the workflow is cancelled, which
//! stops its pages and records what was not delivered as cancelled.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use fanout_domain::{RequestId, TenantId};
use fanout_store::requests::RequestRecord;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson};
use crate::orchestrator::{Control, OrchestratorError};

/// What a control call answers.
#[derive(Debug, Serialize, Deserialize)]
pub struct ControlResponse {
    /// The request controlled.
    pub request_id: String,
    /// What was asked: `pause`, `resume`, `rate` or `cancel`.
    pub action: String,
}

/// Body of `POST /v1/requests/{id}/rate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateBody {
    per_second: Option<u32>,
}

/// Body of `POST /v1/cancel`: exactly one of the two.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    dedupe_key: Option<String>,
}

async fn running_request(
    state: &AppState,
    tenant: &TenantId,
    raw_id: &str,
) -> Result<RequestRecord, ApiError> {
    let not_found = || ApiError::NotFound(format!("request '{raw_id}' not found"));
    let request_id = RequestId::parse(raw_id).map_err(|_| not_found())?;
    let record = state
        .store
        .get_request(tenant, &request_id)
        .await?
        .ok_or_else(not_found)?;
    if record.state.is_terminal() {
        return Err(ApiError::Conflict(format!(
            "request '{raw_id}' is already {}",
            record.state.as_str()
        )));
    }
    Ok(record)
}

fn orchestrator_error(request_id: &RequestId, e: OrchestratorError) -> ApiError {
    match e {
        OrchestratorError::NotRunning => {
            ApiError::Conflict(format!("request '{request_id}' is no longer running"))
        }
        OrchestratorError::Unavailable(why) => ApiError::Unavailable(why),
    }
}

async fn send(
    state: &AppState,
    tenant: &TenantId,
    raw_id: &str,
    control: Control,
    action: &str,
) -> Result<(StatusCode, Json<ControlResponse>), ApiError> {
    let record = running_request(state, tenant, raw_id).await?;
    // Deliveries read the controls from the store before every send: writing them here holds
    // or paces sends at once, before the workflow takes the signal (which writes the same
    // value through again in signal order).
    match control {
        Control::Pause => state.store.set_paused(&record.request_id, true).await?,
        Control::Resume => state.store.set_paused(&record.request_id, false).await?,
        Control::SetRate(per_second) => {
            state.store.set_rate(&record.request_id, per_second).await?
        }
    }
    state
        .orchestrator
        .control(&record.request_id, control)
        .await
        .map_err(|e| orchestrator_error(&record.request_id, e))?;
    tracing::info!(request_id = %record.request_id, action, "control sent");
    Ok((
        StatusCode::ACCEPTED,
        Json(ControlResponse {
            request_id: record.request_id.to_string(),
            action: action.to_owned(),
        }),
    ))
}

/// `POST /v1/requests/{request_id}/pause`.
pub async fn pause(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
) -> Result<(StatusCode, Json<ControlResponse>), ApiError> {
    send(&state, &tenant, &raw_id, Control::Pause, "pause").await
}

/// `POST /v1/requests/{request_id}/resume`.
pub async fn resume(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
) -> Result<(StatusCode, Json<ControlResponse>), ApiError> {
    send(&state, &tenant, &raw_id, Control::Resume, "resume").await
}

/// `POST /v1/requests/{request_id}/rate` with `{"per_second": n}` (`null` removes the cap).
pub async fn rate(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
    ApiJson(body): ApiJson<RateBody>,
) -> Result<(StatusCode, Json<ControlResponse>), ApiError> {
    if body.per_second == Some(0) {
        return Err(ApiError::InvalidField {
            field: "per_second".into(),
            message: "per_second must be at least 1; use pause to stop, or null to remove the cap"
                .into(),
        });
    }
    send(
        &state,
        &tenant,
        &raw_id,
        Control::SetRate(body.per_second),
        "rate",
    )
    .await
}

/// `POST /v1/cancel` with `{"request_id": ...}` or `{"dedupe_key": ...}`.
pub async fn cancel(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiJson(body): ApiJson<CancelBody>,
) -> Result<(StatusCode, Json<ControlResponse>), ApiError> {
    let record = match (&body.request_id, &body.dedupe_key) {
        (Some(raw_id), None) => running_request(&state, &tenant, raw_id).await?,
        (None, Some(key)) => {
            let found = state
                .store
                .find_request_by_dedupe_key(&tenant, key)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("no request with dedupe_key '{key}'")))?;
            running_request(&state, &tenant, found.request_id.as_str()).await?
        }
        _ => {
            return Err(ApiError::InvalidField {
                field: "body".into(),
                message: "give exactly one of request_id or dedupe_key".into(),
            });
        }
    };
    // Stop new sends first: every delivery checks this before sending.
    state.store.mark_cancelled(&record.request_id).await?;
    state
        .orchestrator
        .cancel(&record.request_id)
        .await
        .map_err(|e| orchestrator_error(&record.request_id, e))?;
    tracing::info!(request_id = %record.request_id, "cancel requested");
    Ok((
        StatusCode::ACCEPTED,
        Json(ControlResponse {
            request_id: record.request_id.to_string(),
            action: "cancel".into(),
        }),
    ))
}
