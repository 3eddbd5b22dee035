//! Inbox tokens and stream tickets.
//!
//! A tenant's backend issues an inbox token per user device; the store keeps only its hash, so
//! any API replica verifies it and a revocation (logged as an inbox event) reaches them all.
//!
//! A stream ticket stands in for the token in a stream URL (`?ticket=`), where browsers'
//! `EventSource` and `WebSocket` cannot send a header: it is issued to a holder of the token,
//! lives for seconds and opens one stream. URLs end up in proxy logs and browser histories; a
//! ticket found there has already been used or has expired. A ticket grants what its token
//! grants: a revoked or expired token makes its tickets worthless, and the stream opened with
//! one ends when the token is revoked or expires.

use fanout_domain::{TenantId, UnixMillis, UserId};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::revoke_tokens_in;
use crate::{Result, Store, now_ms, parse_col};

/// The prefix of every inbox token, so leaked tokens are easy to recognise and scan for.
pub const INBOX_TOKEN_PREFIX: &str = "fit_";

/// The prefix of every stream ticket.
pub const STREAM_TICKET_PREFIX: &str = "fst_";

/// A freshly issued inbox token. The plaintext exists only here; the store keeps its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedInboxToken {
    /// The bearer token to hand to the user's device.
    pub token: String,
    /// Its public name, for revocation.
    pub token_id: String,
    /// When it stops working.
    pub expires_at_ms: UnixMillis,
}

/// What a live inbox token grants: one user of one tenant, until it expires or is revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxGrant {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The only user whose inbox the token opens.
    pub user_id: UserId,
    /// The token's public name.
    pub token_id: String,
    /// When it stops working.
    pub expires_at_ms: UnixMillis,
}

/// Hashes an inbox token for storage and lookup.
fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Reads a grant from a row with the token's `token_id`, `tenant_id`, `user_id` and
/// `expires_at_ms`.
fn grant_from_row(row: &AnyRow) -> Result<InboxGrant> {
    let tenant_id: String = row.try_get("tenant_id")?;
    let user_id: String = row.try_get("user_id")?;
    Ok(InboxGrant {
        tenant_id: parse_col("inbox_tokens", TenantId::parse(&tenant_id))?,
        user_id: parse_col("inbox_tokens", UserId::parse(&user_id))?,
        token_id: row.try_get("token_id")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
    })
}

impl Store {
    /// Issues a token that opens `user_id`'s inbox (and nothing else) until `expires_at_ms`.
    pub async fn issue_inbox_token(
        &self,
        tenant_id: &TenantId,
        user_id: &UserId,
        expires_at_ms: UnixMillis,
    ) -> Result<IssuedInboxToken> {
        let token = format!("{INBOX_TOKEN_PREFIX}{}", random_hex(32));
        let token_id = format!("itk_{}", random_hex(12));
        sqlx::query(
            "INSERT INTO inbox_tokens (token_hash, token_id, tenant_id, user_id, created_at_ms,
                                       expires_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(hash_token(&token))
        .bind(token_id.as_str())
        .bind(tenant_id.as_str())
        .bind(user_id.as_str())
        .bind(now_ms())
        .bind(expires_at_ms)
        .execute(self.pool())
        .await?;
        Ok(IssuedInboxToken {
            token,
            token_id,
            expires_at_ms,
        })
    }

    /// Returns what a token grants if it is known, unrevoked and unexpired at `now_ms`.
    pub async fn verify_inbox_token(
        &self,
        token: &str,
        now_ms: UnixMillis,
    ) -> Result<Option<InboxGrant>> {
        let row = sqlx::query(
            "SELECT token_id, tenant_id, user_id, expires_at_ms FROM inbox_tokens
             WHERE token_hash = $1 AND revoked_at_ms IS NULL AND expires_at_ms > $2",
        )
        .bind(hash_token(token))
        .bind(now_ms)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(grant_from_row).transpose()
    }

    /// Revokes one of the user's tokens. Returns whether the user has a token of that id
    /// (revoking a revoked token again changes nothing).
    pub async fn revoke_inbox_token(
        &self,
        tenant_id: &TenantId,
        user_id: &UserId,
        token_id: &str,
    ) -> Result<bool> {
        if token_id.is_empty() {
            return Ok(false);
        }
        let (mut tx, _writer) = self.write_tx().await?;
        let revoked = revoke_tokens_in(&mut tx, tenant_id, user_id, Some(token_id)).await?;
        tx.commit().await?;
        if revoked > 0 {
            return Ok(true);
        }
        let row = sqlx::query(
            "SELECT 1 FROM inbox_tokens WHERE tenant_id = $1 AND user_id = $2 AND token_id = $3",
        )
        .bind(tenant_id.as_str())
        .bind(user_id.as_str())
        .bind(token_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.is_some())
    }

    /// Revokes every live (unrevoked, unexpired) token of the user and returns how many.
    pub async fn revoke_inbox_tokens(&self, tenant_id: &TenantId, user_id: &UserId) -> Result<u64> {
        let (mut tx, _writer) = self.write_tx().await?;
        let revoked = revoke_tokens_in(&mut tx, tenant_id, user_id, None).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    /// Issues a single-use ticket for the stream routes, standing in for the token `token_id`
    /// until `expires_at_ms`. Returns the ticket; the store keeps its hash.
    pub async fn issue_stream_ticket(
        &self,
        token_id: &str,
        expires_at_ms: UnixMillis,
    ) -> Result<String> {
        let ticket = format!("{STREAM_TICKET_PREFIX}{}", random_hex(32));
        sqlx::query(
            "INSERT INTO stream_tickets (ticket_hash, token_id, expires_at_ms) VALUES ($1, $2, $3)",
        )
        .bind(hash_token(&ticket))
        .bind(token_id)
        .bind(expires_at_ms)
        .execute(self.pool())
        .await?;
        Ok(ticket)
    }

    /// Uses up a ticket: returns what its token grants if the ticket is known, unused and
    /// unexpired at `now_ms` and its token still live. A ticket is used even when its token
    /// turns out to be dead, so no ticket is ever presented twice with success.
    pub async fn redeem_stream_ticket(
        &self,
        ticket: &str,
        now_ms: UnixMillis,
    ) -> Result<Option<InboxGrant>> {
        let (mut tx, _writer) = self.write_tx().await?;
        let token_id: Option<String> = sqlx::query_scalar(
            "UPDATE stream_tickets SET used_at_ms = $2
             WHERE ticket_hash = $1 AND used_at_ms IS NULL AND expires_at_ms > $2
             RETURNING token_id",
        )
        .bind(hash_token(ticket))
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(token_id) = token_id else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT token_id, tenant_id, user_id, expires_at_ms FROM inbox_tokens
             WHERE token_id = $1 AND revoked_at_ms IS NULL AND expires_at_ms > $2",
        )
        .bind(token_id.as_str())
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.as_ref().map(grant_from_row).transpose()
    }
}

#[cfg(test)]
mod tests {
    use crate::inbox::InboxEventKind;
    use crate::test_support::store;

    use super::*;

    #[tokio::test]
    async fn tokens_open_one_users_inbox_until_expired_or_revoked() {
        let store = store().await;
        let t = TenantId::parse("acme").unwrap();
        let u1 = UserId::parse("u1").unwrap();
        let now = crate::now_ms();
        let issued = store
            .issue_inbox_token(&t, &u1, now + 60_000)
            .await
            .unwrap();
        assert!(issued.token.starts_with(INBOX_TOKEN_PREFIX));
        let grant = store
            .verify_inbox_token(&issued.token, now)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((&grant.tenant_id, &grant.user_id), (&t, &u1));
        assert_eq!(grant.token_id, issued.token_id);
        // Past its expiry, and with a wrong token: nothing.
        assert!(
            store
                .verify_inbox_token(&issued.token, now + 60_000)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .verify_inbox_token("fit_nope", now)
                .await
                .unwrap()
                .is_none()
        );

        let second = store
            .issue_inbox_token(&t, &u1, now + 60_000)
            .await
            .unwrap();
        assert!(
            store
                .revoke_inbox_token(&t, &u1, &issued.token_id)
                .await
                .unwrap()
        );
        assert!(
            store
                .revoke_inbox_token(&t, &u1, &issued.token_id)
                .await
                .unwrap()
        );
        assert!(
            !store
                .revoke_inbox_token(&t, &u1, "itk_unknown")
                .await
                .unwrap()
        );
        let other = UserId::parse("u2").unwrap();
        assert!(
            !store
                .revoke_inbox_token(&t, &other, &second.token_id)
                .await
                .unwrap()
        );
        assert!(
            store
                .verify_inbox_token(&issued.token, now)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .verify_inbox_token(&second.token, now)
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(store.revoke_inbox_tokens(&t, &u1).await.unwrap(), 1);
        assert!(
            store
                .verify_inbox_token(&second.token, now)
                .await
                .unwrap()
                .is_none()
        );
        // Each revocation is logged, so every API process closes the streams it opened.
        let log = store.inbox_log_after(0, 100).await.unwrap();
        let revoked: Vec<_> = log
            .iter()
            .filter(|e| e.kind == InboxEventKind::TokenRevoked)
            .map(|e| e.subject.clone().unwrap())
            .collect();
        assert_eq!(revoked, [issued.token_id, second.token_id]);
    }

    #[tokio::test]
    async fn a_stream_ticket_opens_once_within_its_life_while_its_token_lives() {
        let store = store().await;
        let t = TenantId::parse("acme").unwrap();
        let u1 = UserId::parse("u1").unwrap();
        let now = crate::now_ms();
        let token = store
            .issue_inbox_token(&t, &u1, now + 600_000)
            .await
            .unwrap();
        let ticket = store
            .issue_stream_ticket(&token.token_id, now + 60_000)
            .await
            .unwrap();
        assert!(ticket.starts_with(STREAM_TICKET_PREFIX));
        // A ticket is not a token.
        assert_eq!(store.verify_inbox_token(&ticket, now).await.unwrap(), None);
        let grant = store
            .redeem_stream_ticket(&ticket, now)
            .await
            .unwrap()
            .expect("a fresh ticket opens");
        assert_eq!(
            (&grant.tenant_id, &grant.user_id, &grant.token_id),
            (&t, &u1, &token.token_id)
        );
        assert_eq!(
            grant.expires_at_ms, token.expires_at_ms,
            "the token's life, not the ticket's"
        );
        assert_eq!(
            store.redeem_stream_ticket(&ticket, now).await.unwrap(),
            None,
            "used"
        );

        let late = store
            .issue_stream_ticket(&token.token_id, now + 60_000)
            .await
            .unwrap();
        assert_eq!(
            store
                .redeem_stream_ticket(&late, now + 60_000)
                .await
                .unwrap(),
            None,
            "expired"
        );
        assert_eq!(
            store
                .redeem_stream_ticket("fst_unknown", now)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store.redeem_stream_ticket(&token.token, now).await.unwrap(),
            None,
            "a token is not a ticket"
        );

        let orphan = store
            .issue_stream_ticket(&token.token_id, now + 60_000)
            .await
            .unwrap();
        assert!(
            store
                .revoke_inbox_token(&t, &u1, &token.token_id)
                .await
                .unwrap()
        );
        assert_eq!(
            store.redeem_stream_ticket(&orphan, now).await.unwrap(),
            None,
            "the token was revoked"
        );
    }
}
