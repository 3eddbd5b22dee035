//! The in-app inbox over HTTP.
//!
//! Tenant routes (API key): `GET /v1/users/{user_id}/inbox` lists a user's messages, newest
//! first; `POST /v1/users/{user_id}/inbox-token` issues a token for that user's device, and
//! `DELETE /v1/users/{user_id}/inbox-tokens[/{token_id}]` revokes them.
//!
//! User routes (inbox token, see [`token`]): `GET /v1/inbox` (the same listing, plus the event
//! id to stream from), `GET /v1/inbox/unread-count`, `POST /v1/inbox/messages/{id}/read`,
//! `POST /v1/inbox/read-all`, and the real-time streams in [`stream`] (SSE and WebSocket), fed
//! by the process's one poller in [`hub`].

pub mod hub;
pub mod stream;
pub mod token;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use fanout_domain::inbox::InboxMessage;
use fanout_domain::{InstanceId, TenantId, UnixMillis, UserId};
use fanout_store::inbox::{InboxCursor, MarkRead};
use fanout_store::now_ms;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub use self::hub::InboxHub;
pub use self::token::InboxUser;
use crate::AppState;
use crate::auth::Caller;
use crate::cursor;
use crate::error::{ApiError, ApiQuery, ErrorBody};

/// Settings of the inbox streams and tokens (`FANOUT_INBOX__*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InboxConfig {
    /// How often each API process polls the store for new inbox events.
    pub poll_interval_ms: u64,
    /// Most events one poll query reads.
    pub poll_batch: u32,
    /// Most events one replay query reads when a stream resumes.
    pub replay_page: u32,
    /// Events buffered per connection; a client further behind is disconnected and resumes.
    pub buffer: usize,
    /// Interval of SSE keep-alive comments and WebSocket pings.
    pub keep_alive_seconds: u64,
    /// Lifetime of an inbox token when the request names none.
    pub token_ttl_seconds: u64,
    /// Longest lifetime a request may ask for.
    pub max_token_ttl_seconds: u64,
    /// Lifetime of a stream ticket (`POST /v1/inbox/stream-ticket`), which opens one stream.
    pub stream_ticket_ttl_seconds: u64,
    /// Streams (SSE and WebSocket together) one user may hold open on one API process.
    pub max_streams_per_user: usize,
    /// Streams one tenant's users may hold open on one API process.
    pub max_streams_per_tenant: usize,
    /// The largest WebSocket message (and frame) a client may send, in bytes.
    pub max_ws_message_bytes: usize,
    /// Sustained inbox writes (mark read, read all) per second per token.
    pub writes_per_second: u32,
    /// Inbox writes one token may make at once before the sustained rate applies.
    pub writes_burst: u32,
}

impl Default for InboxConfig {
    fn default() -> Self {
        Self {
            poll_interval_ms: 150,
            poll_batch: 1000,
            replay_page: 500,
            buffer: 256,
            keep_alive_seconds: 15,
            token_ttl_seconds: 24 * 3600,
            max_token_ttl_seconds: 30 * 24 * 3600,
            stream_ticket_ttl_seconds: 60,
            max_streams_per_user: 20,
            max_streams_per_tenant: 10_000,
            max_ws_message_bytes: 4096,
            writes_per_second: 5,
            writes_burst: 20,
        }
    }
}

/// The most messages one page of the inbox lists.
pub const MAX_PAGE: u32 = 500;

/// Query of the inbox listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InboxQuery {
    /// `next_cursor` of the previous page.
    #[serde(default)]
    cursor: Option<String>,
    /// Page size.
    #[serde(default)]
    #[param(minimum = 1, maximum = 500, default = 50)] // MAX_PAGE
    limit: Option<u32>,
}

/// A page of the inbox.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InboxPage {
    /// Messages, newest first.
    pub messages: Vec<InboxMessage>,
    /// Pass as `cursor` for older messages; absent on the last page.
    pub next_cursor: Option<String>,
    /// On the user's own listing: the stream position read before the page, to pass as
    /// `last_event_id` so no message delivered after the listing is missed (one delivered
    /// meanwhile may be both listed and streamed; its id tells them apart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_id: Option<i64>,
}

/// `GET /v1/users/{user_id}/inbox`.
#[utoipa::path(
    get,
    path = "/v1/users/{user_id}/inbox",
    tag = "inbox",
    summary = "A user's in-app inbox, newest first",
    params(("user_id" = UserId, Path, description = "The user"), InboxQuery),
    responses(
        (status = 200, description = "A page of messages", body = InboxPage),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 422, description = "The user id or a query parameter is invalid (limit, cursor); field names it", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
    ApiQuery(query): ApiQuery<InboxQuery>,
) -> Result<Json<InboxPage>, ApiError> {
    let user_id = UserId::parse(&raw_id)?;
    Ok(Json(page(&state, &tenant, &user_id, &query).await?))
}

/// `GET /v1/inbox`: the token's user's own listing.
#[utoipa::path(
    get,
    path = "/v1/inbox",
    tag = "inbox",
    summary = "The token's user's own inbox, newest first, with the event id to stream from",
    security(("inbox_token" = [])),
    params(InboxQuery),
    responses(
        (status = 200, description = "A page of messages with last_event_id", body = InboxPage),
        (status = 401, description = "No inbox token, or one that is expired or revoked (code unauthorized)", body = ErrorBody),
        (status = 422, description = "A query parameter is invalid (limit, cursor); field names it", body = ErrorBody),
    )
)]
pub async fn list_own(
    State(state): State<AppState>,
    user: InboxUser,
    ApiQuery(query): ApiQuery<InboxQuery>,
) -> Result<Json<InboxPage>, ApiError> {
    let position = state.store.last_inbox_seq().await?;
    let mut page = page(&state, &user.tenant_id, &user.user_id, &query).await?;
    page.last_event_id = Some(position);
    Ok(Json(page))
}

async fn page(
    state: &AppState,
    tenant: &TenantId,
    user_id: &UserId,
    query: &InboxQuery,
) -> Result<InboxPage, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::InvalidField {
            field: "limit".into(),
            message: format!("limit must be between 1 and {MAX_PAGE}"),
        });
    }
    let before = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let messages = state
        .store
        .list_inbox(tenant, user_id, before.as_ref(), limit)
        .await?;
    let next_cursor = (messages.len() == limit as usize)
        .then(|| messages.last().map(encode_cursor))
        .flatten();
    Ok(InboxPage {
        messages,
        next_cursor,
        last_event_id: None,
    })
}

fn encode_cursor(m: &InboxMessage) -> String {
    cursor::encode(&format!("{}:{}", m.created_at_ms, m.id))
}

fn decode_cursor(raw: &str) -> Result<InboxCursor, ApiError> {
    cursor::decode(raw, |text| {
        let (at, id) = text.split_once(':')?;
        Some(InboxCursor {
            created_at_ms: at.parse().ok()?,
            id: InstanceId::parse(id).ok()?,
        })
    })
}

/// Body of `POST /v1/users/{user_id}/inbox-token` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = InboxTokenRequest)]
pub struct TokenRequest {
    /// Lifetime in seconds: by default `inbox.token_ttl_seconds` (24 h), at most
    /// `inbox.max_token_ttl_seconds` (30 days by default; a longer one is a 422).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub ttl_seconds: Option<u64>,
}

/// A token issued for one user's device.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = InboxToken)]
pub struct TokenResponse {
    /// The bearer token; shown once.
    pub token: String,
    /// Its public name, for `DELETE /v1/users/{user_id}/inbox-tokens/{token_id}`.
    pub token_id: String,
    /// The user it opens.
    pub user_id: UserId,
    /// When it stops working.
    #[schema(value_type = i64)]
    pub expires_at_ms: UnixMillis,
}

/// `POST /v1/users/{user_id}/inbox-token`: 201 with a token for an existing user.
#[utoipa::path(
    post,
    path = "/v1/users/{user_id}/inbox-token",
    tag = "inbox",
    summary = "Issue a token that opens this user's inbox only (hand it to their device); stored hashed, expires, revocable",
    description = "The body is optional.",
    params(("user_id" = UserId, Path, description = "The user")),
    request_body(content = Option<TokenRequest>, description = "Optional"),
    responses(
        (status = 201, description = "Issued; the token is shown only here", body = TokenResponse),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 422, description = "The user id is invalid, or ttl_seconds is out of range or the body malformed (field ttl_seconds)", body = ErrorBody),
    )
)]
pub async fn issue_token(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let user_id = UserId::parse(&raw_id)?;
    let request: TokenRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TokenRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidField {
            field: "ttl_seconds".into(),
            message: format!("expected {{\"ttl_seconds\": <seconds>}}: {e}"),
        })?
    };
    let config = state.inbox.config();
    let ttl = request.ttl_seconds.unwrap_or(config.token_ttl_seconds);
    if !(1..=config.max_token_ttl_seconds).contains(&ttl) {
        return Err(ApiError::InvalidField {
            field: "ttl_seconds".into(),
            message: format!(
                "ttl_seconds must be between 1 and {}",
                config.max_token_ttl_seconds
            ),
        });
    }
    if state.store.get_user(&tenant, &user_id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no user {user_id}")));
    }
    let ttl_ms = i64::try_from(ttl.saturating_mul(1000)).unwrap_or(i64::MAX);
    let issued = state
        .store
        .issue_inbox_token(&tenant, &user_id, now_ms().saturating_add(ttl_ms))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenResponse {
            token: issued.token,
            token_id: issued.token_id,
            user_id,
            expires_at_ms: issued.expires_at_ms,
        }),
    ))
}

/// `DELETE /v1/users/{user_id}/inbox-tokens/{token_id}`: 204; open streams using it close.
#[utoipa::path(
    delete,
    path = "/v1/users/{user_id}/inbox-tokens/{token_id}",
    tag = "inbox",
    summary = "Revoke one inbox token; streams opened with it close (on every API replica)",
    params(("user_id" = UserId, Path, description = "The user"), ("token_id" = String, Path, description = "The token's public name")),
    responses(
        (status = 204, description = "Revoked (or already revoked)"),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 404, description = "The user has no such token", body = ErrorBody),
        (status = 422, description = "The user id is invalid", body = ErrorBody),
    )
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path((raw_id, token_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let user_id = UserId::parse(&raw_id)?;
    if !state
        .store
        .revoke_inbox_token(&tenant, &user_id, &token_id)
        .await?
    {
        return Err(ApiError::NotFound(format!(
            "user {user_id} has no inbox token {token_id}"
        )));
    }
    state.inbox.nudge();
    Ok(StatusCode::NO_CONTENT)
}

/// Answer of `DELETE /v1/users/{user_id}/inbox-tokens`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = InboxTokensRevoked)]
pub struct Revoked {
    /// How many live tokens were revoked.
    pub revoked: u64,
}

/// `DELETE /v1/users/{user_id}/inbox-tokens`: revokes every token of the user.
#[utoipa::path(
    delete,
    path = "/v1/users/{user_id}/inbox-tokens",
    tag = "inbox",
    summary = "Revoke every live inbox token of the user; streams opened with them close",
    params(("user_id" = UserId, Path, description = "The user")),
    responses(
        (status = 200, description = "Revoked", body = Revoked),
        (status = 401, description = "No API key, or one that is not valid (code unauthorized)", body = ErrorBody),
        (status = 422, description = "The user id is invalid", body = ErrorBody),
    )
)]
pub async fn revoke_tokens(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
) -> Result<Json<Revoked>, ApiError> {
    let user_id = UserId::parse(&raw_id)?;
    let revoked = state.store.revoke_inbox_tokens(&tenant, &user_id).await?;
    state.inbox.nudge();
    Ok(Json(Revoked { revoked }))
}

/// Answer of `POST /v1/inbox/messages/{message_id}/read`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = InboxReadState)]
pub struct ReadState {
    /// The message.
    pub message_id: InstanceId,
    /// When it was (first) read.
    #[schema(value_type = i64)]
    pub read_at_ms: UnixMillis,
}

/// `POST /v1/inbox/messages/{message_id}/read`: idempotent; 404 if the user has no such message.
#[utoipa::path(
    post,
    path = "/v1/inbox/messages/{message_id}/read",
    tag = "inbox",
    summary = "Mark one message read (idempotent: the first read time is kept)",
    security(("inbox_token" = [])),
    params(("message_id" = InstanceId, Path, description = "The message")),
    responses(
        (status = 200, description = "Read", body = ReadState),
        (status = 401, description = "No inbox token, or one that is expired or revoked (code unauthorized)", body = ErrorBody),
        (status = 404, description = "The user has no such message", body = ErrorBody),
        (status = 429, description = "Over this token's inbox write quota (5 a second sustained, a burst of 20 by default; code rate_limited); retry shortly", body = ErrorBody),
    )
)]
pub async fn read(
    State(state): State<AppState>,
    user: InboxUser,
    Path(raw_id): Path<String>,
) -> Result<Json<ReadState>, ApiError> {
    let not_found = || ApiError::NotFound(format!("no message {raw_id}"));
    let message_id = InstanceId::parse(&raw_id).map_err(|_| not_found())?;
    state.inbox.admit_write(&user.token_id)?;
    let outcome = state
        .store
        .mark_inbox_read(&user.tenant_id, &user.user_id, &message_id, now_ms())
        .await?;
    let read_at_ms = match outcome {
        MarkRead::Marked(at) => {
            state.inbox.nudge();
            at
        }
        MarkRead::AlreadyRead(at) => at,
        MarkRead::NotFound => return Err(not_found()),
    };
    Ok(Json(ReadState {
        message_id,
        read_at_ms,
    }))
}

/// Answer of `POST /v1/inbox/read-all`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = InboxReadAll)]
pub struct ReadAll {
    /// How many messages were unread.
    pub marked: u64,
}

/// `POST /v1/inbox/read-all`.
#[utoipa::path(
    post,
    path = "/v1/inbox/read-all",
    tag = "inbox",
    summary = "Mark every unread message read",
    security(("inbox_token" = [])),
    responses(
        (status = 200, description = "Marked", body = ReadAll),
        (status = 401, description = "No inbox token, or one that is expired or revoked (code unauthorized)", body = ErrorBody),
        (status = 429, description = "Over this token's inbox write quota (5 a second sustained, a burst of 20 by default; code rate_limited); retry shortly", body = ErrorBody),
    )
)]
pub async fn read_all(
    State(state): State<AppState>,
    user: InboxUser,
) -> Result<Json<ReadAll>, ApiError> {
    state.inbox.admit_write(&user.token_id)?;
    let marked = state
        .store
        .mark_all_inbox_read(&user.tenant_id, &user.user_id, now_ms())
        .await?;
    if marked > 0 {
        state.inbox.nudge();
    }
    Ok(Json(ReadAll { marked }))
}

/// Answer of `GET /v1/inbox/unread-count`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = InboxUnread)]
pub struct Unread {
    /// Messages not yet read.
    pub unread: u64,
}

/// `GET /v1/inbox/unread-count`.
#[utoipa::path(
    get,
    path = "/v1/inbox/unread-count",
    tag = "inbox",
    summary = "How many of the user's messages are unread",
    security(("inbox_token" = [])),
    responses(
        (status = 200, description = "The count", body = Unread),
        (status = 401, description = "No inbox token, or one that is expired or revoked (code unauthorized)", body = ErrorBody),
    )
)]
pub async fn unread_count(
    State(state): State<AppState>,
    user: InboxUser,
) -> Result<Json<Unread>, ApiError> {
    let unread = state
        .store
        .unread_inbox_count(&user.tenant_id, &user.user_id)
        .await?;
    Ok(Json(Unread { unread }))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn stream_settings_load_from_fanout_inbox_variables() {
        let env: HashMap<String, String> = [
            ("FANOUT_INBOX__POLL_INTERVAL_MS", "100"),
            ("FANOUT_INBOX__BUFFER", "16"),
            ("FANOUT_INBOX__TOKEN_TTL_SECONDS", "600"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let config: crate::Config = fanout_runtime::config::load(None, &env).unwrap();
        assert_eq!(
            config.inbox,
            InboxConfig {
                poll_interval_ms: 100,
                buffer: 16,
                token_ttl_seconds: 600,
                ..InboxConfig::default()
            }
        );
    }
}
