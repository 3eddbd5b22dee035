//! Templates: the content of each channel, written in a Jinja-like syntax (MiniJinja),
//! versioned, with per-locale variants.
//!
//! A template version holds its default-locale content per channel (`email`, `in_app`, `push`)
//! and optional `locales` variants keyed by BCP 47 tag (`fr`, `fr-CA`). A variant overrides
//! whole channels, not single fields: `{"fr": {"email": {..}}}` gives French email while the
//! inbox and push stay in the default locale. For a user's locale the content of each channel
//! comes from the exact tag, then its language (`fr-CA` falls back to `fr`), then the default
//! (see [`Template::resolve`]).
//!
//! Versions are immutable: every write stores a new one and the template's active version is
//! always its newest. A rollback writes a new version copying an older one's content (its
//! `restored_from` names the source), so history only grows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::DigestSpec;
use crate::{Channel, TemplateId, UnixMillis};

/// The category a template gets when none is given.
pub const DEFAULT_CATEGORY: &str = "transactional";

/// The default locale a template gets when none is given.
pub const DEFAULT_LOCALE: &str = "en";

/// Email content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailContent {
    /// The subject line.
    #[schema(max_length = 65536)] // limits::MAX_TEMPLATE_PART_BYTES
    pub subject: String,
    /// The plain-text body.
    #[schema(max_length = 65536)] // limits::MAX_TEMPLATE_PART_BYTES
    pub text: String,
    /// An optional HTML alternative; values are auto-escaped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 65536)] // limits::MAX_TEMPLATE_PART_BYTES
    pub html: Option<String>,
}

/// In-app inbox content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InAppContent {
    /// A short title.
    #[schema(max_length = 65536)] // limits::MAX_TEMPLATE_PART_BYTES
    pub title: String,
    /// The body.
    #[schema(max_length = 65536)] // limits::MAX_TEMPLATE_PART_BYTES
    pub body: String,
    /// Where the client goes when the message is opened; a template too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 65536)] // limits::MAX_TEMPLATE_PART_BYTES
    pub action_url: Option<String>,
    /// Key/values stored with the message for clients that build their own UI (the inbox
    /// message's `data`); each value is a template. The request's `data` itself is not stored.
    /// At most 16 keys; rendered, at most 4096 bytes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(schema_with = crate::limits::inbox_payload_schema)]
    pub payload: BTreeMap<String, String>,
}

/// Push content, shared by APNs and FCM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushContent {
    /// Alert title.
    #[schema(max_length = 65536)] // limits::MAX_TEMPLATE_PART_BYTES
    pub title: String,
    /// Alert body.
    #[schema(max_length = 65536)] // limits::MAX_TEMPLATE_PART_BYTES
    pub body: String,
    /// Custom key/values delivered to the app; each value is a template. At most 32 keys.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(schema_with = crate::limits::push_data_schema)]
    pub data: BTreeMap<String, String>,
}

/// The content of every channel in one locale; a channel left out has no content here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelContent {
    /// Email content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailContent>,
    /// In-app content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_app: Option<InAppContent>,
    /// Push content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<PushContent>,
}

impl ChannelContent {
    /// Whether there is content for `channel`.
    pub fn has(&self, channel: Channel) -> bool {
        match channel {
            Channel::Email => self.email.is_some(),
            Channel::InApp => self.in_app.is_some(),
            Channel::Push => self.push.is_some(),
        }
    }

    /// Whether no channel has content.
    pub fn is_empty(&self) -> bool {
        !Channel::ALL.into_iter().any(|c| self.has(c))
    }
}

/// What a write supplies: everything of a version but its identity, number and time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateSpec {
    /// A human name.
    pub name: String,
    /// What kind of notification this is; user preferences opt in and out by category.
    pub category: String,
    /// The locale of the top-level content.
    pub default_locale: String,
    /// The default-locale content; its channels are the channels the template supports.
    pub content: ChannelContent,
    /// Variants by locale tag, each overriding some channels.
    pub locales: BTreeMap<String, ChannelContent>,
    /// The largest audience a notify may reach without confirming it (the blast-radius guard);
    /// `None` leaves it to the tenant's limit or the platform default.
    #[serde(default)]
    pub max_audience: Option<u64>,
    /// Collect triggers into digests instead of delivering each (see [`crate::digest`]).
    #[serde(default)]
    pub digest: Option<DigestSpec>,
}

impl TemplateSpec {
    /// A spec with the default category and locale and no variants.
    pub fn new(name: impl Into<String>, content: ChannelContent) -> Self {
        Self {
            name: name.into(),
            category: DEFAULT_CATEGORY.to_owned(),
            default_locale: DEFAULT_LOCALE.to_owned(),
            content,
            locales: BTreeMap::new(),
            max_audience: None,
            digest: None,
        }
    }
}

/// One immutable version of a template, as stored and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Template {
    /// The template's id within its tenant.
    pub template_id: TemplateId,
    /// This version's number: 1, 2, ... per template. Caches key on it.
    pub version: i64,
    /// A human name.
    pub name: String,
    /// What kind of notification this is (see [`TemplateSpec::category`]).
    pub category: String,
    /// The locale of the top-level content.
    pub default_locale: String,
    /// The default-locale content.
    #[serde(flatten)]
    #[schema(value_type = TemplateContent)]
    pub content: ChannelContent,
    /// Variants by locale tag.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub locales: BTreeMap<String, ChannelContent>,
    /// Set on versions written by a rollback: the version copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<i64>,
    /// The blast-radius limit for notifies of this template; overrides the tenant's and the
    /// platform default (see [`TemplateSpec::max_audience`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_audience: Option<u64>,
    /// Whether (and how) triggers of this version are collected into digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<DigestSpec>,
    /// When this version was written.
    #[schema(value_type = i64)]
    pub updated_at_ms: UnixMillis,
}

/// [`ChannelContent`] as a [`Template`] carries it, flattened beside the template's other
/// fields: the same properties, without `additionalProperties: false` (which would refuse those
/// other fields). Only the OpenAPI document uses it; a test keeps its properties those of
/// [`ChannelContent`].
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct TemplateContent {
    /// Email content.
    email: Option<EmailContent>,
    /// In-app content.
    in_app: Option<InAppContent>,
    /// Push content.
    push: Option<PushContent>,
}

impl Template {
    /// Whether the template has content for `channel` (in its default locale, which every
    /// variant falls back to).
    pub fn supports(&self, channel: Channel) -> bool {
        self.content.has(channel)
    }

    /// The channels the template has content for.
    pub fn channels(&self) -> Vec<Channel> {
        Channel::ALL
            .into_iter()
            .filter(|c| self.supports(*c))
            .collect()
    }

    /// The variant whose `channel` content a user with `locale` gets: `Some(tag)` for a
    /// variant, `None` for the default content.
    pub fn resolve(&self, channel: Channel, locale: Option<&str>) -> Option<&str> {
        resolve_locale(&self.locales, channel, locale)
    }

    /// Everything a write of this version would supply.
    pub fn spec(&self) -> TemplateSpec {
        TemplateSpec {
            name: self.name.clone(),
            category: self.category.clone(),
            default_locale: self.default_locale.clone(),
            content: self.content.clone(),
            locales: self.locales.clone(),
            max_audience: self.max_audience,
            digest: self.digest.clone(),
        }
    }
}

/// Picks the variant of `locales` serving `channel` to a user with `locale`: the exact tag,
/// then its language part, then `None` (the default content). Tags compare
/// case-insensitively and `_` counts as `-`, since clients send `fr_CA` as often as `fr-CA`.
pub fn resolve_locale<'a>(
    locales: &'a BTreeMap<String, ChannelContent>,
    channel: Channel,
    locale: Option<&str>,
) -> Option<&'a str> {
    let wanted = normalize_locale(locale?);
    let find = |tag: &str| {
        locales
            .iter()
            .find(|(key, content)| normalize_locale(key) == tag && content.has(channel))
            .map(|(key, _)| key.as_str())
    };
    find(&wanted).or_else(|| {
        let language = wanted.split('-').next().unwrap_or_default();
        (language != wanted).then(|| find(language)).flatten()
    })
}

/// Lowercases a locale tag and spells its separators `-`.
pub fn normalize_locale(tag: &str) -> String {
    tag.trim().replace('_', "-").to_ascii_lowercase()
}

/// Whether `tag` is shaped like a BCP 47 tag: a 2-3 letter language, then alphanumeric
/// subtags of 1-8 characters (`en`, `fr-CA`, `zh-Hant-TW`).
pub fn is_locale_tag(tag: &str) -> bool {
    let mut parts = tag.split(['-', '_']);
    let language = parts.next().unwrap_or_default();
    (2..=3).contains(&language.len())
        && language.chars().all(|c| c.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_app(title: &str) -> ChannelContent {
        ChannelContent {
            in_app: Some(InAppContent {
                title: title.into(),
                body: "b".into(),
                action_url: None,
                payload: BTreeMap::new(),
            }),
            ..ChannelContent::default()
        }
    }

    fn template(locales: &[(&str, ChannelContent)]) -> Template {
        let mut content = in_app("en");
        content.email = Some(EmailContent {
            subject: "s".into(),
            text: "t".into(),
            html: None,
        });
        Template {
            template_id: TemplateId::parse("t").unwrap(),
            version: 1,
            name: "T".into(),
            category: DEFAULT_CATEGORY.into(),
            default_locale: "en".into(),
            content,
            locales: locales
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            restored_from: None,
            max_audience: None,
            digest: None,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn locales_resolve_exact_then_language_then_default() {
        let t = template(&[("fr", in_app("fr")), ("fr-CA", in_app("fr-CA"))]);
        assert_eq!(t.resolve(Channel::InApp, Some("fr-CA")), Some("fr-CA"));
        assert_eq!(t.resolve(Channel::InApp, Some("fr_ca")), Some("fr-CA"));
        assert_eq!(t.resolve(Channel::InApp, Some("fr-BE")), Some("fr"));
        assert_eq!(t.resolve(Channel::InApp, Some("fr")), Some("fr"));
        assert_eq!(t.resolve(Channel::InApp, Some("de-DE")), None);
        assert_eq!(t.resolve(Channel::InApp, None), None);
        // The variants have no email, so email comes from the default content.
        assert_eq!(t.resolve(Channel::Email, Some("fr-CA")), None);
    }

    #[test]
    fn a_region_variant_without_the_channel_falls_back_to_the_language() {
        let ca = ChannelContent {
            email: Some(EmailContent {
                subject: "ca".into(),
                text: "ca".into(),
                html: None,
            }),
            ..ChannelContent::default()
        };
        let t = template(&[("fr", in_app("fr")), ("fr-CA", ca)]);
        assert_eq!(t.resolve(Channel::InApp, Some("fr-CA")), Some("fr"));
        assert_eq!(t.resolve(Channel::Email, Some("fr-CA")), Some("fr-CA"));
    }

    #[test]
    fn channels_come_from_the_default_content() {
        let t = template(&[]);
        assert_eq!(t.channels(), vec![Channel::Email, Channel::InApp]);
        assert!(!t.supports(Channel::Push));
    }

    #[test]
    fn locale_tags_are_checked_for_shape() {
        for ok in ["en", "fr-CA", "zh-Hant-TW", "pt_BR", "ast"] {
            assert!(is_locale_tag(ok), "{ok}");
        }
        for bad in ["", "e", "english", "fr-", "fr-CA!", "12"] {
            assert!(!is_locale_tag(bad), "{bad}");
        }
    }

    #[test]
    fn templates_serialize_flat_with_locales_beside_the_default_content() {
        let t = template(&[("fr", in_app("fr"))]);
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["in_app"]["title"], "en");
        assert_eq!(json["locales"]["fr"]["in_app"]["title"], "fr");
        assert_eq!(json["category"], "transactional");
        let back: Template = serde_json::from_value(json).unwrap();
        assert_eq!(back, t);
    }
}
