//! The in-app inbox.

use serde::{Deserialize, Serialize};

use crate::{InstanceId, RequestId, UnixMillis, UserId};

/// One message in a user's in-app inbox. Its id is the delivery instance id, so a retried
/// delivery upserts instead of duplicating.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InboxMessage {
    /// The delivery instance (and message) id.
    pub id: InstanceId,
    /// The owner.
    pub user_id: UserId,
    /// The request that produced it.
    pub request_id: RequestId,
    /// Rendered title.
    pub title: String,
    /// Rendered body.
    pub body: String,
    /// Where the client goes when the message is opened (the template's rendered
    /// `in_app.action_url`).
    #[serde(default)]
    pub action_url: Option<String>,
    /// The template's rendered `in_app.payload`, for clients that build their own UI. Messages
    /// written before payloads existed hold the request's whole `data` here. At most
    /// 4096 bytes (`limits::MAX_INBOX_PAYLOAD_BYTES`) once rendered.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// When it was delivered.
    #[schema(value_type = i64)]
    pub created_at_ms: UnixMillis,
    /// When the user read it.
    #[schema(value_type = Option<i64>)]
    pub read_at_ms: Option<UnixMillis>,
}
