//! The APNs channel: Apple's provider API (`POST /3/device/{token}`) over one pooled HTTP/2
//! connection, authenticated by an ES256 provider token or a client certificate.
//!
//! The `a2` crate cannot be pointed at anything but Apple's hosts (ARCHITECTURE.md, "Facts
//! this code relies on"), so this module speaks the protocol with reqwest, which lets the
//! endpoint and trust roots be configured: the sandbox's simulator in development and tests,
//! Apple in production.
//!
//! Provider tokens are signed once and shared by every send until they are 50 minutes old:
//! Apple rejects tokens older than an hour and refuses refreshes more often than every 20
//! minutes. A send answered 403 `ExpiredProviderToken` gets a fresh token and one more try.
//!
//! Answers are classified for the delivery loop: a dead token (410, 400 `BadDeviceToken`,
//! 400 `DeviceTokenNotForTopic`) is [`SendOutcome::InvalidAddress`]; 429, 5xx and connection
//! trouble are [`SendOutcome::Transient`] (with `Retry-After` when given); every other refusal
//! (payload, auth, configuration) is [`SendOutcome::Permanent`]. Codes are `apns_<reason>`.
//!
//! The module is laid out along those lines: [`ApnsClient`] here builds and sends the requests,
//! `config` holds the settings and reads the key files, `token` signs and caches the provider
//! token, and `classify` turns each answer into a [`SendOutcome`].

use std::fmt;
use std::sync::Arc;
#[cfg(test)]
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fanout_domain::InstanceId;
use fanout_domain::user::DeviceToken;
use reqwest::header::{HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};

use crate::outcome::SendOutcome;
use crate::push::answer::retry_after;
use crate::push::token::{Attempt, TokenCache};
use crate::push::{PushMessage, PushPriority};

mod classify;
mod config;
mod token;

use classify::{Answer, ErrorBody, classify, operator_side, request_failed};
use config::{base_url, invalid, read};
use token::{Clock, ProviderTokens, provider_tokens};

pub use config::{ApnsAuthConfig, ApnsConfig, ApnsConfigError, DEVELOPMENT_URL, PRODUCTION_URL};

/// Largest payload APNs accepts for an alert notification.
pub const MAX_PAYLOAD: usize = 4096;

/// Sends notifications to APNs. Cheap to clone: clones share one connection pool and one
/// provider token.
#[derive(Clone)]
pub struct ApnsClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: String,
    topic: String,
    /// Present with token auth; certificate auth is done by the TLS layer.
    tokens: Option<TokenCache<ProviderTokens>>,
}

impl fmt::Debug for ApnsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApnsClient")
            .field("base_url", &self.inner.base_url)
            .field("topic", &self.inner.topic)
            .field(
                "auth",
                &if self.inner.tokens.is_some() {
                    "token"
                } else {
                    "certificate"
                },
            )
            .finish()
    }
}

impl ApnsClient {
    /// Reads the key (or certificate) files and prepares the HTTP/2 client; the connection is
    /// opened on first use. Works whether or not `config.enabled` is set: the caller decides
    /// whether to send.
    pub fn new(config: &ApnsConfig) -> Result<Self, ApnsConfigError> {
        Self::with_clock(config, Arc::new(SystemTime::now))
    }

    fn with_clock(config: &ApnsConfig, clock: Clock) -> Result<Self, ApnsConfigError> {
        let base_url = base_url(&config.endpoint)?;
        if config.topic.trim().is_empty() {
            return Err(ApnsConfigError::Missing("topic"));
        }
        let timeout = Duration::from_millis(config.timeout_ms);
        // Apple speaks only HTTP/2, so ALPN offers only h2 and requests share one connection.
        let mut builder = reqwest::Client::builder()
            .http2_prior_knowledge()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("fanout/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_path {
            // Certificates are public: read without the key files' permission check.
            let pem = std::fs::read(path).map_err(|source| ApnsConfigError::Read {
                what: "ca_path",
                path: path.to_owned(),
                source,
            })?;
            let roots = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| invalid("ca_path", path, e))?;
            if roots.is_empty() {
                return Err(invalid("ca_path", path, "no certificate in the file"));
            }
            for root in roots {
                builder = builder.add_root_certificate(root);
            }
        }
        let auth = &config.auth;
        let key_path = auth
            .key_path
            .as_ref()
            .ok_or(ApnsConfigError::Missing("auth.key_path"))?;
        let tokens = match &auth.cert_path {
            Some(cert_path) => {
                let mut pem = read("auth.cert_path", cert_path)?;
                pem.push(b'\n');
                pem.extend(read("auth.key_path", key_path)?);
                let identity = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| invalid("auth.cert_path", cert_path, e))?;
                builder = builder.identity(identity);
                None
            }
            None => Some(TokenCache::new(provider_tokens(auth, key_path, clock)?)),
        };
        let http = builder.build().map_err(ApnsConfigError::Client)?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base_url,
                topic: config.topic.trim().to_owned(),
                tokens,
            }),
        })
    }

    /// Sends `message` to the device `token`, classified for the delivery loop.
    ///
    /// The `apns-id` derives from the instance and the token, so a resend after a crash carries
    /// the same id; it is also the provider message id of an accepted send.
    pub async fn send(&self, token: &DeviceToken, message: &PushMessage) -> SendOutcome {
        // Tokens are hex; anything else cannot be a device and must not reach the URL path.
        if !token.as_str().bytes().all(|b| b.is_ascii_alphanumeric()) {
            return SendOutcome::InvalidAddress {
                code: "apns_BadDeviceToken".into(),
                message: "device token is not hexadecimal".into(),
            };
        }
        let body = payload(message).to_string();
        if body.len() > MAX_PAYLOAD {
            return SendOutcome::permanent(
                "apns_PayloadTooLarge",
                format!("payload is {} bytes, apns takes {MAX_PAYLOAD}", body.len()),
            );
        }
        let apns_id = apns_id(&message.instance_id, token);
        let headers = match self.headers(message, &apns_id) {
            Ok(headers) => headers,
            Err(message) => return SendOutcome::permanent("apns_invalid_message", message),
        };
        let url = format!("{}/3/device/{}", self.inner.base_url, token.as_str());

        let Some(tokens) = &self.inner.tokens else {
            return self.attempt(&url, &headers, &body, None).await;
        };
        let (url, headers, body) = (&url, &headers, &body);
        let outcome = tokens
            .send(|provider_token| async move {
                let outcome = self
                    .attempt(url, headers, body, Some(&provider_token.jwt))
                    .await;
                let expired = matches!(
                    &outcome,
                    SendOutcome::Permanent { code, .. } if code == "apns_ExpiredProviderToken"
                );
                if expired {
                    Attempt::TokenRefused(outcome)
                } else {
                    Attempt::Answered(outcome)
                }
            })
            .await;
        operator_side(outcome)
    }

    /// Sends one request and classifies the answer.
    async fn attempt(
        &self,
        url: &str,
        headers: &HeaderMap,
        body: &str,
        bearer: Option<&str>,
    ) -> SendOutcome {
        let mut request = self
            .inner
            .http
            .post(url)
            .headers(headers.clone())
            .body(body.to_owned());
        if let Some(jwt) = bearer {
            request = request.bearer_auth(jwt);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return request_failed(&e),
        };
        let status = response.status();
        let apns_id = response
            .headers()
            .get("apns-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let retry_after = retry_after(response.headers());
        let error: Option<ErrorBody> = if status.is_success() {
            None
        } else {
            match response.bytes().await {
                Ok(bytes) => serde_json::from_slice(&bytes).ok(),
                Err(e) => return request_failed(&e),
            }
        };
        let (reason, timestamp) = error.map_or((None, None), |e| (e.reason, e.timestamp));
        classify(&Answer {
            status,
            apns_id,
            reason,
            timestamp,
            retry_after,
        })
    }

    fn headers(&self, message: &PushMessage, apns_id: &str) -> Result<HeaderMap, String> {
        let value = |v: &str| HeaderValue::from_str(v).map_err(|e| format!("header value: {e}"));
        let mut headers = HeaderMap::new();
        headers.insert("apns-id", value(apns_id)?);
        headers.insert("apns-topic", value(&self.inner.topic)?);
        headers.insert("apns-push-type", HeaderValue::from_static("alert"));
        let priority = match message.priority {
            PushPriority::High => "10",
            PushPriority::Normal => "5",
        };
        headers.insert("apns-priority", HeaderValue::from_static(priority));
        // 0 asks APNs to try once and not store the notification.
        let expiration = message.expires_at.map_or(0, |at| {
            at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
        });
        headers.insert("apns-expiration", HeaderValue::from(expiration));
        if let Some(collapse_id) = &message.collapse_id {
            headers.insert("apns-collapse-id", value(collapse_id)?);
        }
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Ok(headers)
    }

    /// Provider tokens signed so far.
    #[cfg(test)]
    fn tokens_minted(&self) -> u64 {
        self.inner
            .tokens
            .as_ref()
            .map_or(0, |tokens| tokens.source().minted.load(Ordering::Relaxed))
    }
}

/// The `apns-id` of the delivery of `instance` to the device `token`: a UUID (version 8, from
/// a SHA-256 of both) that is the same every time the same delivery is sent.
pub fn apns_id(instance: &InstanceId, token: &DeviceToken) -> String {
    let digest = Sha256::new()
        .chain_update(instance.as_str())
        .chain_update(b"\0")
        .chain_update(token.as_str())
        .finalize();
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// The JSON payload: the alert under `aps`, the message's data beside it (a data key named
/// `aps` is overwritten, as Apple reserves it).
fn payload(message: &PushMessage) -> serde_json::Value {
    let mut root = message.data.clone();
    root.insert(
        "aps".into(),
        serde_json::json!({
            "alert": { "title": message.title, "body": message.body },
            "sound": "default",
        }),
    );
    serde_json::Value::Object(root)
}

#[cfg(test)]
mod tests;

/// The client against fanout-sandbox's APNs simulator, in process on port 0.
#[cfg(test)]
mod sandbox_tests;
