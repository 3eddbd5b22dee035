//! The in-app inbox: one row per in-app delivery instance, newest first; the per-user tokens
//! that open its real-time streams; read state; and the ordered event log those streams tail.
//!
//! Every change a client should see (a new message, a message read, all read) and every token
//! revocation is appended to `inbox_events` in the same transaction as the change, with a
//! sequence number taken from the single-row `inbox_sequence` counter. Bumping that counter
//! serialises event writers until they commit (PostgreSQL holds its row lock, SQLite has one
//! writer), so sequence order is commit order: a reader that has seen event n never later finds
//! a committed event below n, and "everything after n" is a complete resume point.

use std::collections::{HashMap, HashSet};

use fanout_domain::inbox::InboxMessage;
use fanout_domain::{InstanceId, RequestId, TenantId, UnixMillis, UserId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::bulk::Insert;
use crate::{Result, Store, StoreError, now_ms, parse_col};

mod tokens;

pub use tokens::{INBOX_TOKEN_PREFIX, InboxGrant, IssuedInboxToken, STREAM_TICKET_PREFIX};

const T: &str = "inbox";
const EVENTS: &str = "inbox_events";

const INSERT_EVENTS: Insert<'static> = Insert {
    head: "INSERT INTO inbox_events (seq, tenant_id, user_id, kind, subject, at_ms)",
    columns: 6,
    tail: "",
};

/// Adds messages, returning the ids of those not there already.
const INSERT_MESSAGES: Insert<'static> = Insert {
    head: "INSERT INTO inbox (instance_id, tenant_id, user_id, request_id, title, body, data,
                              action_url, created_at_ms)",
    columns: 9,
    tail: "ON CONFLICT (instance_id) DO NOTHING RETURNING instance_id",
};

/// A position in a user's inbox listing: the last message seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxCursor {
    /// Its delivery time.
    pub created_at_ms: UnixMillis,
    /// Its id, breaking ties.
    pub id: InstanceId,
}

/// The kind of an inbox event, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InboxEventKind {
    /// A message arrived; the subject is its id.
    Message,
    /// A message was read; the subject is its id.
    Read,
    /// Every unread message was read.
    ReadAll,
    /// A token was revoked; the subject is its token id. Streams close, clients never see it.
    TokenRevoked,
}

impl InboxEventKind {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::Read => "read",
            Self::ReadAll => "read_all",
            Self::TokenRevoked => "token_revoked",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "message" => Self::Message,
            "read" => Self::Read,
            "read_all" => Self::ReadAll,
            "token_revoked" => Self::TokenRevoked,
            _ => return None,
        })
    }
}

/// One entry of the event log, without message content: what pollers scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxLogEntry {
    /// Its position in the log.
    pub seq: i64,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The user whose inbox changed.
    pub user_id: UserId,
    /// What happened.
    pub kind: InboxEventKind,
    /// The message or token it concerns.
    pub subject: Option<String>,
    /// When it happened.
    pub at_ms: UnixMillis,
}

/// An inbox change with what a client needs to show it.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxEvent {
    /// Its position in the log: the stream's event id.
    pub seq: i64,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The user whose inbox changed.
    pub user_id: UserId,
    /// The change.
    pub change: InboxChange,
}

/// What changed in an inbox.
#[derive(Debug, Clone, PartialEq)]
pub enum InboxChange {
    /// A new message.
    Message(Box<InboxMessage>),
    /// A message was read.
    Read {
        /// The message.
        message_id: InstanceId,
        /// When.
        read_at_ms: UnixMillis,
    },
    /// Every message delivered before this event is read.
    ReadAll {
        /// When.
        read_at_ms: UnixMillis,
    },
    /// A token was revoked: streams opened with it must close.
    TokenRevoked {
        /// The token's public name.
        token_id: String,
    },
}

/// The outcome of marking one message read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkRead {
    /// It was unread and now is read, at this time.
    Marked(UnixMillis),
    /// It had been read already, at this time; nothing changed.
    AlreadyRead(UnixMillis),
    /// The user has no such message.
    NotFound,
}

fn message_from_row(row: &AnyRow) -> Result<InboxMessage> {
    let id: String = row.try_get("instance_id")?;
    let user_id: String = row.try_get("user_id")?;
    let request_id: String = row.try_get("request_id")?;
    let data: String = row.try_get("data")?;
    Ok(InboxMessage {
        id: parse_col(T, InstanceId::parse(&id))?,
        user_id: parse_col(T, UserId::parse(&user_id))?,
        request_id: parse_col(T, RequestId::parse(&request_id))?,
        title: row.try_get("title")?,
        body: row.try_get("body")?,
        action_url: row.try_get("action_url")?,
        data: parse_col(T, serde_json::from_str(&data))?,
        created_at_ms: row.try_get("created_at_ms")?,
        read_at_ms: row.try_get("read_at_ms")?,
    })
}

fn entry_from_row(row: &AnyRow) -> Result<InboxLogEntry> {
    let tenant_id: String = row.try_get("tenant_id")?;
    let user_id: String = row.try_get("user_id")?;
    let kind: String = row.try_get("kind")?;
    Ok(InboxLogEntry {
        seq: row.try_get("seq")?,
        tenant_id: parse_col(EVENTS, TenantId::parse(&tenant_id))?,
        user_id: parse_col(EVENTS, UserId::parse(&user_id))?,
        kind: InboxEventKind::parse(&kind).ok_or_else(|| StoreError::Corrupt {
            table: EVENTS,
            reason: format!("unknown event kind {kind:?}"),
        })?,
        subject: row.try_get("subject")?,
        at_ms: row.try_get("at_ms")?,
    })
}

/// Takes `n` consecutive sequence numbers and returns the first. The counter's row stays locked
/// until the caller's transaction ends, which is what keeps sequence order equal to commit
/// order; callers take it as late as they can, or first when what they write next depends on
/// every earlier event being committed (see [`Store::mark_all_inbox_read`]).
async fn reserve_seqs(tx: &mut sqlx::Transaction<'_, sqlx::Any>, n: usize) -> Result<i64> {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    let row = sqlx::query(
        "UPDATE inbox_sequence SET last_seq = last_seq + $1 WHERE id = 1 RETURNING last_seq",
    )
    .bind(n)
    .fetch_one(&mut **tx)
    .await?;
    let last: i64 = row.try_get("last_seq")?;
    Ok(last - n + 1)
}

/// Appends events numbered from `first`, in order.
async fn insert_events(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: &TenantId,
    first: i64,
    events: &[(&UserId, InboxEventKind, Option<&str>)],
    at_ms: UnixMillis,
) -> Result<()> {
    let mut seq = first;
    INSERT_EVENTS
        .execute(tx, events, |query, &(user_id, kind, subject)| {
            let query = query
                .bind(seq)
                .bind(tenant_id.as_str())
                .bind(user_id.as_str())
                .bind(kind.as_str())
                .bind(subject)
                .bind(at_ms);
            seq += 1;
            query
        })
        .await?;
    Ok(())
}

/// Adds messages not already in the inbox, inside the caller's transaction, with one
/// `message` event for each one actually added (a retried delivery adds neither).
pub(crate) async fn insert_messages(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: &TenantId,
    messages: &[InboxMessage],
) -> Result<()> {
    // Inserted in id order, so concurrent writers of overlapping messages lock them in one
    // order (see `write_deliveries`); the events below keep the input order.
    let mut sorted: Vec<&InboxMessage> = messages.iter().collect();
    sorted.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    let rows = sorted
        .iter()
        .map(|m| Ok((*m, parse_col(T, serde_json::to_string(&m.data))?)))
        .collect::<Result<Vec<_>>>()?;
    let returned = INSERT_MESSAGES
        .fetch(tx, &rows, |query, (m, data)| {
            query
                .bind(m.id.as_str())
                .bind(tenant_id.as_str())
                .bind(m.user_id.as_str())
                .bind(m.request_id.as_str())
                .bind(m.title.clone())
                .bind(m.body.clone())
                .bind(data.as_str())
                .bind(m.action_url.clone())
                .bind(m.created_at_ms)
        })
        .await?;
    let added = returned
        .iter()
        .map(|row| row.try_get::<String, _>("instance_id"))
        .collect::<Result<HashSet<_>, _>>()?;
    if added.is_empty() {
        return Ok(());
    }
    // In input order, so a page's messages reach a user's stream in the order delivered.
    let events: Vec<_> = messages
        .iter()
        .filter(|m| added.contains(m.id.as_str()))
        .map(|m| (&m.user_id, InboxEventKind::Message, Some(m.id.as_str())))
        .collect();
    let first = reserve_seqs(tx, events.len()).await?;
    insert_events(tx, tenant_id, first, &events, now_ms()).await
}

/// Forgets a user's inbox events and revokes their tokens, inside the caller's transaction;
/// for erasure, beside deleting their `inbox` rows. Open streams of theirs close.
pub(crate) async fn erase_user_streams(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: &TenantId,
    user_id: &UserId,
) -> Result<()> {
    sqlx::query("DELETE FROM inbox_events WHERE tenant_id = $1 AND user_id = $2")
        .bind(tenant_id.as_str())
        .bind(user_id.as_str())
        .execute(&mut **tx)
        .await?;
    revoke_tokens_in(tx, tenant_id, user_id, None).await?;
    Ok(())
}

/// Revokes the user's live tokens (or just `token_id`) and logs one event per token revoked.
pub(super) async fn revoke_tokens_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: &TenantId,
    user_id: &UserId,
    token_id: Option<&str>,
) -> Result<u64> {
    let now = now_ms();
    let rows = sqlx::query(
        "UPDATE inbox_tokens SET revoked_at_ms = $1
         WHERE tenant_id = $2 AND user_id = $3 AND revoked_at_ms IS NULL
           AND expires_at_ms > $1 AND ($4 = '' OR token_id = $4)
         RETURNING token_id",
    )
    .bind(now)
    .bind(tenant_id.as_str())
    .bind(user_id.as_str())
    .bind(token_id.unwrap_or(""))
    .fetch_all(&mut **tx)
    .await?;
    let ids = rows
        .iter()
        .map(|r| r.try_get::<String, _>("token_id"))
        .collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() {
        return Ok(0);
    }
    let events: Vec<_> = ids
        .iter()
        .map(|id| (user_id, InboxEventKind::TokenRevoked, Some(id.as_str())))
        .collect();
    let first = reserve_seqs(tx, events.len()).await?;
    insert_events(tx, tenant_id, first, &events, now).await?;
    Ok(ids.len() as u64)
}

impl Store {
    /// Lists a user's inbox newest first, continuing below `before` if given.
    pub async fn list_inbox(
        &self,
        tenant_id: &TenantId,
        user_id: &UserId,
        before: Option<&InboxCursor>,
        limit: u32,
    ) -> Result<Vec<InboxMessage>> {
        let (at, id) = before.map_or((i64::MAX, ""), |c| (c.created_at_ms, c.id.as_str()));
        let rows = sqlx::query(
            "SELECT instance_id, user_id, request_id, title, body, data, action_url, created_at_ms,
                    read_at_ms
             FROM inbox
             WHERE tenant_id = $1 AND user_id = $2
               AND (created_at_ms < $3 OR (created_at_ms = $3 AND instance_id < $4))
             ORDER BY created_at_ms DESC, instance_id DESC LIMIT $5",
        )
        .bind(tenant_id.as_str())
        .bind(user_id.as_str())
        .bind(at)
        .bind(id)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(message_from_row).collect()
    }

    /// Counts a user's unread messages.
    pub async fn unread_inbox_count(&self, tenant_id: &TenantId, user_id: &UserId) -> Result<u64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM inbox
             WHERE tenant_id = $1 AND user_id = $2 AND read_at_ms IS NULL",
        )
        .bind(tenant_id.as_str())
        .bind(user_id.as_str())
        .fetch_one(self.pool())
        .await?;
        let n: i64 = row.try_get("n")?;
        Ok(u64::try_from(n).unwrap_or_default())
    }

    /// Marks one of the user's messages read at `at_ms`, logging a `read` event if it was unread.
    pub async fn mark_inbox_read(
        &self,
        tenant_id: &TenantId,
        user_id: &UserId,
        message_id: &InstanceId,
        at_ms: UnixMillis,
    ) -> Result<MarkRead> {
        // A read first: a message that is not there, or already read, never takes the
        // store's write lock (end users' devices call this; tenants' deliveries share the lock).
        match self.read_state(tenant_id, user_id, message_id).await? {
            None => return Ok(MarkRead::NotFound),
            Some(Some(at)) => return Ok(MarkRead::AlreadyRead(at)),
            Some(None) => {}
        }
        let (mut tx, _writer) = self.write_tx().await?;
        // The counter first: it takes the write lock before the update reads anything.
        let seq = reserve_seqs(&mut tx, 1).await?;
        let marked = sqlx::query(
            "UPDATE inbox SET read_at_ms = $1
             WHERE tenant_id = $2 AND user_id = $3 AND instance_id = $4 AND read_at_ms IS NULL",
        )
        .bind(at_ms)
        .bind(tenant_id.as_str())
        .bind(user_id.as_str())
        .bind(message_id.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if marked == 1 {
            let event = [(user_id, InboxEventKind::Read, Some(message_id.as_str()))];
            insert_events(&mut tx, tenant_id, seq, &event, at_ms).await?;
            tx.commit().await?;
            return Ok(MarkRead::Marked(at_ms));
        }
        // Read (or erased) between the check and the update: give the sequence number back.
        tx.rollback().await?;
        Ok(
            match self.read_state(tenant_id, user_id, message_id).await? {
                Some(Some(at)) => MarkRead::AlreadyRead(at),
                _ => MarkRead::NotFound,
            },
        )
    }

    /// Whether the message exists (`None` if not) and when it was read.
    async fn read_state(
        &self,
        tenant_id: &TenantId,
        user_id: &UserId,
        message_id: &InstanceId,
    ) -> Result<Option<Option<UnixMillis>>> {
        let row = sqlx::query(
            "SELECT read_at_ms FROM inbox WHERE tenant_id = $1 AND user_id = $2 AND instance_id = $3",
        )
        .bind(tenant_id.as_str())
        .bind(user_id.as_str())
        .bind(message_id.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| row.try_get("read_at_ms"))
            .transpose()
            .map_err(Into::into)
    }

    /// Marks every unread message of the user read at `at_ms` and returns how many there were;
    /// logs one `read_all` event if any.
    pub async fn mark_all_inbox_read(
        &self,
        tenant_id: &TenantId,
        user_id: &UserId,
        at_ms: UnixMillis,
    ) -> Result<u64> {
        // Nothing unread: no write lock taken.
        let unread = sqlx::query(
            "SELECT 1 FROM inbox WHERE tenant_id = $1 AND user_id = $2 AND read_at_ms IS NULL
             LIMIT 1",
        )
        .bind(tenant_id.as_str())
        .bind(user_id.as_str())
        .fetch_optional(self.pool())
        .await?;
        if unread.is_none() {
            return Ok(0);
        }
        let (mut tx, _writer) = self.write_tx().await?;
        // The counter before the update: every message whose event is numbered below ours has
        // committed by then (its writer held the counter until it did), so the update sees it
        // and "read_all" truly covers every message a client received before it. A message
        // committing later is numbered after us.
        let seq = reserve_seqs(&mut tx, 1).await?;
        let marked = sqlx::query(
            "UPDATE inbox SET read_at_ms = $1
             WHERE tenant_id = $2 AND user_id = $3 AND read_at_ms IS NULL",
        )
        .bind(at_ms)
        .bind(tenant_id.as_str())
        .bind(user_id.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if marked == 0 {
            tx.rollback().await?;
            return Ok(0);
        }
        let event = [(user_id, InboxEventKind::ReadAll, None)];
        insert_events(&mut tx, tenant_id, seq, &event, at_ms).await?;
        tx.commit().await?;
        Ok(marked)
    }

    /// The number of the newest committed event (0 before the first): where a stream that
    /// asks for no history starts.
    pub async fn last_inbox_seq(&self) -> Result<i64> {
        let row = sqlx::query("SELECT last_seq FROM inbox_sequence WHERE id = 1")
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get("last_seq")?)
    }

    /// Up to `limit` events of every tenant after `after`, in order: what a poller scans.
    pub async fn inbox_log_after(&self, after: i64, limit: u32) -> Result<Vec<InboxLogEntry>> {
        let rows = sqlx::query(
            "SELECT seq, tenant_id, user_id, kind, subject, at_ms FROM inbox_events
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Up to `limit` of one user's events after `after`, in order: what a resuming stream
    /// replays.
    pub async fn user_inbox_log_after(
        &self,
        tenant_id: &TenantId,
        user_id: &UserId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<InboxLogEntry>> {
        let rows = sqlx::query(
            "SELECT seq, tenant_id, user_id, kind, subject, at_ms FROM inbox_events
             WHERE tenant_id = $1 AND user_id = $2 AND seq > $3 ORDER BY seq LIMIT $4",
        )
        .bind(tenant_id.as_str())
        .bind(user_id.as_str())
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Turns log entries into events, loading the messages they announce. Message events whose
    /// row is gone (the user was erased) are dropped; the order is kept.
    pub async fn resolve_inbox_events(&self, entries: &[InboxLogEntry]) -> Result<Vec<InboxEvent>> {
        let wanted: Vec<&str> = entries
            .iter()
            .filter(|e| e.kind == InboxEventKind::Message)
            .filter_map(|e| e.subject.as_deref())
            .collect();
        let rows = self
            .fetch_by_keys(
                &wanted,
                |ids| {
                    format!(
                        "SELECT instance_id, tenant_id, user_id, request_id, title, body, data,
                                action_url, created_at_ms, read_at_ms
                         FROM inbox WHERE instance_id IN ({ids})"
                    )
                },
                |query| query,
            )
            .await?;
        let mut messages: HashMap<(String, String), InboxMessage> = HashMap::new();
        for row in &rows {
            let tenant: String = row.try_get("tenant_id")?;
            let message = message_from_row(row)?;
            messages.insert((tenant, message.id.as_str().to_owned()), message);
        }
        let mut events = Vec::with_capacity(entries.len());
        for entry in entries {
            let subject = entry.subject.as_deref().unwrap_or_default();
            let change = match entry.kind {
                InboxEventKind::Message => {
                    let key = (entry.tenant_id.as_str().to_owned(), subject.to_owned());
                    match messages.get(&key) {
                        // The tenant check keeps one tenant's event from ever carrying
                        // another's row, whatever ids collide.
                        Some(m) if m.user_id == entry.user_id => {
                            InboxChange::Message(Box::new(m.clone()))
                        }
                        _ => continue,
                    }
                }
                InboxEventKind::Read => InboxChange::Read {
                    message_id: parse_col(EVENTS, InstanceId::parse(subject))?,
                    read_at_ms: entry.at_ms,
                },
                InboxEventKind::ReadAll => InboxChange::ReadAll {
                    read_at_ms: entry.at_ms,
                },
                InboxEventKind::TokenRevoked => InboxChange::TokenRevoked {
                    token_id: subject.to_owned(),
                },
            };
            events.push(InboxEvent {
                seq: entry.seq,
                tenant_id: entry.tenant_id.clone(),
                user_id: entry.user_id.clone(),
                change,
            });
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests;
