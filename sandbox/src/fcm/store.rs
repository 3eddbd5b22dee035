//! The bounded in-memory store of accepted FCM messages and the JSON shapes of its read-back.
//!
//! Like the mailbox it keeps the newest [`CAPACITY`] messages, and ids start at 1 and keep
//! increasing across [`Messages::clear`], so an `after_id` cursor never sees an id reused.

use serde::{Deserialize, Serialize};

use crate::arrivals::now_ms;
use crate::arrivals::{Arrival, Arrivals};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FcmMessageCount {
    /// Number of stored messages matching the filter.
    pub count: u64,
}

/// The bounded, shared store of accepted messages.
#[derive(Debug)]
pub(crate) struct Messages(Arrivals<StoredFcmMessage>);

impl Arrival for StoredFcmMessage {
    fn id(&self) -> u64 {
        self.id
    }

    fn token(&self) -> &str {
        &self.token
    }
}

impl Messages {
    /// Creates an empty store that keeps at most `capacity` messages.
    pub fn new(capacity: usize) -> Self {
        Self(Arrivals::new(capacity))
    }

    /// Stores `message` for `token` under the next id and returns its resource name.
    pub fn store(&self, project: &str, token: &str, message: serde_json::Value) -> String {
        self.0
            .push(|id| StoredFcmMessage {
                id,
                name: format!("projects/{project}/messages/{id}"),
                project: project.to_owned(),
                token: token.to_owned(),
                message,
                received_at_ms: now_ms(),
            })
            .name
    }

    /// Returns up to `limit` messages after `after_id`, for `token` when given, oldest first,
    /// and whether more matched.
    pub fn list(
        &self,
        token: Option<&str>,
        after_id: Option<u64>,
        limit: usize,
    ) -> (Vec<StoredFcmMessage>, bool) {
        self.0.list(token, after_id, limit)
    }

    /// Counts stored messages, only those for `token` when given.
    pub fn count(&self, token: Option<&str>) -> u64 {
        self.0.count(token)
    }

    /// Removes every stored message; ids keep increasing afterwards.
    pub fn clear(&self) {
        self.0.clear();
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
        let (page, more) = messages.list(None, None, 10);
        let ids: Vec<_> = page.iter().map(|m| m.id).collect();
        assert_eq!((ids, more), (vec![2, 3], false));
    }

    #[test]
    fn lists_pages_after_cursor_and_ids_survive_clear() {
        let messages = Messages::new(10);
        for token in ["a", "b", "a", "a"] {
            messages.store("p", token, json!({ "token": token }));
        }
        let (page, more) = messages.list(Some("a"), None, 2);
        let ids: Vec<_> = page.iter().map(|m| m.id).collect();
        assert_eq!((ids, more), (vec![1, 3], true));
        let (page, more) = messages.list(Some("a"), Some(3), 2);
        let ids: Vec<_> = page.iter().map(|m| m.id).collect();
        assert_eq!((ids, more), (vec![4], false));

        messages.clear();
        assert_eq!(messages.count(Some("a")), 0);
        assert_eq!(messages.store("p", "a", json!({})), "projects/p/messages/5");
    }
}
