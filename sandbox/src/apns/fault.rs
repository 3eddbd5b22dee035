//! Fault injection: rules that make the APNs simulator answer chosen device tokens with an
//! error, a delay, or a rate limit.
//!
//! A rule matches one device token exactly, or every token with `*`. Rules are consulted in
//! the order they were added, only for requests that are otherwise valid, and the first that
//! fires answers. A rule with `max_per_second` fires only for the requests beyond that many in
//! the current one-second window (a 429 `TooManyRequests` unless told otherwise); the
//! requests within the limit go on to the next rule. A rule limited to `times` answers is
//! removed once used up; without `times` it stays, which is how a token answered 410
//! `Unregistered` stays unregistered.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Longest delay a rule may add before its answer.
const MAX_DELAY_MS: u64 = 10 * 60 * 1000;

/// Longest `reason` a rule may carry.
const MAX_REASON_LEN: usize = 64;

/// The token pattern that matches every device token.
pub const ANY_TOKEN: &str = "*";

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultList {
    /// Active rules, in the order they apply.
    pub faults: Vec<Fault>,
}

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
    #[error("times must be at least 1 when given")]
    Times,
    #[error("max_per_second must be at least 1 when given")]
    Rate,
    #[error("delay_ms must be at most {MAX_DELAY_MS}")]
    Delay,
}

/// The answer a firing rule prescribes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FaultAnswer {
    pub status: u16,
    pub reason: Option<String>,
    pub retry_after_s: Option<u64>,
    pub delay: Duration,
    pub created_at_ms: u64,
}

/// The shared set of active rules.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    rules: Vec<Rule>,
    last_id: u64,
}

#[derive(Debug)]
struct Rule {
    fault: Fault,
    /// Start of the current rate window and the requests counted in it.
    window: Option<(Instant, u32)>,
}

impl Rule {
    fn matches(&self, token: &str) -> bool {
        self.fault.token == ANY_TOKEN || self.fault.token == token
    }

    /// Counts one request and tells whether the rule answers it.
    fn fires(&mut self, now: Instant) -> bool {
        let Some(limit) = self.fault.max_per_second else {
            return true;
        };
        let (start, count) = self.window.get_or_insert((now, 0));
        if now.duration_since(*start) >= Duration::from_secs(1) {
            *start = now;
            *count = 0;
        }
        *count += 1;
        *count > limit
    }
}

impl Faults {
    /// Validates and adds a rule after the existing ones.
    pub fn add(&self, new: NewFault, now_ms: u64) -> Result<Fault, InvalidFault> {
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
        if new.times == Some(0) {
            return Err(InvalidFault::Times);
        }
        if new.max_per_second == Some(0) {
            return Err(InvalidFault::Rate);
        }
        if new.delay_ms > MAX_DELAY_MS {
            return Err(InvalidFault::Delay);
        }
        let mut inner = self.lock();
        inner.last_id += 1;
        let fault = Fault {
            id: inner.last_id,
            token: token.to_owned(),
            status,
            reason,
            retry_after_s: new.retry_after_s,
            delay_ms: new.delay_ms,
            remaining: new.times,
            max_per_second: new.max_per_second,
            created_at_ms: now_ms,
        };
        inner.rules.push(Rule {
            fault: fault.clone(),
            window: None,
        });
        Ok(fault)
    }

    /// Returns the active rules in the order they apply.
    pub fn list(&self) -> Vec<Fault> {
        self.lock()
            .rules
            .iter()
            .map(|rule| rule.fault.clone())
            .collect()
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.lock().rules.clear();
    }

    /// Removes the rule with `id`, telling whether it existed.
    pub fn remove(&self, id: u64) -> bool {
        let mut inner = self.lock();
        let before = inner.rules.len();
        inner.rules.retain(|rule| rule.fault.id != id);
        inner.rules.len() != before
    }

    /// Counts a request for `token` against the rules and uses up one answer of the first that
    /// fires, if any.
    pub fn take(&self, token: &str, now: Instant) -> Option<FaultAnswer> {
        let mut inner = self.lock();
        let index = inner
            .rules
            .iter_mut()
            .position(|rule| rule.matches(token) && rule.fires(now))?;
        let fault = &mut inner.rules[index].fault;
        let answer = FaultAnswer {
            status: fault.status,
            reason: fault.reason.clone(),
            retry_after_s: fault.retry_after_s,
            delay: Duration::from_millis(fault.delay_ms),
            created_at_ms: fault.created_at_ms,
        };
        if let Some(remaining) = &mut fault.remaining {
            *remaining -= 1;
            if *remaining == 0 {
                inner.rules.remove(index);
            }
        }
        Some(answer)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
    use super::*;

    fn rule(token: &str, status: u16, times: Option<u32>) -> NewFault {
        NewFault {
            token: token.to_owned(),
            status: Some(status),
            times,
            ..NewFault::default()
        }
    }

    #[test]
    fn rules_apply_in_order_and_limited_ones_are_used_up() {
        let faults = Faults::default();
        let now = Instant::now();
        faults.add(rule("aa", 500, Some(2)), 1).unwrap();
        faults.add(rule(ANY_TOKEN, 503, Some(1)), 1).unwrap();
        assert_eq!(faults.take("aa", now).unwrap().status, 500);
        assert_eq!(faults.list()[0].remaining, Some(1));
        assert_eq!(faults.take("aa", now).unwrap().status, 500);
        assert_eq!(faults.take("aa", now).unwrap().status, 503);
        assert!(faults.take("aa", now).is_none());
        assert!(faults.list().is_empty());
    }

    #[test]
    fn unlimited_rule_keeps_answering_with_its_timestamp() {
        let faults = Faults::default();
        let now = Instant::now();
        faults.add(rule("dead", 410, None), 1234).unwrap();
        for _ in 0..3 {
            let answer = faults.take("dead", now).unwrap();
            assert_eq!(answer.reason.as_deref(), Some("Unregistered"));
            assert_eq!(answer.created_at_ms, 1234);
        }
        assert!(faults.take("alive", now).is_none());
    }

    #[test]
    fn rate_rule_answers_only_beyond_its_limit_per_second() {
        let faults = Faults::default();
        let start = Instant::now();
        let fault = faults
            .add(
                NewFault {
                    token: ANY_TOKEN.to_owned(),
                    max_per_second: Some(2),
                    retry_after_s: Some(3),
                    ..NewFault::default()
                },
                1,
            )
            .unwrap();
        assert_eq!(fault.status, 429);
        assert_eq!(fault.reason.as_deref(), Some("TooManyRequests"));
        assert!(faults.take("a", start).is_none());
        assert!(faults.take("b", start).is_none());
        let limited = faults.take("c", start).unwrap();
        assert_eq!((limited.status, limited.retry_after_s), (429, Some(3)));
        let next_window = start + Duration::from_secs(1);
        assert!(faults.take("a", next_window).is_none());
    }

    #[test]
    fn requests_within_a_rate_fall_through_to_later_rules() {
        let faults = Faults::default();
        let now = Instant::now();
        faults
            .add(
                NewFault {
                    token: "aa".to_owned(),
                    max_per_second: Some(1),
                    ..NewFault::default()
                },
                1,
            )
            .unwrap();
        faults.add(rule("aa", 200, None), 1).unwrap();
        let first = faults.take("aa", now).unwrap();
        assert_eq!((first.status, first.reason), (200, None));
        assert_eq!(faults.take("aa", now).unwrap().status, 429);
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
                    times: Some(0),
                    ..base.clone()
                },
                InvalidFault::Times,
            ),
            (
                NewFault {
                    max_per_second: Some(0),
                    ..base.clone()
                },
                InvalidFault::Rate,
            ),
            (
                NewFault {
                    delay_ms: MAX_DELAY_MS + 1,
                    ..base
                },
                InvalidFault::Delay,
            ),
        ];
        for (new, expected) in invalid {
            assert_eq!(faults.add(new, 1), Err(expected));
        }
        assert!(faults.list().is_empty());
    }

    #[test]
    fn rules_can_be_removed_by_id() {
        let faults = Faults::default();
        let fault = faults.add(rule("aa", 500, None), 1).unwrap();
        assert!(faults.remove(fault.id));
        assert!(!faults.remove(fault.id));
        assert!(faults.take("aa", Instant::now()).is_none());
    }
}
