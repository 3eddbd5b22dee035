//! `PUT/GET /v1/users/{user_id}`: recipient profiles and their channel addresses.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use fanout_domain::UserId;
use fanout_domain::limits::{
    MAX_DEVICES_PER_USER, MAX_LOCALE_BYTES, MAX_USER_NAME_BYTES, check_bytes, check_count,
};
use fanout_domain::user::{Device, DeviceToken, EmailAddress, Platform, Timezone, User};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ErrorBody};

/// A profile as sent. Absent fields are cleared: PUT replaces the profile.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UserInput)]
pub struct UserBody {
    /// Where email goes; without one, email to this user is suppressed.
    #[serde(default)]
    #[schema(value_type = Option<EmailAddress>)]
    email: Option<String>,
    /// Display name, available to templates as `user.name`.
    #[serde(default)]
    #[schema(max_length = 256)] // limits::MAX_USER_NAME_BYTES
    name: Option<String>,
    /// BCP 47 locale (e.g. `en`, `fr-CA`), available to templates as `user.locale`.
    #[serde(default)]
    #[schema(max_length = 35)] // limits::MAX_LOCALE_BYTES
    locale: Option<String>,
    /// Where the user lives in time.
    #[serde(default)]
    #[schema(value_type = Option<Timezone>)]
    timezone: Option<String>,
    /// A daily window of the user's local time (`{"start": "22:00", "end": "08:00"}`) in which
    /// notifications below `high` priority wait for its end; without one, the tenant's default
    /// (`/v1/settings/quiet-hours`) applies.
    #[serde(default)]
    #[schema(value_type = Option<fanout_domain::quiet::QuietHours>)]
    quiet_hours: Option<fanout_domain::quiet::QuietHoursWire>,
    /// Push devices; a device listed twice is kept once.
    #[serde(default)]
    #[schema(max_items = 20)] // limits::MAX_DEVICES_PER_USER
    devices: Option<Vec<DeviceBody>>,
}

/// A push device as sent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DeviceInput)]
pub struct DeviceBody {
    /// Which push service delivers to it.
    platform: Platform,
    /// The token that service issued.
    #[schema(value_type = DeviceToken)]
    token: String,
}

/// Parses the devices, naming the offending one (`devices[2].token`). A device sent twice is
/// kept once, so it is never pushed to twice.
fn parse_devices(raw: Vec<DeviceBody>) -> Result<Vec<Device>, ApiError> {
    let mut devices: Vec<Device> = Vec::with_capacity(raw.len());
    for (i, device) in raw.into_iter().enumerate() {
        let token = DeviceToken::parse(&device.token).map_err(|e| ApiError::InvalidField {
            field: format!("devices[{i}].token"),
            message: format!("devices[{i}].token {}", e.reason),
        })?;
        let device = Device {
            platform: device.platform,
            token,
        };
        if !devices.contains(&device) {
            devices.push(device);
        }
    }
    Ok(devices)
}

/// `PUT /v1/users/{user_id}`: creates or replaces a user.
#[utoipa::path(
    put,
    path = "/v1/users/{user_id}",
    tag = "users",
    summary = "Create or replace a user (absent fields are cleared)",
    params(("user_id" = UserId, Path, description = "The tenant's id for the user")),
    request_body = UserBody,
    responses(
        (status = 200, description = "The user as stored", body = User),
        (status = 400, description = "The body is not valid JSON (code bad_request)", body = ErrorBody), (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody), (status = 415, description = "The body is not application/json (code unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "A field is invalid or over its limit (the user id, email, name, locale, timezone, quiet_hours, devices[i].token, more than 20 devices); field names it", body = ErrorBody),
    )
)]
pub async fn put_user(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
    ApiJson(body): ApiJson<UserBody>,
) -> Result<Json<User>, ApiError> {
    let devices = body.devices.unwrap_or_default();
    check_count("devices", devices.len(), MAX_DEVICES_PER_USER, "devices")?;
    if let Some(name) = &body.name {
        check_bytes("name", name, MAX_USER_NAME_BYTES)?;
    }
    if let Some(locale) = &body.locale {
        check_bytes("locale", locale, MAX_LOCALE_BYTES)?;
    }
    let user = User {
        user_id: UserId::parse(&raw_id)?,
        email: body.email.as_deref().map(EmailAddress::parse).transpose()?,
        name: body.name,
        locale: body.locale,
        timezone: body
            .timezone
            .as_deref()
            .map(|zone| crate::local_time::known_zone("timezone", zone))
            .transpose()?,
        devices: parse_devices(devices)?,
        quiet_hours: body
            .quiet_hours
            .as_ref()
            .map(|w| crate::quiet_hours::parse_window("quiet_hours", w))
            .transpose()?,
    };
    state.store.upsert_user(&tenant, &user).await?;
    Ok(Json(user))
}

/// `GET /v1/users/{user_id}`.
#[utoipa::path(
    get,
    path = "/v1/users/{user_id}",
    tag = "users",
    summary = "Read a user",
    params(("user_id" = UserId, Path, description = "The tenant's id for the user")),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub async fn get_user(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
) -> Result<Json<User>, ApiError> {
    let not_found = || ApiError::NotFound(format!("user '{raw_id}' not found"));
    let user_id = UserId::parse(&raw_id).map_err(|_| not_found())?;
    state
        .store
        .get_user(&tenant, &user_id)
        .await?
        .map(Json)
        .ok_or_else(not_found)
}

/// `DELETE /v1/users/{user_id}`: erases the user (GDPR/CCPA): profile, devices, inbox, follows
/// and segment memberships; receipts keep only the opaque id. Requests already running find no
/// profile for them and suppress their deliveries. 204, or 404 if there was no such user.
#[utoipa::path(
    delete,
    path = "/v1/users/{user_id}",
    tag = "users",
    summary = "Erase a user (GDPR/CCPA): profile, devices, inbox, follows and segment memberships; running requests suppress them from then on",
    params(("user_id" = UserId, Path, description = "The tenant's id for the user")),
    responses(
        (status = 204, description = "Erased"),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub async fn delete_user(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let not_found = || ApiError::NotFound(format!("user '{raw_id}' not found"));
    let user_id = UserId::parse(&raw_id).map_err(|_| not_found())?;
    if !state.store.delete_user(&tenant, &user_id).await? {
        return Err(not_found());
    }
    tracing::info!(tenant = %tenant, "user erased");
    Ok(StatusCode::NO_CONTENT)
}
