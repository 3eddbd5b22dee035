//! Digests: triggers of a digest template collected while a window is open (see
//! `fanout_domain::digest`).
//!
//! A digest is one row per (tenant, template, key value) window; each trigger folded into it is
//! an item (its request id, `data` and acceptance time) with the users it was addressed to.
//! [`Store::fold_into_digest`] (the API, on notify) and [`Store::close_digest`] (the digest's
//! workflow, when the window ends) both run in a write transaction that reads the digest row
//! locked (`FOR UPDATE` on PostgreSQL; SQLite's write transactions exclude each other), so a
//! trigger racing the close is either in the digest when it closes or opens the next one: an
//! add never lands in a closed digest. At most one digest per key is `open` (a unique partial
//! index); racing opens meet there.

use std::collections::HashMap;

use fanout_domain::digest::DigestView;
use fanout_domain::receipt::{Progress, RequestState};
use fanout_domain::request::RecipientsQuery;
use fanout_domain::{DigestId, RequestId, TemplateId, TenantId, UnixMillis, UserId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::bulk::Insert;
use crate::{Result, Store, parse_col};

const T: &str = "digests";

/// Adds who one trigger goes to.
const INSERT_RECIPIENTS: Insert<'static> = Insert {
    head: "INSERT INTO digest_recipients (digest_id, user_id, request_id)",
    columns: 3,
    tail: "ON CONFLICT DO NOTHING",
};

/// A digest's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestState {
    /// Takes triggers until `closes_at`.
    Open,
    /// Its window ended; its workflow is about to close it. Takes no more triggers.
    Closing,
    /// Closed into its request.
    Closed,
}

impl DigestState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closing => "closing",
            Self::Closed => "closed",
        }
    }

    fn parse(s: &str) -> std::result::Result<Self, String> {
        match s {
            "open" => Ok(Self::Open),
            "closing" => Ok(Self::Closing),
            "closed" => Ok(Self::Closed),
            other => Err(format!("unknown digest state '{other}'")),
        }
    }
}

/// A trigger to fold into its key's open digest.
#[derive(Debug, Clone)]
pub struct DigestTrigger<'a> {
    /// The tenant.
    pub tenant_id: &'a TenantId,
    /// The digest template.
    pub template_id: &'a TemplateId,
    /// The trigger's value of the template's digest key (`""` without one).
    pub key: &'a str,
    /// How long a digest opened by this trigger stays open.
    pub window_ms: i64,
    /// The items a digest opened by this trigger renders per recipient.
    pub max_items: u32,
    /// The id a digest opened by this trigger gets.
    pub new_digest_id: &'a DigestId,
    /// The trigger's own request, already recorded.
    pub request_id: &'a RequestId,
    /// The trigger's `data`.
    pub data: &'a serde_json::Map<String, serde_json::Value>,
    /// The trigger's audience.
    pub recipients: &'a RecipientsQuery,
    /// Who triggered it (left out of followers and segments, as resolution leaves them out).
    pub actor_id: Option<&'a UserId>,
    /// Now.
    pub now_ms: UnixMillis,
}

/// Where a trigger was folded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folded {
    /// The digest.
    pub digest_id: DigestId,
    /// When its window ends.
    pub closes_at_ms: UnixMillis,
    /// Whether this trigger opened it (its workflow must be started).
    pub opened: bool,
    /// The key's digest whose window had ended while it was still open, now `closing`, with
    /// when it closes: its workflow is due (started again if it was never started).
    pub expired: Option<(DigestId, UnixMillis)>,
}

/// A digest as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// The digest.
    pub digest_id: DigestId,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The template.
    pub template_id: TemplateId,
    /// The key value it collects.
    pub key: String,
    /// Where it is in its life.
    pub state: DigestState,
    /// The items it renders per recipient.
    pub max_items: u32,
    /// When its first trigger opened it.
    pub opened_at_ms: UnixMillis,
    /// When its window ends.
    pub closes_at_ms: UnixMillis,
    /// The request it closed into, once closed with at least one item.
    pub request_id: Option<RequestId>,
}

/// What closing a digest found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedDigest {
    /// The digest, closed.
    pub digest: Digest,
    /// How many triggers it collected.
    pub items: u64,
    /// Its newest trigger: the request whose input (channels, data, priority) the digest's
    /// request takes. `None` for a digest whose every trigger was cancelled.
    pub newest_trigger: Option<RequestId>,
}

/// What cancelling a trigger did to its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestCancel {
    /// The item was removed from the open digest and the trigger recorded as cancelled.
    Removed(DigestId),
    /// The digest closed already: the trigger is part of its request.
    Closed(Digest),
    /// The request is not a digested trigger.
    NotDigested,
}

const DIGEST_COLUMNS: &str = "digest_id, tenant_id, template_id, digest_key, state, max_items, \
                              opened_at_ms, closes_at_ms, request_id";

fn digest_from_row(row: &AnyRow) -> Result<Digest> {
    let request_id: Option<String> = row.try_get("request_id")?;
    Ok(Digest {
        digest_id: parse_col(T, DigestId::parse(&row.try_get::<String, _>("digest_id")?))?,
        tenant_id: parse_col(T, TenantId::parse(&row.try_get::<String, _>("tenant_id")?))?,
        template_id: parse_col(
            T,
            TemplateId::parse(&row.try_get::<String, _>("template_id")?),
        )?,
        key: row.try_get("digest_key")?,
        state: parse_col(T, DigestState::parse(&row.try_get::<String, _>("state")?))?,
        max_items: u32::try_from(row.try_get::<i64, _>("max_items")?).unwrap_or(u32::MAX),
        opened_at_ms: row.try_get("opened_at_ms")?,
        closes_at_ms: row.try_get("closes_at_ms")?,
        request_id: request_id
            .map(|id| parse_col(T, RequestId::parse(&id)))
            .transpose()?,
    })
}

impl Store {
    /// Folds a recorded trigger into its key's open digest, opening one if there is none whose
    /// window is still running, and records the trigger as `digested`. A trigger folded before
    /// (a retried notify) stays where it is. An open digest whose window ended is marked
    /// `closing` (its workflow closes it) and a new one opened beside it.
    pub async fn fold_into_digest(&self, trigger: &DigestTrigger<'_>) -> Result<Folded> {
        let (mut tx, _writer) = self.write_tx().await?;
        let earlier = sqlx::query(
            "SELECT d.digest_id, d.closes_at_ms FROM digest_items i
             JOIN digests d ON d.digest_id = i.digest_id WHERE i.request_id = $1",
        )
        .bind(trigger.request_id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = earlier {
            tx.commit().await?;
            return Ok(Folded {
                digest_id: parse_col(T, DigestId::parse(&row.try_get::<String, _>(0)?))?,
                closes_at_ms: row.try_get(1)?,
                opened: false,
                expired: None,
            });
        }

        let find = format!(
            "SELECT digest_id, closes_at_ms FROM digests
             WHERE tenant_id = $1 AND template_id = $2 AND digest_key = $3 AND state = 'open'{}",
            self.lock_rows()
        );
        let mut opened = false;
        let mut expired = None;
        let (digest_id, closes_at_ms) = loop {
            let open = sqlx::query(&find)
                .bind(trigger.tenant_id.as_str())
                .bind(trigger.template_id.as_str())
                .bind(trigger.key)
                .fetch_optional(&mut *tx)
                .await?;
            match open {
                Some(row) => {
                    let id: String = row.try_get(0)?;
                    let closes_at: i64 = row.try_get(1)?;
                    if closes_at > trigger.now_ms {
                        break (parse_col(T, DigestId::parse(&id))?, closes_at);
                    }
                    // Its window is over: it takes nothing more, and frees the key's slot.
                    sqlx::query("UPDATE digests SET state = 'closing' WHERE digest_id = $1")
                        .bind(&id)
                        .execute(&mut *tx)
                        .await?;
                    expired = Some((parse_col(T, DigestId::parse(&id))?, closes_at));
                }
                None => {
                    let closes_at = trigger.now_ms.saturating_add(trigger.window_ms);
                    let inserted = sqlx::query(
                        "INSERT INTO digests (digest_id, tenant_id, template_id, digest_key,
                                              state, max_items, opened_at_ms, closes_at_ms)
                         VALUES ($1, $2, $3, $4, 'open', $5, $6, $7) ON CONFLICT DO NOTHING",
                    )
                    .bind(trigger.new_digest_id.as_str())
                    .bind(trigger.tenant_id.as_str())
                    .bind(trigger.template_id.as_str())
                    .bind(trigger.key)
                    .bind(i64::from(trigger.max_items))
                    .bind(trigger.now_ms)
                    .bind(closes_at)
                    .execute(&mut *tx)
                    .await?;
                    if inserted.rows_affected() == 1 {
                        opened = true;
                        break (trigger.new_digest_id.clone(), closes_at);
                    }
                    // Another trigger opened the key's digest first: join it (next turn).
                }
            }
        };

        let seq: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM digest_items WHERE digest_id = $1",
        )
        .bind(digest_id.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let data = parse_col(T, serde_json::to_string(trigger.data))?;
        sqlx::query(
            "INSERT INTO digest_items (request_id, digest_id, seq, data, accepted_at_ms)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(trigger.request_id.as_str())
        .bind(digest_id.as_str())
        .bind(seq)
        .bind(data)
        .bind(trigger.now_ms)
        .execute(&mut *tx)
        .await?;
        self.add_recipients(&mut tx, &digest_id, trigger).await?;
        sqlx::query("UPDATE requests SET state = $1, updated_at_ms = $2 WHERE request_id = $3")
            .bind(RequestState::Digested.as_str())
            .bind(trigger.now_ms)
            .bind(trigger.request_id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Folded {
            digest_id,
            closes_at_ms,
            opened,
            expired,
        })
    }

    /// Writes who a trigger goes to: an explicit list as it is, followers and segment members
    /// as they are now (the actor left out), in one statement each.
    async fn add_recipients(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        digest_id: &DigestId,
        trigger: &DigestTrigger<'_>,
    ) -> Result<()> {
        let (sql, key) = match trigger.recipients {
            RecipientsQuery::Users { user_ids } => {
                INSERT_RECIPIENTS
                    .execute(&mut *tx, user_ids, |query, user| {
                        query
                            .bind(digest_id.as_str())
                            .bind(user.as_str())
                            .bind(trigger.request_id.as_str())
                    })
                    .await?;
                return Ok(());
            }
            RecipientsQuery::Followers { of } => (
                "INSERT INTO digest_recipients (digest_id, user_id, request_id)
                 SELECT $1, follower_id, $2 FROM follows
                 WHERE tenant_id = $3 AND user_id = $4 AND follower_id <> $5
                 ON CONFLICT DO NOTHING",
                of.as_str(),
            ),
            RecipientsQuery::Segment { segment_id } => (
                "INSERT INTO digest_recipients (digest_id, user_id, request_id)
                 SELECT $1, user_id, $2 FROM segment_members
                 WHERE tenant_id = $3 AND segment_id = $4 AND user_id <> $5
                 ON CONFLICT DO NOTHING",
                segment_id.as_str(),
            ),
            // A digest's own request is never a trigger.
            RecipientsQuery::Digest { .. } => return Ok(()),
        };
        sqlx::query(sql)
            .bind(digest_id.as_str())
            .bind(trigger.request_id.as_str())
            .bind(trigger.tenant_id.as_str())
            .bind(key)
            // Ids are never empty, so "" leaves nobody out.
            .bind(trigger.actor_id.map_or("", UserId::as_str))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Closes a digest (its workflow calls this when the window ends): from then on a trigger
    /// for its key opens the next one. Closing a closed digest returns it as it closed, so a
    /// retried close is harmless. `None` for an unknown digest.
    pub async fn close_digest(
        &self,
        digest_id: &DigestId,
        now_ms: UnixMillis,
    ) -> Result<Option<ClosedDigest>> {
        let (mut tx, _writer) = self.write_tx().await?;
        let row = sqlx::query(&format!(
            "SELECT {DIGEST_COLUMNS} FROM digests WHERE digest_id = $1{}",
            self.lock_rows()
        ))
        .bind(digest_id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut digest = digest_from_row(&row)?;
        let counted = sqlx::query(
            "SELECT COUNT(*) AS items, MAX(seq) AS newest FROM digest_items WHERE digest_id = $1",
        )
        .bind(digest_id.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let items = u64::try_from(counted.try_get::<i64, _>("items")?).unwrap_or(0);
        let newest: Option<i64> = counted.try_get("newest")?;
        let newest_trigger = match newest {
            Some(seq) => {
                let id: String = sqlx::query_scalar(
                    "SELECT request_id FROM digest_items WHERE digest_id = $1 AND seq = $2",
                )
                .bind(digest_id.as_str())
                .bind(seq)
                .fetch_one(&mut *tx)
                .await?;
                Some(parse_col(T, RequestId::parse(&id))?)
            }
            None => None,
        };
        if digest.state != DigestState::Closed {
            let request_id = (items > 0).then(|| digest_id.request_id());
            sqlx::query(
                "UPDATE digests SET state = 'closed', closed_at_ms = $1, request_id = $2
                 WHERE digest_id = $3",
            )
            .bind(now_ms)
            .bind(request_id.as_ref().map(RequestId::as_str))
            .bind(digest_id.as_str())
            .execute(&mut *tx)
            .await?;
            digest.state = DigestState::Closed;
            digest.request_id = request_id;
        }
        tx.commit().await?;
        Ok(Some(ClosedDigest {
            digest,
            items,
            newest_trigger,
        }))
    }

    /// Takes a trigger out of its digest while the digest is open (or closing: its workflow
    /// has not read it yet), recording the trigger as cancelled.
    pub async fn cancel_digested(
        &self,
        tenant_id: &TenantId,
        request_id: &RequestId,
    ) -> Result<DigestCancel> {
        let (mut tx, _writer) = self.write_tx().await?;
        let digest_id: Option<String> = sqlx::query_scalar(
            "SELECT i.digest_id FROM digest_items i
             JOIN requests r ON r.request_id = i.request_id
             WHERE i.request_id = $1 AND r.tenant_id = $2",
        )
        .bind(request_id.as_str())
        .bind(tenant_id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(digest_id) = digest_id else {
            return Ok(DigestCancel::NotDigested);
        };
        let row = sqlx::query(&format!(
            "SELECT {DIGEST_COLUMNS} FROM digests WHERE digest_id = $1{}",
            self.lock_rows()
        ))
        .bind(&digest_id)
        .fetch_one(&mut *tx)
        .await?;
        let digest = digest_from_row(&row)?;
        if digest.state == DigestState::Closed {
            return Ok(DigestCancel::Closed(digest));
        }
        for sql in [
            "DELETE FROM digest_recipients WHERE digest_id = $1 AND request_id = $2",
            "DELETE FROM digest_items WHERE digest_id = $1 AND request_id = $2",
        ] {
            sqlx::query(sql)
                .bind(&digest_id)
                .bind(request_id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        let progress = parse_col(T, serde_json::to_string(&Progress::default()))?;
        sqlx::query(
            "UPDATE requests SET state = $1, progress = $2, updated_at_ms = $3
             WHERE request_id = $4",
        )
        .bind(RequestState::Cancelled.as_str())
        .bind(progress)
        .bind(crate::now_ms())
        .bind(request_id.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(DigestCancel::Removed(digest.digest_id))
    }

    /// The digest a trigger was folded into, as it is now.
    pub async fn digest_of_trigger(&self, request_id: &RequestId) -> Result<Option<Digest>> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM digests d JOIN digest_items i ON i.digest_id = d.digest_id
             WHERE i.request_id = $1",
            prefixed("d", DIGEST_COLUMNS)
        ))
        .bind(request_id.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(digest_from_row).transpose()
    }

    /// The digest a request delivers, if it is a digest's request.
    pub async fn digest_of_request(&self, request_id: &RequestId) -> Result<Option<Digest>> {
        let row = sqlx::query(&format!(
            "SELECT {DIGEST_COLUMNS} FROM digests WHERE request_id = $1"
        ))
        .bind(request_id.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(digest_from_row).transpose()
    }

    /// What each of `users` sees of a digest: the `data` of the triggers addressed to them,
    /// newest first, at most `max_items`, and how many there were. Users the digest does not
    /// address are left out.
    pub async fn digest_views(
        &self,
        digest_id: &DigestId,
        users: &[UserId],
        max_items: u32,
    ) -> Result<HashMap<UserId, DigestView>> {
        let rows = self
            .fetch_by_keys(
                users,
                |ids| {
                    format!(
                        "SELECT r.user_id, i.data FROM digest_recipients r
                         JOIN digest_items i ON i.request_id = r.request_id
                         WHERE r.digest_id = $1 AND r.user_id IN ({ids})
                         ORDER BY r.user_id, i.seq DESC"
                    )
                },
                |query| query.bind(digest_id.as_str()),
            )
            .await?;
        let cap = usize::try_from(max_items).unwrap_or(usize::MAX);
        let mut views: HashMap<UserId, DigestView> = HashMap::new();
        for row in &rows {
            let user = parse_col(T, UserId::parse(&row.try_get::<String, _>("user_id")?))?;
            let view = views.entry(user).or_default();
            view.count += 1;
            if view.items.len() < cap {
                let data: String = row.try_get("data")?;
                view.items.push(parse_col(T, serde_json::from_str(&data))?);
            }
        }
        Ok(views)
    }

    /// Deletes one batch of digests closed before `before_ms`, with their items, recipients
    /// and digested triggers (the digest's own request is pruned as any request). Returns
    /// how many digests went.
    pub(crate) async fn prune_digests(&self, before_ms: i64, batch: i64) -> Result<u64> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT digest_id FROM digests WHERE state = 'closed' AND closed_at_ms < $1
             ORDER BY closed_at_ms LIMIT $2",
        )
        .bind(before_ms)
        .bind(batch)
        .fetch_all(self.pool())
        .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let (mut tx, _writer) = self.write_tx().await?;
        let mut deleted = 0;
        for sql in [
            // The triggers first: they are found through the items.
            "DELETE FROM requests WHERE state = 'digested' AND request_id IN
                (SELECT request_id FROM digest_items WHERE digest_id IN ({ids}))",
            "DELETE FROM digest_recipients WHERE digest_id IN ({ids})",
            "DELETE FROM digest_items WHERE digest_id IN ({ids})",
            "DELETE FROM digests WHERE digest_id IN ({ids})",
        ] {
            deleted = self
                .execute_by_keys(&mut tx, &ids, |list| sql.replace("{ids}", list), |q| q)
                .await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }
}

/// `columns` (comma-separated) each prefixed with `alias.`.
fn prefixed(alias: &str, columns: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
