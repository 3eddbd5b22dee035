//! Templates, versioned: every write bumps the version.

use fanout_domain::template::{EmailContent, InAppContent, Template};
use fanout_domain::{TemplateId, TenantId};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::{Result, Store, now_ms, parse_col};

/// The per-channel content, stored as one JSON document so channels can be added without a
/// migration.
#[derive(Serialize, Deserialize)]
struct StoredContent {
    email: Option<EmailContent>,
    in_app: Option<InAppContent>,
}

impl Store {
    /// Creates the template or replaces its content, returning the new version.
    pub async fn upsert_template(
        &self,
        tenant_id: &TenantId,
        template_id: &TemplateId,
        name: &str,
        email: Option<EmailContent>,
        in_app: Option<InAppContent>,
    ) -> Result<i64> {
        let content = parse_col(
            "templates",
            serde_json::to_string(&StoredContent { email, in_app }),
        )?;
        let row = sqlx::query(
            "INSERT INTO templates (tenant_id, template_id, version, name, content, updated_at_ms)
             VALUES ($1, $2, 1, $3, $4, $5)
             ON CONFLICT (tenant_id, template_id) DO UPDATE SET
               version = templates.version + 1, name = excluded.name,
               content = excluded.content, updated_at_ms = excluded.updated_at_ms
             RETURNING version",
        )
        .bind(tenant_id.as_str())
        .bind(template_id.as_str())
        .bind(name)
        .bind(content)
        .bind(now_ms())
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get("version")?)
    }

    /// Returns the current version of a template.
    pub async fn get_template(
        &self,
        tenant_id: &TenantId,
        template_id: &TemplateId,
    ) -> Result<Option<Template>> {
        let row = sqlx::query(
            "SELECT version, name, content, updated_at_ms FROM templates
             WHERE tenant_id = $1 AND template_id = $2",
        )
        .bind(tenant_id.as_str())
        .bind(template_id.as_str())
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let content: String = row.try_get("content")?;
        let content: StoredContent = parse_col("templates", serde_json::from_str(&content))?;
        Ok(Some(Template {
            template_id: template_id.clone(),
            version: row.try_get("version")?,
            name: row.try_get("name")?,
            email: content.email,
            in_app: content.in_app,
            updated_at_ms: row.try_get("updated_at_ms")?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::store;

    use super::*;

    #[tokio::test]
    async fn writes_bump_the_version() {
        let store = store().await;
        let t = TenantId::parse("acme").unwrap();
        store.upsert_tenant(&t, "Acme").await.unwrap();
        let id = TemplateId::parse("welcome").unwrap();
        let inbox = InAppContent {
            title: "Hi".into(),
            body: "Hello {{ user.name }}".into(),
        };
        let v1 = store
            .upsert_template(&t, &id, "Welcome", None, Some(inbox.clone()))
            .await
            .unwrap();
        let v2 = store
            .upsert_template(&t, &id, "Welcome", None, Some(inbox.clone()))
            .await
            .unwrap();
        assert_eq!((v1, v2), (1, 2));
        let got = store.get_template(&t, &id).await.unwrap().unwrap();
        assert_eq!(got.version, 2);
        assert_eq!(got.in_app, Some(inbox));
        assert!(got.email.is_none());
    }
}
