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
mod tests {
    use super::*;

    fn push() -> PushMessage {
        PushMessage {
            instance_id: fanout_domain::InstanceId::parse("in_0123456789abcdef").unwrap(),
            title: "Title".into(),
            body: "Body".into(),
            data: Map::new(),
            collapse_id: None,
            priority: PushPriority::High,
            expires_at: None,
        }
    }

    #[test]
    fn builds_the_message_from_a_push() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut message = push();
        message.priority = PushPriority::Normal;
        message.collapse_id = Some("score".into());
        message.expires_at = Some(now + Duration::from_millis(3_500));
        message.data.insert("s".into(), json!("text"));
        message.data.insert("n".into(), json!(42));
        message.data.insert("o".into(), json!({ "a": [1, true] }));
        message.data.insert("z".into(), Value::Null);
        let token = DeviceToken::parse("device-1").unwrap();
        let body = request_body(&token, &message, now);
        assert_eq!(
            body,
            json!({ "message": {
                "token": "device-1",
                "notification": { "title": "Title", "body": "Body" },
                "data": { "s": "text", "n": "42", "o": "{\"a\":[1,true]}", "z": "null" },
                "android": { "priority": "NORMAL", "collapse_key": "score", "ttl": "3.500s" },
                "apns": { "headers": {
                    "apns-priority": "5",
                    "apns-collapse-id": "score",
                    "apns-expiration": "1000003",
                } },
            } })
        );
    }

    #[test]
    fn a_bare_push_is_small_and_an_expired_one_has_no_ttl_left() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut message = push();
        message.title.clear();
        message.body.clear();
        message.expires_at = Some(now - Duration::from_secs(5));
        let token = DeviceToken::parse("device-1").unwrap();
        let body = request_body(&token, &message, now);
        assert_eq!(
            body,
            json!({ "message": {
                "token": "device-1",
                "android": { "priority": "HIGH", "ttl": "0s" },
                "apns": { "headers": { "apns-priority": "10", "apns-expiration": "999995" } },
            } })
        );
        message.expires_at = Some(now + Duration::from_secs(365 * 24 * 3600));
        let body = request_body(&token, &message, now);
        assert_eq!(body["message"]["android"]["ttl"], "2419200s");
    }

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

    fn google_error(status: &str, fcm_code: Option<&str>, field: Option<&str>) -> ErrorBody {
        let mut details = Vec::new();
        if let Some(code) = fcm_code {
            details.push(json!({
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": code,
            }));
        }
        if let Some(field) = field {
            details.push(json!({
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{ "field": field, "description": "bad" }],
            }));
        }
        let body = json!({ "error": {
            "code": 400, "message": "words", "status": status, "details": details,
        } });
        ErrorBody::parse(body.to_string().as_bytes())
    }

    #[test]
    fn invalid_argument_blames_the_address_only_when_about_the_token() {
        let token = google_error(
            "INVALID_ARGUMENT",
            Some("INVALID_ARGUMENT"),
            Some("message.token"),
        );
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, None, &token),
            SendOutcome::InvalidAddress { code, .. } if code == "fcm_INVALID_ARGUMENT"
        ));
        let payload = google_error(
            "INVALID_ARGUMENT",
            Some("INVALID_ARGUMENT"),
            Some("message.data[from]"),
        );
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, None, &payload),
            SendOutcome::permanent("fcm_INVALID_ARGUMENT", "words")
        );
    }

    #[test]
    fn falls_back_to_the_status_then_the_http_code() {
        let denied = google_error("PERMISSION_DENIED", None, None);
        assert_eq!(
            classify(StatusCode::FORBIDDEN, None, &denied),
            SendOutcome::permanent("fcm_PERMISSION_DENIED", "words")
        );
        let gateway = ErrorBody::parse(b"<html>bad gateway</html>");
        assert_eq!(
            classify(
                StatusCode::BAD_GATEWAY,
                Some(Duration::from_secs(3)),
                &gateway
            ),
            SendOutcome::Transient {
                code: "fcm_HTTP_502".into(),
                message: "<html>bad gateway</html>".into(),
                retry_after: Some(Duration::from_secs(3)),
            }
        );
    }

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
        let config: FcmConfig = fanout_domain::config::load(None, &env).unwrap();
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
        let defaults: FcmConfig = fanout_domain::config::load(None, &Default::default()).unwrap();
        assert_eq!(defaults, FcmConfig::default());
    }

    #[test]
    fn protobuf_durations() {
        assert_eq!(protobuf_duration(Duration::from_secs(60)), "60s");
        assert_eq!(protobuf_duration(Duration::from_millis(1_050)), "1.050s");
        assert_eq!(protobuf_duration(Duration::ZERO), "0s");
    }
}

/// The client against fanout-sandbox's FCM simulator, in process on port 0.
#[cfg(test)]
mod sandbox_tests {
    use fanout_sandbox::fcm::{FcmMessageList, FcmTokenStats, StoredFcmMessage};
    use futures::future::join_all;
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    use super::*;

    struct Sandbox {
        base_url: String,
        http: reqwest::Client,
        _stop: oneshot::Sender<()>,
        server: JoinHandle<()>,
    }

    impl Drop for Sandbox {
        fn drop(&mut self) {
            self.server.abort();
        }
    }

    impl Sandbox {
        async fn spawn() -> Self {
            let listeners = fanout_sandbox::Listeners::bind_loopback().await.unwrap();
            let base_url = format!("http://{}", listeners.http.local_addr().unwrap());
            let (stop, stopped) = oneshot::channel::<()>();
            let serving = fanout_sandbox::serve(listeners, async {
                let _ = stopped.await;
            });
            let server = tokio::spawn(async move {
                serving.await.unwrap();
            });
            Self {
                base_url,
                http: reqwest::Client::new(),
                _stop: stop,
                server,
            }
        }

        fn config(&self) -> FcmConfig {
            FcmConfig {
                enabled: true,
                base_url: self.base_url.clone(),
                timeout_ms: 10_000,
                ..FcmConfig::default()
            }
        }

        fn key(&self) -> ServiceAccountKey {
            let json = fanout_sandbox::fcm::service_account_json(&self.base_url);
            ServiceAccountKey::from_json(&json).unwrap()
        }

        fn client(&self) -> FcmClient {
            FcmClient::with_key(&self.config(), self.key()).unwrap()
        }

        fn url(&self, path: &str) -> String {
            format!("{}{path}", self.base_url)
        }

        async fn add_fault(&self, rule: Value) {
            let response = self
                .http
                .post(self.url("/api/fcm/faults"))
                .json(&rule)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::CREATED, "{rule}");
        }

        async fn messages(&self, token: &str) -> Vec<StoredFcmMessage> {
            let list: FcmMessageList = self
                .http
                .get(self.url("/api/fcm/messages"))
                .query(&[("token", token)])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            list.messages
        }

        async fn tokens(&self) -> FcmTokenStats {
            self.http
                .get(self.url("/api/fcm/tokens"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        }
    }

    fn device(token: &str) -> DeviceToken {
        DeviceToken::parse(token).unwrap()
    }

    fn push() -> PushMessage {
        PushMessage {
            instance_id: fanout_domain::InstanceId::parse("in_00112233445566778899aabbccddeeff")
                .unwrap(),
            title: "Goal!".into(),
            body: "2-1 in the 90th minute".into(),
            data: Map::new(),
            collapse_id: None,
            priority: PushPriority::High,
            expires_at: None,
        }
    }

    fn accepted_id(outcome: SendOutcome) -> String {
        match outcome {
            SendOutcome::Accepted {
                provider_message_id,
            } => provider_message_id,
            other => panic!("expected acceptance, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn configured_from_the_key_file_it_exchanges_a_token_and_delivers() {
        let sandbox = Sandbox::spawn().await;
        let path = std::env::temp_dir().join(format!(
            "fanout-fcm-key-{}-{}.json",
            std::process::id(),
            sandbox.base_url.rsplit(':').next().unwrap()
        ));
        std::fs::write(
            &path,
            fanout_sandbox::fcm::service_account_json(&sandbox.base_url),
        )
        .unwrap();
        let client = FcmClient::new(&FcmConfig {
            service_account_path: Some(path.clone()),
            ..sandbox.config()
        });
        std::fs::remove_file(&path).unwrap();
        let client = client.unwrap();

        let mut message = push();
        message.collapse_id = Some("match-42".into());
        message.priority = PushPriority::Normal;
        message.expires_at = Some(SystemTime::now() + Duration::from_secs(600));
        message.data.insert("match_id".into(), json!(42));
        message.data.insert("team".into(), json!("home"));
        let name = accepted_id(client.send(&device("phone-1"), &message).await);

        let stored = sandbox.messages("phone-1").await;
        assert_eq!(stored.len(), 1);
        let stored = &stored[0];
        assert_eq!(name, stored.name);
        assert_eq!(
            stored.name,
            format!("projects/{}/messages/{}", stored.project, stored.id)
        );
        assert_eq!(stored.project, fanout_sandbox::fcm::PROJECT_ID);
        let sent = &stored.message;
        assert_eq!(
            sent["notification"],
            json!({ "title": "Goal!", "body": "2-1 in the 90th minute" })
        );
        assert_eq!(sent["data"], json!({ "match_id": "42", "team": "home" }));
        assert_eq!(sent["android"]["priority"], "NORMAL");
        assert_eq!(sent["android"]["collapse_key"], "match-42");
        let ttl = sent["android"]["ttl"].as_str().unwrap();
        let ttl: f64 = ttl.strip_suffix('s').unwrap().parse().unwrap();
        assert!((590.0..=600.0).contains(&ttl), "{ttl}");
        assert_eq!(sent["apns"]["headers"]["apns-priority"], "5");
        assert_eq!(sent["apns"]["headers"]["apns-collapse-id"], "match-42");
        assert_eq!(
            sandbox.tokens().await,
            FcmTokenStats {
                issued: 1,
                active: 1
            }
        );
    }

    #[tokio::test]
    async fn concurrent_and_later_sends_share_one_access_token() {
        let sandbox = Sandbox::spawn().await;
        let client = sandbox.client();
        let message = push();
        let tokens: Vec<_> = (0..20).map(|n| device(&format!("device-{n}"))).collect();
        let outcomes = join_all(tokens.iter().map(|token| client.send(token, &message))).await;
        for outcome in outcomes {
            accepted_id(outcome);
        }
        // A clone shares the cached token too.
        let clone = client.clone();
        for token in &tokens[..5] {
            accepted_id(clone.send(token, &message).await);
        }
        assert_eq!(sandbox.tokens().await.issued, 1);
        assert_eq!(sandbox.messages("device-0").await.len(), 2);
    }

    #[tokio::test]
    async fn a_revoked_token_is_refreshed_once_and_the_send_retried() {
        let sandbox = Sandbox::spawn().await;
        let client = sandbox.client();
        accepted_id(client.send(&device("phone-1"), &push()).await);
        let revoked = sandbox
            .http
            .delete(sandbox.url("/api/fcm/tokens"))
            .send()
            .await
            .unwrap();
        assert_eq!(revoked.status(), StatusCode::NO_CONTENT);

        let (phone, message) = (device("phone-1"), push());
        let outcomes = join_all((0..5).map(|_| client.send(&phone, &message))).await;
        for outcome in outcomes {
            accepted_id(outcome);
        }
        assert_eq!(
            sandbox.tokens().await,
            FcmTokenStats {
                issued: 2,
                active: 1
            }
        );
        assert_eq!(sandbox.messages("phone-1").await.len(), 6);
    }

    #[tokio::test]
    async fn fcm_errors_map_to_outcomes() {
        let sandbox = Sandbox::spawn().await;
        let client = sandbox.client();
        let cases = [
            ("UNREGISTERED", None, "invalid_address"),
            ("INVALID_ARGUMENT", None, "invalid_address"),
            ("SENDER_ID_MISMATCH", None, "invalid_address"),
            ("QUOTA_EXCEEDED", Some(7), "transient"),
            ("UNAVAILABLE", None, "transient"),
            ("UNAVAILABLE", Some(30), "transient"),
            ("INTERNAL", None, "transient"),
            ("THIRD_PARTY_AUTH_ERROR", None, "permanent"),
        ];
        for (index, (error, retry_after_s, expected)) in cases.into_iter().enumerate() {
            let token = format!("faulty-{index}");
            sandbox
                .add_fault(json!({
                    "token": token,
                    "error": error,
                    "retry_after_s": retry_after_s,
                    "times": 1,
                }))
                .await;
            let outcome = client.send(&device(&token), &push()).await;
            let code = format!("fcm_{error}");
            match (expected, outcome) {
                ("invalid_address", SendOutcome::InvalidAddress { code: got, .. })
                | ("permanent", SendOutcome::Permanent { code: got, .. }) => {
                    assert_eq!(got, code);
                }
                (
                    "transient",
                    SendOutcome::Transient {
                        code: got,
                        retry_after,
                        ..
                    },
                ) => {
                    assert_eq!(got, code);
                    assert_eq!(
                        retry_after,
                        retry_after_s.map(Duration::from_secs),
                        "{error}"
                    );
                }
                (expected, outcome) => panic!("{error}: expected {expected}, got {outcome:?}"),
            }
            assert!(sandbox.messages(&token).await.is_empty());
            // The rule was used up: the same token is accepted now.
            accepted_id(client.send(&device(&token), &push()).await);
        }
        // None of these was an access-token problem.
        assert_eq!(sandbox.tokens().await.issued, 1);
    }

    #[tokio::test]
    async fn a_rate_rule_answers_quota_exceeded_with_its_retry_after() {
        let sandbox = Sandbox::spawn().await;
        let client = sandbox.client();
        // Warm the token so the two sends below land well inside one second.
        accepted_id(client.send(&device("warm-up"), &push()).await);
        sandbox
            .add_fault(json!({ "token": "*", "max_per_second": 1, "retry_after_s": 2 }))
            .await;
        accepted_id(client.send(&device("phone-1"), &push()).await);
        let outcome = client.send(&device("phone-1"), &push()).await;
        assert!(
            matches!(
                &outcome,
                SendOutcome::Transient { code, retry_after: Some(after), .. }
                    if code == "fcm_QUOTA_EXCEEDED" && *after == Duration::from_secs(2)
            ),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn payload_and_project_refusals_are_permanent() {
        let sandbox = Sandbox::spawn().await;
        let mut message = push();
        message.data.insert("from".into(), json!("reserved by fcm"));
        let outcome = sandbox.client().send(&device("phone-1"), &message).await;
        assert!(
            matches!(&outcome, SendOutcome::Permanent { code, .. } if code == "fcm_INVALID_ARGUMENT"),
            "{outcome:?}"
        );

        let config = FcmConfig {
            project_id: Some("someone-elses-project".into()),
            ..sandbox.config()
        };
        let client = FcmClient::with_key(&config, sandbox.key()).unwrap();
        let outcome = client.send(&device("phone-1"), &push()).await;
        assert!(
            matches!(&outcome, SendOutcome::Permanent { code, .. } if code == "fcm_PERMISSION_DENIED"),
            "{outcome:?}"
        );
        assert!(sandbox.messages("phone-1").await.is_empty());
    }

    #[tokio::test]
    async fn timeouts_and_unreachable_hosts_are_transient() {
        let sandbox = Sandbox::spawn().await;
        let config = FcmConfig {
            timeout_ms: 1_000,
            ..sandbox.config()
        };
        let client = FcmClient::with_key(&config, sandbox.key()).unwrap();
        sandbox
            .add_fault(json!({ "token": "slow-phone", "delay_ms": 30_000 }))
            .await;
        let outcome = client.send(&device("slow-phone"), &push()).await;
        assert!(
            matches!(&outcome, SendOutcome::Transient { code, .. } if code == "fcm_timeout"),
            "{outcome:?}"
        );

        let closed = closed_port_url().await;
        let config = FcmConfig {
            base_url: closed.clone(),
            ..sandbox.config()
        };
        let client = FcmClient::with_key(&config, sandbox.key()).unwrap();
        let outcome = client.send(&device("phone-1"), &push()).await;
        assert!(
            matches!(&outcome, SendOutcome::Transient { code, .. } if code == "fcm_connection"),
            "{outcome:?}"
        );

        let mut key = sandbox.key();
        key.token_uri = Some(format!("{closed}/oauth2/token"));
        let client = FcmClient::with_key(&sandbox.config(), key).unwrap();
        let outcome = client.send(&device("phone-1"), &push()).await;
        assert!(
            matches!(&outcome, SendOutcome::Transient { code, .. } if code == "provider_auth_unavailable"),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn a_refused_grant_is_permanent() {
        let sandbox = Sandbox::spawn().await;
        let mut key = sandbox.key();
        key.client_email = "impostor@fanout-sandbox.iam.gserviceaccount.com".into();
        let client = FcmClient::with_key(&sandbox.config(), key).unwrap();
        let outcome = client.send(&device("phone-1"), &push()).await;
        assert!(
            matches!(&outcome, SendOutcome::Permanent { code, message }
                if code == "provider_auth" && !message.contains("impostor")),
            "the tenant's receipt says the platform's credentials failed, not how: {outcome:?}"
        );
        assert_eq!(sandbox.tokens().await.issued, 0);
    }

    #[test]
    fn configuration_errors_are_reported() {
        let json = fanout_sandbox::fcm::service_account_json("http://127.0.0.1:9");
        let key = || ServiceAccountKey::from_json(&json).unwrap();
        let config = FcmConfig::default();
        assert!(matches!(
            FcmClient::new(&config),
            Err(FcmConfigError::MissingServiceAccount)
        ));
        let missing = FcmConfig {
            service_account_path: Some("/nonexistent/fcm.json".into()),
            ..FcmConfig::default()
        };
        assert!(matches!(
            FcmClient::new(&missing),
            Err(FcmConfigError::Read { .. })
        ));
        let bad_project = FcmConfig {
            project_id: Some("a/b".into()),
            ..FcmConfig::default()
        };
        assert!(matches!(
            FcmClient::with_key(&bad_project, key()),
            Err(FcmConfigError::Invalid {
                field: "project_id",
                ..
            })
        ));
        let mut no_project = key();
        no_project.project_id = None;
        assert!(matches!(
            FcmClient::with_key(&config, no_project),
            Err(FcmConfigError::MissingProject)
        ));
        let mut bad_pem = key();
        bad_pem.private_key = Secret::new("-----BEGIN PRIVATE KEY-----\nnope\n");
        assert!(matches!(
            FcmClient::with_key(&config, bad_pem),
            Err(FcmConfigError::InvalidKey(_))
        ));
        let bad_url = FcmConfig {
            base_url: "fcm.googleapis.com".into(),
            ..FcmConfig::default()
        };
        assert!(matches!(
            FcmClient::with_key(&bad_url, key()),
            Err(FcmConfigError::Invalid {
                field: "base_url",
                ..
            })
        ));
        assert!(matches!(
            ServiceAccountKey::from_json("{}"),
            Err(FcmConfigError::InvalidKey(_))
        ));
        // The key never shows in debug output.
        assert!(!format!("{:?}", key()).contains("PRIVATE KEY"));
        let loopback = FcmConfig {
            base_url: "http://127.0.0.1:9".into(),
            ..FcmConfig::default()
        };
        FcmClient::with_key(&loopback, key()).unwrap();
        // Plain http to anything but loopback is refused.
        let plain = FcmConfig {
            base_url: "http://fcm.example.com".into(),
            ..FcmConfig::default()
        };
        assert!(matches!(
            FcmClient::with_key(&plain, key()),
            Err(FcmConfigError::Invalid {
                field: "base_url",
                ..
            })
        ));
    }

    #[test]
    fn the_sandbox_key_is_refused_anywhere_but_the_sandbox() {
        let committed = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../sandbox/dev/fcm-service-account.json"),
        )
        .unwrap();
        let sandbox_key = || ServiceAccountKey::from_json(&committed).unwrap();
        let google = FcmConfig {
            base_url: "https://fcm.googleapis.com".into(),
            ..FcmConfig::default()
        };
        assert!(matches!(
            FcmClient::with_key(&google, sandbox_key()),
            Err(FcmConfigError::Invalid {
                field: "service_account_path",
                ..
            })
        ));
        // Against the sandbox on loopback, with a loopback token endpoint, it is what it is for.
        let mut local = sandbox_key();
        local.token_uri = Some("http://127.0.0.1:8025/oauth2/token".into());
        let sandbox = FcmConfig {
            base_url: "http://127.0.0.1:8025".into(),
            ..FcmConfig::default()
        };
        FcmClient::with_key(&sandbox, local).unwrap();
    }

    /// A loopback URL nothing listens on.
    async fn closed_port_url() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{addr}")
    }
}
