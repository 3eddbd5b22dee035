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
//!
//! The module is laid out along those lines: [`FcmClient`] here builds and sends the messages,
//! `config` holds the settings and the service-account key, `token` obtains and caches the
//! access token, and `classify` turns each answer into a [`SendOutcome`].

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fanout_domain::user::DeviceToken;
use jsonwebtoken::EncodingKey;
use reqwest::StatusCode;
use reqwest::header::AUTHORIZATION;
use serde_json::{Map, Value, json};

use crate::credentials::{SANDBOX_FCM_KEY_ID, is_loopback_url, read_key_file};
use crate::outcome::SendOutcome;
use crate::push::answer::retry_after;
use crate::push::token::{Attempt, TokenCache};
use crate::push::{PushMessage, PushPriority};

mod classify;
mod config;
mod token;

use classify::{ErrorBody, classify, request_failed};
use config::check_url;
use token::{AccessTokens, GOOGLE_TOKEN_URI};

pub use config::{FcmConfig, FcmConfigError, ServiceAccountKey};

/// Longest Android TTL FCM accepts: 28 days.
const MAX_TTL: Duration = Duration::from_secs(28 * 24 * 60 * 60);

/// Sends FCM messages. Cheap to clone; clones share the connection pool and access token.
#[derive(Clone)]
pub struct FcmClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FcmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcmClient")
            .field("send_url", &self.inner.send_url)
            .field("token_uri", &self.inner.tokens.source().token_uri)
            .finish_non_exhaustive()
    }
}

struct Inner {
    http: reqwest::Client,
    send_url: String,
    tokens: TokenCache<AccessTokens>,
}

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
                send_url: format!("{base_url}/v1/projects/{project}/messages:send"),
                tokens: TokenCache::new(AccessTokens {
                    http: http.clone(),
                    token_uri,
                    client_email: key.client_email,
                    key_id: key.private_key_id,
                    signing_key,
                }),
                http,
            }),
        })
    }

    /// Sends `message` to the device with `token`.
    pub async fn send(&self, token: &DeviceToken, message: &PushMessage) -> SendOutcome {
        let body = match serde_json::to_vec(&request_body(token, message, SystemTime::now())) {
            Ok(body) => body,
            Err(e) => return SendOutcome::permanent("fcm_invalid_message", e.to_string()),
        };
        let body = &body;
        self.inner
            .tokens
            .send(|access_token| async move { self.post(&access_token.value, body, message).await })
            .await
    }

    /// Posts one send; [`Attempt::TokenRefused`] when the access token was refused.
    async fn post(&self, access_token: &str, body: &[u8], message: &PushMessage) -> Attempt {
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
            Err(e) => return Attempt::Answered(request_failed(&e)),
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => return Attempt::Answered(request_failed(&e)),
        };
        if status.is_success() {
            let name = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|body| body.get("name")?.as_str().map(str::to_owned));
            return Attempt::Answered(SendOutcome::Accepted {
                provider_message_id: name.unwrap_or_else(|| message.instance_id.to_string()),
            });
        }
        let error = ErrorBody::parse(&bytes);
        // A 401 with an FCM error code (THIRD_PARTY_AUTH_ERROR) is about the app's APNs or
        // web push credentials, not our token: a new token would not help.
        if status == StatusCode::UNAUTHORIZED && error.fcm_code.is_none() {
            return Attempt::TokenRefused(SendOutcome::permanent(
                "fcm_UNAUTHENTICATED",
                "fcm refused a freshly issued access token",
            ));
        }
        Attempt::Answered(classify(status, retry_after, &error))
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
