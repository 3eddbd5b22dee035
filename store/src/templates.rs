//! Templates, versioned: every write stores a new immutable version and makes it active.
//!
//! A rollback is a write too: it copies an older version's content into a new version
//! (recording `restored_from`), so the active version is always the newest, history only
//! grows, and "the version active at time T" is simply the newest one written by T. Deliveries
//! use that to render a request with the version active when it was accepted, whatever is
//! written while it fans out ([`Store::template_version_for_request`]).

use std::collections::BTreeMap;

use fanout_domain::digest::DigestSpec;
use fanout_domain::template::{
    ChannelContent, EmailContent, InAppContent, PushContent, Template, TemplateSpec,
};
use fanout_domain::{RequestId, TemplateId, TenantId};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::{Result, Store, now_ms, parse_col};

/// The most versions one listing returns.
pub const MAX_VERSIONS_PER_PAGE: u32 = 100;

/// The per-channel content and variants, stored as one JSON document so channels can be added
/// without a migration. Versions written before push and locales existed lack those keys.
#[derive(Serialize, Deserialize)]
struct StoredContent {
    #[serde(default)]
    email: Option<EmailContent>,
    #[serde(default)]
    in_app: Option<InAppContent>,
    #[serde(default)]
    push: Option<PushContent>,
    #[serde(default)]
    locales: BTreeMap<String, ChannelContent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_audience: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    digest: Option<DigestSpec>,
}

const COLUMNS: &str =
    "v.version, v.name, v.category, v.default_locale, v.content, v.restored_from, v.created_at_ms";

fn version_from_row(template_id: &TemplateId, row: &AnyRow) -> Result<Template> {
    const T: &str = "template_versions";
    let content: String = row.try_get("content")?;
    let content: StoredContent = parse_col(T, serde_json::from_str(&content))?;
    Ok(Template {
        template_id: template_id.clone(),
        version: row.try_get("version")?,
        name: row.try_get("name")?,
        category: row.try_get("category")?,
        default_locale: row.try_get("default_locale")?,
        content: ChannelContent {
            email: content.email,
            in_app: content.in_app,
            push: content.push,
        },
        locales: content.locales,
        restored_from: row.try_get("restored_from")?,
        max_audience: content.max_audience,
        digest: content.digest,
        updated_at_ms: row.try_get("created_at_ms")?,
    })
}

/// Whether a write may create the template, replace it, or both.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    CreateOnly,
    CreateOrUpdate,
}

impl Store {
    /// Creates the template as version 1; returns `None` (writing nothing) if it exists.
    pub async fn create_template(
        &self,
        tenant_id: &TenantId,
        template_id: &TemplateId,
        spec: &TemplateSpec,
    ) -> Result<Option<Template>> {
        self.write_alone(tenant_id, template_id, spec, Mode::CreateOnly)
            .await
    }

    /// Writes `spec` as the template's next version (version 1 if it is new) and makes it
    /// active.
    pub async fn write_template(
        &self,
        tenant_id: &TenantId,
        template_id: &TemplateId,
        spec: &TemplateSpec,
    ) -> Result<Template> {
        let written = self
            .write_alone(tenant_id, template_id, spec, Mode::CreateOrUpdate)
            .await?;
        written.ok_or_else(|| crate::StoreError::Corrupt {
            table: "templates",
            reason: "an upsert wrote no row".into(),
        })
    }

    /// Writes `spec` as a new version in a transaction of its own.
    async fn write_alone(
        &self,
        tenant_id: &TenantId,
        template_id: &TemplateId,
        spec: &TemplateSpec,
        mode: Mode,
    ) -> Result<Option<Template>> {
        let (mut tx, _writer) = self.write_tx().await?;
        let written = write_version(&mut tx, tenant_id, template_id, spec, None, mode).await?;
        tx.commit().await?;
        Ok(written)
    }

    /// Writes email and in-app content as the next version, with the default category and
    /// locale, returning the version number.
    pub async fn upsert_template(
        &self,
        tenant_id: &TenantId,
        template_id: &TemplateId,
        name: &str,
        email: Option<EmailContent>,
        in_app: Option<InAppContent>,
    ) -> Result<i64> {
        let spec = TemplateSpec::new(
            name,
            ChannelContent {
                email,
                in_app,
                push: None,
            },
        );
        Ok(self
            .write_template(tenant_id, template_id, &spec)
            .await?
            .version)
    }

    /// Returns the active version of a template.
    pub async fn get_template(
        &self,
        tenant_id: &TenantId,
        template_id: &TemplateId,
    ) -> Result<Option<Template>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM templates t
             JOIN template_versions v ON v.tenant_id = t.tenant_id
               AND v.template_id = t.template_id AND v.version = t.version
             WHERE t.tenant_id = $1 AND t.template_id = $2"
        ))
        .bind(tenant_id.as_str())
        .bind(template_id.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| version_from_row(template_id, &row))
            .transpose()
    }

    /// Returns one version of a template, active or not.
    pub async fn get_template_version(
        &self,
        tenant_id: &TenantId,
        template_id: &TemplateId,
        version: i64,
    ) -> Result<Option<Template>> {
        let mut conn = self.pool().acquire().await?;
        read_version(&mut conn, tenant_id, template_id, version).await
    }

    /// Lists a template's versions newest first: those below `before` (all if `None`), at
    /// most `limit` (capped at [`MAX_VERSIONS_PER_PAGE`]). Empty if the template does not exist.
    pub async fn list_template_versions(
        &self,
        tenant_id: &TenantId,
        template_id: &TemplateId,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Template>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM template_versions v
             WHERE v.tenant_id = $1 AND v.template_id = $2 AND v.version < $3
             ORDER BY v.version DESC LIMIT $4"
        ))
        .bind(tenant_id.as_str())
        .bind(template_id.as_str())
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit.clamp(1, MAX_VERSIONS_PER_PAGE)))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| version_from_row(template_id, row))
            .collect()
    }

    /// Rolls the template back to `version`: writes a new version copying its content and
    /// makes that active. Returns `None` if the template or the version does not exist.
    pub async fn rollback_template(
        &self,
        tenant_id: &TenantId,
        template_id: &TemplateId,
        version: i64,
    ) -> Result<Option<Template>> {
        let (mut tx, _writer) = self.write_tx().await?;
        let Some(source) = read_version(&mut tx, tenant_id, template_id, version).await? else {
            return Ok(None);
        };
        let written = write_version(
            &mut tx,
            tenant_id,
            template_id,
            &source.spec(),
            Some(version),
            Mode::CreateOrUpdate,
        )
        .await?;
        tx.commit().await?;
        Ok(written)
    }

    /// The version of a template that was active when `request_id` was accepted: the newest
    /// written by then. `None` if the request is not recorded or predates every version.
    pub async fn template_version_for_request(
        &self,
        tenant_id: &TenantId,
        template_id: &TemplateId,
        request_id: &RequestId,
    ) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT MAX(v.version) AS version FROM template_versions v, requests r
             WHERE r.request_id = $3 AND v.tenant_id = $1 AND v.template_id = $2
               AND v.created_at_ms <= r.created_at_ms",
        )
        .bind(tenant_id.as_str())
        .bind(template_id.as_str())
        .bind(request_id.as_str())
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get("version")?)
    }
}

/// Reads one version of a template on `conn` (a transaction's or the pool's).
async fn read_version(
    conn: &mut sqlx::AnyConnection,
    tenant_id: &TenantId,
    template_id: &TemplateId,
    version: i64,
) -> Result<Option<Template>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM template_versions v
         WHERE v.tenant_id = $1 AND v.template_id = $2 AND v.version = $3"
    ))
    .bind(tenant_id.as_str())
    .bind(template_id.as_str())
    .bind(version)
    .fetch_optional(conn)
    .await?;
    row.map(|row| version_from_row(template_id, &row))
        .transpose()
}

/// Bumps the template's active version (creating the template at 1 if allowed) and stores the
/// version, in the caller's transaction. `None` if `mode` forbids the write.
async fn write_version(
    tx: &mut Transaction<'_, Any>,
    tenant_id: &TenantId,
    template_id: &TemplateId,
    spec: &TemplateSpec,
    restored_from: Option<i64>,
    mode: Mode,
) -> Result<Option<Template>> {
    let content = parse_col(
        "templates",
        serde_json::to_string(&StoredContent {
            email: spec.content.email.clone(),
            in_app: spec.content.in_app.clone(),
            push: spec.content.push.clone(),
            locales: spec.locales.clone(),
            max_audience: spec.max_audience,
            digest: spec.digest.clone(),
        }),
    )?;
    let now = now_ms();
    let conflict = match mode {
        Mode::CreateOnly => "DO NOTHING",
        Mode::CreateOrUpdate => {
            "DO UPDATE SET version = templates.version + 1, name = excluded.name,
               content = excluded.content, updated_at_ms = excluded.updated_at_ms"
        }
    };
    let row = sqlx::query(&format!(
        "INSERT INTO templates (tenant_id, template_id, version, name, content, updated_at_ms)
         VALUES ($1, $2, 1, $3, $4, $5)
         ON CONFLICT (tenant_id, template_id) {conflict}
         RETURNING version"
    ))
    .bind(tenant_id.as_str())
    .bind(template_id.as_str())
    .bind(&spec.name)
    .bind(&content)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let version: i64 = row.try_get("version")?;
    sqlx::query(
        "INSERT INTO template_versions (tenant_id, template_id, version, name, category,
           default_locale, content, restored_from, created_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(tenant_id.as_str())
    .bind(template_id.as_str())
    .bind(version)
    .bind(&spec.name)
    .bind(&spec.category)
    .bind(&spec.default_locale)
    .bind(&content)
    .bind(restored_from)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(Some(Template {
        template_id: template_id.clone(),
        version,
        name: spec.name.clone(),
        category: spec.category.clone(),
        default_locale: spec.default_locale.clone(),
        content: spec.content.clone(),
        locales: spec.locales.clone(),
        restored_from,
        max_audience: spec.max_audience,
        digest: spec.digest.clone(),
        updated_at_ms: now,
    }))
}

#[cfg(test)]
mod tests {
    use fanout_domain::request::DeliveryPath;
    use fanout_domain::template::DEFAULT_CATEGORY;

    use crate::requests::RequestKeys;
    use crate::test_support::store;

    use super::*;

    fn inbox(title: &str) -> InAppContent {
        InAppContent {
            title: title.into(),
            body: "Hello {{ user.name }}".into(),
            action_url: None,
            payload: BTreeMap::new(),
        }
    }

    async fn tenant(store: &Store, id: &str) -> TenantId {
        let t = TenantId::parse(id).unwrap();
        store.upsert_tenant(&t, "T").await.unwrap();
        t
    }

    #[tokio::test]
    async fn writes_bump_the_version() {
        let store = store().await;
        let t = tenant(&store, "acme").await;
        let id = TemplateId::parse("welcome").unwrap();
        let v1 = store
            .upsert_template(&t, &id, "Welcome", None, Some(inbox("Hi")))
            .await
            .unwrap();
        let v2 = store
            .upsert_template(&t, &id, "Welcome", None, Some(inbox("Hi")))
            .await
            .unwrap();
        assert_eq!((v1, v2), (1, 2));
        let got = store.get_template(&t, &id).await.unwrap().unwrap();
        assert_eq!(got.version, 2);
        assert_eq!(got.content.in_app, Some(inbox("Hi")));
        assert!(got.content.email.is_none());
        assert_eq!(got.category, DEFAULT_CATEGORY);
    }

    #[tokio::test]
    async fn every_version_stays_readable_with_its_own_content() {
        let store = store().await;
        let t = tenant(&store, "acme").await;
        let id = TemplateId::parse("post").unwrap();
        let mut spec = TemplateSpec::new(
            "Post",
            ChannelContent {
                in_app: Some(inbox("one")),
                ..ChannelContent::default()
            },
        );
        spec.category = "social".into();
        let first = store
            .create_template(&t, &id, &spec)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.version, 1);
        assert!(
            store
                .create_template(&t, &id, &spec)
                .await
                .unwrap()
                .is_none(),
            "creating twice writes nothing"
        );
        spec.content.in_app = Some(inbox("two"));
        spec.content.push = Some(PushContent {
            title: "p".into(),
            body: "b".into(),
            data: [("url".to_owned(), "x".to_owned())].into(),
        });
        spec.default_locale = "fr".into();
        spec.locales.insert("en".into(), ChannelContent::default());
        let second = store.write_template(&t, &id, &spec).await.unwrap();
        assert_eq!(second.version, 2);
        assert_eq!(store.get_template(&t, &id).await.unwrap().unwrap(), second);

        let v1 = store
            .get_template_version(&t, &id, 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v1, first);
        assert!(
            store
                .get_template_version(&t, &id, 3)
                .await
                .unwrap()
                .is_none()
        );

        let listed = store
            .list_template_versions(&t, &id, None, 10)
            .await
            .unwrap();
        assert_eq!(listed, vec![second.clone(), first.clone()]);
        let older = store
            .list_template_versions(&t, &id, Some(2), 10)
            .await
            .unwrap();
        assert_eq!(older, vec![first]);
        let newest = store
            .list_template_versions(&t, &id, None, 1)
            .await
            .unwrap();
        assert_eq!(newest, vec![second]);
    }

    #[tokio::test]
    async fn rollback_copies_an_old_version_into_a_new_active_one() {
        let store = store().await;
        let t = tenant(&store, "acme").await;
        let other = tenant(&store, "other").await;
        let id = TemplateId::parse("welcome").unwrap();
        for title in ["one", "two", "three"] {
            store
                .upsert_template(&t, &id, "W", None, Some(inbox(title)))
                .await
                .unwrap();
        }
        let rolled = store.rollback_template(&t, &id, 1).await.unwrap().unwrap();
        assert_eq!(rolled.version, 4);
        assert_eq!(rolled.restored_from, Some(1));
        assert_eq!(rolled.content.in_app, Some(inbox("one")));
        let active = store.get_template(&t, &id).await.unwrap().unwrap();
        assert_eq!(active, rolled);
        let history: Vec<_> = store
            .list_template_versions(&t, &id, None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|v| (v.version, v.content.in_app.unwrap().title, v.restored_from))
            .collect();
        assert_eq!(
            history,
            vec![
                (4, "one".to_owned(), Some(1)),
                (3, "three".to_owned(), None),
                (2, "two".to_owned(), None),
                (1, "one".to_owned(), None),
            ]
        );
        assert!(store.rollback_template(&t, &id, 9).await.unwrap().is_none());
        assert!(
            store
                .rollback_template(&other, &id, 1)
                .await
                .unwrap()
                .is_none(),
            "another tenant's template is not found"
        );
        assert!(store.get_template(&other, &id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_request_renders_with_the_version_active_when_it_was_accepted() {
        let store = store().await;
        let t = tenant(&store, "acme").await;
        let id = TemplateId::parse("welcome").unwrap();
        store
            .upsert_template(&t, &id, "W", None, Some(inbox("one")))
            .await
            .unwrap();
        let request = fanout_domain::DedupeKey::new(t.clone(), "k")
            .unwrap()
            .request_id();
        assert_eq!(
            store
                .template_version_for_request(&t, &id, &request)
                .await
                .unwrap(),
            None,
            "an unrecorded request has no pinned version"
        );
        store
            .insert_request(
                RequestKeys {
                    request_id: &request,
                    tenant_id: &t,
                    template_id: &id,
                    path: DeliveryPath::Tree,
                    run_at_ms: None,
                },
                &serde_json::json!({"request_id": request}),
                0,
                "k",
                &BTreeMap::new(),
            )
            .await
            .unwrap();
        // Versions are ordered by time at millisecond resolution; step past this one.
        let accepted = now_ms();
        while now_ms() <= accepted {
            std::thread::yield_now();
        }
        store
            .upsert_template(&t, &id, "W", None, Some(inbox("two")))
            .await
            .unwrap();
        store.rollback_template(&t, &id, 1).await.unwrap().unwrap();
        assert_eq!(
            store
                .template_version_for_request(&t, &id, &request)
                .await
                .unwrap(),
            Some(1)
        );
    }
}
