//! Where and how the FCM channel sends, and the Google service-account key it sends as.

use std::path::PathBuf;

use fanout_domain::config::Secret;
use serde::{Deserialize, Serialize};

use crate::credentials::check_secure_url;

/// Where and how to send FCM messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FcmConfig {
    /// Whether the FCM channel is used at all; without a key file it cannot be.
    pub enabled: bool,
    /// The FCM API origin; fanout-sandbox's HTTP address in development and tests.
    pub base_url: String,
    /// The service account's JSON key file, as downloaded from the Firebase console.
    pub service_account_path: Option<PathBuf>,
    /// The Firebase project to send for; the key file's `project_id` when absent.
    pub project_id: Option<String>,
    /// Timeout of each HTTP request (token exchange or send), in milliseconds.
    pub timeout_ms: u64,
}

impl Default for FcmConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            base_url: "https://fcm.googleapis.com".into(),
            service_account_path: None,
            project_id: None,
            timeout_ms: 10_000,
        }
    }
}

/// Why the FCM channel cannot start.
#[derive(Debug, thiserror::Error)]
pub enum FcmConfigError {
    /// No key file was configured.
    #[error("fcm service_account_path is not set")]
    MissingServiceAccount,
    /// The key file could not be read.
    #[error("cannot read fcm service account file {path}: {source}")]
    Read {
        /// The configured path.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The key file is not a usable service-account key.
    #[error("invalid fcm service account: {0}")]
    InvalidKey(String),
    /// Neither the configuration nor the key file names a project.
    #[error("fcm project_id is not set and the service account names none")]
    MissingProject,
    /// A configured value is unusable.
    #[error("invalid fcm {field}: {reason}")]
    Invalid {
        /// The configuration key.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the fcm http client: {0}")]
    Http(#[source] reqwest::Error),
}

/// The parts of a Google service-account key file the client uses.
#[derive(Clone, Deserialize)]
pub struct ServiceAccountKey {
    /// The account's address, the assertion's issuer.
    pub client_email: String,
    /// The PEM-encoded RSA private key.
    pub private_key: Secret,
    /// The key's id, sent as the assertion's `kid`.
    #[serde(default)]
    pub private_key_id: Option<String>,
    /// Where assertions are exchanged for access tokens.
    #[serde(default)]
    pub token_uri: Option<String>,
    /// The project the account belongs to.
    #[serde(default)]
    pub project_id: Option<String>,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key", &self.private_key)
            .field("private_key_id", &self.private_key_id)
            .field("token_uri", &self.token_uri)
            .field("project_id", &self.project_id)
            .finish()
    }
}

impl ServiceAccountKey {
    /// Parses a key file's JSON.
    pub fn from_json(json: &str) -> Result<Self, FcmConfigError> {
        serde_json::from_str(json).map_err(|e| FcmConfigError::InvalidKey(e.to_string()))
    }
}

pub(super) fn check_url(field: &'static str, url: &str) -> Result<(), FcmConfigError> {
    check_secure_url(url).map_err(|reason| FcmConfigError::Invalid { field, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_loads_from_fanout_environment_variables() {
        let env = [
            ("FANOUT_ENABLED", "true"),
            ("FANOUT_BASE_URL", "http://127.0.0.1:8025"),
            ("FANOUT_SERVICE_ACCOUNT_PATH", "/etc/fanout/fcm.json"),
            ("FANOUT_TIMEOUT_MS", "2500"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let config: FcmConfig = fanout_runtime::config::load(None, &env).unwrap();
        assert_eq!(
            config,
            FcmConfig {
                enabled: true,
                base_url: "http://127.0.0.1:8025".into(),
                service_account_path: Some("/etc/fanout/fcm.json".into()),
                project_id: None,
                timeout_ms: 2500,
            }
        );
        let defaults: FcmConfig = fanout_runtime::config::load(None, &Default::default()).unwrap();
        assert_eq!(defaults, FcmConfig::default());
    }
}
