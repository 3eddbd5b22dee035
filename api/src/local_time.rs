//! `GET/PUT /v1/settings/timezone`: the zone a tenant's users without one of their own get
//! local-time sends (`send_at_local`) in. Without it, UTC.

use axum::Json;
use axum::extract::State;
use fanout_domain::timing::{self, FALLBACK_TIMEZONE};
use fanout_domain::user::Timezone;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ErrorBody};

/// The tenant's default zone.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TimezoneSetting {
    /// The tenant's own default; `null` when it set none.
    #[schema(value_type = Option<String>, example = "Europe/Paris")]
    pub default_timezone: Option<String>,
    /// The zone users without one get: the default, else `UTC`.
    pub effective: String,
}

/// Body of `PUT /v1/settings/timezone`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimezoneBody {
    /// An IANA zone name (e.g. `Europe/Paris`), or `null` to fall back to UTC.
    #[schema(value_type = Option<String>, required = true, example = "Europe/Paris")]
    default_timezone: Option<String>,
}

/// Checks a zone name: its shape (as user profiles are) and that the bundled IANA database
/// knows it, so a typo is a 422 now rather than UTC later.
pub(crate) fn known_zone(field: &str, raw: &str) -> Result<Timezone, ApiError> {
    let zone = Timezone::parse(raw).map_err(|e| ApiError::field(field, e.reason))?;
    if timing::zone(zone.as_str()).is_none() {
        return Err(ApiError::field(
            field,
            format!(
                "'{raw}' is not a time zone of the IANA database; use a name like Europe/Paris or America/New_York"
            ),
        ));
    }
    Ok(zone)
}

fn setting(default_timezone: Option<String>) -> TimezoneSetting {
    TimezoneSetting {
        effective: default_timezone
            .clone()
            .unwrap_or_else(|| FALLBACK_TIMEZONE.to_owned()),
        default_timezone,
    }
}

/// `GET /v1/settings/timezone`.
#[utoipa::path(
    get,
    path = "/v1/settings/timezone",
    tag = "settings",
    summary = "The zone the tenant's users without one get local-time sends in",
    responses(
        (status = 200, description = "The setting", body = TimezoneSetting),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
    )
)]
pub async fn get_timezone(
    State(state): State<AppState>,
    Caller(tenant): Caller,
) -> Result<Json<TimezoneSetting>, ApiError> {
    Ok(Json(setting(state.store.default_timezone(&tenant).await?)))
}

/// `PUT /v1/settings/timezone`.
#[utoipa::path(
    put,
    path = "/v1/settings/timezone",
    tag = "settings",
    summary = "Set or clear the tenant's default time zone",
    request_body = TimezoneBody,
    responses(
        (status = 200, description = "The setting", body = TimezoneSetting),
        (status = 400, description = "The body is not valid JSON (code bad_request)", body = ErrorBody),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 415, description = "The body is not application/json (code unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "default_timezone is not a zone of the IANA database; field names it", body = ErrorBody),
    )
)]
pub async fn put_timezone(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiJson(body): ApiJson<TimezoneBody>,
) -> Result<Json<TimezoneSetting>, ApiError> {
    let zone = body
        .default_timezone
        .as_deref()
        .map(|raw| known_zone("default_timezone", raw))
        .transpose()?;
    let name = zone.map(|z| z.as_str().to_owned());
    if !state
        .store
        .set_default_timezone(&tenant, name.as_deref())
        .await?
    {
        return Err(ApiError::NotFound(format!("tenant '{tenant}' not found")));
    }
    Ok(Json(setting(name)))
}
