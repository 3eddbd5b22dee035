//! The OAuth 2.0 token endpoint, as Google's serves service accounts (RFC 7523 JWT bearer
//! grant), and the access tokens it has issued.
//!
//! The assertion must be an RS256 JWT signed with the sandbox's dev key, issued by its
//! `client_email`, addressed (`aud`) to this endpoint's own URL, asking for the FCM scope, and
//! short-lived (at most an hour between `iat` and `exp`). Failures answer `400` with Google's
//! `{"error", "error_description"}` body.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::fcm::{CLIENT_EMAIL, PRIVATE_KEY_ID, PUBLIC_KEY_PEM, now_s};

/// The grant type of a service-account assertion.
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Scopes that grant sending FCM messages.
const ACCEPTED_SCOPES: [&str; 2] = [
    "https://www.googleapis.com/auth/firebase.messaging",
    "https://www.googleapis.com/auth/cloud-platform",
];

/// Lifetime of an issued access token, as Google's.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// Longest an assertion may live, `exp - iat`.
const MAX_ASSERTION_LIFETIME_S: u64 = 3600;

/// Clock skew tolerated on `iat` and `exp`.
const LEEWAY_S: u64 = 60;

/// Issued tokens above which expired ones are swept, to keep memory bounded.
const SWEEP_ABOVE: usize = 10_000;

/// Form body of `POST /oauth2/token`.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenRequest {
    grant_type: Option<String>,
    assertion: Option<String>,
}

/// Success body of `POST /oauth2/token`.
#[derive(Debug, Serialize)]
pub(crate) struct TokenResponse {
    access_token: String,
    expires_in: u64,
    token_type: &'static str,
}

/// Body of `GET /api/fcm/tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FcmTokenStats {
    /// Access tokens the token endpoint has granted since the sandbox started.
    pub issued: u64,
    /// Granted tokens still valid: neither expired nor revoked.
    pub active: u64,
}

/// A refused grant, in Google's terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub(crate) struct GrantError {
    /// `invalid_request`, `unsupported_grant_type`, `invalid_grant` or `invalid_scope`.
    pub code: &'static str,
    pub description: String,
}

impl GrantError {
    fn new(code: &'static str, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }

    fn grant(description: impl Into<String>) -> Self {
        Self::new("invalid_grant", description)
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    scope: Option<String>,
    iat: u64,
    exp: u64,
}

/// Verifies assertions and remembers the tokens granted for them.
pub(crate) struct Tokens {
    key: DecodingKey,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Access token to the instant it expires.
    active: HashMap<String, Instant>,
    issued: u64,
}

impl Tokens {
    pub fn new() -> Self {
        Self {
            // The key is compiled in; a test checks that it parses.
            key: DecodingKey::from_rsa_pem(PUBLIC_KEY_PEM.as_bytes())
                .expect("the sandbox's fcm public key is valid pem"),
            inner: Mutex::default(),
        }
    }

    /// Checks the grant request and issues an access token; `audience` is the URL the
    /// request reached, which the assertion must name.
    pub fn grant(
        &self,
        request: &TokenRequest,
        audience: &str,
    ) -> Result<TokenResponse, GrantError> {
        let grant_type = request.grant_type.as_deref().unwrap_or_default();
        if grant_type.is_empty() {
            return Err(GrantError::new(
                "invalid_request",
                "Missing required parameter: grant_type",
            ));
        }
        if grant_type != JWT_BEARER {
            return Err(GrantError::new(
                "unsupported_grant_type",
                format!("Invalid grant_type: {grant_type}"),
            ));
        }
        let Some(assertion) = request.assertion.as_deref().filter(|a| !a.is_empty()) else {
            return Err(GrantError::new(
                "invalid_request",
                "Missing required parameter: assertion",
            ));
        };
        let claims = self.verify(assertion, audience)?;
        let scopes = claims.scope.as_deref().unwrap_or_default();
        if !scopes
            .split_whitespace()
            .any(|scope| ACCEPTED_SCOPES.contains(&scope))
        {
            return Err(GrantError::new(
                "invalid_scope",
                format!("the scope must include {}", ACCEPTED_SCOPES[0]),
            ));
        }
        let access_token = format!("ya29.sandbox.{}", uuid::Uuid::new_v4().simple());
        let now = Instant::now();
        let mut inner = self.lock();
        if inner.active.len() >= SWEEP_ABOVE {
            inner.active.retain(|_, expires| *expires > now);
        }
        inner
            .active
            .insert(access_token.clone(), now + TOKEN_LIFETIME);
        inner.issued += 1;
        Ok(TokenResponse {
            access_token,
            // Google answers 3599: the second already spent issuing it.
            expires_in: TOKEN_LIFETIME.as_secs() - 1,
            token_type: "Bearer",
        })
    }

    /// Whether `access_token` was granted and is still valid.
    pub fn is_valid(&self, access_token: &str) -> bool {
        self.lock()
            .active
            .get(access_token)
            .is_some_and(|expires| *expires > Instant::now())
    }

    /// Revokes every granted token: the next send with one of them is refused `401`.
    pub fn revoke_all(&self) {
        self.lock().active.clear();
    }

    pub fn stats(&self) -> FcmTokenStats {
        let now = Instant::now();
        let inner = self.lock();
        FcmTokenStats {
            issued: inner.issued,
            active: inner.active.values().filter(|exp| **exp > now).count() as u64,
        }
    }

    fn verify(&self, assertion: &str, audience: &str) -> Result<Claims, GrantError> {
        let header = jsonwebtoken::decode_header(assertion)
            .map_err(|e| GrantError::grant(format!("invalid JWT: {e}")))?;
        if header.alg != Algorithm::RS256 {
            return Err(GrantError::grant(
                "invalid JWT: the algorithm must be RS256",
            ));
        }
        if header
            .kid
            .as_deref()
            .is_some_and(|kid| kid != PRIVATE_KEY_ID)
        {
            return Err(GrantError::grant(
                "invalid JWT signature: unknown key id (kid)",
            ));
        }
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[audience]);
        validation.set_issuer(&[CLIENT_EMAIL]);
        validation.set_required_spec_claims(&["iss", "aud", "iat", "exp"]);
        validation.leeway = LEEWAY_S;
        let claims = jsonwebtoken::decode::<Claims>(assertion, &self.key, &validation)
            .map_err(|e| {
                GrantError::grant(match e.kind() {
                    ErrorKind::InvalidSignature => "invalid JWT signature".to_owned(),
                    ErrorKind::ExpiredSignature => "invalid JWT: the token has expired".to_owned(),
                    ErrorKind::InvalidAudience => {
                        format!("invalid JWT: the audience (aud) must be {audience}")
                    }
                    ErrorKind::InvalidIssuer => {
                        format!("invalid JWT: the issuer (iss) must be {CLIENT_EMAIL}")
                    }
                    _ => format!("invalid JWT: {e}"),
                })
            })?
            .claims;
        if claims.iat > now_s() + LEEWAY_S
            || claims.exp <= claims.iat
            || claims.exp - claims.iat > MAX_ASSERTION_LIFETIME_S
        {
            return Err(GrantError::grant(
                "invalid JWT: it must be short-lived (at most 60 minutes) and issued now; \
                 check its iat and exp",
            ));
        }
        Ok(claims)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;
    use crate::fcm::{SCOPE, service_account_json};

    const AUDIENCE: &str = "http://127.0.0.1:8025/oauth2/token";

    fn sign(claims: &serde_json::Value, kid: Option<&str>) -> String {
        let account: serde_json::Value =
            serde_json::from_str(&service_account_json("http://127.0.0.1:8025")).unwrap();
        let key =
            EncodingKey::from_rsa_pem(account["private_key"].as_str().unwrap().as_bytes()).unwrap();
        let header = Header {
            kid: kid.map(str::to_owned),
            ..Header::new(Algorithm::RS256)
        };
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    fn claims() -> serde_json::Value {
        let now = now_s();
        json!({
            "iss": CLIENT_EMAIL,
            "aud": AUDIENCE,
            "scope": SCOPE,
            "iat": now,
            "exp": now + 3600,
        })
    }

    fn request(assertion: String) -> TokenRequest {
        TokenRequest {
            grant_type: Some(JWT_BEARER.to_owned()),
            assertion: Some(assertion),
        }
    }

    fn refusal(tokens: &Tokens, claims: serde_json::Value) -> GrantError {
        tokens
            .grant(&request(sign(&claims, Some(PRIVATE_KEY_ID))), AUDIENCE)
            .unwrap_err()
    }

    #[test]
    fn grants_a_token_for_a_valid_assertion() {
        let tokens = Tokens::new();
        let response = tokens
            .grant(&request(sign(&claims(), Some(PRIVATE_KEY_ID))), AUDIENCE)
            .unwrap();
        assert_eq!(response.token_type, "Bearer");
        assert_eq!(response.expires_in, 3599);
        assert!(tokens.is_valid(&response.access_token));
        assert!(!tokens.is_valid("ya29.made-up"));
        assert_eq!(
            tokens.stats(),
            FcmTokenStats {
                issued: 1,
                active: 1
            }
        );
        tokens.revoke_all();
        assert!(!tokens.is_valid(&response.access_token));
        assert_eq!(tokens.stats().active, 0);
    }

    #[test]
    fn refuses_assertions_google_would_refuse() {
        let tokens = Tokens::new();
        let now = now_s();
        let cases = [
            (
                json!({ "aud": "https://oauth2.googleapis.com/token" }),
                "audience",
            ),
            (
                json!({ "iss": "someone@else.iam.gserviceaccount.com" }),
                "issuer",
            ),
            (json!({ "iat": now - 7200, "exp": now - 3600 }), "expired"),
            (json!({ "iat": now, "exp": now + 7200 }), "short-lived"),
            (
                json!({ "iat": now + 600, "exp": now + 1200 }),
                "short-lived",
            ),
        ];
        for (change, expected) in cases {
            let mut claims = claims();
            for (key, value) in change.as_object().unwrap() {
                claims[key] = value.clone();
            }
            let error = refusal(&tokens, claims);
            assert_eq!(error.code, "invalid_grant");
            assert!(error.description.contains(expected), "{error}");
        }
        let mut no_scope = claims();
        no_scope["scope"] = json!("https://www.googleapis.com/auth/userinfo.email");
        assert_eq!(refusal(&tokens, no_scope).code, "invalid_scope");
        assert_eq!(tokens.stats().issued, 0);
    }

    #[test]
    fn refuses_a_tampered_signature_and_a_foreign_key_id() {
        let tokens = Tokens::new();
        let assertion = sign(&claims(), None);
        let (signed, signature) = assertion.rsplit_once('.').unwrap();
        let flipped = if signature.starts_with('A') { "B" } else { "A" };
        let tampered = format!("{signed}.{flipped}{}", &signature[1..]);
        let error = tokens.grant(&request(tampered), AUDIENCE).unwrap_err();
        assert_eq!(
            (error.code, error.description.as_str()),
            ("invalid_grant", "invalid JWT signature")
        );
        let error = tokens
            .grant(&request(sign(&claims(), Some("another-key"))), AUDIENCE)
            .unwrap_err();
        assert!(error.description.contains("kid"), "{error}");
    }

    #[test]
    fn refuses_malformed_requests() {
        let tokens = Tokens::new();
        let missing = TokenRequest {
            grant_type: None,
            assertion: None,
        };
        assert_eq!(
            tokens.grant(&missing, AUDIENCE).unwrap_err().code,
            "invalid_request"
        );
        let wrong = TokenRequest {
            grant_type: Some("client_credentials".to_owned()),
            assertion: None,
        };
        assert_eq!(
            tokens.grant(&wrong, AUDIENCE).unwrap_err().code,
            "unsupported_grant_type"
        );
        let no_assertion = TokenRequest {
            grant_type: Some(JWT_BEARER.to_owned()),
            assertion: None,
        };
        assert_eq!(
            tokens.grant(&no_assertion, AUDIENCE).unwrap_err().code,
            "invalid_request"
        );
        let garbage = tokens
            .grant(&request("not.a.jwt".to_owned()), AUDIENCE)
            .unwrap_err();
        assert_eq!(garbage.code, "invalid_grant");
    }
}
