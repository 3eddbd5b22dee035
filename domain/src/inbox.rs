//! The in-app inbox.

use serde::{Deserialize, Serialize};

use crate::{InstanceId, RequestId, UnixMillis, UserId};

/// One message in a user's in-app inbox. Its id is the delivery instance id, so a retried
/// delivery upserts instead of duplicating.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// The request's template variables, for clients that render their own UI.
    pub data: serde_json::Value,
    /// When it was delivered.
    pub created_at_ms: UnixMillis,
    /// When the user read it.
    pub read_at_ms: Option<UnixMillis>,
}
