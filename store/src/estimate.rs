//! Counting an audience before sending to it: the preflight (dry run) and the blast-radius guard.
//!
//! Everything here is read-only and counts with SQL instead of loading profiles, so its cost
//! does not grow with the size of what a request would send. [`Store::audience_size`] is one
//! `COUNT` (the guard runs it before every real notify); [`Store::estimate_audience`] adds one
//! aggregate query per channel, mirroring delivery's screening order: unknown users first, then
//! users without an address on the channel, then preferences ([`Store::blocked_by_preferences`]
//! semantics: the category rule, else the channel default, else allowed), then the suppression
//! list. Push suppression is per device token (a user is suppressed only when every device is),
//! which portable SQL cannot unpack from the stored JSON, so those candidates are read in pages
//! of tokens; past `exact_limit` of them the rest is extrapolated and the estimate says so.
//!
//! The tenant's own blast-radius limit lives here too ([`Store::blast_radius_limit`]).

use std::collections::BTreeMap;

use fanout_domain::request::RecipientsQuery;
use fanout_domain::user::Device;
use fanout_domain::{Channel, TenantId, UserId};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;

use crate::bulk::placeholders;
use crate::{Result, Store, parse_col};

/// The most parameters a statement here binds before an explicit list's ids (the token scan's
/// five), which sets how many ids a chunk of the list may hold.
const PARAMS_BEFORE_IDS: usize = 5;

/// How many push candidates one page of the token scan reads.
const TOKEN_PAGE: u32 = 2000;

/// How big an audience is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudienceSize {
    /// Everyone the query names: listed ids, followers or segment members.
    pub members: u64,
    /// Those with a profile; delivery skips the others as `unknown_user`.
    pub recipients: u64,
}

/// What one channel would do with an audience. `recipients` splits exactly into the other
/// four fields, in delivery's order: a user is counted under the first reason that applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChannelEstimate {
    /// Recipients with a profile.
    pub recipients: u64,
    /// Without an address on the channel (no email; no push device). Never set for in-app.
    pub no_address: u64,
    /// Opted out of the channel, or of the template's category on it.
    pub opted_out: u64,
    /// Whose address (email, or every device token) is on the suppression list.
    pub suppressed: u64,
    /// Who would be sent to.
    pub deliverable: u64,
}

/// The preflight of one audience on some channels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudienceEstimate {
    /// The audience's size.
    pub size: AudienceSize,
    /// Per channel asked about.
    pub channels: BTreeMap<Channel, ChannelEstimate>,
    /// True when part of a count was extrapolated from a sample instead of counted exactly
    /// (push suppression past `exact_limit` candidates).
    pub sampled: bool,
}

/// Where an audience's user ids come from, as a subquery selecting `user_id`. Stored audiences
/// are one subquery; an explicit list is split into chunks, each counted on its own.
enum Source<'a> {
    Followers(&'a str),
    Segment(&'a str),
    Listed(&'a [UserId]),
}

impl Source<'_> {
    /// The subquery; the tenant is always `$1`, the source's own parameters start at `first`.
    fn sql(&self, first: usize) -> String {
        match self {
            Source::Followers(_) => format!(
                "SELECT follower_id AS user_id FROM follows WHERE tenant_id = $1 AND user_id = ${first}"
            ),
            Source::Segment(_) => format!(
                "SELECT user_id FROM segment_members WHERE tenant_id = $1 AND segment_id = ${first}"
            ),
            // Ids without a profile add nothing to any join below, so the list can be read
            // straight from `users`; members are counted from the list itself.
            Source::Listed(ids) => format!(
                "SELECT user_id FROM users WHERE tenant_id = $1 AND user_id IN ({})",
                placeholders(first, ids.len())
            ),
        }
    }

    fn bind<'q>(
        &self,
        mut query: Query<'q, sqlx::Any, AnyArguments<'q>>,
    ) -> Query<'q, sqlx::Any, AnyArguments<'q>> {
        match self {
            Source::Followers(key) | Source::Segment(key) => query.bind(key.to_string()),
            Source::Listed(ids) => {
                for id in *ids {
                    query = query.bind(id.as_str().to_owned());
                }
                query
            }
        }
    }
}

/// Splits a query into the sources to count, explicit lists deduplicated.
fn sources(query: &RecipientsQuery) -> (Vec<Source<'_>>, Option<Vec<UserId>>) {
    match query {
        RecipientsQuery::Followers { of } => (vec![Source::Followers(of.as_str())], None),
        RecipientsQuery::Segment { segment_id } => {
            (vec![Source::Segment(segment_id.as_str())], None)
        }
        // Only a digest's own request has it, and nobody previews that one.
        RecipientsQuery::Digest { .. } => (Vec::new(), Some(Vec::new())),
        RecipientsQuery::Users { user_ids } => {
            // The variant's field is public; count each id once, as resolution does.
            let mut ids = user_ids.clone();
            ids.sort();
            ids.dedup();
            (Vec::new(), Some(ids))
        }
    }
}

/// The columns that decide a channel: what "no address" and "suppressed" mean in SQL, over
/// the user row `u`. Push suppression is left to the token scan.
fn channel_sql(channel: Channel) -> (&'static str, &'static str) {
    match channel {
        Channel::Email => (
            "u.email IS NULL",
            "EXISTS (SELECT 1 FROM suppressions s WHERE s.tenant_id = $1
               AND s.channel = 'email' AND s.address = LOWER(u.email))",
        ),
        Channel::Push => ("u.devices IS NULL", "1 = 0"),
        Channel::InApp => ("1 = 0", "1 = 0"),
    }
}

/// The joins that bring in a user's channel default (`pd`) and category rule (`pc`) for
/// channel `$2` and category `$3`.
const PREFERENCE_JOINS: &str = "
    LEFT JOIN preferences pd ON pd.tenant_id = $1 AND pd.user_id = u.user_id
      AND pd.channel = $2 AND pd.category = ''
    LEFT JOIN preferences pc ON pc.tenant_id = $1 AND pc.user_id = u.user_id
      AND pc.channel = $2 AND pc.category = $3";

/// True when the preferences joined by [`PREFERENCE_JOINS`] block the delivery.
const BLOCKED: &str = "COALESCE(pc.enabled, pd.enabled, 1) = 0";

fn count(row: &AnyRow, column: &str) -> Result<u64> {
    let n: i64 = row.try_get(column)?;
    parse_col("estimate", u64::try_from(n))
}

impl Store {
    /// Counts the audience `query` names, and how many of its members have a profile: one
    /// `COUNT` over the audience's primary-key index (one per few hundred ids of an explicit
    /// list).
    pub async fn audience_size(
        &self,
        tenant_id: &TenantId,
        query: &RecipientsQuery,
    ) -> Result<AudienceSize> {
        let (stored, listed) = sources(query);
        let mut size = AudienceSize::default();
        if let Some(ids) = &listed {
            size.members = ids.len() as u64;
            let rows = self
                .fetch_by_keys(
                    ids,
                    |ids| {
                        format!(
                            "SELECT COUNT(*) AS n FROM users
                             WHERE tenant_id = $1 AND user_id IN ({ids})"
                        )
                    },
                    |query| query.bind(tenant_id.as_str()),
                )
                .await?;
            for row in &rows {
                size.recipients += count(row, "n")?;
            }
        }
        for source in stored {
            let sql = format!(
                "SELECT COUNT(*) AS members, COUNT(u.user_id) AS recipients FROM ({}) m
                 LEFT JOIN users u ON u.tenant_id = $1 AND u.user_id = m.user_id",
                source.sql(2)
            );
            let row = source
                .bind(sqlx::query(&sql).bind(tenant_id.as_str()))
                .fetch_one(self.pool())
                .await?;
            size.members += count(&row, "members")?;
            size.recipients += count(&row, "recipients")?;
        }
        Ok(size)
    }

    /// Estimates what sending a template of `category` on `channels` to `query` would do (see
    /// the module docs). Exact, except push suppression past `exact_limit` candidates, which is
    /// extrapolated from the first `exact_limit` (in user-id order) and flagged `sampled`.
    pub async fn estimate_audience(
        &self,
        tenant_id: &TenantId,
        query: &RecipientsQuery,
        channels: &[Channel],
        category: &str,
        exact_limit: u64,
    ) -> Result<AudienceEstimate> {
        let mut estimate = AudienceEstimate {
            size: self.audience_size(tenant_id, query).await?,
            ..AudienceEstimate::default()
        };
        let (stored, listed) = sources(query);
        let listed = listed.unwrap_or_default();
        let parts: Vec<Source<'_>> = stored
            .into_iter()
            .chain(
                listed
                    .chunks(self.keys_per_statement(PARAMS_BEFORE_IDS))
                    .map(Source::Listed),
            )
            .collect();
        for &channel in channels {
            let mut c = ChannelEstimate::default();
            for source in &parts {
                let part = self
                    .count_channel(tenant_id, source, channel, category)
                    .await?;
                c.recipients += part.recipients;
                c.no_address += part.no_address;
                c.opted_out += part.opted_out;
                c.suppressed += part.suppressed;
            }
            if channel == Channel::Push {
                let candidates = c.recipients - c.no_address - c.opted_out;
                let (suppressed, sampled) = self
                    .count_dead_push(tenant_id, &parts, category, candidates, exact_limit)
                    .await?;
                c.suppressed = suppressed;
                estimate.sampled |= sampled;
            }
            c.deliverable = c.recipients - c.no_address - c.opted_out - c.suppressed;
            estimate.channels.insert(channel, c);
        }
        Ok(estimate)
    }

    /// One aggregate over one source: recipients, and how many of them each screen stops.
    async fn count_channel(
        &self,
        tenant_id: &TenantId,
        source: &Source<'_>,
        channel: Channel,
        category: &str,
    ) -> Result<ChannelEstimate> {
        let (no_address, suppressed) = channel_sql(channel);
        let sql = format!(
            "SELECT COUNT(*) AS recipients,
               COALESCE(SUM(CASE WHEN {no_address} THEN 1 ELSE 0 END), 0) AS no_address,
               COALESCE(SUM(CASE WHEN NOT ({no_address}) AND {BLOCKED} THEN 1 ELSE 0 END), 0)
                 AS opted_out,
               COALESCE(SUM(CASE WHEN NOT ({no_address}) AND NOT ({BLOCKED}) AND {suppressed}
                 THEN 1 ELSE 0 END), 0) AS suppressed
             FROM ({}) m
             JOIN users u ON u.tenant_id = $1 AND u.user_id = m.user_id
             {PREFERENCE_JOINS}",
            source.sql(4)
        );
        let query = sqlx::query(&sql)
            .bind(tenant_id.as_str())
            .bind(channel.as_str())
            .bind(category);
        let row = source.bind(query).fetch_one(self.pool()).await?;
        Ok(ChannelEstimate {
            recipients: count(&row, "recipients")?,
            no_address: count(&row, "no_address")?,
            opted_out: count(&row, "opted_out")?,
            suppressed: count(&row, "suppressed")?,
            deliverable: 0,
        })
    }

    /// Counts push candidates (a device, not opted out) whose every token is suppressed.
    /// Returns the count and whether it was extrapolated.
    async fn count_dead_push(
        &self,
        tenant_id: &TenantId,
        parts: &[Source<'_>],
        category: &str,
        candidates: u64,
        exact_limit: u64,
    ) -> Result<(u64, bool)> {
        // Most tenants suppress few tokens, often none: then nothing needs reading.
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM suppressions WHERE tenant_id = $1 AND channel = 'push'",
        )
        .bind(tenant_id.as_str())
        .fetch_one(self.pool())
        .await?;
        if count(&row, "n")? == 0 || candidates == 0 {
            return Ok((0, false));
        }
        let mut scanned = 0u64;
        let mut dead = 0u64;
        'parts: for source in parts {
            let sql = format!(
                "SELECT u.user_id, u.devices FROM ({}) m
                 JOIN users u ON u.tenant_id = $1 AND u.user_id = m.user_id
                 {PREFERENCE_JOINS}
                 WHERE u.devices IS NOT NULL AND NOT ({BLOCKED}) AND u.user_id > $4
                 ORDER BY u.user_id LIMIT $5",
                source.sql(6)
            );
            let mut after = String::new();
            loop {
                let query = sqlx::query(&sql)
                    .bind(tenant_id.as_str())
                    .bind(Channel::Push.as_str())
                    .bind(category)
                    .bind(after.clone())
                    .bind(i64::from(TOKEN_PAGE));
                let rows = source.bind(query).fetch_all(self.pool()).await?;
                let mut users = Vec::with_capacity(rows.len());
                for row in &rows {
                    let user_id: String = row.try_get("user_id")?;
                    let devices: String = row.try_get("devices")?;
                    let devices: Vec<Device> = parse_col("users", serde_json::from_str(&devices))?;
                    users.push((user_id, devices));
                }
                let tokens: Vec<&str> = users
                    .iter()
                    .flat_map(|(_, d)| d.iter().map(|d| d.token.as_str()))
                    .collect();
                let suppressed = self
                    .suppressed_addresses(tenant_id, Channel::Push, &tokens)
                    .await?;
                for (_, devices) in &users {
                    scanned += 1;
                    let all_dead = !devices.is_empty()
                        && devices
                            .iter()
                            .all(|d| suppressed.contains(d.token.as_str()));
                    dead += u64::from(all_dead);
                    if scanned >= exact_limit {
                        break 'parts;
                    }
                }
                match users.last() {
                    Some((last, _)) if rows.len() == TOKEN_PAGE as usize => after = last.clone(),
                    _ => break,
                }
            }
        }
        if scanned >= candidates || scanned == 0 {
            return Ok((dead, false));
        }
        // Scale the sample's share up to every candidate (rounded to the nearest user).
        let scaled = (dead as f64 * candidates as f64 / scanned as f64).round() as u64;
        Ok((scaled.min(candidates), true))
    }

    /// Returns the tenant's own blast-radius limit, if it set one.
    pub async fn blast_radius_limit(&self, tenant_id: &TenantId) -> Result<Option<u64>> {
        let row = sqlx::query("SELECT blast_radius_limit FROM tenants WHERE tenant_id = $1")
            .bind(tenant_id.as_str())
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let limit: Option<i64> = row.try_get("blast_radius_limit")?;
        limit
            .map(|n| parse_col("tenants", u64::try_from(n)))
            .transpose()
    }

    /// Sets (or with `None` clears) the tenant's blast-radius limit. Returns false if the
    /// tenant does not exist.
    pub async fn set_blast_radius_limit(
        &self,
        tenant_id: &TenantId,
        limit: Option<u64>,
    ) -> Result<bool> {
        // Past i64::MAX is "no limit" in practice; the column is a signed BIGINT.
        let limit = limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let done = sqlx::query("UPDATE tenants SET blast_radius_limit = $1 WHERE tenant_id = $2")
            .bind(limit)
            .bind(tenant_id.as_str())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests;
