//! Inbox tokens: a tenant's backend issues one per user (`POST /v1/users/{user_id}/inbox-token`)
//! and hands it to the device, which presents it as `Authorization: Bearer <token>`. The store
//! keeps only its hash, so any API replica verifies it and a revocation reaches them all.
//!
//! The stream routes, where browsers' `EventSource` and `WebSocket` cannot set headers, also
//! take credentials in the URL ([`StreamUser`]). A URL ends up in proxy logs and histories, so
//! the way to do it is a stream ticket: `POST /v1/inbox/stream-ticket` (with the token in the
//! header) returns one that opens a single stream within a minute, as `?ticket=`. The token
//! itself as `?token=` still works there, for clients written before tickets; every other route
//! takes the header only.

use axum::Json;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use fanout_domain::{TenantId, UnixMillis, UserId};
use fanout_store::inbox::InboxGrant;
use fanout_store::now_ms;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};

/// The user an inbox token opens. Every user-facing inbox handler takes one, so a token can
/// never reach another user's inbox.
#[derive(Debug, Clone)]
pub struct InboxUser {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The user.
    pub user_id: UserId,
    /// The token's public name (revoking it closes streams opened with it).
    pub token_id: String,
    /// When the token expires (streams end then).
    pub expires_at_ms: UnixMillis,
}

#[derive(Deserialize)]
struct StreamCredentials {
    ticket: Option<String>,
    token: Option<String>,
}

impl FromRequestParts<AppState> for InboxUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = crate::auth::bearer(parts).ok_or(ApiError::Unauthorized)?;
        verify(state, token).await
    }
}

/// The user of a stream route (`/v1/inbox/stream`, `/v1/inbox/ws`): the token comes from the
/// `Authorization` header or, for clients that cannot set one, the URL: a single-use
/// `?ticket=`, or the token itself as `?token=`.
#[derive(Debug, Clone)]
pub struct StreamUser(pub InboxUser);

impl FromRequestParts<AppState> for StreamUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(token) = crate::auth::bearer(parts) {
            return verify(state, token).await.map(StreamUser);
        }
        let query = Query::<StreamCredentials>::try_from_uri(&parts.uri)
            .map(|q| q.0)
            .map_err(|_| ApiError::Unauthorized)?;
        let present = |v: Option<String>| v.filter(|v| !v.is_empty());
        let grant = match (present(query.ticket), present(query.token)) {
            (Some(ticket), _) => state.store.redeem_stream_ticket(&ticket, now_ms()).await?,
            (None, Some(token)) => state.store.verify_inbox_token(&token, now_ms()).await?,
            (None, None) => None,
        };
        grant
            .map(user)
            .map(StreamUser)
            .ok_or(ApiError::Unauthorized)
    }
}

async fn verify(state: &AppState, token: &str) -> Result<InboxUser, ApiError> {
    let grant = state.store.verify_inbox_token(token, now_ms()).await?;
    grant.map(user).ok_or(ApiError::Unauthorized)
}

fn user(grant: InboxGrant) -> InboxUser {
    InboxUser {
        tenant_id: grant.tenant_id,
        user_id: grant.user_id,
        token_id: grant.token_id,
        expires_at_ms: grant.expires_at_ms,
    }
}

/// Answer of `POST /v1/inbox/stream-ticket`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StreamTicket {
    /// Pass as `?ticket=` to `GET /v1/inbox/stream` or `GET /v1/inbox/ws`; it opens one stream.
    pub ticket: String,
    /// When it stops working if unused (a minute by default).
    #[schema(value_type = i64)]
    pub expires_at_ms: UnixMillis,
}

/// `POST /v1/inbox/stream-ticket`: a single-use ticket for a stream URL.
#[utoipa::path(
    post,
    path = "/v1/inbox/stream-ticket",
    tag = "inbox",
    summary = "Issue a single-use, short-lived ticket that opens one stream as ?ticket=, so the inbox token never goes in a URL",
    description = "The ticket opens one `GET /v1/inbox/stream` or `GET /v1/inbox/ws` within its life (60 s by default, FANOUT_INBOX__STREAM_TICKET_TTL_SECONDS); a second use is 401. The stream it opens lasts as long as the token: revoking the token ends it.",
    security(("inbox_token" = [])),
    responses(
        (status = 201, description = "Issued", body = StreamTicket),
        (status = 401, description = "No inbox token, or one that is expired or revoked (code unauthorized)", body = ErrorBody),
        (status = 429, description = "Over this token's inbox write quota (5 a second sustained, a burst of 20 by default; code rate_limited); retry shortly", body = ErrorBody),
    )
)]
pub async fn issue_stream_ticket(
    State(state): State<AppState>,
    user: InboxUser,
) -> Result<(StatusCode, Json<StreamTicket>), ApiError> {
    state.inbox.admit_write(&user.token_id)?;
    let ttl_ms = state
        .inbox
        .config()
        .stream_ticket_ttl_seconds
        .clamp(1, 3600)
        .saturating_mul(1000);
    // A ticket never outlives its token.
    let expires_at_ms = (now_ms() + ttl_ms as i64).min(user.expires_at_ms);
    let ticket = state
        .store
        .issue_stream_ticket(&user.token_id, expires_at_ms)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(StreamTicket {
            ticket,
            expires_at_ms,
        }),
    ))
}
