//! The FCM channel: Firebase Cloud Messaging's HTTP v1 API, authenticated as a Google service
//! account.
//!
//! [`FcmClient`] signs an RS256 assertion with the service account's key, exchanges it at the
//! key file's `token_uri` for an OAuth access token, and sends each message with
//! `POST {base_url}/v1/projects/{project}/messages:send`. Because the token endpoint comes from
//! the key file and the API host from [`FcmConfig::base_url`], the same client talks to Google
//! or to fanout-sandbox's simulator.
//!
//! The access token is cached and shared by every clone of the client: it is refreshed five
//! minutes before it expires, by one caller while concurrent sends wait for it rather than each
//! asking the token endpoint. A send refused `401` (the token was revoked or expired early)
//! refreshes it once and retries.
//!
//! Answers are classified into a [`SendOutcome`] by FCM's `errorCode`: the token is dead
//! (`UNREGISTERED`, `SENDER_ID_MISMATCH`, `INVALID_ARGUMENT` about `message.token`), the
//! request should be retried (`QUOTA_EXCEEDED` with its `Retry-After`, `UNAVAILABLE`,
//! `INTERNAL`, any other 5xx, timeouts, connection failures), or it is refused for good
//! (everything else, including a payload FCM finds invalid).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fanout_domain::config::Secret;
use fanout_domain::user::DeviceToken;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, RETRY_AFTER};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::credentials::{
    SANDBOX_FCM_KEY_ID, check_secure_url, is_loopback_url, operator_failure, read_key_file,
};
use crate::outcome::SendOutcome;
use crate::push::{PushMessage, PushPriority};

/// Google's token endpoint, for a key file that names none.
const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// The scope that grants sending FCM messages.
const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// The grant type of a service-account assertion (RFC 7523).
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Lifetime asked for in an assertion; Google allows at most an hour.
const ASSERTION_LIFETIME_S: u64 = 3600;

/// How long before its expiry a cached access token is replaced.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Longest Android TTL FCM accepts: 28 days.
const MAX_TTL: Duration = Duration::from_secs(28 * 24 * 60 * 60);

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

/// Sends FCM messages. Cheap to clone; clones share the connection pool and access token.
#[derive(Clone)]
pub struct FcmClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FcmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcmClient")
            .field("send_url", &self.inner.send_url)
            .field("token_uri", &self.inner.token_uri)
            .finish_non_exhaustive()
    }
}

struct Inner {
    http: reqwest::Client,
    send_url: String,
    token_uri: String,
    client_email: String,
    key_id: Option<String>,
    signing_key: EncodingKey,
    /// The current access token; read on every send, written on refresh.
    token: RwLock<Option<CachedToken>>,
    /// Held by the one caller refreshing the token, so others wait instead of refreshing too.
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct CachedToken {
    value: Arc<str>,
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

/// A send the server refused for want of a valid access token.
struct Unauthenticated;

impl FcmClient {
    /// Reads the key file named by `config` and prepares the client; nothing is sent until
    /// the first message.
    pub fn new(config: &FcmConfig) -> Result<Self, FcmConfigError> {
        let path = config
            .service_account_path
            .as_ref()
            .ok_or(FcmConfigError::MissingServiceAccount)?;
        let bytes =
            read_key_file("fcm service account", path).map_err(|source| FcmConfigError::Read {
                path: path.clone(),
                source,
            })?;
        let json = String::from_utf8_lossy(&bytes);
        Self::with_key(config, ServiceAccountKey::from_json(&json)?)
    }

    /// Prepares the client with an already loaded key (for example from a secret store);
    /// `config.service_account_path` is ignored.
    pub fn with_key(config: &FcmConfig, key: ServiceAccountKey) -> Result<Self, FcmConfigError> {
        let signing_key = EncodingKey::from_rsa_pem(key.private_key.expose().as_bytes())
            .map_err(|e| FcmConfigError::InvalidKey(format!("private_key: {e}")))?;
        let project = config
            .project_id
            .clone()
            .or(key.project_id)
            .filter(|p| !p.is_empty())
            .ok_or(FcmConfigError::MissingProject)?;
        // The project becomes a path segment: keep it to the characters project ids use.
        if !project
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        {
            return Err(FcmConfigError::Invalid {
                field: "project_id",
                reason: format!("'{project}' is not a project id"),
            });
        }
        let base_url = config.base_url.trim_end_matches('/');
        check_url("base_url", base_url)?;
        let token_uri = key.token_uri.unwrap_or_else(|| GOOGLE_TOKEN_URI.to_owned());
        check_url("service account token_uri", &token_uri)?;
        if key.private_key_id.as_deref() == Some(SANDBOX_FCM_KEY_ID)
            && !(is_loopback_url(base_url) && is_loopback_url(&token_uri))
        {
            return Err(FcmConfigError::Invalid {
                field: "service_account_path",
                reason: "this is the sandbox's published development key, which anyone can \
                         read; it only talks to the sandbox on loopback. Use your own \
                         service account key"
                    .into(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .connect_timeout(Duration::from_millis(config.timeout_ms))
            .build()
            .map_err(FcmConfigError::Http)?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                send_url: format!("{base_url}/v1/projects/{project}/messages:send"),
                token_uri,
                client_email: key.client_email,
                key_id: key.private_key_id,
                signing_key,
                token: RwLock::new(None),
                refreshing: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Sends `message` to the device with `token`.
    pub async fn send(&self, token: &DeviceToken, message: &PushMessage) -> SendOutcome {
        let body = match serde_json::to_vec(&request_body(token, message, SystemTime::now())) {
            Ok(body) => body,
            Err(e) => return SendOutcome::permanent("fcm_invalid_message", e.to_string()),
        };
        let access_token = match self.access_token().await {
            Ok(access_token) => access_token,
            Err(outcome) => return outcome,
        };
        match self.post(&access_token, &body, message).await {
            Ok(outcome) => return outcome,
            Err(Unauthenticated) => self.forget_token(&access_token),
        }
        // Revoked, or expired earlier than it said: one fresh token, one more try.
        let access_token = match self.access_token().await {
            Ok(access_token) => access_token,
            Err(outcome) => return outcome,
        };
        match self.post(&access_token, &body, message).await {
            Ok(outcome) => outcome,
            Err(Unauthenticated) => SendOutcome::permanent(
                "fcm_UNAUTHENTICATED",
                "fcm refused a freshly issued access token",
            ),
        }
    }

    /// Posts one send; `Err` when the access token was refused.
    async fn post(
        &self,
        access_token: &str,
        body: &[u8],
        message: &PushMessage,
    ) -> Result<SendOutcome, Unauthenticated> {
        let response = self
            .inner
            .http
            .post(&self.inner.send_url)
            .header(AUTHORIZATION, format!("Bearer {access_token}"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(e) => return Ok(request_failed(&e)),
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => return Ok(request_failed(&e)),
        };
        if status.is_success() {
            let name = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|body| body.get("name")?.as_str().map(str::to_owned));
            return Ok(SendOutcome::Accepted {
                provider_message_id: name.unwrap_or_else(|| message.instance_id.to_string()),
            });
        }
        let error = ErrorBody::parse(&bytes);
        // A 401 with an FCM error code (THIRD_PARTY_AUTH_ERROR) is about the app's APNs or
        // web push credentials, not our token: a new token would not help.
        if status == StatusCode::UNAUTHORIZED && error.fcm_code.is_none() {
            return Err(Unauthenticated);
        }
        Ok(classify(status, retry_after, &error))
    }

    /// Returns a fresh access token, fetching one when the cached one is due for refresh.
    async fn access_token(&self) -> Result<Arc<str>, SendOutcome> {
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
    fn forget_token(&self, stale: &str) {
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

fn check_url(field: &'static str, url: &str) -> Result<(), FcmConfigError> {
    check_secure_url(url).map_err(|reason| FcmConfigError::Invalid { field, reason })
}

/// How long after it was issued a token with `expires_in` is replaced: five minutes before
/// it expires, or halfway through a lifetime shorter than ten minutes.
fn refresh_after(expires_in: Duration) -> Duration {
    expires_in - REFRESH_MARGIN.min(expires_in / 2)
}

fn token_unavailable(message: String, retry_after: Option<Duration>) -> SendOutcome {
    operator_failure("FCM", &message, Some(retry_after))
}

/// A request that got no HTTP answer: always worth retrying.
fn request_failed(error: &reqwest::Error) -> SendOutcome {
    let code = if error.is_timeout() {
        "fcm_timeout"
    } else {
        "fcm_connection"
    };
    SendOutcome::transient(code, error.to_string())
}

/// Reads `Retry-After` given in seconds (the form FCM uses).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse().ok().map(Duration::from_secs)
}

/// The parts of Google's error body that classify a failure.
#[derive(Debug, Default, PartialEq, Eq)]
struct ErrorBody {
    /// `errorCode` of the `FcmError` detail.
    fcm_code: Option<String>,
    /// The canonical status, e.g. `NOT_FOUND`.
    status: Option<String>,
    message: String,
    /// Whether a `BadRequest` detail blames `message.token`.
    about_token: bool,
}

impl ErrorBody {
    fn parse(bytes: &[u8]) -> Self {
        let Ok(body) = serde_json::from_slice::<Value>(bytes) else {
            return Self {
                message: String::from_utf8_lossy(bytes).into_owned(),
                ..Self::default()
            };
        };
        let error = &body["error"];
        let details = error["details"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let fcm_code = details
            .iter()
            .filter(|detail| {
                detail["@type"]
                    .as_str()
                    .is_some_and(|t| t.ends_with("google.firebase.fcm.v1.FcmError"))
            })
            .find_map(|detail| detail["errorCode"].as_str())
            .map(str::to_owned);
        let about_token = details
            .iter()
            .filter_map(|detail| detail["fieldViolations"].as_array())
            .flatten()
            .any(|violation| violation["field"] == "message.token");
        Self {
            fcm_code,
            status: error["status"].as_str().map(str::to_owned),
            message: error["message"].as_str().unwrap_or_default().to_owned(),
            about_token,
        }
    }
}

/// Classifies a refused send.
fn classify(status: StatusCode, retry_after: Option<Duration>, error: &ErrorBody) -> SendOutcome {
    let name = error
        .fcm_code
        .clone()
        .or_else(|| error.status.clone())
        .unwrap_or_else(|| format!("HTTP_{}", status.as_u16()));
    let code = format!("fcm_{name}");
    let message = if error.message.is_empty() {
        status.to_string()
    } else {
        error.message.clone()
    };
    let invalid_address = match name.as_str() {
        "UNREGISTERED" | "SENDER_ID_MISMATCH" => true,
        "INVALID_ARGUMENT" => error.about_token,
        _ => false,
    };
    if invalid_address {
        return SendOutcome::InvalidAddress { code, message };
    }
    let transient = matches!(name.as_str(), "QUOTA_EXCEEDED" | "UNAVAILABLE" | "INTERNAL")
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error();
    if transient {
        SendOutcome::Transient {
            code,
            message,
            retry_after,
        }
    } else {
        SendOutcome::Permanent { code, message }
    }
}

/// Builds the `messages:send` body for one device, as of `now` (for the TTL).
fn request_body(token: &DeviceToken, message: &PushMessage, now: SystemTime) -> Value {
    let mut fcm = Map::new();
    fcm.insert("token".into(), token.as_str().into());
    // With neither title nor body it is a data message: the app handles it silently.
    if !message.title.is_empty() || !message.body.is_empty() {
        fcm.insert(
            "notification".into(),
            json!({ "title": message.title, "body": message.body }),
        );
    }
    if !message.data.is_empty() {
        // FCM data values are strings only; anything else travels as its JSON text.
        let data: Map<String, Value> = message
            .data
            .iter()
            .map(|(key, value)| {
                let text = match value {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                (key.clone(), Value::String(text))
            })
            .collect();
        fcm.insert("data".into(), Value::Object(data));
    }

    let (android_priority, apns_priority) = match message.priority {
        PushPriority::High => ("HIGH", "10"),
        PushPriority::Normal => ("NORMAL", "5"),
    };
    let mut android = Map::new();
    android.insert("priority".into(), android_priority.into());
    let mut apns_headers = Map::new();
    apns_headers.insert("apns-priority".into(), apns_priority.into());
    if let Some(collapse_id) = &message.collapse_id {
        android.insert("collapse_key".into(), collapse_id.as_str().into());
        apns_headers.insert("apns-collapse-id".into(), collapse_id.as_str().into());
    }
    if let Some(expires_at) = message.expires_at {
        // Already expired: a TTL of zero means "now or never", which is what is left.
        let ttl = expires_at
            .duration_since(now)
            .unwrap_or_default()
            .min(MAX_TTL);
        android.insert("ttl".into(), protobuf_duration(ttl).into());
        let expiration = expires_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        apns_headers.insert("apns-expiration".into(), expiration.to_string().into());
    }
    fcm.insert("android".into(), Value::Object(android));
    fcm.insert("apns".into(), json!({ "headers": apns_headers }));
    json!({ "message": fcm })
}

/// Formats a duration as protobuf JSON does: seconds with a fraction when there is one.
fn protobuf_duration(duration: Duration) -> String {
    let millis = duration.subsec_millis();
    if millis == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}.{millis:03}s", duration.as_secs())
    }
}

#[cfg(test)]
mod tests;

/// The client against fanout-sandbox's FCM simulator, in process on port 0.
#[cfg(test)]
mod sandbox_tests;
