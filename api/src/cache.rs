//! A short-lived cache for reads that every request repeats and that may lag their source a
//! little: [`TtlCache`].

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// A map whose entries are reused for `ttl`, then read again from their source. Cheap to
/// clone; clones share the entries.
///
/// An entry is dropped by [`TtlCache::invalidate`] (or [`TtlCache::invalidate_where`]) when its
/// source changes, and a load that began before an invalidation does not store its (possibly
/// stale) answer, so once `invalidate` returns no later lookup sees the old value. The cache
/// holds at most `capacity` entries: when it is full, expired ones are swept, and if none
/// were, answers are served without being kept.
pub struct TtlCache<K, V> {
    ttl: Duration,
    capacity: usize,
    inner: Arc<Mutex<Entries<K, V>>>,
}

struct Entries<K, V> {
    map: HashMap<K, (V, Instant)>,
    /// Counts invalidations, so a load can tell that one happened while it ran.
    invalidations: u64,
}

impl<K, V> Clone for TtlCache<K, V> {
    fn clone(&self) -> Self {
        Self {
            ttl: self.ttl,
            capacity: self.capacity,
            inner: self.inner.clone(),
        }
    }
}

impl<K, V> TtlCache<K, V> {
    fn lock(&self) -> MutexGuard<'_, Entries<K, V>> {
        // Every update is a single map operation, so a panic elsewhere while holding the lock
        // cannot leave the map half-changed.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K, V> fmt::Debug for TtlCache<K, V> {
    // Keys may be credentials: show the shape only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TtlCache")
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .field("len", &self.lock().map.len())
            .finish()
    }
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    /// An empty cache.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            inner: Arc::new(Mutex::new(Entries {
                map: HashMap::new(),
                invalidations: 0,
            })),
        }
    }

    /// The cached value, if it is younger than the ttl.
    pub fn get(&self, key: &K) -> Option<V> {
        self.get_at(key, Instant::now())
    }

    fn get_at(&self, key: &K, now: Instant) -> Option<V> {
        let entries = self.lock();
        let (value, at) = entries.map.get(key)?;
        (now.saturating_duration_since(*at) < self.ttl).then(|| value.clone())
    }

    /// The cached value, or `load`'s answer, which is kept.
    pub async fn get_or_load<E, F, Fut>(&self, key: &K, load: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        if let Some(value) = self.get(key) {
            return Ok(value);
        }
        let invalidations = self.lock().invalidations;
        let value = load().await?;
        self.keep(key, &value, invalidations, Instant::now());
        Ok(value)
    }

    /// As [`Self::get_or_load`], but only a found value is kept: a miss is read again next
    /// time, so an item created just after a miss is seen at once, and lookups of things that
    /// do not exist cannot fill the cache.
    pub async fn get_or_load_found<E, F, Fut>(&self, key: &K, load: F) -> Result<Option<V>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
    {
        if let Some(value) = self.get(key) {
            return Ok(Some(value));
        }
        let invalidations = self.lock().invalidations;
        let found = load().await?;
        if let Some(value) = &found {
            self.keep(key, value, invalidations, Instant::now());
        }
        Ok(found)
    }

    /// Drops the key's entry: its source changed.
    pub fn invalidate(&self, key: &K) {
        let mut entries = self.lock();
        entries.map.remove(key);
        entries.invalidations += 1;
    }

    /// Drops every entry `stale` picks: their source changed.
    pub fn invalidate_where(&self, mut stale: impl FnMut(&K, &V) -> bool) {
        let mut entries = self.lock();
        entries.map.retain(|k, (v, _)| !stale(k, v));
        entries.invalidations += 1;
    }

    fn keep(&self, key: &K, value: &V, invalidations_before_load: u64, now: Instant) {
        let mut entries = self.lock();
        // Invalidated while loading: the answer may predate the change.
        if entries.invalidations != invalidations_before_load {
            return;
        }
        if entries.map.len() >= self.capacity && !entries.map.contains_key(key) {
            let ttl = self.ttl;
            entries
                .map
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < ttl);
            if entries.map.len() >= self.capacity {
                return;
            }
        }
        entries.map.insert(key.clone(), (value.clone(), now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> TtlCache<&'static str, u32> {
        TtlCache::new(Duration::from_secs(1), 3)
    }

    /// Loads `value` for `key` through the cache.
    async fn load(cache: &TtlCache<&'static str, u32>, key: &'static str, value: u32) -> u32 {
        cache
            .get_or_load(&key, || async { Ok::<_, ()>(value) })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn an_answer_is_reused_until_the_ttl_has_passed() {
        let cache = cache();
        let loaded_at = Instant::now();
        assert_eq!(load(&cache, "a", 1).await, 1);
        assert_eq!(load(&cache, "a", 2).await, 1);
        let ttl = Duration::from_secs(1);
        let almost = loaded_at + ttl - Duration::from_millis(1);
        assert_eq!(cache.get_at(&"a", almost), Some(1));
        // Stored after `loaded_at`, so expired by a ttl after now at the latest.
        assert_eq!(cache.get_at(&"a", Instant::now() + ttl), None);
    }

    #[tokio::test]
    async fn an_invalidated_entry_is_read_again_at_once() {
        let cache = cache();
        load(&cache, "a", 1).await;
        load(&cache, "b", 1).await;
        cache.invalidate(&"a");
        assert_eq!(load(&cache, "a", 2).await, 2);
        assert_eq!(load(&cache, "b", 2).await, 1);
        cache.invalidate_where(|k, _| *k == "b");
        assert_eq!(load(&cache, "b", 3).await, 3);
        assert_eq!(load(&cache, "a", 3).await, 2);
    }

    #[tokio::test]
    async fn a_load_that_overlaps_an_invalidation_is_not_kept() {
        let cache = cache();
        let answer = cache
            .get_or_load(&"a", || async {
                // The source changes, and is invalidated, while this read is in flight.
                cache.invalidate(&"a");
                Ok::<_, ()>(1)
            })
            .await;
        assert_eq!(answer, Ok(1));
        assert_eq!(cache.get(&"a"), None);
        assert_eq!(load(&cache, "a", 2).await, 2);
        assert_eq!(cache.get(&"a"), Some(2));
    }

    #[tokio::test]
    async fn misses_are_not_kept_when_only_found_values_are() {
        let cache = cache();
        let missing = cache
            .get_or_load_found(&"a", || async { Ok::<_, ()>(None) })
            .await;
        assert_eq!(missing, Ok(None));
        let found = cache
            .get_or_load_found(&"a", || async { Ok::<_, ()>(Some(7)) })
            .await;
        assert_eq!(found, Ok(Some(7)));
        assert_eq!(cache.get(&"a"), Some(7));
        // A failed load keeps nothing either.
        cache.invalidate(&"a");
        let failed = cache
            .get_or_load(&"a", || async { Err::<u32, _>("down") })
            .await;
        assert_eq!(failed, Err("down"));
        assert_eq!(cache.get(&"a"), None);
    }

    #[test]
    fn a_full_cache_sweeps_expired_entries_and_otherwise_stops_keeping() {
        let cache = cache();
        let now = Instant::now();
        for key in ["a", "b", "c"] {
            cache.keep(&key, &1, 0, now);
        }
        // Full of fresh entries: a fourth answer is not kept, an existing key is refreshed.
        cache.keep(&"d", &1, 0, now);
        assert_eq!(cache.get_at(&"d", now), None);
        cache.keep(&"a", &2, 0, now);
        assert_eq!(cache.get_at(&"a", now), Some(2));
        // Once they have expired, the next insert sweeps them out.
        let later = now + Duration::from_secs(1);
        cache.keep(&"d", &1, 0, later);
        assert_eq!(cache.get_at(&"d", later), Some(1));
        assert_eq!(cache.lock().map.len(), 1);
    }
}
