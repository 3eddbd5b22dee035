//! Quiet hours as the store holds them: each user's window (a profile column), the tenant's
//! default and bypass categories, and the deferred receipts a request releases later.

use fanout_domain::quiet::{QuietHours, TenantQuietHours};
use fanout_domain::{RequestId, TenantId, UnixMillis, UserId};
use sqlx::Row;

use crate::{Result, Store, parse_col};

impl Store {
    /// The tenant's default window and bypass categories (empty for an unknown tenant).
    pub async fn tenant_quiet_hours(&self, tenant_id: &TenantId) -> Result<TenantQuietHours> {
        let row = sqlx::query("SELECT quiet_hours, quiet_bypass FROM tenants WHERE tenant_id = $1")
            .bind(tenant_id.as_str())
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else {
            return Ok(TenantQuietHours::default());
        };
        let window: Option<String> = row.try_get("quiet_hours")?;
        let bypass: Option<String> = row.try_get("quiet_bypass")?;
        Ok(TenantQuietHours {
            default: window.as_deref().and_then(QuietHours::from_stored),
            bypass_categories: bypass
                .map(|b| parse_col("tenants", serde_json::from_str(&b)))
                .transpose()?
                .unwrap_or_default(),
        })
    }

    /// Replaces the tenant's quiet-hours setting. Returns false if the tenant does not exist.
    pub async fn set_tenant_quiet_hours(
        &self,
        tenant_id: &TenantId,
        setting: &TenantQuietHours,
    ) -> Result<bool> {
        let bypass = (!setting.bypass_categories.is_empty())
            .then(|| serde_json::to_string(&setting.bypass_categories))
            .transpose()
            .map_err(|e| crate::StoreError::Corrupt {
                table: "tenants",
                reason: format!("bypass categories: {e}"),
            })?;
        let done = sqlx::query(
            "UPDATE tenants SET quiet_hours = $1, quiet_bypass = $2 WHERE tenant_id = $3",
        )
        .bind(setting.default.map(|w| w.to_string()))
        .bind(bypass)
        .bind(tenant_id.as_str())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Whether a request of `category` may be deferred by quiet hours at all: the category
    /// does not bypass them, and the tenant has a default window or a user with one. Asked
    /// once per request when it is accepted; a tenant that uses no quiet hours pays nothing
    /// more per delivery.
    pub async fn quiet_hours_apply(&self, tenant_id: &TenantId, category: &str) -> Result<bool> {
        let setting = self.tenant_quiet_hours(tenant_id).await?;
        if setting.bypass_categories.iter().any(|c| c == category) {
            return Ok(false);
        }
        if setting.default.is_some() {
            return Ok(true);
        }
        let any: Option<String> = sqlx::query_scalar(
            "SELECT user_id FROM users WHERE tenant_id = $1 AND quiet_hours IS NOT NULL LIMIT 1",
        )
        .bind(tenant_id.as_str())
        .fetch_optional(self.pool())
        .await?;
        Ok(any.is_some())
    }

    /// The recipients of a request with a delivery still deferred by their quiet hours, each
    /// with its earliest release, in user-id order.
    pub async fn deferred_releases(
        &self,
        request_id: &RequestId,
    ) -> Result<Vec<(UserId, UnixMillis)>> {
        let rows = sqlx::query(
            "SELECT user_id, MIN(release_at_ms) AS release_at_ms FROM receipts
             WHERE request_id = $1 AND status = 'deferred'
             GROUP BY user_id ORDER BY user_id",
        )
        .bind(request_id.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let user: String = row.try_get("user_id")?;
                let at: Option<i64> = row.try_get("release_at_ms")?;
                Ok((
                    parse_col("receipts", UserId::parse(&user))?,
                    at.unwrap_or_default(),
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use fanout_domain::receipt::{DeliveryStatus, Receipt};
    use fanout_domain::{Channel, InstanceId};

    use crate::now_ms;
    use crate::test_support::store;

    use super::*;

    #[tokio::test]
    async fn the_tenant_setting_round_trips_and_decides_whether_quiet_hours_apply() {
        let store = store().await;
        let t = TenantId::parse("acme").unwrap();
        store.upsert_tenant(&t, "Acme").await.unwrap();
        assert!(!store.quiet_hours_apply(&t, "social").await.unwrap());
        let setting = TenantQuietHours {
            default: Some(QuietHours::parse("22:00", "08:00").unwrap()),
            bypass_categories: vec!["security".into()],
        };
        assert!(store.set_tenant_quiet_hours(&t, &setting).await.unwrap());
        assert_eq!(store.tenant_quiet_hours(&t).await.unwrap(), setting);
        assert!(store.quiet_hours_apply(&t, "social").await.unwrap());
        assert!(!store.quiet_hours_apply(&t, "security").await.unwrap());

        // No default, but one user with a window of their own.
        store
            .set_tenant_quiet_hours(&t, &TenantQuietHours::default())
            .await
            .unwrap();
        assert!(!store.quiet_hours_apply(&t, "social").await.unwrap());
        let mut user = crate::users::tests::user("night-owl");
        user.quiet_hours = Some(QuietHours::parse("01:00", "09:00").unwrap());
        store.upsert_user(&t, &user).await.unwrap();
        assert!(store.quiet_hours_apply(&t, "social").await.unwrap());
        let back = store
            .get_user(&t, &user.user_id)
            .await
            .unwrap()
            .expect("user");
        assert_eq!(back.quiet_hours, user.quiet_hours);
    }

    #[tokio::test]
    async fn deferred_receipts_list_their_users_and_earliest_release() {
        let store = store().await;
        let t = TenantId::parse("acme").unwrap();
        store.upsert_tenant(&t, "Acme").await.unwrap();
        let request = RequestId::parse("ntf-quiet-1").unwrap();
        let receipt = |user: &str, channel, status, release: Option<i64>| {
            let user_id = UserId::parse(user).unwrap();
            Receipt {
                instance_id: InstanceId::derive(&request, &user_id, channel),
                request_id: request.clone(),
                user_id,
                channel,
                status,
                provider_message_id: None,
                provider: None,
                attempts: 0,
                latency_ms: None,
                error_code: None,
                error_message: None,
                updated_at_ms: now_ms(),
                release_at_ms: release,
            }
        };
        store
            .upsert_receipts(
                &t,
                &[
                    receipt("b", Channel::Email, DeliveryStatus::Deferred, Some(2_000)),
                    receipt("b", Channel::InApp, DeliveryStatus::Deferred, Some(1_000)),
                    receipt("a", Channel::Email, DeliveryStatus::Deferred, Some(3_000)),
                    receipt("c", Channel::Email, DeliveryStatus::Delivered, Some(500)),
                ],
            )
            .await
            .unwrap();
        let got = store.deferred_releases(&request).await.unwrap();
        let got: Vec<(&str, i64)> = got.iter().map(|(u, at)| (u.as_str(), *at)).collect();
        assert_eq!(got, vec![("a", 3_000), ("b", 1_000)]);

        // Delivered later, a receipt keeps its release time.
        store
            .upsert_receipts(
                &t,
                &[receipt(
                    "a",
                    Channel::Email,
                    DeliveryStatus::Delivered,
                    None,
                )],
            )
            .await
            .unwrap();
        let a = UserId::parse("a").unwrap();
        let id = InstanceId::derive(&request, &a, Channel::Email);
        let back = store
            .get_receipts(&request, Channel::Email, &[a])
            .await
            .unwrap()
            .remove(&id)
            .expect("receipt");
        assert_eq!(back.release_at_ms, Some(3_000));
        assert_eq!(back.status, DeliveryStatus::Delivered);
    }
}
