//! Operator administration under `/v1/admin/`: tenants and their settings here, their API keys
//! in [`keys`].
//!
//! Every route takes an [`Operator`] (the configured admin key). Without a configured key the
//! routes answer 404 saying so; a tenant's API key, or a wrong key, is 401 (not 403: a tenant
//! key carries no identity on these routes, so there is nothing to forbid). Keys are shown once,
//! when issued; afterwards they are known by their `key_id` and prefix.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use fanout_domain::TenantId;
use fanout_domain::limits::{DEFAULT_MAX_DATA_BYTES, MAX_DATA_BYTES_CEILING};
use fanout_store::tenants::{Tenant, TenantSettings};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Operator;

mod keys;

use crate::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use crate::ingest::IngestConfig;
pub use keys::{ApiKeysPage, IssuedKeyView, KeyView};

/// The most tenants one listing returns.
const MAX_PAGE: u32 = 1_000;
/// The highest sustained ingest rate a tenant can be given, per second.
pub const MAX_INGEST_PER_SECOND: u32 = 100_000;
/// The largest ingest burst a tenant can be given.
pub const MAX_INGEST_BURST: u32 = 1_000_000;
/// The longest tenant name.
const MAX_NAME_CHARS: usize = 200;
/// The smallest and largest fairness weights, as the Temporal server clamps them.
pub const FAIRNESS_WEIGHTS: std::ops::RangeInclusive<f64> = 0.001..=1000.0;
/// The weight of a tenant without a `fairness_weight` setting (the server's default).
const DEFAULT_FAIRNESS_WEIGHT: f64 = 1.0;

/// The admin routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tenants, create_tenant))
        .routes(routes!(get_tenant, update_tenant))
        .routes(routes!(keys::list_keys, keys::issue_key))
        .routes(routes!(keys::revoke_key))
}

/// A tenant's settings: its overrides (`null`: the default) or the values in force.
#[derive(Debug, Serialize, Deserialize, PartialEq, ToSchema)]
#[schema(as = TenantSettings)]
pub struct SettingsView {
    /// Sustained POST /v1/notify requests per second; null: the platform default.
    #[schema(minimum = 1, maximum = 100000)] // MAX_INGEST_PER_SECOND
    pub ingest_per_second: Option<u32>,
    /// Notify requests at once before the sustained rate applies; null: the platform default.
    #[schema(minimum = 1, maximum = 1000000)] // MAX_INGEST_BURST
    pub ingest_burst: Option<u32>,
    /// The tenant's share of queued work against other tenants' (Temporal's fairness weight,
    /// keyed by tenant): a tenant of weight 2 is dispatched twice as much as one of weight 1
    /// while both have work waiting; null: the default of 1.
    #[schema(minimum = 0.001, maximum = 1000)] // FAIRNESS_WEIGHTS
    pub fairness_weight: Option<f64>,
    /// The largest `data` object a notify may carry, in bytes of JSON; null: the platform
    /// default of 65536.
    #[schema(minimum = 1, maximum = 524288)] // limits::MAX_DATA_BYTES_CEILING
    pub max_data_bytes: Option<u32>,
}

/// A tenant as the admin API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = Tenant)]
pub struct TenantView {
    /// Its id.
    #[schema(value_type = TenantId)]
    pub tenant_id: String,
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created_at_ms: i64,
    /// Its own settings; `null` means the platform default.
    pub settings: SettingsView,
    /// The settings in force (its own over the platform defaults).
    pub effective: SettingsView,
}

impl TenantView {
    fn new(tenant: Tenant, defaults: &IngestConfig) -> Self {
        let quota = defaults.quota(&tenant.settings);
        Self {
            tenant_id: tenant.tenant_id.to_string(),
            name: tenant.name,
            created_at_ms: tenant.created_at_ms,
            settings: SettingsView {
                ingest_per_second: tenant.settings.ingest_per_second,
                ingest_burst: tenant.settings.ingest_burst,
                fairness_weight: tenant.settings.fairness_weight,
                max_data_bytes: tenant.settings.max_data_bytes,
            },
            effective: SettingsView {
                ingest_per_second: Some(quota.per_second),
                ingest_burst: Some(quota.burst),
                fairness_weight: Some(
                    tenant
                        .settings
                        .fairness_weight
                        .unwrap_or(DEFAULT_FAIRNESS_WEIGHT),
                ),
                max_data_bytes: Some(max_data_bytes(&tenant.settings)),
            },
        }
    }
}

fn tenant_id(raw: &str) -> Result<TenantId, ApiError> {
    Ok(TenantId::parse(raw)?)
}

fn name(raw: &str) -> Result<String, ApiError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::field(
            "name",
            format!("name must be 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    Ok(name.to_owned())
}

async fn existing(state: &AppState, raw: &str) -> Result<Tenant, ApiError> {
    let id = tenant_id(raw)?;
    state
        .store
        .get_tenant(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("tenant '{id}' not found")))
}

/// The body of `POST /v1/admin/tenants`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TenantInput)]
pub struct CreateTenantBody {
    /// The new tenant's id.
    #[schema(value_type = TenantId)]
    tenant_id: String,
    /// Its name.
    #[schema(min_length = 1, max_length = 200)] // MAX_NAME_CHARS
    name: String,
}

/// `POST /v1/admin/tenants`: 201, or 409 if the id is taken.
#[utoipa::path(
    post,
    path = "/v1/admin/tenants",
    tag = "admin",
    summary = "Create a tenant",
    description = "201, or 409 when the id is taken. Operator only: `Authorization: Bearer <FANOUT_ADMIN_KEY>`. A tenant API key (or any other bearer) is 401; when no admin key is configured every admin route is 404 saying so.",
    security(("admin_key" = [])),
    request_body = CreateTenantBody,
    responses(
        (status = 201, description = "Created", body = TenantView),
        (status = 400, description = "The body is not valid JSON (code bad_request)", body = ErrorBody),
        (status = 401, description = "Not the admin key; a tenant API key is refused too (code unauthorized)", body = ErrorBody),
        (status = 404, description = "The admin API is disabled: no admin key is configured", body = ErrorBody),
        (status = 409, description = "The id is taken", body = ErrorBody),
        (status = 415, description = "The body is not application/json (code unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "The tenant id or the name is invalid; field names it", body = ErrorBody),
    )
)]
pub async fn create_tenant(
    _: Operator,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateTenantBody>,
) -> Result<(StatusCode, Json<TenantView>), ApiError> {
    let id = tenant_id(&body.tenant_id)?;
    let name = name(&body.name)?;
    if !state.store.create_tenant(&id, &name).await? {
        return Err(ApiError::Conflict(format!("tenant '{id}' already exists")));
    }
    tracing::info!(tenant_id = %id, "tenant created");
    let tenant = existing(&state, id.as_str()).await?;
    Ok((
        StatusCode::CREATED,
        Json(TenantView::new(tenant, state.ingest.config())),
    ))
}

/// Query of `GET /v1/admin/tenants`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The last tenant id of the previous page.
    #[param(value_type = Option<TenantId>)]
    after: Option<String>,
    /// Page size.
    #[param(minimum = 1, maximum = 1000, default = 100)] // MAX_PAGE
    limit: Option<u32>,
}

/// A page of tenants.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantsPage {
    /// Tenants in id order.
    pub tenants: Vec<TenantView>,
    /// Pass as `?after=` for the next page; null on the last.
    pub next_after: Option<String>,
}

/// `GET /v1/admin/tenants`: tenants in id order, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/admin/tenants",
    tag = "admin",
    summary = "List tenants in id order",
    description = "Pages with `?after=<last tenant_id>&limit=`. Operator only: `Authorization: Bearer <FANOUT_ADMIN_KEY>`. A tenant API key (or any other bearer) is 401; when no admin key is configured every admin route is 404 saying so.",
    security(("admin_key" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of tenants", body = TenantsPage),
        (status = 401, description = "Not the admin key; a tenant API key is refused too (code unauthorized)", body = ErrorBody),
        (status = 404, description = "The admin API is disabled: no admin key is configured", body = ErrorBody),
        (status = 422, description = "A query parameter is invalid (after, limit); field names it", body = ErrorBody),
    )
)]
pub async fn list_tenants(
    _: Operator,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<TenantsPage>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::field(
            "limit",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let after = query
        .after
        .as_deref()
        .map(TenantId::parse)
        .transpose()
        .map_err(|e| ApiError::field("after", e.to_string()))?;
    let tenants = state.store.list_tenants(after.as_ref(), limit).await?;
    let next_after = (tenants.len() == limit as usize)
        .then(|| tenants.last().map(|t| t.tenant_id.to_string()))
        .flatten();
    let tenants: Vec<TenantView> = tenants
        .into_iter()
        .map(|t| TenantView::new(t, state.ingest.config()))
        .collect();
    Ok(Json(TenantsPage {
        tenants,
        next_after,
    }))
}

/// `GET /v1/admin/tenants/{tenant_id}`.
#[utoipa::path(
    get,
    path = "/v1/admin/tenants/{tenant_id}",
    tag = "admin",
    summary = "Get a tenant with its settings",
    description = "Operator only: `Authorization: Bearer <FANOUT_ADMIN_KEY>`. A tenant API key (or any other bearer) is 401; when no admin key is configured every admin route is 404 saying so.",
    security(("admin_key" = [])),
    params(("tenant_id" = TenantId, Path, description = "The tenant")),
    responses(
        (status = 200, description = "The tenant", body = TenantView),
        (status = 401, description = "Not the admin key; a tenant API key is refused too (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such tenant; or the admin API is disabled (no admin key configured)", body = ErrorBody),
        (status = 422, description = "The tenant id is invalid", body = ErrorBody),
    )
)]
pub async fn get_tenant(
    _: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    let tenant = existing(&state, &id).await?;
    Ok(Json(TenantView::new(tenant, state.ingest.config())))
}

/// Keeps `null` apart from an absent field: `Some(Value::Null)` resets a setting.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// The body of `PATCH /v1/admin/tenants/{tenant_id}`: absent fields stay as they are, `null`
/// returns a setting to the platform default.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TenantPatch)]
pub struct UpdateTenantBody {
    /// A new name.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)] // MAX_NAME_CHARS
    name: Option<String>,
    /// See `TenantSettings`; null returns it to the platform default.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 100000)] // MAX_INGEST_PER_SECOND
    ingest_per_second: Option<Value>,
    /// See `TenantSettings`; null returns it to the platform default.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 1000000)] // MAX_INGEST_BURST
    ingest_burst: Option<Value>,
    /// See `TenantSettings`; null returns it to the default weight of 1.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<f64>, minimum = 0.001, maximum = 1000)] // FAIRNESS_WEIGHTS
    fairness_weight: Option<Value>,
    /// See `TenantSettings`; null returns it to the platform default.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 524288)]
    // limits::MAX_DATA_BYTES_CEILING
    max_data_bytes: Option<Value>,
}

/// The `data` cap in force for a tenant: its own, or the platform default.
pub fn max_data_bytes(settings: &TenantSettings) -> u32 {
    settings
        .max_data_bytes
        .unwrap_or(DEFAULT_MAX_DATA_BYTES as u32)
}

/// Parses a setting: `null`, or a whole number in `1..=max`.
fn limit_setting(field: &str, value: &Value, max: u32) -> Result<Option<u32>, ApiError> {
    if value.is_null() {
        return Ok(None);
    }
    value
        .as_u64()
        .and_then(|v| u32::try_from(v).ok())
        .filter(|v| (1..=max).contains(v))
        .map(Some)
        .ok_or_else(|| {
            ApiError::field(
                field,
                format!(
                    "{field} must be a whole number from 1 to {max}, or null for the platform default"
                ),
            )
        })
}

/// Parses the fairness weight: `null`, or a number in [`FAIRNESS_WEIGHTS`].
fn weight_setting(value: &Value) -> Result<Option<f64>, ApiError> {
    if value.is_null() {
        return Ok(None);
    }
    value
        .as_f64()
        .filter(|w| FAIRNESS_WEIGHTS.contains(w))
        .map(Some)
        .ok_or_else(|| {
            ApiError::field(
                "fairness_weight",
                format!(
                    "fairness_weight must be a number from {} to {}, or null for the default weight of {DEFAULT_FAIRNESS_WEIGHT}",
                    FAIRNESS_WEIGHTS.start(),
                    FAIRNESS_WEIGHTS.end()
                ),
            )
        })
}

/// `PATCH /v1/admin/tenants/{tenant_id}`: renames the tenant or changes its settings. Every
/// field is checked before anything is written.
#[utoipa::path(
    patch,
    path = "/v1/admin/tenants/{tenant_id}",
    tag = "admin",
    summary = "Rename a tenant or change its settings",
    description = "Absent fields stay as they are; `null` returns a setting to the platform default. Every field is checked before anything is written; a bad one is 422 naming it. Operator only: `Authorization: Bearer <FANOUT_ADMIN_KEY>`. A tenant API key (or any other bearer) is 401; when no admin key is configured every admin route is 404 saying so.",
    security(("admin_key" = [])),
    params(("tenant_id" = TenantId, Path, description = "The tenant")),
    request_body = UpdateTenantBody,
    responses(
        (status = 200, description = "The tenant as changed", body = TenantView),
        (status = 400, description = "The body is not valid JSON (code bad_request)", body = ErrorBody),
        (status = 401, description = "Not the admin key; a tenant API key is refused too (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such tenant; or the admin API is disabled (no admin key configured)", body = ErrorBody),
        (status = 415, description = "The body is not application/json (code unsupported_media_type)", body = ErrorBody),
        (status = 422, description = "A field is out of range or malformed; field names it", body = ErrorBody),
    )
)]
pub async fn update_tenant(
    _: Operator,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateTenantBody>,
) -> Result<Json<TenantView>, ApiError> {
    let tenant = existing(&state, &id).await?;
    let new_name = body.name.as_deref().map(name).transpose()?;
    let mut settings: TenantSettings = tenant.settings;
    if let Some(v) = &body.ingest_per_second {
        settings.ingest_per_second = limit_setting("ingest_per_second", v, MAX_INGEST_PER_SECOND)?;
    }
    if let Some(v) = &body.ingest_burst {
        settings.ingest_burst = limit_setting("ingest_burst", v, MAX_INGEST_BURST)?;
    }
    if let Some(v) = &body.fairness_weight {
        settings.fairness_weight = weight_setting(v)?;
    }
    if let Some(v) = &body.max_data_bytes {
        settings.max_data_bytes =
            limit_setting("max_data_bytes", v, MAX_DATA_BYTES_CEILING as u32)?;
    }
    if let Some(name) = &new_name {
        state.store.rename_tenant(&tenant.tenant_id, name).await?;
    }
    if settings != tenant.settings {
        state
            .store
            .set_tenant_settings(&tenant.tenant_id, &settings)
            .await?;
        // This process applies the change from its next request; others within their cache's
        // lifetime (`ingest.settings_ttl_ms`).
        state.ingest.forget_settings(&tenant.tenant_id);
        tracing::info!(
            tenant_id = %tenant.tenant_id,
            ingest_per_second = ?settings.ingest_per_second,
            ingest_burst = ?settings.ingest_burst,
            fairness_weight = ?settings.fairness_weight,
            max_data_bytes = ?settings.max_data_bytes,
            "tenant settings changed"
        );
    }
    let tenant = existing(&state, &id).await?;
    Ok(Json(TenantView::new(tenant, state.ingest.config())))
}
