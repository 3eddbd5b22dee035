//! Retention: deleting what the platform no longer needs, in small batches so the store's one
//! writer is never held for long.
//!
//! - inbox events (the streams' resume log) older than the policy's window; the highest event
//!   id deleted is recorded, so a stream resuming from before it is told to re-list;
//! - inbox tokens expired or revoked for longer than a day;
//! - dead letters older than their window;
//! - finished requests older than their window, with their receipts, audience snapshot, dead
//!   letters and controls (their status answers 404 afterwards);
//! - frequency-cap counters and claims of windows that have ended;
//! - digests closed longer ago than the requests' window, with their items, recipients and
//!   digested triggers (see [`crate::digests`]).

use sqlx::Row;

use crate::bulk::placeholders;
use crate::{Result, Store, now_ms};

/// How long each kind of record is kept, in days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Inbox events (a stream can resume within this window).
    pub inbox_events_days: u32,
    /// Finished requests and their receipts.
    pub requests_days: u32,
    /// Dead letters.
    pub dead_letters_days: u32,
    /// Rows deleted per statement.
    pub batch: u32,
}

/// What one pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Inbox events.
    pub inbox_events: u64,
    /// Inbox tokens.
    pub inbox_tokens: u64,
    /// Stream tickets (used or expired; they live seconds).
    pub stream_tickets: u64,
    /// Dead letters (on their own or with their request).
    pub dead_letters: u64,
    /// Finished requests.
    pub requests: u64,
    /// Receipts of those requests.
    pub receipts: u64,
    /// Frequency-cap counters and claims of windows that have ended (the larger of the two
    /// counts per batch, summed).
    pub frequency_slots: u64,
    /// Closed digests (with their items and digested triggers).
    pub digests: u64,
}

const DAY_MS: i64 = 24 * 3600 * 1000;

/// The mark recording the highest inbox event id deleted.
const INBOX_EVENTS_MARK: &str = "inbox_events";

/// Expired or revoked tokens are kept this long, so a client's 401 is explained in the logs.
const TOKEN_GRACE_MS: i64 = DAY_MS;

fn cutoff(now: i64, days: u32) -> i64 {
    now - i64::from(days) * DAY_MS
}

impl Store {
    /// Deletes everything older than `policy` allows, batch by batch, until nothing is left.
    pub async fn prune(&self, policy: &RetentionPolicy) -> Result<Pruned> {
        self.prune_at(policy, now_ms()).await
    }

    /// [`Store::prune`] as if the time were `now` (for tests).
    pub async fn prune_at(&self, policy: &RetentionPolicy, now: i64) -> Result<Pruned> {
        let batch = i64::from(policy.batch.max(1));
        let mut pruned = Pruned::default();
        loop {
            let n = self
                .prune_inbox_events(cutoff(now, policy.inbox_events_days), batch)
                .await?;
            pruned.inbox_events += n;
            if n < batch as u64 {
                break;
            }
        }
        pruned.inbox_tokens =
            sqlx::query("DELETE FROM inbox_tokens WHERE expires_at_ms < $1 OR revoked_at_ms < $1")
                .bind(now - TOKEN_GRACE_MS)
                .execute(self.pool())
                .await?
                .rows_affected();
        pruned.stream_tickets = sqlx::query("DELETE FROM stream_tickets WHERE expires_at_ms < $1")
            .bind(now)
            .execute(self.pool())
            .await?
            .rows_affected();
        loop {
            let n = sqlx::query(
                "DELETE FROM dead_letters WHERE instance_id IN (
                     SELECT instance_id FROM dead_letters WHERE created_at_ms < $1 LIMIT $2)",
            )
            .bind(cutoff(now, policy.dead_letters_days))
            .bind(batch)
            .execute(self.pool())
            .await?
            .rows_affected();
            pruned.dead_letters += n;
            if n < batch as u64 {
                break;
            }
        }
        loop {
            let (requests, receipts, dead) = self
                .prune_requests(cutoff(now, policy.requests_days), batch)
                .await?;
            pruned.requests += requests;
            pruned.receipts += receipts;
            pruned.dead_letters += dead;
            if requests < batch as u64 {
                break;
            }
        }
        loop {
            let n = self.prune_frequency_windows(now, batch).await?;
            pruned.frequency_slots += n;
            let n = self
                .prune_digests(cutoff(now, policy.requests_days), batch)
                .await?;
            pruned.digests += n;
            if n < batch as u64 {
                break;
            }
        }
        Ok(pruned)
    }

    /// The highest inbox event id retention has deleted (0: none): a stream resuming from
    /// before it may have missed events.
    pub async fn inbox_events_pruned_through(&self) -> Result<i64> {
        let row = sqlx::query("SELECT through_seq FROM retention_marks WHERE name = $1")
            .bind(INBOX_EVENTS_MARK)
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(row) => row.try_get("through_seq")?,
            None => 0,
        })
    }

    async fn prune_inbox_events(&self, before_ms: i64, batch: i64) -> Result<u64> {
        // Event ids grow with time, so the oldest events are the first in id order and the
        // scan stops at the first young one.
        let rows =
            sqlx::query("SELECT seq FROM inbox_events WHERE at_ms < $1 ORDER BY seq LIMIT $2")
                .bind(before_ms)
                .bind(batch)
                .fetch_all(self.pool())
                .await?;
        let seqs: Vec<i64> = rows
            .iter()
            .map(|r| r.try_get("seq"))
            .collect::<std::result::Result<_, _>>()?;
        let Some(&highest) = seqs.last() else {
            return Ok(0);
        };
        let (mut tx, _writer) = self.write_tx().await?;
        let sql = format!(
            "DELETE FROM inbox_events WHERE seq IN ({})",
            placeholders(1, seqs.len())
        );
        let mut query = sqlx::query(&sql);
        for seq in &seqs {
            query = query.bind(*seq);
        }
        let deleted = query.execute(&mut *tx).await?.rows_affected();
        sqlx::query(
            "INSERT INTO retention_marks (name, through_seq) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET through_seq = excluded.through_seq
             WHERE retention_marks.through_seq < excluded.through_seq",
        )
        .bind(INBOX_EVENTS_MARK)
        .bind(highest)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(deleted)
    }

    /// Deletes one batch of finished requests created before `before_ms`, with everything
    /// recorded under them. Returns (requests, receipts, dead letters).
    async fn prune_requests(&self, before_ms: i64, batch: i64) -> Result<(u64, u64, u64)> {
        let rows = sqlx::query(
            "SELECT request_id FROM requests
             WHERE created_at_ms < $1 AND state IN ('completed', 'cancelled', 'failed')
             ORDER BY created_at_ms LIMIT $2",
        )
        .bind(before_ms)
        .bind(batch)
        .fetch_all(self.pool())
        .await?;
        let ids: Vec<String> = rows
            .iter()
            .map(|r| r.try_get("request_id"))
            .collect::<std::result::Result<_, _>>()?;
        if ids.is_empty() {
            return Ok((0, 0, 0));
        }
        let mut counts = [0u64; 7];
        let (mut tx, _writer) = self.write_tx().await?;
        // Dead letters before receipts, the order deliveries, re-drives and erasures lock
        // them in: the opposite order could deadlock with a re-drive on PostgreSQL.
        for (i, table) in [
            "dead_letters",
            "receipts",
            "audience",
            "resolved_chunks",
            "finished_pages",
            "request_controls",
            "requests",
        ]
        .into_iter()
        .enumerate()
        {
            let sql = format!(
                "DELETE FROM {table} WHERE request_id IN ({})",
                placeholders(1, ids.len())
            );
            let mut query = sqlx::query(&sql);
            for id in &ids {
                query = query.bind(id.as_str());
            }
            counts[i] = query.execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok((counts[6], counts[1], counts[0]))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use fanout_domain::inbox::InboxMessage;
    use fanout_domain::receipt::{Progress, RequestState};
    use fanout_domain::request::DeliveryPath;
    use fanout_domain::{Channel, DedupeKey, InstanceId, TemplateId, TenantId, UserId};

    use super::*;
    use crate::requests::RequestKeys;
    use crate::test_support::store;

    const POLICY: RetentionPolicy = RetentionPolicy {
        inbox_events_days: 7,
        requests_days: 90,
        dead_letters_days: 30,
        batch: 2,
    };

    #[tokio::test]
    async fn old_records_go_in_batches_and_young_ones_stay() {
        let store = store().await;
        let t = TenantId::parse("acme").unwrap();
        store.upsert_tenant(&t, "Acme").await.unwrap();
        let user = UserId::parse("u1").unwrap();
        let now = now_ms();
        // Five inbox messages (five events), more than one batch.
        for i in 0..5 {
            let request_id = DedupeKey::new(t.clone(), &format!("m{i}"))
                .unwrap()
                .request_id();
            let message = InboxMessage {
                id: InstanceId::derive(&request_id, &user, Channel::InApp),
                user_id: user.clone(),
                request_id,
                title: "t".into(),
                body: "b".into(),
                action_url: None,
                data: serde_json::json!({}),
                created_at_ms: now,
                read_at_ms: None,
            };
            store.record_deliveries(&t, &[], &[message]).await.unwrap();
        }
        let last_event = store.last_inbox_seq().await.unwrap();
        // A finished request and a running one.
        let tpl = TemplateId::parse("welcome").unwrap();
        for (key, finished) in [("done", true), ("running", false)] {
            let id = DedupeKey::new(t.clone(), key).unwrap().request_id();
            let keys = RequestKeys {
                request_id: &id,
                tenant_id: &t,
                template_id: &tpl,
                path: DeliveryPath::Tree,
                run_at_ms: None,
            };
            let input = serde_json::json!({"request_id": id, "accepted_at_ms": now});
            store
                .insert_request(keys, &input, 0, key, &BTreeMap::new())
                .await
                .unwrap();
            if finished {
                store
                    .finalize_request(&id, RequestState::Completed, &Progress::default())
                    .await
                    .unwrap();
            }
        }
        let token = store
            .issue_inbox_token(&t, &user, now + 1000)
            .await
            .unwrap();
        store
            .issue_stream_ticket(&token.token_id, now + 500)
            .await
            .unwrap();

        // Within every window, nothing goes.
        assert_eq!(
            store.prune_at(&POLICY, now).await.unwrap(),
            Pruned::default()
        );
        assert_eq!(store.inbox_events_pruned_through().await.unwrap(), 0);
        // Eight days on: the events and the expired token; the requests stay.
        let pruned = store.prune_at(&POLICY, now + 8 * DAY_MS).await.unwrap();
        assert_eq!(
            (
                pruned.inbox_events,
                pruned.inbox_tokens,
                pruned.stream_tickets
            ),
            (5, 1, 1)
        );
        assert_eq!(pruned.requests, 0);
        assert_eq!(
            store.inbox_events_pruned_through().await.unwrap(),
            last_event
        );
        // The messages themselves are the user's and stay.
        assert_eq!(
            store.list_inbox(&t, &user, None, 10).await.unwrap().len(),
            5
        );
        // Ninety-one days on: the finished request, not the running one.
        let pruned = store.prune_at(&POLICY, now + 91 * DAY_MS).await.unwrap();
        assert_eq!(pruned.requests, 1);
        let done = DedupeKey::new(t.clone(), "done").unwrap().request_id();
        let running = DedupeKey::new(t.clone(), "running").unwrap().request_id();
        assert!(store.get_request(&t, &done).await.unwrap().is_none());
        assert!(store.get_request(&t, &running).await.unwrap().is_some());
    }
}
