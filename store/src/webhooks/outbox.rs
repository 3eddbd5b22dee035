//! The outbox: events written in the transaction that makes them true, one row per subscribed
//! endpoint, until the endpoint has taken them.
//!
//! A delivery's final receipt, a dead letter, a request's end and a dead push token each write
//! their event beside themselves ([`enqueue`]), so an event exists exactly when its fact does.
//! Its id comes from the fact (`fanout_domain::webhook::event_id`): a write repeated by a retry
//! adds nothing. A dispatcher finds the endpoints with events waiting
//! ([`Store::due_webhook_endpoints`]), claims a batch of one endpoint's oldest
//! ([`Store::claim_webhook_batch`]) for the length of its call, and then either deletes them
//! ([`Store::webhook_batch_taken`]) or hands them back and makes the endpoint wait
//! ([`Store::webhook_batch_failed`]). A dispatcher that dies mid-call leaves its claim to
//! expire, and the events go again: delivery is at least once, and the event id is the
//! receivers' idempotency key.

use fanout_domain::webhook::WebhookEventType;
use fanout_domain::{TenantId, UnixMillis};
use serde_json::json;
use sqlx::Row;

use super::{EndpointError, KEPT_ERRORS, T, types_from_column};
use crate::bulk::{Insert, in_key_order};
use crate::{Result, Store, now_ms, parse_col};

/// An event to write for every endpoint of the tenant that subscribes to its type.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// What happened.
    pub kind: WebhookEventType,
    /// Its id, derived from the fact.
    pub id: String,
    /// When it happened.
    pub at_ms: UnixMillis,
    /// What receivers get as `data`.
    pub data: serde_json::Value,
}

impl NewEvent {
    /// The event as sent: `{"id", "type", "created_at_ms", "data"}`.
    fn payload(&self) -> String {
        json!({
            "id": self.id,
            "type": self.kind.as_str(),
            "created_at_ms": self.at_ms,
            "data": self.data,
        })
        .to_string()
    }
}

/// Writes the events `build` makes for the tenant's enabled endpoints that subscribe to them,
/// inside the caller's transaction (the one writing what they report). `build` runs only when
/// the tenant has an endpoint, so a tenant without one pays a single indexed lookup. Rows go
/// in key order, as every writer of overlapping rows takes them.
pub(crate) async fn enqueue(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    tenant_id: &TenantId,
    build: impl FnOnce() -> Vec<NewEvent>,
) -> Result<()> {
    let endpoints = sqlx::query(
        "SELECT endpoint_id, event_types FROM webhook_endpoints
         WHERE tenant_id = $1 AND enabled = 1",
    )
    .bind(tenant_id.as_str())
    .fetch_all(&mut **tx)
    .await?;
    if endpoints.is_empty() {
        return Ok(());
    }
    let events = build();
    let now = now_ms();
    let mut rows: Vec<(String, String, WebhookEventType, String)> = Vec::new();
    for endpoint in &endpoints {
        let endpoint_id: String = endpoint.try_get("endpoint_id")?;
        let types = types_from_column(&endpoint.try_get::<String, _>("event_types")?)?;
        for event in events.iter().filter(|e| types.contains(&e.kind)) {
            rows.push((
                endpoint_id.clone(),
                event.id.clone(),
                event.kind,
                event.payload(),
            ));
        }
    }
    let rows = in_key_order(&rows);
    let insert = Insert {
        head: "INSERT INTO webhook_events (tenant_id, endpoint_id, event_id, event_type, payload,
                 created_at_ms)",
        columns: 6,
        tail: "ON CONFLICT (tenant_id, endpoint_id, event_id) DO NOTHING",
    };
    insert
        .execute(
            tx,
            &rows,
            |query, (endpoint_id, event_id, kind, payload)| {
                query
                    .bind(tenant_id.as_str())
                    .bind(endpoint_id.as_str())
                    .bind(event_id.as_str())
                    .bind(kind.as_str())
                    .bind(payload.as_str())
                    .bind(now)
            },
        )
        .await?;
    Ok(())
}

/// An endpoint with events waiting that it can be sent now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueEndpoint {
    /// Whose.
    pub tenant_id: TenantId,
    /// Which.
    pub endpoint_id: String,
    /// How many events wait for it, unclaimed.
    pub waiting: u64,
    /// When the oldest and the newest of them were written.
    pub oldest_ms: UnixMillis,
    /// See `oldest_ms`.
    pub newest_ms: UnixMillis,
}

/// A batch of one endpoint's events, claimed for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Where to post it.
    pub url: String,
    /// The secrets to sign it with: the current one, then a rotated-out one still in its
    /// grace period.
    pub secrets: Vec<String>,
    /// The events' ids, in the order of `payloads`.
    pub event_ids: Vec<String>,
    /// The events as sent, oldest first.
    pub payloads: Vec<String>,
}

impl Store {
    /// Endpoints, enabled and not waiting out a failure, with unclaimed events (at most
    /// `limit`).
    pub async fn due_webhook_endpoints(
        &self,
        now: UnixMillis,
        limit: u32,
    ) -> Result<Vec<DueEndpoint>> {
        let rows = sqlx::query(
            "SELECT w.tenant_id, w.endpoint_id, COUNT(*) AS waiting,
                    MIN(w.created_at_ms) AS oldest_ms, MAX(w.created_at_ms) AS newest_ms
             FROM webhook_events w JOIN webhook_endpoints e
               ON e.tenant_id = w.tenant_id AND e.endpoint_id = w.endpoint_id
             WHERE e.enabled = 1 AND e.retry_at_ms <= $1 AND w.claimed_until_ms <= $1
             GROUP BY w.tenant_id, w.endpoint_id
             ORDER BY MIN(w.created_at_ms)
             LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let tenant: String = row.try_get("tenant_id")?;
                Ok(DueEndpoint {
                    tenant_id: parse_col(T, TenantId::parse(&tenant))?,
                    endpoint_id: row.try_get("endpoint_id")?,
                    waiting: u64::try_from(row.try_get::<i64, _>("waiting")?).unwrap_or(0),
                    oldest_ms: row.try_get("oldest_ms")?,
                    newest_ms: row.try_get("newest_ms")?,
                })
            })
            .collect()
    }

    /// Claims up to `max` of the endpoint's oldest unclaimed events until `now + lease_ms`;
    /// `None` when there are none, or the endpoint is gone, disabled or waiting out a failure.
    pub async fn claim_webhook_batch(
        &self,
        tenant_id: &TenantId,
        endpoint_id: &str,
        now: UnixMillis,
        lease_ms: i64,
        max: u32,
    ) -> Result<Option<Batch>> {
        let (mut tx, _writer) = self.write_tx().await?;
        let Some(endpoint) = sqlx::query(
            "SELECT url, secret, previous_secret, previous_until_ms FROM webhook_endpoints
             WHERE tenant_id = $1 AND endpoint_id = $2 AND enabled = 1 AND retry_at_ms <= $3",
        )
        .bind(tenant_id.as_str())
        .bind(endpoint_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        // The pick is materialized: as an `IN (..)` subquery PostgreSQL may run it again for
        // the rows it compares, and claim more than `max`.
        let sql = format!(
            "WITH picked AS MATERIALIZED (
               SELECT event_id FROM webhook_events
               WHERE tenant_id = $2 AND endpoint_id = $3 AND claimed_until_ms <= $4
               ORDER BY created_at_ms, event_id LIMIT $5{})
             UPDATE webhook_events SET claimed_until_ms = $1, attempts = attempts + 1
             WHERE tenant_id = $2 AND endpoint_id = $3
               AND event_id IN (SELECT event_id FROM picked)
             RETURNING event_id, payload, created_at_ms",
            self.claim_rows()
        );
        let mut claimed = sqlx::query(&sql)
            .bind(now + lease_ms)
            .bind(tenant_id.as_str())
            .bind(endpoint_id)
            .bind(now)
            .bind(i64::from(max.max(1)))
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| {
                Ok((
                    row.try_get::<i64, _>("created_at_ms")?,
                    row.try_get::<String, _>("event_id")?,
                    row.try_get::<String, _>("payload")?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        tx.commit().await?;
        if claimed.is_empty() {
            return Ok(None);
        }
        claimed.sort();
        let mut secrets = vec![endpoint.try_get::<String, _>("secret")?];
        let previous: Option<String> = endpoint.try_get("previous_secret")?;
        let until: Option<i64> = endpoint.try_get("previous_until_ms")?;
        if let (Some(previous), Some(until)) = (previous, until)
            && until > now
        {
            secrets.push(previous);
        }
        let (event_ids, payloads) = claimed.into_iter().map(|(_, id, p)| (id, p)).unzip();
        Ok(Some(Batch {
            url: endpoint.try_get("url")?,
            secrets,
            event_ids,
            payloads,
        }))
    }

    /// The endpoint took a batch: its events go, and its failures are forgotten.
    pub async fn webhook_batch_taken(
        &self,
        tenant_id: &TenantId,
        endpoint_id: &str,
        event_ids: &[String],
    ) -> Result<()> {
        let (mut tx, _writer) = self.write_tx().await?;
        let taken = self
            .execute_by_keys(
                &mut tx,
                event_ids,
                |ids| {
                    format!(
                        "DELETE FROM webhook_events
                         WHERE tenant_id = $1 AND endpoint_id = $2 AND event_id IN ({ids})"
                    )
                },
                |query| query.bind(tenant_id.as_str()).bind(endpoint_id),
            )
            .await?;
        sqlx::query(
            "UPDATE webhook_endpoints SET failures = 0, failing_since_ms = NULL, retry_at_ms = 0,
               delivered_events = delivered_events + $1
             WHERE tenant_id = $2 AND endpoint_id = $3",
        )
        .bind(i64::try_from(taken).unwrap_or(i64::MAX))
        .bind(tenant_id.as_str())
        .bind(endpoint_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A call with a batch failed with `error`: its events are handed back, and the endpoint
    /// waits `backoff(failures in a row)` milliseconds before its next call. An endpoint that
    /// has failed for `disable_after_ms` without a success is disabled, with the reason;
    /// returns whether that happened now.
    pub async fn webhook_batch_failed(
        &self,
        tenant_id: &TenantId,
        endpoint_id: &str,
        event_ids: &[String],
        error: &str,
        backoff: impl FnOnce(u32) -> i64,
        disable_after_ms: i64,
    ) -> Result<bool> {
        let now = now_ms();
        let (mut tx, _writer) = self.write_tx().await?;
        self.execute_by_keys(
            &mut tx,
            event_ids,
            |ids| {
                format!(
                    "UPDATE webhook_events SET claimed_until_ms = 0
                     WHERE tenant_id = $1 AND endpoint_id = $2 AND event_id IN ({ids})"
                )
            },
            |query| query.bind(tenant_id.as_str()).bind(endpoint_id),
        )
        .await?;
        let Some(row) = sqlx::query(&format!(
            "SELECT failures, failing_since_ms, last_errors FROM webhook_endpoints
             WHERE tenant_id = $1 AND endpoint_id = $2{}",
            self.lock_rows()
        ))
        .bind(tenant_id.as_str())
        .bind(endpoint_id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            tx.commit().await?;
            return Ok(false);
        };
        let failures = u32::try_from(row.try_get::<i64, _>("failures")?).unwrap_or(0) + 1;
        let since = row
            .try_get::<Option<i64>, _>("failing_since_ms")?
            .unwrap_or(now);
        let mut errors: Vec<EndpointError> = parse_col(
            T,
            serde_json::from_str(&row.try_get::<String, _>("last_errors")?),
        )?;
        errors.insert(
            0,
            EndpointError {
                at_ms: now,
                error: error.to_owned(),
            },
        );
        errors.truncate(KEPT_ERRORS);
        let disable = now - since >= disable_after_ms;
        let reason = disable.then(|| {
            format!(
                "failing without a success for {} s: {error}",
                (now - since) / 1000
            )
        });
        sqlx::query(
            "UPDATE webhook_endpoints SET failures = $1, failing_since_ms = $2, retry_at_ms = $3,
               last_errors = $4, enabled = CASE WHEN $5 = 1 THEN 0 ELSE enabled END,
               disabled_reason = COALESCE($6, disabled_reason), updated_at_ms = $7
             WHERE tenant_id = $8 AND endpoint_id = $9",
        )
        .bind(i64::from(failures))
        .bind(since)
        .bind(now + backoff(failures).max(0))
        .bind(parse_col(T, serde_json::to_string(&errors))?)
        .bind(i64::from(disable))
        .bind(reason)
        .bind(now)
        .bind(tenant_id.as_str())
        .bind(endpoint_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(disable)
    }
}
