//! Control of running requests: `POST /v1/requests/{id}/pause|resume|rate` (signals on the
//! request's workflow), `POST /v1/requests/{id}/schedule` (moves a scheduled request: an update,
//! which the workflow refuses once the request started) and `POST /v1/cancel` (by request id or
//! dedupe key; a scheduled request included).
//!
//! Pause and rate reach in-flight deliveries within a fraction of a second: the workflow writes
//! them through to the store, which every send consults. A cancel is written to the store
//! first, so no send starts more than 100 ms (the controls' cache in each delivery) after this
//! call returns, then the workflow is cancelled, which
//! stops its pages and records what was not delivered as cancelled.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use fanout_domain::receipt::RequestState;
use fanout_domain::timing::Schedule;
use fanout_domain::{RequestId, TenantId};
use fanout_store::now_ms;
use fanout_store::requests::RequestRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::orchestrator::{Control, OrchestratorError};

/// What a control call answers.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ControlResponse {
    /// The request controlled.
    #[schema(value_type = RequestId)]
    pub request_id: String,
    /// What was asked: `pause`, `resume`, `rate` or `cancel`.
    #[schema(pattern = "^(pause|resume|rate|cancel)$")]
    pub action: String,
}

/// Body of `POST /v1/requests/{id}/rate`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateBody {
    /// Deliveries per second, at least 1; `null` removes the cap.
    #[schema(minimum = 1, required = true)]
    per_second: Option<u32>,
}

/// Body of `POST /v1/requests/{id}/schedule`: exactly one of the two.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleBody {
    /// The new start (RFC 3339 with an offset), at most 30 days ahead; a time up to 300
    /// seconds past starts it now.
    #[serde(default)]
    #[schema(format = DateTime, example = "2026-12-05T09:00:00Z")]
    send_at: Option<String>,
    /// Start this many seconds from now (0: now).
    #[serde(default)]
    #[schema(maximum = 2592000)] // timing::MAX_SCHEDULE_AHEAD_SECONDS
    delay_seconds: Option<u32>,
}

/// What `POST /v1/requests/{id}/schedule` answers.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScheduleResponse {
    /// The request moved.
    #[schema(value_type = RequestId)]
    pub request_id: String,
    /// When it now starts (milliseconds since the epoch).
    #[schema(value_type = i64)]
    pub run_at_ms: fanout_domain::UnixMillis,
}

/// Body of `POST /v1/cancel`: exactly one of the two.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    /// The request.
    #[serde(default)]
    #[schema(value_type = Option<RequestId>)]
    request_id: Option<String>,
    /// The dedupe key the request was triggered with.
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
    // A digested trigger is cancelled out of its digest (see `cancel`).
    if record.state.is_terminal() && record.state != RequestState::Digested {
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
#[utoipa::path(
    post,
    path = "/v1/requests/{request_id}/pause",
    tag = "requests",
    summary = "Pause a running request: no new pages start and in-flight deliveries hold (within a second)",
    params(("request_id" = RequestId, Path, description = "The request")),
    responses(
        (status = 202, description = "Sent", body = ControlResponse),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such request for this tenant", body = ErrorBody),
        (status = 409, description = "The request is not running (already completed, cancelled or failed)", body = ErrorBody),
        (status = 503, description = "Temporal is unreachable (code unavailable); retry", body = ErrorBody),
    )
)]
pub async fn pause(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
) -> Result<(StatusCode, Json<ControlResponse>), ApiError> {
    send(&state, &tenant, &raw_id, Control::Pause, "pause").await
}

/// `POST /v1/requests/{request_id}/resume`.
#[utoipa::path(
    post,
    path = "/v1/requests/{request_id}/resume",
    tag = "requests",
    summary = "Resume a paused request",
    params(("request_id" = RequestId, Path, description = "The request")),
    responses(
        (status = 202, description = "Sent", body = ControlResponse),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such request for this tenant", body = ErrorBody),
        (status = 409, description = "The request is not running (already completed, cancelled or failed)", body = ErrorBody),
        (status = 503, description = "Temporal is unreachable (code unavailable); retry", body = ErrorBody),
    )
)]
pub async fn resume(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
) -> Result<(StatusCode, Json<ControlResponse>), ApiError> {
    send(&state, &tenant, &raw_id, Control::Resume, "resume").await
}

/// `POST /v1/requests/{request_id}/rate` with `{"per_second": n}` (`null` removes the cap).
#[utoipa::path(
    post,
    path = "/v1/requests/{request_id}/rate",
    tag = "requests",
    summary = "Cap the request's deliveries per second (null removes the cap)",
    params(("request_id" = RequestId, Path, description = "The request")),
    request_body = RateBody,
    responses(
        (status = 202, description = "Sent", body = ControlResponse),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such request for this tenant", body = ErrorBody),
        (status = 409, description = "The request is not running (already completed, cancelled or failed)", body = ErrorBody),
        (status = 400, description = "The body is not valid JSON (code bad_request)", body = ErrorBody),
        (status = 415, description = "The body is not application/json (code unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "per_second is 0, or the body is malformed; field names it", body = ErrorBody),
        (status = 503, description = "Temporal is unreachable (code unavailable); retry", body = ErrorBody),
    )
)]
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

/// `POST /v1/requests/{request_id}/schedule`.
#[utoipa::path(
    post,
    path = "/v1/requests/{request_id}/schedule",
    tag = "requests",
    summary = "Move a scheduled request's start (send_at or delay_seconds); refused once it has started",
    params(("request_id" = RequestId, Path, description = "The request")),
    request_body = ScheduleBody,
    responses(
        (status = 200, description = "Moved; the request now starts at run_at_ms", body = ScheduleResponse),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such request for this tenant", body = ErrorBody),
        (status = 409, description = "The request is not scheduled: it was sent without a time, has started, or is over (code conflict)", body = ErrorBody),
        (status = 400, description = "The body is not valid JSON (code bad_request)", body = ErrorBody),
        (status = 415, description = "The body is not application/json (code unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "Not exactly one of send_at and delay_seconds, or one that cannot be honoured (field names it)", body = ErrorBody),
        (status = 503, description = "Temporal is unreachable (code unavailable); retry", body = ErrorBody),
    )
)]
pub async fn schedule(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
    ApiJson(body): ApiJson<ScheduleBody>,
) -> Result<Json<ScheduleResponse>, ApiError> {
    if body.send_at.is_none() && body.delay_seconds.is_none() {
        return Err(ApiError::field(
            "send_at",
            "give send_at (an RFC 3339 instant) or delay_seconds",
        ));
    }
    let now = now_ms();
    let run_at_ms = Schedule {
        send_at: body.send_at.as_deref(),
        delay_seconds: body.delay_seconds,
    }
    .run_at(now)
    .map_err(|e| ApiError::field(e.field, e.message))?
    .unwrap_or(now);
    let request_id = crate::requests::parse_request_id(&raw_id)?;
    let record = crate::requests::owned_request(&state, &tenant, &request_id).await?;
    let not_scheduled = || {
        ApiError::Conflict(format!(
            "request '{raw_id}' is not scheduled (it is {}); only a request sent with send_at or \
             delay_seconds can be moved, until it starts",
            record.state.as_str()
        ))
    };
    if record.state != RequestState::Scheduled {
        return Err(not_scheduled());
    }
    // The workflow decides: it refuses the move once its timer fired, however close the race.
    match state
        .orchestrator
        .reschedule(&record.request_id, run_at_ms)
        .await
    {
        Ok(()) => {}
        Err(OrchestratorError::NotRunning) => return Err(not_scheduled()),
        Err(e) => return Err(orchestrator_error(&record.request_id, e)),
    }
    // Status reads the time from the store; the workflow already holds the new one.
    state
        .store
        .reschedule_request(&record.request_id, run_at_ms)
        .await?;
    tracing::info!(request_id = %record.request_id, run_at_ms, "request rescheduled");
    Ok(Json(ScheduleResponse {
        request_id: record.request_id.to_string(),
        run_at_ms,
    }))
}

/// `POST /v1/cancel` with `{"request_id": ...}` or `{"dedupe_key": ...}`.
#[utoipa::path(
    post,
    path = "/v1/cancel",
    tag = "requests",
    summary = "Cancel a running request by request_id or dedupe_key: no send starts more than 100 ms after this returns; what was not delivered is recorded as cancelled",
    request_body = CancelBody,
    responses(
        (status = 202, description = "Sent", body = ControlResponse),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such request for this tenant, or no request with this dedupe_key", body = ErrorBody),
        (status = 409, description = "The request is not running (already completed, cancelled or failed)", body = ErrorBody),
        (status = 400, description = "The body is not valid JSON (code bad_request)", body = ErrorBody),
        (status = 415, description = "The body is not application/json (code unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "Not exactly one of request_id and dedupe_key (field body), or a field is malformed", body = ErrorBody),
        (status = 503, description = "Temporal is unreachable (code unavailable); retry", body = ErrorBody),
    )
)]
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
    if record.state == RequestState::Digested {
        return crate::digests::cancel(&state, &tenant, &record).await;
    }
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
