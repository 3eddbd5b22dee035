//! What a simulated push provider keeps of the messages it accepted: bounded (the oldest are
//! evicted), numbered in arrival order, counted per device token, paged by id, and read back
//! over HTTP ([`routes`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::Sandbox;
use crate::http::{ApiResult, Count, page_limit};

/// Milliseconds since the Unix epoch (`fanout_runtime::now_ms`), unsigned as the sandbox's
/// read-back APIs give them: when a simulator (or the mailbox) received something.
pub(crate) fn now_ms() -> u64 {
    fanout_runtime::now_ms().unsigned_abs()
}

/// A stored message: its arrival number and the device token it was sent to.
pub(crate) trait Arrival: Clone {
    /// Body of one page of the store's listing.
    type Page: Serialize;

    fn id(&self) -> u64;
    fn token(&self) -> &str;

    /// Makes the body of one page from its messages and the cursor to the next page.
    fn page(items: Vec<Self>, next_after_id: Option<u64>) -> Self::Page;
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
    /// and the `after_id` of the next page when more matched.
    pub fn list(
        &self,
        token: Option<&str>,
        after_id: Option<u64>,
        limit: usize,
    ) -> (Vec<T>, Option<u64>) {
        let inner = self.lock();
        let start = after_id.map_or(0, |after| inner.items.partition_point(|m| m.id() <= after));
        let mut matching = inner
            .items
            .range(start..)
            .filter(|m| token.is_none_or(|token| m.token() == token));
        let page: Vec<_> = matching.by_ref().take(limit).cloned().collect();
        let next_after_id = match (matching.next(), page.last()) {
            (Some(_), Some(last)) => Some(last.id()),
            _ => None,
        };
        (page, next_after_id)
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
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Query of a listing: `?token=&after_id=&limit=`.
#[derive(Debug, Deserialize)]
struct ListQuery {
    token: Option<String>,
    after_id: Option<u64>,
    limit: Option<usize>,
}

/// Query of a count: `?token=`.
#[derive(Debug, Deserialize)]
struct CountQuery {
    token: Option<String>,
}

/// The read-back routes of one store, with `store` finding it in the sandbox: `GET {path}`
/// lists (oldest first, paged by `after_id`), `DELETE {path}` removes all, and
/// `GET {path}/count` counts; `token` filters the listing and the count.
pub(crate) fn routes<T>(path: &str, store: fn(&Sandbox) -> &Arrivals<T>) -> Router<Arc<Sandbox>>
where
    T: Arrival + Send + Sync + 'static,
{
    let list = move |State(sandbox): State<Arc<Sandbox>>,
                     query: Result<Query<ListQuery>, QueryRejection>| async move {
        let Query(query) = query?;
        let limit = page_limit(query.limit);
        let (page, next_after_id) =
            store(&sandbox).list(query.token.as_deref(), query.after_id, limit);
        ApiResult::Ok(Json(T::page(page, next_after_id)))
    };
    let count = move |State(sandbox): State<Arc<Sandbox>>,
                      query: Result<Query<CountQuery>, QueryRejection>| async move {
        let Query(query) = query?;
        let count = store(&sandbox).count(query.token.as_deref());
        ApiResult::Ok(Json(Count { count }))
    };
    let clear = move |State(sandbox): State<Arc<Sandbox>>| async move {
        store(&sandbox).clear();
        StatusCode::NO_CONTENT
    };
    Router::new()
        .route(path, get(list).delete(clear))
        .route(&format!("{path}/count"), get(count))
}
