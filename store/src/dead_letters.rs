//! The dead-letter list: instances that failed for good, with their last error, and re-driving
//! them.
//!
//! Rows are written in the same transaction as the failed receipts (see
//! [`Store::record_page_deliveries`]). A re-drive puts the chosen instances' receipts back to
//! `pending` and stamps the rows `redriven_at_ms` in one transaction, then returns the pages
//! and channels to deliver again; an instance failing again goes back on the list.

use std::collections::{BTreeMap, BTreeSet};

use fanout_domain::receipt::{DeadLetter, DeliveryStatus, Receipt};
use fanout_domain::{Channel, InstanceId, RequestId, TenantId, UnixMillis, UserId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::bulk::{Insert, placeholders};
use crate::{Result, Store, now_ms, parse_col};

const T: &str = "dead_letters";

const COLUMNS: &str = "instance_id, request_id, user_id, channel, page_no, error_code,
                       error_message, attempts, created_at_ms, redriven_at_ms";

/// Puts failed instances on the list; one failing again after a re-drive is back on it.
const INSERT_FAILED: Insert<'static> = Insert {
    head: "INSERT INTO dead_letters (instance_id, tenant_id, request_id, user_id, channel,
             page_no, error_code, error_message, attempts, created_at_ms)",
    columns: 10,
    tail: "ON CONFLICT (instance_id) DO UPDATE SET
             error_code = excluded.error_code, error_message = excluded.error_message,
             attempts = excluded.attempts, created_at_ms = excluded.created_at_ms,
             redriven_at_ms = NULL",
};

/// Which dead letters a listing or a re-drive covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    /// Only this request's.
    pub request_id: Option<RequestId>,
    /// Only this channel's.
    pub channel: Option<Channel>,
    /// Only these instances.
    pub instance_ids: Option<Vec<InstanceId>>,
    /// Include instances already re-driven (listing only).
    pub include_redriven: bool,
}

/// A position in the dead-letter listing: the last entry seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterCursor {
    /// Its failure time.
    pub failed_at_ms: UnixMillis,
    /// Its instance, breaking ties.
    pub instance_id: InstanceId,
}

/// What a re-drive reset: the pages (with their channels) to deliver again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redrive {
    /// Instances put back to pending.
    pub instances: u64,
    /// Page number to the channels with instances on it.
    pub pages: BTreeMap<u32, BTreeSet<Channel>>,
}

fn dead_letter_from_row(row: &AnyRow) -> Result<DeadLetter> {
    let id: String = row.try_get("instance_id")?;
    let request_id: String = row.try_get("request_id")?;
    let user_id: String = row.try_get("user_id")?;
    let channel: String = row.try_get("channel")?;
    let page: i64 = row.try_get("page_no")?;
    let attempts: i64 = row.try_get("attempts")?;
    Ok(DeadLetter {
        instance_id: parse_col(T, InstanceId::parse(&id))?,
        request_id: parse_col(T, RequestId::parse(&request_id))?,
        user_id: parse_col(T, UserId::parse(&user_id))?,
        channel: parse_col(T, channel.parse::<Channel>())?,
        page: parse_col(T, u32::try_from(page))?,
        error_code: row.try_get("error_code")?,
        error_message: row.try_get("error_message")?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        failed_at_ms: row.try_get("created_at_ms")?,
        redriven_at_ms: row.try_get("redriven_at_ms")?,
    })
}

/// Puts the failed receipts among `receipts` on the list, inside the caller's transaction, in
/// the order given (the caller sorts them by instance, so concurrent writers lock rows in one
/// order).
pub(crate) async fn insert_failed(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: &TenantId,
    page: u32,
    receipts: &[&Receipt],
) -> Result<()> {
    let failed: Vec<&Receipt> = receipts
        .iter()
        .copied()
        .filter(|r| r.status == DeliveryStatus::Failed)
        .collect();
    INSERT_FAILED
        .execute(tx, &failed, |query, r| {
            query
                .bind(r.instance_id.as_str())
                .bind(tenant_id.as_str())
                .bind(r.request_id.as_str())
                .bind(r.user_id.as_str())
                .bind(r.channel.as_str())
                .bind(i64::from(page))
                .bind(r.error_code.clone())
                .bind(r.error_message.clone())
                .bind(i64::from(r.attempts))
                .bind(r.updated_at_ms)
        })
        .await?;
    Ok(())
}

/// The `AND ..` conditions of a filter with placeholders numbered from `first`, and the values
/// to bind to them in order.
fn conditions(filter: &DeadLetterFilter, first: usize) -> (String, Vec<String>) {
    let mut sql = String::new();
    let mut binds = Vec::new();
    let mut next = first;
    if let Some(request) = &filter.request_id {
        sql.push_str(&format!(" AND request_id = ${next}"));
        binds.push(request.to_string());
        next += 1;
    }
    if let Some(channel) = filter.channel {
        sql.push_str(&format!(" AND channel = ${next}"));
        binds.push(channel.as_str().to_owned());
        next += 1;
    }
    if let Some(ids) = &filter.instance_ids {
        if ids.is_empty() {
            sql.push_str(" AND 1 = 0");
        } else {
            sql.push_str(&format!(
                " AND instance_id IN ({})",
                placeholders(next, ids.len())
            ));
            binds.extend(ids.iter().map(ToString::to_string));
        }
    }
    if !filter.include_redriven {
        sql.push_str(" AND redriven_at_ms IS NULL");
    }
    (sql, binds)
}

impl Store {
    /// Lists the tenant's dead letters, oldest failure first, after `after`.
    pub async fn list_dead_letters(
        &self,
        tenant_id: &TenantId,
        filter: &DeadLetterFilter,
        after: Option<&DeadLetterCursor>,
        limit: u32,
    ) -> Result<Vec<DeadLetter>> {
        let (extra, binds) = conditions(filter, 5);
        let sql = format!(
            "SELECT {COLUMNS} FROM dead_letters
             WHERE tenant_id = $1
               AND (created_at_ms > $2 OR (created_at_ms = $2 AND instance_id > $3)){extra}
             ORDER BY created_at_ms, instance_id LIMIT $4"
        );
        let mut query = sqlx::query(&sql)
            .bind(tenant_id.as_str())
            .bind(after.map_or(i64::MIN, |c| c.failed_at_ms))
            .bind(after.map_or(String::new(), |c| c.instance_id.to_string()))
            .bind(i64::from(limit));
        for b in binds {
            query = query.bind(b);
        }
        let rows = query.fetch_all(self.pool()).await?;
        rows.iter().map(dead_letter_from_row).collect()
    }

    /// Takes the matching dead letters of one request off the list and puts their receipts
    /// back to pending, in one transaction; returns what to deliver again.
    pub async fn begin_redrive(
        &self,
        tenant_id: &TenantId,
        filter: &DeadLetterFilter,
    ) -> Result<Redrive> {
        let filter = DeadLetterFilter {
            include_redriven: false,
            ..filter.clone()
        };
        let (extra, binds) = conditions(&filter, 2);
        let (mut tx, _writer) = self.write_tx().await?;
        // Claimed under lock: on PostgreSQL two re-drives would otherwise both read the same
        // unredriven rows and deliver them twice. Rows another re-drive is claiming are passed
        // over (it takes them); rows it already took no longer match once it commits.
        let sql = format!(
            "SELECT instance_id, channel, page_no FROM dead_letters WHERE tenant_id = $1{extra}{}",
            self.claim_rows()
        );
        let mut query = sqlx::query(&sql).bind(tenant_id.as_str());
        for b in &binds {
            query = query.bind(b.clone());
        }
        let rows = query.fetch_all(&mut *tx).await?;
        let mut redrive = Redrive::default();
        let mut ids = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("instance_id")?;
            let channel: String = row.try_get("channel")?;
            let page: i64 = row.try_get("page_no")?;
            redrive
                .pages
                .entry(parse_col(T, u32::try_from(page))?)
                .or_default()
                .insert(parse_col(T, channel.parse::<Channel>())?);
            ids.push(id);
        }
        redrive.instances = ids.len() as u64;
        let now = now_ms();
        // Every receipt, then every mark: the claim holds the dead letters' locks already, so
        // the split changes no order in which rows are locked.
        self.execute_by_keys(
            &mut tx,
            &ids,
            |ids| {
                format!(
                    "UPDATE receipts SET status = $1, updated_at_ms = $2 WHERE instance_id IN ({ids})"
                )
            },
            |query| query.bind(DeliveryStatus::Pending.as_str()).bind(now),
        )
        .await?;
        self.execute_by_keys(
            &mut tx,
            &ids,
            |ids| {
                format!(
                    "UPDATE dead_letters SET redriven_at_ms = $1 WHERE tenant_id = $2
                     AND instance_id IN ({ids})"
                )
            },
            |query| query.bind(now).bind(tenant_id.as_str()),
        )
        .await?;
        tx.commit().await?;
        Ok(redrive)
    }
}

#[cfg(test)]
mod tests {
    use fanout_domain::DedupeKey;

    use super::*;
    use crate::test_support::store;

    fn receipt(request: &RequestId, user: &str, status: DeliveryStatus) -> Receipt {
        let user = UserId::parse(user).unwrap();
        Receipt {
            instance_id: InstanceId::derive(request, &user, Channel::Email),
            request_id: request.clone(),
            user_id: user,
            channel: Channel::Email,
            status,
            provider_message_id: None,
            provider: None,
            attempts: 2,
            latency_ms: None,
            error_code: Some("smtp_550".into()),
            error_message: Some("no such user".into()),
            updated_at_ms: 10,
            release_at_ms: None,
        }
    }

    #[tokio::test]
    async fn failed_receipts_are_listed_then_redriven_once() {
        let store = store().await;
        let t = TenantId::parse("acme").unwrap();
        let other = TenantId::parse("other").unwrap();
        let request = DedupeKey::new(t.clone(), "k").unwrap().request_id();
        let receipts = [
            receipt(&request, "u1", DeliveryStatus::Failed),
            receipt(&request, "u2", DeliveryStatus::Delivered),
            receipt(&request, "u3", DeliveryStatus::Failed),
        ];
        store
            .record_page_deliveries(&t, 4, &mut receipts.clone(), &mut vec![])
            .await
            .unwrap();
        // Receipts recorded outside a page (settling) never go on the list.
        store
            .record_deliveries(&t, &[receipt(&request, "u4", DeliveryStatus::Failed)], &[])
            .await
            .unwrap();

        let all = DeadLetterFilter::default();
        let listed = store.list_dead_letters(&t, &all, None, 10).await.unwrap();
        let mut users: Vec<_> = listed.iter().map(|d| d.user_id.to_string()).collect();
        users.sort();
        assert_eq!(users, ["u1", "u3"]);
        assert!(listed.iter().all(|d| d.page == 4 && d.attempts == 2));
        let first = store.list_dead_letters(&t, &all, None, 1).await.unwrap();
        let cursor = DeadLetterCursor {
            failed_at_ms: first[0].failed_at_ms,
            instance_id: first[0].instance_id.clone(),
        };
        let rest = store
            .list_dead_letters(&t, &all, Some(&cursor), 10)
            .await
            .unwrap();
        assert_eq!(rest.len(), 1);
        assert_ne!(rest[0].instance_id, first[0].instance_id);
        assert!(
            store
                .list_dead_letters(&other, &all, None, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store.begin_redrive(&other, &all).await.unwrap().instances,
            0
        );

        let only_u1 = DeadLetterFilter {
            request_id: Some(request.clone()),
            instance_ids: Some(vec![receipts[0].instance_id.clone()]),
            ..Default::default()
        };
        let redrive = store.begin_redrive(&t, &only_u1).await.unwrap();
        assert_eq!(redrive.instances, 1);
        assert_eq!(
            redrive.pages,
            BTreeMap::from([(4, BTreeSet::from([Channel::Email]))])
        );
        let users = [UserId::parse("u1").unwrap(), UserId::parse("u3").unwrap()];
        let now = store
            .get_receipts(&request, Channel::Email, &users)
            .await
            .unwrap();
        assert_eq!(
            now[&receipts[0].instance_id].status,
            DeliveryStatus::Pending
        );
        assert_eq!(now[&receipts[2].instance_id].status, DeliveryStatus::Failed);
        assert_eq!(
            store.begin_redrive(&t, &only_u1).await.unwrap().instances,
            0
        );
        let left = store.list_dead_letters(&t, &all, None, 10).await.unwrap();
        assert_eq!(left.len(), 1, "the re-driven entry is off the list");
        let with_history = DeadLetterFilter {
            include_redriven: true,
            ..Default::default()
        };
        assert_eq!(
            store
                .list_dead_letters(&t, &with_history, None, 10)
                .await
                .unwrap()
                .len(),
            2
        );

        // Failing again puts it back on the list.
        store
            .record_page_deliveries(&t, 4, &mut receipts[..1].to_vec(), &mut vec![])
            .await
            .unwrap();
        assert_eq!(
            store
                .list_dead_letters(&t, &all, None, 10)
                .await
                .unwrap()
                .len(),
            2
        );
    }

    /// Re-drives race when an operator retries, or two operators act at once: every dead
    /// letter must be claimed by exactly one of them, never re-delivered twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_redrives_claim_each_dead_letter_once() {
        let store = store().await;
        let t = TenantId::parse("acme").unwrap();
        let request = DedupeKey::new(t.clone(), "k").unwrap().request_id();
        const LETTERS: u64 = 120;
        for page in 0..4u32 {
            let receipts: Vec<Receipt> = (0..LETTERS / 4)
                .map(|i| receipt(&request, &format!("u{page}-{i}"), DeliveryStatus::Failed))
                .collect();
            store
                .record_page_deliveries(&t, page, &mut receipts.clone(), &mut vec![])
                .await
                .unwrap();
        }
        let redrives: Vec<_> = (0..16)
            .map(|_| {
                let (store, t) = (store.clone(), t.clone());
                tokio::spawn(async move {
                    store
                        .begin_redrive(&t, &DeadLetterFilter::default())
                        .await
                        .map(|r| r.instances)
                })
            })
            .collect();
        let mut claimed = 0;
        for redrive in redrives {
            claimed += redrive.await.unwrap().unwrap();
        }
        assert_eq!(claimed, LETTERS, "each dead letter claimed exactly once");
        let all = DeadLetterFilter::default();
        assert!(
            store
                .list_dead_letters(&t, &all, None, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
