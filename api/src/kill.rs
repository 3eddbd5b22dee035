//! Kill switches: one call to stop a channel or a template.
//!
//! - `POST /v1/kill-switches/channels/{channel}` with `{"disabled": true, "reason": ...}` holds
//!   every delivery of the caller's tenant on the channel; `GET /v1/kill-switches/channels`
//!   lists the switches that apply to the tenant (its own and global ones). Held deliveries stay
//!   pending and are retried (see `fanout_activities::delivery`), so turning the channel back on
//!   releases them; nothing is dropped or dead-lettered. Deliveries see a change within about a
//!   second (their cache of the switches), plus the page workflow's wait before its next round.
//!   Global switches live in the same table and are set by an operator, not by a tenant.
//! - `POST /v1/templates/{id}/disable` with `{"running": "pause" | "cancel"}` makes
//!   `POST /v1/notify` refuse the template (409), then finds the template's running requests
//!   with a Temporal visibility query on the search attributes and pauses them (the pause
//!   signal) or cancels them (written to the store first, as `POST /v1/cancel` does, then the
//!   workflow is cancelled). `POST /v1/templates/{id}/enable` accepts the template again and
//!   resumes exactly the requests its disable paused; cancelled requests stay cancelled.
//!
//! The switch is written before running requests are looked up, so a request accepted after
//! the call cannot escape it. Visibility lags the start of a workflow by a moment: a request
//! accepted just before the disable may not be listed yet, and calling disable again catches
//! it (the call is idempotent).

use axum::Json;
use axum::extract::{Path, State};
use fanout_domain::{Channel, RequestId, TemplateId, TenantId};
use fanout_store::Store;
use fanout_store::switches::{ChannelSwitch, RunningAction, SwitchScope};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::{Caller, Operator};
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::orchestrator::{Control, OrchestratorError};
use crate::templates::existing_template;

/// The longest reason kept with a switch.
const MAX_REASON: usize = 500;

/// The kill-switch routes, merged into the app's router.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_channels))
        .routes(routes!(set_channel))
        .routes(routes!(set_global_channel))
        .routes(routes!(disable_template))
        .routes(routes!(enable_template))
}

/// Body of `POST /v1/kill-switches/channels/{channel}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ChannelSwitchInput)]
pub struct ChannelSwitchBody {
    /// Whether deliveries on the channel are held.
    disabled: bool,
    /// Why, kept with the switch.
    #[serde(default)]
    #[schema(max_length = 500)] // MAX_REASON
    reason: Option<String>,
}

/// The switches that apply to the caller's tenant.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChannelSwitches {
    /// Global switches first, then the tenant's, each by channel.
    pub switches: Vec<ChannelSwitch>,
}

/// Body of `POST /v1/templates/{template_id}/disable`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DisableTemplateInput)]
pub struct DisableTemplateBody {
    /// What happens to the template's running requests.
    running: RunningAction,
    /// Why, kept with the switch.
    #[serde(default)]
    #[schema(max_length = 500)] // MAX_REASON
    reason: Option<String>,
}

/// What a template disable or enable did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = TemplateSwitch)]
pub struct TemplateSwitchResponse {
    /// The template.
    #[schema(value_type = TemplateId)]
    pub template_id: String,
    /// Whether new requests of the template are refused now.
    pub disabled: bool,
    /// What the disable did to running requests (`pause` or `cancel`); absent on enable.
    pub running: Option<RunningAction>,
    /// The reason given with the disable.
    pub reason: Option<String>,
    /// Requests acted on: paused or cancelled by a disable, resumed by an enable.
    pub request_ids: Vec<String>,
    /// Requests that could not be reached (Temporal unavailable); repeat the call, or control
    /// them one by one.
    pub failed: Vec<String>,
}

fn reason(raw: Option<String>) -> Result<Option<String>, ApiError> {
    let reason = raw.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty());
    if reason.as_ref().is_some_and(|r| r.len() > MAX_REASON) {
        return Err(ApiError::InvalidField {
            field: "reason".into(),
            message: format!("reason must be at most {MAX_REASON} bytes"),
        });
    }
    Ok(reason)
}

/// `GET /v1/kill-switches/channels`.
#[utoipa::path(
    get,
    path = "/v1/kill-switches/channels",
    tag = "kill-switches",
    summary = "List the channel kill switches that apply to the caller's tenant: global ones, then its own",
    responses(
        (status = 200, description = "The switches", body = ChannelSwitches),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
    )
)]
pub async fn list_channels(
    State(state): State<AppState>,
    Caller(tenant): Caller,
) -> Result<Json<ChannelSwitches>, ApiError> {
    let switches = state.store.list_channel_switches(&tenant).await?;
    Ok(Json(ChannelSwitches { switches }))
}

/// `POST /v1/kill-switches/channels/{channel}`: the caller's tenant's channel.
#[utoipa::path(
    post,
    path = "/v1/kill-switches/channels/{channel}",
    tag = "kill-switches",
    summary = "Switch a channel off (or back on) for the caller's tenant. While off, deliveries on it are held (pending, retried later, never dropped or dead-lettered); switching it back on releases them. Deliveries see the change within about a second",
    params(("channel" = Channel, Path, description = "The channel")),
    request_body = ChannelSwitchBody,
    responses(
        (status = 200, description = "The switch", body = ChannelSwitch),
        (status = 400, description = "The body is not valid JSON (code bad_request)", body = ErrorBody),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 415, description = "The body is not application/json (code unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "An unknown channel, or a reason over 500 bytes; field names it", body = ErrorBody),
    )
)]
pub async fn set_channel(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_channel): Path<String>,
    ApiJson(body): ApiJson<ChannelSwitchBody>,
) -> Result<Json<ChannelSwitch>, ApiError> {
    switch_channel(&state, SwitchScope::Tenant(&tenant), &raw_channel, body).await
}

/// `POST /v1/admin/kill-switches/channels/{channel}`: the channel for every tenant (operator).
#[utoipa::path(
    post,
    path = "/v1/admin/kill-switches/channels/{channel}",
    tag = "admin",
    summary = "Switch a channel off (or back on) for every tenant (operator, admin key)",
    security(("admin_key" = [])),
    params(("channel" = Channel, Path, description = "The channel")),
    request_body = ChannelSwitchBody,
    responses(
        (status = 200, description = "The switch", body = ChannelSwitch),
        (status = 400, description = "The body is not valid JSON (code bad_request)", body = ErrorBody),
        (status = 401, description = "Not the admin key; a tenant API key is refused too (code unauthorized)", body = ErrorBody),
        (status = 404, description = "The admin API is disabled: no admin key is configured", body = ErrorBody),
        (status = 415, description = "The body is not application/json (code unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "An unknown channel, or a reason over 500 bytes; field names it", body = ErrorBody),
    )
)]
pub async fn set_global_channel(
    State(state): State<AppState>,
    _operator: Operator,
    Path(raw_channel): Path<String>,
    ApiJson(body): ApiJson<ChannelSwitchBody>,
) -> Result<Json<ChannelSwitch>, ApiError> {
    switch_channel(&state, SwitchScope::Global, &raw_channel, body).await
}

async fn switch_channel(
    state: &AppState,
    scope: SwitchScope<'_>,
    raw_channel: &str,
    body: ChannelSwitchBody,
) -> Result<Json<ChannelSwitch>, ApiError> {
    let channel: Channel = raw_channel.parse().map_err(|_| ApiError::InvalidField {
        field: "channel".into(),
        message: format!("'{raw_channel}' is not a channel: use email, push or in_app"),
    })?;
    let reason = reason(body.reason)?;
    let switch = state
        .store
        .set_channel_switch(scope, channel, body.disabled, reason.as_deref())
        .await?;
    tracing::warn!(scope = %switch.scope, %channel, disabled = body.disabled, "channel switch set");
    Ok(Json(switch))
}

/// `POST /v1/templates/{template_id}/disable`.
#[utoipa::path(
    post,
    path = "/v1/templates/{template_id}/disable",
    tag = "templates",
    summary = "Disable a template: new notifies of it are refused with 409, and its running requests (found by a Temporal visibility query) are paused or cancelled. Idempotent",
    params(("template_id" = TemplateId, Path, description = "The template")),
    request_body = DisableTemplateBody,
    responses(
        (status = 200, description = "What was done", body = TemplateSwitchResponse),
        (status = 400, description = "The body is not valid JSON (code bad_request)", body = ErrorBody),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such template", body = ErrorBody),
        (status = 415, description = "The body is not application/json (code unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "running is not pause or cancel, or a reason over 500 bytes; field names it", body = ErrorBody),
        (status = 503, description = "The template is disabled, but its running requests could not be listed; repeat the call", body = ErrorBody),
    )
)]
pub async fn disable_template(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
    ApiJson(body): ApiJson<DisableTemplateBody>,
) -> Result<Json<TemplateSwitchResponse>, ApiError> {
    let template_id = existing_template(&state, &tenant, &raw_id).await?;
    let reason = reason(body.reason)?;
    // Refuse new requests first, so none starts after the running ones are listed.
    state
        .store
        .disable_template(&tenant, &template_id, body.running, reason.as_deref())
        .await?;
    let running = state
        .orchestrator
        .running_requests(&tenant, &template_id)
        .await
        .map_err(|e| {
            ApiError::Unavailable(format!(
                "the template is disabled, but its running requests could not be listed ({e}); \
                 repeat the call"
            ))
        })?;

    let mut acted = Vec::new();
    let mut failed = Vec::new();
    for request_id in running {
        let result = match body.running {
            RunningAction::Pause => {
                state
                    .orchestrator
                    .control(&request_id, Control::Pause)
                    .await
            }
            RunningAction::Cancel => {
                // As `POST /v1/cancel`: every send checks the store, so this stops them first.
                state.store.mark_cancelled(&request_id).await?;
                state.orchestrator.cancel(&request_id).await
            }
        };
        match result {
            Ok(()) => acted.push(request_id),
            // It finished between the listing and now: nothing to stop.
            Err(OrchestratorError::NotRunning) => {}
            Err(OrchestratorError::Unavailable(why)) => {
                tracing::warn!(%request_id, error = %why, "kill switch could not reach a request");
                failed.push(request_id);
            }
        }
    }
    if body.running == RunningAction::Pause {
        state
            .store
            .add_paused_requests(&tenant, &template_id, &acted)
            .await?;
    }
    tracing::warn!(
        tenant_id = %tenant,
        %template_id,
        running = body.running.as_str(),
        acted = acted.len(),
        failed = failed.len(),
        "template disabled"
    );
    Ok(Json(TemplateSwitchResponse {
        template_id: template_id.to_string(),
        disabled: true,
        running: Some(body.running),
        reason,
        request_ids: ids(&acted),
        failed: ids(&failed),
    }))
}

/// `POST /v1/templates/{template_id}/enable`: idempotent; resumes what the disable paused.
#[utoipa::path(
    post,
    path = "/v1/templates/{template_id}/enable",
    tag = "templates",
    summary = "Enable a disabled template again and resume the requests its disable paused (cancelled ones stay cancelled). Idempotent",
    params(("template_id" = TemplateId, Path, description = "The template")),
    responses(
        (status = 200, description = "What was done", body = TemplateSwitchResponse),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such template", body = ErrorBody),
    )
)]
pub async fn enable_template(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
) -> Result<Json<TemplateSwitchResponse>, ApiError> {
    let template_id = existing_template(&state, &tenant, &raw_id).await?;
    let paused = state
        .store
        .enable_template(&tenant, &template_id)
        .await?
        .unwrap_or_default();
    let mut resumed = Vec::new();
    let mut failed = Vec::new();
    for request_id in paused {
        match state
            .orchestrator
            .control(&request_id, Control::Resume)
            .await
        {
            Ok(()) => resumed.push(request_id),
            // Cancelled or finished while the template was off.
            Err(OrchestratorError::NotRunning) => {}
            Err(OrchestratorError::Unavailable(why)) => {
                tracing::warn!(%request_id, error = %why, "could not resume a request");
                failed.push(request_id);
            }
        }
    }
    tracing::warn!(tenant_id = %tenant, %template_id, resumed = resumed.len(), "template enabled");
    Ok(Json(TemplateSwitchResponse {
        template_id: template_id.to_string(),
        disabled: false,
        running: None,
        reason: None,
        request_ids: ids(&resumed),
        failed: ids(&failed),
    }))
}

/// Refuses a new request of a disabled template with 409, saying how to turn it back on.
pub async fn refuse_disabled_template(
    store: &Store,
    tenant: &TenantId,
    template_id: &TemplateId,
) -> Result<(), ApiError> {
    match store.get_template_switch(tenant, template_id).await? {
        Some(switch) if switch.disabled => {
            let why = switch.reason.map(|r| format!(" ({r})")).unwrap_or_default();
            Err(ApiError::Conflict(format!(
                "template '{template_id}' is disabled{why}; enable it with \
                 POST /v1/templates/{template_id}/enable"
            )))
        }
        _ => Ok(()),
    }
}

fn ids(ids: &[RequestId]) -> Vec<String> {
    ids.iter().map(ToString::to_string).collect()
}
