//! Audiences, read and written in pages.
//!
//! [`Store::audience_batch`] pages through what a [`RecipientsQuery`] names (an explicit list,
//! a user's followers, a segment's members, a closed digest's recipients) in user-id order, by keyset, so the cost of a batch
//! does not grow with how far into the audience it is. The resolver writes what it reads as the
//! request's snapshot, numbered pages of user ids ([`Store::write_audience_page`]), which
//! delivery then loads page by page ([`Store::load_page`]).

use std::borrow::Cow;
use std::collections::HashSet;

use fanout_domain::request::RecipientsQuery;
use fanout_domain::user::User;
use fanout_domain::{RequestId, TenantId, UserId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::bulk::Insert;
use crate::users::user_from_row;
use crate::{Result, Store, parse_col};

/// Writes rows of a snapshot page, leaving rows already there as they were.
const INSERT_PAGE: Insert<'static> = Insert {
    head: "INSERT INTO audience (request_id, page_no, user_id)",
    columns: 3,
    tail: "ON CONFLICT DO NOTHING",
};

/// The next batch of a user's followers. Every clause is served by the primary keys: `follows`
/// by (tenant_id, user_id, follower_id), which yields rows already in order, and `users` by
/// (tenant_id, user_id); no sort, no scan, however many followers there are.
const FOLLOWERS_BATCH: &str = "SELECT f.follower_id AS member, u.user_id AS profile
     FROM follows f
     LEFT JOIN users u ON u.tenant_id = f.tenant_id AND u.user_id = f.follower_id
     WHERE f.tenant_id = $1 AND f.user_id = $2 AND f.follower_id > $3
     ORDER BY f.follower_id LIMIT $4";

/// The next batch of a segment's members; indexed as [`FOLLOWERS_BATCH`] is.
const SEGMENT_BATCH: &str = "SELECT m.user_id AS member, u.user_id AS profile
     FROM segment_members m
     LEFT JOIN users u ON u.tenant_id = m.tenant_id AND u.user_id = m.user_id
     WHERE m.tenant_id = $1 AND m.segment_id = $2 AND m.user_id > $3
     ORDER BY m.user_id LIMIT $4";

/// The next batch of a closed digest's recipients (every user one of its triggers names),
/// each once: the primary key (digest_id, user_id, request_id) yields them in order.
const DIGEST_BATCH: &str = "SELECT r.user_id AS member, MAX(u.user_id) AS profile
     FROM digest_recipients r
     LEFT JOIN users u ON u.tenant_id = $1 AND u.user_id = r.user_id
     WHERE r.digest_id = $2 AND r.user_id > $3
     GROUP BY r.user_id ORDER BY r.user_id LIMIT $4";

/// One member of an audience, as the resolver reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudienceMember {
    /// The user the audience names.
    pub user_id: UserId,
    /// Whether the user has a profile. Followers, segment members and listed ids need not
    /// (the user was deleted, or never created); the caller counts those as suppressed.
    pub exists: bool,
}

/// One recipient of a page: the snapshot's user id and the profile as it is now (`None` if
/// the user does not exist or was deleted since).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageMember {
    /// The user the snapshot names.
    pub user_id: UserId,
    /// Their current profile.
    pub profile: Option<User>,
}

/// A member of a stored audience from a row of one of the `*_BATCH` statements.
fn member_from_row(row: &AnyRow) -> Result<AudienceMember> {
    let member: String = row.try_get("member")?;
    let profile: Option<String> = row.try_get("profile")?;
    Ok(AudienceMember {
        user_id: parse_col("audience", UserId::parse(&member))?,
        exists: profile.is_some(),
    })
}

impl Store {
    /// Returns the next `limit` members of the audience `query` names, in ascending user-id
    /// order, strictly after `after` (`None` starts at the beginning). Fewer than `limit` means
    /// the audience is exhausted. Stored audiences are read as they are at the time of each
    /// call; resolving one is a sequence of calls, each passing the last id of the one before.
    pub async fn audience_batch(
        &self,
        tenant_id: &TenantId,
        query: &RecipientsQuery,
        after: Option<&UserId>,
        limit: u32,
    ) -> Result<Vec<AudienceMember>> {
        let (sql, key) = match query {
            RecipientsQuery::Users { user_ids } => {
                return self.explicit_batch(tenant_id, user_ids, after, limit).await;
            }
            RecipientsQuery::Followers { of } => (FOLLOWERS_BATCH, of.as_str()),
            RecipientsQuery::Segment { segment_id } => (SEGMENT_BATCH, segment_id.as_str()),
            RecipientsQuery::Digest { digest_id } => (DIGEST_BATCH, digest_id.as_str()),
        };
        let after = after.map(UserId::as_str);
        let rows = self.keyset_page(sql, tenant_id, key, after, limit).await?;
        rows.iter().map(member_from_row).collect()
    }

    /// Pages through an explicit list in memory; only existence needs the database.
    async fn explicit_batch(
        &self,
        tenant_id: &TenantId,
        user_ids: &[UserId],
        after: Option<&UserId>,
        limit: u32,
    ) -> Result<Vec<AudienceMember>> {
        // `RecipientsQuery::users` sorts and deduplicates, but the variant's field is public
        // and arrives through workflow histories: keyset paging is only sound on a strictly
        // ascending list, so make sure of it (a linear check; lists are at most 10,000).
        let ids: Cow<'_, [UserId]> = if user_ids.is_sorted_by(|a, b| a < b) {
            Cow::Borrowed(user_ids)
        } else {
            let mut ids = user_ids.to_vec();
            ids.sort();
            ids.dedup();
            Cow::Owned(ids)
        };
        let start = after.map_or(0, |after| ids.partition_point(|id| id <= after));
        let rest = &ids[start..];
        let batch = &rest[..rest.len().min(usize::try_from(limit).unwrap_or(usize::MAX))];

        let rows = self
            .fetch_by_keys(
                batch,
                |ids| {
                    format!("SELECT user_id FROM users WHERE tenant_id = $1 AND user_id IN ({ids})")
                },
                |query| query.bind(tenant_id.as_str()),
            )
            .await?;
        let existing = rows
            .iter()
            .map(|row| row.try_get::<String, _>("user_id"))
            .collect::<Result<HashSet<_>, _>>()?;
        Ok(batch
            .iter()
            .map(|id| AudienceMember {
                exists: existing.contains(id.as_str()),
                user_id: id.clone(),
            })
            .collect())
    }

    /// Writes one page of the snapshot, in one transaction. Rows already there are left as
    /// they were, so a resolver that crashed mid-way can rewrite the page it was on.
    pub async fn write_audience_page(
        &self,
        request_id: &RequestId,
        page_no: u32,
        users: &[UserId],
    ) -> Result<()> {
        let page_no = i64::from(page_no);
        let (mut tx, _writer) = self.write_tx().await?;
        INSERT_PAGE
            .execute(&mut tx, users, |query, user| {
                query
                    .bind(request_id.as_str())
                    .bind(page_no)
                    .bind(user.as_str())
            })
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Loads one page with the members' current profiles, ordered by user id.
    pub async fn load_page(
        &self,
        tenant_id: &TenantId,
        request_id: &RequestId,
        page: u32,
    ) -> Result<Vec<PageMember>> {
        let rows = sqlx::query(
            "SELECT a.user_id AS member,
               u.user_id, u.email, u.name, u.locale, u.timezone, u.devices, u.quiet_hours
             FROM audience a
             LEFT JOIN users u ON u.tenant_id = $1 AND u.user_id = a.user_id
             WHERE a.request_id = $2 AND a.page_no = $3
             ORDER BY a.user_id",
        )
        .bind(tenant_id.as_str())
        .bind(request_id.as_str())
        .bind(i64::from(page))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let member: String = row.try_get("member")?;
                let exists: Option<String> = row.try_get("user_id")?;
                Ok(PageMember {
                    user_id: parse_col("audience", UserId::parse(&member))?,
                    profile: exists.map(|_| user_from_row(row)).transpose()?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use fanout_domain::user::EmailAddress;
    use fanout_domain::{DedupeKey, SegmentId};

    use crate::test_support::store;
    use crate::users::tests::user;

    use super::*;

    fn id(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    async fn tenant(store: &Store, name: &str) -> TenantId {
        let t = TenantId::parse(name).unwrap();
        store.upsert_tenant(&t, name).await.unwrap();
        t
    }

    /// Reads a whole audience batch by batch, checking each batch's size on the way.
    async fn drain(
        store: &Store,
        t: &TenantId,
        query: &RecipientsQuery,
        limit: u32,
    ) -> Vec<AudienceMember> {
        let mut all: Vec<AudienceMember> = Vec::new();
        loop {
            let batch = store
                .audience_batch(t, query, all.last().map(|m| &m.user_id), limit)
                .await
                .unwrap();
            assert!(batch.len() <= limit as usize);
            let done = batch.len() < limit as usize;
            all.extend(batch);
            if done {
                return all;
            }
        }
    }

    #[tokio::test]
    async fn pages_join_current_profiles() {
        let store = store().await;
        let t = tenant(&store, "acme").await;
        let known = User {
            email: Some(EmailAddress::parse("k@example.com").unwrap()),
            locale: Some("en".into()),
            ..user("known")
        };
        store.upsert_user(&t, &known).await.unwrap();
        let req = DedupeKey::new(t.clone(), "k").unwrap().request_id();
        let ghost = id("ghost");
        let pages = vec![
            vec![known.user_id.clone(), ghost.clone()],
            vec![ghost.clone()],
        ];
        // Twice: a retried resolver rewrites the same pages.
        for _ in 0..2 {
            for (page_no, users) in (0u32..).zip(&pages) {
                store
                    .write_audience_page(&req, page_no, users)
                    .await
                    .unwrap();
            }
        }

        let page0 = store.load_page(&t, &req, 0).await.unwrap();
        assert_eq!(page0.len(), 2);
        assert_eq!(page0[0].user_id, ghost);
        assert!(page0[0].profile.is_none());
        assert_eq!(page0[1].profile.as_ref(), Some(&known));
        assert_eq!(store.load_page(&t, &req, 1).await.unwrap().len(), 1);
        assert!(store.load_page(&t, &req, 2).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn pages_are_written_idempotently_in_chunks() {
        let store = store().await;
        let t = tenant(&store, "acme").await;
        let req = DedupeKey::new(t, "k").unwrap().request_id();
        let users: Vec<UserId> = (0..1_234).map(|i| id(&format!("u{i:04}"))).collect();
        store.write_audience_page(&req, 3, &users).await.unwrap();
        // A retry after a crash part-way: a prefix again, then the whole page.
        store
            .write_audience_page(&req, 3, &users[..700])
            .await
            .unwrap();
        store.write_audience_page(&req, 3, &users).await.unwrap();
        let acme = TenantId::parse("acme").unwrap();
        assert_eq!(store.load_page(&acme, &req, 3).await.unwrap().len(), 1_234);
        assert!(store.load_page(&acme, &req, 0).await.unwrap().is_empty());
        let page = store
            .load_page(&TenantId::parse("acme").unwrap(), &req, 3)
            .await
            .unwrap();
        let ids: Vec<UserId> = page.into_iter().map(|m| m.user_id).collect();
        assert_eq!(ids, users);
    }

    #[tokio::test]
    async fn explicit_lists_page_in_order_and_flag_missing_users() {
        let store = store().await;
        let t = tenant(&store, "acme").await;
        let other = tenant(&store, "other").await;
        let listed: Vec<UserId> = (0..2_500).map(|i| id(&format!("u{i:04}"))).collect();
        let existing: Vec<User> = listed.iter().step_by(3).map(|u| user(u.as_str())).collect();
        store.upsert_users(&t, &existing).await.unwrap();
        // The same ids in another tenant must not count as existing here.
        let everyone: Vec<User> = listed.iter().map(|u| user(u.as_str())).collect();
        store.upsert_users(&other, &everyone).await.unwrap();

        let query = RecipientsQuery::users(listed.clone()).unwrap();
        let all = drain(&store, &t, &query, 1_000).await;
        assert_eq!(
            all.iter().map(|m| &m.user_id).collect::<Vec<_>>(),
            listed.iter().collect::<Vec<_>>()
        );
        assert_eq!(all.iter().filter(|m| m.exists).count(), existing.len());
        assert!(all[0].exists && !all[1].exists && !all[2].exists && all[3].exists);

        // After an id that is not in the list; a list that arrived unsorted.
        let batch = store
            .audience_batch(&t, &query, Some(&id("u0010x")), 2)
            .await
            .unwrap();
        assert_eq!(batch[0].user_id, id("u0011"));
        let shuffled = RecipientsQuery::Users {
            user_ids: vec![id("u0002"), id("u0001"), id("u0002"), id("u0000")],
        };
        let batch = store.audience_batch(&t, &shuffled, None, 10).await.unwrap();
        assert_eq!(
            batch.iter().map(|m| m.user_id.as_str()).collect::<Vec<_>>(),
            ["u0000", "u0001", "u0002"]
        );
        let past_the_end = store
            .audience_batch(&t, &query, Some(&id("u2499")), 10)
            .await
            .unwrap();
        assert!(past_the_end.is_empty());
    }

    /// Resolves `n` followers, one in ten without a profile, and checks the result exactly.
    async fn followers_resolve_exactly(n: usize, limit: u32) {
        let store = store().await;
        let t = tenant(&store, "acme").await;
        let other = tenant(&store, "other").await;
        let star = id("star");
        let fans: Vec<UserId> = (0..n).map(|i| id(&format!("fan{i:07}"))).collect();
        let profiles: Vec<User> = fans
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 10 != 7)
            .map(|(_, u)| user(u.as_str()))
            .collect();

        let started = Instant::now();
        store.upsert_users(&t, &profiles).await.unwrap();
        eprintln!(
            "upsert_users: {} users in {:?}",
            profiles.len(),
            started.elapsed()
        );
        let started = Instant::now();
        // Reversed, so the order of the result comes from the store, not from the input.
        let reversed: Vec<UserId> = fans.iter().rev().cloned().collect();
        assert_eq!(
            store.add_followers(&t, &star, &reversed).await.unwrap(),
            n as u64
        );
        eprintln!("add_followers: {n} followers in {:?}", started.elapsed());
        // Noise that must not leak in: another user's followers, another tenant's.
        store
            .add_followers(&t, &id("starlet"), &fans[..100])
            .await
            .unwrap();
        store
            .add_followers(&other, &star, &[id("intruder")])
            .await
            .unwrap();

        let query = RecipientsQuery::Followers { of: star };
        let started = Instant::now();
        let all = drain(&store, &t, &query, limit).await;
        eprintln!(
            "audience_batch: {n} followers in batches of {limit} in {:?}",
            started.elapsed()
        );
        assert_eq!(all.len(), n);
        assert!(all.iter().map(|m| &m.user_id).eq(fans.iter()));
        assert_eq!(all.iter().filter(|m| m.exists).count(), profiles.len());
        assert_eq!(all.iter().filter(|m| !m.exists).count(), n / 10);
        assert!(
            all.iter()
                .enumerate()
                .all(|(i, m)| m.exists == (i % 10 != 7))
        );
    }

    #[tokio::test]
    async fn a_hundred_thousand_followers_page_exactly_in_order() {
        followers_resolve_exactly(100_000, 1_000).await;
    }

    /// The scale the keyset design is for; `cargo test --release -p fanout-store -- --ignored
    /// --nocapture` prints the timings.
    #[tokio::test]
    #[ignore = "a million rows: minutes in a debug build"]
    async fn a_million_followers_page_exactly_in_order() {
        followers_resolve_exactly(1_000_000, 500).await;
    }

    #[tokio::test]
    async fn segments_page_their_members_and_nothing_else() {
        let store = store().await;
        let t = tenant(&store, "acme").await;
        let other = tenant(&store, "other").await;
        let beta = SegmentId::parse("beta").unwrap();
        let members: Vec<UserId> = (0..2_345).map(|i| id(&format!("m{i:05}"))).collect();
        for tenant in [&t, &other] {
            store
                .upsert_segment(tenant, &beta, "Beta", &[])
                .await
                .unwrap();
        }
        store
            .add_segment_members(&t, &beta, &members)
            .await
            .unwrap();
        store
            .add_segment_members(&other, &beta, &[id("intruder")])
            .await
            .unwrap();
        let gamma = SegmentId::parse("gamma").unwrap();
        store
            .upsert_segment(&t, &gamma, "Gamma", &[])
            .await
            .unwrap();
        store
            .add_segment_members(&t, &gamma, &[id("m99999")])
            .await
            .unwrap();
        store.upsert_users(&t, &[user("m00001")]).await.unwrap();

        let query = RecipientsQuery::Segment { segment_id: beta };
        let all = drain(&store, &t, &query, 1_000).await;
        assert!(all.iter().map(|m| &m.user_id).eq(members.iter()));
        let existing: Vec<&str> = all
            .iter()
            .filter(|m| m.exists)
            .map(|m| m.user_id.as_str())
            .collect();
        assert_eq!(existing, ["m00001"]);

        let missing = RecipientsQuery::Segment {
            segment_id: SegmentId::parse("missing").unwrap(),
        };
        assert!(
            store
                .audience_batch(&t, &missing, None, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    /// The batch statements must be index searches, never a scan or a sort, or a million
    /// followers would cost a million rows per batch. Each backend is asked for its plan; on
    /// PostgreSQL, whose planner rightly prefers a scan of a near-empty table, sequential scans
    /// are priced out first so the plan shows what a large table gets.
    #[tokio::test]
    async fn stored_batches_search_indexes_without_sorting() {
        let store = store().await;
        let mut conn = store.pool().acquire().await.unwrap();
        let (explain, column) = if store.is_sqlite() {
            ("EXPLAIN QUERY PLAN", "detail")
        } else {
            sqlx::query("SET enable_seqscan = off")
                .execute(&mut *conn)
                .await
                .unwrap();
            ("EXPLAIN", "QUERY PLAN")
        };
        for sql in [FOLLOWERS_BATCH, SEGMENT_BATCH] {
            let rows = sqlx::query(&format!("{explain} {sql}"))
                .bind("t")
                .bind("k")
                .bind("")
                .bind(10_i64)
                .fetch_all(&mut *conn)
                .await
                .unwrap();
            let plan: Vec<String> = rows
                .iter()
                .map(|row| row.try_get::<String, _>(column).unwrap())
                .collect();
            let text = plan.join("\n");
            if store.is_sqlite() {
                assert_eq!(plan.len(), 2, "{plan:?}");
                for step in &plan {
                    assert!(
                        step.starts_with("SEARCH") && step.contains("INDEX"),
                        "{plan:?}"
                    );
                    assert!(!step.contains("TEMP B-TREE"), "{plan:?}");
                }
            } else {
                assert!(text.contains("Index"), "{text}");
                assert!(!text.contains("Seq Scan"), "{text}");
                assert!(!text.contains("Sort"), "{text}");
            }
        }
    }
}
