//! The audience snapshot of a request: user ids in numbered pages, written once by the
//! resolver and read page by page by delivery.

use fanout_domain::user::User;
use fanout_domain::{RequestId, TenantId, UserId};
use sqlx::Row;

use crate::users::user_from_row;
use crate::{Result, Store, parse_col};

/// One recipient of a page: the snapshot's user id and the profile as it is now (`None` if
/// the user does not exist or was deleted since).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageMember {
    /// The user the snapshot names.
    pub user_id: UserId,
    /// Their current profile.
    pub profile: Option<User>,
}

impl Store {
    /// Writes the snapshot: `pages[i]` becomes page `i`. Idempotent, so a retried resolver
    /// rewrites the same rows.
    pub async fn write_audience(
        &self,
        request_id: &RequestId,
        pages: &[Vec<UserId>],
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        for (page_no, users) in pages.iter().enumerate() {
            let page_no = i64::try_from(page_no).unwrap_or(i64::MAX);
            for user in users {
                sqlx::query(
                    "INSERT INTO audience (request_id, page_no, user_id) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                )
                .bind(request_id.as_str())
                .bind(page_no)
                .bind(user.as_str())
                .execute(&mut *tx)
                .await?;
            }
        }
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
               u.user_id, u.email, u.name, u.locale, u.timezone, u.devices
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
    use fanout_domain::DedupeKey;
    use fanout_domain::user::EmailAddress;

    use crate::test_support::store;

    use super::*;

    #[tokio::test]
    async fn pages_join_current_profiles() {
        let store = store().await;
        let t = TenantId::parse("acme").unwrap();
        store.upsert_tenant(&t, "Acme").await.unwrap();
        let known = User {
            user_id: UserId::parse("known").unwrap(),
            email: Some(EmailAddress::parse("k@example.com").unwrap()),
            name: None,
            locale: Some("en".into()),
            timezone: None,
            devices: Vec::new(),
        };
        store.upsert_user(&t, &known).await.unwrap();
        let req = DedupeKey::new(t.clone(), "k").unwrap().request_id();
        let ghost = UserId::parse("ghost").unwrap();
        let pages = vec![
            vec![known.user_id.clone(), ghost.clone()],
            vec![ghost.clone()],
        ];
        store.write_audience(&req, &pages).await.unwrap();
        store.write_audience(&req, &pages).await.unwrap();

        let page0 = store.load_page(&t, &req, 0).await.unwrap();
        assert_eq!(page0.len(), 2);
        assert_eq!(page0[0].user_id, ghost);
        assert!(page0[0].profile.is_none());
        assert_eq!(page0[1].profile.as_ref(), Some(&known));
        assert_eq!(store.load_page(&t, &req, 1).await.unwrap().len(), 1);
        assert!(store.load_page(&t, &req, 2).await.unwrap().is_empty());
    }
}
