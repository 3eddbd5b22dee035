//! A template's versions: the listing (newest first, a page at a time), one version, and the
//! rollback that copies an older version's content into a new active one.

use axum::Json;
use axum::extract::{Path, State};
use fanout_domain::TemplateId;
use fanout_domain::template::Template;
use fanout_store::templates::MAX_VERSIONS_PER_PAGE;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{not_found, path_id, refuse_past_version_cap};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiQuery, ErrorBody};

/// Body of `POST /v1/templates/{template_id}/rollback`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RollbackInput)]
pub struct RollbackBody {
    /// The version whose content becomes active again.
    version: i64,
}

/// `?before=&limit=` of a version listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VersionsQuery {
    /// Only versions below this one: a page's `next_before`.
    #[serde(default)]
    #[param(minimum = 2)]
    before: Option<i64>,
    /// Page size.
    #[serde(default)]
    #[param(minimum = 1, maximum = 100, default = 20)]
    // MAX_VERSIONS_PER_PAGE, DEFAULT_VERSIONS_PAGE
    limit: Option<u32>,
}

/// A page of a template's versions, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = TemplateVersionsPage)]
pub struct VersionsPage {
    /// The version deliveries of new requests use.
    pub active_version: i64,
    /// Versions, newest first.
    pub versions: Vec<Template>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

/// The versions one listing returns unless asked otherwise.
const DEFAULT_VERSIONS_PAGE: u32 = 20;

/// `GET /v1/templates/{template_id}/versions?before=&limit=`: versions newest first.
#[utoipa::path(
    get,
    path = "/v1/templates/{template_id}/versions",
    tag = "templates",
    summary = "List a template's versions, newest first",
    params(("template_id" = TemplateId, Path, description = "The template"), VersionsQuery),
    responses(
        (status = 200, description = "A page of versions", body = VersionsPage),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such template", body = ErrorBody),
        (status = 422, description = "A query parameter is invalid (limit, before); field names it", body = ErrorBody),
    )
)]
pub async fn list_versions(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
    ApiQuery(query): ApiQuery<VersionsQuery>,
) -> Result<Json<VersionsPage>, ApiError> {
    let template_id = path_id(&raw_id)?;
    let limit = query.limit.unwrap_or(DEFAULT_VERSIONS_PAGE);
    if !(1..=MAX_VERSIONS_PER_PAGE).contains(&limit) {
        return Err(ApiError::field(
            "limit",
            format!("limit must be between 1 and {MAX_VERSIONS_PER_PAGE}"),
        ));
    }
    if query.before.is_some_and(|before| before < 2) {
        return Err(ApiError::field(
            "before",
            "before must be at least 2 (a next_before of an earlier page); omit it for the newest versions",
        ));
    }
    let active = state
        .store
        .get_template(&tenant, &template_id)
        .await?
        .ok_or_else(|| not_found(&raw_id))?;
    let versions = state
        .store
        .list_template_versions(&tenant, &template_id, query.before, limit)
        .await?;
    // A short page is the last one; so is one ending at version 1.
    let next_before = versions
        .last()
        .filter(|v| versions.len() == limit as usize && v.version > 1)
        .map(|v| v.version);
    Ok(Json(VersionsPage {
        active_version: active.version,
        versions,
        next_before,
    }))
}

/// `GET /v1/templates/{template_id}/versions/{version}`: one version, active or not.
#[utoipa::path(
    get,
    path = "/v1/templates/{template_id}/versions/{version}",
    tag = "templates",
    summary = "Read one version, active or not",
    params(("template_id" = TemplateId, Path, description = "The template"), ("version" = i64, Path, description = "The version number")),
    responses(
        (status = 200, description = "The version", body = Template),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such template or version", body = ErrorBody),
    )
)]
pub async fn get_version(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path((raw_id, raw_version)): Path<(String, String)>,
) -> Result<Json<Template>, ApiError> {
    let template_id = path_id(&raw_id)?;
    let missing =
        || ApiError::NotFound(format!("template '{raw_id}' has no version {raw_version}"));
    let version: i64 = raw_version.parse().map_err(|_| missing())?;
    state
        .store
        .get_template_version(&tenant, &template_id, version)
        .await?
        .map(Json)
        .ok_or_else(missing)
}

/// `POST /v1/templates/{template_id}/rollback`: writes a new version copying `version`'s
/// content and makes it active; returns the new version.
#[utoipa::path(
    post,
    path = "/v1/templates/{template_id}/rollback",
    tag = "templates",
    summary = "Roll back: write a new version copying an older one's content and make it active; requests already accepted keep the version active when they were accepted",
    params(("template_id" = TemplateId, Path, description = "The template")),
    request_body = RollbackBody,
    responses(
        (status = 200, description = "The new version", body = Template),
        (status = 400, description = "The body is not valid JSON (code bad_request)", body = ErrorBody),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such template or version", body = ErrorBody),
        (status = 409, description = "The template has 1000 versions, the most one template keeps", body = ErrorBody),
        (status = 415, description = "The body is not application/json (code unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "The body is malformed; field names it", body = ErrorBody),
    )
)]
pub async fn rollback(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
    ApiJson(body): ApiJson<RollbackBody>,
) -> Result<Json<Template>, ApiError> {
    let template_id = path_id(&raw_id)?;
    if state
        .store
        .get_template(&tenant, &template_id)
        .await?
        .is_none()
    {
        return Err(not_found(&raw_id));
    }
    refuse_past_version_cap(&state, &tenant, &template_id).await?;
    state
        .store
        .rollback_template(&tenant, &template_id, body.version)
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "template '{raw_id}' has no version {}",
                body.version
            ))
        })
}
