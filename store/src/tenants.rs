//! Tenants, their API keys and their settings. Keys are stored as SHA-256 hashes; the
//! plaintext is shown once, and a key is identified afterwards by its public `key_id` and the
//! first characters of the key (its prefix).

use fanout_domain::{TenantId, UnixMillis};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, now_ms, parse_col};

/// The prefix every API key starts with, so leaked keys are easy to recognise and scan for.
pub const API_KEY_PREFIX: &str = "fo_";

/// How many characters of a key (its [`API_KEY_PREFIX`] included) are kept to identify it.
const SHOWN_KEY_CHARS: usize = API_KEY_PREFIX.len() + 6;

/// Hashes an API key for storage and lookup.
fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Generates a new random API key.
pub fn generate_api_key() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    format!("{API_KEY_PREFIX}{}", hex::encode(bytes))
}

/// A new random public key id (`key_` and 16 hex digits).
fn generate_key_id() -> String {
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    format!("key_{}", hex::encode(bytes))
}

/// A tenant as the operator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    /// The tenant's id.
    pub tenant_id: TenantId,
    /// Its display name.
    pub name: String,
    /// When it was created.
    pub created_at_ms: UnixMillis,
    /// Its settings (overrides of the platform defaults).
    pub settings: TenantSettings,
}

/// Per-tenant overrides; `None` means the platform default applies.
///
/// `PartialEq` without `Eq`: the fairness weight is a float. The API stores only finite weights
/// (0.001 to 1000), so comparing settings to detect a change still means what it says.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TenantSettings {
    /// Sustained `POST /v1/notify` requests per second.
    pub ingest_per_second: Option<u32>,
    /// How many notify requests may arrive at once before the sustained rate applies.
    pub ingest_burst: Option<u32>,
    /// The tenant's share of queued Temporal work against other tenants' (Temporal's fairness
    /// weight; the server's default is 1).
    pub fairness_weight: Option<f64>,
    /// The largest `data` a notify may carry, in bytes of JSON.
    pub max_data_bytes: Option<u32>,
}

/// An API key's public record: everything but the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyInfo {
    /// The key's public id, used to revoke it.
    pub key_id: String,
    /// The tenant the key acts as.
    pub tenant_id: TenantId,
    /// The key's first characters, to recognise it.
    pub prefix: String,
    /// What the operator called it, if anything.
    pub label: Option<String>,
    /// When it was issued.
    pub created_at_ms: UnixMillis,
    /// When it was revoked, if it was.
    pub revoked_at_ms: Option<UnixMillis>,
}

/// A key just issued: the only time the plaintext exists outside the caller.
#[derive(Debug, Clone)]
pub struct IssuedApiKey {
    /// The key itself.
    pub key: String,
    /// Its public record.
    pub info: ApiKeyInfo,
}

/// Reads a stored count that must fit a `u32`.
fn setting(row: &AnyRow, column: &str) -> Result<Option<u32>> {
    let value: Option<i64> = row.try_get(column)?;
    value
        .map(|v| parse_col("tenant_settings", u32::try_from(v)))
        .transpose()
}

/// Reads the settings columns of a `tenant_settings` row (or of a join that left them NULL).
fn settings_from_row(row: &AnyRow) -> Result<TenantSettings> {
    Ok(TenantSettings {
        ingest_per_second: setting(row, "ingest_per_second")?,
        ingest_burst: setting(row, "ingest_burst")?,
        fairness_weight: row.try_get("fairness_weight")?,
        max_data_bytes: setting(row, "max_data_bytes")?,
    })
}

fn tenant_from_row(row: &AnyRow) -> Result<Tenant> {
    let id: String = row.try_get("tenant_id")?;
    Ok(Tenant {
        tenant_id: parse_col("tenants", TenantId::parse(&id))?,
        name: row.try_get("name")?,
        created_at_ms: row.try_get("created_at_ms")?,
        settings: settings_from_row(row)?,
    })
}

fn key_from_row(row: &AnyRow) -> Result<ApiKeyInfo> {
    let tenant: String = row.try_get("tenant_id")?;
    Ok(ApiKeyInfo {
        key_id: row.try_get("key_id")?,
        tenant_id: parse_col("api_keys", TenantId::parse(&tenant))?,
        prefix: row.try_get("key_prefix")?,
        label: row.try_get("label")?,
        created_at_ms: row.try_get("created_at_ms")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
    })
}

const TENANT_COLUMNS: &str = "SELECT t.tenant_id, t.name, t.created_at_ms,
            s.ingest_per_second, s.ingest_burst, s.fairness_weight, s.max_data_bytes
     FROM tenants t LEFT JOIN tenant_settings s ON s.tenant_id = t.tenant_id";

const KEY_COLUMNS: &str =
    "SELECT key_id, tenant_id, key_prefix, label, created_at_ms, revoked_at_ms FROM api_keys";

impl Store {
    /// Creates the tenant, or renames it if it exists.
    pub async fn upsert_tenant(&self, tenant_id: &TenantId, name: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO tenants (tenant_id, name, created_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id) DO UPDATE SET name = excluded.name",
        )
        .bind(tenant_id.as_str())
        .bind(name)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Creates the tenant; returns false (and changes nothing) if the id is taken.
    pub async fn create_tenant(&self, tenant_id: &TenantId, name: &str) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO tenants (tenant_id, name, created_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id) DO NOTHING",
        )
        .bind(tenant_id.as_str())
        .bind(name)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether the tenant exists.
    pub async fn tenant_exists(&self, tenant_id: &TenantId) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM tenants WHERE tenant_id = $1")
            .bind(tenant_id.as_str())
            .fetch_optional(self.pool())
            .await?;
        Ok(row.is_some())
    }

    /// One tenant with its settings.
    pub async fn get_tenant(&self, tenant_id: &TenantId) -> Result<Option<Tenant>> {
        let sql = format!("{TENANT_COLUMNS} WHERE t.tenant_id = $1");
        let row = sqlx::query(&sql)
            .bind(tenant_id.as_str())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    /// Tenants in id order, `limit` at most, starting after `after`.
    pub async fn list_tenants(&self, after: Option<&TenantId>, limit: u32) -> Result<Vec<Tenant>> {
        // Ids are never empty, so "" sorts before every one of them.
        let sql = format!("{TENANT_COLUMNS} WHERE t.tenant_id > $1 ORDER BY t.tenant_id LIMIT $2");
        let rows = sqlx::query(&sql)
            .bind(after.map_or("", TenantId::as_str))
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(tenant_from_row).collect()
    }

    /// Renames the tenant; returns false if it does not exist.
    pub async fn rename_tenant(&self, tenant_id: &TenantId, name: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE tenants SET name = $2 WHERE tenant_id = $1")
            .bind(tenant_id.as_str())
            .bind(name)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The tenant's settings (all `None` for a tenant that never set any, or does not exist).
    pub async fn tenant_settings(&self, tenant_id: &TenantId) -> Result<TenantSettings> {
        let row = sqlx::query(
            "SELECT ingest_per_second, ingest_burst, fairness_weight, max_data_bytes
             FROM tenant_settings WHERE tenant_id = $1",
        )
        .bind(tenant_id.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref()
            .map_or_else(|| Ok(TenantSettings::default()), settings_from_row)
    }

    /// Replaces the tenant's settings. The tenant must exist.
    pub async fn set_tenant_settings(
        &self,
        tenant_id: &TenantId,
        settings: &TenantSettings,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO tenant_settings (tenant_id, ingest_per_second, ingest_burst,
                                          fairness_weight, max_data_bytes, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant_id) DO UPDATE SET ingest_per_second = excluded.ingest_per_second,
                 ingest_burst = excluded.ingest_burst, fairness_weight = excluded.fairness_weight,
                 max_data_bytes = excluded.max_data_bytes, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(tenant_id.as_str())
        .bind(settings.ingest_per_second.map(i64::from))
        .bind(settings.ingest_burst.map(i64::from))
        .bind(settings.fairness_weight)
        .bind(settings.max_data_bytes.map(i64::from))
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Registers `key` for the tenant (idempotent). Use [`generate_api_key`] for new keys, or
    /// [`Store::issue_api_key`] to have one generated.
    pub async fn add_api_key(&self, tenant_id: &TenantId, key: &str) -> Result<()> {
        self.insert_api_key(tenant_id, key, None).await?;
        Ok(())
    }

    /// Generates, stores and returns a new key for the tenant, which must exist.
    pub async fn issue_api_key(
        &self,
        tenant_id: &TenantId,
        label: Option<&str>,
    ) -> Result<IssuedApiKey> {
        let key = generate_api_key();
        let info = self.insert_api_key(tenant_id, &key, label).await?;
        Ok(IssuedApiKey { key, info })
    }

    async fn insert_api_key(
        &self,
        tenant_id: &TenantId,
        key: &str,
        label: Option<&str>,
    ) -> Result<ApiKeyInfo> {
        let info = ApiKeyInfo {
            key_id: generate_key_id(),
            tenant_id: tenant_id.clone(),
            prefix: key.chars().take(SHOWN_KEY_CHARS).collect(),
            label: label.map(str::to_owned),
            created_at_ms: now_ms(),
            revoked_at_ms: None,
        };
        sqlx::query(
            "INSERT INTO api_keys (key_hash, tenant_id, key_prefix, created_at_ms, key_id, label)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key_hash) DO NOTHING",
        )
        .bind(hash_key(key))
        .bind(tenant_id.as_str())
        .bind(&info.prefix)
        .bind(info.created_at_ms)
        .bind(&info.key_id)
        .bind(info.label.as_deref())
        .execute(self.pool())
        .await?;
        Ok(info)
    }

    /// The tenant's keys, oldest first, revoked ones included.
    pub async fn list_api_keys(&self, tenant_id: &TenantId) -> Result<Vec<ApiKeyInfo>> {
        let sql = format!("{KEY_COLUMNS} WHERE tenant_id = $1 ORDER BY created_at_ms, key_id");
        let rows = sqlx::query(&sql)
            .bind(tenant_id.as_str())
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Revokes one of the tenant's keys (a no-op if it already is); returns false if the
    /// tenant has no key with that id.
    pub async fn revoke_api_key(&self, tenant_id: &TenantId, key_id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at_ms = COALESCE(revoked_at_ms, $3)
             WHERE tenant_id = $1 AND key_id = $2",
        )
        .bind(tenant_id.as_str())
        .bind(key_id)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Returns the tenant a live (unrevoked) key belongs to.
    pub async fn authenticate(&self, key: &str) -> Result<Option<TenantId>> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT tenant_id FROM api_keys WHERE key_hash = $1 AND revoked_at_ms IS NULL",
        )
        .bind(hash_key(key))
        .fetch_optional(self.pool())
        .await?;
        row.map(|(t,)| parse_col("api_keys", TenantId::parse(&t)))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::store;

    use super::*;

    #[tokio::test]
    async fn keys_authenticate_their_tenant_only() {
        let store = store().await;
        let acme = TenantId::parse("acme").unwrap();
        store.upsert_tenant(&acme, "Acme").await.unwrap();
        let key = generate_api_key();
        store.add_api_key(&acme, &key).await.unwrap();
        store.add_api_key(&acme, &key).await.unwrap();
        assert_eq!(store.authenticate(&key).await.unwrap(), Some(acme.clone()));
        assert_eq!(store.authenticate("fo_wrong").await.unwrap(), None);
        assert!(store.tenant_exists(&acme).await.unwrap());
        assert_eq!(store.list_api_keys(&acme).await.unwrap().len(), 1);
    }

    #[test]
    fn keys_are_random_and_prefixed() {
        let (a, b) = (generate_api_key(), generate_api_key());
        assert_ne!(a, b);
        assert!(a.starts_with(API_KEY_PREFIX));
        assert_eq!(a.len(), API_KEY_PREFIX.len() + 48);
    }

    #[tokio::test]
    async fn tenants_are_created_once_and_listed_in_id_order() {
        let store = store().await;
        let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
        assert!(store.create_tenant(&b, "Bee").await.unwrap());
        assert!(store.create_tenant(&a, "Ay").await.unwrap());
        assert!(!store.create_tenant(&a, "Again").await.unwrap());
        let all = store.list_tenants(None, 10).await.unwrap();
        let names: Vec<&str> = all.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["Ay", "Bee"]);
        let rest = store.list_tenants(Some(&a), 10).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].tenant_id, b);
        assert!(store.rename_tenant(&a, "A").await.unwrap());
        assert!(
            !store
                .rename_tenant(&TenantId::parse("zz").unwrap(), "Z")
                .await
                .unwrap()
        );
        assert_eq!(store.get_tenant(&a).await.unwrap().unwrap().name, "A");
    }

    #[tokio::test]
    async fn settings_default_to_none_and_round_trip() {
        let store = store().await;
        let t = TenantId::parse("acme").unwrap();
        store.create_tenant(&t, "Acme").await.unwrap();
        assert_eq!(
            store.tenant_settings(&t).await.unwrap(),
            TenantSettings::default()
        );
        let set = TenantSettings {
            ingest_per_second: Some(5),
            ingest_burst: None,
            fairness_weight: None,
            max_data_bytes: None,
        };
        store.set_tenant_settings(&t, &set).await.unwrap();
        assert_eq!(store.tenant_settings(&t).await.unwrap(), set);
        assert_eq!(store.get_tenant(&t).await.unwrap().unwrap().settings, set);
    }

    #[tokio::test]
    async fn a_fairness_weight_round_trips_exactly_and_clears() {
        let store = store().await;
        let t = TenantId::parse("acme").unwrap();
        store.create_tenant(&t, "Acme").await.unwrap();
        // The extremes the API accepts, and a value with no exact binary form.
        for weight in [0.001, 1000.0, 2.5, 0.1] {
            let set = TenantSettings {
                fairness_weight: Some(weight),
                ..TenantSettings::default()
            };
            store.set_tenant_settings(&t, &set).await.unwrap();
            assert_eq!(store.tenant_settings(&t).await.unwrap(), set);
            let listed = store.list_tenants(None, 10).await.unwrap();
            assert_eq!(listed[0].settings.fairness_weight, Some(weight));
        }
        // Writing the other settings leaves it unset again: settings are replaced as a whole.
        let ingest_only = TenantSettings {
            ingest_burst: Some(3),
            ..TenantSettings::default()
        };
        store.set_tenant_settings(&t, &ingest_only).await.unwrap();
        assert_eq!(store.tenant_settings(&t).await.unwrap(), ingest_only);
    }

    #[tokio::test]
    async fn revoked_keys_stop_authenticating_and_stay_listed() {
        let store = store().await;
        let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
        store.create_tenant(&a, "A").await.unwrap();
        store.create_tenant(&b, "B").await.unwrap();
        let one = store.issue_api_key(&a, Some("ci")).await.unwrap();
        let two = store.issue_api_key(&a, None).await.unwrap();
        assert!(one.key.starts_with(&one.info.prefix));
        assert_ne!(one.info.key_id, two.info.key_id);
        // Another tenant cannot revoke it, even knowing its id.
        assert!(!store.revoke_api_key(&b, &one.info.key_id).await.unwrap());
        assert!(store.revoke_api_key(&a, &one.info.key_id).await.unwrap());
        assert!(store.revoke_api_key(&a, &one.info.key_id).await.unwrap());
        assert_eq!(store.authenticate(&one.key).await.unwrap(), None);
        assert_eq!(store.authenticate(&two.key).await.unwrap(), Some(a.clone()));
        let keys = store.list_api_keys(&a).await.unwrap();
        assert_eq!(keys.len(), 2);
        let revoked = keys.iter().find(|k| k.key_id == one.info.key_id).unwrap();
        assert!(revoked.revoked_at_ms.is_some());
        assert_eq!(revoked.label.as_deref(), Some("ci"));
    }
}
