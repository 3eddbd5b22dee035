//! `GET/PUT /v1/settings/quiet-hours`: the window of local time in which the tenant's users
//! without their own get non-urgent notifications deferred to its end, and the template
//! categories that go out through anyone's quiet hours. A user's own window is the
//! `quiet_hours` of their profile (`PUT /v1/users/{user_id}`).

use axum::Json;
use axum::extract::State;
use fanout_domain::quiet::{MAX_BYPASS_CATEGORIES, QuietHours, QuietHoursWire, TenantQuietHours};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::templates::{MAX_CATEGORY_BYTES, is_category};

/// Body of `PUT /v1/settings/quiet-hours`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursBody {
    /// The default window (`{"start": "22:00", "end": "08:00"}`, local wall times, `HH:MM` or
    /// `HH:MM:SS`), or `null` for none.
    #[serde(default)]
    #[schema(value_type = Option<QuietHours>)]
    default: Option<QuietHoursWire>,
    /// Template categories never deferred (e.g. `security`); at most 50.
    #[serde(default)]
    #[schema(max_items = 50)]
    bypass_categories: Vec<String>,
}

/// Parses a window as sent, naming `field` (or its `start`/`end`) in the error.
pub(crate) fn parse_window(field: &str, wire: &QuietHoursWire) -> Result<QuietHours, ApiError> {
    QuietHours::parse(&wire.start, &wire.end).map_err(|e| ApiError::field(field, e.0))
}

/// `GET /v1/settings/quiet-hours`.
#[utoipa::path(
    get,
    path = "/v1/settings/quiet-hours",
    tag = "settings",
    summary = "The tenant's default quiet hours and the categories that bypass them",
    responses(
        (status = 200, description = "The setting", body = TenantQuietHours),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
    )
)]
pub async fn get_quiet_hours(
    State(state): State<AppState>,
    Caller(tenant): Caller,
) -> Result<Json<TenantQuietHours>, ApiError> {
    Ok(Json(state.store.tenant_quiet_hours(&tenant).await?))
}

/// `PUT /v1/settings/quiet-hours`.
#[utoipa::path(
    put,
    path = "/v1/settings/quiet-hours",
    tag = "settings",
    summary = "Set the tenant's default quiet hours and the categories that bypass them",
    request_body = QuietHoursBody,
    responses(
        (status = 200, description = "The setting", body = TenantQuietHours),
        (status = 400, description = "The body is not valid JSON (code bad_request)", body = ErrorBody),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 415, description = "The body is not application/json (code unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "default is not a window of two wall times, or bypass_categories has more than 50 names or one that is not a category; field names it", body = ErrorBody),
    )
)]
pub async fn put_quiet_hours(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiJson(body): ApiJson<QuietHoursBody>,
) -> Result<Json<TenantQuietHours>, ApiError> {
    let default = body
        .default
        .as_ref()
        .map(|w| parse_window("default", w))
        .transpose()?;
    if body.bypass_categories.len() > MAX_BYPASS_CATEGORIES {
        return Err(ApiError::field(
            "bypass_categories",
            format!("lists more than {MAX_BYPASS_CATEGORIES} categories"),
        ));
    }
    let mut bypass_categories: Vec<String> = Vec::new();
    for (i, name) in body.bypass_categories.into_iter().enumerate() {
        if !is_category(&name) {
            return Err(ApiError::field(
                format!("bypass_categories[{i}]"),
                format!(
                    "'{name}' is not a category: 1 to {MAX_CATEGORY_BYTES} characters of a-z, \
                     0-9, '_', '-' and '.' (as a template's category)"
                ),
            ));
        }
        if !bypass_categories.contains(&name) {
            bypass_categories.push(name);
        }
    }
    let setting = TenantQuietHours {
        default,
        bypass_categories,
    };
    if !state
        .store
        .set_tenant_quiet_hours(&tenant, &setting)
        .await?
    {
        return Err(ApiError::NotFound(format!("tenant '{tenant}' not found")));
    }
    Ok(Json(setting))
}
