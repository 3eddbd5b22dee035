//! The OAuth access token: a service-account assertion (RS256) exchanged at the key file's
//! `token_uri`, cached and shared by every clone of the client until five minutes before it
//! expires.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, Header};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::FcmClient;
use super::classify::retry_after;
use crate::credentials::operator_failure;
use crate::outcome::SendOutcome;

/// Google's token endpoint, for a key file that names none.
pub(super) const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// The scope that grants sending FCM messages.
const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// The grant type of a service-account assertion (RFC 7523).
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Lifetime asked for in an assertion; Google allows at most an hour.
const ASSERTION_LIFETIME_S: u64 = 3600;

/// How long before its expiry a cached access token is replaced.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

#[derive(Clone)]
pub(super) struct CachedToken {
    pub(super) value: Arc<str>,
    pub(super) refresh_at: Instant,
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

impl FcmClient {
    /// Returns a fresh access token, fetching one when the cached one is due for refresh.
    pub(super) async fn access_token(&self) -> Result<Arc<str>, SendOutcome> {
        if let Some(token) = self.cached_token() {
            return Ok(token);
        }
        let _refreshing = self.inner.refreshing.lock().await;
        // Whoever held the lock before us may have refreshed it already.
        if let Some(token) = self.cached_token() {
            return Ok(token);
        }
        let (value, expires_in) = self.fetch_token().await?;
        let value: Arc<str> = value.into();
        let cached = CachedToken {
            value: value.clone(),
            refresh_at: Instant::now() + refresh_after(expires_in),
        };
        *self.inner.token.write().unwrap_or_else(|e| e.into_inner()) = Some(cached);
        Ok(value)
    }

    fn cached_token(&self) -> Option<Arc<str>> {
        let cached = self.inner.token.read().unwrap_or_else(|e| e.into_inner());
        cached
            .as_ref()
            .filter(|token| Instant::now() < token.refresh_at)
            .map(|token| token.value.clone())
    }

    /// Drops the cached token if it is still `stale`, so concurrent sends that all saw it
    /// refused cause one refresh, not one each.
    pub(super) fn forget_token(&self, stale: &str) {
        let mut cached = self.inner.token.write().unwrap_or_else(|e| e.into_inner());
        if cached.as_ref().is_some_and(|token| &*token.value == stale) {
            *cached = None;
        }
    }

    /// Exchanges a freshly signed assertion for an access token and its lifetime.
    async fn fetch_token(&self) -> Result<(String, Duration), SendOutcome> {
        let inner = &self.inner;
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = AssertionClaims {
            iss: &inner.client_email,
            scope: FCM_SCOPE,
            aud: &inner.token_uri,
            iat,
            exp: iat + ASSERTION_LIFETIME_S,
        };
        let header = Header {
            kid: inner.key_id.clone(),
            ..Header::new(Algorithm::RS256)
        };
        let assertion = jsonwebtoken::encode(&header, &claims, &inner.signing_key)
            .map_err(|e| operator_failure("FCM", &format!("signing the assertion: {e}"), None))?;
        let form = [
            ("grant_type", JWT_BEARER),
            ("assertion", assertion.as_str()),
        ];
        let response = inner
            .http
            .post(&inner.token_uri)
            .form(&form)
            .send()
            .await
            .map_err(|e| token_unavailable(e.to_string(), None))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let bytes = response
            .bytes()
            .await
            .map_err(|e| token_unavailable(e.to_string(), None))?;
        if status.is_success() {
            let granted: TokenResponse = serde_json::from_slice(&bytes)
                .map_err(|e| token_unavailable(format!("unreadable token response: {e}"), None))?;
            tracing::debug!(expires_in = granted.expires_in, "fcm access token obtained");
            return Ok((
                granted.access_token,
                Duration::from_secs(granted.expires_in),
            ));
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        tracing::warn!(%status, body = %text, "fcm token exchange failed");
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(token_unavailable(text, retry_after));
        }
        // A refused grant is a configuration problem (wrong key, clock, scope): retrying the
        // same message will not fix it.
        let code = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|body| body.get("error")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| status.as_u16().to_string());
        Err(operator_failure(
            "FCM",
            &format!("token exchange refused: {code}: {text}"),
            None,
        ))
    }
}

/// How long after it was issued a token with `expires_in` is replaced: five minutes before
/// it expires, or halfway through a lifetime shorter than ten minutes.
fn refresh_after(expires_in: Duration) -> Duration {
    expires_in - REFRESH_MARGIN.min(expires_in / 2)
}

fn token_unavailable(message: String, retry_after: Option<Duration>) -> SendOutcome {
    operator_failure("FCM", &message, Some(retry_after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_five_minutes_early_or_halfway_for_short_tokens() {
        assert_eq!(
            refresh_after(Duration::from_secs(3599)),
            Duration::from_secs(3299)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(120)),
            Duration::from_secs(60)
        );
        assert_eq!(refresh_after(Duration::ZERO), Duration::ZERO);
    }
}
