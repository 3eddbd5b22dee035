//! `/v1/quotas`: a tenant's delivery quotas, tenant-wide and per template.
//!
//! A quota is a token bucket in the store shared by every worker (`fanout_store::limits`).
//! Writing one takes effect on running deliveries within a second twice over: every delivery
//! re-reads its buckets from the store at least twice a second, and for a template quota the
//! API also signals every running request of the template (`set_template_quota`, found with a
//! visibility query), which writes it through again. A failed signal is logged, not an error:
//! the store write alone already reaches the deliveries.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use fanout_contracts::TemplateQuota;
use fanout_domain::{TemplateId, TenantId};
use fanout_store::limits::{Quota, template_key, tenant_key};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::templates::existing_template;

/// The quota routes, merged into the app's router.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_tenant, put_tenant, delete_tenant))
        .routes(routes!(get_template, put_template, delete_template))
}

/// Body of the quota `PUT`s.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = QuotaInput)]
pub struct QuotaBody {
    /// Deliveries per second, at least 1.
    #[schema(minimum = 1)]
    per_second: u32,
}

/// One quota as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = Quota)]
pub struct QuotaView {
    /// `tenant` or `template`.
    #[schema(pattern = "^(tenant|template)$")]
    pub scope: String,
    /// The template, for a template quota.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    /// Deliveries per second allowed, across every worker.
    #[schema(minimum = 1)]
    pub per_second: u32,
    /// When it was last written, Unix milliseconds.
    pub updated_at_ms: i64,
    /// Running requests signalled with the change (template `PUT` and `DELETE` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signalled: Option<u32>,
}

/// Body of `GET /v1/quotas`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QuotaList {
    /// Every quota of the tenant.
    pub quotas: Vec<QuotaView>,
}

fn view(tenant: &TenantId, quota: Quota) -> QuotaView {
    let template_prefix = format!("template:{tenant}:");
    let template_id = quota.key.strip_prefix(&template_prefix).map(str::to_owned);
    QuotaView {
        scope: if template_id.is_some() {
            "template"
        } else {
            "tenant"
        }
        .into(),
        template_id,
        per_second: quota.per_second,
        updated_at_ms: quota.updated_at_ms,
        signalled: None,
    }
}

fn check_rate(per_second: u32) -> Result<u32, ApiError> {
    if per_second == 0 {
        return Err(ApiError::InvalidField {
            field: "per_second".into(),
            message: "per_second must be at least 1; delete the quota to remove it".into(),
        });
    }
    Ok(per_second)
}

async fn quota_or_404(
    state: &AppState,
    tenant: &TenantId,
    key: &str,
    what: &str,
) -> Result<QuotaView, ApiError> {
    state
        .store
        .get_quota(tenant, key)
        .await?
        .map(|q| view(tenant, q))
        .ok_or_else(|| ApiError::NotFound(format!("no quota on {what}")))
}

/// Signals the template's running requests; a failure is logged (see the module docs).
async fn signal(
    state: &AppState,
    tenant: &TenantId,
    template_id: &TemplateId,
    per_second: Option<u32>,
) -> Option<u32> {
    match state
        .orchestrator
        .signal_template_quota(tenant, template_id, TemplateQuota { per_second })
        .await
    {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, template_id = %template_id, "signalling a template quota failed");
            None
        }
    }
}

/// `GET /v1/quotas`: every quota of the caller.
#[utoipa::path(
    get,
    path = "/v1/quotas",
    tag = "quotas",
    summary = "List the tenant's delivery quotas",
    responses(
        (status = 200, description = "Every quota", body = QuotaList),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(tenant): Caller,
) -> Result<Json<QuotaList>, ApiError> {
    let quotas = state.store.list_quotas(&tenant).await?;
    Ok(Json(QuotaList {
        quotas: quotas.into_iter().map(|q| view(&tenant, q)).collect(),
    }))
}

/// `GET /v1/quotas/tenant`.
#[utoipa::path(
    get,
    path = "/v1/quotas/tenant",
    tag = "quotas",
    summary = "The tenant-wide delivery quota",
    responses(
        (status = 200, description = "The quota", body = QuotaView),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No quota on the tenant", body = ErrorBody),
    )
)]
pub async fn get_tenant(
    State(state): State<AppState>,
    Caller(tenant): Caller,
) -> Result<Json<QuotaView>, ApiError> {
    quota_or_404(&state, &tenant, &tenant_key(&tenant), "the tenant")
        .await
        .map(Json)
}

/// `PUT /v1/quotas/tenant` with `{"per_second": n}`: caps all of the tenant's deliveries.
#[utoipa::path(
    put,
    path = "/v1/quotas/tenant",
    tag = "quotas",
    summary = "Cap all of the tenant's deliveries per second, across every worker",
    request_body = QuotaBody,
    responses(
        (status = 200, description = "The quota", body = QuotaView),
        (status = 400, description = "The body is not valid JSON (code bad_request)", body = ErrorBody),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "The quota vanished while being written; retry", body = ErrorBody),
        (status = 415, description = "The body is not application/json (code unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "per_second is 0 or malformed", body = ErrorBody),
    )
)]
pub async fn put_tenant(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiJson(body): ApiJson<QuotaBody>,
) -> Result<Json<QuotaView>, ApiError> {
    let per_second = check_rate(body.per_second)?;
    let key = tenant_key(&tenant);
    state.store.set_quota(&tenant, &key, per_second).await?;
    tracing::info!(tenant_id = %tenant, per_second, "tenant quota set");
    quota_or_404(&state, &tenant, &key, "the tenant")
        .await
        .map(Json)
}

/// `DELETE /v1/quotas/tenant`.
#[utoipa::path(
    delete,
    path = "/v1/quotas/tenant",
    tag = "quotas",
    summary = "Remove the tenant-wide quota",
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No quota on the tenant", body = ErrorBody),
    )
)]
pub async fn delete_tenant(
    State(state): State<AppState>,
    Caller(tenant): Caller,
) -> Result<StatusCode, ApiError> {
    if !state
        .store
        .delete_quota(&tenant, &tenant_key(&tenant))
        .await?
    {
        return Err(ApiError::NotFound("no quota on the tenant".into()));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/quotas/templates/{template_id}`.
#[utoipa::path(
    get,
    path = "/v1/quotas/templates/{template_id}",
    tag = "quotas",
    summary = "A template's delivery quota",
    params(("template_id" = TemplateId, Path, description = "The template")),
    responses(
        (status = 200, description = "The quota", body = QuotaView),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such template, or no quota on it", body = ErrorBody),
    )
)]
pub async fn get_template(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
) -> Result<Json<QuotaView>, ApiError> {
    let template_id = existing_template(&state, &tenant, &raw_id).await?;
    let key = template_key(&tenant, &template_id);
    quota_or_404(&state, &tenant, &key, &format!("template '{raw_id}'"))
        .await
        .map(Json)
}

/// `PUT /v1/quotas/templates/{template_id}` with `{"per_second": n}`: caps the template's
/// deliveries across all its requests, running ones included.
#[utoipa::path(
    put,
    path = "/v1/quotas/templates/{template_id}",
    tag = "quotas",
    summary = "Cap a template's deliveries per second; running requests slow down within a second (store and signal)",
    params(("template_id" = TemplateId, Path, description = "The template")),
    request_body = QuotaBody,
    responses(
        (status = 200, description = "The quota, with how many running requests were signalled", body = QuotaView),
        (status = 400, description = "The body is not valid JSON (code bad_request)", body = ErrorBody),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such template", body = ErrorBody),
        (status = 415, description = "The body is not application/json (code unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "per_second is 0 or malformed", body = ErrorBody),
    )
)]
pub async fn put_template(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
    ApiJson(body): ApiJson<QuotaBody>,
) -> Result<Json<QuotaView>, ApiError> {
    let per_second = check_rate(body.per_second)?;
    let template_id = existing_template(&state, &tenant, &raw_id).await?;
    let key = template_key(&tenant, &template_id);
    state.store.set_quota(&tenant, &key, per_second).await?;
    let signalled = signal(&state, &tenant, &template_id, Some(per_second)).await;
    tracing::info!(template_id = %template_id, per_second, signalled, "template quota set");
    let mut view = quota_or_404(&state, &tenant, &key, &format!("template '{raw_id}'")).await?;
    view.signalled = signalled;
    Ok(Json(view))
}

/// `DELETE /v1/quotas/templates/{template_id}`: lifts the template's quota.
#[utoipa::path(
    delete,
    path = "/v1/quotas/templates/{template_id}",
    tag = "quotas",
    summary = "Remove a template's quota (running requests are signalled)",
    params(("template_id" = TemplateId, Path, description = "The template")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such template, or no quota on it", body = ErrorBody),
    )
)]
pub async fn delete_template(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let template_id = existing_template(&state, &tenant, &raw_id).await?;
    let key = template_key(&tenant, &template_id);
    if !state.store.delete_quota(&tenant, &key).await? {
        return Err(ApiError::NotFound(format!(
            "no quota on template '{raw_id}'"
        )));
    }
    signal(&state, &tenant, &template_id, None).await;
    Ok(StatusCode::NO_CONTENT)
}
