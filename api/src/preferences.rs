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

use axum::Json;
use axum::extract::{Path, State};
use fanout_domain::{Channel, UserId};
use fanout_store::preferences::{Category, Preferences};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ErrorBody};

/// The most categories one document may hold.
pub const MAX_CATEGORIES: usize = 200;

/// The preference routes, merged into the app's router.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_preferences, put_preferences))
        .routes(routes!(opt_out))
        .routes(routes!(opt_in))
}

/// A user's preferences as the API returns them.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = Preferences)]
pub struct PreferencesDocument {
    /// Whose they are.
    pub user_id: UserId,
    /// The rules.
    #[serde(flatten)]
    pub preferences: Preferences,
}

/// Body of `PUT /v1/users/{user_id}/preferences`: the whole document. Keys are checked by hand
/// so an unknown channel's error names it (`channels.sms`, `categories.news.sms`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PreferencesInput)]
pub struct PreferencesBody {
    /// Optional, so a document read with GET can be sent back; must match the path.
    #[serde(default)]
    #[schema(value_type = Option<UserId>)]
    user_id: Option<String>,
    /// Each channel's default: false turns the channel off for categories without a rule of
    /// their own.
    #[serde(default)]
    #[schema(schema_with = channel_rules_schema)]
    channels: BTreeMap<String, bool>,
    /// Rules per template category and channel, at most 200 categories; they override the
    /// channel defaults.
    #[serde(default)]
    #[schema(schema_with = category_rules_schema)]
    categories: BTreeMap<String, BTreeMap<String, bool>>,
}

/// Body of `POST .../opt-out` and `.../opt-in`: at least one of the two.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = OptInput)]
pub struct OptBody {
    /// The channel.
    #[serde(default)]
    #[schema(value_type = Option<Channel>)]
    channel: Option<String>,
    /// The template category.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]+$")]
    // Category::MAX_LEN, Category::PATTERN
    category: Option<String>,
}

fn channel_rules_schema() -> utoipa::openapi::Object {
    fanout_domain::channel::keyed_by_channel(
        utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::Type::Boolean),
    )
}

fn category_rules_schema() -> utoipa::openapi::Object {
    let mut schema = fanout_store::preferences::category_rules_schema();
    schema.max_properties = Some(MAX_CATEGORIES);
    schema
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
#[utoipa::path(
    get,
    path = "/v1/users/{user_id}/preferences",
    tag = "preferences",
    summary = "A user's notification preferences; the empty document (everything allowed) for a user who set none, whether or not the user exists",
    params(("user_id" = UserId, Path, description = "The user (who need not exist yet)")),
    responses(
        (status = 200, description = "The document", body = PreferencesDocument),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 422, description = "The user id is invalid", body = ErrorBody),
    )
)]
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
#[utoipa::path(
    put,
    path = "/v1/users/{user_id}/preferences",
    tag = "preferences",
    summary = "Replace a user's whole preferences document; the user need not exist yet",
    description = "A category rule overrides its channel's default in either direction; a missing rule allows. An unknown channel or a malformed category is a 422 naming it (`channels.sms`, `categories.news.sms`, `categories.bad name`).",
    params(("user_id" = UserId, Path, description = "The user (who need not exist yet)")),
    request_body = PreferencesBody,
    responses(
        (status = 200, description = "The document", body = PreferencesDocument),
        (status = 400, description = "The body is not valid JSON (code bad_request)", body = ErrorBody),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 415, description = "The body is not application/json (code unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "An unknown channel or a malformed category, named (`channels.sms`, `categories.news.sms`, `categories.bad name`), more than 200 categories, or a user_id unlike the path's", body = ErrorBody),
    )
)]
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
#[utoipa::path(
    post,
    path = "/v1/users/{user_id}/preferences/opt-out",
    tag = "preferences",
    summary = "Opt a user out of a channel, a category (on every channel), or a category on one channel",
    description = "`{\"channel\"}` sets the channel's default, `{\"category\"}` sets that category's rule on every channel, both set the category's rule on that channel (rules set to false). At least one is required. Returns the resulting document.",
    params(("user_id" = UserId, Path, description = "The user (who need not exist yet)")),
    request_body = OptBody,
    responses(
        (status = 200, description = "The resulting document", body = PreferencesDocument),
        (status = 400, description = "The body is not valid JSON (code bad_request)", body = ErrorBody),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 415, description = "The body is not application/json (code unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "Neither channel nor category, an unknown channel or a malformed category; field names it", body = ErrorBody),
    )
)]
pub async fn opt_out(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
    ApiJson(body): ApiJson<OptBody>,
) -> Result<Json<PreferencesDocument>, ApiError> {
    set(&state, &tenant, &raw_id, body, false).await
}

/// `POST /v1/users/{user_id}/preferences/opt-in`.
#[utoipa::path(
    post,
    path = "/v1/users/{user_id}/preferences/opt-in",
    tag = "preferences",
    summary = "Opt a user into a channel, a category (on every channel), or a category on one channel",
    description = "`{\"channel\"}` sets the channel's default, `{\"category\"}` sets that category's rule on every channel, both set the category's rule on that channel (rules set to true). At least one is required. Returns the resulting document.",
    params(("user_id" = UserId, Path, description = "The user (who need not exist yet)")),
    request_body = OptBody,
    responses(
        (status = 200, description = "The resulting document", body = PreferencesDocument),
        (status = 400, description = "The body is not valid JSON (code bad_request)", body = ErrorBody),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 415, description = "The body is not application/json (code unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "Neither channel nor category, an unknown channel or a malformed category; field names it", body = ErrorBody),
    )
)]
pub async fn opt_in(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
    ApiJson(body): ApiJson<OptBody>,
) -> Result<Json<PreferencesDocument>, ApiError> {
    set(&state, &tenant, &raw_id, body, true).await
}
