//! Outbound webhooks: a tenant's endpoints (this file) and the outbox of events on their way to
//! them ([`outbox`]).
//!
//! An endpoint is a URL, the event types it subscribes to and a signing secret, shown once when
//! the endpoint is created or its secret rotated. A rotated-out secret keeps signing beside the
//! new one for a grace period, so receivers can switch without losing a call. An endpoint that
//! keeps failing is disabled with the reason, and its last errors are kept to show why.

pub mod outbox;

use base64::Engine as _;
use fanout_domain::webhook::WebhookEventType;
use fanout_domain::{TenantId, UnixMillis};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, now_ms, parse_col};

const T: &str = "webhook_endpoints";

/// What every signing secret starts with (the Standard Webhooks convention); the rest is the
/// key, base64-encoded.
pub const SECRET_PREFIX: &str = "whsec_";

/// How many of an endpoint's last errors are kept.
pub const KEPT_ERRORS: usize = 10;

/// An endpoint as its tenant sees it: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    /// Its id (`we_` and 16 hex digits).
    pub endpoint_id: String,
    /// Where events are posted.
    pub url: String,
    /// What it subscribes to.
    pub event_types: Vec<WebhookEventType>,
    /// Whether events are written for it and sent.
    pub enabled: bool,
    /// Why it was disabled, when the platform disabled it.
    pub disabled_reason: Option<String>,
    /// Failed calls since its last success.
    pub failures: u32,
    /// When the first of those failed.
    pub failing_since_ms: Option<UnixMillis>,
    /// The last errors, newest first.
    pub last_errors: Vec<EndpointError>,
    /// Events it has taken.
    pub delivered_events: u64,
    /// Events waiting for it.
    pub pending_events: u64,
    /// Until when a rotated-out secret still signs beside the current one.
    pub previous_secret_until_ms: Option<UnixMillis>,
    /// When it was created.
    pub created_at_ms: UnixMillis,
    /// When it last changed.
    pub updated_at_ms: UnixMillis,
}

/// One failed call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointError {
    /// When.
    pub at_ms: UnixMillis,
    /// What happened: the status and the start of the body, or the transport error.
    pub error: String,
}

/// A change to an endpoint; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointChange {
    /// A new URL.
    pub url: Option<String>,
    /// A new subscription.
    pub event_types: Option<Vec<WebhookEventType>>,
    /// Enabling clears the failures and the reason it was disabled.
    pub enabled: Option<bool>,
}

/// A new random signing secret.
fn generate_secret() -> String {
    let mut key = [0u8; 24];
    rand::rng().fill_bytes(&mut key);
    format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

fn generate_endpoint_id() -> String {
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    format!("we_{}", hex::encode(bytes))
}

fn types_to_column(types: &[WebhookEventType]) -> String {
    let names: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
    names.join(",")
}

fn types_from_column(column: &str) -> Result<Vec<WebhookEventType>> {
    column
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| parse_col(T, s.parse::<WebhookEventType>()))
        .collect()
}

const COLUMNS: &str = "e.endpoint_id, e.url, e.event_types, e.enabled, e.disabled_reason,
    e.failures, e.failing_since_ms, e.last_errors, e.delivered_events, e.previous_until_ms,
    e.created_at_ms, e.updated_at_ms,
    (SELECT COUNT(*) FROM webhook_events w
      WHERE w.tenant_id = e.tenant_id AND w.endpoint_id = e.endpoint_id) AS pending_events";

fn endpoint_from_row(row: &AnyRow) -> Result<WebhookEndpoint> {
    let types: String = row.try_get("event_types")?;
    let errors: String = row.try_get("last_errors")?;
    let count = |column: &str| -> Result<u64> {
        let n: i64 = row.try_get(column)?;
        Ok(u64::try_from(n).unwrap_or_default())
    };
    Ok(WebhookEndpoint {
        endpoint_id: row.try_get("endpoint_id")?,
        url: row.try_get("url")?,
        event_types: types_from_column(&types)?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        disabled_reason: row.try_get("disabled_reason")?,
        failures: u32::try_from(count("failures")?).unwrap_or(u32::MAX),
        failing_since_ms: row.try_get("failing_since_ms")?,
        last_errors: parse_col(T, serde_json::from_str(&errors))?,
        delivered_events: count("delivered_events")?,
        pending_events: count("pending_events")?,
        previous_secret_until_ms: row.try_get("previous_until_ms")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

impl Store {
    /// Creates an endpoint, enabled; returns it and its signing secret, which is not shown
    /// again.
    pub async fn create_webhook_endpoint(
        &self,
        tenant_id: &TenantId,
        url: &str,
        event_types: &[WebhookEventType],
    ) -> Result<(WebhookEndpoint, String)> {
        let endpoint_id = generate_endpoint_id();
        let secret = generate_secret();
        let now = now_ms();
        sqlx::query(
            "INSERT INTO webhook_endpoints (tenant_id, endpoint_id, url, event_types, secret,
               enabled, created_at_ms, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5, 1, $6, $6)",
        )
        .bind(tenant_id.as_str())
        .bind(endpoint_id.as_str())
        .bind(url)
        .bind(types_to_column(event_types))
        .bind(secret.as_str())
        .bind(now)
        .execute(self.pool())
        .await?;
        let endpoint = self
            .get_webhook_endpoint(tenant_id, &endpoint_id)
            .await?
            .ok_or_else(|| crate::StoreError::Corrupt {
                table: T,
                reason: format!("endpoint {endpoint_id} vanished as it was created"),
            })?;
        Ok((endpoint, secret))
    }

    /// The tenant's endpoints, in id order.
    pub async fn list_webhook_endpoints(
        &self,
        tenant_id: &TenantId,
    ) -> Result<Vec<WebhookEndpoint>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM webhook_endpoints e WHERE e.tenant_id = $1
             ORDER BY e.endpoint_id"
        ))
        .bind(tenant_id.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(endpoint_from_row).collect()
    }

    /// One of the tenant's endpoints.
    pub async fn get_webhook_endpoint(
        &self,
        tenant_id: &TenantId,
        endpoint_id: &str,
    ) -> Result<Option<WebhookEndpoint>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM webhook_endpoints e
             WHERE e.tenant_id = $1 AND e.endpoint_id = $2"
        ))
        .bind(tenant_id.as_str())
        .bind(endpoint_id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(endpoint_from_row).transpose()
    }

    /// Changes an endpoint; `None` when the tenant has no such endpoint. Enabling it clears
    /// its failures, so it is tried at once.
    pub async fn change_webhook_endpoint(
        &self,
        tenant_id: &TenantId,
        endpoint_id: &str,
        change: &EndpointChange,
    ) -> Result<Option<WebhookEndpoint>> {
        let enable = change.enabled.map(i64::from);
        let changed = sqlx::query(
            "UPDATE webhook_endpoints SET
               url = COALESCE($1, url),
               event_types = COALESCE($2, event_types),
               enabled = COALESCE($3, enabled),
               disabled_reason = CASE WHEN $3 IS NULL THEN disabled_reason ELSE NULL END,
               failures = CASE WHEN $3 = 1 THEN 0 ELSE failures END,
               failing_since_ms = CASE WHEN $3 = 1 THEN NULL ELSE failing_since_ms END,
               retry_at_ms = CASE WHEN $3 = 1 THEN 0 ELSE retry_at_ms END,
               updated_at_ms = $4
             WHERE tenant_id = $5 AND endpoint_id = $6",
        )
        .bind(change.url.clone())
        .bind(change.event_types.as_deref().map(types_to_column))
        .bind(enable)
        .bind(now_ms())
        .bind(tenant_id.as_str())
        .bind(endpoint_id)
        .execute(self.pool())
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(None);
        }
        self.get_webhook_endpoint(tenant_id, endpoint_id).await
    }

    /// Gives an endpoint a new secret, returned (and not shown again); the old one keeps
    /// signing beside it until `grace_until_ms`. `None` when the tenant has no such endpoint.
    pub async fn rotate_webhook_secret(
        &self,
        tenant_id: &TenantId,
        endpoint_id: &str,
        grace_until_ms: UnixMillis,
    ) -> Result<Option<String>> {
        let secret = generate_secret();
        let changed = sqlx::query(
            "UPDATE webhook_endpoints SET previous_secret = secret, previous_until_ms = $1,
               secret = $2, updated_at_ms = $3
             WHERE tenant_id = $4 AND endpoint_id = $5",
        )
        .bind(grace_until_ms)
        .bind(secret.as_str())
        .bind(now_ms())
        .bind(tenant_id.as_str())
        .bind(endpoint_id)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok((changed > 0).then_some(secret))
    }

    /// Deletes an endpoint and the events waiting for it; whether it existed.
    pub async fn delete_webhook_endpoint(
        &self,
        tenant_id: &TenantId,
        endpoint_id: &str,
    ) -> Result<bool> {
        let (mut tx, _writer) = self.write_tx().await?;
        let deleted =
            sqlx::query("DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND endpoint_id = $2")
                .bind(tenant_id.as_str())
                .bind(endpoint_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        sqlx::query("DELETE FROM webhook_events WHERE tenant_id = $1 AND endpoint_id = $2")
            .bind(tenant_id.as_str())
            .bind(endpoint_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(deleted > 0)
    }
}

#[cfg(test)]
mod tests;
