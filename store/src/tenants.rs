//! Tenants and their API keys. Keys are stored as SHA-256 hashes; the plaintext is shown once.

use fanout_domain::TenantId;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{Result, Store, now_ms, parse_col};

/// The prefix every API key starts with, so leaked keys are easy to recognise and scan for.
pub const API_KEY_PREFIX: &str = "fo_";

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

    /// Whether the tenant exists.
    pub async fn tenant_exists(&self, tenant_id: &TenantId) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM tenants WHERE tenant_id = $1")
            .bind(tenant_id.as_str())
            .fetch_optional(self.pool())
            .await?;
        Ok(row.is_some())
    }

    /// Registers `key` for the tenant (idempotent). Use [`generate_api_key`] for new keys.
    pub async fn add_api_key(&self, tenant_id: &TenantId, key: &str) -> Result<()> {
        let prefix: String = key.chars().take(API_KEY_PREFIX.len() + 6).collect();
        sqlx::query(
            "INSERT INTO api_keys (key_hash, tenant_id, key_prefix, created_at_ms)
             VALUES ($1, $2, $3, $4) ON CONFLICT (key_hash) DO NOTHING",
        )
        .bind(hash_key(key))
        .bind(tenant_id.as_str())
        .bind(prefix)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
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
    }

    #[test]
    fn keys_are_random_and_prefixed() {
        let (a, b) = (generate_api_key(), generate_api_key());
        assert_ne!(a, b);
        assert!(a.starts_with(API_KEY_PREFIX));
        assert_eq!(a.len(), API_KEY_PREFIX.len() + 48);
    }
}
