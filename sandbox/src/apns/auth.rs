//! Provider-token (JWT) checks as APNs makes them: ES256 signed with the registered key, `kid`
//! naming it, `iss` the team, `iat` within the last hour.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use serde::Deserialize;

/// How old a provider token may be before APNs calls it expired.
pub(crate) const MAX_TOKEN_AGE_S: u64 = 60 * 60;

/// How far in the future `iat` may lie, for clock skew between client and server.
const MAX_CLOCK_SKEW_S: u64 = 60;

/// A provider token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProviderToken {
    pub key_id: String,
    pub team_id: String,
    pub issued_at: u64,
}

/// Why a token was refused: the `reason` APNs answers with, all under 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenRejection {
    Invalid,
    Expired,
}

impl TokenRejection {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Invalid => "InvalidProviderToken",
            Self::Expired => "ExpiredProviderToken",
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    iat: Option<u64>,
}

/// The key a provider token must be signed with, and whose it is.
pub(crate) struct Verifier<'a> {
    pub key_id: &'a str,
    pub team_id: &'a str,
    /// Uncompressed P-256 public point.
    pub public_key: &'a [u8],
}

impl Verifier<'_> {
    /// Checks `jwt` at `now` (seconds since the Unix epoch).
    pub fn verify(&self, jwt: &str, now: u64) -> Result<ProviderToken, TokenRejection> {
        let invalid = TokenRejection::Invalid;
        let mut parts = jwt.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid);
        };
        let header: Header = decode_json(header).ok_or(invalid)?;
        let claims: Claims = decode_json(claims).ok_or(invalid)?;
        if header.alg != "ES256" || header.kid.as_deref() != Some(self.key_id) {
            return Err(invalid);
        }
        if claims.iss.as_deref() != Some(self.team_id) {
            return Err(invalid);
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| invalid)?;
        let signed = &jwt[..jwt.rfind('.').ok_or(invalid)?];
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.public_key)
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| invalid)?;
        let issued_at = claims.iat.ok_or(invalid)?;
        if issued_at > now + MAX_CLOCK_SKEW_S {
            return Err(invalid);
        }
        if now.saturating_sub(issued_at) > MAX_TOKEN_AGE_S {
            return Err(TokenRejection::Expired);
        }
        Ok(ProviderToken {
            key_id: self.key_id.to_owned(),
            team_id: self.team_id.to_owned(),
            issued_at,
        })
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};

    use super::*;

    const NOW: u64 = 1_800_000_000;

    struct Signer {
        key: EcdsaKeyPair,
        rng: SystemRandom,
    }

    impl Signer {
        fn new() -> Self {
            let rng = SystemRandom::new();
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let key =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .unwrap();
            Self { key, rng }
        }

        fn sign(&self, header: &serde_json::Value, claims: &serde_json::Value) -> String {
            let encode = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
            let signed = format!("{}.{}", encode(header), encode(claims));
            let signature = self.key.sign(&self.rng, signed.as_bytes()).unwrap();
            format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
        }

        fn verifier(&self) -> Verifier<'_> {
            Verifier {
                key_id: "KEY",
                team_id: "TEAM",
                public_key: self.key.public_key().as_ref(),
            }
        }
    }

    fn token(signer: &Signer, kid: &str, iss: &str, iat: u64) -> String {
        signer.sign(
            &serde_json::json!({"alg": "ES256", "kid": kid}),
            &serde_json::json!({"iss": iss, "iat": iat}),
        )
    }

    #[test]
    fn accepts_a_fresh_token_from_the_registered_key() {
        let signer = Signer::new();
        let jwt = token(&signer, "KEY", "TEAM", NOW - 3000);
        let accepted = signer.verifier().verify(&jwt, NOW).unwrap();
        assert_eq!(accepted.issued_at, NOW - 3000);
        assert_eq!(
            (accepted.key_id.as_str(), accepted.team_id.as_str()),
            ("KEY", "TEAM")
        );
    }

    #[test]
    fn refuses_old_future_foreign_and_malformed_tokens() {
        let signer = Signer::new();
        let other = Signer::new();
        let verifier = signer.verifier();
        let expired = token(&signer, "KEY", "TEAM", NOW - MAX_TOKEN_AGE_S - 1);
        assert_eq!(verifier.verify(&expired, NOW), Err(TokenRejection::Expired));
        let cases = [
            token(&signer, "KEY", "TEAM", NOW + MAX_CLOCK_SKEW_S + 1),
            token(&signer, "OTHER", "TEAM", NOW),
            token(&signer, "KEY", "OTHER", NOW),
            token(&other, "KEY", "TEAM", NOW),
            signer.sign(
                &serde_json::json!({"alg": "HS256", "kid": "KEY"}),
                &serde_json::json!({"iss": "TEAM", "iat": NOW}),
            ),
            signer.sign(
                &serde_json::json!({"alg": "ES256", "kid": "KEY"}),
                &serde_json::json!({"iss": "TEAM"}),
            ),
            "not.a.jwt".to_owned(),
            "two.parts".to_owned(),
            format!("{}.extra", token(&signer, "KEY", "TEAM", NOW)),
        ];
        for jwt in cases {
            assert_eq!(
                verifier.verify(&jwt, NOW),
                Err(TokenRejection::Invalid),
                "{jwt}"
            );
        }
    }

    #[test]
    fn a_tampered_claim_breaks_the_signature() {
        let signer = Signer::new();
        let jwt = token(&signer, "KEY", "TEAM", NOW);
        let mut parts: Vec<&str> = jwt.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(r#"{"iss":"TEAM","iat":1800000001}"#);
        parts[1] = &forged;
        assert_eq!(
            signer.verifier().verify(&parts.join("."), NOW),
            Err(TokenRejection::Invalid)
        );
    }
}
