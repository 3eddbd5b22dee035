//! Segments: named sets of users that a [`RecipientsQuery::Segment`] audience is read from.
//!
//! [`RecipientsQuery::Segment`]: fanout_domain::request::RecipientsQuery::Segment

use fanout_domain::audience::Segment;
use fanout_domain::{SegmentId, TenantId, UserId};
use sqlx::Row;

use crate::bulk::{Insert, in_key_order};
use crate::{Result, Store, now_ms, parse_col};

const T: &str = "segments";

const INSERT_MEMBERS: Insert<'static> = Insert {
    head: "INSERT INTO segment_members (tenant_id, segment_id, user_id)",
    columns: 3,
    tail: "ON CONFLICT DO NOTHING",
};

/// A page of a segment's members, for [`Store::keyset_user_ids`].
const LIST_MEMBERS: &str = "SELECT user_id FROM segment_members
     WHERE tenant_id = $1 AND segment_id = $2 AND user_id > $3
     ORDER BY user_id LIMIT $4";

impl Store {
    /// Creates a segment, or renames it, and adds `members` (existing members are kept), in one
    /// transaction; returns the segment as that transaction left it, so a concurrent delete
    /// cannot leave the caller without an answer.
    pub async fn upsert_segment(
        &self,
        tenant_id: &TenantId,
        segment_id: &SegmentId,
        name: &str,
        members: &[UserId],
    ) -> Result<Segment> {
        let (mut tx, _writer) = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO segments (tenant_id, segment_id, name, updated_at_ms)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant_id, segment_id) DO UPDATE SET
               name = excluded.name, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(tenant_id.as_str())
        .bind(segment_id.as_str())
        .bind(name)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        insert_members(&mut tx, tenant_id, segment_id, members).await?;
        let segment = read_segment(&mut tx, tenant_id, segment_id).await?;
        tx.commit().await?;
        segment.ok_or_else(|| crate::StoreError::Corrupt {
            table: T,
            reason: format!("{segment_id} missing inside its own upsert"),
        })
    }

    /// Returns a segment with its current member count.
    pub async fn get_segment(
        &self,
        tenant_id: &TenantId,
        segment_id: &SegmentId,
    ) -> Result<Option<Segment>> {
        let mut conn = self.pool().acquire().await?;
        read_segment(&mut conn, tenant_id, segment_id).await
    }

    /// Tells whether a segment exists, without counting its members.
    pub async fn segment_exists(
        &self,
        tenant_id: &TenantId,
        segment_id: &SegmentId,
    ) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM segments WHERE tenant_id = $1 AND segment_id = $2")
            .bind(tenant_id.as_str())
            .bind(segment_id.as_str())
            .fetch_optional(self.pool())
            .await?;
        Ok(row.is_some())
    }

    /// Adds `users` to a segment, in one transaction; existing members are left as they were,
    /// so a retried call changes nothing. Returns how many members are new, or `None` if the
    /// segment does not exist.
    pub async fn add_segment_members(
        &self,
        tenant_id: &TenantId,
        segment_id: &SegmentId,
        users: &[UserId],
    ) -> Result<Option<u64>> {
        let (mut tx, _writer) = self.write_tx().await?;
        if !lock_segment(self, &mut tx, tenant_id, segment_id).await? {
            return Ok(None);
        }
        let added = insert_members(&mut tx, tenant_id, segment_id, users).await?;
        if added > 0 {
            touch_segment(&mut tx, tenant_id, segment_id).await?;
        }
        tx.commit().await?;
        Ok(Some(added))
    }

    /// Removes `user` from a segment. Returns false if they were not a member.
    pub async fn remove_segment_member(
        &self,
        tenant_id: &TenantId,
        segment_id: &SegmentId,
        user: &UserId,
    ) -> Result<bool> {
        let (mut tx, _writer) = self.write_tx().await?;
        lock_segment(self, &mut tx, tenant_id, segment_id).await?;
        let removed = sqlx::query(
            "DELETE FROM segment_members
             WHERE tenant_id = $1 AND segment_id = $2 AND user_id = $3",
        )
        .bind(tenant_id.as_str())
        .bind(segment_id.as_str())
        .bind(user.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if removed {
            touch_segment(&mut tx, tenant_id, segment_id).await?;
        }
        tx.commit().await?;
        Ok(removed)
    }

    /// Lists up to `limit` members of a segment in id order, starting after `after`.
    pub async fn list_segment_members(
        &self,
        tenant_id: &TenantId,
        segment_id: &SegmentId,
        after: Option<&UserId>,
        limit: u32,
    ) -> Result<Vec<UserId>> {
        let key = segment_id.as_str();
        self.keyset_user_ids(
            "segment_members",
            LIST_MEMBERS,
            tenant_id,
            key,
            after,
            limit,
        )
        .await
    }
}

/// Reads a segment with its member count on `conn` (a transaction's or the pool's).
async fn read_segment(
    conn: &mut sqlx::AnyConnection,
    tenant_id: &TenantId,
    segment_id: &SegmentId,
) -> Result<Option<Segment>> {
    // The count walks the segment's slice of the primary-key index: fine for the sizes a
    // GET is asked about; a stored counter would be the next step for millions.
    let row = sqlx::query(
        "SELECT s.segment_id, s.name, s.updated_at_ms,
           (SELECT COUNT(*) FROM segment_members m
            WHERE m.tenant_id = s.tenant_id AND m.segment_id = s.segment_id) AS members
         FROM segments s WHERE s.tenant_id = $1 AND s.segment_id = $2",
    )
    .bind(tenant_id.as_str())
    .bind(segment_id.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let id: String = row.try_get("segment_id")?;
    let members: i64 = row.try_get("members")?;
    Ok(Some(Segment {
        segment_id: parse_col(T, SegmentId::parse(&id))?,
        name: row.try_get("name")?,
        members: u64::try_from(members).unwrap_or_default(),
        updated_at_ms: row.try_get("updated_at_ms")?,
    }))
}

/// Locks the segment's row inside `tx` (see [`Store::lock_rows`]) and tells whether it exists.
/// Every membership write takes it first, as [`Store::upsert_segment`]'s upsert does: on
/// PostgreSQL a writer that locked members first and the segment last (to touch it) deadlocked
/// with one doing the opposite, and PostgreSQL aborted one of them.
async fn lock_segment(
    store: &Store,
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: &TenantId,
    segment_id: &SegmentId,
) -> Result<bool> {
    let row = sqlx::query(&format!(
        "SELECT 1 FROM segments WHERE tenant_id = $1 AND segment_id = $2{}",
        store.lock_rows()
    ))
    .bind(tenant_id.as_str())
    .bind(segment_id.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.is_some())
}

/// Inserts `users` as members of a segment, in key order (see [`in_key_order`]), leaving
/// existing members as they were; returns how many are new.
async fn insert_members(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: &TenantId,
    segment_id: &SegmentId,
    users: &[UserId],
) -> Result<u64> {
    INSERT_MEMBERS
        .execute(tx, &in_key_order(users), |query, user| {
            query
                .bind(tenant_id.as_str())
                .bind(segment_id.as_str())
                .bind(user.as_str())
        })
        .await
}

/// Records that a segment's membership changed.
async fn touch_segment(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: &TenantId,
    segment_id: &SegmentId,
) -> Result<()> {
    sqlx::query("UPDATE segments SET updated_at_ms = $3 WHERE tenant_id = $1 AND segment_id = $2")
        .bind(tenant_id.as_str())
        .bind(segment_id.as_str())
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::test_support::{all_succeed, store};

    use super::*;

    fn user(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    #[tokio::test]
    async fn segments_count_members_and_stay_in_their_tenant() {
        let store = store().await;
        let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
        store.upsert_tenant(&a, "A").await.unwrap();
        store.upsert_tenant(&b, "B").await.unwrap();
        let beta = SegmentId::parse("beta").unwrap();

        assert_eq!(store.get_segment(&a, &beta).await.unwrap(), None);
        assert!(!store.segment_exists(&a, &beta).await.unwrap());
        assert_eq!(
            store
                .add_segment_members(&a, &beta, &[user("u1")])
                .await
                .unwrap(),
            None,
            "members of a missing segment"
        );
        store.upsert_segment(&a, &beta, "Beta", &[]).await.unwrap();
        let members: Vec<UserId> = (0..1_001).map(|i| user(&format!("m{i:04}"))).collect();
        assert_eq!(
            store
                .add_segment_members(&a, &beta, &members)
                .await
                .unwrap(),
            Some(1_001)
        );
        assert_eq!(
            store
                .add_segment_members(&a, &beta, &members[..10])
                .await
                .unwrap(),
            Some(0)
        );
        let segment = store
            .upsert_segment(&a, &beta, "Beta testers", &members[..2])
            .await
            .unwrap();
        assert_eq!(
            Some(&segment),
            store.get_segment(&a, &beta).await.unwrap().as_ref()
        );
        assert_eq!(
            (segment.name.as_str(), segment.members),
            ("Beta testers", 1_001),
            "renaming keeps the members"
        );
        assert_eq!(store.get_segment(&b, &beta).await.unwrap(), None);
        assert!(store.segment_exists(&a, &beta).await.unwrap());
        assert!(!store.segment_exists(&b, &beta).await.unwrap());
        assert_eq!(
            store
                .add_segment_members(&b, &beta, &[user("x")])
                .await
                .unwrap(),
            None
        );

        let page = store
            .list_segment_members(&a, &beta, Some(&user("m0997")), 10)
            .await
            .unwrap();
        assert_eq!(page, [user("m0998"), user("m0999"), user("m1000")]);
        assert!(
            store
                .list_segment_members(&b, &beta, None, 10)
                .await
                .unwrap()
                .is_empty()
        );

        assert!(
            !store
                .remove_segment_member(&b, &beta, &user("m0000"))
                .await
                .unwrap()
        );
        assert!(
            store
                .remove_segment_member(&a, &beta, &user("m0000"))
                .await
                .unwrap()
        );
        assert!(
            !store
                .remove_segment_member(&a, &beta, &user("m0000"))
                .await
                .unwrap()
        );
        assert_eq!(
            store.get_segment(&a, &beta).await.unwrap().unwrap().members,
            1_000
        );
    }

    /// Adding members reads (does the segment exist?) before it writes. Against other writers
    /// committing all the while, every call must succeed: a deferred SQLite transaction failed
    /// with SQLITE_BUSY here, which the API answered as a 500.
    #[tokio::test]
    async fn transactions_that_read_first_succeed_beside_other_writers() {
        let store = store().await;
        let a = TenantId::parse("a").unwrap();
        store.upsert_tenant(&a, "A").await.unwrap();
        let seg = SegmentId::parse("busy").unwrap();
        store.upsert_segment(&a, &seg, "Busy", &[]).await.unwrap();
        let writer = {
            let store = store.clone();
            let a = a.clone();
            tokio::spawn(async move {
                for i in 0..200 {
                    let other = SegmentId::parse(&format!("other{i}")).unwrap();
                    store
                        .upsert_segment(&a, &other, "Other", &[])
                        .await
                        .unwrap();
                }
            })
        };
        let mut failures = Vec::new();
        for i in 0..200 {
            if let Err(e) = store
                .add_segment_members(&a, &seg, &[user(&format!("m{i}"))])
                .await
            {
                failures.push(e.to_string());
            }
        }
        writer.await.unwrap();
        assert!(
            failures.is_empty(),
            "{} failed: {:?}",
            failures.len(),
            failures.first()
        );
    }

    /// Membership writers of one segment run at once (imports in parallel, a retried call)
    /// with overlapping members in different orders: none may fail (PostgreSQL reports a
    /// deadlock when two writers take the same rows in opposite orders) and nothing is lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_membership_writes_never_deadlock() {
        let store = store().await;
        let a = TenantId::parse("a").unwrap();
        store.upsert_tenant(&a, "A").await.unwrap();
        let seg = SegmentId::parse("crowd").unwrap();
        store.upsert_segment(&a, &seg, "Crowd", &[]).await.unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let (store, a, seg) = (store.clone(), a.clone(), seg.clone());
                tokio::spawn(async move {
                    for round in 0..8 {
                        // 60 of 100 members, in an order of this task's own.
                        let mut members: Vec<UserId> = (0..60)
                            .map(|j| user(&format!("m{:03}", (j * 7 + i * 13 + round) % 100)))
                            .collect();
                        if i % 2 == 1 {
                            members.reverse();
                        }
                        match (i + round) % 3 {
                            0 => {
                                store.upsert_segment(&a, &seg, "Crowd", &members).await?;
                            }
                            1 => {
                                store.add_segment_members(&a, &seg, &members).await?;
                            }
                            _ => {
                                store.remove_segment_member(&a, &seg, &members[0]).await?;
                                store.add_segment_members(&a, &seg, &members[..1]).await?;
                            }
                        }
                    }
                    Ok::<_, crate::StoreError>(())
                })
            })
            .collect();
        all_succeed(tasks).await;
        let segment = store.get_segment(&a, &seg).await.unwrap().unwrap();
        assert_eq!(segment.members, 100);
    }
}
