//! Signatures by the Standard Webhooks convention (<https://www.standardwebhooks.com>).
//!
//! A call carries `webhook-id` (the message id), `webhook-timestamp` (Unix seconds) and
//! `webhook-signature`: `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`, keyed by
//! the secret's bytes (the base64 after `whsec_`). During a secret's rotation the header holds
//! one signature per secret, separated by spaces, and a receiver accepts any it can verify.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use fanout_store::webhooks::SECRET_PREFIX;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// A secret that is not `whsec_` and base64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a webhook secret is `{SECRET_PREFIX}` and base64")]
pub struct MalformedSecret;

/// The `webhook-signature` header for `body`, one `v1,` signature per secret.
pub fn signature_header(
    secrets: &[String],
    message_id: &str,
    timestamp_s: i64,
    body: &[u8],
) -> Result<String, MalformedSecret> {
    let signatures = secrets
        .iter()
        .map(|secret| {
            let key = STANDARD
                .decode(secret.strip_prefix(SECRET_PREFIX).ok_or(MalformedSecret)?)
                .map_err(|_| MalformedSecret)?;
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| MalformedSecret)?;
            mac.update(message_id.as_bytes());
            mac.update(b".");
            mac.update(timestamp_s.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            Ok(format!(
                "v1,{}",
                STANDARD.encode(mac.finalize().into_bytes())
            ))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(signatures.join(" "))
}

/// The id of a call carrying these events (`msg_` and 32 hex digits): the same events make the
/// same id, so a batch sent again is recognisably the same message.
pub fn message_id(event_ids: &[String]) -> String {
    let mut hash = Sha256::new();
    for id in event_ids {
        hash.update(id.as_bytes());
        hash.update([0x1f]);
    }
    format!("msg_{}", &hex::encode(hash.finalize())[..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference libraries: this secret,
    /// id, timestamp and payload sign to this signature.
    #[test]
    fn signs_as_the_reference_implementation_does() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned();
        let header = signature_header(
            &[secret],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(header, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_rotation_signs_with_every_secret_and_bad_secrets_are_refused() {
        let secrets = [
            format!("{SECRET_PREFIX}{}", STANDARD.encode(b"new key")),
            format!("{SECRET_PREFIX}{}", STANDARD.encode(b"old key")),
        ];
        let both = signature_header(&secrets, "msg_1", 1, b"{}").unwrap();
        let new = signature_header(&secrets[..1], "msg_1", 1, b"{}").unwrap();
        let old = signature_header(&secrets[1..], "msg_1", 1, b"{}").unwrap();
        assert_eq!(both, format!("{new} {old}"));
        assert_ne!(
            new,
            signature_header(&secrets[..1], "msg_1", 2, b"{}").unwrap()
        );
        assert_eq!(
            signature_header(&["nope".to_owned()], "msg_1", 1, b"{}"),
            Err(MalformedSecret)
        );
    }

    #[test]
    fn message_ids_follow_the_events() {
        let a = message_id(&["evt_1".into(), "evt_2".into()]);
        assert_eq!(a, message_id(&["evt_1".into(), "evt_2".into()]));
        assert_ne!(a, message_id(&["evt_1".into()]));
        assert!(a.starts_with("msg_") && a.len() == 36);
    }
}
