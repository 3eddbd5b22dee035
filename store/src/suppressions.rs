//! The per-tenant suppression list: addresses no channel sends to.
//!
//! An entry is a (channel, address) pair: an email address for `email`, a device token for
//! `push` (whichever platform issued it). Delivery adds entries itself when a provider says an
//! address is dead ([`Store::suppress`], idempotent), operators add and remove them through the
//! API, and delivery checks a whole page's addresses at once ([`Store::suppressed_addresses`]),
//! recording a skipped delivery as suppressed with reason [`SUPPRESSED_ADDRESS`].
//!
//! Email addresses are compared without regard to case (they are stored lowercased): providers
//! report bounces in whatever case the relay saw, and deliverability of `Ada@` and `ada@` is the
//! same in practice. Device tokens are opaque and compared exactly.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use fanout_domain::{Channel, TenantId, UnixMillis};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, now_ms, parse_col};

const T: &str = "suppressions";

/// The receipt `error_code` of a delivery skipped because its address is on the suppression
/// list.
pub const SUPPRESSED_ADDRESS: &str = "suppressed_address";

/// Why an address is suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionReason {
    /// The mail relay rejected the address permanently (5xx).
    HardBounce,
    /// The push service said the token is unregistered or malformed.
    InvalidToken,
    /// The recipient reported a message as spam.
    Complaint,
    /// An operator added it.
    Manual,
}

impl SuppressionReason {
    /// Every reason, in a stable order.
    pub const ALL: [SuppressionReason; 4] = [
        SuppressionReason::HardBounce,
        SuppressionReason::InvalidToken,
        SuppressionReason::Complaint,
        SuppressionReason::Manual,
    ];

    /// Returns the wire name (`hard_bounce`, `invalid_token`, `complaint`, `manual`).
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionReason::HardBounce => "hard_bounce",
            SuppressionReason::InvalidToken => "invalid_token",
            SuppressionReason::Complaint => "complaint",
            SuppressionReason::Manual => "manual",
        }
    }
}

impl fmt::Display for SuppressionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name given is not a suppression reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown suppression reason '{0}' (expected one of: hard_bounce, invalid_token, complaint, manual)"
)]
pub struct UnknownReason(pub String);

impl FromStr for SuppressionReason {
    type Err = UnknownReason;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownReason(s.to_owned()))
    }
}

/// One entry of the suppression list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Suppression {
    /// The channel that must not send to the address: `email` or `push` (in-app has no
    /// addresses).
    #[schema(value_type = SuppressionChannel)]
    pub channel: Channel,
    /// The email address (lowercased) or device token.
    pub address: String,
    /// Why.
    pub reason: SuppressionReason,
    /// What the provider said, or an operator's note.
    pub detail: Option<String>,
    /// When the address was first suppressed.
    #[schema(value_type = i64)]
    pub created_at_ms: UnixMillis,
}

/// The channels that have addresses to suppress, as the OpenAPI document names them.
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum SuppressionChannel {
    /// Email addresses.
    Email,
    /// Push device tokens.
    Push,
}

/// A position in a suppression listing: the last entry seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressionCursor {
    /// Its channel.
    pub channel: Channel,
    /// Its address, as stored.
    pub address: String,
}

/// The address as stored and compared: lowercased for email, verbatim otherwise.
pub fn normalize_address(channel: Channel, address: &str) -> String {
    match channel {
        Channel::Email => address.to_lowercase(),
        Channel::InApp | Channel::Push => address.to_owned(),
    }
}

fn suppression_from_row(row: &AnyRow) -> Result<Suppression> {
    let channel: String = row.try_get("channel")?;
    let reason: String = row.try_get("reason")?;
    Ok(Suppression {
        channel: parse_col(T, channel.parse::<Channel>())?,
        address: row.try_get("address")?,
        reason: parse_col(T, reason.parse::<SuppressionReason>())?,
        detail: row.try_get("detail")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

/// Deletes the entries for an erased user's email address and device tokens inside `tx`.
/// Entries are per address, not per user: another user of the tenant who shares the address
/// loses its entry too, and gets it back at the next bounce.
pub(crate) async fn erase_addresses(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: &TenantId,
    email: Option<&str>,
    tokens: &[&str],
) -> Result<()> {
    let targets = email
        .map(|e| (Channel::Email, normalize_address(Channel::Email, e)))
        .into_iter()
        .chain(tokens.iter().map(|t| (Channel::Push, (*t).to_owned())));
    for (channel, address) in targets {
        sqlx::query(
            "DELETE FROM suppressions WHERE tenant_id = $1 AND channel = $2 AND address = $3",
        )
        .bind(tenant_id.as_str())
        .bind(channel.as_str())
        .bind(address)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

impl Store {
    /// Puts an address on the tenant's suppression list. Idempotent: an address already there
    /// keeps its first reason, detail and time, so a retried delivery changes nothing. Returns
    /// whether the entry is new.
    pub async fn suppress(
        &self,
        tenant_id: &TenantId,
        channel: Channel,
        address: &str,
        reason: SuppressionReason,
        detail: Option<&str>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO suppressions (tenant_id, channel, address, reason, detail, created_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant_id, channel, address) DO NOTHING",
        )
        .bind(tenant_id.as_str())
        .bind(channel.as_str())
        .bind(normalize_address(channel, address))
        .bind(reason.as_str())
        .bind(detail)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Returns which of `addresses` (as given, case included) are suppressed on `channel`.
    /// One query per few hundred distinct addresses (see `bulk`).
    pub async fn suppressed_addresses(
        &self,
        tenant_id: &TenantId,
        channel: Channel,
        addresses: &[&str],
    ) -> Result<HashSet<String>> {
        // Stored form -> the caller's spellings of it.
        let mut wanted: HashMap<String, Vec<&str>> = HashMap::new();
        for &address in addresses {
            wanted
                .entry(normalize_address(channel, address))
                .or_default()
                .push(address);
        }
        let keys: Vec<&String> = wanted.keys().collect();
        let rows = self
            .fetch_by_keys(
                &keys,
                |addresses| {
                    format!(
                        "SELECT address FROM suppressions
                         WHERE tenant_id = $1 AND channel = $2 AND address IN ({addresses})"
                    )
                },
                |query| query.bind(tenant_id.as_str()).bind(channel.as_str()),
            )
            .await?;
        let mut found = HashSet::new();
        for row in rows {
            let stored: String = row.try_get("address")?;
            if let Some(spellings) = wanted.get(&stored) {
                found.extend(spellings.iter().map(|s| (*s).to_owned()));
            }
        }
        Ok(found)
    }

    /// Returns the entry for an address, if it is suppressed.
    pub async fn get_suppression(
        &self,
        tenant_id: &TenantId,
        channel: Channel,
        address: &str,
    ) -> Result<Option<Suppression>> {
        let row = sqlx::query(
            "SELECT channel, address, reason, detail, created_at_ms FROM suppressions
             WHERE tenant_id = $1 AND channel = $2 AND address = $3",
        )
        .bind(tenant_id.as_str())
        .bind(channel.as_str())
        .bind(normalize_address(channel, address))
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(suppression_from_row).transpose()
    }

    /// Lists up to `limit` entries in (channel, address) order after `after`, optionally only
    /// those of one channel and/or one address.
    pub async fn list_suppressions(
        &self,
        tenant_id: &TenantId,
        channel: Option<Channel>,
        address: Option<&str>,
        after: Option<&SuppressionCursor>,
        limit: u32,
    ) -> Result<Vec<Suppression>> {
        let mut clauses = vec!["tenant_id = $1".to_owned()];
        let mut binds: Vec<String> = vec![tenant_id.as_str().to_owned()];
        if let Some(channel) = channel {
            binds.push(channel.as_str().to_owned());
            clauses.push(format!("channel = ${}", binds.len()));
        }
        match (channel, address) {
            (Some(channel), Some(address)) => {
                binds.push(normalize_address(channel, address));
                clauses.push(format!("address = ${}", binds.len()));
            }
            (None, Some(address)) => {
                // Without a channel the address may be of either kind: match both spellings.
                binds.push(address.to_owned());
                binds.push(normalize_address(Channel::Email, address));
                let n = binds.len();
                clauses.push(format!("address IN (${}, ${n})", n - 1));
            }
            (_, None) => {}
        }
        if let Some(after) = after {
            binds.push(after.channel.as_str().to_owned());
            binds.push(after.address.clone());
            let (c, a) = (binds.len() - 1, binds.len());
            clauses.push(format!(
                "(channel > ${c} OR (channel = ${c} AND address > ${a}))"
            ));
        }
        let sql = format!(
            "SELECT channel, address, reason, detail, created_at_ms FROM suppressions
             WHERE {} ORDER BY channel, address LIMIT ${}",
            clauses.join(" AND "),
            binds.len() + 1
        );
        let mut query = sqlx::query(&sql);
        for value in &binds {
            query = query.bind(value.as_str());
        }
        let rows = query.bind(i64::from(limit)).fetch_all(self.pool()).await?;
        rows.iter().map(suppression_from_row).collect()
    }

    /// Takes an address off the list. Returns false if it was not on it.
    pub async fn unsuppress(
        &self,
        tenant_id: &TenantId,
        channel: Channel,
        address: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM suppressions WHERE tenant_id = $1 AND channel = $2 AND address = $3",
        )
        .bind(tenant_id.as_str())
        .bind(channel.as_str())
        .bind(normalize_address(channel, address))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests;
