//! API-key authentication: `Authorization: Bearer <key>` resolves to the caller's tenant.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use fanout_domain::TenantId;

use crate::AppState;
use crate::error::ApiError;

/// The authenticated tenant. Every tenant-scoped handler takes one, so forgetting to scope a
/// query is a compile error rather than a data leak.
#[derive(Debug, Clone)]
pub struct Caller(pub TenantId);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        state
            .store
            .authenticate(key)
            .await?
            .map(Caller)
            .ok_or(ApiError::Unauthorized)
    }
}
