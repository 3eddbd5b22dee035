//! The OAuth access token: a service-account assertion (RS256) exchanged at the key file's
//! `token_uri`, cached and shared by every clone of the client (through [`crate::push::token`])
//! until five minutes before it expires.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::credentials::operator_failure;
use crate::outcome::SendOutcome;
use crate::push::answer::{retry_after, retryable};
use crate::push::token::TokenSource;

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

/// Where access tokens come from: the service account's key, exchanged at its token endpoint.
pub(super) struct AccessTokens {
    pub(super) http: reqwest::Client,
    pub(super) token_uri: String,
    pub(super) client_email: String,
    pub(super) key_id: Option<String>,
    pub(super) signing_key: EncodingKey,
}

/// An access token and when it is due for refresh.
pub(super) struct AccessToken {
    pub(super) value: String,
    refresh_at: Instant,
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

impl TokenSource for AccessTokens {
    type Token = AccessToken;

    const PROVIDER: &'static str = "FCM";

    fn fresh(&self, token: &AccessToken) -> bool {
        Instant::now() < token.refresh_at
    }

    async fn issue(&self) -> Result<AccessToken, SendOutcome> {
        let (value, expires_in) = self.fetch_token().await?;
        Ok(AccessToken {
            value,
            refresh_at: Instant::now() + refresh_after(expires_in),
        })
    }
}

impl AccessTokens {
    /// Exchanges a freshly signed assertion for an access token and its lifetime.
    async fn fetch_token(&self) -> Result<(String, Duration), SendOutcome> {
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = AssertionClaims {
            iss: &self.client_email,
            scope: FCM_SCOPE,
            aud: &self.token_uri,
            iat,
            exp: iat + ASSERTION_LIFETIME_S,
        };
        let header = Header {
            kid: self.key_id.clone(),
            ..Header::new(Algorithm::RS256)
        };
        let assertion = jsonwebtoken::encode(&header, &claims, &self.signing_key)
            .map_err(|e| operator_failure("FCM", &format!("signing the assertion: {e}"), None))?;
        let form = [
            ("grant_type", JWT_BEARER),
            ("assertion", assertion.as_str()),
        ];
        let response = self
            .http
            .post(&self.token_uri)
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
        if retryable(status) {
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
