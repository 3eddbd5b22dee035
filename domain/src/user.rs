//! Users as Fanout knows them: the addresses each channel needs.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::UserId;
use crate::ids::InvalidId;

/// A syntactically plausible email address (one `@`, a dotted domain, no whitespace). The mail
/// relay has the last word on deliverability.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Parses an address.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let bad = |reason: &str| InvalidId {
            field: "email",
            reason: reason.into(),
        };
        if s.is_empty() || s.len() > 254 {
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

impl<'de> Deserialize<'de> for EmailAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// A recipient's profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The tenant's id for the user.
    pub user_id: UserId,
    /// Where email goes; without one, email to this user is suppressed.
    pub email: Option<EmailAddress>,
    /// Display name, available to templates as `user.name`.
    pub name: Option<String>,
    /// BCP 47 locale (e.g. `en`, `fr-CA`), available to templates as `user.locale`.
    pub locale: Option<String>,
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
}
