//! A tenant's API keys under `/v1/admin/tenants/{tenant_id}/keys`: issue (the key is shown
//! once, in the 201), list (never the keys themselves), revoke.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use fanout_domain::TenantId;
use fanout_store::tenants::ApiKeyInfo;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::existing;
use crate::AppState;
use crate::auth::Operator;
use crate::error::{ApiError, ErrorBody};

/// The longest key label.
const MAX_LABEL_CHARS: usize = 100;

/// An API key's public record.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = ApiKey)]
pub struct KeyView {
    /// Its id, to revoke it.
    pub key_id: String,
    /// Its first characters.
    pub prefix: String,
    /// The operator's label.
    pub label: Option<String>,
    /// When it was issued.
    pub created_at_ms: i64,
    /// Whether it was revoked.
    pub revoked: bool,
    /// When it was revoked.
    pub revoked_at_ms: Option<i64>,
}

impl From<ApiKeyInfo> for KeyView {
    fn from(k: ApiKeyInfo) -> Self {
        Self {
            key_id: k.key_id,
            prefix: k.prefix,
            label: k.label,
            created_at_ms: k.created_at_ms,
            revoked: k.revoked_at_ms.is_some(),
            revoked_at_ms: k.revoked_at_ms,
        }
    }
}

/// A key just issued (201): the only response that carries the key.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = IssuedApiKey)]
pub struct IssuedKeyView {
    /// The key: store it now, it is not shown again.
    pub key: String,
    /// The tenant it acts as.
    pub tenant_id: String,
    /// Its public record.
    #[serde(flatten)]
    pub info: KeyView,
}

/// A tenant's API keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeysPage {
    /// Every key, revoked ones included.
    pub keys: Vec<KeyView>,
}

/// The optional body of `POST /v1/admin/tenants/{tenant_id}/keys`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ApiKeyInput)]
struct IssueKeyBody {
    /// A label to recognise the key by: printable, not blank.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 100)] // MAX_LABEL_CHARS
    label: Option<String>,
}

/// `POST /v1/admin/tenants/{tenant_id}/keys`: 201 with the key, shown this once. The body
/// (`{"label": ..}`) is optional.
#[utoipa::path(
    post,
    path = "/v1/admin/tenants/{tenant_id}/keys",
    tag = "admin",
    summary = "Issue an API key",
    request_body(content = Option<IssueKeyBody>, description = "Optional"),
    description = "201 with the key, shown this once (only its SHA-256 is stored). The body is optional. A tenant may hold several keys. Operator only: `Authorization: Bearer <FANOUT_ADMIN_KEY>`. A tenant API key (or any other bearer) is 401; when no admin key is configured every admin route is 404 saying so.",
    security(("admin_key" = [])),
    params(("tenant_id" = TenantId, Path, description = "The tenant")),
    responses(
        (status = 201, description = "The new key", body = IssuedKeyView),
        (status = 400, description = "The body is not valid JSON (code bad_request)", body = ErrorBody),
        (status = 401, description = "Not the admin key; a tenant API key is refused too (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such tenant; or the admin API is disabled (no admin key configured)", body = ErrorBody),
        (status = 422, description = "The tenant id or the label is invalid; field names it", body = ErrorBody),
    )
)]
pub async fn issue_key(
    _: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<IssuedKeyView>), ApiError> {
    let body: IssueKeyBody = if body.iter().all(u8::is_ascii_whitespace) {
        IssueKeyBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            if e.is_data() {
                ApiError::field(
                    "label",
                    format!("the body must be {{\"label\": string}}: {e}"),
                )
            } else {
                ApiError::BadRequest(format!("the body is not valid JSON: {e}"))
            }
        })?
    };
    let label = body.label.as_deref().map(str::trim);
    if let Some(label) = label
        && (label.is_empty()
            || label.chars().count() > MAX_LABEL_CHARS
            || label.chars().any(char::is_control))
    {
        return Err(ApiError::field(
            "label",
            format!("label must be 1 to {MAX_LABEL_CHARS} printable characters"),
        ));
    }
    let tenant = existing(&state, &id).await?;
    let issued = state.store.issue_api_key(&tenant.tenant_id, label).await?;
    tracing::info!(tenant_id = %tenant.tenant_id, key_id = %issued.info.key_id, "api key issued");
    Ok((
        StatusCode::CREATED,
        Json(IssuedKeyView {
            key: issued.key,
            tenant_id: tenant.tenant_id.to_string(),
            info: issued.info.into(),
        }),
    ))
}

/// `GET /v1/admin/tenants/{tenant_id}/keys`: every key, revoked ones included, never the key.
#[utoipa::path(
    get,
    path = "/v1/admin/tenants/{tenant_id}/keys",
    tag = "admin",
    summary = "List a tenant's API keys",
    description = "Revoked keys included; the keys themselves are never shown. Operator only: `Authorization: Bearer <FANOUT_ADMIN_KEY>`. A tenant API key (or any other bearer) is 401; when no admin key is configured every admin route is 404 saying so.",
    security(("admin_key" = [])),
    params(("tenant_id" = TenantId, Path, description = "The tenant")),
    responses(
        (status = 200, description = "The keys", body = ApiKeysPage),
        (status = 401, description = "Not the admin key; a tenant API key is refused too (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such tenant; or the admin API is disabled (no admin key configured)", body = ErrorBody),
        (status = 422, description = "The tenant id is invalid", body = ErrorBody),
    )
)]
pub async fn list_keys(
    _: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ApiKeysPage>, ApiError> {
    let tenant = existing(&state, &id).await?;
    let keys: Vec<KeyView> = state
        .store
        .list_api_keys(&tenant.tenant_id)
        .await?
        .into_iter()
        .map(KeyView::from)
        .collect();
    Ok(Json(ApiKeysPage { keys }))
}

/// `DELETE /v1/admin/tenants/{tenant_id}/keys/{key_id}`: 204; the key is refused from the next
/// request on (keys are checked against the store on every request, not cached).
#[utoipa::path(
    delete,
    path = "/v1/admin/tenants/{tenant_id}/keys/{key_id}",
    tag = "admin",
    summary = "Revoke an API key",
    description = "204 (also when already revoked); the key is 401 from the next request on. Operator only: `Authorization: Bearer <FANOUT_ADMIN_KEY>`. A tenant API key (or any other bearer) is 401; when no admin key is configured every admin route is 404 saying so.",
    security(("admin_key" = [])),
    params(("tenant_id" = TenantId, Path, description = "The tenant"), ("key_id" = String, Path, description = "The key's public id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Not the admin key; a tenant API key is refused too (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such tenant or key; or the admin API is disabled (no admin key configured)", body = ErrorBody),
        (status = 422, description = "The tenant id is invalid", body = ErrorBody),
    )
)]
pub async fn revoke_key(
    _: Operator,
    State(state): State<AppState>,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let tenant = existing(&state, &id).await?;
    if !state
        .store
        .revoke_api_key(&tenant.tenant_id, &key_id)
        .await?
    {
        return Err(ApiError::NotFound(format!(
            "tenant '{}' has no key '{key_id}'",
            tenant.tenant_id
        )));
    }
    tracing::info!(tenant_id = %tenant.tenant_id, key_id = %key_id, "api key revoked");
    Ok(StatusCode::NO_CONTENT)
}
