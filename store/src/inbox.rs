//! The in-app inbox: one row per in-app delivery instance, newest first.

use fanout_domain::inbox::InboxMessage;
use fanout_domain::{InstanceId, RequestId, TenantId, UnixMillis, UserId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, multi_row_sql, parse_col, rows_per_statement};

const T: &str = "inbox";

/// A position in a user's inbox listing: the last message seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxCursor {
    /// Its delivery time.
    pub created_at_ms: UnixMillis,
    /// Its id, breaking ties.
    pub id: InstanceId,
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
        data: parse_col(T, serde_json::from_str(&data))?,
        created_at_ms: row.try_get("created_at_ms")?,
        read_at_ms: row.try_get("read_at_ms")?,
    })
}

/// Adds messages not already in the inbox, inside the caller's transaction.
pub(crate) async fn insert_messages(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: &TenantId,
    messages: &[InboxMessage],
) -> Result<()> {
    for chunk in messages.chunks(rows_per_statement(8)) {
        let sql = multi_row_sql(
            "INSERT INTO inbox (instance_id, tenant_id, user_id, request_id, title, body, data,
                                created_at_ms)",
            8,
            chunk.len(),
            "ON CONFLICT (instance_id) DO NOTHING",
        );
        let mut query = sqlx::query(&sql);
        for m in chunk {
            let data = parse_col(T, serde_json::to_string(&m.data))?;
            query = query
                .bind(m.id.as_str())
                .bind(tenant_id.as_str())
                .bind(m.user_id.as_str())
                .bind(m.request_id.as_str())
                .bind(m.title.clone())
                .bind(m.body.clone())
                .bind(data)
                .bind(m.created_at_ms);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
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
            "SELECT instance_id, user_id, request_id, title, body, data, created_at_ms, read_at_ms
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
}

#[cfg(test)]
mod tests {
    use fanout_domain::{Channel, DedupeKey};

    use crate::test_support::store;

    use super::*;

    #[tokio::test]
    async fn inbox_is_exactly_once_and_pages_newest_first() {
        let store = store().await;
        let t = TenantId::parse("acme").unwrap();
        let user = UserId::parse("u1").unwrap();
        let mut ids = Vec::new();
        for i in 0..5 {
            let req = DedupeKey::new(t.clone(), &format!("k{i}"))
                .unwrap()
                .request_id();
            let msg = InboxMessage {
                id: InstanceId::derive(&req, &user, Channel::InApp),
                user_id: user.clone(),
                request_id: req,
                title: format!("t{i}"),
                body: "b".into(),
                data: serde_json::json!({"i": i}),
                created_at_ms: 1_000 + i64::from(i),
                read_at_ms: None,
            };
            // Twice, as a retried delivery would: the second write adds nothing.
            for _ in 0..2 {
                store
                    .record_deliveries(&t, &[], std::slice::from_ref(&msg))
                    .await
                    .unwrap();
            }
            ids.push(msg.id);
        }
        assert_eq!(
            store.list_inbox(&t, &user, None, 100).await.unwrap().len(),
            5
        );
        let first = store.list_inbox(&t, &user, None, 3).await.unwrap();
        assert_eq!(
            first.iter().map(|m| m.title.as_str()).collect::<Vec<_>>(),
            ["t4", "t3", "t2"]
        );
        let cursor = InboxCursor {
            created_at_ms: first[2].created_at_ms,
            id: first[2].id.clone(),
        };
        let rest = store.list_inbox(&t, &user, Some(&cursor), 3).await.unwrap();
        assert_eq!(
            rest.iter().map(|m| m.title.as_str()).collect::<Vec<_>>(),
            ["t1", "t0"]
        );
        let other = TenantId::parse("other").unwrap();
        assert!(
            store
                .list_inbox(&other, &user, None, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
