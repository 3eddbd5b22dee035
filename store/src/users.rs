//! Users, their channel addresses and push devices.

use std::collections::BTreeMap;

use fanout_domain::quiet::QuietHours;
use fanout_domain::user::{Device, EmailAddress, Timezone, User};
use fanout_domain::webhook::{WebhookEventType, event_id};
use fanout_domain::{Channel, TenantId, UserId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::bulk::Insert;
use crate::suppressions::SuppressionReason;
use crate::webhooks::outbox::NewEvent;
use crate::{Result, Store, now_ms, parse_col};

const T: &str = "users";

/// The columns [`user_from_row`] reads, for `SELECT` lists.
pub(crate) const USER_COLUMNS: &str =
    "user_id, email, name, locale, timezone, devices, quiet_hours";

const UPSERT: Insert<'static> = Insert {
    head: "INSERT INTO users
        (tenant_id, user_id, email, name, locale, timezone, devices, quiet_hours,
         updated_at_ms)",
    columns: 9,
    tail: "ON CONFLICT (tenant_id, user_id) DO UPDATE SET
        email = excluded.email, name = excluded.name, locale = excluded.locale,
        timezone = excluded.timezone, devices = excluded.devices,
        quiet_hours = excluded.quiet_hours, updated_at_ms = excluded.updated_at_ms",
};

/// Builds a [`User`] from a row with the [`USER_COLUMNS`].
pub(crate) fn user_from_row(row: &AnyRow) -> Result<User> {
    let user_id: String = row.try_get("user_id")?;
    let email: Option<String> = row.try_get("email")?;
    let timezone: Option<String> = row.try_get("timezone")?;
    let devices: Option<String> = row.try_get("devices")?;
    let quiet_hours: Option<String> = row.try_get("quiet_hours")?;
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
        // Written only from a parsed window; one that no longer parses is no window.
        quiet_hours: quiet_hours.as_deref().and_then(QuietHours::from_stored),
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
                    .bind(user.quiet_hours.map(|q| q.to_string()))
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
        // The profile goes first, read and deleted in one statement (its addresses find the
        // user's suppression entries). A delivery writing the user's in-app messages holds
        // their profile row (`FOR KEY SHARE`, see `record_page_deliveries`) until it commits,
        // so this waits for it, and every statement below sees what it wrote; a delivery
        // starting later finds no profile and writes nothing. Deliveries take that row before
        // the inbox counter, so the erasure does too.
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
        // Their stream events and tokens next: the tokens stop working at once. Revoking logs
        // events, which takes the inbox counter; writers holding the counter go on to lock
        // inbox, dead-letter and receipt rows (reads, deliveries), so an erasure must take it
        // before it locks any of those, or the two deadlock on PostgreSQL.
        crate::inbox::erase_user_streams(&mut tx, tenant_id, user_id).await?;
        if let Some(profile) = &profile {
            let tokens: Vec<&str> = profile.devices.iter().map(|d| d.token.as_str()).collect();
            let email = profile.email.as_ref().map(EmailAddress::as_str);
            crate::suppressions::erase_addresses(&mut tx, tenant_id, email, &tokens).await?;
        }
        // Under the document's lock: a rule change committing beside the erasure would
        // otherwise keep the rows it added and lose the ones it updated.
        crate::preferences::lock_document(self, &mut tx, tenant_id, user_id).await?;
        crate::preferences::erase(&mut tx, tenant_id, user_id).await?;
        crate::frequency_caps::erase(&mut tx, tenant_id, user_id).await?;
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
                let kind = WebhookEventType::TokenInvalidated;
                crate::webhooks::outbox::enqueue(&mut tx, tenant_id, || {
                    vec![NewEvent {
                        kind,
                        id: event_id(kind, &[user_id.as_str(), token]),
                        at_ms: now_ms(),
                        data: serde_json::json!({
                            "user_id": user_id.as_str(),
                            "token": token,
                            "reason": reason,
                        }),
                    }]
                })
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
pub(crate) mod tests;
