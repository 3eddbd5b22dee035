//! One poller per API process, fanning inbox events out to the streams open on it.
//!
//! The worker writes inbox rows from another process, so the API learns of them by tailing the
//! store's event log: one query per tick for the whole process however many clients are
//! connected, then message content only for users with an open stream. Each stream has a
//! bounded buffer; a client too slow to drain it is disconnected (its buffer is closed) and
//! resumes by event id, rather than being buffered for without limit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use fanout_domain::{TenantId, UserId};
use fanout_store::inbox::{InboxChange, InboxEvent, InboxLogEntry};
use fanout_store::{Store, StoreError};
use tokio::sync::{Notify, OnceCell, mpsc};

use super::InboxConfig;
use crate::bucket::{Buckets, Quota, retry_after_seconds};
use crate::error::ApiError;

type Key = (TenantId, UserId);

/// Why a stream could not subscribe.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The user or the tenant has as many streams open on this process as it may.
    #[error(
        "this {scope} already has {limit} inbox streams open here, the most allowed; close one first"
    )]
    TooMany {
        /// `user` or `tenant`.
        scope: &'static str,
        /// The limit.
        limit: usize,
    },
}

/// The process's inbox event fan-out. Cheap to clone; the poller starts with the first stream
/// and stops once every clone is dropped.
#[derive(Clone)]
pub struct InboxHub {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    config: InboxConfig,
    started: OnceCell<()>,
    subscribers: Mutex<HashMap<Key, Vec<Subscriber>>>,
    next_id: AtomicU64,
    nudge: Arc<Notify>,
    writes: Buckets<String>,
}

struct Subscriber {
    id: u64,
    token_id: String,
    tx: mpsc::Sender<Arc<InboxEvent>>,
}

/// One stream's live feed: every event for its user logged after it subscribed (and possibly
/// a few before), in order. It ends when the client fell too far behind or its token was
/// revoked; dropping it unsubscribes.
pub struct Subscription {
    rx: mpsc::Receiver<Arc<InboxEvent>>,
    key: Key,
    id: u64,
    hub: Weak<Inner>,
}

impl Subscription {
    /// The next live event, or `None` once the hub has closed this feed.
    pub async fn recv(&mut self) -> Option<Arc<InboxEvent>> {
        self.rx.recv().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        fanout_telemetry::metrics::INBOX_STREAMS.dec();
        if let Some(hub) = self.hub.upgrade() {
            hub.remove(&self.key, |s| s.id == self.id);
        }
    }
}

impl InboxHub {
    /// A hub over `store`; nothing runs until the first [`InboxHub::subscribe`].
    pub fn new(store: Store, config: InboxConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                config,
                started: OnceCell::new(),
                subscribers: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                nudge: Arc::new(Notify::new()),
                writes: Buckets::default(),
            }),
        }
    }

    /// The configuration streams run with.
    pub fn config(&self) -> &InboxConfig {
        &self.inner.config
    }

    /// Subscribes to a user's live events. Callers subscribe *before* replaying from the store,
    /// so an event committed between the two arrives at least once; they drop what the replay
    /// already sent by its sequence number.
    pub async fn subscribe(
        &self,
        tenant_id: TenantId,
        user_id: UserId,
        token_id: String,
    ) -> Result<Subscription, SubscribeError> {
        // The poller's starting point is read before this subscriber exists, so whatever the
        // subscriber's replay misses (committed after it) is above that point and polled.
        self.inner
            .started
            .get_or_try_init(|| async {
                let cursor = self.inner.store.last_inbox_seq().await?;
                tokio::spawn(poll(
                    Arc::downgrade(&self.inner),
                    self.inner.nudge.clone(),
                    cursor,
                ));
                Ok::<(), StoreError>(())
            })
            .await?;
        let (tx, rx) = mpsc::channel(self.inner.config.buffer.max(1));
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let key = (tenant_id, user_id);
        let mut subscribers = self.inner.lock();
        let config = &self.inner.config;
        let of_user = subscribers.get(&key).map_or(0, Vec::len);
        if of_user >= config.max_streams_per_user {
            return Err(SubscribeError::TooMany {
                scope: "user",
                limit: config.max_streams_per_user,
            });
        }
        // A scan, not a counter: subscribing is rare next to delivering, and the map is the
        // one truth about which streams are open.
        let of_tenant: usize = subscribers
            .iter()
            .filter(|((tenant, _), _)| *tenant == key.0)
            .map(|(_, list)| list.len())
            .sum();
        if of_tenant >= config.max_streams_per_tenant {
            return Err(SubscribeError::TooMany {
                scope: "tenant",
                limit: config.max_streams_per_tenant,
            });
        }
        subscribers
            .entry(key.clone())
            .or_default()
            .push(Subscriber { id, token_id, tx });
        drop(subscribers);
        fanout_telemetry::metrics::INBOX_STREAMS.inc();
        Ok(Subscription {
            rx,
            key,
            id,
            hub: Arc::downgrade(&self.inner),
        })
    }

    /// Takes one of the token's inbox writes (mark read, read all): end users' devices share
    /// the store's writer with every tenant's deliveries, so each token gets a small quota.
    pub fn admit_write(&self, token_id: &str) -> Result<(), ApiError> {
        let config = &self.inner.config;
        let quota = Quota {
            per_second: config.writes_per_second.max(1),
            burst: config.writes_burst.max(1),
        };
        self.inner
            .writes
            .take(&token_id.to_owned(), quota)
            .map_err(|wait| {
                ApiError::TooManyRequests(format!(
                    "over this token's {} inbox writes per second (burst {}); retry in {} s",
                    quota.per_second,
                    quota.burst,
                    retry_after_seconds(wait)
                ))
            })
    }

    /// Polls now rather than at the next tick: this process just wrote an event.
    pub fn nudge(&self) {
        self.inner.nudge.notify_one();
    }

    /// How many streams are subscribed (for tests and metrics).
    pub fn subscribers(&self) -> usize {
        self.inner.lock().values().map(Vec::len).sum()
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Vec<Subscriber>>> {
        // A panic while holding the map cannot leave it inconsistent: every edit is one call.
        self.subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn remove(&self, key: &Key, which: impl Fn(&Subscriber) -> bool) {
        let mut subscribers = self.lock();
        if let Some(list) = subscribers.get_mut(key) {
            list.retain(|s| !which(s));
            if list.is_empty() {
                subscribers.remove(key);
            }
        }
    }

    /// The entries some open stream here is waiting for.
    fn wanted(&self, entries: &[InboxLogEntry]) -> Vec<InboxLogEntry> {
        let subscribers = self.lock();
        entries
            .iter()
            .filter(|e| subscribers.contains_key(&(e.tenant_id.clone(), e.user_id.clone())))
            .cloned()
            .collect()
    }

    fn deliver(&self, event: InboxEvent) {
        let key = (event.tenant_id.clone(), event.user_id.clone());
        let mut subscribers = self.lock();
        let Some(list) = subscribers.get_mut(&key) else {
            return;
        };
        if let InboxChange::TokenRevoked { token_id } = &event.change {
            // Dropping the sender ends the stream once it has drained what it already holds.
            list.retain(|s| &s.token_id != token_id);
        } else {
            let event = Arc::new(event);
            list.retain(|s| match s.tx.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::info!(
                        tenant = %key.0,
                        user = %key.1,
                        "inbox stream too slow, disconnecting it to resume by event id"
                    );
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        }
        if list.is_empty() {
            subscribers.remove(&key);
        }
    }
}

/// Tails the event log from `cursor` until the hub is gone.
async fn poll(hub: Weak<Inner>, nudge: Arc<Notify>, mut cursor: i64) {
    loop {
        let Some(inner) = hub.upgrade() else {
            return;
        };
        let interval = Duration::from_millis(inner.config.poll_interval_ms.max(1));
        match poll_once(&inner, cursor).await {
            Ok(next) => cursor = next,
            // The cursor stays, so the next tick retries the same events: none is lost.
            Err(e) => tracing::warn!(error = %e, cursor, "inbox poll failed"),
        }
        drop(inner);
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = nudge.notified() => {}
        }
    }
}

/// Delivers every event after `cursor` and returns the new cursor.
async fn poll_once(inner: &Inner, mut cursor: i64) -> Result<i64, StoreError> {
    let batch = inner.config.poll_batch.max(1);
    loop {
        let entries = inner.store.inbox_log_after(cursor, batch).await?;
        let Some(last) = entries.last() else {
            return Ok(cursor);
        };
        let last = last.seq;
        let wanted = inner.wanted(&entries);
        if !wanted.is_empty() {
            for event in inner.store.resolve_inbox_events(&wanted).await? {
                inner.deliver(event);
            }
        }
        cursor = last;
        if entries.len() < batch as usize {
            return Ok(cursor);
        }
    }
}

#[cfg(test)]
mod tests {
    use fanout_domain::config::StoreConfig;

    use super::*;

    async fn hub(buffer: usize) -> InboxHub {
        // Each test its own file: two tests can start within the same millisecond.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "fanout-hub-test-{}-{}-{}",
            std::process::id(),
            fanout_store::now_ms(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let store = Store::connect(&StoreConfig {
            url: format!("sqlite://{}/db.sqlite?mode=rwc", dir.display()),
            max_connections: Some(2),
        })
        .await
        .unwrap();
        InboxHub::new(
            store,
            InboxConfig {
                buffer,
                // Long enough that the poller stays out of the way: events come from deliver().
                poll_interval_ms: 3_600_000,
                ..InboxConfig::default()
            },
        )
    }

    fn event(seq: i64, user: &UserId, change: InboxChange) -> InboxEvent {
        InboxEvent {
            seq,
            tenant_id: TenantId::parse("t").unwrap(),
            user_id: user.clone(),
            change,
        }
    }

    fn read_all(seq: i64, user: &UserId) -> InboxEvent {
        event(seq, user, InboxChange::ReadAll { read_at_ms: seq })
    }

    #[tokio::test]
    async fn a_client_that_falls_behind_its_buffer_is_cut_off_and_others_are_not() {
        let hub = hub(2).await;
        let t = TenantId::parse("t").unwrap();
        let u = UserId::parse("u").unwrap();
        let mut slow = hub
            .subscribe(t.clone(), u.clone(), "a".into())
            .await
            .unwrap();
        let mut fast = hub
            .subscribe(t.clone(), u.clone(), "b".into())
            .await
            .unwrap();
        for seq in 1..=2 {
            hub.inner.deliver(read_all(seq, &u));
            assert_eq!(fast.recv().await.unwrap().seq, seq);
        }
        hub.inner.deliver(read_all(3, &u));
        assert_eq!(fast.recv().await.unwrap().seq, 3);
        // The slow one drains what it was given, then its feed ends: it reconnects from 2.
        assert_eq!(slow.recv().await.unwrap().seq, 1);
        assert_eq!(slow.recv().await.unwrap().seq, 2);
        assert!(slow.recv().await.is_none());
        assert_eq!(hub.subscribers(), 1);
        drop(fast);
        assert_eq!(hub.subscribers(), 0);
    }

    #[tokio::test]
    async fn a_revoked_token_closes_only_its_own_streams() {
        let hub = hub(8).await;
        let t = TenantId::parse("t").unwrap();
        let u = UserId::parse("u").unwrap();
        let mut revoked = hub
            .subscribe(t.clone(), u.clone(), "a".into())
            .await
            .unwrap();
        let mut kept = hub
            .subscribe(t.clone(), u.clone(), "b".into())
            .await
            .unwrap();
        let other = UserId::parse("v").unwrap();
        let mut elsewhere = hub
            .subscribe(t.clone(), other.clone(), "c".into())
            .await
            .unwrap();
        hub.inner.deliver(event(
            1,
            &u,
            InboxChange::TokenRevoked {
                token_id: "a".into(),
            },
        ));
        hub.inner.deliver(read_all(2, &u));
        hub.inner.deliver(read_all(3, &other));
        assert!(revoked.recv().await.is_none());
        assert_eq!(kept.recv().await.unwrap().seq, 2);
        assert_eq!(elsewhere.recv().await.unwrap().seq, 3);
    }
}
