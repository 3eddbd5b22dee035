//! Fault injection for the webhook receiver: rules that answer a receiver's calls with an error
//! status or a redirect, or only late (a timeout, for a client with a shorter limit).
//!
//! A rule matches a receiver by name, or every receiver when it is `*`; rules apply in order as
//! [`crate::fault`] describes.

use serde::{Deserialize, Serialize};

use crate::fault::{InvalidRule, Limits, Rule, RuleList, Rules, token_matches};

/// Body of `POST /api/webhooks/faults`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewWebhookFault {
    /// The receiver the rule matches; `*` matches every receiver.
    pub receiver: String,
    /// The status to answer with: 300 to 399 (with `location`) or 400 to 599. Absent, the call
    /// is taken (204) after `delay_ms`.
    #[serde(default)]
    pub status: Option<u16>,
    /// Where a redirect points.
    #[serde(default)]
    pub location: Option<String>,
    /// Delay before the answer, in milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
    /// How many answers the rule gives before it is removed; forever when absent.
    #[serde(default)]
    pub times: Option<u32>,
    /// Makes the rule a rate limit: calls above this many per second get its answer.
    #[serde(default)]
    pub max_per_second: Option<u32>,
}

/// An active rule, as `GET /api/webhooks/faults` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookFault {
    /// Identifier for `DELETE /api/webhooks/faults/{id}`.
    pub id: u64,
    /// The receiver it matches; `*` for all.
    pub receiver: String,
    /// The status answered; `null` for a delay-only rule.
    pub status: Option<u16>,
    /// Where a redirect points.
    pub location: Option<String>,
    /// Delay before the answer, in milliseconds.
    pub delay_ms: u64,
    /// Answers left before the rule is removed; `null` means forever.
    pub remaining: Option<u32>,
    /// The rate above which the rule answers, for a rate rule.
    pub max_per_second: Option<u32>,
}

/// Body of `GET /api/webhooks/faults`.
pub type WebhookFaultList = RuleList<WebhookFault>;

/// Why a rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InvalidFault {
    #[error("receiver must not be empty")]
    EmptyReceiver,
    #[error("status must be between 300 and 599")]
    Status,
    #[error("a redirect (3xx) needs a location, and only a redirect takes one")]
    Location,
    #[error("a rule needs a status, a delay_ms or a max_per_second")]
    Inert,
    #[error(transparent)]
    Limit(#[from] InvalidRule),
}

/// The receiver's active rules.
pub(crate) type Faults = Rules<WebhookFault>;

impl Rule for WebhookFault {
    type New = NewWebhookFault;
    type Invalid = InvalidFault;

    fn build(new: NewWebhookFault, id: u64) -> Result<Self, InvalidFault> {
        let receiver = new.receiver.trim();
        if receiver.is_empty() {
            return Err(InvalidFault::EmptyReceiver);
        }
        if new.status.is_some_and(|s| !(300..=599).contains(&s)) {
            return Err(InvalidFault::Status);
        }
        let redirect = new.status.is_some_and(|s| s < 400);
        if redirect != new.location.is_some() {
            return Err(InvalidFault::Location);
        }
        if new.status.is_none() && new.delay_ms == 0 && new.max_per_second.is_none() {
            return Err(InvalidFault::Inert);
        }
        Ok(Self {
            id,
            receiver: receiver.to_owned(),
            status: new.status,
            location: new.location,
            delay_ms: new.delay_ms,
            remaining: new.times,
            max_per_second: new.max_per_second,
        })
    }

    fn limits(&mut self) -> Limits<'_> {
        Limits {
            remaining: &mut self.remaining,
            max_per_second: self.max_per_second,
            delay_ms: self.delay_ms,
        }
    }
}

impl WebhookFault {
    /// Whether the rule answers calls to receiver `name`.
    pub(crate) fn matches(&self, name: &str) -> bool {
        token_matches(&self.receiver, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(status: Option<u16>, location: Option<&str>, delay_ms: u64) -> NewWebhookFault {
        NewWebhookFault {
            receiver: "r".into(),
            status,
            location: location.map(str::to_owned),
            delay_ms,
            times: None,
            max_per_second: None,
        }
    }

    #[test]
    fn rules_are_checked_for_what_they_answer() {
        assert!(WebhookFault::build(new(Some(500), None, 0), 1).is_ok());
        assert!(WebhookFault::build(new(Some(302), Some("http://x/"), 0), 1).is_ok());
        assert!(WebhookFault::build(new(None, None, 5_000), 1).is_ok());
        assert_eq!(
            WebhookFault::build(new(Some(200), None, 0), 1),
            Err(InvalidFault::Status)
        );
        assert_eq!(
            WebhookFault::build(new(Some(302), None, 0), 1),
            Err(InvalidFault::Location)
        );
        assert_eq!(
            WebhookFault::build(new(Some(500), Some("http://x/"), 0), 1),
            Err(InvalidFault::Location)
        );
        assert_eq!(
            WebhookFault::build(new(None, None, 0), 1),
            Err(InvalidFault::Inert)
        );
        let rule = WebhookFault::build(new(Some(500), None, 0), 1).unwrap();
        assert!(rule.matches("r") && !rule.matches("s"));
    }
}
