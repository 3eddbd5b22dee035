//! Users' notification preferences: which channels, and which template categories on each
//! channel, they want to hear from.
//!
//! Semantics, in one place: a user has an optional rule per channel (the channel's default)
//! and an optional rule per (category, channel). When delivering a template of category `c` on
//! channel `ch`, the (c, ch) rule decides if there is one, else the channel's rule, else the
//! delivery is allowed. So a category rule overrides the channel default in both directions:
//! "push off, but marketing push on" delivers marketing pushes only.
//!
//! Preferences are keyed by user id alone and need no profile: products often record a choice
//! before the user exists here. Delivery reads them for a whole page at once
//! ([`Store::blocked_by_preferences`]) and records a blocked delivery as suppressed with reason
//! [`OPTED_OUT`].

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use fanout_domain::ids::InvalidId;
use fanout_domain::{Channel, TenantId, UserId};
use serde::{Deserialize, Deserializer, Serialize};
use sqlx::Row;

use crate::bulk::Insert;
use crate::{Result, Store, now_ms, parse_col};

const T: &str = "preferences";

/// The receipt `error_code` of a delivery suppressed because the user opted out of its channel
/// or of its category on that channel.
pub const OPTED_OUT: &str = "opted_out";

/// A template category as preferences name it (`marketing`, `security`, `digest.weekly`):
/// 1 to 64 bytes of ASCII letters, digits, `-`, `_` and `.`. Compared exactly, case included,
/// with the template's category.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Category(String);

impl Category {
    /// The most bytes a category has.
    pub const MAX_LEN: usize = 64;

    /// The characters a category has, as a pattern.
    pub const PATTERN: &str = "^[A-Za-z0-9._-]+$";

    /// Parses a category.
    pub fn parse(s: &str) -> std::result::Result<Self, InvalidId> {
        let bad = |reason: String| InvalidId {
            field: "category",
            reason,
        };
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(bad(format!(
                "must be between 1 and {} bytes",
                Self::MAX_LEN
            )));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(bad(
                "must be ASCII letters, digits, '-', '_' or '.' (like a template's category)"
                    .into(),
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// Returns the category.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// Lets a document be searched by the template's category as a plain string; the derived
// orderings of a newtype and its string agree, as `Borrow` requires.
impl Borrow<str> for Category {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Category {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// One user's preferences document. Absent entries allow; see the module docs for how rules
/// combine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Preferences {
    /// Each channel's default: `false` turns the channel off for every category without a rule
    /// of its own on that channel.
    #[serde(default)]
    #[schema(schema_with = channel_rules_schema)]
    pub channels: BTreeMap<Channel, bool>,
    /// Rules per category and channel; they override the channel defaults.
    #[serde(default)]
    #[schema(schema_with = category_rules_schema)]
    pub categories: BTreeMap<Category, BTreeMap<Channel, bool>>,
}

/// `{channel: bool}`.
fn channel_rules_schema() -> utoipa::openapi::Object {
    fanout_domain::channel::keyed_by_channel(
        utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::Type::Boolean),
    )
}

/// `{category: {channel: bool}}`, categories named as [`Category::parse`] accepts them. The
/// API takes at most 200 (`MAX_CATEGORIES` in the API's preferences).
pub fn category_rules_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(Category::MAX_LEN))
                .pattern(Some(Category::PATTERN)),
        ))
        .additional_properties(Some(AdditionalProperties::RefOr(
            channel_rules_schema().into(),
        )))
        .build()
}

impl Preferences {
    /// Tells whether a template of `category` may be delivered on `channel`.
    pub fn allows(&self, channel: Channel, category: &str) -> bool {
        let by_category = self
            .categories
            .get(category)
            .and_then(|rules| rules.get(&channel));
        by_category
            .or_else(|| self.channels.get(&channel))
            .copied()
            .unwrap_or(true)
    }

    /// Sets a rule, as opt-in (`enabled`) and opt-out do: a channel's default when `category` is
    /// `None`; the category's rule on `channel` when both are given; the category's rule on
    /// every channel when `channel` is `None`. With neither, every channel's default is set.
    pub fn set(&mut self, channel: Option<Channel>, category: Option<&Category>, enabled: bool) {
        let channels: &[Channel] = match &channel {
            Some(c) => std::slice::from_ref(c),
            None => &Channel::ALL,
        };
        let rules = match category {
            Some(category) => self.categories.entry(category.clone()).or_default(),
            None => &mut self.channels,
        };
        for &c in channels {
            rules.insert(c, enabled);
        }
    }

    /// The document as stored rows: (channel, category or "", enabled).
    fn rows(&self) -> Vec<(Channel, &str, bool)> {
        let defaults = self.channels.iter().map(|(&ch, &on)| (ch, "", on));
        let by_category = self.categories.iter().flat_map(|(category, rules)| {
            rules
                .iter()
                .map(move |(&ch, &on)| (ch, category.as_str(), on))
        });
        defaults.chain(by_category).collect()
    }
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// Reads a user's document inside `tx`.
async fn read(tx: &mut Tx<'_>, tenant_id: &TenantId, user_id: &UserId) -> Result<Preferences> {
    let rows = sqlx::query(
        "SELECT channel, category, enabled FROM preferences
         WHERE tenant_id = $1 AND user_id = $2",
    )
    .bind(tenant_id.as_str())
    .bind(user_id.as_str())
    .fetch_all(&mut **tx)
    .await?;
    let mut prefs = Preferences::default();
    for row in rows {
        let channel: String = row.try_get("channel")?;
        let category: String = row.try_get("category")?;
        let enabled: i64 = row.try_get("enabled")?;
        let channel = parse_col(T, channel.parse::<Channel>())?;
        let rules = if category.is_empty() {
            &mut prefs.channels
        } else {
            prefs
                .categories
                .entry(parse_col(T, Category::parse(&category))?)
                .or_default()
        };
        rules.insert(channel, enabled != 0);
    }
    Ok(prefs)
}

/// Replaces a user's document inside `tx`.
async fn write(
    tx: &mut Tx<'_>,
    tenant_id: &TenantId,
    user_id: &UserId,
    prefs: &Preferences,
) -> Result<()> {
    erase(tx, tenant_id, user_id).await?;
    insert_rules(tx, tenant_id, user_id, &prefs.rows(), "").await
}

/// Inserts rules of one user, as [`Preferences::rows`] lists them, inside `tx`; `tail` says
/// what a rule already there does.
async fn insert_rules(
    tx: &mut Tx<'_>,
    tenant_id: &TenantId,
    user_id: &UserId,
    rules: &[(Channel, &str, bool)],
    tail: &str,
) -> Result<()> {
    let now = now_ms();
    let insert = Insert {
        head: "INSERT INTO preferences (tenant_id, user_id, channel, category, enabled, updated_at_ms)",
        columns: 6,
        tail,
    };
    insert
        .execute(tx, rules, |query, &(channel, category, enabled)| {
            query
                .bind(tenant_id.as_str())
                .bind(user_id.as_str())
                .bind(channel.as_str())
                .bind(category)
                .bind(i64::from(enabled))
                .bind(now)
        })
        .await?;
    Ok(())
}

/// Serialises, until `tx` ends, the writers of one user's document on PostgreSQL. A
/// replacement deletes the rows it sees and inserts the new ones, and a READ COMMITTED
/// transaction sees none of another's uncommitted rows: two replacements (or a replacement and
/// a rule change) at once failed on the primary key, a 500, or left a mix of both documents.
/// No row stands for the document (preferences need no user), so the lock is an advisory one
/// on a hash of its key; a collision only makes two users' writers take turns. SQLite's write
/// transaction already excludes every other writer.
pub(crate) async fn lock_document(
    store: &Store,
    tx: &mut Tx<'_>,
    tenant_id: &TenantId,
    user_id: &UserId,
) -> Result<()> {
    if store.is_sqlite() {
        return Ok(());
    }
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("preferences/{tenant_id}/{user_id}"))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Deletes a user's preferences inside `tx` (replacement, and erasure of the user).
pub(crate) async fn erase(tx: &mut Tx<'_>, tenant_id: &TenantId, user_id: &UserId) -> Result<()> {
    sqlx::query("DELETE FROM preferences WHERE tenant_id = $1 AND user_id = $2")
        .bind(tenant_id.as_str())
        .bind(user_id.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Store {
    /// Returns a user's preferences; a user who never set any (or does not exist) has the empty
    /// document, which allows everything.
    pub async fn get_preferences(
        &self,
        tenant_id: &TenantId,
        user_id: &UserId,
    ) -> Result<Preferences> {
        let (mut tx, _writer) = self.write_tx().await?;
        let prefs = read(&mut tx, tenant_id, user_id).await?;
        tx.commit().await?;
        Ok(prefs)
    }

    /// Replaces a user's whole preferences document, in one transaction.
    pub async fn replace_preferences(
        &self,
        tenant_id: &TenantId,
        user_id: &UserId,
        prefs: &Preferences,
    ) -> Result<()> {
        let (mut tx, _writer) = self.write_tx().await?;
        lock_document(self, &mut tx, tenant_id, user_id).await?;
        write(&mut tx, tenant_id, user_id, prefs).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets one rule (see [`Preferences::set`] for what `channel` and `category` select) and
    /// returns the resulting document, in one transaction so concurrent opt-outs of different
    /// rules both stick.
    pub async fn set_preference(
        &self,
        tenant_id: &TenantId,
        user_id: &UserId,
        channel: Option<Channel>,
        category: Option<&Category>,
        enabled: bool,
    ) -> Result<Preferences> {
        let (mut tx, _writer) = self.write_tx().await?;
        // A replacement running beside this upsert would fail on its key or drop it half-way.
        lock_document(self, &mut tx, tenant_id, user_id).await?;
        let channels: &[Channel] = match &channel {
            Some(c) => std::slice::from_ref(c),
            None => &Channel::ALL,
        };
        let category_key = category.map_or("", Category::as_str);
        let rules: Vec<_> = channels
            .iter()
            .map(|&c| (c, category_key, enabled))
            .collect();
        let on_conflict = "ON CONFLICT (tenant_id, user_id, channel, category) DO UPDATE SET
               enabled = excluded.enabled, updated_at_ms = excluded.updated_at_ms";
        insert_rules(&mut tx, tenant_id, user_id, &rules, on_conflict).await?;
        let prefs = read(&mut tx, tenant_id, user_id).await?;
        tx.commit().await?;
        Ok(prefs)
    }

    /// Returns which of `users` must not receive a template of `category` on `channel`
    /// because of their preferences (record those as suppressed with [`OPTED_OUT`]). One
    /// query per few hundred users (see `bulk`); users without rules cost nothing.
    pub async fn blocked_by_preferences(
        &self,
        tenant_id: &TenantId,
        users: &[UserId],
        channel: Channel,
        category: &str,
    ) -> Result<HashSet<UserId>> {
        let rows = self
            .fetch_by_keys(
                users,
                |ids| {
                    format!(
                        "SELECT user_id, category, enabled FROM preferences
                         WHERE tenant_id = $1 AND channel = $2 AND category IN ('', $3)
                           AND user_id IN ({ids})"
                    )
                },
                |query| {
                    query
                        .bind(tenant_id.as_str())
                        .bind(channel.as_str())
                        .bind(category)
                },
            )
            .await?;
        // Per user: (channel default, category rule).
        let mut rules: HashMap<String, (Option<bool>, Option<bool>)> = HashMap::new();
        for row in rows {
            let user: String = row.try_get("user_id")?;
            let rule_category: String = row.try_get("category")?;
            let enabled = row.try_get::<i64, _>("enabled")? != 0;
            let entry = rules.entry(user).or_default();
            if rule_category.is_empty() {
                entry.0 = Some(enabled);
            } else {
                entry.1 = Some(enabled);
            }
        }
        let mut blocked = HashSet::new();
        for (user, (default, by_category)) in rules {
            if !by_category.or(default).unwrap_or(true) {
                blocked.insert(parse_col(T, UserId::parse(&user))?);
            }
        }
        Ok(blocked)
    }
}

#[cfg(test)]
mod tests;
