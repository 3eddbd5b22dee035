//! Shared token buckets for delivery rate limits: global, per provider, per tenant and per
//! template, one row each in `rate_limits`.
//!
//! Why the store: it is already shared by every worker and API replica (SQLite on one machine,
//! PostgreSQL beyond), so no new service is needed, and the load is bounded by leasing: a
//! worker takes up to a tenth of a second of tokens per write ([`BucketState::take`]) and
//! spends them locally, so a bucket sees about ten writes per second per active worker
//! whatever its rate, and all workers together never exceed the rate by more than one lease
//! each. A lease is a compare-and-set on the row's `version`, portable across backends and
//! holding no lock; quota changes and provider push-back, which must not be lost to a stream of
//! leases, write under the row's lock instead (and make the leases' compare-and-set retry).
//!
//! Provider buckets also carry the provider's feedback (AIMD): [`Store::throttle_bucket`]
//! halves the rate in force (at most once a second, down to a floor) when a provider throttles
//! or fails, and leases raise it back by a tenth of the ceiling per second once the provider
//! has been quiet for [`RECOVER_AFTER_MS`]. Because the rate lives in the row, every worker
//! slows down together.

use std::time::Duration;

use fanout_domain::{TemplateId, TenantId, UnixMillis};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, now_ms};

/// The bucket every delivery draws from.
pub const GLOBAL_KEY: &str = "global";
/// At most one decrease per this many milliseconds: a burst of concurrent 429s is one signal.
pub const DECREASE_EVERY_MS: i64 = 1_000;
/// The rate starts recovering once the provider has not pushed back for this long.
pub const RECOVER_AFTER_MS: i64 = 2_000;
/// Recovery raises the rate at most once per this many milliseconds.
pub const RAISE_EVERY_MS: i64 = 1_000;
/// Compare-and-set attempts before a lease gives up for this round (and the caller waits).
const CAS_ATTEMPTS: usize = 8;

/// The bucket of one provider (`smtp`, `apns`, `fcm`).
pub fn provider_key(provider: &str) -> String {
    format!("provider:{provider}")
}

/// The bucket of one tenant.
pub fn tenant_key(tenant_id: &TenantId) -> String {
    format!("tenant:{tenant_id}")
}

/// The bucket of one template of one tenant.
pub fn template_key(tenant_id: &TenantId, template_id: &TemplateId) -> String {
    format!("template:{tenant_id}:{template_id}")
}

/// One bucket's state, in thousandths of a token. The arithmetic is here, free of I/O, so it
/// is tested with a made-up clock; the store only loads and compare-and-sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketState {
    /// The configured rate, tokens per second.
    pub ceiling_per_second: u32,
    /// The rate in force, thousandths of a token per second (at most the ceiling).
    pub rate_milli: i64,
    /// Tokens left at `refilled_at_ms`, in thousandths.
    pub tokens_milli: i64,
    /// When tokens were last added.
    pub refilled_at_ms: UnixMillis,
    /// When the rate was last lowered.
    pub throttled_at_ms: UnixMillis,
    /// When the rate was last raised.
    pub raised_at_ms: UnixMillis,
}

/// What one lease got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Tokens granted (possibly none).
    pub granted: u32,
    /// With none granted, how long until the next token.
    pub wait: Duration,
    /// The rate in force, thousandths of a token per second.
    pub rate_milli: i64,
}

impl BucketState {
    /// A full bucket at `ceiling_per_second`.
    pub fn new(ceiling_per_second: u32, now: UnixMillis) -> Self {
        let ceiling = ceiling_per_second.max(1);
        let mut state = Self {
            ceiling_per_second: ceiling,
            rate_milli: i64::from(ceiling) * 1000,
            tokens_milli: 0,
            refilled_at_ms: now,
            throttled_at_ms: 0,
            raised_at_ms: 0,
        };
        state.tokens_milli = state.capacity_milli();
        state
    }

    /// The most tokens the bucket holds: a tenth of a second's worth, at least one. Small on
    /// purpose, so a lowered rate is not undone by a saved-up burst.
    pub fn capacity_milli(&self) -> i64 {
        (self.rate_milli / 10).max(1_000)
    }

    /// The lowest rate provider feedback can push the bucket to.
    pub fn floor_milli(&self) -> i64 {
        (i64::from(self.ceiling_per_second) * 1000 / 32).max(1_000)
    }

    fn refill(&mut self, now: UnixMillis) {
        let elapsed = now - self.refilled_at_ms;
        if elapsed > 0 {
            let gained = elapsed.saturating_mul(self.rate_milli) / 1000;
            self.tokens_milli =
                (self.tokens_milli.saturating_add(gained)).min(self.capacity_milli());
            self.refilled_at_ms = now;
        }
    }

    /// Additive increase: after a quiet spell, a tenth of the ceiling per second back up.
    fn recover(&mut self, now: UnixMillis) {
        let ceiling = i64::from(self.ceiling_per_second) * 1000;
        if self.rate_milli < ceiling
            && now - self.throttled_at_ms >= RECOVER_AFTER_MS
            && now - self.raised_at_ms >= RAISE_EVERY_MS
        {
            self.rate_milli = (self.rate_milli + (ceiling / 10).max(1_000)).min(ceiling);
            self.raised_at_ms = now;
        }
    }

    /// Leases up to a tenth of a second of tokens (at least one is asked for).
    pub fn take(&mut self, now: UnixMillis) -> Grant {
        self.recover(now);
        self.refill(now);
        let lease = (self.rate_milli / 10_000).max(1);
        let granted = (self.tokens_milli / 1000).min(lease).max(0);
        self.tokens_milli -= granted * 1000;
        let wait = if granted == 0 {
            let missing = 1000 - self.tokens_milli;
            // Round up: waking before the token exists only costs another write.
            let ms = (missing * 1000 + self.rate_milli - 1) / self.rate_milli.max(1);
            Duration::from_millis(u64::try_from(ms.max(1)).unwrap_or(1))
        } else {
            Duration::ZERO
        };
        Grant {
            granted: u32::try_from(granted).unwrap_or(u32::MAX),
            wait,
            rate_milli: self.rate_milli,
        }
    }

    /// Multiplicative decrease after provider push-back; returns whether the rate changed
    /// (it changes at most once per [`DECREASE_EVERY_MS`]).
    pub fn throttle(&mut self, now: UnixMillis) -> bool {
        if now - self.throttled_at_ms < DECREASE_EVERY_MS {
            return false;
        }
        self.refill(now);
        self.throttled_at_ms = now;
        let lowered = (self.rate_milli / 2).max(self.floor_milli());
        if lowered == self.rate_milli {
            return false;
        }
        self.rate_milli = lowered;
        self.tokens_milli = self.tokens_milli.min(self.capacity_milli());
        true
    }

    /// Applies a new configured rate: the rate in force follows it down at once, and up at
    /// once too unless the provider pushed back recently.
    pub fn set_ceiling(&mut self, ceiling_per_second: u32, now: UnixMillis) {
        self.refill(now);
        let ceiling = ceiling_per_second.max(1);
        let recently_throttled = now - self.throttled_at_ms < RECOVER_AFTER_MS;
        let ceiling_milli = i64::from(ceiling) * 1000;
        self.rate_milli = if recently_throttled {
            self.rate_milli.min(ceiling_milli)
        } else {
            ceiling_milli
        };
        self.ceiling_per_second = ceiling;
        self.tokens_milli = self.tokens_milli.min(self.capacity_milli());
    }
}

/// A configured quota as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quota {
    /// The bucket: `tenant:<tenant>` or `template:<tenant>:<template>`.
    pub key: String,
    /// The configured deliveries per second.
    pub per_second: u32,
    /// The rate in force now (below `per_second` only for provider buckets under feedback).
    pub effective_per_second: f64,
    /// When the quota was last written.
    pub updated_at_ms: UnixMillis,
}

const COLUMNS: &str = "ceiling_per_second, rate_milli, tokens_milli, refilled_at_ms, \
                       throttled_at_ms, raised_at_ms, version, updated_at_ms, bucket_key";

fn state_of(row: &AnyRow) -> Result<(BucketState, i64)> {
    let ceiling: i64 = row.try_get("ceiling_per_second")?;
    Ok((
        BucketState {
            ceiling_per_second: u32::try_from(ceiling).unwrap_or(u32::MAX),
            rate_milli: row.try_get("rate_milli")?,
            tokens_milli: row.try_get("tokens_milli")?,
            refilled_at_ms: row.try_get("refilled_at_ms")?,
            throttled_at_ms: row.try_get("throttled_at_ms")?,
            raised_at_ms: row.try_get("raised_at_ms")?,
        },
        row.try_get("version")?,
    ))
}

fn quota_of(row: &AnyRow) -> Result<Quota> {
    let (state, _) = state_of(row)?;
    Ok(Quota {
        key: row.try_get("bucket_key")?,
        per_second: state.ceiling_per_second,
        effective_per_second: state.rate_milli as f64 / 1000.0,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

impl Store {
    /// Reads a bucket and its version on `conn`; `lock` is appended to the `SELECT` (see
    /// [`Store::lock_rows`]).
    async fn load_bucket<'e>(
        conn: impl sqlx::Executor<'e, Database = sqlx::Any>,
        key: &str,
        lock: &str,
    ) -> Result<Option<(BucketState, i64)>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM rate_limits WHERE bucket_key = $1{lock}"
        ))
        .bind(key)
        .fetch_optional(conn)
        .await?;
        row.as_ref().map(state_of).transpose()
    }

    /// Writes `state` on `conn` if the row is still at `version`; returns whether it was.
    async fn swap_bucket<'e>(
        conn: impl sqlx::Executor<'e, Database = sqlx::Any>,
        key: &str,
        version: i64,
        state: &BucketState,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE rate_limits SET ceiling_per_second = $1, rate_milli = $2, tokens_milli = $3,
               refilled_at_ms = $4, throttled_at_ms = $5, raised_at_ms = $6,
               version = version + 1, updated_at_ms = $7
             WHERE bucket_key = $8 AND version = $9",
        )
        .bind(i64::from(state.ceiling_per_second))
        .bind(state.rate_milli)
        .bind(state.tokens_milli)
        .bind(state.refilled_at_ms)
        .bind(state.throttled_at_ms)
        .bind(state.raised_at_ms)
        .bind(now_ms())
        .bind(key)
        .bind(version)
        .execute(conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Creates the bucket on `conn` if it does not exist yet (a concurrent creator wins
    /// harmlessly).
    async fn create_bucket<'e>(
        conn: impl sqlx::Executor<'e, Database = sqlx::Any>,
        key: &str,
        tenant_id: Option<&TenantId>,
        ceiling_per_second: u32,
    ) -> Result<()> {
        let now = now_ms();
        let state = BucketState::new(ceiling_per_second, now);
        sqlx::query(
            "INSERT INTO rate_limits (bucket_key, tenant_id, ceiling_per_second, rate_milli,
               tokens_milli, refilled_at_ms, throttled_at_ms, raised_at_ms, version, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, 0, 0, 0, $7)
             ON CONFLICT (bucket_key) DO NOTHING",
        )
        .bind(key)
        .bind(tenant_id.map(TenantId::as_str))
        .bind(i64::from(state.ceiling_per_second))
        .bind(state.rate_milli)
        .bind(state.tokens_milli)
        .bind(now)
        .bind(now)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Reads, changes and compare-and-sets a bucket, retrying on a concurrent write. Returns
    /// `None` if the bucket does not exist, and the last computed value (unwritten) if every
    /// attempt lost a race. For leases: no lock is held, and a lost round only costs a wait.
    async fn update_bucket<T>(
        &self,
        key: &str,
        mut change: impl FnMut(&mut BucketState, UnixMillis) -> T,
    ) -> Result<Option<(T, bool)>> {
        let mut last = None;
        for _ in 0..CAS_ATTEMPTS {
            let Some((mut state, version)) = Self::load_bucket(self.pool(), key, "").await? else {
                return Ok(None);
            };
            let out = change(&mut state, now_ms());
            if Self::swap_bucket(self.pool(), key, version, &state).await? {
                return Ok(Some((out, true)));
            }
            last = Some(out);
        }
        Ok(last.map(|out| (out, false)))
    }

    /// Reads, changes and writes a bucket in one transaction holding its row, creating it
    /// first (for `create`'s tenant, at `create`'s rate) if asked to. For changes that must
    /// land: under a steady stream of leases every compare-and-set of [`Self::update_bucket`]
    /// can lose, and a quota or a provider's push-back would then be dropped. Leases racing
    /// this lose their own compare-and-set and retry. `None` if the bucket does not exist.
    async fn update_bucket_locked<T>(
        &self,
        key: &str,
        create: Option<(Option<&TenantId>, u32)>,
        change: impl FnOnce(&mut BucketState, UnixMillis) -> T,
    ) -> Result<Option<T>> {
        let (mut tx, _writer) = self.write_tx().await?;
        if let Some((tenant_id, per_second)) = create {
            Self::create_bucket(&mut *tx, key, tenant_id, per_second).await?;
        }
        let Some((mut state, version)) = Self::load_bucket(&mut *tx, key, self.lock_rows()).await?
        else {
            return Ok(None);
        };
        let out = change(&mut state, now_ms());
        // The row is locked (the whole database on SQLite), so the version still matches.
        if !Self::swap_bucket(&mut *tx, key, version, &state).await? {
            return Err(crate::StoreError::Corrupt {
                table: "rate_limits",
                reason: format!("{key} changed under its row lock"),
            });
        }
        tx.commit().await?;
        Ok(Some(out))
    }

    /// Leases tokens from the bucket `key`. With a `ceiling` (global and provider buckets,
    /// configured per worker) the bucket is created on first use and follows the ceiling;
    /// without one (tenant and template quotas, configured through the API) a missing bucket
    /// means no limit and yields `None`.
    pub async fn lease_tokens(&self, key: &str, ceiling: Option<u32>) -> Result<Option<Grant>> {
        let ceiling = ceiling.map(|c| c.max(1));
        let lease = |state: &mut BucketState, now| {
            if let Some(c) = ceiling
                && c != state.ceiling_per_second
            {
                state.set_ceiling(c, now);
            }
            state.take(now)
        };
        let mut leased = self.update_bucket(key, lease).await?;
        if leased.is_none()
            && let Some(ceiling) = ceiling
        {
            // First use of a configured bucket: create it (once, not on every lease).
            Self::create_bucket(self.pool(), key, None, ceiling).await?;
            leased = self.update_bucket(key, lease).await?;
        }
        Ok(leased.map(|(grant, written)| {
            if written {
                grant
            } else {
                // Lost every race: nothing was taken; try again shortly.
                Grant {
                    granted: 0,
                    wait: Duration::from_millis(5),
                    rate_milli: grant.rate_milli,
                }
            }
        }))
    }

    /// Lowers the bucket's rate after provider push-back (see [`BucketState::throttle`]);
    /// returns the rate now in force, in tokens per second, if it was lowered.
    pub async fn throttle_bucket(&self, key: &str) -> Result<Option<f64>> {
        // Locked: push-back comes when workers lease hardest, which is when a compare-and-set
        // would most often lose it.
        let changed = self
            .update_bucket_locked(key, None, |state, now| {
                state.throttle(now).then_some(state.rate_milli)
            })
            .await?;
        Ok(changed.flatten().map(|r| r as f64 / 1000.0))
    }

    /// The bucket's state, if it exists.
    pub async fn bucket(&self, key: &str) -> Result<Option<BucketState>> {
        Ok(Self::load_bucket(self.pool(), key, "")
            .await?
            .map(|(state, _)| state))
    }

    /// Sets a tenant's quota on bucket `key` (see [`tenant_key`], [`template_key`]) to
    /// `per_second`, creating it if needed. Takes effect on the next lease of every worker.
    pub async fn set_quota(&self, tenant_id: &TenantId, key: &str, per_second: u32) -> Result<()> {
        // Created and changed in one transaction, so a concurrent delete cannot slip between.
        self.update_bucket_locked(key, Some((Some(tenant_id), per_second)), |state, now| {
            state.set_ceiling(per_second, now)
        })
        .await?;
        Ok(())
    }

    /// The quota on bucket `key` of this tenant, if one is set.
    pub async fn get_quota(&self, tenant_id: &TenantId, key: &str) -> Result<Option<Quota>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM rate_limits WHERE bucket_key = $1 AND tenant_id = $2"
        ))
        .bind(key)
        .bind(tenant_id.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(quota_of).transpose()
    }

    /// Every quota of the tenant, by key.
    pub async fn list_quotas(&self, tenant_id: &TenantId) -> Result<Vec<Quota>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM rate_limits WHERE tenant_id = $1 ORDER BY bucket_key"
        ))
        .bind(tenant_id.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(quota_of).collect()
    }

    /// Removes the tenant's quota on bucket `key`; returns whether there was one.
    pub async fn delete_quota(&self, tenant_id: &TenantId, key: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM rate_limits WHERE bucket_key = $1 AND tenant_id = $2")
            .bind(key)
            .bind(tenant_id.as_str())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::store;

    use super::*;

    /// Takes from `state` every `step` ms over `span` ms and counts the tokens granted.
    fn granted_over(state: &mut BucketState, start: i64, span: i64, step: i64) -> u64 {
        (0..=span / step)
            .map(|i| u64::from(state.take(start + i * step).granted))
            .sum()
    }

    #[test]
    fn leases_hold_to_the_rate_and_are_a_tenth_of_a_second() {
        let mut b = BucketState::new(100, 0);
        // Full bucket: one lease of a tenth of a second.
        let first = b.take(0);
        assert_eq!(first.granted, 10);
        let empty = b.take(0);
        assert_eq!(empty.granted, 0);
        assert_eq!(empty.wait, Duration::from_millis(10));
        // Over ten simulated seconds, polled every 7 ms: the rate, plus the initial lease.
        let total = granted_over(&mut b, 0, 10_000, 7);
        assert!((995..=1_010).contains(&total), "{total}");
    }

    #[test]
    fn slow_rates_lease_single_tokens_and_say_how_long_to_wait() {
        let mut b = BucketState::new(2, 0);
        assert_eq!(b.take(0).granted, 1);
        let wait = b.take(0);
        assert_eq!((wait.granted, wait.wait), (0, Duration::from_millis(500)));
        assert_eq!(b.take(499).granted, 0);
        assert_eq!(b.take(500).granted, 1);
        // Idle time does not bank more than one token.
        assert_eq!(b.take(60_000).granted, 1);
        assert_eq!(b.take(60_000).granted, 0);
    }

    #[test]
    fn feedback_halves_at_most_once_a_second_down_to_a_floor_and_recovers() {
        let mut b = BucketState::new(320, 0);
        assert!(b.throttle(5_000));
        assert_eq!(b.rate_milli, 160_000);
        // A burst of push-back within the second is one signal.
        assert!(!b.throttle(5_500));
        assert_eq!(b.rate_milli, 160_000);
        for t in 1..10 {
            b.throttle(5_000 + t * 1_000);
        }
        assert_eq!(b.rate_milli, b.floor_milli());
        assert_eq!(b.floor_milli(), 10_000);
        // Quiet for two seconds: a tenth of the ceiling back per second, up to the ceiling.
        let quiet = 14_000 + RECOVER_AFTER_MS;
        b.take(quiet - 1);
        assert_eq!(b.rate_milli, 10_000);
        b.take(quiet);
        assert_eq!(b.rate_milli, 42_000);
        b.take(quiet + 500);
        assert_eq!(b.rate_milli, 42_000);
        for s in 1..20 {
            b.take(quiet + s * 1_000);
        }
        assert_eq!(b.rate_milli, 320_000);
    }

    #[test]
    fn a_new_ceiling_applies_at_once_without_a_saved_burst() {
        let mut b = BucketState::new(1_000, 0);
        b.set_ceiling(5, 10);
        assert_eq!(b.rate_milli, 5_000);
        assert_eq!(b.tokens_milli, 1_000, "at most one token left");
        let total = granted_over(&mut b, 10, 2_000, 10);
        assert!((10..=12).contains(&total), "{total}");
        b.set_ceiling(50, 3_000);
        assert_eq!(b.rate_milli, 50_000);
    }

    #[tokio::test]
    async fn workers_share_a_bucket_through_the_store() {
        let store = store().await;
        let key = provider_key("smtp");
        // Two "workers" leasing concurrently for about a second get about the rate between them.
        let started = std::time::Instant::now();
        let lease = |store: Store, key: String| async move {
            let mut got = 0u32;
            while started.elapsed() < Duration::from_millis(1_000) {
                let grant = store.lease_tokens(&key, Some(50)).await.unwrap().unwrap();
                got += grant.granted;
                tokio::time::sleep(grant.wait.min(Duration::from_millis(20))).await;
            }
            got
        };
        let (a, b) = tokio::join!(
            lease(store.clone(), key.clone()),
            lease(store.clone(), key.clone())
        );
        assert!(a > 0 && b > 0, "both workers got tokens: {a} {b}");
        assert!((45..=60).contains(&(a + b)), "{a} + {b}");

        // Feedback is shared: one throttle lowers the rate every lease sees.
        assert_eq!(store.throttle_bucket(&key).await.unwrap(), Some(25.0));
        let grant = store.lease_tokens(&key, Some(50)).await.unwrap().unwrap();
        assert_eq!(grant.rate_milli, 25_000);
        // An unknown quota bucket means no limit.
        assert_eq!(
            store.lease_tokens("tenant:nobody", None).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn quotas_are_set_listed_changed_and_removed_per_tenant() {
        let store = store().await;
        let a = TenantId::parse("a").unwrap();
        let b = TenantId::parse("b").unwrap();
        let key = template_key(&a, &TemplateId::parse("welcome").unwrap());
        store.set_quota(&a, &key, 10).await.unwrap();
        store.set_quota(&a, &tenant_key(&a), 100).await.unwrap();
        let listed = store.list_quotas(&a).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert!(store.list_quotas(&b).await.unwrap().is_empty());
        assert_eq!(store.get_quota(&b, &key).await.unwrap(), None);

        store.set_quota(&a, &key, 3).await.unwrap();
        let quota = store.get_quota(&a, &key).await.unwrap().unwrap();
        assert_eq!((quota.per_second, quota.effective_per_second), (3, 3.0));
        let grant = store.lease_tokens(&key, None).await.unwrap().unwrap();
        assert_eq!(grant.rate_milli, 3_000);

        assert!(!store.delete_quota(&b, &key).await.unwrap());
        assert!(store.delete_quota(&a, &key).await.unwrap());
        assert_eq!(store.lease_tokens(&key, None).await.unwrap(), None);
    }

    /// A quota written while workers lease from its bucket must take effect: the write may
    /// not lose every compare-and-set race to the leases and then report success.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_quota_set_while_workers_lease_is_never_lost() {
        let store = store().await;
        let a = TenantId::parse("a").unwrap();
        let key = tenant_key(&a);
        store.set_quota(&a, &key, 1_000_000).await.unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let leasers: Vec<_> = (0..15)
            .map(|_| {
                let (store, key, stop) = (store.clone(), key.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        store.lease_tokens(&key, None).await?;
                    }
                    Ok::<_, crate::StoreError>(())
                })
            })
            .collect();
        let mut lost = Vec::new();
        for per_second in 1..=40 {
            let per_second = 1_000_000 + per_second;
            store.set_quota(&a, &key, per_second).await.unwrap();
            let now = store.get_quota(&a, &key).await.unwrap().unwrap();
            if now.per_second != per_second {
                lost.push(per_second);
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for leaser in leasers {
            leaser.await.unwrap().unwrap();
        }
        assert!(lost.is_empty(), "quota writes lost: {lost:?}");
    }
}
