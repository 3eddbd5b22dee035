//! Fault injection: rules that make the APNs simulator answer chosen device tokens with an
//! error, a delay, or a rate limit.
//!
//! A rule matches one device token exactly, or every token with `*`. Rules are consulted only
//! for requests that are otherwise valid, in order as [`crate::fault`] describes. A rate rule
//! (`max_per_second`) answers 429 `TooManyRequests` unless told otherwise. A rule without
//! `times` stays, which is how a token answered 410 `Unregistered` stays unregistered.

use serde::{Deserialize, Serialize};

use crate::arrivals::now_ms;
use crate::fault::{InvalidRule, Limits, Rule, RuleList, Rules, token_matches};

/// Longest `reason` a rule may carry.
const MAX_REASON_LEN: usize = 64;

/// Body of `POST /api/apns/faults`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewFault {
    /// Device token the rule matches exactly, or `*` for every token.
    pub token: String,
    /// HTTP status to answer: 200 (accept normally after `delay_ms`: latency only) or 400 to
    /// 599. Defaults to 429 for a rate rule; required otherwise.
    pub status: Option<u16>,
    /// The `reason` of the error body, e.g. `Unregistered`; defaults to the usual reason for
    /// the status (400 `BadDeviceToken`, 403 `Forbidden`, 410 `Unregistered`, 413
    /// `PayloadTooLarge`, 429 `TooManyRequests`, 503 `ServiceUnavailable`, other 5xx
    /// `InternalServerError`).
    pub reason: Option<String>,
    /// Seconds for a `Retry-After` header on the answer.
    pub retry_after_s: Option<u64>,
    /// Delay before the answer, in milliseconds.
    pub delay_ms: u64,
    /// How many answers the rule gives before it is removed; forever when absent.
    pub times: Option<u32>,
    /// Makes this a rate rule: it answers only requests beyond this many per second.
    pub max_per_second: Option<u32>,
}

/// An active rule, as `GET /api/apns/faults` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// Identifier for `DELETE /api/apns/faults/{id}`.
    pub id: u64,
    /// Device token matched, or `*`.
    pub token: String,
    /// HTTP status answered.
    pub status: u16,
    /// The `reason` of the error body; `null` for status 200.
    pub reason: Option<String>,
    /// Seconds sent in `Retry-After`, if any.
    pub retry_after_s: Option<u64>,
    /// Delay before the answer, in milliseconds.
    pub delay_ms: u64,
    /// Answers left before the rule is removed; `null` means forever.
    pub remaining: Option<u32>,
    /// For a rate rule, the requests per second let through.
    pub max_per_second: Option<u32>,
    /// When the rule was added, in milliseconds since the Unix epoch; a 410 answer gives it as
    /// the `timestamp` the token stopped being valid.
    pub created_at_ms: u64,
}

/// Body of `GET /api/apns/faults`.
pub type FaultList = RuleList<Fault>;

/// Why a rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InvalidFault {
    #[error("token must not be empty")]
    EmptyToken,
    #[error("status is required unless max_per_second is given")]
    MissingStatus,
    #[error("status must be 200 (accept after delay_ms) or between 400 and 599")]
    Status,
    #[error("reason must be 1 to {MAX_REASON_LEN} ASCII letters or digits")]
    Reason,
    #[error(transparent)]
    Limit(#[from] InvalidRule),
}

/// The simulator's active rules.
pub(crate) type Faults = Rules<Fault>;

impl Rule for Fault {
    type New = NewFault;
    type Invalid = InvalidFault;

    fn build(new: NewFault, id: u64) -> Result<Self, InvalidFault> {
        let token = new.token.trim();
        if token.is_empty() {
            return Err(InvalidFault::EmptyToken);
        }
        let status = match (new.status, new.max_per_second) {
            (Some(status), _) => status,
            (None, Some(_)) => 429,
            (None, None) => return Err(InvalidFault::MissingStatus),
        };
        if status != 200 && !(400..=599).contains(&status) {
            return Err(InvalidFault::Status);
        }
        let reason = match (status, new.reason) {
            (200, _) => None,
            (_, Some(reason)) => {
                let valid = !reason.is_empty()
                    && reason.len() <= MAX_REASON_LEN
                    && reason.chars().all(|c| c.is_ascii_alphanumeric());
                if !valid {
                    return Err(InvalidFault::Reason);
                }
                Some(reason)
            }
            (status, None) => Some(default_reason(status).to_owned()),
        };
        Ok(Self {
            id,
            token: token.to_owned(),
            status,
            reason,
            retry_after_s: new.retry_after_s,
            delay_ms: new.delay_ms,
            remaining: new.times,
            max_per_second: new.max_per_second,
            created_at_ms: now_ms(),
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

impl Fault {
    /// Whether the rule answers requests for device `token`.
    pub(crate) fn matches(&self, token: &str) -> bool {
        token_matches(&self.token, token)
    }
}

/// The reason APNs usually gives with `status`.
fn default_reason(status: u16) -> &'static str {
    match status {
        400 => "BadDeviceToken",
        403 => "Forbidden",
        404 => "BadPath",
        405 => "MethodNotAllowed",
        410 => "Unregistered",
        413 => "PayloadTooLarge",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        _ => "InternalServerError",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::fault::ANY_TOKEN;

    fn rule(token: &str, status: u16, times: Option<u32>) -> NewFault {
        NewFault {
            token: token.to_owned(),
            status: Some(status),
            times,
            ..NewFault::default()
        }
    }

    fn take(faults: &Faults, token: &str) -> Option<Fault> {
        faults.take(|fault| fault.matches(token))
    }

    #[test]
    fn rules_match_their_token_or_every_token() {
        let faults = Faults::default();
        faults.add(rule("aa", 500, Some(1))).unwrap();
        faults.add(rule(ANY_TOKEN, 503, None)).unwrap();
        assert_eq!(take(&faults, "aa").unwrap().status, 500);
        assert_eq!(take(&faults, "aa").unwrap().status, 503);
        assert_eq!(take(&faults, "bb").unwrap().status, 503);
    }

    #[test]
    fn unregistered_answers_keep_the_time_the_rule_was_added() {
        let faults = Faults::default();
        let before = now_ms();
        let fault = faults.add(rule("dead", 410, None)).unwrap();
        assert!(fault.created_at_ms >= before);
        for _ in 0..3 {
            let answer = take(&faults, "dead").unwrap();
            assert_eq!(answer.reason.as_deref(), Some("Unregistered"));
            assert_eq!(answer.created_at_ms, fault.created_at_ms);
        }
        assert!(take(&faults, "alive").is_none());
    }

    #[test]
    fn rate_rule_answers_too_many_requests_beyond_its_limit() {
        let faults = Faults::default();
        let fault = faults
            .add(NewFault {
                token: ANY_TOKEN.to_owned(),
                max_per_second: Some(2),
                retry_after_s: Some(3),
                ..NewFault::default()
            })
            .unwrap();
        assert_eq!(fault.status, 429);
        assert_eq!(fault.reason.as_deref(), Some("TooManyRequests"));
        let now = Instant::now();
        let take_at = |token| faults.take_at(now, |fault| fault.matches(token));
        assert!(take_at("a").is_none());
        assert!(take_at("b").is_none());
        let limited = take_at("c").unwrap();
        assert_eq!((limited.status, limited.retry_after_s), (429, Some(3)));
    }

    #[test]
    fn latency_rule_has_no_reason() {
        let faults = Faults::default();
        let fault = faults.add(rule("aa", 200, None)).unwrap();
        assert_eq!((fault.status, fault.reason), (200, None));
    }

    #[test]
    fn refuses_invalid_rules() {
        let faults = Faults::default();
        let base = rule("aa", 500, None);
        let invalid = [
            (
                NewFault {
                    token: " ".to_owned(),
                    ..base.clone()
                },
                InvalidFault::EmptyToken,
            ),
            (
                NewFault {
                    status: None,
                    ..base.clone()
                },
                InvalidFault::MissingStatus,
            ),
            (
                NewFault {
                    status: Some(302),
                    ..base.clone()
                },
                InvalidFault::Status,
            ),
            (
                NewFault {
                    reason: Some("Bad Reason".to_owned()),
                    ..base.clone()
                },
                InvalidFault::Reason,
            ),
            (
                NewFault {
                    max_per_second: Some(0),
                    ..base
                },
                InvalidFault::Limit(InvalidRule::Rate),
            ),
        ];
        for (new, expected) in invalid {
            assert_eq!(faults.add(new), Err(expected));
        }
        assert!(faults.list().is_empty());
    }
}
