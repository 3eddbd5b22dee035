//! A webhook receiver with read-back and fault injection, standing in for a tenant's backend.
//!
//! `POST /hooks/{name}` takes a call as a tenant's endpoint would. When the receiver `name` has
//! secrets (`PUT /api/webhooks/{name}/secrets`), the call's Standard Webhooks signature is
//! verified against them, with an implementation of its own (ring's HMAC), so the platform's
//! signing is checked by something that does not share its code. Every call is kept, with what
//! it was answered: `GET /api/webhooks/{name}/calls` reads them back. Fault rules
//! (`/api/webhooks/faults`) answer chosen receivers with an error status, a redirect, or a
//! delay (a timeout, for a client with a shorter limit); a faulted call is kept too, marked
//! with the status it got.

pub mod fault;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::Sandbox;
use crate::http::{ApiError, ApiResult};

pub use fault::{NewWebhookFault, WebhookFault, WebhookFaultList};

/// Calls kept per receiver; older ones are dropped first.
pub const CAPACITY: usize = 10_000;

/// Largest call body read.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Largest page of `GET /api/webhooks/{name}/calls`.
const MAX_LIMIT: usize = 1_000;

/// One call a receiver got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceivedCall {
    /// Increasing per sandbox, for paging.
    pub id: u64,
    /// The status it was answered with.
    pub answered: u16,
    /// `webhook-id`.
    pub message_id: Option<String>,
    /// `webhook-timestamp`.
    pub timestamp: Option<String>,
    /// `webhook-signature`.
    pub signature: Option<String>,
    /// Whether a signature verified against the receiver's secrets; `null` when it has none.
    pub verified: Option<bool>,
    /// The body, parsed (`null` when it was not JSON).
    pub body: serde_json::Value,
}

/// Body of `GET /api/webhooks/{name}/calls`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallList {
    /// The calls after `after_id`, oldest first (at most `limit`).
    pub calls: Vec<ReceivedCall>,
    /// Calls the receiver got since start-up (or its last clear), kept or not.
    pub received: u64,
}

/// Body of `PUT /api/webhooks/{name}/secrets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secrets {
    /// The `whsec_` secrets a signature may verify against.
    pub secrets: Vec<String>,
}

#[derive(Debug, Default)]
struct Receiver {
    secrets: Vec<Vec<u8>>,
    calls: std::collections::VecDeque<ReceivedCall>,
    received: u64,
}

/// Every receiver's calls and secrets.
#[derive(Debug, Default)]
pub(crate) struct Receivers {
    inner: Mutex<(u64, HashMap<String, Receiver>)>,
    pub(crate) faults: fault::Faults,
}

impl Receivers {
    fn lock(&self) -> MutexGuard<'_, (u64, HashMap<String, Receiver>)> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    after_id: u64,
    #[serde(default)]
    limit: Option<usize>,
}

pub(crate) fn routes() -> Router<Arc<Sandbox>> {
    Router::new()
        .route(
            "/hooks/{name}",
            post(receive).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
        .route("/api/webhooks/{name}/calls", get(list_calls))
        .route("/api/webhooks/{name}/secrets", put(set_secrets))
        .route("/api/webhooks", axum::routing::delete(clear))
        .merge(crate::fault::routes("/api/webhooks/faults", |sandbox| {
            &sandbox.webhooks.faults
        }))
}

/// `POST /hooks/{name}`.
async fn receive(
    State(sandbox): State<Arc<Sandbox>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fired = sandbox.webhooks.faults.take(|rule| rule.matches(&name));
    if let Some(rule) = &fired
        && rule.delay_ms > 0
    {
        tokio::time::sleep(Duration::from_millis(rule.delay_ms)).await;
    }
    let answer = fired
        .as_ref()
        .and_then(|rule| rule.status)
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::NO_CONTENT);
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (message_id, timestamp, signature) = (
        text("webhook-id"),
        text("webhook-timestamp"),
        text("webhook-signature"),
    );
    {
        let mut inner = sandbox.webhooks.lock();
        inner.0 += 1;
        let id = inner.0;
        let receiver = inner.1.entry(name).or_default();
        let verified = (!receiver.secrets.is_empty()).then(|| {
            verify(
                &receiver.secrets,
                message_id.as_deref(),
                timestamp.as_deref(),
                signature.as_deref(),
                &body,
            )
        });
        receiver.received += 1;
        if receiver.calls.len() == CAPACITY {
            receiver.calls.pop_front();
        }
        receiver.calls.push_back(ReceivedCall {
            id,
            answered: answer.as_u16(),
            message_id,
            timestamp,
            signature,
            verified,
            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        });
    }
    let mut response = answer.into_response();
    if let Some(location) = fired.and_then(|rule| rule.location)
        && let Ok(value) = location.parse()
    {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Whether any `v1,` signature in `header` is the HMAC-SHA256 of `{id}.{timestamp}.{body}`
/// under any of `keys`.
fn verify(
    keys: &[Vec<u8>],
    id: Option<&str>,
    timestamp: Option<&str>,
    header: Option<&str>,
    body: &[u8],
) -> bool {
    let (Some(id), Some(timestamp), Some(header)) = (id, timestamp, header) else {
        return false;
    };
    let mut signed = Vec::with_capacity(id.len() + timestamp.len() + body.len() + 2);
    signed.extend_from_slice(id.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(timestamp.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    header
        .split(' ')
        .filter_map(|part| part.strip_prefix("v1,"))
        .filter_map(|sig| STANDARD.decode(sig).ok())
        .any(|sig| {
            keys.iter().any(|key| {
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
                ring::hmac::verify(&key, &signed, &sig).is_ok()
            })
        })
}

/// `PUT /api/webhooks/{name}/secrets`: what the receiver verifies signatures against.
async fn set_secrets(
    State(sandbox): State<Arc<Sandbox>>,
    Path(name): Path<String>,
    body: Result<Json<Secrets>, JsonRejection>,
) -> ApiResult<StatusCode> {
    let Json(body) = body?;
    let keys = body
        .secrets
        .iter()
        .map(|s| {
            s.strip_prefix("whsec_")
                .and_then(|b64| STANDARD.decode(b64).ok())
                .ok_or_else(|| {
                    ApiError::rejected(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "secrets must be whsec_ and base64",
                    )
                })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    sandbox.webhooks.lock().1.entry(name).or_default().secrets = keys;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/webhooks/{name}/calls?after_id=&limit=`.
async fn list_calls(
    State(sandbox): State<Arc<Sandbox>>,
    Path(name): Path<String>,
    page: Result<Query<Page>, QueryRejection>,
) -> ApiResult<Json<CallList>> {
    let Query(page) = page?;
    let limit = page.limit.unwrap_or(100).clamp(1, MAX_LIMIT);
    let inner = sandbox.webhooks.lock();
    let Some(receiver) = inner.1.get(&name) else {
        return Ok(Json(CallList {
            calls: Vec::new(),
            received: 0,
        }));
    };
    Ok(Json(CallList {
        calls: receiver
            .calls
            .iter()
            .filter(|c| c.id > page.after_id)
            .take(limit)
            .cloned()
            .collect(),
        received: receiver.received,
    }))
}

/// `DELETE /api/webhooks`: forgets every receiver's calls and secrets.
async fn clear(State(sandbox): State<Arc<Sandbox>>) -> StatusCode {
    sandbox.webhooks.lock().1.clear();
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_the_specifications_example_and_nothing_else() {
        let keys = [STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()];
        let (id, ts, body) = (
            Some("msg_p5jXN8AQM9LWM0D4loKWxJek"),
            Some("1614265330"),
            br#"{"test": 2432232314}"#.as_slice(),
        );
        let good = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert!(verify(&keys, id, ts, Some(good), body));
        assert!(verify(
            &[b"other".to_vec(), keys[0].clone()],
            id,
            ts,
            Some(&format!("v1,AAAA {good}")),
            body
        ));
        assert!(!verify(&keys, id, Some("1614265331"), Some(good), body));
        assert!(!verify(&keys, id, ts, Some(good), b"{}"));
        assert!(!verify(&keys, id, ts, None, body));
    }
}
