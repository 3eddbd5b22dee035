//! The APNs simulator: Apple's provider API (`POST /3/device/{token}`) over HTTP/2 and TLS.
//!
//! It checks requests as APNs does and answers the same way: 200 with an `apns-id` header, or
//! an error status with a JSON `{"reason": ...}` body (410 adds a `timestamp`). A request is
//! authenticated either by a provider token (`authorization: bearer <jwt>`, ES256 with the
//! sandbox key, see [`Credentials`]) or by the TLS client certificate the sandbox CA issued;
//! a bearer token, when sent, is checked even over a certificate-authenticated connection.
//!
//! Checks, in order: method and path (405 `MethodNotAllowed`, 404 `BadPath`); auth (403
//! `MissingProviderToken`, `InvalidProviderToken`, `ExpiredProviderToken`); headers (400
//! `DuplicateHeaders`, `MissingTopic` (token auth only), `BadDeviceToken` (a device token must
//! be 64 to 200 hex digits), `InvalidPushType`, `BadPriority` (1, 5 or 10), `BadExpirationDate`,
//! `BadMessageId` (a hyphenated UUID), `BadCollapseId` (over 64 bytes)); payload (400
//! `PayloadEmpty`; 413 `PayloadTooLarge` over 4096 bytes, 5120 for `voip`; 400 `BadPayload`, the
//! simulator's own reason, when it is not a JSON object with an `aps` object). Only then do
//! fault rules ([`fault`]) get a say, and a notification that passes is stored for read-back.
//!
//! Submodules: [`credentials`] generates the CA, certificates and keys; [`auth`] checks provider
//! tokens; [`fault`] holds injected failures; [`notifications`] stores what was accepted;
//! `routes` serves all of that under `/api/apns/` on the read-back listener.

mod auth;
mod credentials;
mod fault;
mod notifications;
mod routes;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::debug;

pub use crate::fault::ANY_TOKEN;
pub use credentials::{Credentials, CredentialsError, KEY_ID, TEAM_ID, TOPIC, credentials};
pub use fault::{Fault, FaultList, NewFault};
pub use notifications::{Auth, CAPACITY, Notification, NotificationCount, NotificationList};
pub use routes::CredentialsInfo;
pub(crate) use routes::routes;

use crate::Sandbox;
use crate::arrivals::now_ms;
use crate::connections::{self, Connections};
use auth::Verifier;
use credentials::Identity;
use fault::Faults;
use notifications::Notifications;

/// Largest payload APNs accepts for most push types.
pub const MAX_PAYLOAD: usize = 4096;

/// Largest payload APNs accepts for VoIP notifications.
pub const MAX_VOIP_PAYLOAD: usize = 5120;

/// Longest `apns-collapse-id`, in bytes.
const MAX_COLLAPSE_ID: usize = 64;

/// Bytes of a request body read before answering 413 without reading on.
const MAX_BODY_READ: usize = 64 * 1024;

/// Push types APNs knows.
const PUSH_TYPES: [&str; 9] = [
    "alert",
    "background",
    "location",
    "voip",
    "complication",
    "fileprovider",
    "mdm",
    "liveactivity",
    "pushtotalk",
];

/// The simulator's shared state: what it accepted and the faults it injects.
#[derive(Debug, Default)]
pub(crate) struct Apns {
    /// Where the simulator listens, for the credentials route.
    pub addr: Option<SocketAddr>,
    pub notifications: Notifications,
    pub faults: Faults,
}

impl Apns {
    /// The base URL a client should use, e.g. `https://127.0.0.1:2197`.
    pub fn endpoint(&self) -> Option<String> {
        self.addr.map(|addr| {
            // The certificate names 127.0.0.1 and localhost; a wildcard bind is reachable on
            // loopback.
            let ip = if addr.ip().is_unspecified() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                addr.ip()
            };
            format!("https://{}", SocketAddr::new(ip, addr.port()))
        })
    }
}

/// Accepts TLS connections on `listener` until `shutdown` is cancelled.
pub(crate) async fn run(
    listener: TcpListener,
    sandbox: Arc<Sandbox>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let identity = credentials::identity().context("apns simulator cannot start")?;
    let acceptor = TlsAcceptor::from(identity.tls.clone());
    let mut clients = Connections::new("apns");
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            (stream, peer) = connections::accept(&listener, "apns") => {
                let connection = serve_connection(
                    stream,
                    peer,
                    acceptor.clone(),
                    sandbox.clone(),
                    identity,
                    shutdown.clone(),
                );
                clients.spawn(connection);
            }
            () = clients.reap() => {}
        }
    }
    // Connections watch the same token and send GOAWAY on their own.
    clients.drain().await;
    Ok(())
}

/// Serves one client connection: the TLS handshake, then HTTP/2 streams until either side
/// closes or the sandbox shuts down.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    sandbox: Arc<Sandbox>,
    identity: &'static Identity,
    shutdown: CancellationToken,
) {
    let tls = match connections::handshake(&acceptor, stream).await {
        Ok(tls) => tls,
        Err(error) => {
            debug!(%peer, %error, "apns tls handshake failed");
            return;
        }
    };
    let connection = Connection {
        peer,
        // The verifier only lets through certificates the sandbox CA signed.
        client_cert: tls
            .get_ref()
            .1
            .peer_certificates()
            .is_some_and(|certs| !certs.is_empty()),
    };
    let service = hyper::service::service_fn(move |request| {
        let sandbox = sandbox.clone();
        async move { Ok::<_, Infallible>(handle(&sandbox, identity, connection, request).await) }
    });
    let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(tls), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        debug!(%peer, %error, "apns connection ended with an error");
    }
}

/// What a request's connection tells about it.
#[derive(Debug, Clone, Copy)]
struct Connection {
    peer: SocketAddr,
    /// Whether the client presented a certificate the sandbox CA issued.
    client_cert: bool,
}

/// An error answer: status and `reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rejection {
    status: StatusCode,
    reason: &'static str,
}

const fn reject(status: StatusCode, reason: &'static str) -> Rejection {
    Rejection { status, reason }
}

/// A request that passed every check, ready to store.
struct Accepted {
    token: String,
    apns_id: String,
    notification: Notification,
}

async fn handle(
    sandbox: &Sandbox,
    identity: &Identity,
    connection: Connection,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    // Apple answers with the client's apns-id when it is valid, errors included.
    let client_apns_id = single_header(&parts.headers, "apns-id")
        .ok()
        .flatten()
        .filter(|id| is_uuid(id))
        .map(str::to_owned);
    let apns_id = client_apns_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let accepted = match check(identity, connection, &parts, body, apns_id.clone()).await {
        Ok(accepted) => accepted,
        Err(rejection) => {
            return error_response(&apns_id, rejection.status, rejection.reason, None, None);
        }
    };
    let faults = &sandbox.apns.faults;
    if let Some(fault) = faults.take(|fault| fault.matches(&accepted.token)) {
        if fault.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
        }
        if fault.status != 200 {
            let status =
                StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let reason = fault.reason.as_deref().unwrap_or("InternalServerError");
            let timestamp = (status == StatusCode::GONE).then_some(fault.created_at_ms);
            return error_response(
                &accepted.apns_id,
                status,
                reason,
                timestamp,
                fault.retry_after_s,
            );
        }
    }
    sandbox.apns.notifications.store(accepted.notification);
    let mut response = Response::new(Full::default());
    if let Ok(value) = HeaderValue::from_str(&accepted.apns_id) {
        response.headers_mut().insert("apns-id", value);
    }
    response
}

/// Checks a request as APNs does, in APNs' order.
async fn check(
    identity: &Identity,
    connection: Connection,
    parts: &hyper::http::request::Parts,
    body: Incoming,
    apns_id: String,
) -> Result<Accepted, Rejection> {
    let Some(token) = parts.uri.path().strip_prefix("/3/device/") else {
        return Err(reject(StatusCode::NOT_FOUND, "BadPath"));
    };
    if parts.method != Method::POST {
        return Err(reject(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"));
    }
    if token.is_empty() {
        return Err(reject(StatusCode::BAD_REQUEST, "MissingDeviceToken"));
    }

    let headers = &parts.headers;
    let authorization = single_header(headers, "authorization")?;
    let auth = match authorization {
        Some(value) => {
            let jwt = bearer(value).ok_or(reject(StatusCode::FORBIDDEN, "InvalidProviderToken"))?;
            let verifier = Verifier {
                key_id: &identity.credentials.key_id,
                team_id: &identity.credentials.team_id,
                public_key: &identity.provider_public_key,
            };
            let token = verifier
                .verify(jwt, now_ms() / 1000)
                .map_err(|rejection| reject(StatusCode::FORBIDDEN, rejection.reason()))?;
            Auth::Token {
                key_id: token.key_id,
                team_id: token.team_id,
                issued_at: token.issued_at,
            }
        }
        None if connection.client_cert => Auth::Certificate,
        None => return Err(reject(StatusCode::FORBIDDEN, "MissingProviderToken")),
    };

    let topic = match (single_header(headers, "apns-topic")?, &auth) {
        (Some(topic), _) if !topic.is_empty() => topic.to_owned(),
        (_, Auth::Certificate) => TOPIC.to_owned(),
        (_, Auth::Token { .. }) => return Err(reject(StatusCode::BAD_REQUEST, "MissingTopic")),
    };
    if !is_device_token(token) {
        return Err(reject(StatusCode::BAD_REQUEST, "BadDeviceToken"));
    }
    let push_type = single_header(headers, "apns-push-type")?;
    if push_type.is_some_and(|push_type| !PUSH_TYPES.contains(&push_type)) {
        return Err(reject(StatusCode::BAD_REQUEST, "InvalidPushType"));
    }
    let priority = match single_header(headers, "apns-priority")? {
        None => None,
        Some(value) => match value.parse::<u8>() {
            Ok(priority @ (1 | 5 | 10)) => Some(priority),
            _ => return Err(reject(StatusCode::BAD_REQUEST, "BadPriority")),
        },
    };
    let expiration = match single_header(headers, "apns-expiration")? {
        None => None,
        Some(value) => Some(
            value
                .parse::<u64>()
                .map_err(|_| reject(StatusCode::BAD_REQUEST, "BadExpirationDate"))?,
        ),
    };
    if single_header(headers, "apns-id")?.is_some_and(|id| !is_uuid(id)) {
        return Err(reject(StatusCode::BAD_REQUEST, "BadMessageId"));
    }
    let collapse_id = single_header(headers, "apns-collapse-id")?;
    if collapse_id.is_some_and(|id| id.len() > MAX_COLLAPSE_ID) {
        return Err(reject(StatusCode::BAD_REQUEST, "BadCollapseId"));
    }

    let too_large = reject(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge");
    let body = Limited::new(body, MAX_BODY_READ)
        .collect()
        .await
        .map_err(|_| too_large.clone())?
        .to_bytes();
    if body.is_empty() {
        return Err(reject(StatusCode::BAD_REQUEST, "PayloadEmpty"));
    }
    let limit = if push_type == Some("voip") {
        MAX_VOIP_PAYLOAD
    } else {
        MAX_PAYLOAD
    };
    if body.len() > limit {
        return Err(too_large);
    }
    let payload: serde_json::Value = serde_json::from_slice(&body)
        .ok()
        .filter(|payload: &serde_json::Value| payload.get("aps").is_some_and(|aps| aps.is_object()))
        .ok_or(reject(StatusCode::BAD_REQUEST, "BadPayload"))?;

    Ok(Accepted {
        token: token.to_owned(),
        apns_id: apns_id.clone(),
        notification: Notification {
            id: 0,
            token: token.to_owned(),
            apns_id,
            topic,
            push_type: push_type.map(str::to_owned),
            priority,
            expiration,
            collapse_id: collapse_id.map(str::to_owned),
            payload,
            auth,
            peer: connection.peer.to_string(),
            received_at_ms: now_ms(),
        },
    })
}

/// The value of header `name`, refusing a repeated one (APNs: `DuplicateHeaders`) or one
/// that is not text.
fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, Rejection> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(reject(StatusCode::BAD_REQUEST, "DuplicateHeaders"));
    }
    value
        .to_str()
        .map(|value| Some(value.trim()))
        .map_err(|_| reject(StatusCode::BAD_REQUEST, bad_header_reason(name)))
}

fn bad_header_reason(name: &str) -> &'static str {
    match name {
        "authorization" => "InvalidProviderToken",
        "apns-topic" => "BadTopic",
        "apns-push-type" => "InvalidPushType",
        "apns-priority" => "BadPriority",
        "apns-expiration" => "BadExpirationDate",
        "apns-id" => "BadMessageId",
        "apns-collapse-id" => "BadCollapseId",
        _ => "BadRequest",
    }
}

/// The token of an `authorization: bearer <token>` value.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether `token` looks like an APNs device token: 32 bytes in hex today, longer allowed.
fn is_device_token(token: &str) -> bool {
    (64..=200).contains(&token.len())
        && token.len().is_multiple_of(2)
        && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `id` is a UUID in its hyphenated form, as `apns-id` must be.
fn is_uuid(id: &str) -> bool {
    id.len() == 36 && uuid::Uuid::try_parse(id).is_ok()
}

fn error_response(
    apns_id: &str,
    status: StatusCode,
    reason: &str,
    timestamp: Option<u64>,
    retry_after_s: Option<u64>,
) -> Response<Full<Bytes>> {
    let body = match timestamp {
        Some(timestamp) => serde_json::json!({ "reason": reason, "timestamp": timestamp }),
        None => serde_json::json!({ "reason": reason }),
    };
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(value) = HeaderValue::from_str(apns_id) {
        headers.insert("apns-id", value);
    }
    if let Some(seconds) = retry_after_s {
        headers.insert(hyper::header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_tokens_are_hex_of_apple_lengths() {
        assert!(is_device_token(&"ab".repeat(32)));
        assert!(is_device_token(&"AB".repeat(100)));
        assert!(!is_device_token(&"ab".repeat(31)));
        assert!(!is_device_token(&"ab".repeat(101)));
        assert!(!is_device_token(&format!("{}a", "ab".repeat(32))));
        assert!(!is_device_token(&"zz".repeat(32)));
    }

    #[test]
    fn bearer_values() {
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("Bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("bearer "), None);
        assert_eq!(bearer("abc"), None);
    }

    #[test]
    fn apns_ids_are_hyphenated_uuids() {
        assert!(is_uuid("123e4567-e89b-12d3-a456-426614174000"));
        assert!(is_uuid("123E4567-E89B-12D3-A456-426614174000"));
        assert!(!is_uuid("123e4567e89b12d3a456426614174000"));
        assert!(!is_uuid("not-a-uuid"));
    }

    #[test]
    fn endpoint_points_at_loopback_for_a_wildcard_bind() {
        let apns = Apns {
            addr: Some("0.0.0.0:2197".parse().unwrap()),
            ..Apns::default()
        };
        assert_eq!(apns.endpoint().as_deref(), Some("https://127.0.0.1:2197"));
        let apns = Apns {
            addr: Some("127.0.0.1:9".parse().unwrap()),
            ..Apns::default()
        };
        assert_eq!(apns.endpoint().as_deref(), Some("https://127.0.0.1:9"));
    }
}
