//! The in-memory store of accepted notifications and the JSON shapes the read-back API returns.
//!
//! Like the mailbox, it keeps the newest [`CAPACITY`] notifications and evicts the oldest
//! beyond that; ids start at 1 and keep increasing across a clear.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::arrivals::{Arrival, Arrivals};
use crate::http::Count;

/// How many notifications the simulator keeps; older ones are evicted first.
pub const CAPACITY: usize = 200_000;

/// How a request was authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Auth {
    /// A provider token (JWT).
    Token {
        /// The token's `kid`.
        key_id: String,
        /// The token's `iss`.
        team_id: String,
        /// The token's `iat`, in seconds since the Unix epoch: equal values mean the client
        /// reused one token.
        issued_at: u64,
    },
    /// The client certificate the sandbox CA issued, without a provider token.
    Certificate,
}

/// One accepted notification as the read-back API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Sequence number assigned on acceptance; increases monotonically.
    pub id: u64,
    /// Device token from the request path.
    pub token: String,
    /// The `apns-id` answered: the client's, or one the simulator generated.
    pub apns_id: String,
    /// `apns-topic`, or the certificate's bundle id when a certificate-authenticated request
    /// named none.
    pub topic: String,
    /// `apns-push-type`, if sent.
    pub push_type: Option<String>,
    /// `apns-priority`, if sent.
    pub priority: Option<u8>,
    /// `apns-expiration` (seconds since the Unix epoch; 0 means deliver once or drop), if sent.
    pub expiration: Option<u64>,
    /// `apns-collapse-id`, if sent.
    pub collapse_id: Option<String>,
    /// The JSON payload.
    pub payload: serde_json::Value,
    /// How the request was authenticated.
    pub auth: Auth,
    /// Client socket address, e.g. `127.0.0.1:50412`; equal values mean one connection.
    pub peer: String,
    /// When the notification was accepted, in milliseconds since the Unix epoch.
    pub received_at_ms: u64,
}

/// One page of `GET /api/apns/notifications`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationList {
    /// Matching notifications, oldest first.
    pub notifications: Vec<Notification>,
    /// Cursor for the next page (`after_id`); `null` when no further notification matched.
    pub next_after_id: Option<u64>,
}

/// Body of `GET /api/apns/notifications/count`.
pub type NotificationCount = Count;

/// The bounded, shared notification store.
pub(crate) type Notifications = Arrivals<Arc<Notification>>;

impl Arrival for Arc<Notification> {
    type Page = NotificationList;

    fn id(&self) -> u64 {
        self.as_ref().id
    }

    fn token(&self) -> &str {
        &self.as_ref().token
    }

    fn page(items: Vec<Self>, next_after_id: Option<u64>) -> NotificationList {
        NotificationList {
            notifications: items.iter().map(|n| n.as_ref().clone()).collect(),
            next_after_id,
        }
    }
}

impl Default for Notifications {
    fn default() -> Self {
        Self::new(CAPACITY)
    }
}

impl Notifications {
    /// Stores `notification` under the next id, which it returns.
    pub fn store(&self, mut notification: Notification) -> u64 {
        self.push(|id| {
            notification.id = id;
            Arc::new(notification)
        })
        .id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(token: &str) -> Notification {
        Notification {
            id: 0,
            token: token.to_owned(),
            apns_id: "00000000-0000-0000-0000-000000000000".to_owned(),
            topic: "com.example".to_owned(),
            push_type: None,
            priority: None,
            expiration: None,
            collapse_id: None,
            payload: serde_json::json!({"aps": {}}),
            auth: Auth::Certificate,
            peer: "127.0.0.1:1".to_owned(),
            received_at_ms: 0,
        }
    }

    #[test]
    fn keeps_the_newest_and_counts_per_token() {
        let store = Notifications::new(2);
        store.store(notification("a"));
        store.store(notification("b"));
        let id = store.store(notification("a"));
        assert_eq!(id, 3);
        assert_eq!((store.count(None), store.count(Some("a"))), (2, 1));
        assert_eq!(store.count(Some("b")), 1);
        let (page, next) = store.list(None, None, 10);
        assert_eq!(page.iter().map(|n| n.id).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(next, None);
    }

    #[test]
    fn pages_by_cursor_and_token_and_ids_survive_clear() {
        let store = Notifications::new(10);
        for token in ["a", "b", "a", "a"] {
            store.store(notification(token));
        }
        let (page, next) = store.list(Some("a"), None, 2);
        assert_eq!(page.iter().map(|n| n.id).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(next, Some(3));
        let (page, next) = store.list(Some("a"), Some(3), 2);
        assert_eq!(page.iter().map(|n| n.id).collect::<Vec<_>>(), [4]);
        assert_eq!(next, None);
        store.clear();
        assert_eq!(store.count(Some("a")), 0);
        assert_eq!(store.store(notification("a")), 5);
    }
}
