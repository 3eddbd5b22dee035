//! Who follows whom: the relation a [`RecipientsQuery::Followers`] audience is read from.
//!
//! [`RecipientsQuery::Followers`]: fanout_domain::request::RecipientsQuery::Followers

use fanout_domain::{TenantId, UserId};

use crate::bulk::{Insert, in_key_order};
use crate::{Result, Store, now_ms};

const INSERT_FOLLOWS: Insert<'static> = Insert {
    head: "INSERT INTO follows (tenant_id, user_id, follower_id, created_at_ms)",
    columns: 4,
    tail: "ON CONFLICT DO NOTHING",
};

/// A page of a user's followers, for [`Store::keyset_user_ids`].
const LIST_FOLLOWERS: &str = "SELECT follower_id AS user_id FROM follows
     WHERE tenant_id = $1 AND user_id = $2 AND follower_id > $3
     ORDER BY follower_id LIMIT $4";

impl Store {
    /// Makes each of `followers` follow `of`, in one transaction. Pairs that already exist are
    /// left as they were, so a retried call changes nothing. Returns how many follows are new.
    pub async fn add_followers(
        &self,
        tenant_id: &TenantId,
        of: &UserId,
        followers: &[UserId],
    ) -> Result<u64> {
        // Concurrent calls with overlapping lists lock rows in one order.
        let followers = in_key_order(followers);
        let now = now_ms();
        let (mut tx, _writer) = self.write_tx().await?;
        let added = INSERT_FOLLOWS
            .execute(&mut tx, &followers, |query, follower| {
                query
                    .bind(tenant_id.as_str())
                    .bind(of.as_str())
                    .bind(follower.as_str())
                    .bind(now)
            })
            .await?;
        tx.commit().await?;
        Ok(added)
    }

    /// Stops `follower` following `of`. Returns false if it did not.
    pub async fn remove_follower(
        &self,
        tenant_id: &TenantId,
        of: &UserId,
        follower: &UserId,
    ) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM follows WHERE tenant_id = $1 AND user_id = $2 AND follower_id = $3",
        )
        .bind(tenant_id.as_str())
        .bind(of.as_str())
        .bind(follower.as_str())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Lists up to `limit` followers of `of` in id order, starting after `after`.
    pub async fn list_followers(
        &self,
        tenant_id: &TenantId,
        of: &UserId,
        after: Option<&UserId>,
        limit: u32,
    ) -> Result<Vec<UserId>> {
        self.keyset_user_ids(
            "follows",
            LIST_FOLLOWERS,
            tenant_id,
            of.as_str(),
            after,
            limit,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::{all_succeed, store};

    use super::*;

    fn user(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    async fn tenants(store: &Store) -> (TenantId, TenantId) {
        let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
        store.upsert_tenant(&a, "A").await.unwrap();
        store.upsert_tenant(&b, "B").await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn adding_followers_is_idempotent_and_counts_only_new_ones() {
        let store = store().await;
        let (a, _) = tenants(&store).await;
        let star = user("star");
        // More than one statement's worth, with a duplicate inside the call.
        let mut fans: Vec<UserId> = (0..1_234).map(|i| user(&format!("f{i:04}"))).collect();
        fans.push(user("f0001"));
        assert_eq!(store.add_followers(&a, &star, &fans).await.unwrap(), 1_234);
        assert_eq!(store.add_followers(&a, &star, &fans).await.unwrap(), 0);
        assert_eq!(
            store
                .add_followers(&a, &star, &[user("f0000"), user("new")])
                .await
                .unwrap(),
            1
        );
        assert_eq!(store.add_followers(&a, &star, &[]).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn followers_page_in_id_order_and_stay_in_their_tenant() {
        let store = store().await;
        let (a, b) = tenants(&store).await;
        let star = user("star");
        let fans = [user("c"), user("a"), user("b"), user("d")];
        store.add_followers(&a, &star, &fans).await.unwrap();
        store
            .add_followers(&a, &user("other"), &[user("z")])
            .await
            .unwrap();

        let first = store.list_followers(&a, &star, None, 3).await.unwrap();
        assert_eq!(first, [user("a"), user("b"), user("c")]);
        let rest = store
            .list_followers(&a, &star, first.last(), 3)
            .await
            .unwrap();
        assert_eq!(rest, [user("d")]);
        assert!(
            store
                .list_followers(&b, &star, None, 10)
                .await
                .unwrap()
                .is_empty()
        );

        assert!(!store.remove_follower(&b, &star, &user("a")).await.unwrap());
        assert!(store.remove_follower(&a, &star, &user("a")).await.unwrap());
        assert!(!store.remove_follower(&a, &star, &user("a")).await.unwrap());
        assert_eq!(
            store.list_followers(&a, &star, None, 10).await.unwrap(),
            [user("b"), user("c"), user("d")]
        );
    }

    /// Follows of one user added at once with overlapping followers in different orders: none
    /// may fail (PostgreSQL reports a deadlock when two inserts wait on each other's rows) and
    /// each new follow is counted once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_adds_never_deadlock_and_count_each_follow_once() {
        let store = store().await;
        let (a, _) = tenants(&store).await;
        let star = user("star");
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let (store, a, star) = (store.clone(), a.clone(), star.clone());
                tokio::spawn(async move {
                    let mut added = 0;
                    for round in 0..8 {
                        // 300 of 400 followers, in an order of its own.
                        let mut fans: Vec<UserId> = (0..300)
                            .map(|j| user(&format!("f{:03}", (j * 7 + i * 13 + round) % 400)))
                            .collect();
                        if i % 2 == 1 {
                            fans.reverse();
                        }
                        added += store.add_followers(&a, &star, &fans).await?;
                    }
                    Ok::<_, crate::StoreError>(added)
                })
            })
            .collect();
        let added: u64 = all_succeed(tasks).await.into_iter().sum();
        assert_eq!(added, 400, "each follow counted once");
    }
}
