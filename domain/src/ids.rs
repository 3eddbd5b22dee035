//! Validated identifiers.
//!
//! Each type can only be built through `parse` (or a derivation from other validated ids), so
//! code that holds one never re-checks it.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};

use crate::Channel;

/// Why an identifier was rejected; the message names the rule that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {reason}")]
pub struct InvalidId {
    /// The name of the field, as the API user knows it.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidId {
    InvalidId {
        field,
        reason: reason.into(),
    }
}

fn check_len(field: &'static str, s: &str, max: usize) -> Result<(), InvalidId> {
    if s.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if s.len() > max {
        return Err(invalid(field, format!("must be at most {max} bytes")));
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, max = $max:expr, pattern = $pattern:expr, rule = $rule:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Returns the identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }

        impl $name {
            /// The longest id `parse` accepts, in bytes.
            pub const MAX_LEN: usize = $max;
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                string_schema($rule, Self::MAX_LEN, $pattern)
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

/// The schema of a string of 1 to `max` bytes matching `pattern`, as the OpenAPI document
/// describes an id (JSON Schema counts characters; for the ASCII ids that is the same).
pub fn string_schema(description: &str, max: usize, pattern: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .description(Some(description))
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(pattern))
        .into()
}

/// The pattern of printable text with no leading or trailing whitespace, as user ids are
/// checked (no control characters, as `char::is_control` counts them).
pub const PRINTABLE_TRIMMED: &str =
    r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?$";

string_id!(
    /// A tenant: lowercase ASCII letters, digits, `-` and `_`, starting with a letter or digit,
    /// at most 63 bytes. It appears in workflow ids, so it is kept URL- and log-safe.
    TenantId,
    max = 63,
    pattern = "^[a-z0-9][a-z0-9_-]*$",
    rule = "A tenant: lowercase ASCII letters, digits, '-' and '_', starting with a letter or digit"
);
string_id!(
    /// A user as the tenant's product names them: any printable text up to 128 bytes.
    UserId,
    max = 128,
    pattern = PRINTABLE_TRIMMED,
    rule = "A user as the tenant's product names them: printable text (no control characters, no leading or trailing whitespace), at most 128 bytes of UTF-8"
);
string_id!(
    /// A template: ASCII letters, digits, `-`, `_` and `.`, at most 128 bytes.
    TemplateId,
    max = 128,
    pattern = SLUG,
    rule = "A template: ASCII letters, digits, '-', '_' and '.'"
);
string_id!(
    /// A segment: a named, stored set of users. ASCII letters, digits, `-`, `_` and `.`, at most
    /// 128 bytes, like a template id.
    SegmentId,
    max = 128,
    pattern = SLUG,
    rule = "A segment: ASCII letters, digits, '-', '_' and '.', like a template id"
);
string_id!(
    /// A notification request. Derived from the tenant and dedupe key (see
    /// [`DedupeKey::request_id`]); it is also the id of the request's Temporal workflow.
    RequestId,
    max = 160,
    pattern = "^ntf-[A-Za-z0-9_-]*$",
    rule = "A notification request, as POST /v1/notify returned it (also its Temporal workflow id)"
);
string_id!(
    /// One delivery: a (request, user, channel) triple, hashed. Deterministic so receipts and
    /// inbox rows upsert when a delivery is retried.
    InstanceId,
    max = 64,
    pattern = "^in_[0-9A-Fa-f]*$",
    rule = "One delivery (request, user, channel), as a receipt names it; also the inbox message id"
);

string_id!(
    /// A digest: the triggers of one (tenant, template, key value) collected while its window
    /// was open. `dgst-` and 32 hex digits; its workflow has this id, and the request it closes
    /// into is [`DigestId::request_id`].
    DigestId,
    max = 37,
    pattern = "^dgst-[0-9a-f]{32}$",
    rule = "A digest, as a digested trigger's status names it"
);

impl DigestId {
    const PREFIX: &'static str = "dgst-";

    /// Parses a digest id.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        const FIELD: &str = "digest_id";
        check_len(FIELD, s, Self::MAX_LEN)?;
        let hex = s.strip_prefix(Self::PREFIX).unwrap_or_default();
        if hex.len() != 32
            || !hex
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        {
            return Err(invalid(FIELD, "is not a digest id issued by this platform"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The id of the request the digest closes into (and so of that request's workflow).
    pub fn request_id(&self) -> RequestId {
        RequestId(format!("{}{}", RequestId::PREFIX, self.0))
    }

    /// The id of the workflow that closes and delivers the digest.
    pub fn workflow_id(&self) -> &str {
        &self.0
    }
}

impl TenantId {
    /// Parses a tenant id.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        const FIELD: &str = "tenant_id";
        check_len(FIELD, s, Self::MAX_LEN)?;
        let mut chars = s.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !first_ok || !rest_ok {
            return Err(invalid(
                FIELD,
                "must be lowercase letters, digits, '-' or '_', starting with a letter or digit",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl UserId {
    /// Parses a user id.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        const FIELD: &str = "user_id";
        check_len(FIELD, s, Self::MAX_LEN)?;
        if s.chars().any(char::is_control) {
            return Err(invalid(FIELD, "must not contain control characters"));
        }
        if s.trim() != s {
            return Err(invalid(FIELD, "must not start or end with whitespace"));
        }
        Ok(Self(s.to_owned()))
    }
}

impl TemplateId {
    /// Parses a template id.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        check_slug("template_id", s, Self::MAX_LEN)?;
        Ok(Self(s.to_owned()))
    }
}

impl SegmentId {
    /// Parses a segment id.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        check_slug("segment_id", s, Self::MAX_LEN)?;
        Ok(Self(s.to_owned()))
    }
}

/// The pattern of template and segment ids (see [`check_slug`]).
pub const SLUG: &str = "^[A-Za-z0-9._-]+$";

/// The rule template and segment ids share: they name things tenants create, appear in URLs and
/// logs, and so stay plain ASCII.
fn check_slug(field: &'static str, s: &str, max: usize) -> Result<(), InvalidId> {
    check_len(field, s, max)?;
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(invalid(
            field,
            "must be ASCII letters, digits, '-', '_' or '.'",
        ));
    }
    Ok(())
}

impl RequestId {
    const PREFIX: &'static str = "ntf-";

    /// Parses a request id as returned by the API.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        const FIELD: &str = "request_id";
        check_len(FIELD, s, Self::MAX_LEN)?;
        let valid = s.starts_with(Self::PREFIX)
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(invalid(
                FIELD,
                "is not a request id issued by this platform",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// Returns the id of the workflow that runs this request.
    pub fn workflow_id(&self) -> &str {
        &self.0
    }

    /// Whether the request may be a digest's ([`DigestId::request_id`]): every digest's
    /// request is, and so are the requests of a tenant named `dgst` (their ids are shorter),
    /// so a `true` still needs the store to confirm it. A `false` is certain, which spares
    /// every other request the lookup.
    pub fn may_be_digest(&self) -> bool {
        self.0
            .strip_prefix(Self::PREFIX)
            .is_some_and(|rest| rest.starts_with(DigestId::PREFIX))
    }
}

impl InstanceId {
    /// Parses an instance id as returned in a receipt.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        const FIELD: &str = "instance_id";
        check_len(FIELD, s, Self::MAX_LEN)?;
        if !s.starts_with("in_") || !s[3..].chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(invalid(
                FIELD,
                "is not an instance id issued by this platform",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// Derives the id of the delivery of `request` to `user` over `channel`.
    pub fn derive(request: &RequestId, user: &UserId, channel: Channel) -> Self {
        let digest = hash_parts(&[request.as_str(), user.as_str(), channel.as_str()]);
        Self(format!("in_{}", &digest[..32]))
    }
}

/// A deduplication key, always scoped by its tenant: there is no way to build one without a
/// [`TenantId`], so two tenants using the same key can never collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DedupeKey {
    tenant_id: TenantId,
    key: String,
}

impl DedupeKey {
    /// The longest key, in bytes.
    pub const MAX_LEN: usize = 256;

    /// Scopes `key` to `tenant_id`. The key is opaque to the platform: up to 256 bytes, no
    /// control characters.
    pub fn new(tenant_id: TenantId, key: &str) -> Result<Self, InvalidId> {
        const FIELD: &str = "dedupe_key";
        check_len(FIELD, key, Self::MAX_LEN)?;
        if key.chars().any(char::is_control) {
            return Err(invalid(FIELD, "must not contain control characters"));
        }
        Ok(Self {
            tenant_id,
            key: key.to_owned(),
        })
    }

    /// Returns the tenant that scopes this key.
    pub fn tenant_id(&self) -> &TenantId {
        &self.tenant_id
    }

    /// Returns the key as the tenant gave it.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Derives the request id (and so the workflow id): the same (tenant, key) always yields
    /// the same id, which is what makes a duplicate trigger land on the same workflow.
    pub fn request_id(&self) -> RequestId {
        self.request_id_for(0)
    }

    /// The request id of the key's `generation`-th use: a key may be used again once its dedupe
    /// window has passed, and each use is its own request. Generation 0 is [`Self::request_id`].
    pub fn request_id_for(&self, generation: u32) -> RequestId {
        let digest = hash_parts(&[self.tenant_id.as_str(), &self.key]);
        let base = format!("{}{}-{}", RequestId::PREFIX, self.tenant_id, &digest[..24]);
        match generation {
            0 => RequestId(base),
            n => RequestId(format!("{base}-g{n}")),
        }
    }
}

/// Hashes parts with a separator that cannot occur inside them (ids reject control characters),
/// so ("a", "bc") and ("ab", "c") never collide.
pub(crate) fn hash_parts(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hasher.update([0x1f]);
        }
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_ids_parse_strictly_and_name_their_request() {
        let id = DigestId::parse("dgst-0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(
            id.request_id().as_str(),
            "ntf-dgst-0123456789abcdef0123456789abcdef"
        );
        assert!(id.request_id().may_be_digest());
        for bad in [
            "dgst-0123",
            "dgst-0123456789ABCDEF0123456789abcdef",
            "ntf-x",
            "",
        ] {
            assert!(DigestId::parse(bad).is_err(), "{bad}");
        }
        let plain = DedupeKey::new(TenantId::parse("acme").unwrap(), "k").unwrap();
        assert!(!plain.request_id().may_be_digest());
        // A tenant named `dgst` shares the prefix, not the id's length.
        let dgst = DedupeKey::new(TenantId::parse("dgst").unwrap(), "k").unwrap();
        assert!(dgst.request_id().may_be_digest());
        assert!(DigestId::parse(&dgst.request_id().as_str()["ntf-".len()..]).is_err());
    }

    fn tenant(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    #[test]
    fn tenant_ids_are_slugs() {
        assert!(TenantId::parse("acme-1").is_ok());
        assert!(TenantId::parse("").is_err());
        assert!(TenantId::parse("Acme").is_err());
        assert!(TenantId::parse("-acme").is_err());
        assert!(TenantId::parse("a/b").is_err());
        assert!(TenantId::parse(&"a".repeat(64)).is_err());
    }

    #[test]
    fn user_ids_reject_control_characters_and_padding() {
        assert!(UserId::parse("user:42@example").is_ok());
        assert!(UserId::parse("a\nb").is_err());
        assert!(UserId::parse(" a").is_err());
        assert_eq!(
            UserId::parse("").unwrap_err().to_string(),
            "user_id must not be empty"
        );
    }

    #[test]
    fn segment_ids_follow_the_template_id_rules() {
        assert!(SegmentId::parse("beta-testers_2.0").is_ok());
        assert!(SegmentId::parse(&"s".repeat(128)).is_ok());
        assert_eq!(
            SegmentId::parse(&"s".repeat(129)).unwrap_err().to_string(),
            "segment_id must be at most 128 bytes"
        );
        for bad in ["", "a b", "a/b", "é"] {
            let err = SegmentId::parse(bad).unwrap_err();
            assert_eq!(err.field, "segment_id", "{bad}");
        }
        assert!(serde_json::from_str::<SegmentId>("\"no way\"").is_err());
    }

    #[test]
    fn same_key_in_two_tenants_yields_two_requests() {
        let a = DedupeKey::new(tenant("a"), "comment-1").unwrap();
        let b = DedupeKey::new(tenant("b"), "comment-1").unwrap();
        assert_ne!(a.request_id(), b.request_id());
        assert_eq!(
            a.request_id(),
            DedupeKey::new(tenant("a"), "comment-1")
                .unwrap()
                .request_id()
        );
    }

    #[test]
    fn hashing_separates_parts() {
        // "ab" + "c" must not equal "a" + "bc": tenants cannot forge each other's keys.
        let x = DedupeKey::new(tenant("ab"), "c").unwrap().request_id();
        let y = DedupeKey::new(tenant("a"), "bc").unwrap().request_id();
        assert_ne!(x, y);
    }

    #[test]
    fn each_generation_of_a_key_is_its_own_request() {
        let key = DedupeKey::new(tenant("acme"), "k").unwrap();
        assert_eq!(key.request_id_for(0), key.request_id());
        assert_ne!(key.request_id_for(1), key.request_id());
        assert_eq!(key.request_id_for(2), key.request_id_for(2));
        assert!(RequestId::parse(key.request_id_for(7).as_str()).is_ok());
    }

    #[test]
    fn request_ids_round_trip_through_parse() {
        let id = DedupeKey::new(tenant("acme"), "k").unwrap().request_id();
        assert_eq!(RequestId::parse(id.as_str()).unwrap(), id);
        assert!(RequestId::parse("wf-1").is_err());
    }

    #[test]
    fn instance_ids_are_deterministic_per_channel() {
        let req = DedupeKey::new(tenant("acme"), "k").unwrap().request_id();
        let user = UserId::parse("u1").unwrap();
        let email = InstanceId::derive(&req, &user, Channel::Email);
        assert_eq!(email, InstanceId::derive(&req, &user, Channel::Email));
        assert_ne!(email, InstanceId::derive(&req, &user, Channel::InApp));
        assert_eq!(InstanceId::parse(email.as_str()).unwrap(), email);
    }

    #[test]
    fn deserialization_validates() {
        assert!(serde_json::from_str::<TenantId>("\"Bad Tenant\"").is_err());
        assert!(serde_json::from_str::<TenantId>("\"good\"").is_ok());
    }
}
