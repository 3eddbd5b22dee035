//! Frequency caps: a tenant's rule per template category, and the slots deliveries claim
//! under it (see `fanout_domain::frequency` for the rule and its fixed windows).
//!
//! Three tables. `frequency_caps` holds the rules. `frequency_counters` holds, per (tenant,
//! category, user, channel, period, window), how many slots are used; a claim raises `used`
//! with an upsert guarded by `used < cap`, so it is exact under concurrency on both backends:
//! PostgreSQL locks the row for the upsert (a second claimer waits, then sees the new count),
//! and SQLite's writers take turns ([`Store::write_tx`]). `frequency_claims` records which
//! delivery instance holds each slot, so a retried or re-run delivery of the same instance
//! finds its claim and never counts twice.
//!
//! A page claims all its slots in one transaction ([`Store::claim_frequency_slots`]) and
//! releases, in another, the slots of instances whose send then failed for good or was
//! suppressed after the claim ([`Store::release_frequency_slots`]): a slot counts deliveries,
//! not attempts. Counters and claims of windows that have ended are deleted by retention
//! ([`Store::prune_frequency_windows`]); erasing a user deletes theirs.

use std::collections::{BTreeMap, HashSet};

use fanout_domain::frequency::{CapWindow, FrequencyCap};
use fanout_domain::{Channel, InstanceId, TenantId, UnixMillis, UserId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::bulk::Insert;
use crate::{Result, Store, now_ms, parse_col};

const T: &str = "frequency_caps";

/// A category's cap as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCap {
    /// The template category it applies to.
    pub category: String,
    /// The rule.
    pub cap: FrequencyCap,
    /// When it was last written.
    pub updated_at_ms: UnixMillis,
}

/// What a page asks of [`Store::claim_frequency_slots`]: the tenant, category and channel its
/// instances share, the cap in force and the time the window is taken at.
#[derive(Debug, Clone, Copy)]
pub struct SlotRequest<'a> {
    /// The tenant.
    pub tenant_id: &'a TenantId,
    /// The template's category.
    pub category: &'a str,
    /// The page's channel.
    pub channel: Channel,
    /// The cap in force.
    pub cap: FrequencyCap,
    /// The instant whose window the slots are claimed in.
    pub now_ms: UnixMillis,
}

/// What a claim decided: every instance asked about is in exactly one of the two sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claimed {
    /// Instances holding a slot, newly or from an earlier claim of the same instance.
    pub granted: HashSet<InstanceId>,
    /// Instances whose user's window is full.
    pub denied: HashSet<InstanceId>,
}

fn stored_cap(row: &AnyRow) -> Result<StoredCap> {
    let max: i64 = row.try_get("max_per_period")?;
    let period: i64 = row.try_get("period_seconds")?;
    Ok(StoredCap {
        category: row.try_get("category")?,
        cap: FrequencyCap {
            max: parse_col(T, u32::try_from(max))?,
            period_seconds: parse_col(T, u32::try_from(period))?,
        },
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

/// A claim row about to be written.
struct NewClaim<'a> {
    instance_id: &'a InstanceId,
    user_id: &'a UserId,
}

impl Store {
    /// Sets the cap of `category` for the tenant (replacing any) and returns it as stored.
    pub async fn set_frequency_cap(
        &self,
        tenant_id: &TenantId,
        category: &str,
        cap: FrequencyCap,
    ) -> Result<StoredCap> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO frequency_caps
               (tenant_id, category, max_per_period, period_seconds, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant_id, category) DO UPDATE SET
               max_per_period = excluded.max_per_period,
               period_seconds = excluded.period_seconds,
               updated_at_ms = excluded.updated_at_ms",
        )
        .bind(tenant_id.as_str())
        .bind(category)
        .bind(i64::from(cap.max))
        .bind(i64::from(cap.period_seconds))
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(StoredCap {
            category: category.to_owned(),
            cap,
            updated_at_ms: now,
        })
    }

    /// The cap of `category` for the tenant, if it has one.
    pub async fn frequency_cap(
        &self,
        tenant_id: &TenantId,
        category: &str,
    ) -> Result<Option<StoredCap>> {
        let row = sqlx::query(
            "SELECT category, max_per_period, period_seconds, updated_at_ms FROM frequency_caps
             WHERE tenant_id = $1 AND category = $2",
        )
        .bind(tenant_id.as_str())
        .bind(category)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(stored_cap).transpose()
    }

    /// Every cap of the tenant, by category.
    pub async fn list_frequency_caps(&self, tenant_id: &TenantId) -> Result<Vec<StoredCap>> {
        let rows = sqlx::query(
            "SELECT category, max_per_period, period_seconds, updated_at_ms FROM frequency_caps
             WHERE tenant_id = $1 ORDER BY category",
        )
        .bind(tenant_id.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(stored_cap).collect()
    }

    /// Removes the cap of `category`; returns whether there was one. Slots already counted stay
    /// until their window ends, so a cap set again within the window sees them.
    pub async fn delete_frequency_cap(&self, tenant_id: &TenantId, category: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM frequency_caps WHERE tenant_id = $1 AND category = $2")
            .bind(tenant_id.as_str())
            .bind(category)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Claims one slot for each of `instances` (each an instance and its user) in the window of
    /// `request.now_ms`, all in one transaction. An instance that already holds a claim keeps
    /// it (granted again, nothing counted); the others take a slot while their user's counter
    /// is below the cap and are denied once it is full.
    ///
    /// Statements, not round trips per instance: one multi-row insert of the claims, one
    /// multi-row counter upsert per distinct-user round (one round unless a user appears twice)
    /// and one delete of the denied claims, each cut by the bulk helpers' parameter budget.
    pub async fn claim_frequency_slots(
        &self,
        request: SlotRequest<'_>,
        instances: &[(InstanceId, UserId)],
    ) -> Result<Claimed> {
        let mut claimed = Claimed::default();
        if instances.is_empty() {
            return Ok(claimed);
        }
        let window = request.cap.window_at(request.now_ms);
        let mut sorted: Vec<&(InstanceId, UserId)> = instances.iter().collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        sorted.dedup_by(|a, b| a.0 == b.0);
        let rows: Vec<NewClaim<'_>> = sorted
            .iter()
            .map(|(instance_id, user_id)| NewClaim {
                instance_id,
                user_id,
            })
            .collect();

        let (mut tx, _writer) = self.write_tx().await?;
        // Claims first, in instance order: the ones this transaction inserts are its to count;
        // a conflict is an earlier (or concurrent, committed first) claim of the same instance.
        let inserted = Insert {
            head: "INSERT INTO frequency_claims (instance_id, tenant_id, category, user_id,
                     channel, period_seconds, window_start_ms, window_end_ms, claimed_at_ms)",
            columns: 9,
            tail: "ON CONFLICT (instance_id) DO NOTHING RETURNING instance_id",
        }
        .fetch(&mut tx, &rows, |query, row| {
            query
                .bind(row.instance_id.as_str())
                .bind(request.tenant_id.as_str())
                .bind(request.category)
                .bind(row.user_id.as_str())
                .bind(request.channel.as_str())
                .bind(i64::from(request.cap.period_seconds))
                .bind(window.start_ms)
                .bind(window.end_ms)
                .bind(request.now_ms)
        })
        .await?;
        let mut fresh = HashSet::with_capacity(inserted.len());
        for row in &inserted {
            let id: String = row.try_get("instance_id")?;
            fresh.insert(parse_col(T, InstanceId::parse(&id))?);
        }
        let mut counting: Vec<&NewClaim<'_>> = Vec::with_capacity(fresh.len());
        for row in &rows {
            if fresh.contains(row.instance_id) {
                counting.push(row);
            } else {
                claimed.granted.insert(row.instance_id.clone());
            }
        }

        // Then one slot each, user by user in user order (the order every counter writer locks
        // rows in). A page holds each user once, so this is one round; a user listed twice
        // takes its second slot in a second round, as a statement may change a row only once.
        counting.sort_by(|a, b| a.user_id.cmp(b.user_id));
        let mut denied: Vec<&InstanceId> = Vec::new();
        while !counting.is_empty() {
            let mut round: Vec<&NewClaim<'_>> = Vec::with_capacity(counting.len());
            let mut later = Vec::new();
            for row in counting {
                if round.last().is_some_and(|last| last.user_id == row.user_id) {
                    later.push(row);
                } else {
                    round.push(row);
                }
            }
            let got = self.take_slots(&mut tx, &request, window, &round).await?;
            for row in round {
                if got.contains(row.user_id.as_str()) {
                    claimed.granted.insert(row.instance_id.clone());
                } else {
                    claimed.denied.insert(row.instance_id.clone());
                    denied.push(row.instance_id);
                }
            }
            counting = later;
        }
        if !denied.is_empty() {
            self.execute_by_keys(
                &mut tx,
                &denied,
                |list| format!("DELETE FROM frequency_claims WHERE instance_id IN ({list})"),
                |query| query,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Raises the counter of each user in `round` (distinct users, in user order) if it is below
    /// the cap, creating it at 1 if absent; returns the users that got their slot.
    async fn take_slots(
        &self,
        tx: &mut sqlx::AnyConnection,
        request: &SlotRequest<'_>,
        window: CapWindow,
        round: &[&NewClaim<'_>],
    ) -> Result<HashSet<String>> {
        // The guard `used < excluded.cap` is what makes the last slot go to one claimer: on
        // PostgreSQL a concurrent upsert of the same row waits for this transaction and then
        // re-checks it against the committed count; on SQLite the write lock serialises them.
        let rows = Insert {
            head: "INSERT INTO frequency_counters (tenant_id, category, user_id, channel,
                     period_seconds, window_start_ms, window_end_ms, cap, used)",
            columns: 9,
            tail: "ON CONFLICT (tenant_id, category, user_id, channel, period_seconds,
                     window_start_ms)
                   DO UPDATE SET used = frequency_counters.used + 1, cap = excluded.cap
                   WHERE frequency_counters.used < excluded.cap
                   RETURNING user_id",
        }
        .fetch(tx, round, |query, row| {
            query
                .bind(request.tenant_id.as_str())
                .bind(request.category)
                .bind(row.user_id.as_str())
                .bind(request.channel.as_str())
                .bind(i64::from(request.cap.period_seconds))
                .bind(window.start_ms)
                .bind(window.end_ms)
                .bind(i64::from(request.cap.max))
                .bind(1_i64)
        })
        .await?;
        rows.iter()
            .map(|row| Ok(row.try_get::<String, _>("user_id")?))
            .collect()
    }

    /// Gives back the slots `instances` hold (those without a claim are skipped), in one
    /// transaction; returns how many were released. For instances whose send failed for good
    /// or was suppressed after their slot was claimed.
    pub async fn release_frequency_slots(&self, instances: &[InstanceId]) -> Result<u64> {
        if instances.is_empty() {
            return Ok(0);
        }
        let (mut tx, _writer) = self.write_tx().await?;
        let released = self
            .fetch_by_keys_in(
                &mut tx,
                instances,
                |list| {
                    format!(
                        "DELETE FROM frequency_claims WHERE instance_id IN ({list})
                         RETURNING tenant_id, category, user_id, channel, period_seconds,
                           window_start_ms"
                    )
                },
                |query| query,
            )
            .await?;
        // Grouped by counter window: a page's claims normally share one.
        type WindowKey = (String, String, String, i64, i64);
        let mut windows: BTreeMap<WindowKey, Vec<String>> = BTreeMap::new();
        for row in &released {
            let key = (
                row.try_get("tenant_id")?,
                row.try_get("category")?,
                row.try_get("channel")?,
                row.try_get("period_seconds")?,
                row.try_get("window_start_ms")?,
            );
            windows
                .entry(key)
                .or_default()
                .push(row.try_get("user_id")?);
        }
        for ((tenant_id, category, channel, period, start), users) in &windows {
            // Locked in user order through the subquery, the order claims take counter rows
            // in; a plain UPDATE would lock them in scan order and could deadlock with one.
            let sql = |list: &str| {
                format!(
                    "UPDATE frequency_counters SET used = used - 1
                     WHERE tenant_id = $1 AND category = $2 AND channel = $3
                       AND period_seconds = $4 AND window_start_ms = $5 AND used > 0
                       AND user_id IN (
                         SELECT user_id FROM frequency_counters
                         WHERE tenant_id = $1 AND category = $2 AND channel = $3
                           AND period_seconds = $4 AND window_start_ms = $5
                           AND user_id IN ({list})
                         ORDER BY user_id{})",
                    self.lock_rows()
                )
            };
            let mut users: Vec<&String> = users.iter().collect();
            users.sort_unstable();
            self.execute_by_keys(&mut tx, &users, sql, |query| {
                query
                    .bind(tenant_id.as_str())
                    .bind(category.as_str())
                    .bind(channel.as_str())
                    .bind(*period)
                    .bind(*start)
            })
            .await?;
        }
        tx.commit().await?;
        Ok(released.len() as u64)
    }

    /// How many slots `user_id` has used on `channel` under `category`'s cap in the window of
    /// `now_ms` (0 without a cap or a counter).
    pub async fn frequency_slots_used(
        &self,
        tenant_id: &TenantId,
        category: &str,
        user_id: &UserId,
        channel: Channel,
        cap: FrequencyCap,
        now_ms: UnixMillis,
    ) -> Result<u32> {
        let window = cap.window_at(now_ms);
        let used: Option<i64> = sqlx::query_scalar(
            "SELECT used FROM frequency_counters
             WHERE tenant_id = $1 AND category = $2 AND user_id = $3 AND channel = $4
               AND period_seconds = $5 AND window_start_ms = $6",
        )
        .bind(tenant_id.as_str())
        .bind(category)
        .bind(user_id.as_str())
        .bind(channel.as_str())
        .bind(i64::from(cap.period_seconds))
        .bind(window.start_ms)
        .fetch_optional(self.pool())
        .await?;
        Ok(used.map_or(0, |n| u32::try_from(n.max(0)).unwrap_or(u32::MAX)))
    }

    /// Deletes up to `batch` claims and `batch` counters of windows that ended by `now_ms`;
    /// returns how many rows went (retention calls it until fewer than a batch go). A delivery
    /// still pending from such a window claims again in its new one.
    pub async fn prune_frequency_windows(&self, now_ms: UnixMillis, batch: i64) -> Result<u64> {
        let claims = sqlx::query(
            "DELETE FROM frequency_claims WHERE instance_id IN (
               SELECT instance_id FROM frequency_claims WHERE window_end_ms <= $1 LIMIT $2)",
        )
        .bind(now_ms)
        .bind(batch)
        .execute(self.pool())
        .await?
        .rows_affected();
        let counters = sqlx::query(
            "DELETE FROM frequency_counters
             WHERE (tenant_id, category, user_id, channel, period_seconds, window_start_ms) IN (
               SELECT tenant_id, category, user_id, channel, period_seconds, window_start_ms
               FROM frequency_counters WHERE window_end_ms <= $1 LIMIT $2)",
        )
        .bind(now_ms)
        .bind(batch)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(claims.max(counters))
    }
}

/// Deletes a user's claims and counters, inside the erasure's transaction.
pub(crate) async fn erase(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: &TenantId,
    user_id: &UserId,
) -> Result<()> {
    for table in ["frequency_claims", "frequency_counters"] {
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE tenant_id = $1 AND user_id = $2"
        ))
        .bind(tenant_id.as_str())
        .bind(user_id.as_str())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use fanout_domain::RequestId;

    use super::*;
    use crate::test_support::{all_succeed, store};

    const DAY: FrequencyCap = FrequencyCap {
        max: 2,
        period_seconds: 86_400,
    };

    fn tenant() -> TenantId {
        TenantId::parse("a").unwrap()
    }

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    /// The instance of request `n` to `user` on email, with its user.
    fn instance(n: usize, user_id: &str) -> (InstanceId, UserId) {
        instance_on(n, user_id, Channel::Email)
    }

    fn instance_on(n: usize, user_id: &str, channel: Channel) -> (InstanceId, UserId) {
        let request = RequestId::parse(&format!("ntf-{n}")).unwrap();
        let user_id = user(user_id);
        (InstanceId::derive(&request, &user_id, channel), user_id)
    }

    fn slots<'a>(tenant_id: &'a TenantId, cap: FrequencyCap, now_ms: i64) -> SlotRequest<'a> {
        SlotRequest {
            tenant_id,
            category: "marketing",
            channel: Channel::Email,
            cap,
            now_ms,
        }
    }

    #[tokio::test]
    async fn caps_are_set_listed_replaced_and_removed_per_tenant() {
        let store = store().await;
        let (a, b) = (tenant(), TenantId::parse("b").unwrap());
        store.set_frequency_cap(&a, "marketing", DAY).await.unwrap();
        let hourly = FrequencyCap {
            max: 1,
            period_seconds: 3_600,
        };
        store.set_frequency_cap(&a, "digest", hourly).await.unwrap();
        let listed: Vec<(String, FrequencyCap)> = store
            .list_frequency_caps(&a)
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.category, c.cap))
            .collect();
        assert_eq!(
            listed,
            vec![("digest".into(), hourly), ("marketing".into(), DAY)]
        );
        assert!(store.list_frequency_caps(&b).await.unwrap().is_empty());
        assert_eq!(store.frequency_cap(&b, "marketing").await.unwrap(), None);

        store
            .set_frequency_cap(&a, "marketing", hourly)
            .await
            .unwrap();
        let now = store.frequency_cap(&a, "marketing").await.unwrap().unwrap();
        assert_eq!(now.cap, hourly);
        assert!(!store.delete_frequency_cap(&b, "marketing").await.unwrap());
        assert!(store.delete_frequency_cap(&a, "marketing").await.unwrap());
        assert!(!store.delete_frequency_cap(&a, "marketing").await.unwrap());
        assert_eq!(store.frequency_cap(&a, "marketing").await.unwrap(), None);
    }

    #[tokio::test]
    async fn claims_fill_a_window_once_per_instance_and_releases_give_slots_back() {
        let store = store().await;
        let a = tenant();
        let now = 1_796_422_209_000;
        let request = slots(&a, DAY, now);
        let used = |store: Store, channel: Channel, at: i64| {
            let a = a.clone();
            async move {
                store
                    .frequency_slots_used(&a, "marketing", &user("ann"), channel, DAY, at)
                    .await
                    .unwrap()
            }
        };

        // Two requests to ann and bob in one page each: both get their two slots.
        for n in 0..2 {
            let page = [instance(n, "ann"), instance(n, "bob")];
            let claimed = store.claim_frequency_slots(request, &page).await.unwrap();
            assert_eq!(claimed.granted.len(), 2, "request {n}");
            assert!(claimed.denied.is_empty());
        }
        assert_eq!(used(store.clone(), Channel::Email, now).await, 2);

        // A third is denied; its retry is denied again and counts nothing.
        let third = [instance(2, "ann")];
        for _ in 0..2 {
            let claimed = store.claim_frequency_slots(request, &third).await.unwrap();
            assert_eq!(claimed.denied, HashSet::from([third[0].0.clone()]));
        }
        // A retry of a granted instance is granted from its claim, counting nothing.
        let first = [instance(0, "ann")];
        let again = store.claim_frequency_slots(request, &first).await.unwrap();
        assert_eq!(again.granted, HashSet::from([first[0].0.clone()]));
        assert_eq!(used(store.clone(), Channel::Email, now).await, 2);

        // Another channel and the next window have their own slots.
        let push = SlotRequest {
            channel: Channel::Push,
            ..request
        };
        let claimed = store
            .claim_frequency_slots(push, &[instance_on(2, "ann", Channel::Push)])
            .await
            .unwrap();
        assert_eq!(claimed.granted.len(), 1);
        let tomorrow = slots(&a, DAY, now + 86_400_000);
        let claimed = store
            .claim_frequency_slots(tomorrow, &[instance(3, "ann")])
            .await
            .unwrap();
        assert_eq!(claimed.granted.len(), 1);

        // Releasing a slot (its send failed for good) lets the denied instance have it; an
        // instance without a claim releases nothing.
        let released = store
            .release_frequency_slots(&[first[0].0.clone(), instance(9, "ann").0])
            .await
            .unwrap();
        assert_eq!(released, 1);
        assert_eq!(used(store.clone(), Channel::Email, now).await, 1);
        let claimed = store.claim_frequency_slots(request, &third).await.unwrap();
        assert_eq!(claimed.granted.len(), 1);
        assert_eq!(used(store.clone(), Channel::Email, now).await, 2);

        // A lower cap applies to the slots already used.
        let one = slots(
            &a,
            FrequencyCap {
                max: 1,
                period_seconds: 86_400,
            },
            now,
        );
        let claimed = store
            .claim_frequency_slots(one, &[instance(5, "bob")])
            .await
            .unwrap();
        assert_eq!(claimed.denied.len(), 1, "bob used 2 of what is now 1");

        // Retention drops ended windows; erasure drops the user's rows.
        let pruned = store
            .prune_frequency_windows(now + 86_400_000, 1_000)
            .await
            .unwrap();
        assert!(pruned >= 2, "{pruned}");
        assert_eq!(used(store.clone(), Channel::Email, now).await, 0);
        assert_eq!(
            used(store.clone(), Channel::Email, now + 86_400_000).await,
            1
        );
        store.upsert_tenant(&a, "A").await.unwrap();
        store.delete_user(&a, &user("ann")).await.unwrap();
        assert_eq!(
            used(store.clone(), Channel::Email, now + 86_400_000).await,
            0
        );
        let claims: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM frequency_claims WHERE user_id = 'ann'")
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(claims, 0, "erasure removes the user's claims");
    }

    /// Many deliveries racing for the same users' last slots: each user ends with exactly
    /// `max` granted whatever the interleaving. The pages list the users in different orders
    /// (and overlap), as concurrent requests do, which must not deadlock on PostgreSQL.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_claims_grant_exactly_max_per_user() {
        let store = store().await;
        let a = tenant();
        let cap = FrequencyCap {
            max: 3,
            period_seconds: 3_600,
        };
        let now = now_ms();
        let users = ["u1", "u2", "u3", "u4", "u5"];
        let tasks: Vec<_> = (0..12)
            .map(|n| {
                let (store, a) = (store.clone(), a.clone());
                let mut page: Vec<(InstanceId, UserId)> =
                    users.iter().map(|u| instance(n, u)).collect();
                page.rotate_left(n % users.len());
                if n % 2 == 1 {
                    page.reverse();
                }
                tokio::spawn(async move {
                    let claimed = store
                        .claim_frequency_slots(slots(&a, cap, now), &page)
                        .await?;
                    Ok((page, claimed))
                })
            })
            .collect();
        let mut granted: HashMap<UserId, u32> = HashMap::new();
        for (page, claimed) in all_succeed(tasks).await {
            assert_eq!(claimed.granted.len() + claimed.denied.len(), page.len());
            for (instance_id, user_id) in page {
                if claimed.granted.contains(&instance_id) {
                    *granted.entry(user_id).or_default() += 1;
                }
            }
        }
        for u in users {
            assert_eq!(granted.get(&user(u)), Some(&cap.max), "{u}: {granted:?}");
            let used = store
                .frequency_slots_used(&a, "marketing", &user(u), Channel::Email, cap, now)
                .await
                .unwrap();
            assert_eq!(used, cap.max, "{u}");
        }
    }
}
