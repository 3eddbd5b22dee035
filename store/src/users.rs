//! Users and their channel addresses.

use fanout_domain::user::{EmailAddress, User};
use fanout_domain::{TenantId, UserId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, now_ms, parse_col};

/// Builds a [`User`] from a row with `user_id, email, name, locale` columns.
pub(crate) fn user_from_row(row: &AnyRow) -> Result<User> {
    let user_id: String = row.try_get("user_id")?;
    let email: Option<String> = row.try_get("email")?;
    Ok(User {
        user_id: parse_col("users", UserId::parse(&user_id))?,
        email: email
            .map(|e| parse_col("users", EmailAddress::parse(&e)))
            .transpose()?,
        name: row.try_get("name")?,
        locale: row.try_get("locale")?,
    })
}

impl Store {
    /// Creates or replaces a user's profile.
    pub async fn upsert_user(&self, tenant_id: &TenantId, user: &User) -> Result<()> {
        sqlx::query(
            "INSERT INTO users (tenant_id, user_id, email, name, locale, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant_id, user_id) DO UPDATE SET
               email = excluded.email, name = excluded.name, locale = excluded.locale,
               updated_at_ms = excluded.updated_at_ms",
        )
        .bind(tenant_id.as_str())
        .bind(user.user_id.as_str())
        .bind(user.email.as_ref().map(|e| e.as_str().to_owned()))
        .bind(user.name.clone())
        .bind(user.locale.clone())
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Returns a user's profile.
    pub async fn get_user(&self, tenant_id: &TenantId, user_id: &UserId) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT user_id, email, name, locale FROM users WHERE tenant_id = $1 AND user_id = $2",
        )
        .bind(tenant_id.as_str())
        .bind(user_id.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::store;

    use super::*;

    #[tokio::test]
    async fn users_upsert_and_stay_in_their_tenant() {
        let store = store().await;
        let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
        store.upsert_tenant(&a, "A").await.unwrap();
        store.upsert_tenant(&b, "B").await.unwrap();
        let mut user = User {
            user_id: UserId::parse("u1").unwrap(),
            email: Some(EmailAddress::parse("u1@example.com").unwrap()),
            name: Some("Ada".into()),
            locale: None,
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
}
