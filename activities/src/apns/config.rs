//! Where and how the APNs channel sends (`FANOUT_APNS__*`), and reading the files the settings
//! name (keys, certificates, trust roots) into errors that say which setting is wrong.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::credentials::{check_secure_url, read_key_file};

/// Apple's production endpoint, selected by `endpoint = "production"`.
pub const PRODUCTION_URL: &str = "https://api.push.apple.com";

/// Apple's development endpoint, selected by `endpoint = "development"`.
pub const DEVELOPMENT_URL: &str = "https://api.sandbox.push.apple.com";

/// Where and how to send APNs notifications (`FANOUT_APNS__*`).
///
/// The defaults point at the sandbox simulator on its default port with its dev key id and
/// team id; the key (or certificate) files and `ca_path` must still be given, e.g. from
/// `GET /api/apns/credentials/{file}` of the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApnsConfig {
    /// Whether push to APNs devices is sent at all; when false, it is suppressed.
    pub enabled: bool,
    /// `production`, `development`, or a base URL such as `https://127.0.0.1:2197`.
    pub endpoint: String,
    /// The app's bundle id, sent as `apns-topic`.
    pub topic: String,
    /// How requests are authenticated.
    pub auth: ApnsAuthConfig,
    /// An extra trusted root certificate (PEM), for the sandbox's CA; the public roots stay
    /// trusted.
    pub ca_path: Option<PathBuf>,
    /// Time limit for one request, connecting included.
    pub timeout_ms: u64,
}

impl Default for ApnsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            endpoint: "https://127.0.0.1:2197".into(),
            topic: "com.fanout.sandbox".into(),
            auth: ApnsAuthConfig::default(),
            ca_path: None,
            timeout_ms: 10_000,
        }
    }
}

/// APNs authentication: a provider token unless `cert_path` is set.
///
/// Flat rather than an enum so it loads from `FANOUT_APNS__AUTH__*` variables and merges
/// over defaults without surprises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApnsAuthConfig {
    /// Token auth: the signing key's id (the `kid` header).
    pub key_id: String,
    /// Token auth: the developer team id (the `iss` claim).
    pub team_id: String,
    /// Token auth: the `.p8` signing key (PKCS#8 PEM). Certificate auth: the client
    /// certificate's private key (PEM).
    pub key_path: Option<PathBuf>,
    /// Certificate auth: the client certificate (PEM); setting it selects certificate auth.
    pub cert_path: Option<PathBuf>,
}

impl Default for ApnsAuthConfig {
    fn default() -> Self {
        Self {
            key_id: "FANOUTKEY1".into(),
            team_id: "FANOUTTEAM".into(),
            key_path: None,
            cert_path: None,
        }
    }
}

/// Why the APNs channel cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ApnsConfigError {
    /// A required setting is empty.
    #[error("apns.{0} is required")]
    Missing(&'static str),
    /// The endpoint is neither a known name nor an http(s) URL.
    #[error("apns.endpoint '{0}' is not production, development or an https url")]
    Endpoint(String),
    /// A key or certificate file could not be read.
    #[error("cannot read apns {what} {}: {source}", path.display())]
    Read {
        /// Which setting named the file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A key or certificate file has the wrong content.
    #[error("invalid apns {what} {}: {reason}", path.display())]
    Invalid {
        /// Which setting named the file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the apns http client: {0}")]
    Client(#[source] reqwest::Error),
}

pub(super) fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, ApnsConfigError> {
    read_key_file(what, path).map_err(|source| ApnsConfigError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

pub(super) fn invalid(
    what: &'static str,
    path: &Path,
    reason: impl fmt::Display,
) -> ApnsConfigError {
    ApnsConfigError::Invalid {
        what,
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Resolves `production`, `development` or a URL into a base URL without a trailing slash.
pub(super) fn base_url(endpoint: &str) -> Result<String, ApnsConfigError> {
    let endpoint = endpoint.trim();
    match endpoint {
        "production" => return Ok(PRODUCTION_URL.to_owned()),
        "development" => return Ok(DEVELOPMENT_URL.to_owned()),
        _ => {}
    }
    let url = reqwest::Url::parse(endpoint)
        .map_err(|_| ApnsConfigError::Endpoint(endpoint.to_owned()))?;
    let usable = matches!(url.scheme(), "https" | "http")
        && url.host().is_some()
        && url.query().is_none()
        && url.fragment().is_none();
    // Plain http only to loopback (the sandbox): provider tokens never cross a network in
    // plain text.
    if !usable || check_secure_url(endpoint).is_err() {
        return Err(ApnsConfigError::Endpoint(endpoint.to_owned()));
    }
    Ok(endpoint.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn endpoints_resolve_and_bad_ones_are_refused() {
        assert_eq!(base_url("production").unwrap(), PRODUCTION_URL);
        assert_eq!(base_url("development").unwrap(), DEVELOPMENT_URL);
        assert_eq!(
            base_url("https://127.0.0.1:2197/").unwrap(),
            "https://127.0.0.1:2197"
        );
        for bad in [
            "",
            "staging",
            "ftp://example.com",
            "https://example.com/?q=1",
        ] {
            assert!(
                matches!(base_url(bad), Err(ApnsConfigError::Endpoint(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn config_loads_from_fanout_environment_variables() {
        #[derive(Debug, Default, Serialize, Deserialize)]
        #[serde(default)]
        struct Config {
            apns: ApnsConfig,
        }
        let env: HashMap<String, String> = [
            ("FANOUT_APNS__ENABLED", "true"),
            ("FANOUT_APNS__ENDPOINT", "production"),
            ("FANOUT_APNS__TOPIC", "com.acme.app"),
            // Numeric-looking ids must stay strings.
            ("FANOUT_APNS__AUTH__KEY_ID", "1234567890"),
            ("FANOUT_APNS__AUTH__TEAM_ID", "ABCDE12345"),
            ("FANOUT_APNS__AUTH__KEY_PATH", "/etc/fanout/AuthKey.p8"),
            ("FANOUT_APNS__TIMEOUT_MS", "2500"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let config: Config = fanout_runtime::config::load(None, &env).unwrap();
        assert_eq!(
            config.apns,
            ApnsConfig {
                enabled: true,
                endpoint: "production".into(),
                topic: "com.acme.app".into(),
                auth: ApnsAuthConfig {
                    key_id: "1234567890".into(),
                    team_id: "ABCDE12345".into(),
                    key_path: Some("/etc/fanout/AuthKey.p8".into()),
                    cert_path: None,
                },
                ca_path: None,
                timeout_ms: 2500,
            }
        );
        let defaults: Config = fanout_runtime::config::load(None, &HashMap::new()).unwrap();
        assert_eq!(defaults.apns, ApnsConfig::default());
        assert!(!defaults.apns.enabled);
    }
}
