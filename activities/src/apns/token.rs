//! The provider token: an ES256 JWT signed with the team's key, shared by every send until it is
//! due for refresh (see the module's header for why 50 minutes).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;

use super::config::{ApnsAuthConfig, ApnsConfigError, invalid, read};

/// Age at which a provider token is replaced: well inside Apple's hour, and past the 20
/// minutes Apple wants between refreshes.
const TOKEN_REFRESH_AFTER: Duration = Duration::from_secs(50 * 60);

/// What time it is; injectable so token ageing is tested without waiting.
pub(super) type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The provider token cache: one signed JWT shared until it is due for refresh.
pub(super) struct ProviderTokens {
    pub(super) key_id: String,
    team_id: String,
    key: EcdsaKeyPair,
    rng: SystemRandom,
    clock: Clock,
    current: Mutex<Option<Arc<ProviderToken>>>,
    /// Tokens signed so far, for logs and tests.
    pub(super) minted: AtomicU64,
}

pub(super) struct ProviderToken {
    pub(super) jwt: String,
    issued_at: SystemTime,
}

impl ProviderTokens {
    /// Returns the shared token, signing a new one when there is none or it is due.
    pub(super) fn get(&self) -> Result<Arc<ProviderToken>, ring::error::Unspecified> {
        let now = (self.clock)();
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(token) = current.as_ref() {
            // A clock that went backwards makes the token look new, which is harmless.
            let age = now.duration_since(token.issued_at).unwrap_or_default();
            if age < TOKEN_REFRESH_AFTER {
                return Ok(token.clone());
            }
        }
        let token = Arc::new(self.sign(now)?);
        *current = Some(token.clone());
        let minted = self.minted.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(key_id = %self.key_id, minted, "apns provider token signed");
        Ok(token)
    }

    /// Drops `stale` if it is still the shared token, so the next [`Self::get`] signs anew.
    /// Concurrent sends that all saw it expire thus cause one refresh, not one each.
    pub(super) fn invalidate(&self, stale: &Arc<ProviderToken>) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current
            .as_ref()
            .is_some_and(|token| Arc::ptr_eq(token, stale))
        {
            *current = None;
        }
    }

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
        current: Mutex::new(None),
        minted: AtomicU64::new(0),
    })
}
