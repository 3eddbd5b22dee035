//! `/v1/frequency-caps`: a tenant's caps on how often one user hears from a template category.
//!
//! A cap `{"max": 3, "period_seconds": 86400}` on `marketing` lets at most 3 deliveries of
//! `marketing` templates reach one user on one channel per window; the rest are suppressed
//! with `frequency_capped`. Windows are fixed and aligned to the Unix epoch (a day-long cap's
//! windows start at 00:00 UTC; see `fanout_domain::frequency`). Delivery claims slots exactly,
//! across concurrent requests and every worker, and reads the caps through a cache of
//! `CAP_TTL` (2 s), so a change reaches running deliveries within that.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use fanout_domain::frequency::{
    FrequencyCap, MAX_CAP_MAX, MAX_CAP_PERIOD_SECONDS, MIN_CAP_MAX, MIN_CAP_PERIOD_SECONDS,
};
use fanout_store::frequency_caps::StoredCap;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::templates::{MAX_CATEGORY_BYTES, is_category};

/// The frequency-cap routes, merged into the app's router.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(put_cap, delete_cap))
}

/// Body of `PUT /v1/frequency-caps/{category}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = FrequencyCapInput)]
pub struct CapBody {
    /// Deliveries allowed per user, channel and window.
    #[schema(minimum = 1, maximum = 10_000)] // MIN_CAP_MAX, MAX_CAP_MAX
    max: u32,
    /// The window's length in seconds, from a minute to 31 days; windows are aligned to the
    /// Unix epoch.
    #[schema(minimum = 60, maximum = 2_678_400)]
    // MIN_CAP_PERIOD_SECONDS, MAX_CAP_PERIOD_SECONDS
    period_seconds: u32,
}

/// One cap as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = FrequencyCap)]
pub struct CapView {
    /// The template category it applies to.
    #[schema(max_length = 64, pattern = "^[a-z0-9_.-]+$")] // MAX_CATEGORY_BYTES
    pub category: String,
    /// Deliveries allowed per user, channel and window.
    pub max: u32,
    /// The window's length in seconds; window start = floor(now / period) * period.
    pub period_seconds: u32,
    /// When it was last written, Unix milliseconds.
    pub updated_at_ms: i64,
}

/// Body of `GET /v1/frequency-caps`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CapList {
    /// Every cap of the tenant, by category.
    pub frequency_caps: Vec<CapView>,
}

fn view(stored: StoredCap) -> CapView {
    CapView {
        category: stored.category,
        max: stored.cap.max,
        period_seconds: stored.cap.period_seconds,
        updated_at_ms: stored.updated_at_ms,
    }
}

fn check_category(raw: &str) -> Result<(), ApiError> {
    if is_category(raw) {
        return Ok(());
    }
    Err(ApiError::field(
        "category",
        format!(
            "category must be 1 to {MAX_CATEGORY_BYTES} characters of a-z, 0-9, '_', '-' and '.' \
             (as a template's category)"
        ),
    ))
}

fn check_cap(body: &CapBody) -> Result<FrequencyCap, ApiError> {
    if !(MIN_CAP_MAX..=MAX_CAP_MAX).contains(&body.max) {
        return Err(ApiError::field(
            "max",
            format!("max must be {MIN_CAP_MAX} to {MAX_CAP_MAX}; delete the cap to remove it"),
        ));
    }
    if !(MIN_CAP_PERIOD_SECONDS..=MAX_CAP_PERIOD_SECONDS).contains(&body.period_seconds) {
        return Err(ApiError::field(
            "period_seconds",
            format!(
                "period_seconds must be {MIN_CAP_PERIOD_SECONDS} to {MAX_CAP_PERIOD_SECONDS} \
                 (a minute to 31 days)"
            ),
        ));
    }
    Ok(FrequencyCap {
        max: body.max,
        period_seconds: body.period_seconds,
    })
}

/// `GET /v1/frequency-caps`: every cap of the caller.
#[utoipa::path(
    get,
    path = "/v1/frequency-caps",
    tag = "frequency-caps",
    summary = "List the tenant's frequency caps",
    responses(
        (status = 200, description = "Every cap, by category", body = CapList),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(tenant): Caller,
) -> Result<Json<CapList>, ApiError> {
    let caps = state.store.list_frequency_caps(&tenant).await?;
    Ok(Json(CapList {
        frequency_caps: caps.into_iter().map(view).collect(),
    }))
}

/// `PUT /v1/frequency-caps/{category}` with `{"max", "period_seconds"}`.
#[utoipa::path(
    put,
    path = "/v1/frequency-caps/{category}",
    tag = "frequency-caps",
    summary = "Cap how many deliveries of a template category one user gets per channel and window",
    description = "At most `max` deliveries of templates of this category reach one user on one channel per window of `period_seconds`; the rest are suppressed with `frequency_capped`. Windows are fixed and aligned to the Unix epoch: window start = floor(now / period) * period. Replaces any cap on the category; running deliveries see the change within 2 s. Slots already used in the current window count against the new cap when the period is unchanged.",
    params(("category" = String, Path, description = "A template category (a-z, 0-9, '_', '-', '.'; at most 64)")),
    request_body = CapBody,
    responses(
        (status = 200, description = "The cap", body = CapView),
        (status = 400, description = "The body is not valid JSON (code bad_request)", body = ErrorBody),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 415, description = "The body is not application/json (code unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "category, max (1 to 10,000) or period_seconds (60 to 2,678,400) is out of bounds or malformed; field names it", body = ErrorBody),
    )
)]
pub async fn put_cap(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(category): Path<String>,
    ApiJson(body): ApiJson<CapBody>,
) -> Result<Json<CapView>, ApiError> {
    check_category(&category)?;
    let cap = check_cap(&body)?;
    let stored = state
        .store
        .set_frequency_cap(&tenant, &category, cap)
        .await?;
    tracing::info!(
        tenant_id = %tenant,
        category,
        max = cap.max,
        period_seconds = cap.period_seconds,
        "frequency cap set"
    );
    Ok(Json(view(stored)))
}

/// `DELETE /v1/frequency-caps/{category}`.
#[utoipa::path(
    delete,
    path = "/v1/frequency-caps/{category}",
    tag = "frequency-caps",
    summary = "Remove a category's frequency cap",
    params(("category" = String, Path, description = "A template category")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No cap on the category", body = ErrorBody),
        (status = 422, description = "category is malformed", body = ErrorBody),
    )
)]
pub async fn delete_cap(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(category): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_category(&category)?;
    if !state.store.delete_frequency_cap(&tenant, &category).await? {
        return Err(ApiError::NotFound(
            "no frequency cap on this category".into(),
        ));
    }
    tracing::info!(tenant_id = %tenant, category, "frequency cap removed");
    Ok(StatusCode::NO_CONTENT)
}
