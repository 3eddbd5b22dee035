//! `/v1/quotas`: a tenant's delivery quotas, tenant-wide and per template.
//!
//! A quota is a token bucket in the store shared by every worker (`fanout_store::limits`).
//! Writing one takes effect on running deliveries within a second twice over: every delivery
//! re-reads its buckets from the store at least twice a second, and for a template quota the
//! API also signals every running request of the template (`set_template_quota`, found with a
//! visibility query), which writes it through again. A failed signal is logged, not an error:
//! the store write alone already reaches the deliveries.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use fanout_domain::contracts::TemplateQuota;
use fanout_domain::{TemplateId, TenantId};
use fanout_store::limits::{Quota, template_key, tenant_key};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson};
use crate::templates::existing_template;

/// The quota routes, merged into the app's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/quotas", get(list))
        .route(
            "/v1/quotas/tenant",
            get(get_tenant).put(put_tenant).delete(delete_tenant),
        )
        .route(
            "/v1/quotas/templates/{template_id}",
            get(get_template).put(put_template).delete(delete_template),
        )
}

/// Body of the quota `PUT`s.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaBody {
    per_second: u32,
}

/// One quota as the API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct QuotaView {
    /// `tenant` or `template`.
    pub scope: String,
    /// The template, for a template quota.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    /// Deliveries per second allowed, across every worker.
    pub per_second: u32,
    /// When it was last written, Unix milliseconds.
    pub updated_at_ms: i64,
    /// Running requests signalled with the change (template `PUT` and `DELETE` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signalled: Option<u32>,
}

/// Body of `GET /v1/quotas`.
#[derive(Debug, Serialize, Deserialize)]
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
pub async fn get_tenant(
    State(state): State<AppState>,
    Caller(tenant): Caller,
) -> Result<Json<QuotaView>, ApiError> {
    quota_or_404(&state, &tenant, &tenant_key(&tenant), "the tenant")
        .await
        .map(Json)
}

/// `PUT /v1/quotas/tenant` with `{"per_second": n}`: caps all of the tenant's deliveries.
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
