//! How the worker holds the operator's provider credentials: never over plain text except to
//! loopback, key files kept private, the sandbox's committed key refused anywhere but against
//! the sandbox, and failures of the operator's credentials reported to tenants with a generic
//! code (the detail goes to the worker's log, where the operator looks).

use std::net::IpAddr;
use std::path::Path;

use crate::outcome::SendOutcome;

/// The `private_key_id` of the FCM service account committed under `sandbox/dev/` for
/// development and tests. Anyone can read that key, so it is refused unless both the FCM
/// origin and its token endpoint are on loopback (the sandbox).
pub const SANDBOX_FCM_KEY_ID: &str = "fanout-sandbox-dev-key-1";

/// The receipt code of a send the operator's credentials failed for good (a refused OAuth
/// grant, an invalid APNs provider token): the tenant learns the platform is at fault, not why.
pub const PROVIDER_AUTH: &str = "provider_auth";

/// The receipt code of a send that could not get credentials for now (the token service was
/// unreachable or busy); retried like any transient failure.
pub const PROVIDER_AUTH_UNAVAILABLE: &str = "provider_auth_unavailable";

/// Whether `host` (a name or an address, IPv6 optionally in brackets) is this machine.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether `url` points at this machine.
pub fn is_loopback_url(url: &str) -> bool {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(is_loopback_host))
        .unwrap_or(false)
}

/// Checks that `url` is `https`, or `http` to loopback only (the sandbox): credentials and
/// notification content never cross a network in plain text. The error says what to fix.
pub fn check_secure_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("'{url}': {e}"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_url(url) => Ok(()),
        "http" => Err(format!(
            "'{url}' is plain http to a host that is not loopback; use https"
        )),
        _ => Err(format!("'{url}' is not an https url")),
    }
}

/// Reads a key file, warning when others than its owner may read it.
pub fn read_key_file(what: &str, path: &Path) -> std::io::Result<Vec<u8>> {
    let bytes = std::fs::read(path)?;
    if let Some(mode) = loose_mode(path) {
        tracing::warn!(
            key = what,
            path = %path.display(),
            mode = format!("{mode:o}"),
            "key file is readable by its group or others; chmod 600 it"
        );
    }
    Ok(bytes)
}

/// The file's permission bits when its group or others may read or write it.
#[cfg(unix)]
pub fn loose_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

/// The file's permission bits when its group or others may read or write it.
#[cfg(not(unix))]
pub fn loose_mode(_path: &Path) -> Option<u32> {
    None
}

/// A send the operator's credentials failed: logged in full for the operator, reported to the
/// tenant as [`PROVIDER_AUTH`] (permanent) or [`PROVIDER_AUTH_UNAVAILABLE`] (transient).
pub fn operator_failure(
    provider: &str,
    detail: &str,
    transient: Option<Option<std::time::Duration>>,
) -> SendOutcome {
    match transient {
        Some(retry_after) => {
            tracing::warn!(provider, detail, "provider credentials unavailable for now");
            SendOutcome::Transient {
                code: PROVIDER_AUTH_UNAVAILABLE.into(),
                message: format!(
                    "{provider} credentials could not be obtained for now; the send is retried"
                ),
                retry_after,
            }
        }
        None => {
            tracing::error!(
                provider,
                detail,
                "provider refused the platform's credentials"
            );
            SendOutcome::permanent(
                PROVIDER_AUTH,
                format!(
                    "{provider} refused the platform's credentials; the operator has been alerted"
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_for_loopback_only() {
        for ok in [
            "https://fcm.googleapis.com",
            "http://127.0.0.1:8025",
            "http://localhost:1",
            "http://[::1]:9",
        ] {
            check_secure_url(ok).unwrap();
        }
        for refused in ["http://fcm.example.com", "http://10.0.0.5:80", "ftp://x"] {
            assert!(check_secure_url(refused).is_err(), "{refused}");
        }
        assert!(is_loopback_host("127.8.9.10"));
        assert!(!is_loopback_host("relay.example.com"));
    }

    #[cfg(unix)]
    #[test]
    fn group_or_world_readable_key_files_are_flagged() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("fanout-key-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key.p8");
        std::fs::write(&path, b"secret").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(loose_mode(&path), Some(0o644));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(loose_mode(&path), None);
        assert_eq!(read_key_file("test", &path).unwrap(), b"secret");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_sandbox_key_identity_is_the_committed_files() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../sandbox/dev/fcm-service-account.json");
        let key: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(key["private_key_id"], SANDBOX_FCM_KEY_ID);
    }

    #[test]
    fn operator_failures_tell_tenants_nothing_of_the_detail() {
        let outcome = operator_failure("FCM", "invalid_grant: key 1234 revoked", None);
        let SendOutcome::Permanent { code, message } = outcome else {
            panic!("permanent expected");
        };
        assert_eq!(code, PROVIDER_AUTH);
        assert!(!message.contains("1234"), "{message}");
    }
}
