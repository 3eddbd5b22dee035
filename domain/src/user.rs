//! Users as Fanout knows them: the addresses each channel needs.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

use crate::UserId;
use crate::ids::{InvalidId, string_schema};

/// A syntactically plausible email address (one `@`, a dotted domain, no whitespace). The mail
/// relay has the last word on deliverability.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// The longest address, in bytes.
    pub const MAX_LEN: usize = 254;

    /// Parses an address.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let bad = |reason: &str| InvalidId {
            field: "email",
            reason: reason.into(),
        };
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(bad("must be between 1 and 254 bytes"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("must not contain whitespace"));
        }
        let Some((local, domain)) = s.rsplit_once('@') else {
            return Err(bad("must contain '@'"));
        };
        if local.is_empty() || local.contains('@') {
            return Err(bad("must have exactly one '@' with a local part before it"));
        }
        let labels_ok = domain
            .split('.')
            .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'));
        if !domain.contains('.') || !labels_ok {
            return Err(bad("must have a domain like example.com after '@'"));
        }
        Ok(Self(s.to_owned()))
    }

    /// Returns the address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What [`EmailAddress::parse`] checks, as a pattern: a local part, one `@`, and two or more
/// dot-separated labels that neither start nor end with `-`; no whitespace or control characters.
const EMAIL_PATTERN: &str = concat!(
    r"^[^@\s\x00-\x1f\x7f-\x9f]+@",
    r"[^@\s\x00-\x1f\x7f-\x9f.-]([^@\s\x00-\x1f\x7f-\x9f.]*[^@\s\x00-\x1f\x7f-\x9f.-])?",
    r"(\.[^@\s\x00-\x1f\x7f-\x9f.-]([^@\s\x00-\x1f\x7f-\x9f.]*[^@\s\x00-\x1f\x7f-\x9f.-])?)+$"
);

impl utoipa::PartialSchema for EmailAddress {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "An email address: one '@', a dotted domain, no whitespace. Not `format: email`: \
                 international (UTF-8) addresses are accepted, which RFC 5322 validators refuse",
            ))
            .min_length(Some(1))
            .max_length(Some(Self::MAX_LEN))
            .pattern(Some(EMAIL_PATTERN))
            .into()
    }
}

impl utoipa::ToSchema for EmailAddress {}

impl<'de> Deserialize<'de> for EmailAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// An IANA time zone name such as `Europe/Paris` or `Etc/GMT+5`. Checked loosely (shape, not
/// membership of the tz database), so a name newer than this build's knowledge still passes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Timezone(String);

impl Timezone {
    /// The longest name, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Parses a time zone name: 1 to 64 bytes of ASCII letters, digits, `/`, `_`, `+` and `-`.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let bad = |reason: &str| InvalidId {
            field: "timezone",
            reason: reason.into(),
        };
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(bad("must be between 1 and 64 bytes"));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '+' | '-'))
        {
            return Err(bad(
                "must be an IANA time zone name like Europe/Paris (ASCII letters, digits, '/', '_', '+', '-')",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// Returns the name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl utoipa::PartialSchema for Timezone {
    fn schema() -> RefOr<Schema> {
        string_schema(
            "An IANA time zone name, e.g. Europe/Paris",
            Self::MAX_LEN,
            "^[A-Za-z0-9/_+-]+$",
        )
    }
}

impl utoipa::ToSchema for Timezone {}

impl<'de> Deserialize<'de> for Timezone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// The push service a device token belongs to.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    /// Apple Push Notification service.
    Apns,
    /// Firebase Cloud Messaging.
    Fcm,
}

/// A push token as the device's push service issued it: opaque, 1 to 4096 bytes, no
/// whitespace or control characters (those only appear when a token was pasted wrongly).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct DeviceToken(String);

impl DeviceToken {
    /// The longest token, in bytes.
    pub const MAX_LEN: usize = 4096;

    /// Parses a token.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let bad = |reason: &str| InvalidId {
            field: "token",
            reason: reason.into(),
        };
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(bad("must be between 1 and 4096 bytes"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("must not contain whitespace"));
        }
        Ok(Self(s.to_owned()))
    }

    /// Returns the token.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl utoipa::PartialSchema for DeviceToken {
    fn schema() -> RefOr<Schema> {
        string_schema(
            "A push token as the device's push service issued it: opaque, no whitespace",
            Self::MAX_LEN,
            r"^[^\s\x00-\x1f\x7f-\x9f]+$",
        )
    }
}

impl utoipa::ToSchema for DeviceToken {}

impl<'de> Deserialize<'de> for DeviceToken {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// A device registered for push notifications.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Device {
    /// Which push service delivers to it.
    pub platform: Platform,
    /// The token that service issued.
    pub token: DeviceToken,
}

/// A recipient's profile.
///
/// Fields added after the first release carry `#[serde(default)]`, so profiles serialised
/// before them still parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    /// The tenant's id for the user.
    pub user_id: UserId,
    /// Where email goes; without one, email to this user is suppressed.
    pub email: Option<EmailAddress>,
    /// Display name, available to templates as `user.name`.
    pub name: Option<String>,
    /// BCP 47 locale (e.g. `en`, `fr-CA`), available to templates as `user.locale`.
    pub locale: Option<String>,
    /// Where the user lives in time, for scheduling around their day.
    #[serde(default)]
    pub timezone: Option<Timezone>,
    /// A daily window of the user's local time in which non-urgent notifications wait for its
    /// end; without one, the tenant's default applies.
    #[serde(default)]
    pub quiet_hours: Option<crate::quiet::QuietHours>,
    /// Devices that receive push notifications; empty when the user has none.
    #[serde(default)]
    pub devices: Vec<Device>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_addresses() {
        assert!(EmailAddress::parse("ada@example.com").is_ok());
        assert!(EmailAddress::parse("ada+x@mail.example.co.uk").is_ok());
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@localhost",
            "a b@x.io",
            "a@@x.io",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn time_zones_are_checked_for_shape_only() {
        for good in ["UTC", "Europe/Paris", "America/Port-au-Prince", "Etc/GMT+5"] {
            assert!(Timezone::parse(good).is_ok(), "{good} refused");
        }
        for bad in [
            "",
            "Europe/Paris ",
            "Europe\\Paris",
            "Zürich",
            &"A".repeat(65),
        ] {
            let err = Timezone::parse(bad).unwrap_err();
            assert_eq!(err.field, "timezone", "{bad}");
        }
    }

    #[test]
    fn device_tokens_are_opaque_but_never_blank() {
        assert!(DeviceToken::parse("a1B2:c3-d4_e5").is_ok());
        assert!(DeviceToken::parse(&"f".repeat(4096)).is_ok());
        for bad in ["", "ab cd", "ab\ncd", &"f".repeat(4097)] {
            let err = DeviceToken::parse(bad).unwrap_err();
            assert_eq!(err.field, "token", "{bad:?}");
        }
    }

    #[test]
    fn profiles_written_before_devices_existed_still_parse() {
        let old = serde_json::json!({
            "user_id": "u1", "email": null, "name": "Ada", "locale": "en"
        });
        let user: User = serde_json::from_value(old).unwrap();
        assert_eq!((user.timezone, user.devices), (None, Vec::new()));

        let new = serde_json::json!({
            "user_id": "u1", "email": null, "name": null, "locale": null,
            "timezone": "Europe/Paris",
            "devices": [{"platform": "apns", "token": "abc"}, {"platform": "fcm", "token": "x:y"}],
            "quiet_hours": {"start": "22:00:00", "end": "07:30:00"}
        });
        let user: User = serde_json::from_value(new.clone()).unwrap();
        assert_eq!(user.devices[1].platform, Platform::Fcm);
        assert_eq!(serde_json::to_value(&user).unwrap(), new);

        let bad = serde_json::json!({
            "user_id": "u1", "email": null, "name": null, "locale": null,
            "devices": [{"platform": "sms", "token": "abc"}]
        });
        assert!(serde_json::from_value::<User>(bad).is_err());
    }
}
