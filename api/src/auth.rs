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
/// The scheme is matched case-insensitively (RFC 9110 section 11.1): `bearer` and `BEARER`
/// work as `Bearer` does.
pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = value.trim_start().split_once(' ')?;
    let credentials = credentials.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credentials.is_empty()).then_some(credentials)
}

/// The shortest admin key the API accepts: the key opens every tenant's data.
pub const MIN_ADMIN_KEY_LEN: usize = 32;

/// Checks a configured admin key's length; the API refuses to start with a short one.
pub fn check_admin_key(key: &str) -> Result<(), String> {
    if key.len() < MIN_ADMIN_KEY_LEN {
        return Err(format!(
            "admin_key (FANOUT_ADMIN_KEY) must be at least {MIN_ADMIN_KEY_LEN} characters; \
             generate one with `openssl rand -hex 24`"
        ));
    }
    Ok(())
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
        if let Some(scope) = parts
            .extensions
            .get::<std::sync::Arc<crate::observe::RequestScope>>()
        {
            scope.set_tenant(&caller.0);
        }
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

    fn parts_with(authorization: &str) -> Parts {
        axum::http::Request::builder()
            .header(AUTHORIZATION, authorization)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for header in ["Bearer k1", "bearer k1", "BEARER  k1 "] {
            assert_eq!(bearer(&parts_with(header)), Some("k1"), "{header}");
        }
        for header in ["Basic k1", "Bearer ", "Bearerk1", "k1"] {
            assert_eq!(bearer(&parts_with(header)), None, "{header}");
        }
    }

    #[test]
    fn short_admin_keys_are_refused() {
        assert!(check_admin_key("short").is_err());
        check_admin_key(&"k".repeat(MIN_ADMIN_KEY_LEN)).unwrap();
    }
}
