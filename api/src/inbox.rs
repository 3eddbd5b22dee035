//! `GET /v1/users/{user_id}/inbox`: a user's in-app messages, newest first.

use axum::Json;
use axum::extract::{Path, Query, State};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fanout_domain::inbox::InboxMessage;
use fanout_domain::{InstanceId, UserId};
use fanout_store::inbox::InboxCursor;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

/// Query of the inbox listing.
#[derive(Debug, Deserialize)]
pub struct InboxQuery {
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

/// A page of the inbox.
#[derive(Debug, Serialize, Deserialize)]
pub struct InboxPage {
    /// Messages, newest first.
    pub messages: Vec<InboxMessage>,
    /// Pass as `cursor` for older messages; absent on the last page.
    pub next_cursor: Option<String>,
}

/// `GET /v1/users/{user_id}/inbox`.
pub async fn list(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(raw_id): Path<String>,
    Query(query): Query<InboxQuery>,
) -> Result<Json<InboxPage>, ApiError> {
    let user_id = UserId::parse(&raw_id)?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::InvalidField {
            field: "limit".into(),
            message: "limit must be between 1 and 500".into(),
        });
    }
    let before = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let messages = state
        .store
        .list_inbox(&tenant, &user_id, before.as_ref(), limit)
        .await?;
    let next_cursor = (messages.len() == limit as usize)
        .then(|| messages.last().map(encode_cursor))
        .flatten();
    Ok(Json(InboxPage {
        messages,
        next_cursor,
    }))
}

fn encode_cursor(m: &InboxMessage) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", m.created_at_ms, m.id))
}

fn decode_cursor(cursor: &str) -> Result<InboxCursor, ApiError> {
    let bad = || ApiError::InvalidField {
        field: "cursor".into(),
        message: "cursor is not one this API returned; pass next_cursor unchanged".into(),
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (at, id) = text.split_once(':').ok_or_else(bad)?;
    Ok(InboxCursor {
        created_at_ms: at.parse().map_err(|_| bad())?,
        id: InstanceId::parse(id).map_err(|_| bad())?,
    })
}
