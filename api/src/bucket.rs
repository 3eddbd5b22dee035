//! Token buckets: `per_second` tokens flow in, at most `burst` are kept, each admitted action
//! takes one. [`Buckets`] keeps one per key (a tenant, a tenant's dry runs, an inbox token) in
//! this process, bounded in memory.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// A rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Quota {
    /// Sustained actions per second.
    pub per_second: u32,
    /// Actions at once.
    pub burst: u32,
}

/// One key's bucket.
#[derive(Debug)]
struct Bucket {
    quota: Quota,
    tokens: f64,
    refilled_at: Instant,
}

impl Bucket {
    fn new(quota: Quota, now: Instant) -> Self {
        Self {
            quota,
            tokens: f64::from(quota.burst),
            refilled_at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        let rate = f64::from(self.quota.per_second);
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(self.quota.burst));
        self.refilled_at = now;
    }

    /// Takes a token, or says how long until one is available.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let rate = f64::from(self.quota.per_second);
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }

    /// Applies a newly read quota; tokens above the new burst are dropped.
    fn requota(&mut self, quota: Quota) {
        self.quota = quota;
        self.tokens = self.tokens.min(f64::from(quota.burst));
    }

    /// Whether the bucket is back to its burst, so forgetting it changes nothing.
    fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= f64::from(self.quota.burst)
    }
}

/// Buckets by key. Cheap to clone; clones share the buckets.
#[derive(Debug)]
pub struct Buckets<K> {
    map: Arc<Mutex<HashMap<K, Bucket>>>,
}

impl<K> Clone for Buckets<K> {
    fn clone(&self) -> Self {
        Self {
            map: Arc::clone(&self.map),
        }
    }
}

impl<K> Default for Buckets<K> {
    fn default() -> Self {
        Self {
            map: Arc::default(),
        }
    }
}

/// Keys kept before full buckets (which hold nothing worth remembering) are swept out.
const SWEEP_ABOVE: usize = 10_000;

impl<K: Hash + Eq + Clone> Buckets<K> {
    /// Takes a token from `key`'s bucket under `quota` (a bucket whose quota changed keeps
    /// what it holds, up to the new burst), or says how long until one is available.
    pub fn take(&self, key: &K, quota: Quota) -> Result<(), Duration> {
        let now = Instant::now();
        // Every update is one assignment, so a poisoned map is still consistent.
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() > SWEEP_ABOVE && !map.contains_key(key) {
            map.retain(|_, b| !b.is_full(now));
        }
        let bucket = map
            .entry(key.clone())
            .or_insert_with(|| Bucket::new(quota, now));
        if bucket.quota != quota {
            bucket.requota(quota);
        }
        bucket.take(now)
    }
}

/// Whole seconds to wait before retrying, at least 1 (what `Retry-After` carries).
pub fn retry_after_seconds(wait: Duration) -> u64 {
    (wait.as_secs_f64().ceil() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(per_second: u32, burst: u32) -> Quota {
        Quota { per_second, burst }
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut bucket = Bucket::new(quota(2, 3), start);
        for _ in 0..3 {
            bucket.take(start).unwrap();
        }
        let wait = bucket.take(start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Refused requests take nothing: half a second later exactly one more fits.
        let later = start + Duration::from_millis(500);
        bucket.take(later).unwrap();
        assert!(bucket.take(later).is_err());
        // Idle time refills to the burst, never past it.
        let idle = later + Duration::from_secs(60);
        for _ in 0..3 {
            bucket.take(idle).unwrap();
        }
        assert!(bucket.take(idle).is_err());
    }

    #[test]
    fn a_lower_quota_drops_the_tokens_above_it() {
        let now = Instant::now();
        let mut bucket = Bucket::new(quota(10, 100), now);
        bucket.requota(quota(1, 2));
        bucket.take(now).unwrap();
        bucket.take(now).unwrap();
        assert_eq!(bucket.take(now).unwrap_err(), Duration::from_secs(1));
    }

    #[test]
    fn keys_have_their_own_buckets() {
        let buckets = Buckets::default();
        let q = quota(1, 2);
        buckets.take(&"a", q).unwrap();
        buckets.take(&"a", q).unwrap();
        assert!(buckets.take(&"a", q).is_err());
        buckets.take(&"b", q).unwrap();
    }
}
