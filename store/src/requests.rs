//! Notification requests: the row the API writes on accept and the workflow finalises.

use std::collections::BTreeMap;

use fanout_domain::receipt::{Progress, RequestState};
use fanout_domain::request::DeliveryPath;
use fanout_domain::webhook::{WebhookEventType, event_id};
use fanout_domain::{RequestId, TemplateId, TenantId, UnixMillis};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::webhooks::outbox::NewEvent;
use crate::{Result, Store, now_ms, parse_col};

/// What a request's row is filed under, taken from the workflow input it is recorded with. The
/// store keeps the input itself as an opaque JSON document: its type is a workflow contract
/// (`fanout_contracts::NotificationInput`), which the store does not depend on.
#[derive(Debug, Clone, Copy)]
pub struct RequestKeys<'a> {
    /// The request (and workflow) id.
    pub request_id: &'a RequestId,
    /// The owning tenant.
    pub tenant_id: &'a TenantId,
    /// The template.
    pub template_id: &'a TemplateId,
    /// How it is delivered.
    pub path: DeliveryPath,
    /// When a scheduled request runs; `None` runs at once. A scheduled request is recorded as
    /// `scheduled` until its workflow releases it.
    pub run_at_ms: Option<UnixMillis>,
}

/// A request as recorded in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// The request (and workflow) id.
    pub request_id: RequestId,
    /// The owning tenant.
    pub tenant_id: TenantId,
    /// The tenant's dedupe key.
    pub dedupe_key: String,
    /// The template.
    pub template_id: TemplateId,
    /// The last state written: `running` until the workflow finalises it.
    pub state: RequestState,
    /// Final counts, once finalised.
    pub progress: Option<Progress>,
    /// The request's metadata labels.
    pub metadata: BTreeMap<String, String>,
    /// When it was accepted.
    pub created_at_ms: UnixMillis,
    /// When it last changed.
    pub updated_at_ms: UnixMillis,
    /// Whether Temporal accepted its workflow.
    pub started: bool,
    /// Which use of its dedupe key this is (0 for the first).
    pub generation: u32,
    /// How its workflow delivers.
    pub path: DeliveryPath,
    /// When it runs, if it was scheduled (the latest reschedule's time).
    pub run_at_ms: Option<UnixMillis>,
}

fn record_from_row(row: &AnyRow) -> Result<RequestRecord> {
    const T: &str = "requests";
    let request_id: String = row.try_get("request_id")?;
    let tenant_id: String = row.try_get("tenant_id")?;
    let template_id: String = row.try_get("template_id")?;
    let state: String = row.try_get("state")?;
    let progress: Option<String> = row.try_get("progress")?;
    let metadata: String = row.try_get("metadata")?;
    Ok(RequestRecord {
        request_id: parse_col(T, RequestId::parse(&request_id))?,
        tenant_id: parse_col(T, TenantId::parse(&tenant_id))?,
        dedupe_key: row.try_get("dedupe_key")?,
        template_id: parse_col(T, TemplateId::parse(&template_id))?,
        state: parse_col(T, state.parse())?,
        progress: progress
            .map(|p| parse_col(T, serde_json::from_str(&p)))
            .transpose()?,
        metadata: parse_col(T, serde_json::from_str(&metadata))?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        started: row.try_get::<i64, _>("started")? != 0,
        generation: u32::try_from(row.try_get::<i64, _>("generation")?).unwrap_or(u32::MAX),
        path: parse_col(T, row.try_get::<String, _>("path")?.parse())?,
        run_at_ms: row.try_get("run_at_ms")?,
    })
}

impl Store {
    /// Records an accepted request as running, the `generation`-th use of its dedupe key, with
    /// the workflow input it is started with (re-drives deliver the same content from it).
    /// Returns `false` if a request with this id is already recorded, leaving it untouched.
    pub async fn insert_request<I: Serialize>(
        &self,
        keys: RequestKeys<'_>,
        input: &I,
        generation: u32,
        dedupe_key: &str,
        metadata: &BTreeMap<String, String>,
    ) -> Result<bool> {
        let now = now_ms();
        let metadata = parse_col(T_REQUESTS, serde_json::to_string(metadata))?;
        let stored_input = parse_col(T_REQUESTS, serde_json::to_string(input))?;
        let done = sqlx::query(
            "INSERT INTO requests (request_id, tenant_id, dedupe_key, template_id, state,
                                   metadata, created_at_ms, updated_at_ms, generation, input,
                                   path, run_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
        )
        .bind(keys.request_id.as_str())
        .bind(keys.tenant_id.as_str())
        .bind(dedupe_key)
        .bind(keys.template_id.as_str())
        .bind(match keys.run_at_ms {
            Some(_) => RequestState::Scheduled.as_str(),
            None => RequestState::Running.as_str(),
        })
        .bind(metadata)
        .bind(now)
        .bind(i64::from(generation))
        .bind(stored_input)
        .bind(keys.path.as_str())
        .bind(keys.run_at_ms)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Returns the workflow input the tenant's request was started with; `None` for an unknown
    /// request or one recorded before inputs were kept.
    pub async fn request_input<I: DeserializeOwned>(
        &self,
        tenant_id: &TenantId,
        request_id: &RequestId,
    ) -> Result<Option<I>> {
        let stored: Option<Option<String>> = sqlx::query_scalar(
            "SELECT input FROM requests WHERE request_id = $1 AND tenant_id = $2",
        )
        .bind(request_id.as_str())
        .bind(tenant_id.as_str())
        .fetch_optional(self.pool())
        .await?;
        stored
            .flatten()
            .map(|json| parse_col(T_REQUESTS, serde_json::from_str(&json)))
            .transpose()
    }

    /// When the API accepted a request (its record's creation), if it is recorded.
    pub async fn request_accepted_at(&self, request_id: &RequestId) -> Result<Option<UnixMillis>> {
        let at: Option<i64> =
            sqlx::query_scalar("SELECT created_at_ms FROM requests WHERE request_id = $1")
                .bind(request_id.as_str())
                .fetch_optional(self.pool())
                .await?;
        Ok(at)
    }

    /// Records that a scheduled request's time came: `scheduled` becomes `running`. Any other
    /// state is left alone (a retry after the first write, or a cancel that won).
    pub async fn release_request(&self, request_id: &RequestId) -> Result<()> {
        sqlx::query(
            "UPDATE requests SET state = $1, updated_at_ms = $2 WHERE request_id = $3 AND state = $4",
        )
        .bind(RequestState::Running.as_str())
        .bind(now_ms())
        .bind(request_id.as_str())
        .bind(RequestState::Scheduled.as_str())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records a scheduled request's new time, once its workflow accepted the move. Returns
    /// `false` when the request is no longer scheduled.
    pub async fn reschedule_request(
        &self,
        request_id: &RequestId,
        run_at_ms: UnixMillis,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE requests SET run_at_ms = $1, updated_at_ms = $2
             WHERE request_id = $3 AND state = $4",
        )
        .bind(run_at_ms)
        .bind(now_ms())
        .bind(request_id.as_str())
        .bind(RequestState::Scheduled.as_str())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records that Temporal accepted the request's workflow.
    pub async fn mark_started(&self, request_id: &RequestId) -> Result<()> {
        sqlx::query("UPDATE requests SET started = 1 WHERE request_id = $1")
            .bind(request_id.as_str())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Returns the request if it belongs to `tenant_id`. Another tenant's request is
    /// indistinguishable from a missing one.
    pub async fn get_request(
        &self,
        tenant_id: &TenantId,
        request_id: &RequestId,
    ) -> Result<Option<RequestRecord>> {
        let row = sqlx::query(
            "SELECT request_id, tenant_id, dedupe_key, template_id, state, progress, metadata,
                    created_at_ms, updated_at_ms, started, generation, path, run_at_ms
             FROM requests WHERE request_id = $1 AND tenant_id = $2",
        )
        .bind(request_id.as_str())
        .bind(tenant_id.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    /// Returns the tenant's latest request for a dedupe key, if any.
    pub async fn find_request_by_dedupe_key(
        &self,
        tenant_id: &TenantId,
        dedupe_key: &str,
    ) -> Result<Option<RequestRecord>> {
        let row = sqlx::query(
            "SELECT request_id, tenant_id, dedupe_key, template_id, state, progress, metadata,
                    created_at_ms, updated_at_ms, started, generation, path, run_at_ms
             FROM requests WHERE tenant_id = $1 AND dedupe_key = $2
             ORDER BY generation DESC LIMIT 1",
        )
        .bind(tenant_id.as_str())
        .bind(dedupe_key)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    /// Writes the request's final state and counts, and the webhook event of its end.
    pub async fn finalize_request(
        &self,
        request_id: &RequestId,
        state: RequestState,
        progress: &Progress,
    ) -> Result<()> {
        let counts = parse_col(T_REQUESTS, serde_json::to_string(progress))?;
        let now = now_ms();
        let (mut tx, _writer) = self.write_tx().await?;
        let tenant: Option<String> = sqlx::query_scalar(
            "UPDATE requests SET state = $1, progress = $2, updated_at_ms = $3
             WHERE request_id = $4 RETURNING tenant_id",
        )
        .bind(state.as_str())
        .bind(counts)
        .bind(now)
        .bind(request_id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let kind = match state {
            RequestState::Completed => Some(WebhookEventType::RequestCompleted),
            RequestState::Cancelled => Some(WebhookEventType::RequestCancelled),
            RequestState::Failed => Some(WebhookEventType::RequestFailed),
            RequestState::Running | RequestState::Scheduled | RequestState::Digested => None,
        };
        if let (Some(tenant), Some(kind)) = (tenant, kind) {
            let tenant_id = parse_col(T_REQUESTS, TenantId::parse(&tenant))?;
            crate::webhooks::outbox::enqueue(&mut tx, &tenant_id, || {
                vec![NewEvent {
                    kind,
                    id: event_id(kind, &[request_id.as_str()]),
                    at_ms: now,
                    data: serde_json::json!({
                        "request_id": request_id.as_str(),
                        "state": state.as_str(),
                        "progress": progress,
                    }),
                }]
            })
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

const T_REQUESTS: &str = "requests";

#[cfg(test)]
mod tests {
    use fanout_domain::DedupeKey;

    use crate::test_support::store;

    use super::*;

    #[tokio::test]
    async fn a_scheduled_request_moves_until_released_and_never_after() {
        let store = store().await;
        let t = TenantId::parse("acme").unwrap();
        store.upsert_tenant(&t, "Acme").await.unwrap();
        let id = DedupeKey::new(t.clone(), "later").unwrap().request_id();
        let tpl = TemplateId::parse("welcome").unwrap();
        let keys = RequestKeys {
            request_id: &id,
            tenant_id: &t,
            template_id: &tpl,
            path: DeliveryPath::Direct,
            run_at_ms: Some(1_000),
        };
        let input = serde_json::json!({"request_id": id});
        store
            .insert_request(keys, &input, 0, "later", &BTreeMap::new())
            .await
            .unwrap();
        let read = || async { store.get_request(&t, &id).await.unwrap().unwrap() };
        assert_eq!(
            (read().await.state, read().await.run_at_ms),
            (RequestState::Scheduled, Some(1_000))
        );
        assert!(store.reschedule_request(&id, 2_000).await.unwrap());
        assert_eq!(read().await.run_at_ms, Some(2_000));

        store.release_request(&id).await.unwrap();
        assert_eq!(read().await.state, RequestState::Running);
        assert!(!store.reschedule_request(&id, 3_000).await.unwrap());
        assert_eq!(read().await.run_at_ms, Some(2_000));
        // Releasing again (an activity retry) leaves a later state alone.
        store
            .finalize_request(&id, RequestState::Cancelled, &Progress::default())
            .await
            .unwrap();
        store.release_request(&id).await.unwrap();
        assert_eq!(read().await.state, RequestState::Cancelled);
    }

    #[tokio::test]
    async fn requests_insert_once_and_finalise() {
        let store = store().await;
        let t = TenantId::parse("acme").unwrap();
        store.upsert_tenant(&t, "Acme").await.unwrap();
        let key = DedupeKey::new(t.clone(), "k1").unwrap();
        let id = key.request_id();
        let tpl = TemplateId::parse("welcome").unwrap();
        let meta = BTreeMap::from([("source".to_owned(), "test".to_owned())]);
        // The store keeps the workflow input as an opaque document; any serializable value
        // stands in for `fanout_contracts::NotificationInput` here.
        let input = |id: RequestId| serde_json::json!({"request_id": id, "template_id": tpl, "data": {"plan": "pro"}});
        let insert = |id: RequestId, generation: u32| {
            let (store, meta, input) = (store.clone(), meta.clone(), input(id.clone()));
            let (t, tpl) = (t.clone(), tpl.clone());
            async move {
                let keys = RequestKeys {
                    request_id: &id,
                    tenant_id: &t,
                    template_id: &tpl,
                    path: DeliveryPath::Tree,
                    run_at_ms: None,
                };
                store
                    .insert_request(keys, &input, generation, "k1", &meta)
                    .await
                    .unwrap()
            }
        };
        assert!(insert(id.clone(), 0).await);
        assert!(!insert(id.clone(), 0).await);
        let rec = store.get_request(&t, &id).await.unwrap().unwrap();
        assert_eq!(rec.state, RequestState::Running);
        assert_eq!(rec.metadata, meta);
        assert!(!rec.started);
        let kept: serde_json::Value = store.request_input(&t, &id).await.unwrap().unwrap();
        assert_eq!(kept, input(id.clone()));
        store.mark_started(&id).await.unwrap();
        assert!(store.get_request(&t, &id).await.unwrap().unwrap().started);
        // A later use of the key is a second request; lookups by key find the latest.
        let next = key.request_id_for(1);
        assert!(insert(next.clone(), 1).await);

        let progress = Progress {
            pages_total: 1,
            pages_done: 1,
            recipients: 2,
            ..Default::default()
        };
        store
            .finalize_request(&id, RequestState::Completed, &progress)
            .await
            .unwrap();
        let rec = store.get_request(&t, &id).await.unwrap().unwrap();
        assert_eq!(rec.state, RequestState::Completed);
        assert_eq!(rec.progress, Some(progress));

        let other = TenantId::parse("other").unwrap();
        assert!(store.get_request(&other, &id).await.unwrap().is_none());
        let by_key = store
            .find_request_by_dedupe_key(&t, "k1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((by_key.request_id, by_key.generation), (next, 1));
        assert!(
            store
                .find_request_by_dedupe_key(&other, "k1")
                .await
                .unwrap()
                .is_none()
        );
    }
}
