//! Users, their channel addresses and push devices.

use std::collections::BTreeMap;

use fanout_domain::user::{Device, EmailAddress, Timezone, User};
use fanout_domain::{Channel, TenantId, UserId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::bulk::Insert;
use crate::suppressions::SuppressionReason;
use crate::{Result, Store, now_ms, parse_col};

const T: &str = "users";

/// The columns [`user_from_row`] reads, for `SELECT` lists.
pub(crate) const USER_COLUMNS: &str = "user_id, email, name, locale, timezone, devices";

const UPSERT: Insert<'static> = Insert {
    head: "INSERT INTO users
        (tenant_id, user_id, email, name, locale, timezone, devices, updated_at_ms)",
    columns: 8,
    tail: "ON CONFLICT (tenant_id, user_id) DO UPDATE SET
        email = excluded.email, name = excluded.name, locale = excluded.locale,
        timezone = excluded.timezone, devices = excluded.devices,
        updated_at_ms = excluded.updated_at_ms",
};

/// Builds a [`User`] from a row with the [`USER_COLUMNS`].
pub(crate) fn user_from_row(row: &AnyRow) -> Result<User> {
    let user_id: String = row.try_get("user_id")?;
    let email: Option<String> = row.try_get("email")?;
    let timezone: Option<String> = row.try_get("timezone")?;
    let devices: Option<String> = row.try_get("devices")?;
    Ok(User {
        user_id: parse_col(T, UserId::parse(&user_id))?,
        email: email
            .map(|e| parse_col(T, EmailAddress::parse(&e)))
            .transpose()?,
        name: row.try_get("name")?,
        locale: row.try_get("locale")?,
        timezone: timezone
            .map(|tz| parse_col(T, Timezone::parse(&tz)))
            .transpose()?,
        devices: devices
            .map(|d| parse_col(T, serde_json::from_str::<Vec<Device>>(&d)))
            .transpose()?
            .unwrap_or_default(),
    })
}

/// A user as the columns of one upsert row; `devices` is JSON, NULL when there are none.
struct UserRow<'a> {
    user: &'a User,
    devices: Option<String>,
}

impl<'a> UserRow<'a> {
    fn new(user: &'a User) -> Result<Self> {
        let devices = if user.devices.is_empty() {
            None
        } else {
            Some(parse_col(T, serde_json::to_string(&user.devices))?)
        };
        Ok(Self { user, devices })
    }
}

impl Store {
    /// Creates or replaces a user's profile.
    pub async fn upsert_user(&self, tenant_id: &TenantId, user: &User) -> Result<()> {
        self.upsert_users(tenant_id, std::slice::from_ref(user))
            .await
    }

    /// Creates or replaces many profiles in one transaction, a few hundred rows per statement:
    /// the bulk path for imports, seeding and benchmarks. When `users` names someone twice,
    /// the last profile wins.
    pub async fn upsert_users(&self, tenant_id: &TenantId, users: &[User]) -> Result<()> {
        // One statement may not touch a row twice (PostgreSQL refuses `ON CONFLICT DO UPDATE`
        // on a row it inserted itself), so duplicates go first. Id order also keeps B-tree
        // inserts local.
        let latest: BTreeMap<&UserId, &User> = users.iter().map(|u| (&u.user_id, u)).collect();
        let rows = latest
            .into_values()
            .map(UserRow::new)
            .collect::<Result<Vec<_>>>()?;
        let now = now_ms();
        let (mut tx, _writer) = self.write_tx().await?;
        UPSERT
            .execute(&mut tx, &rows, |query, row| {
                let user = row.user;
                query
                    .bind(tenant_id.as_str())
                    .bind(user.user_id.as_str())
                    .bind(user.email.as_ref().map(EmailAddress::as_str))
                    .bind(user.name.as_deref())
                    .bind(user.locale.as_deref())
                    .bind(user.timezone.as_ref().map(Timezone::as_str))
                    .bind(row.devices.as_deref())
                    .bind(now)
            })
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Erases a user (GDPR/CCPA): profile and devices, inbox, follows in both directions,
    /// segment memberships, preferences, the suppression-list entries for their email address
    /// and device tokens (addresses are personal data), their inbox stream events and tokens,
    /// and the provider's words in their receipts and dead letters (which can quote an
    /// address), in one transaction. Receipts and audience
    /// snapshots keep only the opaque user id; a running request then finds no profile and
    /// suppresses the user. Returns whether the user existed.
    pub async fn delete_user(&self, tenant_id: &TenantId, user_id: &UserId) -> Result<bool> {
        let (mut tx, _writer) = self.write_tx().await?;
        // Their stream events and tokens go first: the tokens stop working at once. Revoking
        // logs events, which takes the inbox counter; writers holding the counter go on to
        // lock inbox, dead-letter and receipt rows (reads, deliveries), so an erasure must
        // take it before it locks any of those, or the two deadlock on PostgreSQL.
        crate::inbox::erase_user_streams(&mut tx, tenant_id, user_id).await?;
        // The row is deleted and read in one statement; the addresses find the user's
        // suppression entries.
        let sql = format!(
            "DELETE FROM users WHERE tenant_id = $1 AND user_id = $2 RETURNING {USER_COLUMNS}"
        );
        let profile = sqlx::query(&sql)
            .bind(tenant_id.as_str())
            .bind(user_id.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()?;
        let existed = profile.is_some();
        if let Some(profile) = &profile {
            let tokens: Vec<&str> = profile.devices.iter().map(|d| d.token.as_str()).collect();
            let email = profile.email.as_ref().map(EmailAddress::as_str);
            crate::suppressions::erase_addresses(&mut tx, tenant_id, email, &tokens).await?;
        }
        // Under the document's lock: a rule change committing beside the erasure would
        // otherwise keep the rows it added and lose the ones it updated.
        crate::preferences::lock_document(self, &mut tx, tenant_id, user_id).await?;
        crate::preferences::erase(&mut tx, tenant_id, user_id).await?;
        sqlx::query(
            "INSERT INTO erasures (tenant_id, user_id, erased_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id, user_id) DO UPDATE SET erased_at_ms = excluded.erased_at_ms",
        )
        .bind(tenant_id.as_str())
        .bind(user_id.as_str())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        for sql in [
            "DELETE FROM inbox WHERE tenant_id = $1 AND user_id = $2",
            "DELETE FROM follows WHERE tenant_id = $1 AND (user_id = $2 OR follower_id = $2)",
            "DELETE FROM segment_members WHERE tenant_id = $1 AND user_id = $2",
        ] {
            sqlx::query(sql)
                .bind(tenant_id.as_str())
                .bind(user_id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        // Dead letters before receipts, each locked in instance order: the order a delivery
        // being recorded for the user locks them in (see `write_deliveries`). A plain UPDATE
        // locks rows in whatever order its scan finds them, and deadlocked with it. (Instance
        // ids are `in_` and lowercase hex, so every collation orders them as Rust does.)
        for table in ["dead_letters", "receipts"] {
            sqlx::query(&format!(
                "UPDATE {table} SET error_message = NULL WHERE instance_id IN (
                   SELECT instance_id FROM {table} WHERE tenant_id = $1 AND user_id = $2
                   ORDER BY instance_id{})",
                self.lock_rows()
            ))
            .bind(tenant_id.as_str())
            .bind(user_id.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(existed)
    }

    /// The tenant's users erased at or after `since_ms`.
    pub async fn erased_since(
        &self,
        tenant_id: &TenantId,
        since_ms: fanout_domain::UnixMillis,
    ) -> Result<Vec<UserId>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT user_id FROM erasures WHERE tenant_id = $1 AND erased_at_ms >= $2",
        )
        .bind(tenant_id.as_str())
        .bind(since_ms)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|(id,)| parse_col("erasures", UserId::parse(&id)))
            .collect()
    }

    /// Retires a push token the provider says is dead (APNs 410 Unregistered, FCM
    /// UNREGISTERED): it leaves the user's devices and goes on the tenant's suppression list, so
    /// it is never used again even if the app registers it anew. Idempotent.
    pub async fn invalidate_device(
        &self,
        tenant_id: &TenantId,
        user_id: &UserId,
        token: &str,
        reason: &str,
    ) -> Result<()> {
        let (mut tx, _writer) = self.write_tx().await?;
        // Write first (a no-op) so the row is locked before it is read: SQLite's write_tx holds
        // the database lock already, but a server database locks rows, and two invalidations
        // reading the same devices would each write back the other's token.
        sqlx::query("UPDATE users SET devices = devices WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant_id.as_str())
            .bind(user_id.as_str())
            .execute(&mut *tx)
            .await?;
        let devices: Option<Option<String>> =
            sqlx::query_scalar("SELECT devices FROM users WHERE tenant_id = $1 AND user_id = $2")
                .bind(tenant_id.as_str())
                .bind(user_id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(Some(json)) = devices {
            let mut devices: Vec<Device> = parse_col(T, serde_json::from_str(&json))?;
            let before = devices.len();
            devices.retain(|d| d.token.as_str() != token);
            if devices.len() != before {
                let json = if devices.is_empty() {
                    None
                } else {
                    Some(parse_col(T, serde_json::to_string(&devices))?)
                };
                sqlx::query(
                    "UPDATE users SET devices = $1, updated_at_ms = $2
                     WHERE tenant_id = $3 AND user_id = $4",
                )
                .bind(json)
                .bind(now_ms())
                .bind(tenant_id.as_str())
                .bind(user_id.as_str())
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        self.suppress(
            tenant_id,
            Channel::Push,
            token,
            SuppressionReason::InvalidToken,
            Some(reason),
        )
        .await?;
        Ok(())
    }

    /// Returns a user's profile.
    pub async fn get_user(&self, tenant_id: &TenantId, user_id: &UserId) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND user_id = $2");
        let row = sqlx::query(&sql)
            .bind(tenant_id.as_str())
            .bind(user_id.as_str())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Instant;

    use fanout_domain::user::{DeviceToken, Platform};

    use crate::test_support::{all_succeed, store};

    use super::*;

    /// A user with an email address and nothing else.
    pub(crate) fn user(id: &str) -> User {
        User {
            user_id: UserId::parse(id).unwrap(),
            email: Some(EmailAddress::parse(&format!("{id}@example.com")).unwrap()),
            name: None,
            locale: None,
            timezone: None,
            devices: Vec::new(),
        }
    }

    #[tokio::test]
    async fn deleting_a_user_erases_their_data_in_their_tenant_only() {
        use fanout_domain::inbox::InboxMessage;
        use fanout_domain::receipt::{DeliveryStatus, Receipt};
        use fanout_domain::{Channel, DedupeKey, InstanceId, SegmentId};

        let store = store().await;
        let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
        for t in [&a, &b] {
            store.upsert_tenant(t, "T").await.unwrap();
            store
                .upsert_users(t, &[user("gone"), user("star")])
                .await
                .unwrap();
        }
        let gone = UserId::parse("gone").unwrap();
        let star = UserId::parse("star").unwrap();
        store
            .add_followers(&a, &star, std::slice::from_ref(&gone))
            .await
            .unwrap();
        store
            .add_followers(&a, &gone, std::slice::from_ref(&star))
            .await
            .unwrap();
        let segment = SegmentId::parse("s").unwrap();
        store.upsert_segment(&a, &segment, "S", &[]).await.unwrap();
        store
            .add_segment_members(&a, &segment, std::slice::from_ref(&gone))
            .await
            .unwrap();
        let req = DedupeKey::new(a.clone(), "k").unwrap().request_id();
        let id = InstanceId::derive(&req, &gone, Channel::Email);
        let receipt = Receipt {
            instance_id: id.clone(),
            request_id: req.clone(),
            user_id: gone.clone(),
            channel: Channel::Email,
            status: DeliveryStatus::Failed,
            provider_message_id: None,
            attempts: 1,
            latency_ms: None,
            error_code: Some("smtp_550".into()),
            error_message: Some("550 <gone@example.com> unknown".into()),
            updated_at_ms: 1,
        };
        let message = InboxMessage {
            id: InstanceId::derive(&req, &gone, Channel::InApp),
            user_id: gone.clone(),
            request_id: req.clone(),
            title: "t".into(),
            body: "b".into(),
            action_url: None,
            data: serde_json::json!({}),
            created_at_ms: 1,
            read_at_ms: None,
        };
        store
            .record_deliveries(&a, &[receipt], &[message])
            .await
            .unwrap();

        assert!(store.delete_user(&a, &gone).await.unwrap());
        assert!(!store.delete_user(&a, &gone).await.unwrap(), "already gone");
        assert!(store.get_user(&a, &gone).await.unwrap().is_none());
        assert!(
            store
                .list_inbox(&a, &gone, None, 10)
                .await
                .unwrap()
                .is_empty()
        );
        // Follows in both directions are gone.
        for of in [&star, &gone] {
            let followers = store.list_followers(&a, of, None, 10).await.unwrap();
            assert!(followers.is_empty(), "{of}");
        }
        let members = store
            .list_segment_members(&a, &segment, None, 10)
            .await
            .unwrap();
        assert!(members.is_empty());
        let receipts = store.list_receipts(&a, &req, None, 10).await.unwrap();
        assert_eq!(
            receipts.len(),
            1,
            "the receipt stays, without personal data"
        );
        assert_eq!(receipts[0].error_message, None);
        assert_eq!(receipts[0].error_code.as_deref(), Some("smtp_550"));
        // The other tenant's user of the same id is untouched.
        assert!(store.get_user(&b, &gone).await.unwrap().is_some());
        // Deliveries holding profiles loaded earlier learn of the erasure.
        assert_eq!(store.erased_since(&a, 0).await.unwrap(), vec![gone.clone()]);
        assert!(store.erased_since(&a, i64::MAX).await.unwrap().is_empty());
        assert!(store.erased_since(&b, 0).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn users_upsert_and_stay_in_their_tenant() {
        let store = store().await;
        let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
        store.upsert_tenant(&a, "A").await.unwrap();
        store.upsert_tenant(&b, "B").await.unwrap();
        let mut user = User {
            name: Some("Ada".into()),
            ..user("u1")
        };
        store.upsert_user(&a, &user).await.unwrap();
        user.name = Some("Ada L.".into());
        store.upsert_user(&a, &user).await.unwrap();
        assert_eq!(
            store.get_user(&a, &user.user_id).await.unwrap(),
            Some(user.clone())
        );
        assert_eq!(store.get_user(&b, &user.user_id).await.unwrap(), None);
    }

    #[tokio::test]
    async fn time_zones_and_devices_round_trip_and_can_be_cleared() {
        let store = store().await;
        let t = TenantId::parse("a").unwrap();
        store.upsert_tenant(&t, "A").await.unwrap();
        let mut user = User {
            timezone: Some(Timezone::parse("Europe/Paris").unwrap()),
            devices: vec![
                Device {
                    platform: Platform::Apns,
                    token: DeviceToken::parse("apns-1").unwrap(),
                },
                Device {
                    platform: Platform::Fcm,
                    token: DeviceToken::parse("fcm:2").unwrap(),
                },
            ],
            ..user("u1")
        };
        store.upsert_user(&t, &user).await.unwrap();
        assert_eq!(
            store.get_user(&t, &user.user_id).await.unwrap(),
            Some(user.clone())
        );
        user.timezone = None;
        user.devices.clear();
        store.upsert_user(&t, &user).await.unwrap();
        assert_eq!(store.get_user(&t, &user.user_id).await.unwrap(), Some(user));
    }

    #[tokio::test]
    async fn a_dead_push_token_leaves_the_devices_and_is_suppressed() {
        let store = store().await;
        let t = TenantId::parse("a").unwrap();
        store.upsert_tenant(&t, "A").await.unwrap();
        let device = |platform, token: &str| Device {
            platform,
            token: DeviceToken::parse(token).unwrap(),
        };
        let user = User {
            devices: vec![
                device(Platform::Apns, "dead"),
                device(Platform::Fcm, "alive"),
            ],
            ..user("u1")
        };
        store.upsert_user(&t, &user).await.unwrap();
        for _ in 0..2 {
            store
                .invalidate_device(&t, &user.user_id, "dead", "apns_Unregistered")
                .await
                .unwrap();
        }
        let now = store.get_user(&t, &user.user_id).await.unwrap().unwrap();
        assert_eq!(now.devices, vec![device(Platform::Fcm, "alive")]);
        let suppressed = store
            .suppressed_addresses(&t, Channel::Push, &["dead", "alive"])
            .await
            .unwrap();
        assert_eq!(suppressed, ["dead".to_owned()].into_iter().collect());
        // The last device going leaves none; an unknown user is only suppressed.
        store
            .invalidate_device(&t, &user.user_id, "alive", "fcm_UNREGISTERED")
            .await
            .unwrap();
        assert!(
            store
                .get_user(&t, &user.user_id)
                .await
                .unwrap()
                .unwrap()
                .devices
                .is_empty()
        );
        let ghost = UserId::parse("ghost").unwrap();
        store
            .invalidate_device(&t, &ghost, "ghost-token", "fcm_UNREGISTERED")
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn bulk_upserts_write_every_user_once_and_the_last_copy_wins() {
        let store = store().await;
        let t = TenantId::parse("a").unwrap();
        store.upsert_tenant(&t, "A").await.unwrap();
        let mut users: Vec<User> = (0..1_203).map(|i| user(&format!("u{i:05}"))).collect();
        users.push(User {
            name: Some("second copy".into()),
            ..user("u00007")
        });
        store.upsert_users(&t, &users).await.unwrap();
        store.upsert_users(&t, &users).await.unwrap();
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE tenant_id = $1")
            .bind(t.as_str())
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(count, 1_203);
        let seventh = store
            .get_user(&t, &users[7].user_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seventh.name.as_deref(), Some("second copy"));
        let last = store.get_user(&t, &users[1_202].user_id).await.unwrap();
        assert_eq!(last, Some(users[1_202].clone()));
        store.upsert_users(&t, &[]).await.unwrap();
    }

    /// Prints its timing with `--nocapture`; quote a `--release` figure, as the debug build's
    /// SQLite is compiled without optimisation.
    #[tokio::test]
    async fn a_hundred_thousand_users_upsert_in_seconds() {
        let store = store().await;
        let t = TenantId::parse("a").unwrap();
        store.upsert_tenant(&t, "A").await.unwrap();
        let users: Vec<User> = (0..100_000).map(|i| user(&format!("u{i:06}"))).collect();
        let started = Instant::now();
        store.upsert_users(&t, &users).await.unwrap();
        let elapsed = started.elapsed();
        eprintln!("upsert_users: 100000 users in {elapsed:?}");
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE tenant_id = $1")
            .bind(t.as_str())
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(count, 100_000);
        assert!(elapsed.as_secs() < 60, "took {elapsed:?}");
    }

    /// Erasing a user while their device marks messages read and a delivery to them is being
    /// recorded: every call succeeds. Those writers take the inbox counter and then the user's
    /// rows (dead letters, then receipts, each in instance order); an erasure taking the user's
    /// rows and then the counter (to log its token revocations), or the rows in another order,
    /// deadlocked with them on PostgreSQL, which failed one side.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn erasing_a_user_beside_their_reads_and_deliveries_never_deadlocks() {
        use fanout_domain::inbox::InboxMessage;
        use fanout_domain::receipt::{DeliveryStatus, Receipt};
        use fanout_domain::{Channel, DedupeKey, InstanceId};

        let store = store().await;
        let t = TenantId::parse("a").unwrap();
        store.upsert_tenant(&t, "A").await.unwrap();
        let message = |u: &UserId, key: &str| {
            let req = DedupeKey::new(t.clone(), key).unwrap().request_id();
            InboxMessage {
                id: InstanceId::derive(&req, u, Channel::InApp),
                user_id: u.clone(),
                request_id: req,
                title: key.to_owned(),
                body: "b".into(),
                action_url: None,
                data: serde_json::json!({}),
                created_at_ms: 1,
                read_at_ms: None,
            }
        };
        let failed = |u: &UserId, key: &str| {
            let req = DedupeKey::new(t.clone(), key).unwrap().request_id();
            Receipt {
                instance_id: InstanceId::derive(&req, u, Channel::Email),
                request_id: req,
                user_id: u.clone(),
                channel: Channel::Email,
                status: DeliveryStatus::Failed,
                provider_message_id: None,
                attempts: 1,
                latency_ms: None,
                error_code: Some("smtp_550".into()),
                error_message: Some("unknown".into()),
                updated_at_ms: 1,
            }
        };
        for round in 0..8 {
            let u = UserId::parse(&format!("u{round}")).unwrap();
            store.upsert_user(&t, &user(u.as_str())).await.unwrap();
            // With a live token the erasure logs its revocation (the counter); without one it
            // only races the writers' rows.
            if round % 2 == 0 {
                store
                    .issue_inbox_token(&t, &u, crate::now_ms() + 60_000)
                    .await
                    .unwrap();
            }
            let messages: Vec<InboxMessage> =
                (0..60).map(|i| message(&u, &format!("m{i}"))).collect();
            let receipts: Vec<Receipt> = (0..60).map(|i| failed(&u, &format!("r{i}"))).collect();
            store
                .record_page_deliveries(&t, 0, &receipts, &messages)
                .await
                .unwrap();
            let mut tasks = Vec::new();
            for w in 0..15 {
                let (store, t, u) = (store.clone(), t.clone(), u.clone());
                let (messages, receipts) = (messages.clone(), receipts.clone());
                let fresh: Vec<InboxMessage> = (0..4)
                    .map(|i| message(&u, &format!("new-{w}-{i}")))
                    .collect();
                tasks.push(tokio::spawn(async move {
                    if w % 3 == 0 {
                        // A delivery: new in-app messages (the counter), then the receipts.
                        for m in fresh {
                            store.record_page_deliveries(&t, 0, &receipts, &[m]).await?;
                        }
                    } else {
                        for m in messages.iter().skip(w).step_by(15) {
                            store.mark_inbox_read(&t, &u, &m.id, 5).await?;
                        }
                    }
                    Ok::<_, crate::StoreError>(())
                }));
            }
            let eraser = {
                let (store, t, u) = (store.clone(), t.clone(), u.clone());
                tokio::spawn(async move { store.delete_user(&t, &u).await.map(|_| ()) })
            };
            tasks.push(eraser);
            all_succeed(tasks).await;
        }
    }
}
