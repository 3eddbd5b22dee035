//! What a simulated push provider keeps of the messages it accepted: bounded (the oldest are
//! evicted), numbered in arrival order, counted per device token, and paged by id.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch: when a simulator (or the mailbox) received something.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// A stored message: its arrival number and the device token it was sent to.
pub(crate) trait Arrival: Clone {
    fn id(&self) -> u64;
    fn token(&self) -> &str;
}

/// The bounded, shared store of one simulator's accepted messages.
#[derive(Debug)]
pub(crate) struct Arrivals<T> {
    capacity: usize,
    inner: Mutex<Inner<T>>,
}

#[derive(Debug)]
struct Inner<T> {
    /// Sorted by id because ids are assigned under the same lock that appends.
    items: VecDeque<T>,
    next_id: u64,
    /// Stored messages per device token, so counting is O(1) at any size.
    per_token: HashMap<String, u64>,
}

impl<T: Arrival> Arrivals<T> {
    /// Creates an empty store that keeps at most `capacity` messages.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                next_id: 1,
                per_token: HashMap::new(),
            }),
        }
    }

    /// Stores the message `build` makes from the next id, evicting the oldest when full.
    pub fn push(&self, build: impl FnOnce(u64) -> T) -> T {
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        while inner.items.len() >= self.capacity {
            let Some(evicted) = inner.items.pop_front() else {
                break;
            };
            if let Some(count) = inner.per_token.get_mut(evicted.token()) {
                *count -= 1;
                if *count == 0 {
                    inner.per_token.remove(evicted.token());
                }
            }
        }
        let item = build(id);
        *inner.per_token.entry(item.token().to_owned()).or_default() += 1;
        inner.items.push_back(item.clone());
        item
    }

    /// Returns up to `limit` messages after `after_id` (for `token` when given), oldest first,
    /// and whether more matched.
    pub fn list(&self, token: Option<&str>, after_id: Option<u64>, limit: usize) -> (Vec<T>, bool) {
        let inner = self.lock();
        let start = after_id.map_or(0, |after| inner.items.partition_point(|m| m.id() <= after));
        let mut matching = inner
            .items
            .range(start..)
            .filter(|m| token.is_none_or(|token| m.token() == token));
        let page: Vec<_> = matching.by_ref().take(limit).cloned().collect();
        let more = matching.next().is_some();
        (page, more)
    }

    /// Counts stored messages, only those for `token` when given.
    pub fn count(&self, token: Option<&str>) -> u64 {
        let inner = self.lock();
        match token {
            Some(token) => inner.per_token.get(token).copied().unwrap_or(0),
            None => inner.items.len() as u64,
        }
    }

    /// Removes every stored message; ids keep increasing afterwards.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.items.clear();
        inner.per_token.clear();
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        // A panic under the lock cannot leave the store inconsistent in a way a test double
        // cares about; keep serving.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
