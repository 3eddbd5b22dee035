//! Inbox tokens: a tenant's backend issues one per user (`POST /v1/users/{user_id}/inbox-token`)
//! and hands it to the device, which presents it as `Authorization: Bearer <token>`. Only the
//! stream routes, where browsers' `EventSource` and `WebSocket` cannot set headers, also take
//! it as `?token=` ([`StreamUser`]): a URL ends up in logs and histories, so the routes that can
//! use the header must. The store keeps only its hash, so any API replica verifies it and a
//! revocation reaches them all.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use fanout_domain::{TenantId, UnixMillis, UserId};
use fanout_store::now_ms;
use serde::Deserialize;

use crate::AppState;
use crate::error::ApiError;

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
struct TokenQuery {
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
/// `Authorization` header or, for clients that cannot set one, from `?token=`.
#[derive(Debug, Clone)]
pub struct StreamUser(pub InboxUser);

impl FromRequestParts<AppState> for StreamUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = match crate::auth::bearer(parts) {
            Some(token) => token.to_owned(),
            None => Query::<TokenQuery>::try_from_uri(&parts.uri)
                .ok()
                .and_then(|q| q.0.token)
                .filter(|t| !t.is_empty())
                .ok_or(ApiError::Unauthorized)?,
        };
        verify(state, &token).await.map(StreamUser)
    }
}

async fn verify(state: &AppState, token: &str) -> Result<InboxUser, ApiError> {
    let grant = state
        .store
        .verify_inbox_token(token, now_ms())
        .await?
        .ok_or(ApiError::Unauthorized)?;
    Ok(InboxUser {
        tenant_id: grant.tenant_id,
        user_id: grant.user_id,
        token_id: grant.token_id,
        expires_at_ms: grant.expires_at_ms,
    })
}
