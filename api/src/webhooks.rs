//! `/v1/webhooks`: a tenant's webhook endpoints. Register one (its signing secret is shown once,
//! in the 201), list them, read one with its last errors, change its URL, events or whether it
//! is enabled, rotate its secret (the old one keeps signing for a grace period), delete it.
//!
//! A URL must be `http` or `https` and resolve to public addresses only, unless the operator
//! allowed that `host:port` (`webhooks.allowed_private`); see `fanout_webhooks::destination`.
//! Events and their delivery are described in `fanout_webhooks` and the README.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use fanout_domain::TenantId;
use fanout_domain::webhook::WebhookEventType;
use fanout_store::webhooks::{EndpointChange, EndpointError, WebhookEndpoint};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ErrorBody};

/// The most endpoints a tenant may have.
pub const MAX_ENDPOINTS: usize = 20;

/// The webhook routes, merged into the app's router.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_endpoint, list_endpoints))
        .routes(routes!(get_endpoint, change_endpoint, delete_endpoint))
        .routes(routes!(rotate_secret))
}

/// Body of `POST /v1/webhooks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WebhookInput)]
pub struct NewEndpointBody {
    /// Where events are posted: `http` or `https`, resolving to public addresses.
    #[schema(max_length = 2048)] // destination::MAX_URL_BYTES
    url: String,
    /// The event types to receive (default: every type).
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    event_types: Option<Vec<String>>,
}

/// Body of `PATCH /v1/webhooks/{endpoint_id}`: what to change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WebhookChange)]
pub struct ChangeBody {
    /// A new URL.
    #[serde(default)]
    #[schema(max_length = 2048)]
    url: Option<String>,
    /// A new subscription.
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    event_types: Option<Vec<String>>,
    /// `false` stops events being written for it; `true` enables it again and clears its
    /// failures, so it is tried at once.
    #[serde(default)]
    enabled: Option<bool>,
}

/// One failed call.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = WebhookError)]
pub struct ErrorView {
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// What happened: the status and the start of the body, or the transport error.
    pub error: String,
}

/// An endpoint as its tenant sees it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = WebhookEndpoint)]
pub struct EndpointView {
    /// Its id.
    pub endpoint_id: String,
    /// Where events are posted.
    pub url: String,
    /// What it receives.
    pub event_types: Vec<String>,
    /// Whether events are written for it and sent.
    pub enabled: bool,
    /// Why the platform disabled it (failing for too long), if it did.
    pub disabled_reason: Option<String>,
    /// Failed calls since its last success.
    pub failures: u32,
    /// When the first of those failed, Unix milliseconds.
    pub failing_since_ms: Option<i64>,
    /// The last errors, newest first (at most 10).
    pub last_errors: Vec<ErrorView>,
    /// Events it has taken.
    pub delivered_events: u64,
    /// Events waiting for it.
    pub pending_events: u64,
    /// Until when the secret it had before its last rotation still signs, Unix milliseconds.
    pub previous_secret_until_ms: Option<i64>,
    /// When it was created, Unix milliseconds.
    pub created_at_ms: i64,
    /// When it last changed, Unix milliseconds.
    pub updated_at_ms: i64,
}

impl From<WebhookEndpoint> for EndpointView {
    fn from(e: WebhookEndpoint) -> Self {
        Self {
            endpoint_id: e.endpoint_id,
            url: e.url,
            event_types: e
                .event_types
                .iter()
                .map(|t| t.as_str().to_owned())
                .collect(),
            enabled: e.enabled,
            disabled_reason: e.disabled_reason,
            failures: e.failures,
            failing_since_ms: e.failing_since_ms,
            last_errors: e
                .last_errors
                .into_iter()
                .map(|EndpointError { at_ms, error }| ErrorView { at_ms, error })
                .collect(),
            delivered_events: e.delivered_events,
            pending_events: e.pending_events,
            previous_secret_until_ms: e.previous_secret_until_ms,
            created_at_ms: e.created_at_ms,
            updated_at_ms: e.updated_at_ms,
        }
    }
}

/// An endpoint just created (201): the only response but a rotation's that carries a secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = CreatedWebhookEndpoint)]
pub struct CreatedView {
    /// The signing secret (`whsec_...`): store it now, it is not shown again.
    pub secret: String,
    /// The endpoint.
    #[serde(flatten)]
    pub endpoint: EndpointView,
}

/// Body of `GET /v1/webhooks`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = WebhookEndpointList)]
pub struct EndpointList {
    /// Every endpoint of the tenant, in id order.
    pub endpoints: Vec<EndpointView>,
}

/// Body of a rotation's answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = RotatedWebhookSecret)]
pub struct RotatedView {
    /// The new signing secret: store it now, it is not shown again.
    pub secret: String,
    /// Until when the old secret still signs beside it, Unix milliseconds.
    pub previous_secret_until_ms: i64,
}

fn event_types(raw: Option<Vec<String>>) -> Result<Vec<WebhookEventType>, ApiError> {
    let Some(raw) = raw else {
        return Ok(WebhookEventType::ALL.to_vec());
    };
    if raw.is_empty() {
        return Err(ApiError::field(
            "event_types",
            "event_types must name at least one type; leave it out for every type",
        ));
    }
    let mut types = Vec::with_capacity(raw.len());
    for (i, name) in raw.iter().enumerate() {
        let kind = name
            .parse::<WebhookEventType>()
            .map_err(|e| ApiError::field(format!("event_types[{i}]"), e))?;
        if !types.contains(&kind) {
            types.push(kind);
        }
    }
    types.sort();
    Ok(types)
}

async fn checked_url(state: &AppState, url: &str) -> Result<String, ApiError> {
    let parsed = fanout_webhooks::check_url(url.trim(), &state.webhooks)
        .await
        .map_err(|e| ApiError::field("url", e.to_string()))?;
    Ok(parsed.to_string())
}

fn not_found(endpoint_id: &str) -> ApiError {
    ApiError::NotFound(format!("no webhook endpoint {endpoint_id}"))
}

async fn endpoint_or_404(
    state: &AppState,
    tenant: &TenantId,
    endpoint_id: &str,
) -> Result<WebhookEndpoint, ApiError> {
    state
        .store
        .get_webhook_endpoint(tenant, endpoint_id)
        .await?
        .ok_or_else(|| not_found(endpoint_id))
}

/// `POST /v1/webhooks`: registers an endpoint; 201 with its signing secret, shown this once.
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    tag = "webhooks",
    summary = "Register a webhook endpoint",
    description = "201 with the endpoint and its signing secret, shown this once. Calls are signed by the Standard Webhooks convention (`webhook-id`, `webhook-timestamp`, `webhook-signature`: `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` keyed by the secret's base64 after `whsec_`). A call's body is `{\"events\": [...]}`, each event `{\"id\", \"type\", \"created_at_ms\", \"data\"}`; the event id is the idempotency key. At most 20 endpoints a tenant.",
    request_body = NewEndpointBody,
    responses(
        (status = 201, description = "The endpoint and its secret", body = CreatedView),
        (status = 400, description = "The body is not valid JSON (code bad_request)", body = ErrorBody),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 409, description = "The tenant has 20 endpoints already", body = ErrorBody),
        (status = 415, description = "The body is not application/json (code unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "The URL is malformed, not http(s), or resolves to a private, loopback or link-local address; or an event type is unknown. field names it", body = ErrorBody),
    )
)]
pub async fn create_endpoint(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiJson(body): ApiJson<NewEndpointBody>,
) -> Result<(StatusCode, Json<CreatedView>), ApiError> {
    let types = event_types(body.event_types)?;
    let url = checked_url(&state, &body.url).await?;
    if state.store.list_webhook_endpoints(&tenant).await?.len() >= MAX_ENDPOINTS {
        return Err(ApiError::Conflict(format!(
            "a tenant has at most {MAX_ENDPOINTS} webhook endpoints; delete one first"
        )));
    }
    let (endpoint, secret) = state
        .store
        .create_webhook_endpoint(&tenant, &url, &types)
        .await?;
    tracing::info!(tenant_id = %tenant, endpoint_id = %endpoint.endpoint_id, "webhook endpoint registered");
    Ok((
        StatusCode::CREATED,
        Json(CreatedView {
            secret,
            endpoint: endpoint.into(),
        }),
    ))
}

/// `GET /v1/webhooks`.
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    tag = "webhooks",
    summary = "List the tenant's webhook endpoints",
    responses(
        (status = 200, description = "Every endpoint", body = EndpointList),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
    )
)]
pub async fn list_endpoints(
    State(state): State<AppState>,
    Caller(tenant): Caller,
) -> Result<Json<EndpointList>, ApiError> {
    let endpoints = state.store.list_webhook_endpoints(&tenant).await?;
    Ok(Json(EndpointList {
        endpoints: endpoints.into_iter().map(EndpointView::from).collect(),
    }))
}

/// `GET /v1/webhooks/{endpoint_id}`: the endpoint, with why it fails if it does.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{endpoint_id}",
    tag = "webhooks",
    summary = "A webhook endpoint, its last errors and why it was disabled",
    params(("endpoint_id" = String, Path, description = "The endpoint")),
    responses(
        (status = 200, description = "The endpoint", body = EndpointView),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such endpoint for this tenant", body = ErrorBody),
    )
)]
pub async fn get_endpoint(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(endpoint_id): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    let endpoint = endpoint_or_404(&state, &tenant, &endpoint_id).await?;
    Ok(Json(endpoint.into()))
}

/// `PATCH /v1/webhooks/{endpoint_id}`.
#[utoipa::path(
    patch,
    path = "/v1/webhooks/{endpoint_id}",
    tag = "webhooks",
    summary = "Change a webhook endpoint's URL or events, or disable or enable it",
    params(("endpoint_id" = String, Path, description = "The endpoint")),
    request_body = ChangeBody,
    responses(
        (status = 200, description = "The endpoint", body = EndpointView),
        (status = 400, description = "The body is not valid JSON (code bad_request)", body = ErrorBody),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such endpoint for this tenant", body = ErrorBody),
        (status = 415, description = "The body is not application/json (code unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "The URL or an event type is refused, as for POST; field names it", body = ErrorBody),
    )
)]
pub async fn change_endpoint(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(endpoint_id): Path<String>,
    ApiJson(body): ApiJson<ChangeBody>,
) -> Result<Json<EndpointView>, ApiError> {
    let event_types = match body.event_types {
        Some(raw) => Some(event_types(Some(raw))?),
        None => None,
    };
    let url = match &body.url {
        Some(url) => Some(checked_url(&state, url).await?),
        None => None,
    };
    let change = EndpointChange {
        url,
        event_types,
        enabled: body.enabled,
    };
    let endpoint = state
        .store
        .change_webhook_endpoint(&tenant, &endpoint_id, &change)
        .await?
        .ok_or_else(|| not_found(&endpoint_id))?;
    Ok(Json(endpoint.into()))
}

/// `DELETE /v1/webhooks/{endpoint_id}`: the endpoint and the events waiting for it go.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{endpoint_id}",
    tag = "webhooks",
    summary = "Delete a webhook endpoint and the events waiting for it",
    params(("endpoint_id" = String, Path, description = "The endpoint")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such endpoint for this tenant", body = ErrorBody),
    )
)]
pub async fn delete_endpoint(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(endpoint_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state
        .store
        .delete_webhook_endpoint(&tenant, &endpoint_id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&endpoint_id))
    }
}

/// `POST /v1/webhooks/{endpoint_id}/rotate`: a new secret, shown once; the old one keeps
/// signing beside it for the grace period (`webhooks.rotation_grace_seconds`, a day).
#[utoipa::path(
    post,
    path = "/v1/webhooks/{endpoint_id}/rotate",
    tag = "webhooks",
    summary = "Rotate a webhook endpoint's signing secret",
    description = "200 with the new secret, shown this once. Until `previous_secret_until_ms` every call carries two signatures, one per secret, so a receiver verifies with either while it switches.",
    params(("endpoint_id" = String, Path, description = "The endpoint")),
    responses(
        (status = 200, description = "The new secret", body = RotatedView),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such endpoint for this tenant", body = ErrorBody),
    )
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(endpoint_id): Path<String>,
) -> Result<Json<RotatedView>, ApiError> {
    let grace = i64::try_from(state.webhooks.rotation_grace_seconds)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000);
    let until = fanout_store::now_ms().saturating_add(grace);
    let secret = state
        .store
        .rotate_webhook_secret(&tenant, &endpoint_id, until)
        .await?
        .ok_or_else(|| not_found(&endpoint_id))?;
    tracing::info!(tenant_id = %tenant, endpoint_id, "webhook secret rotated");
    Ok(Json(RotatedView {
        secret,
        previous_secret_until_ms: until,
    }))
}
