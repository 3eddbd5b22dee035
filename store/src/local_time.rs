//! Local-time sends: the tenant's default zone, the zones of a request's recipients, and the
//! regrouping of its snapshot so each page holds recipients of one release instant.
//!
//! A local-time request resolves its audience as any other, in user-id order; then its
//! planner reads each recipient's zone ([`Store::audience_zones`]), computes when each gets the
//! request, and renumbers the snapshot's pages ([`Store::repage_audience`]) so the recipients
//! of each instant are a contiguous run of pages the workflow releases on one timer.

use fanout_domain::{RequestId, TenantId, UserId};
use sqlx::Row;

use crate::{Result, Store, parse_col};

impl Store {
    /// The zone the tenant's users without one get local-time sends in, if it set one.
    pub async fn default_timezone(&self, tenant_id: &TenantId) -> Result<Option<String>> {
        let zone: Option<Option<String>> =
            sqlx::query_scalar("SELECT default_timezone FROM tenants WHERE tenant_id = $1")
                .bind(tenant_id.as_str())
                .fetch_optional(self.pool())
                .await?;
        Ok(zone.flatten())
    }

    /// Sets (or with `None` clears) the tenant's default zone. Returns false if the tenant
    /// does not exist.
    pub async fn set_default_timezone(
        &self,
        tenant_id: &TenantId,
        zone: Option<&str>,
    ) -> Result<bool> {
        let done = sqlx::query("UPDATE tenants SET default_timezone = $1 WHERE tenant_id = $2")
            .bind(zone)
            .bind(tenant_id.as_str())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every recipient of the request's snapshot with their zone as their profile says now
    /// (`None`: none set, or the profile is gone), in user-id order.
    pub async fn audience_zones(
        &self,
        tenant_id: &TenantId,
        request_id: &RequestId,
    ) -> Result<Vec<(UserId, Option<String>)>> {
        let rows = sqlx::query(
            "SELECT a.user_id AS member, u.timezone
             FROM audience a
             LEFT JOIN users u ON u.tenant_id = $1 AND u.user_id = a.user_id
             WHERE a.request_id = $2
             ORDER BY a.user_id",
        )
        .bind(tenant_id.as_str())
        .bind(request_id.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let member: String = row.try_get("member")?;
                Ok((
                    parse_col("audience", UserId::parse(&member))?,
                    row.try_get("timezone")?,
                ))
            })
            .collect()
    }

    /// Moves each listed recipient of the request's snapshot to the page it is paired with,
    /// one transaction per page. Idempotent: a retry with the same pairs leaves the same pages.
    pub async fn repage_audience(
        &self,
        request_id: &RequestId,
        pages: &[(u32, Vec<UserId>)],
    ) -> Result<()> {
        for (page, users) in pages {
            let (mut tx, _writer) = self.write_tx().await?;
            self.execute_by_keys(
                &mut tx,
                users,
                |list| {
                    format!(
                        "UPDATE audience SET page_no = $1
                         WHERE request_id = $2 AND user_id IN ({list})"
                    )
                },
                |query| query.bind(i64::from(*page)).bind(request_id.as_str()),
            )
            .await?;
            tx.commit().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::store;

    use super::*;

    #[tokio::test]
    async fn a_snapshot_is_repaged_by_the_pairs_given_and_its_zones_read_back() {
        let store = store().await;
        let t = TenantId::parse("acme").unwrap();
        store.upsert_tenant(&t, "Acme").await.unwrap();
        assert_eq!(store.default_timezone(&t).await.unwrap(), None);
        assert!(
            store
                .set_default_timezone(&t, Some("Europe/Paris"))
                .await
                .unwrap()
        );
        assert_eq!(
            store.default_timezone(&t).await.unwrap().as_deref(),
            Some("Europe/Paris")
        );
        let nobody = TenantId::parse("nobody").unwrap();
        assert!(!store.set_default_timezone(&nobody, None).await.unwrap());

        let mut users = Vec::new();
        for (i, zone) in ["Pacific/Auckland", "Europe/Paris", "America/Los_Angeles"]
            .into_iter()
            .enumerate()
        {
            let mut user = crate::users::tests::user(&format!("u{i}"));
            user.timezone = Some(fanout_domain::user::Timezone::parse(zone).unwrap());
            users.push(user);
        }
        users.push(crate::users::tests::user("u3"));
        store.upsert_users(&t, &users).await.unwrap();
        let request = RequestId::parse("ntf-local").unwrap();
        let ids: Vec<UserId> = users.iter().map(|u| u.user_id.clone()).collect();
        store
            .write_audience_page(&request, 0, &ids[..2])
            .await
            .unwrap();
        store
            .write_audience_page(&request, 1, &ids[2..])
            .await
            .unwrap();

        let zones = store.audience_zones(&t, &request).await.unwrap();
        assert_eq!(
            zones
                .iter()
                .map(|(u, z)| (u.as_str(), z.as_deref()))
                .collect::<Vec<_>>(),
            [
                ("u0", Some("Pacific/Auckland")),
                ("u1", Some("Europe/Paris")),
                ("u2", Some("America/Los_Angeles")),
                ("u3", None)
            ]
        );

        let pages = [
            (0, vec![ids[2].clone()]),
            (1, vec![ids[0].clone(), ids[3].clone()]),
            (2, vec![ids[1].clone()]),
        ];
        for _ in 0..2 {
            store.repage_audience(&request, &pages).await.unwrap();
            for (page, want) in &pages {
                let got: Vec<UserId> = store
                    .load_page(&t, &request, *page)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|m| m.user_id)
                    .collect();
                assert_eq!(&got, want, "page {page}");
            }
        }
    }
}
