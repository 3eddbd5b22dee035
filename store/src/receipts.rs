//! Delivery receipts, one row per instance, upserted as deliveries progress.

use std::collections::{BTreeMap, HashMap, HashSet};

use fanout_domain::inbox::InboxMessage;
use fanout_domain::receipt::{ChannelCounts, DeliveryStatus, Receipt, UNKNOWN_USER};
use fanout_domain::webhook::{WebhookEventType, event_id};
use fanout_domain::{Channel, InstanceId, RequestId, TenantId, UserId};
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::bulk::Insert;
use crate::webhooks::outbox::NewEvent;
use crate::{Result, Store, parse_col};

const T: &str = "receipts";

fn receipt_from_row(row: &AnyRow) -> Result<Receipt> {
    let instance_id: String = row.try_get("instance_id")?;
    let request_id: String = row.try_get("request_id")?;
    let user_id: String = row.try_get("user_id")?;
    let channel: String = row.try_get("channel")?;
    let status: String = row.try_get("status")?;
    let attempts: i64 = row.try_get("attempts")?;
    let latency: Option<i64> = row.try_get("latency_ms")?;
    Ok(Receipt {
        instance_id: parse_col(T, InstanceId::parse(&instance_id))?,
        request_id: parse_col(T, RequestId::parse(&request_id))?,
        user_id: parse_col(T, UserId::parse(&user_id))?,
        channel: parse_col(T, channel.parse::<Channel>())?,
        status: parse_col(T, status.parse::<DeliveryStatus>())?,
        provider_message_id: row.try_get("provider_message_id")?,
        provider: row.try_get("provider")?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        latency_ms: latency.map(|l| u64::try_from(l).unwrap_or_default()),
        error_code: row.try_get("error_code")?,
        error_message: row.try_get("error_message")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        release_at_ms: row.try_get("release_at_ms")?,
    })
}

const COLUMNS: &str = "instance_id, request_id, user_id, channel, status, provider_message_id,
                       provider, attempts, latency_ms, error_code, error_message, updated_at_ms,
                       release_at_ms";

/// Which existing receipts a write replaces.
#[derive(Clone, Copy)]
enum Replace {
    /// Every one: deliveries move receipts forward, and only the delivery writes them.
    Any,
    /// Only pending ones: a final receipt is never overwritten by a settlement.
    PendingOnly,
}

impl Replace {
    fn condition(self) -> &'static str {
        match self {
            Self::Any => "",
            Self::PendingOnly => " WHERE receipts.status IN ('pending', 'deferred')",
        }
    }
}

/// The webhook events of deliveries that reached a final status: delivered, failed or
/// suppressed, and a page's failures going on the dead-letter list as well.
fn delivery_events(receipts: &[&Receipt], page: Option<u32>) -> Vec<NewEvent> {
    let mut events = Vec::new();
    for r in receipts {
        let kind = match r.status {
            DeliveryStatus::Delivered => WebhookEventType::DeliveryDelivered,
            DeliveryStatus::Failed => WebhookEventType::DeliveryFailed,
            DeliveryStatus::Suppressed => WebhookEventType::DeliverySuppressed,
            DeliveryStatus::Pending | DeliveryStatus::Deferred | DeliveryStatus::Cancelled => {
                continue;
            }
        };
        let data = json!({
            "request_id": r.request_id.as_str(),
            "instance_id": r.instance_id.as_str(),
            "user_id": r.user_id.as_str(),
            "channel": r.channel.as_str(),
            "status": r.status.as_str(),
            "error_code": r.error_code,
            "provider_message_id": r.provider_message_id,
            "provider": r.provider,
            "attempts": r.attempts,
            "latency_ms": r.latency_ms,
        });
        let at = r.updated_at_ms.to_string();
        let parts = [r.instance_id.as_str(), at.as_str()];
        if let (WebhookEventType::DeliveryFailed, Some(page)) = (kind, page) {
            let mut dead = data.clone();
            dead["page"] = json!(page);
            events.push(NewEvent {
                kind: WebhookEventType::DeliveryDeadLettered,
                id: event_id(WebhookEventType::DeliveryDeadLettered, &parts),
                at_ms: r.updated_at_ms,
                data: dead,
            });
        }
        events.push(NewEvent {
            kind,
            id: event_id(kind, &parts),
            at_ms: r.updated_at_ms,
            data,
        });
    }
    events
}

impl Store {
    /// Writes receipts, replacing earlier versions of the same instances, in one transaction.
    pub async fn upsert_receipts(&self, tenant_id: &TenantId, receipts: &[Receipt]) -> Result<()> {
        self.record_deliveries(tenant_id, receipts, &[]).await
    }

    /// Writes final receipts for instances that have none or a pending one, in one
    /// transaction; an instance whose receipt is already final keeps it. The settling of a
    /// cancelled or failed request decides from receipts it read earlier, and a page still
    /// finishing its sends may record `delivered` in between: that must not become `cancelled`.
    pub async fn settle_receipts(&self, tenant_id: &TenantId, receipts: &[Receipt]) -> Result<()> {
        self.write_deliveries(tenant_id, receipts, &[], Replace::PendingOnly)
            .await
    }

    /// Writes a batch of deliveries in one transaction: the in-app messages (added unless
    /// already there) and the receipts (replacing earlier versions). A crash leaves either both
    /// or neither, so a receipt never says delivered for an inbox row that does not exist.
    pub async fn record_deliveries(
        &self,
        tenant_id: &TenantId,
        receipts: &[Receipt],
        inbox: &[InboxMessage],
    ) -> Result<()> {
        self.write_deliveries(tenant_id, receipts, inbox, Replace::Any)
            .await
    }

    /// Like [`Store::record_deliveries`] for the deliveries of one audience page, and in the
    /// same transaction puts the failed ones on the dead-letter list.
    ///
    /// An in-app message whose user has no profile any more (erased while the page was being
    /// delivered) is not written: it leaves `inbox`, and its delivered receipt in `receipts`
    /// becomes suppressed with [`UNKNOWN_USER`], as a send after the erasure would have.
    /// Returns how many receipts that changed. The profiles are read under a lock that
    /// [`Store::delete_user`] waits for, so an erasure either commits before this write and is
    /// seen, or starts after it and finds its messages to delete.
    pub async fn record_page_deliveries(
        &self,
        tenant_id: &TenantId,
        page: u32,
        receipts: &mut [Receipt],
        inbox: &mut Vec<InboxMessage>,
    ) -> Result<u32> {
        if receipts.is_empty() && inbox.is_empty() {
            return Ok(0);
        }
        let (mut tx, _writer) = self.write_tx().await?;
        let suppressed = self
            .drop_messages_of_erased(&mut tx, tenant_id, receipts, inbox)
            .await?;
        self.write_in(
            &mut tx,
            tenant_id,
            Some(page),
            receipts,
            inbox,
            Replace::Any,
        )
        .await?;
        tx.commit().await?;
        Ok(suppressed)
    }

    /// Removes from `inbox` the messages of users without a profile, turning their delivered
    /// receipts to suppressed; returns how many receipts changed. On PostgreSQL the profiles
    /// present stay locked (`FOR KEY SHARE`, in user order) until the transaction ends: an
    /// erasure's `DELETE` waits for them, while profile updates and other deliveries do not.
    /// SQLite's write transaction already excludes the erasure.
    async fn drop_messages_of_erased(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        tenant_id: &TenantId,
        receipts: &mut [Receipt],
        inbox: &mut Vec<InboxMessage>,
    ) -> Result<u32> {
        if inbox.is_empty() {
            return Ok(0);
        }
        let mut users: Vec<&str> = inbox.iter().map(|m| m.user_id.as_str()).collect();
        users.sort_unstable();
        users.dedup();
        let lock = if self.is_sqlite() {
            ""
        } else {
            " FOR KEY SHARE"
        };
        let rows = self
            .fetch_by_keys_in(
                tx,
                &users,
                |list| {
                    format!(
                        "SELECT user_id FROM users WHERE tenant_id = $1 AND user_id IN ({list})
                         ORDER BY user_id{lock}"
                    )
                },
                |query| query.bind(tenant_id.as_str()),
            )
            .await?;
        let present = rows
            .iter()
            .map(|row| row.try_get::<String, _>("user_id"))
            .collect::<Result<HashSet<_>, _>>()?;
        let gone: HashSet<InstanceId> = inbox
            .iter()
            .filter(|m| !present.contains(m.user_id.as_str()))
            .map(|m| m.id.clone())
            .collect();
        if gone.is_empty() {
            return Ok(0);
        }
        inbox.retain(|m| !gone.contains(&m.id));
        let mut suppressed = 0;
        for receipt in receipts.iter_mut() {
            if gone.contains(&receipt.instance_id) && receipt.status == DeliveryStatus::Delivered {
                receipt.status = DeliveryStatus::Suppressed;
                receipt.error_code = Some(UNKNOWN_USER.into());
                receipt.provider_message_id = None;
                suppressed += 1;
            }
        }
        Ok(suppressed)
    }

    /// Writes deliveries that belong to no page (nothing goes on the dead-letter list).
    async fn write_deliveries(
        &self,
        tenant_id: &TenantId,
        receipts: &[Receipt],
        inbox: &[InboxMessage],
        replace: Replace,
    ) -> Result<()> {
        if receipts.is_empty() && inbox.is_empty() {
            return Ok(());
        }
        let (mut tx, _writer) = self.write_tx().await?;
        self.write_in(&mut tx, tenant_id, None, receipts, inbox, replace)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The writes of a batch of deliveries, in the caller's transaction; a page's failures go on
    /// the dead-letter list.
    async fn write_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        tenant_id: &TenantId,
        page: Option<u32>,
        receipts: &[Receipt],
        inbox: &[InboxMessage],
        replace: Replace,
    ) -> Result<()> {
        // In instance order: an upsert waits for a concurrent transaction's uncommitted row
        // with the same key, so two writers of overlapping receipts in different orders (a page
        // and the settling of its request, a retried attempt) could wait on each other, a
        // deadlock PostgreSQL breaks by failing one of them.
        let mut receipts: Vec<&Receipt> = receipts.iter().collect();
        receipts.sort_by(|a, b| a.instance_id.as_str().cmp(b.instance_id.as_str()));
        crate::inbox::insert_messages(tx, tenant_id, inbox).await?;
        if let Some(page) = page {
            crate::dead_letters::insert_failed(tx, tenant_id, page, &receipts).await?;
        }
        // A settlement's receipts are no news: the request's own event reports its end.
        if let Replace::Any = replace {
            crate::webhooks::outbox::enqueue(tx, tenant_id, || delivery_events(&receipts, page))
                .await?;
        }
        let on_conflict = format!(
            "ON CONFLICT (instance_id) DO UPDATE SET
               status = excluded.status, provider_message_id = excluded.provider_message_id,
               provider = excluded.provider, attempts = excluded.attempts, latency_ms = excluded.latency_ms,
               error_code = excluded.error_code, error_message = excluded.error_message,
               updated_at_ms = excluded.updated_at_ms,
               release_at_ms = COALESCE(excluded.release_at_ms, receipts.release_at_ms){}",
            replace.condition()
        );
        let insert = Insert {
            head: "INSERT INTO receipts (instance_id, request_id, tenant_id, user_id, channel,
                     status, provider_message_id, provider, attempts, latency_ms, error_code,
                     error_message, updated_at_ms, release_at_ms)",
            columns: 14,
            tail: &on_conflict,
        };
        insert
            .execute(tx, &receipts, |query, r| {
                query
                    .bind(r.instance_id.as_str())
                    .bind(r.request_id.as_str())
                    .bind(tenant_id.as_str())
                    .bind(r.user_id.as_str())
                    .bind(r.channel.as_str())
                    .bind(r.status.as_str())
                    .bind(r.provider_message_id.clone())
                    .bind(r.provider.clone())
                    .bind(i64::from(r.attempts))
                    .bind(r.latency_ms.map(|l| i64::try_from(l).unwrap_or(i64::MAX)))
                    .bind(r.error_code.clone())
                    .bind(r.error_message.clone())
                    .bind(r.updated_at_ms)
                    .bind(r.release_at_ms)
            })
            .await?;
        Ok(())
    }

    /// Returns the receipts of one request's page of instances, keyed by instance id.
    pub async fn get_receipts(
        &self,
        request_id: &RequestId,
        channel: Channel,
        users: &[UserId],
    ) -> Result<HashMap<InstanceId, Receipt>> {
        let ids: Vec<InstanceId> = users
            .iter()
            .map(|u| InstanceId::derive(request_id, u, channel))
            .collect();
        let rows = self
            .fetch_by_keys(
                &ids,
                |ids| format!("SELECT {COLUMNS} FROM receipts WHERE instance_id IN ({ids})"),
                |query| query,
            )
            .await?;
        let mut found = HashMap::with_capacity(rows.len());
        for row in &rows {
            let receipt = receipt_from_row(row)?;
            found.insert(receipt.instance_id.clone(), receipt);
        }
        Ok(found)
    }

    /// Lists a request's receipts in instance-id order, starting after `after`.
    pub async fn list_receipts(
        &self,
        tenant_id: &TenantId,
        request_id: &RequestId,
        after: Option<&InstanceId>,
        limit: u32,
    ) -> Result<Vec<Receipt>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM receipts
             WHERE tenant_id = $1 AND request_id = $2 AND instance_id > $3
             ORDER BY instance_id LIMIT $4"
        );
        let after = after.map(InstanceId::as_str);
        let rows = self
            .keyset_page(&sql, tenant_id, request_id.as_str(), after, limit)
            .await?;
        rows.iter().map(receipt_from_row).collect()
    }

    /// Counts a request's receipts per channel and status. `total` and `pending` are left to
    /// the caller, who knows the audience size.
    pub async fn receipt_counts(
        &self,
        request_id: &RequestId,
    ) -> Result<BTreeMap<Channel, ChannelCounts>> {
        let rows = sqlx::query(
            "SELECT channel, status, COUNT(*) AS n FROM receipts WHERE request_id = $1
             GROUP BY channel, status",
        )
        .bind(request_id.as_str())
        .fetch_all(self.pool())
        .await?;
        let mut counts: BTreeMap<Channel, ChannelCounts> = BTreeMap::new();
        for row in rows {
            let channel: String = row.try_get("channel")?;
            let status: String = row.try_get("status")?;
            let n: i64 = row.try_get("n")?;
            let n = u64::try_from(n).unwrap_or_default();
            let c = counts
                .entry(parse_col(T, channel.parse::<Channel>())?)
                .or_default();
            match parse_col(T, status.parse::<DeliveryStatus>())? {
                DeliveryStatus::Delivered => c.delivered += n,
                DeliveryStatus::Failed => c.failed += n,
                DeliveryStatus::Suppressed => c.suppressed += n,
                DeliveryStatus::Cancelled => c.cancelled += n,
                DeliveryStatus::Pending => c.pending += n,
                DeliveryStatus::Deferred => {
                    c.pending += n;
                    c.deferred += n;
                }
            }
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use fanout_domain::DedupeKey;

    use crate::now_ms;
    use crate::test_support::{all_succeed, store};

    use super::*;

    fn receipt(req: &RequestId, user: &str, status: DeliveryStatus) -> Receipt {
        let user_id = UserId::parse(user).unwrap();
        Receipt {
            instance_id: InstanceId::derive(req, &user_id, Channel::Email),
            request_id: req.clone(),
            user_id,
            channel: Channel::Email,
            status,
            provider_message_id: None,
            provider: None,
            attempts: 1,
            latency_ms: Some(3),
            error_code: None,
            error_message: None,
            updated_at_ms: now_ms(),
            release_at_ms: None,
        }
    }

    /// A settlement writes final receipts over pending or missing ones only: a delivery
    /// recorded after the settlement read its receipts stands.
    #[tokio::test]
    async fn settling_never_overwrites_a_final_receipt() {
        let store = store().await;
        let t = TenantId::parse("acme").unwrap();
        let req = DedupeKey::new(t.clone(), "settle").unwrap().request_id();
        store
            .upsert_receipts(
                &t,
                &[
                    receipt(&req, "pending", DeliveryStatus::Pending),
                    receipt(&req, "delivered", DeliveryStatus::Delivered),
                ],
            )
            .await
            .unwrap();
        let cancelled: Vec<Receipt> = ["pending", "delivered", "missing"]
            .iter()
            .map(|u| receipt(&req, u, DeliveryStatus::Cancelled))
            .collect();
        store.settle_receipts(&t, &cancelled).await.unwrap();
        let users: Vec<UserId> = ["pending", "delivered", "missing"]
            .iter()
            .map(|u| UserId::parse(u).unwrap())
            .collect();
        let found = store
            .get_receipts(&req, Channel::Email, &users)
            .await
            .unwrap();
        let status = |u: &str| {
            found[&cancelled
                .iter()
                .find(|r| r.user_id.as_str() == u)
                .unwrap()
                .instance_id]
                .status
        };
        assert_eq!(status("pending"), DeliveryStatus::Cancelled);
        assert_eq!(status("delivered"), DeliveryStatus::Delivered);
        assert_eq!(status("missing"), DeliveryStatus::Cancelled);
    }

    #[tokio::test]
    async fn receipts_upsert_page_and_count() {
        let store = store().await;
        let t = TenantId::parse("acme").unwrap();
        let req = DedupeKey::new(t.clone(), "k").unwrap().request_id();
        let users: Vec<String> = (0..5).map(|i| format!("u{i}")).collect();
        let mut all: Vec<Receipt> = users
            .iter()
            .map(|u| receipt(&req, u, DeliveryStatus::Pending))
            .collect();
        store.upsert_receipts(&t, &all).await.unwrap();
        all[0].status = DeliveryStatus::Delivered;
        all[0].attempts = 2;
        all[0].provider = Some("backup".into());
        all[1].status = DeliveryStatus::Failed;
        store.upsert_receipts(&t, &all[..2]).await.unwrap();

        let ids: Vec<UserId> = users.iter().map(|u| UserId::parse(u).unwrap()).collect();
        let got = store
            .get_receipts(&req, Channel::Email, &ids)
            .await
            .unwrap();
        assert_eq!(got.len(), 5);
        assert_eq!(
            got[&all[0].instance_id], all[0],
            "every field, the provider too"
        );

        let counts = store.receipt_counts(&req).await.unwrap();
        let email = counts[&Channel::Email];
        assert_eq!((email.delivered, email.failed, email.pending), (1, 1, 3));

        let first = store.list_receipts(&t, &req, None, 3).await.unwrap();
        let rest = store
            .list_receipts(&t, &req, Some(&first[2].instance_id), 3)
            .await
            .unwrap();
        assert_eq!((first.len(), rest.len()), (3, 2));
        assert!(first[2].instance_id < rest[0].instance_id);
        let other = TenantId::parse("other").unwrap();
        assert!(
            store
                .list_receipts(&other, &req, None, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    /// A request's receipts are written by more than one writer at once: a page recording
    /// its deliveries while the request is settled (cancelled), or a retried attempt beside
    /// the one it replaces, each listing the instances in an order of its own. None may fail
    /// (PostgreSQL reports a deadlock when two upserts wait on each other's rows).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_of_overlapping_receipts_never_deadlock() {
        let store = store().await;
        let t = TenantId::parse("acme").unwrap();
        let req = DedupeKey::new(t.clone(), "k").unwrap().request_id();
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let (store, t, req) = (store.clone(), t.clone(), req.clone());
                tokio::spawn(async move {
                    for round in 0..4 {
                        let mut batch: Vec<Receipt> = (0..300)
                            .map(|j| {
                                let user = format!("u{:03}", (j * 7 + i * 13 + round) % 400);
                                receipt(&req, &user, DeliveryStatus::Failed)
                            })
                            .collect();
                        if i % 2 == 1 {
                            batch.reverse();
                        }
                        store
                            .record_page_deliveries(&t, 0, &mut batch.clone(), &mut vec![])
                            .await?;
                    }
                    Ok::<_, crate::StoreError>(())
                })
            })
            .collect();
        all_succeed(tasks).await;
        let counts = store.receipt_counts(&req).await.unwrap();
        assert_eq!(counts[&Channel::Email].failed, 400);
    }
}
