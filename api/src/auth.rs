//! Authentication. Tenant routes take a [`Caller`]: `Authorization: Bearer <API key>` resolves
//! to the caller's tenant. Operator routes (`/v1/admin/`) take an [`Operator`]: the bearer must
//! be the configured admin key (`FANOUT_ADMIN_KEY`). The two never overlap: a tenant key is 401
//! on admin routes and the admin key is 401 on tenant routes.

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

/// The bearer token of a request, if it has one.
pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Several extractors of one request may need the caller (the ingest quota, then the
        // handler); the key is looked up once. Extensions are set by the server, never by
        // the client.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let key = bearer(parts).ok_or(ApiError::Unauthorized)?;
        let caller = state
            .store
            .authenticate(key)
            .await?
            .map(Caller)
            .ok_or(ApiError::Unauthorized)?;
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

/// The operator, authenticated by the admin key. Admin routes take one.
#[derive(Debug, Clone, Copy)]
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(admin_key) = state.admin_key.as_ref().filter(|k| !k.expose().is_empty()) else {
            // Without a key there is no admin API at all: say so, rather than invite guessing.
            return Err(ApiError::NotFound(
                "the admin API is disabled: no admin key is configured (set FANOUT_ADMIN_KEY)"
                    .into(),
            ));
        };
        match bearer(parts) {
            Some(given) if same_secret(given.as_bytes(), admin_key.expose().as_bytes()) => {
                Ok(Operator)
            }
            _ => Err(ApiError::Unauthorized),
        }
    }
}

/// Compares without stopping at the first difference, so response time does not reveal how
/// much of a guess was right (the length may show; the key's length is not the secret).
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_every_byte() {
        assert!(same_secret(b"admin-key", b"admin-key"));
        assert!(!same_secret(b"admin-kez", b"admin-key"));
        assert!(!same_secret(b"admin-ke", b"admin-key"));
        assert!(!same_secret(b"", b"admin-key"));
    }
}
