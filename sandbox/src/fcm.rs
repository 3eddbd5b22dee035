//! The FCM HTTP v1 simulator: Google's OAuth token endpoint and `messages:send`, served on the
//! sandbox's HTTP listener, with read-back and fault injection.
//!
//! A client configured from the sandbox's service-account key file (see
//! [`service_account_json`], or `GET /api/fcm/service-account.json`) exchanges a signed JWT
//! for an access token at `token_uri`, then sends with it exactly as it would to Google. The
//! key is a development key committed in `sandbox/dev/` (see `FCM-SANDBOX-KEY.md` there): it
//! proves nothing and must never be used outside the sandbox.
//!
//! Layout: `oauth` verifies assertions and tracks access tokens, `send` validates
//! messages and shapes Google's errors, `fault` holds the injection rules, `store` the bounded
//! read-back store.
//!
//! Protocol routes (Google's shapes):
//! - `POST /oauth2/token`: form `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`,
//!   `assertion=<RS256 JWT>` -> `{"access_token", "expires_in", "token_type": "Bearer"}`, or
//!   `400 {"error": "invalid_grant", "error_description"}` (also `invalid_request`,
//!   `unsupported_grant_type`, `invalid_scope`). The assertion's `aud` must be this route's
//!   URL as the client reached it (the `token_uri` of the served key file).
//! - `POST /v1/projects/{project_id}/messages:send` with `authorization: Bearer <token>`:
//!   `{"name": "projects/{p}/messages/{id}"}`, or `{"error": {"code", "message", "status",
//!   "details"}}` (`401 UNAUTHENTICATED` for a missing, unknown, expired or revoked token,
//!   `403 PERMISSION_DENIED` for a project other than [`PROJECT_ID`], `400 INVALID_ARGUMENT`
//!   for a malformed message, or an injected fault).
//!
//! Sandbox routes (errors are the sandbox's `{"error"}` body):
//! - `GET /api/fcm/service-account.json`: the dev key file, `token_uri` pointing here.
//! - `GET /api/fcm/messages?token=&after_id=&limit=`: [`FcmMessageList`], oldest first;
//!   `limit` defaults to 100, at most 1000. `GET /api/fcm/messages/count?token=`:
//!   [`FcmMessageCount`]. `DELETE /api/fcm/messages`: removes all (204); ids keep increasing.
//! - `GET|POST|DELETE /api/fcm/faults`, `DELETE /api/fcm/faults/{id}`: fault rules
//!   ([`FcmFaultList`], [`NewFcmFault`], [`FcmFault`]).
//! - `GET /api/fcm/tokens`: [`FcmTokenStats`]; `DELETE /api/fcm/tokens` revokes every access
//!   token, so the next send with one is refused `401`.

mod fault;
mod oauth;
mod send;
mod store;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

pub use fault::{FcmErrorCode, FcmFault, FcmFaultList, NewFcmFault};
pub use oauth::FcmTokenStats;
pub use store::{CAPACITY, FcmMessageCount, FcmMessageList, StoredFcmMessage};

use crate::Sandbox;
use fault::Faults;
use oauth::{GrantError, TokenRequest, Tokens};
use send::GoogleError;
use store::Messages;

/// The Firebase project of the sandbox's service account; sends to any other are refused.
pub const PROJECT_ID: &str = "fanout-sandbox";

/// The sandbox service account's `client_email`, the `iss` its assertions must carry.
pub const CLIENT_EMAIL: &str = "fanout-sandbox@fanout-sandbox.iam.gserviceaccount.com";

/// The OAuth scope that grants sending FCM messages.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// The dev key's `private_key_id`; an assertion naming another `kid` is refused.
pub(crate) const PRIVATE_KEY_ID: &str = "fanout-sandbox-dev-key-1";

/// The sandbox-only service-account key file; its `token_uri` is rewritten when served.
const SERVICE_ACCOUNT: &str = include_str!("../dev/fcm-service-account.json");

/// The public half of the dev key, which assertions are verified with.
pub(crate) const PUBLIC_KEY_PEM: &str = include_str!("../dev/fcm-public-key.pem");

/// Returns the sandbox's service-account key file (JSON, Google's format) with `token_uri`
/// set to `{base_url}/oauth2/token`, where `base_url` is the sandbox's HTTP address as a
/// client reaches it, e.g. `http://127.0.0.1:8025`.
///
/// Tests in other crates write this to a file, or parse it, to configure an FCM client that
/// talks to a sandbox they started.
pub fn service_account_json(base_url: &str) -> String {
    let mut account: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(SERVICE_ACCOUNT).expect("the sandbox's key file is valid json");
    let base_url = base_url.trim_end_matches('/');
    account.insert(
        "token_uri".to_owned(),
        format!("{base_url}/oauth2/token").into(),
    );
    serde_json::to_string_pretty(&account).expect("a json map serializes")
}

/// The simulator's state, held by [`Sandbox`].
#[derive(Debug)]
pub(crate) struct Fcm {
    tokens: Tokens,
    faults: Faults,
    messages: Messages,
}

impl Fcm {
    pub fn new() -> Self {
        Self {
            tokens: Tokens::new(),
            faults: Faults::default(),
            messages: Messages::new(CAPACITY),
        }
    }
}

/// The simulator's routes, merged into the sandbox's HTTP router.
pub(crate) fn routes() -> Router<Arc<Sandbox>> {
    Router::new()
        .route("/oauth2/token", post(token))
        .route(
            "/v1/projects/{project_id}/messages:send",
            post(send_message),
        )
        .route("/api/fcm/service-account.json", get(service_account))
        .merge(crate::arrivals::routes("/api/fcm/messages", |sandbox| {
            &sandbox.fcm.messages
        }))
        .merge(crate::fault::routes("/api/fcm/faults", |sandbox| {
            &sandbox.fcm.faults
        }))
        .route("/api/fcm/tokens", get(token_stats).delete(revoke_tokens))
}

/// Seconds since the Unix epoch.
pub(crate) fn now_s() -> u64 {
    crate::arrivals::now_ms() / 1000
}

/// The sandbox's own origin as the client addressed it, from the `Host` header.
fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

impl IntoResponse for GrantError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.code, "error_description": self.description });
        (StatusCode::BAD_REQUEST, Json(body)).into_response()
    }
}

async fn token(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    form: Result<Form<TokenRequest>, FormRejection>,
) -> Response {
    let Ok(Form(request)) = form else {
        let error = GrantError {
            code: "invalid_request",
            description: "the body must be an application/x-www-form-urlencoded grant".into(),
        };
        return error.into_response();
    };
    let audience = format!("{}/oauth2/token", origin(&headers));
    match sandbox.fcm.tokens.grant(&request, &audience) {
        Ok(granted) => Json(granted).into_response(),
        Err(error) => {
            tracing::debug!(%error, "fcm token grant refused");
            error.into_response()
        }
    }
}

async fn send_message(
    State(sandbox): State<Arc<Sandbox>>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, GoogleError> {
    let access_token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(GoogleError::unauthenticated)?;
    if !sandbox.fcm.tokens.is_valid(access_token) {
        return Err(GoogleError::unauthenticated());
    }
    if project != PROJECT_ID {
        return Err(GoogleError::permission_denied(&project));
    }
    let valid = send::validate(&body)?;
    if valid.validate_only {
        // FCM's dry run: validated, never delivered.
        let name = format!("projects/{project}/messages/fake_message_id");
        return Ok(Json(json!({ "name": name })));
    }
    if let Some(fault) = sandbox.fcm.faults.take(|fault| fault.matches(&valid.token)) {
        if fault.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
        }
        if let Some(code) = fault.error {
            return Err(GoogleError::fault(code, fault.retry_after_s));
        }
    }
    let name = sandbox
        .fcm
        .messages
        .store(&project, &valid.token, valid.message);
    Ok(Json(json!({ "name": name })))
}

async fn service_account(headers: HeaderMap) -> Response {
    let body = service_account_json(&origin(&headers));
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn token_stats(State(sandbox): State<Arc<Sandbox>>) -> Json<FcmTokenStats> {
    Json(sandbox.fcm.tokens.stats())
}

async fn revoke_tokens(State(sandbox): State<Arc<Sandbox>>) -> StatusCode {
    sandbox.fcm.tokens.revoke_all();
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_key_file_matches_the_constants_and_points_here() {
        let account: serde_json::Value =
            serde_json::from_str(&service_account_json("http://127.0.0.1:9/")).unwrap();
        assert_eq!(account["type"], "service_account");
        assert_eq!(account["project_id"], PROJECT_ID);
        assert_eq!(account["client_email"], CLIENT_EMAIL);
        assert_eq!(account["private_key_id"], PRIVATE_KEY_ID);
        assert_eq!(account["token_uri"], "http://127.0.0.1:9/oauth2/token");
        assert!(
            account["private_key"]
                .as_str()
                .unwrap()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
    }
}
