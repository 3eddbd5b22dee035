//! The bounded in-memory store of accepted FCM messages and the JSON shapes of its read-back.
//!
//! Like the mailbox it keeps the newest [`CAPACITY`] messages, and ids start at 1 and keep
//! increasing across a clear, so an `after_id` cursor never sees an id reused.

use serde::{Deserialize, Serialize};

use crate::arrivals::{Arrival, Arrivals, now_ms};
use crate::http::Count;

/// How many FCM messages the sandbox keeps; older ones are evicted first.
pub const CAPACITY: usize = 200_000;

/// One accepted message as `GET /api/fcm/messages` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredFcmMessage {
    /// Sequence number assigned on acceptance; increases monotonically.
    pub id: u64,
    /// The message's resource name, as the send call returned it
    /// (`projects/{project}/messages/{id}`).
    pub name: String,
    /// Project id from the request path.
    pub project: String,
    /// The registration token the message was addressed to.
    pub token: String,
    /// The `message` object exactly as the client sent it.
    pub message: serde_json::Value,
    /// When the message was accepted, in milliseconds since the Unix epoch.
    pub received_at_ms: u64,
}

/// One page of `GET /api/fcm/messages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FcmMessageList {
    /// Matching messages, oldest first.
    pub messages: Vec<StoredFcmMessage>,
    /// Cursor for the next page (`after_id`); `null` when no further message matched.
    pub next_after_id: Option<u64>,
}

/// Body of `GET /api/fcm/messages/count`.
pub type FcmMessageCount = Count;

/// The bounded, shared store of accepted messages.
pub(crate) type Messages = Arrivals<StoredFcmMessage>;

impl Arrival for StoredFcmMessage {
    type Page = FcmMessageList;

    fn id(&self) -> u64 {
        self.id
    }

    fn token(&self) -> &str {
        &self.token
    }

    fn page(messages: Vec<Self>, next_after_id: Option<u64>) -> FcmMessageList {
        FcmMessageList {
            messages,
            next_after_id,
        }
    }
}

impl Messages {
    /// Stores `message` for `token` under the next id and returns its resource name.
    pub fn store(&self, project: &str, token: &str, message: serde_json::Value) -> String {
        self.push(|id| StoredFcmMessage {
            id,
            name: format!("projects/{project}/messages/{id}"),
            project: project.to_owned(),
            token: token.to_owned(),
            message,
            received_at_ms: now_ms(),
        })
        .name
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn evicts_oldest_and_keeps_counts_exact() {
        let messages = Messages::new(2);
        messages.store("p", "a", json!({}));
        messages.store("p", "a", json!({}));
        let name = messages.store("p", "b", json!({}));
        assert_eq!(name, "projects/p/messages/3");
        assert_eq!(messages.count(None), 2);
        assert_eq!(messages.count(Some("a")), 1);
        assert_eq!(messages.count(Some("b")), 1);
        let (page, next) = messages.list(None, None, 10);
        let ids: Vec<_> = page.iter().map(|m| m.id).collect();
        assert_eq!((ids, next), (vec![2, 3], None));
    }

    #[test]
    fn lists_pages_after_cursor_and_ids_survive_clear() {
        let messages = Messages::new(10);
        for token in ["a", "b", "a", "a"] {
            messages.store("p", token, json!({ "token": token }));
        }
        let (page, next) = messages.list(Some("a"), None, 2);
        let ids: Vec<_> = page.iter().map(|m| m.id).collect();
        assert_eq!((ids, next), (vec![1, 3], Some(3)));
        let (page, next) = messages.list(Some("a"), Some(3), 2);
        let ids: Vec<_> = page.iter().map(|m| m.id).collect();
        assert_eq!((ids, next), (vec![4], None));

        messages.clear();
        assert_eq!(messages.count(Some("a")), 0);
        assert_eq!(messages.store("p", "a", json!({})), "projects/p/messages/5");
    }
}
