//! The APNs channel: Apple's provider API (`POST /3/device/{token}`) over one pooled HTTP/2
//! connection, authenticated by an ES256 provider token or a client certificate.
//!
//! The `a2` crate cannot be pointed at anything but Apple's hosts (see ARCHITECTURE.md), so
//! this module speaks the protocol with reqwest, which lets the endpoint and trust roots be
//! configured: the sandbox's simulator in development and tests, Apple in production.
//!
//! Provider tokens are signed once and shared by every send until they are 50 minutes old:
//! Apple rejects tokens older than an hour and refuses refreshes more often than every 20
//! minutes. A send answered 403 `ExpiredProviderToken` gets a fresh token and one more try.
//!
//! Answers are classified for the delivery loop: a dead token (410, 400 `BadDeviceToken`,
//! 400 `DeviceTokenNotForTopic`) is [`SendOutcome::InvalidAddress`]; 429, 5xx and connection
//! trouble are [`SendOutcome::Transient`] (with `Retry-After` when given); every other refusal
//! (payload, auth, configuration) is [`SendOutcome::Permanent`]. Codes are `apns_<reason>`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fanout_domain::InstanceId;
use fanout_domain::user::DeviceToken;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::credentials::{check_secure_url, operator_failure, read_key_file};
use crate::outcome::SendOutcome;
use crate::push::{PushMessage, PushPriority};

/// Apple's production endpoint, selected by `endpoint = "production"`.
pub const PRODUCTION_URL: &str = "https://api.push.apple.com";

/// Apple's development endpoint, selected by `endpoint = "development"`.
pub const DEVELOPMENT_URL: &str = "https://api.sandbox.push.apple.com";

/// Largest payload APNs accepts for an alert notification.
pub const MAX_PAYLOAD: usize = 4096;

/// Age at which a provider token is replaced: well inside Apple's hour, and past the 20
/// minutes Apple wants between refreshes.
const TOKEN_REFRESH_AFTER: Duration = Duration::from_secs(50 * 60);

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
    tokens: Option<ProviderTokens>,
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

/// What time it is; injectable so token ageing is tested without waiting.
type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The provider token cache: one signed JWT shared until it is due for refresh.
struct ProviderTokens {
    key_id: String,
    team_id: String,
    key: EcdsaKeyPair,
    rng: SystemRandom,
    clock: Clock,
    current: Mutex<Option<Arc<ProviderToken>>>,
    /// Tokens signed so far, for logs and tests.
    minted: AtomicU64,
}

struct ProviderToken {
    jwt: String,
    issued_at: SystemTime,
}

impl ProviderTokens {
    /// Returns the shared token, signing a new one when there is none or it is due.
    fn get(&self) -> Result<Arc<ProviderToken>, ring::error::Unspecified> {
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
    fn invalidate(&self, stale: &Arc<ProviderToken>) {
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

/// What APNs answered to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: StatusCode,
    apns_id: Option<String>,
    reason: Option<String>,
    /// Milliseconds since the epoch at which a 410 token stopped being valid.
    timestamp: Option<u64>,
    retry_after: Option<Duration>,
}

#[derive(Deserialize)]
struct ErrorBody {
    reason: Option<String>,
    timestamp: Option<u64>,
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
            None => Some(provider_tokens(auth, key_path, clock)?),
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
        let mut refreshed = false;
        loop {
            let provider_token = match tokens.get() {
                Ok(provider_token) => provider_token,
                Err(e) => {
                    return operator_failure(
                        "APNs",
                        &format!("signing the provider token failed: {e:?}"),
                        Some(None),
                    );
                }
            };
            let outcome = self
                .attempt(&url, &headers, &body, Some(&provider_token.jwt))
                .await;
            let expired = matches!(
                &outcome,
                SendOutcome::Permanent { code, .. } if code == "apns_ExpiredProviderToken"
            );
            if !expired || refreshed {
                return operator_side(outcome);
            }
            tracing::info!(key_id = %tokens.key_id, "apns provider token expired, refreshing");
            tokens.invalidate(&provider_token);
            refreshed = true;
        }
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
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
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
            .map_or(0, |tokens| tokens.minted.load(Ordering::Relaxed))
    }
}

fn provider_tokens(
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

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, ApnsConfigError> {
    read_key_file(what, path).map_err(|source| ApnsConfigError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn invalid(what: &'static str, path: &Path, reason: impl fmt::Display) -> ApnsConfigError {
    ApnsConfigError::Invalid {
        what,
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Resolves `production`, `development` or a URL into a base URL without a trailing slash.
fn base_url(endpoint: &str) -> Result<String, ApnsConfigError> {
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

/// Classifies an APNs answer.
fn classify(answer: &Answer) -> SendOutcome {
    let status = answer.status;
    if status.is_success() {
        return SendOutcome::Accepted {
            provider_message_id: answer.apns_id.clone().unwrap_or_default(),
        };
    }
    let code = match &answer.reason {
        Some(reason) => format!("apns_{reason}"),
        None => format!("apns_{}", status.as_u16()),
    };
    let mut message = format!(
        "apns answered {} {}",
        status.as_u16(),
        answer.reason.as_deref().unwrap_or("without a reason")
    );
    if let Some(timestamp) = answer.timestamp {
        message.push_str(&format!(" (token invalid since {timestamp} ms)"));
    }
    let dead_token = status == StatusCode::GONE
        || (status == StatusCode::BAD_REQUEST
            && matches!(
                answer.reason.as_deref(),
                Some("BadDeviceToken" | "DeviceTokenNotForTopic")
            ));
    if dead_token {
        SendOutcome::InvalidAddress { code, message }
    } else if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        SendOutcome::Transient {
            code,
            message,
            retry_after: answer.retry_after,
        }
    } else if status.is_client_error() {
        SendOutcome::Permanent { code, message }
    } else {
        // Informational or redirect answers are not part of the protocol: try again later.
        SendOutcome::transient(code, message)
    }
}

/// APNs refusals of the operator's credentials (the provider token, the certificate), told to
/// tenants generically (see [`operator_failure`]); other outcomes pass through.
fn operator_side(outcome: SendOutcome) -> SendOutcome {
    match &outcome {
        SendOutcome::Permanent { code, message }
            if matches!(
                code.as_str(),
                "apns_InvalidProviderToken"
                    | "apns_ExpiredProviderToken"
                    | "apns_MissingProviderToken"
                    | "apns_BadCertificate"
                    | "apns_BadCertificateEnvironment"
            ) =>
        {
            operator_failure("APNs", &format!("{code}: {message}"), None)
        }
        _ => outcome,
    }
}

fn request_failed(e: &reqwest::Error) -> SendOutcome {
    let code = if e.is_timeout() {
        "apns_timeout"
    } else {
        "apns_connection"
    };
    // The source chain says why (refused, reset, TLS), which the top-level text does not.
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    SendOutcome::transient(code, message)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::AtomicU64;

    use fanout_sandbox::apns::{Auth, Fault, FaultList, Notification, NotificationList};
    use serde_json::json;
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    use super::*;

    /// An in-process sandbox on port 0 with its APNs credentials written to files, as the
    /// worker would read them.
    struct Sandbox {
        apns_url: String,
        api_url: String,
        http: reqwest::Client,
        dir: PathBuf,
        stop: Option<oneshot::Sender<()>>,
        server: JoinHandle<anyhow::Result<()>>,
    }

    impl Sandbox {
        async fn spawn(name: &str) -> Self {
            let listeners = fanout_sandbox::Listeners::bind_loopback().await.unwrap();
            let apns_url = format!("https://{}", listeners.apns.local_addr().unwrap());
            let api_url = format!("http://{}", listeners.http.local_addr().unwrap());
            let (stop, stopped) = oneshot::channel::<()>();
            let server = tokio::spawn(fanout_sandbox::serve(listeners, async {
                let _ = stopped.await;
            }));
            let credentials = fanout_sandbox::apns::credentials().unwrap();
            let dir =
                std::env::temp_dir().join(format!("fanout-apns-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            for (file, content) in [
                ("ca.pem", &credentials.ca_pem),
                ("signing-key.p8", &credentials.signing_key_pem),
                ("client-cert.pem", &credentials.client_cert_pem),
                ("client-key.pem", &credentials.client_key_pem),
            ] {
                std::fs::write(dir.join(file), content).unwrap();
            }
            Self {
                apns_url,
                api_url,
                http: reqwest::Client::new(),
                dir,
                stop: Some(stop),
                server,
            }
        }

        /// Token auth with the sandbox key, trusting the sandbox CA.
        fn config(&self) -> ApnsConfig {
            ApnsConfig {
                enabled: true,
                endpoint: self.apns_url.clone(),
                topic: "com.example.app".into(),
                auth: ApnsAuthConfig {
                    key_id: fanout_sandbox::apns::KEY_ID.into(),
                    team_id: fanout_sandbox::apns::TEAM_ID.into(),
                    key_path: Some(self.dir.join("signing-key.p8")),
                    cert_path: None,
                },
                ca_path: Some(self.dir.join("ca.pem")),
                timeout_ms: 5_000,
            }
        }

        fn client(&self) -> ApnsClient {
            ApnsClient::new(&self.config()).unwrap()
        }

        async fn notifications(&self) -> Vec<Notification> {
            let url = format!("{}/api/apns/notifications", self.api_url);
            let list: NotificationList = self
                .http
                .get(url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            list.notifications
        }

        async fn add_fault(&self, rule: serde_json::Value) {
            let url = format!("{}/api/apns/faults", self.api_url);
            let response = self.http.post(url).json(&rule).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::CREATED);
        }

        async fn faults(&self) -> Vec<Fault> {
            let url = format!("{}/api/apns/faults", self.api_url);
            let list: FaultList = self
                .http
                .get(url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            list.faults
        }
    }

    impl Drop for Sandbox {
        fn drop(&mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            self.server.abort();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn device(n: u8) -> DeviceToken {
        DeviceToken::parse(&format!("{n:02x}").repeat(32)).unwrap()
    }

    fn message(n: u32) -> PushMessage {
        PushMessage {
            instance_id: InstanceId::parse(&format!("in_{n:032x}")).unwrap(),
            title: "Goal!".into(),
            body: "2-1 in the 90th minute".into(),
            data: serde_json::Map::from_iter([("match".to_owned(), json!(42))]),
            collapse_id: None,
            priority: PushPriority::High,
            expires_at: None,
        }
    }

    fn code(outcome: &SendOutcome) -> &str {
        match outcome {
            SendOutcome::Accepted { .. } => "accepted",
            SendOutcome::Permanent { code, .. }
            | SendOutcome::InvalidAddress { code, .. }
            | SendOutcome::Transient { code, .. } => code,
        }
    }

    #[tokio::test]
    async fn sends_over_http2_with_a_shared_provider_token() {
        let sandbox = Sandbox::spawn("happy").await;
        let client = sandbox.client();
        let expires = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        let first = PushMessage {
            collapse_id: Some("match-42".into()),
            priority: PushPriority::Normal,
            expires_at: Some(expires),
            ..message(1)
        };
        let outcome = client.send(&device(1), &first).await;
        let expected_id = apns_id(&first.instance_id, &device(1));
        assert_eq!(
            outcome,
            SendOutcome::Accepted {
                provider_message_id: expected_id.clone()
            }
        );
        // A clone shares the connection pool and the token.
        let outcome = client.clone().send(&device(2), &message(2)).await;
        assert!(
            matches!(outcome, SendOutcome::Accepted { .. }),
            "{outcome:?}"
        );
        assert_eq!(client.tokens_minted(), 1);

        let stored = sandbox.notifications().await;
        assert_eq!(stored.len(), 2);
        let n = &stored[0];
        assert_eq!(n.token, device(1).as_str());
        assert_eq!(n.apns_id, expected_id);
        assert_eq!(n.topic, "com.example.app");
        assert_eq!(n.push_type.as_deref(), Some("alert"));
        assert_eq!(n.priority, Some(5));
        assert_eq!(n.expiration, Some(1_900_000_000));
        assert_eq!(n.collapse_id.as_deref(), Some("match-42"));
        assert_eq!(
            n.payload,
            json!({
                "aps": {
                    "alert": {"title": "Goal!", "body": "2-1 in the 90th minute"},
                    "sound": "default"
                },
                "match": 42
            })
        );
        assert!(matches!(n.auth, Auth::Token { .. }), "{:?}", n.auth);
        assert_eq!(n.auth, stored[1].auth, "both sends carry one token");
        assert_eq!(stored[1].priority, Some(10));
        assert_eq!(stored[1].expiration, Some(0));
        assert_eq!(stored[1].collapse_id, None);
    }

    #[tokio::test]
    async fn concurrent_sends_share_one_connection_and_one_token() {
        let sandbox = Sandbox::spawn("concurrent").await;
        let client = sandbox.client();
        let sends = (0..50_u8).map(|n| {
            let client = client.clone();
            async move { client.send(&device(n), &message(u32::from(n))).await }
        });
        let outcomes = futures::future::join_all(sends).await;
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, SendOutcome::Accepted { .. })),
            "{outcomes:?}"
        );
        assert_eq!(client.tokens_minted(), 1);
        let stored = sandbox.notifications().await;
        assert_eq!(stored.len(), 50);
        let peers: std::collections::HashSet<_> = stored.iter().map(|n| &n.peer).collect();
        assert_eq!(peers.len(), 1, "{peers:?}");
    }

    #[tokio::test]
    async fn authenticates_with_a_client_certificate() {
        let sandbox = Sandbox::spawn("certificate").await;
        let mut config = sandbox.config();
        config.auth = ApnsAuthConfig {
            key_path: Some(sandbox.dir.join("client-key.pem")),
            cert_path: Some(sandbox.dir.join("client-cert.pem")),
            ..ApnsAuthConfig::default()
        };
        let client = ApnsClient::new(&config).unwrap();
        let outcome = client.send(&device(3), &message(3)).await;
        assert!(
            matches!(outcome, SendOutcome::Accepted { .. }),
            "{outcome:?}"
        );
        let stored = sandbox.notifications().await;
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].auth, Auth::Certificate);
        assert_eq!(stored[0].topic, "com.example.app");
    }

    #[tokio::test]
    async fn a_key_apns_does_not_know_is_permanent() {
        let sandbox = Sandbox::spawn("bad-key").await;
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
        );
        let path = sandbox.dir.join("other.p8");
        std::fs::write(&path, pem).unwrap();
        let mut config = sandbox.config();
        config.auth.key_path = Some(path);
        let client = ApnsClient::new(&config).unwrap();
        let outcome = client.send(&device(4), &message(4)).await;
        // The operator's key is at fault: the tenant's receipt says so generically.
        assert_eq!(code(&outcome), "provider_auth");
        assert!(
            matches!(outcome, SendOutcome::Permanent { .. }),
            "{outcome:?}"
        );
        assert!(sandbox.notifications().await.is_empty());
    }

    #[tokio::test]
    async fn dead_tokens_are_invalid_addresses() {
        let sandbox = Sandbox::spawn("dead").await;
        let client = sandbox.client();
        sandbox
            .add_fault(json!({"token": device(5).as_str(), "status": 410}))
            .await;
        sandbox
            .add_fault(json!({
                "token": device(6).as_str(),
                "status": 400,
                "reason": "DeviceTokenNotForTopic"
            }))
            .await;
        let not_hex = DeviceToken::parse(&"zz".repeat(32)).unwrap();
        let not_alphanumeric = DeviceToken::parse("ab/../cd").unwrap();
        let cases = [
            (device(5), "apns_Unregistered"),
            (device(6), "apns_DeviceTokenNotForTopic"),
            (not_hex, "apns_BadDeviceToken"),
            (not_alphanumeric, "apns_BadDeviceToken"),
        ];
        for (token, expected) in cases {
            let outcome = client.send(&token, &message(5)).await;
            assert!(
                matches!(&outcome, SendOutcome::InvalidAddress { code, .. } if code == expected),
                "{token:?}: {outcome:?}"
            );
        }
        assert!(sandbox.notifications().await.is_empty());
    }

    #[tokio::test]
    async fn throttling_and_server_errors_are_transient() {
        let sandbox = Sandbox::spawn("transient").await;
        let client = sandbox.client();
        let token = device(7);
        sandbox
            .add_fault(json!({
                "token": token.as_str(), "status": 429, "retry_after_s": 7, "times": 1
            }))
            .await;
        sandbox
            .add_fault(json!({"token": token.as_str(), "status": 500, "times": 1}))
            .await;
        sandbox
            .add_fault(json!({"token": token.as_str(), "status": 503, "times": 1}))
            .await;
        let outcome = client.send(&token, &message(7)).await;
        assert_eq!(
            outcome,
            SendOutcome::Transient {
                code: "apns_TooManyRequests".into(),
                message: "apns answered 429 TooManyRequests".into(),
                retry_after: Some(Duration::from_secs(7)),
            }
        );
        for expected in ["apns_InternalServerError", "apns_ServiceUnavailable"] {
            let outcome = client.send(&token, &message(7)).await;
            assert!(
                matches!(
                    &outcome,
                    SendOutcome::Transient { code, retry_after: None, .. } if code == expected
                ),
                "{outcome:?}"
            );
        }
        // The rules are used up: the resend goes through.
        let outcome = client.send(&token, &message(7)).await;
        assert!(
            matches!(outcome, SendOutcome::Accepted { .. }),
            "{outcome:?}"
        );
        assert_eq!(sandbox.notifications().await.len(), 1);
    }

    #[tokio::test]
    async fn timeouts_and_refused_connections_are_transient() {
        let sandbox = Sandbox::spawn("timeout").await;
        let token = device(8);
        sandbox
            .add_fault(json!({
                "token": token.as_str(), "status": 200, "delay_ms": 2_000, "times": 1
            }))
            .await;
        let mut config = sandbox.config();
        config.timeout_ms = 200;
        let outcome = ApnsClient::new(&config)
            .unwrap()
            .send(&token, &message(8))
            .await;
        assert_eq!(code(&outcome), "apns_timeout", "{outcome:?}");
        assert!(matches!(outcome, SendOutcome::Transient { .. }));

        // A port nothing listens on: bind one, note it, close it.
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let mut config = sandbox.config();
        config.endpoint = format!("https://127.0.0.1:{port}");
        let outcome = ApnsClient::new(&config)
            .unwrap()
            .send(&token, &message(8))
            .await;
        assert_eq!(code(&outcome), "apns_connection", "{outcome:?}");
        assert!(matches!(outcome, SendOutcome::Transient { .. }));
    }

    #[tokio::test]
    async fn provider_token_is_refreshed_once_it_is_fifty_minutes_old() {
        let sandbox = Sandbox::spawn("refresh").await;
        // The client's clock runs behind by `lag` seconds, so its tokens look as old to the
        // sandbox as the test wants without waiting.
        let lag = Arc::new(AtomicU64::new(55 * 60));
        let clock: Clock = {
            let lag = lag.clone();
            Arc::new(move || SystemTime::now() - Duration::from_secs(lag.load(Ordering::SeqCst)))
        };
        let client = ApnsClient::with_clock(&sandbox.config(), clock).unwrap();
        assert!(matches!(
            client.send(&device(9), &message(9)).await,
            SendOutcome::Accepted { .. }
        ));
        // 49 minutes later by the client's clock: still the same token.
        lag.store(6 * 60, Ordering::SeqCst);
        assert!(matches!(
            client.send(&device(9), &message(9)).await,
            SendOutcome::Accepted { .. }
        ));
        assert_eq!(client.tokens_minted(), 1);
        // 55 minutes later: a new one.
        lag.store(0, Ordering::SeqCst);
        assert!(matches!(
            client.send(&device(9), &message(9)).await,
            SendOutcome::Accepted { .. }
        ));
        assert_eq!(client.tokens_minted(), 2);

        let issued: Vec<u64> = sandbox
            .notifications()
            .await
            .iter()
            .map(|n| match n.auth {
                Auth::Token { issued_at, .. } => issued_at,
                Auth::Certificate => panic!("expected token auth"),
            })
            .collect();
        assert_eq!(issued.len(), 3);
        assert_eq!(issued[0], issued[1]);
        let refreshed_after = issued[2] - issued[0];
        assert!(
            (55 * 60 - 5..=55 * 60 + 5).contains(&refreshed_after),
            "{issued:?}"
        );
    }

    #[tokio::test]
    async fn expired_provider_token_is_refreshed_and_retried_once() {
        let sandbox = Sandbox::spawn("expired").await;
        let client = sandbox.client();
        let token = device(10);
        sandbox
            .add_fault(json!({
                "token": token.as_str(), "status": 403, "reason": "ExpiredProviderToken", "times": 1
            }))
            .await;
        let outcome = client.send(&token, &message(10)).await;
        assert!(
            matches!(outcome, SendOutcome::Accepted { .. }),
            "{outcome:?}"
        );
        assert_eq!(client.tokens_minted(), 2);
        assert_eq!(sandbox.notifications().await.len(), 1);

        // Expired again after the refresh: no loop, the second answer stands.
        sandbox
            .add_fault(json!({
                "token": token.as_str(), "status": 403, "reason": "ExpiredProviderToken", "times": 3
            }))
            .await;
        let outcome = client.send(&token, &message(10)).await;
        assert_eq!(code(&outcome), "provider_auth");
        assert!(
            matches!(outcome, SendOutcome::Permanent { .. }),
            "{outcome:?}"
        );
        assert_eq!(
            sandbox.faults().await[0].remaining,
            Some(1),
            "two requests, not three"
        );
        assert_eq!(client.tokens_minted(), 3);
    }

    #[tokio::test]
    async fn oversized_payload_is_refused_without_a_request() {
        let sandbox = Sandbox::spawn("oversized").await;
        let client = sandbox.client();
        let message = PushMessage {
            body: "x".repeat(MAX_PAYLOAD),
            ..message(11)
        };
        let outcome = client.send(&device(11), &message).await;
        assert_eq!(code(&outcome), "apns_PayloadTooLarge");
        assert!(matches!(outcome, SendOutcome::Permanent { .. }));
        assert_eq!(client.tokens_minted(), 0);
        assert!(sandbox.notifications().await.is_empty());
    }

    #[test]
    fn apns_ids_are_stable_per_delivery_and_distinct_across_them() {
        let id = apns_id(&message(1).instance_id, &device(1));
        assert_eq!(id, apns_id(&message(1).instance_id, &device(1)));
        assert_ne!(id, apns_id(&message(2).instance_id, &device(1)));
        assert_ne!(id, apns_id(&message(1).instance_id, &device(2)));
        let uuid = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(uuid.get_version_num(), 8);
        assert_eq!(id, uuid.hyphenated().to_string());
    }

    #[test]
    fn answers_are_classified_by_status_and_reason() {
        let answer = |status: u16, reason: Option<&str>| Answer {
            status: StatusCode::from_u16(status).unwrap(),
            apns_id: Some("id".into()),
            reason: reason.map(str::to_owned),
            timestamp: None,
            retry_after: None,
        };
        let kind = |outcome: SendOutcome| match outcome {
            SendOutcome::Accepted { .. } => "accepted".to_owned(),
            SendOutcome::Permanent { code, .. } => format!("permanent {code}"),
            SendOutcome::InvalidAddress { code, .. } => format!("invalid {code}"),
            SendOutcome::Transient { code, .. } => format!("transient {code}"),
        };
        let cases = [
            (200, None, "accepted"),
            (410, Some("Unregistered"), "invalid apns_Unregistered"),
            (410, Some("ExpiredToken"), "invalid apns_ExpiredToken"),
            (400, Some("BadDeviceToken"), "invalid apns_BadDeviceToken"),
            (
                400,
                Some("DeviceTokenNotForTopic"),
                "invalid apns_DeviceTokenNotForTopic",
            ),
            (400, Some("BadCollapseId"), "permanent apns_BadCollapseId"),
            (
                400,
                Some("TopicDisallowed"),
                "permanent apns_TopicDisallowed",
            ),
            (
                403,
                Some("InvalidProviderToken"),
                "permanent apns_InvalidProviderToken",
            ),
            (
                413,
                Some("PayloadTooLarge"),
                "permanent apns_PayloadTooLarge",
            ),
            (
                429,
                Some("TooManyRequests"),
                "transient apns_TooManyRequests",
            ),
            (
                429,
                Some("TooManyProviderTokenUpdates"),
                "transient apns_TooManyProviderTokenUpdates",
            ),
            (
                500,
                Some("InternalServerError"),
                "transient apns_InternalServerError",
            ),
            (503, None, "transient apns_503"),
            (404, None, "permanent apns_404"),
        ];
        for (status, reason, expected) in cases {
            assert_eq!(
                kind(classify(&answer(status, reason))),
                expected,
                "{status} {reason:?}"
            );
        }
        let accepted = classify(&answer(200, None));
        assert_eq!(
            accepted,
            SendOutcome::Accepted {
                provider_message_id: "id".into()
            }
        );
        let gone = classify(&Answer {
            timestamp: Some(1234),
            ..answer(410, Some("Unregistered"))
        });
        let SendOutcome::InvalidAddress { message, .. } = gone else {
            panic!("{gone:?}")
        };
        assert_eq!(
            message,
            "apns answered 410 Unregistered (token invalid since 1234 ms)"
        );
    }

    #[test]
    fn data_keys_sit_beside_aps_and_cannot_replace_it() {
        let mut data = serde_json::Map::new();
        data.insert("aps".into(), json!("mine"));
        data.insert("deep_link".into(), json!("app://match/42"));
        let payload = payload(&PushMessage { data, ..message(1) });
        assert_eq!(payload["deep_link"], "app://match/42");
        assert_eq!(payload["aps"]["alert"]["title"], "Goal!");
        assert_eq!(payload["aps"]["sound"], "default");
    }

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
    fn missing_or_unreadable_settings_are_config_errors() {
        let config = ApnsConfig::default();
        assert!(matches!(
            ApnsClient::new(&config),
            Err(ApnsConfigError::Missing("auth.key_path"))
        ));
        let config = ApnsConfig {
            auth: ApnsAuthConfig {
                key_path: Some("/nonexistent/key.p8".into()),
                ..ApnsAuthConfig::default()
            },
            ..ApnsConfig::default()
        };
        let error = ApnsClient::new(&config).unwrap_err();
        assert!(matches!(
            error,
            ApnsConfigError::Read {
                what: "auth.key_path",
                ..
            }
        ));
        assert!(
            error
                .to_string()
                .starts_with("cannot read apns auth.key_path /nonexistent/key.p8")
        );

        let dir = std::env::temp_dir().join(format!("fanout-apns-{}-config", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = dir.join("garbage.p8");
        std::fs::write(&garbage, "not a key").unwrap();
        let config = ApnsConfig {
            auth: ApnsAuthConfig {
                key_path: Some(garbage.clone()),
                ..ApnsAuthConfig::default()
            },
            ..ApnsConfig::default()
        };
        let error = ApnsClient::new(&config).unwrap_err();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            matches!(
                error,
                ApnsConfigError::Invalid {
                    what: "auth.key_path",
                    ..
                }
            ),
            "{error}"
        );
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
