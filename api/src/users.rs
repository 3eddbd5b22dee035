//! `PUT/GET /v1/users/{user_id}`: recipient profiles and their channel addresses.

use axum::Json;
use axum::extract::{Path, State};
use fanout_domain::UserId;
use fanout_domain::user::{EmailAddress, User};
use serde::Deserialize;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson};

/// A profile as sent. Absent fields are cleared: PUT replaces the profile.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserBody {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    locale: Option<String>,
}

/// `PUT /v1/users/{user_id}`: creates or replaces a user.
pub async fn put_user(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
    ApiJson(body): ApiJson<UserBody>,
) -> Result<Json<User>, ApiError> {
    let user = User {
        user_id: UserId::parse(&raw_id)?,
        email: body.email.as_deref().map(EmailAddress::parse).transpose()?,
        name: body.name,
        locale: body.locale,
        timezone: None,
        devices: Vec::new(),
    };
    state.store.upsert_user(&tenant, &user).await?;
    Ok(Json(user))
}

/// `GET /v1/users/{user_id}`.
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
