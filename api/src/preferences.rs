//! `/v1/users/{user_id}/preferences`: which channels, and which template categories on each
//! channel, a user wants to hear from.
//!
//! The document is `{"user_id", "channels": {channel: bool}, "categories": {category: {channel:
//! bool}}}`. A category rule overrides its channel's default in either direction, and a missing
//! rule allows (see `fanout_store::preferences`). `PUT` replaces the whole document;
//! `POST .../opt-out` and `.../opt-in` set one rule: `{"channel"}` sets the channel's default,
//! `{"category"}` sets that category on every channel, both set that category on that channel.
//!
//! The user need not exist: products record choices before they create users here (or before
//! the user's first notification), so an unknown id reads as the empty document (everything
//! allowed) and writes succeed. Erasing the user (`DELETE /v1/users/{id}`) erases them too.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use fanout_domain::{Channel, UserId};
use fanout_store::preferences::{Category, Preferences};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson};

/// The most categories one document may hold.
pub const MAX_CATEGORIES: usize = 200;

/// The preference routes, merged into the app's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/users/{user_id}/preferences",
            get(get_preferences).put(put_preferences),
        )
        .route("/v1/users/{user_id}/preferences/opt-out", post(opt_out))
        .route("/v1/users/{user_id}/preferences/opt-in", post(opt_in))
}

/// A user's preferences as the API returns them.
#[derive(Debug, Serialize, Deserialize)]
pub struct PreferencesDocument {
    /// Whose they are.
    pub user_id: UserId,
    /// The rules.
    #[serde(flatten)]
    pub preferences: Preferences,
}

/// Body of `PUT /v1/users/{user_id}/preferences`: the whole document. Keys are checked by hand
/// so an unknown channel's error names it (`channels.sms`, `categories.news.sms`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreferencesBody {
    /// Optional, so a document read with GET can be sent back; must match the path.
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    channels: BTreeMap<String, bool>,
    #[serde(default)]
    categories: BTreeMap<String, BTreeMap<String, bool>>,
}

/// Body of `POST .../opt-out` and `.../opt-in`: at least one of the two.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptBody {
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    category: Option<String>,
}

fn parse_channel(field: String, raw: &str) -> Result<Channel, ApiError> {
    raw.parse().map_err(|e| ApiError::InvalidField {
        message: format!("{field}: {e}"),
        field,
    })
}

fn parse_category(field: String, raw: &str) -> Result<Category, ApiError> {
    Category::parse(raw).map_err(|e| ApiError::InvalidField {
        message: format!("{field}: {}", e.reason),
        field,
    })
}

/// Parses the body into a document, naming the first offending key.
fn parse_document(user_id: &UserId, body: PreferencesBody) -> Result<Preferences, ApiError> {
    if body
        .user_id
        .as_deref()
        .is_some_and(|id| id != user_id.as_str())
    {
        return Err(ApiError::InvalidField {
            field: "user_id".into(),
            message: format!("user_id must be '{user_id}' as in the path, or absent"),
        });
    }
    if body.categories.len() > MAX_CATEGORIES {
        return Err(ApiError::InvalidField {
            field: "categories".into(),
            message: format!("categories must hold at most {MAX_CATEGORIES} entries"),
        });
    }
    let mut prefs = Preferences::default();
    for (raw, enabled) in &body.channels {
        let channel = parse_channel(format!("channels.{raw}"), raw)?;
        prefs.channels.insert(channel, *enabled);
    }
    for (raw_category, rules) in &body.categories {
        let category = parse_category(format!("categories.{raw_category}"), raw_category)?;
        let parsed = prefs.categories.entry(category).or_default();
        for (raw, enabled) in rules {
            let channel = parse_channel(format!("categories.{raw_category}.{raw}"), raw)?;
            parsed.insert(channel, *enabled);
        }
    }
    Ok(prefs)
}

/// `GET /v1/users/{user_id}/preferences`: the document; empty for a user who set none.
pub async fn get_preferences(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
) -> Result<Json<PreferencesDocument>, ApiError> {
    let user_id = UserId::parse(&raw_id)?;
    let preferences = state.store.get_preferences(&tenant, &user_id).await?;
    Ok(Json(PreferencesDocument {
        user_id,
        preferences,
    }))
}

/// `PUT /v1/users/{user_id}/preferences`: replaces the whole document.
pub async fn put_preferences(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
    ApiJson(body): ApiJson<PreferencesBody>,
) -> Result<Json<PreferencesDocument>, ApiError> {
    let user_id = UserId::parse(&raw_id)?;
    let preferences = parse_document(&user_id, body)?;
    state
        .store
        .replace_preferences(&tenant, &user_id, &preferences)
        .await?;
    Ok(Json(PreferencesDocument {
        user_id,
        preferences,
    }))
}

/// Sets the rule `body` selects to `enabled` and returns the document.
async fn set(
    state: &AppState,
    tenant: &fanout_domain::TenantId,
    raw_id: &str,
    body: OptBody,
    enabled: bool,
) -> Result<Json<PreferencesDocument>, ApiError> {
    let user_id = UserId::parse(raw_id)?;
    if body.channel.is_none() && body.category.is_none() {
        return Err(ApiError::InvalidField {
            field: "channel".into(),
            message: "give a channel, a category, or both".into(),
        });
    }
    let channel = body
        .channel
        .as_deref()
        .map(|raw| parse_channel("channel".into(), raw))
        .transpose()?;
    let category = body
        .category
        .as_deref()
        .map(|raw| parse_category("category".into(), raw))
        .transpose()?;
    let preferences = state
        .store
        .set_preference(tenant, &user_id, channel, category.as_ref(), enabled)
        .await?;
    Ok(Json(PreferencesDocument {
        user_id,
        preferences,
    }))
}

/// `POST /v1/users/{user_id}/preferences/opt-out`.
pub async fn opt_out(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
    ApiJson(body): ApiJson<OptBody>,
) -> Result<Json<PreferencesDocument>, ApiError> {
    set(&state, &tenant, &raw_id, body, false).await
}

/// `POST /v1/users/{user_id}/preferences/opt-in`.
pub async fn opt_in(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
    ApiJson(body): ApiJson<OptBody>,
) -> Result<Json<PreferencesDocument>, ApiError> {
    set(&state, &tenant, &raw_id, body, true).await
}
