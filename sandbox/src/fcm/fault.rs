//! Fault injection for FCM: rules that make `messages:send` fail or slow down for chosen tokens.
//!
//! A rule matches a registration token exactly, or every token when it is `*`. Rules apply in
//! the order they were added and the first one that fires answers; a rule limited to `times`
//! answers is removed once used up.
//!
//! A rule with `max_per_second` is a rate limit: the first `max_per_second` matching requests
//! of each one-second window pass through it (to later rules and normal delivery), and the
//! rest are answered `429 QUOTA_EXCEEDED` with a `Retry-After`.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

/// Longest delay a rule may add before its answer.
const MAX_DELAY_MS: u64 = 10 * 60 * 1000;

/// Largest `Retry-After` a rule may ask for.
const MAX_RETRY_AFTER_S: u64 = 24 * 60 * 60;

/// How long a rate rule's counting window lasts.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// `Retry-After` of a rate rule that gives none: the window is over by then.
const DEFAULT_RATE_RETRY_AFTER_S: u64 = 1;

/// An FCM error a rule answers with, named by its FCM `errorCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FcmErrorCode {
    /// `404 NOT_FOUND`: the app was uninstalled or the token expired.
    Unregistered,
    /// `400 INVALID_ARGUMENT` on `message.token`: the token is malformed.
    InvalidArgument,
    /// `429 RESOURCE_EXHAUSTED`: a sending quota was exceeded.
    QuotaExceeded,
    /// `503 UNAVAILABLE`: the server is overloaded.
    Unavailable,
    /// `500 INTERNAL`: an unknown server error.
    Internal,
    /// `403 PERMISSION_DENIED`: the token belongs to another sender.
    SenderIdMismatch,
    /// `401 UNAUTHENTICATED`: the APNs certificate or web push key is invalid.
    ThirdPartyAuthError,
}

impl FcmErrorCode {
    /// The HTTP status FCM answers this error with.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Self::Unregistered => StatusCode::NOT_FOUND,
            Self::InvalidArgument => StatusCode::BAD_REQUEST,
            Self::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::SenderIdMismatch => StatusCode::FORBIDDEN,
            Self::ThirdPartyAuthError => StatusCode::UNAUTHORIZED,
        }
    }

    /// The `errorCode` string in the error's `FcmError` detail.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Unregistered => "UNREGISTERED",
            Self::InvalidArgument => "INVALID_ARGUMENT",
            Self::QuotaExceeded => "QUOTA_EXCEEDED",
            Self::Unavailable => "UNAVAILABLE",
            Self::Internal => "INTERNAL",
            Self::SenderIdMismatch => "SENDER_ID_MISMATCH",
            Self::ThirdPartyAuthError => "THIRD_PARTY_AUTH_ERROR",
        }
    }

    /// A message in the spirit of the one FCM gives.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::Unregistered => "Requested entity was not found.",
            Self::InvalidArgument => "The registration token is not a valid FCM registration token",
            Self::QuotaExceeded => "Quota exceeded for sending messages (fault injected)",
            Self::Unavailable => "The service is currently unavailable (fault injected)",
            Self::Internal => "Internal error encountered (fault injected)",
            Self::SenderIdMismatch => "SenderId mismatch",
            Self::ThirdPartyAuthError => "Auth error from APNS or Web Push Service",
        }
    }
}

/// Body of `POST /api/fcm/faults`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewFcmFault {
    /// Registration token the rule matches exactly; `*` matches every token.
    pub token: String,
    /// Error to answer with; when absent the message is accepted after `delay_ms` (latency
    /// injection), or, for a rate rule, `QUOTA_EXCEEDED`.
    #[serde(default)]
    pub error: Option<FcmErrorCode>,
    /// Seconds sent in a `Retry-After` header with the error.
    #[serde(default)]
    pub retry_after_s: Option<u64>,
    /// Delay before the answer, in milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
    /// How many answers the rule gives before it is removed; forever when absent.
    #[serde(default)]
    pub times: Option<u32>,
    /// Makes the rule a rate limit: matching requests above this many per second are answered
    /// `QUOTA_EXCEEDED` (with `Retry-After`, 1 s unless `retry_after_s` says otherwise).
    #[serde(default)]
    pub max_per_second: Option<u32>,
}

/// An active rule, as `GET /api/fcm/faults` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FcmFault {
    /// Identifier for `DELETE /api/fcm/faults/{id}`.
    pub id: u64,
    /// Registration token the rule matches; `*` for all.
    pub token: String,
    /// Error answered; `null` for a latency-only rule.
    pub error: Option<FcmErrorCode>,
    /// `Retry-After` sent with the error, in seconds.
    pub retry_after_s: Option<u64>,
    /// Delay before the answer, in milliseconds.
    pub delay_ms: u64,
    /// Answers left before the rule is removed; `null` means forever.
    pub remaining: Option<u32>,
    /// The rate above which the rule answers, for a rate rule.
    pub max_per_second: Option<u32>,
}

/// Body of `GET /api/fcm/faults`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FcmFaultList {
    /// Active rules, in the order they apply.
    pub faults: Vec<FcmFault>,
}

/// Why a rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InvalidFault {
    #[error("token must not be empty")]
    EmptyToken,
    #[error("times must be at least 1 when given")]
    Times,
    #[error("delay_ms must be at most {MAX_DELAY_MS}")]
    Delay,
    #[error("retry_after_s must be at most {MAX_RETRY_AFTER_S}")]
    RetryAfter,
    #[error("max_per_second must be at least 1 when given")]
    Rate,
    #[error("a rule with max_per_second answers QUOTA_EXCEEDED only")]
    RateError,
    #[error("a rule needs an error, a delay_ms or a max_per_second")]
    Inert,
}

/// What a firing rule prescribes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FaultAnswer {
    /// The error to answer with; `None` accepts the message after the delay.
    pub error: Option<FcmErrorCode>,
    pub retry_after_s: Option<u64>,
    pub delay: Duration,
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
    fault: FcmFault,
    /// Start of a rate rule's current window and the requests it let through in it.
    window: Option<(Instant, u32)>,
}

impl Faults {
    /// Validates and adds a rule after the existing ones.
    pub fn add(&self, new: NewFcmFault) -> Result<FcmFault, InvalidFault> {
        let token = new.token.trim();
        if token.is_empty() {
            return Err(InvalidFault::EmptyToken);
        }
        if new.times == Some(0) {
            return Err(InvalidFault::Times);
        }
        if new.delay_ms > MAX_DELAY_MS {
            return Err(InvalidFault::Delay);
        }
        if new.retry_after_s.is_some_and(|s| s > MAX_RETRY_AFTER_S) {
            return Err(InvalidFault::RetryAfter);
        }
        let (error, retry_after_s) = match new.max_per_second {
            Some(0) => return Err(InvalidFault::Rate),
            Some(_) => match new.error {
                None | Some(FcmErrorCode::QuotaExceeded) => (
                    Some(FcmErrorCode::QuotaExceeded),
                    Some(new.retry_after_s.unwrap_or(DEFAULT_RATE_RETRY_AFTER_S)),
                ),
                Some(_) => return Err(InvalidFault::RateError),
            },
            None if new.error.is_none() && new.delay_ms == 0 => return Err(InvalidFault::Inert),
            None => (new.error, new.retry_after_s),
        };
        let mut inner = self.lock();
        inner.last_id += 1;
        let fault = FcmFault {
            id: inner.last_id,
            token: token.to_owned(),
            error,
            retry_after_s,
            delay_ms: new.delay_ms,
            remaining: new.times,
            max_per_second: new.max_per_second,
        };
        inner.rules.push(Rule {
            fault: fault.clone(),
            window: None,
        });
        Ok(fault)
    }

    /// Returns the active rules in the order they apply.
    pub fn list(&self) -> Vec<FcmFault> {
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

    /// Uses up one answer of the first rule that fires for `token` now, if any.
    pub fn take(&self, token: &str) -> Option<FaultAnswer> {
        self.take_at(token, Instant::now())
    }

    fn take_at(&self, token: &str, now: Instant) -> Option<FaultAnswer> {
        let mut inner = self.lock();
        let index = inner
            .rules
            .iter_mut()
            .position(|rule| rule.fires(token, now))?;
        let fault = &mut inner.rules[index].fault;
        let answer = FaultAnswer {
            error: fault.error,
            retry_after_s: fault.retry_after_s,
            delay: Duration::from_millis(fault.delay_ms),
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

impl Rule {
    /// Whether the rule answers a request for `token` arriving at `now`; a rate rule counts
    /// the requests it lets through.
    fn fires(&mut self, token: &str, now: Instant) -> bool {
        if self.fault.token != "*" && self.fault.token != token {
            return false;
        }
        let Some(limit) = self.fault.max_per_second else {
            return true;
        };
        let (start, passed) = match self.window {
            Some((start, passed)) if now.duration_since(start) < RATE_WINDOW => (start, passed),
            _ => (now, 0),
        };
        if passed < limit {
            self.window = Some((start, passed + 1));
            false
        } else {
            self.window = Some((start, passed));
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(token: &str, error: FcmErrorCode, times: Option<u32>) -> NewFcmFault {
        NewFcmFault {
            token: token.to_owned(),
            error: Some(error),
            retry_after_s: None,
            delay_ms: 0,
            times,
            max_per_second: None,
        }
    }

    #[test]
    fn limited_rule_is_removed_when_used_up_and_wildcard_matches_all() {
        let faults = Faults::default();
        faults
            .add(rule("a", FcmErrorCode::Unavailable, Some(2)))
            .unwrap();
        faults.add(rule("*", FcmErrorCode::Internal, None)).unwrap();
        assert_eq!(
            faults.take("a").unwrap().error,
            Some(FcmErrorCode::Unavailable)
        );
        assert_eq!(faults.list()[0].remaining, Some(1));
        assert_eq!(
            faults.take("b").unwrap().error,
            Some(FcmErrorCode::Internal)
        );
        assert!(faults.take("a").is_some());
        assert_eq!(
            faults.take("a").unwrap().error,
            Some(FcmErrorCode::Internal)
        );
        assert_eq!(faults.list().len(), 1);
    }

    #[test]
    fn rate_rule_answers_above_the_limit_within_each_window() {
        let faults = Faults::default();
        let fault = faults
            .add(NewFcmFault {
                max_per_second: Some(2),
                ..rule("*", FcmErrorCode::QuotaExceeded, None)
            })
            .unwrap();
        assert_eq!(fault.retry_after_s, Some(DEFAULT_RATE_RETRY_AFTER_S));
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        assert!(faults.take_at("a", at(0)).is_none());
        assert!(faults.take_at("b", at(10)).is_none());
        let refused = faults.take_at("a", at(20)).unwrap();
        assert_eq!(refused.error, Some(FcmErrorCode::QuotaExceeded));
        assert_eq!(refused.retry_after_s, Some(1));
        assert!(faults.take_at("a", at(999)).is_some());
        // A new window lets requests through again.
        assert!(faults.take_at("a", at(1000)).is_none());
        assert!(faults.take_at("a", at(1500)).is_none());
        assert!(faults.take_at("a", at(1600)).is_some());
    }

    #[test]
    fn requests_under_a_rate_reach_later_rules() {
        let faults = Faults::default();
        faults
            .add(NewFcmFault {
                error: None,
                max_per_second: Some(5),
                ..rule("*", FcmErrorCode::QuotaExceeded, None)
            })
            .unwrap();
        faults
            .add(rule("dead", FcmErrorCode::Unregistered, None))
            .unwrap();
        assert_eq!(
            faults.take("dead").unwrap().error,
            Some(FcmErrorCode::Unregistered)
        );
        assert!(faults.take("alive").is_none());
    }

    #[test]
    fn refuses_invalid_rules() {
        let faults = Faults::default();
        let base = rule("a", FcmErrorCode::Unregistered, None);
        let invalid = [
            (
                NewFcmFault {
                    token: " ".to_owned(),
                    ..base.clone()
                },
                InvalidFault::EmptyToken,
            ),
            (
                NewFcmFault {
                    times: Some(0),
                    ..base.clone()
                },
                InvalidFault::Times,
            ),
            (
                NewFcmFault {
                    delay_ms: MAX_DELAY_MS + 1,
                    ..base.clone()
                },
                InvalidFault::Delay,
            ),
            (
                NewFcmFault {
                    retry_after_s: Some(MAX_RETRY_AFTER_S + 1),
                    ..base.clone()
                },
                InvalidFault::RetryAfter,
            ),
            (
                NewFcmFault {
                    max_per_second: Some(0),
                    ..base.clone()
                },
                InvalidFault::Rate,
            ),
            (
                NewFcmFault {
                    max_per_second: Some(3),
                    ..base.clone()
                },
                InvalidFault::RateError,
            ),
            (
                NewFcmFault {
                    error: None,
                    ..base
                },
                InvalidFault::Inert,
            ),
        ];
        for (new, expected) in invalid {
            assert_eq!(faults.add(new), Err(expected));
        }
        assert!(faults.list().is_empty());
    }

    #[test]
    fn latency_rule_accepts_after_its_delay_and_rules_can_be_removed() {
        let faults = Faults::default();
        let fault = faults
            .add(NewFcmFault {
                error: None,
                delay_ms: 250,
                ..rule("a", FcmErrorCode::Internal, None)
            })
            .unwrap();
        let answer = faults.take("a").unwrap();
        assert_eq!(answer.error, None);
        assert_eq!(answer.delay, Duration::from_millis(250));
        assert!(faults.remove(fault.id));
        assert!(!faults.remove(fault.id));
        assert!(faults.take("a").is_none());
    }
}
