//! The provider token: an ES256 JWT signed with the team's key, shared by every send (through
//! [`crate::push::token`]) until it is due for refresh (see the module's header for why 50
//! minutes).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;

use super::config::{ApnsAuthConfig, ApnsConfigError, invalid, read};
use crate::credentials::operator_failure;
use crate::outcome::SendOutcome;
use crate::push::token::TokenSource;

/// Age at which a provider token is replaced: well inside Apple's hour, and past the 20
/// minutes Apple wants between refreshes.
const TOKEN_REFRESH_AFTER: Duration = Duration::from_secs(50 * 60);

/// What time it is; injectable so token ageing is tested without waiting.
pub(super) type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Where provider tokens come from: the team's signing key, for [`TokenCache`] to share what
/// it signs.
///
/// [`TokenCache`]: crate::push::token::TokenCache
pub(super) struct ProviderTokens {
    key_id: String,
    team_id: String,
    key: EcdsaKeyPair,
    rng: SystemRandom,
    clock: Clock,
    /// Tokens signed so far, for logs and tests.
    pub(super) minted: AtomicU64,
}

pub(super) struct ProviderToken {
    pub(super) jwt: String,
    issued_at: SystemTime,
}

impl TokenSource for ProviderTokens {
    type Token = ProviderToken;

    const PROVIDER: &'static str = "APNs";

    fn fresh(&self, token: &ProviderToken) -> bool {
        // A clock that went backwards makes the token look new, which is harmless.
        let age = (self.clock)()
            .duration_since(token.issued_at)
            .unwrap_or_default();
        age < TOKEN_REFRESH_AFTER
    }

    async fn issue(&self) -> Result<ProviderToken, SendOutcome> {
        let token = self.sign((self.clock)()).map_err(|e| {
            operator_failure(
                "APNs",
                &format!("signing the provider token failed: {e:?}"),
                Some(None),
            )
        })?;
        let minted = self.minted.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(key_id = %self.key_id, minted, "apns provider token signed");
        Ok(token)
    }
}

impl ProviderTokens {
    fn sign(&self, now: SystemTime) -> Result<ProviderToken, ring::error::Unspecified> {
        let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let header = serde_json::json!({ "alg": "ES256", "kid": self.key_id });
        let claims = serde_json::json!({ "iss": self.team_id, "iat": iat });
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        // The fixed (r || s) signature encoding is the one JWS uses.
        let signature = self.key.sign(&self.rng, signed.as_bytes())?;
        Ok(ProviderToken {
            jwt: format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref())),
            issued_at: UNIX_EPOCH + Duration::from_secs(iat),
        })
    }
}

pub(super) fn provider_tokens(
    auth: &ApnsAuthConfig,
    key_path: &Path,
    clock: Clock,
) -> Result<ProviderTokens, ApnsConfigError> {
    if auth.key_id.trim().is_empty() {
        return Err(ApnsConfigError::Missing("auth.key_id"));
    }
    if auth.team_id.trim().is_empty() {
        return Err(ApnsConfigError::Missing("auth.team_id"));
    }
    let pem = read("auth.key_path", key_path)?;
    let der = PrivatePkcs8KeyDer::from_pem_slice(&pem).map_err(|e| {
        invalid(
            "auth.key_path",
            key_path,
            format!("not a PKCS#8 PEM key: {e}"),
        )
    })?;
    let rng = SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        der.secret_pkcs8_der(),
        &rng,
    )
    .map_err(|e| invalid("auth.key_path", key_path, format!("not a P-256 key: {e}")))?;
    Ok(ProviderTokens {
        key_id: auth.key_id.trim().to_owned(),
        team_id: auth.team_id.trim().to_owned(),
        key,
        rng,
        clock,
        minted: AtomicU64::new(0),
    })
}
