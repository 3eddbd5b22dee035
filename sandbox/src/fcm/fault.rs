//! Fault injection for FCM: rules that make `messages:send` fail or slow down for chosen tokens.
//!
//! A rule matches a registration token exactly, or every token when it is `*`; rules apply in
//! order as [`crate::fault`] describes. A rate rule (`max_per_second`) answers
//! `429 QUOTA_EXCEEDED` with a `Retry-After`.

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::fault::{InvalidRule, Limits, Rule, RuleList, Rules, token_matches};

/// Largest `Retry-After` a rule may ask for.
const MAX_RETRY_AFTER_S: u64 = 24 * 60 * 60;

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
pub type FcmFaultList = RuleList<FcmFault>;

/// Why a rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InvalidFault {
    #[error("token must not be empty")]
    EmptyToken,
    #[error("retry_after_s must be at most {MAX_RETRY_AFTER_S}")]
    RetryAfter,
    #[error("a rule with max_per_second answers QUOTA_EXCEEDED only")]
    RateError,
    #[error("a rule needs an error, a delay_ms or a max_per_second")]
    Inert,
    #[error(transparent)]
    Limit(#[from] InvalidRule),
}

/// The simulator's active rules.
pub(crate) type Faults = Rules<FcmFault>;

impl Rule for FcmFault {
    type New = NewFcmFault;
    type Invalid = InvalidFault;

    fn build(new: NewFcmFault, id: u64) -> Result<Self, InvalidFault> {
        let token = new.token.trim();
        if token.is_empty() {
            return Err(InvalidFault::EmptyToken);
        }
        if new.retry_after_s.is_some_and(|s| s > MAX_RETRY_AFTER_S) {
            return Err(InvalidFault::RetryAfter);
        }
        // A zero max_per_second falls through to the rule set, which refuses it.
        let (error, retry_after_s) = match (new.max_per_second, new.error) {
            (Some(1..), None | Some(FcmErrorCode::QuotaExceeded)) => (
                Some(FcmErrorCode::QuotaExceeded),
                Some(new.retry_after_s.unwrap_or(DEFAULT_RATE_RETRY_AFTER_S)),
            ),
            (Some(1..), Some(_)) => return Err(InvalidFault::RateError),
            (None, None) if new.delay_ms == 0 => return Err(InvalidFault::Inert),
            _ => (new.error, new.retry_after_s),
        };
        Ok(Self {
            id,
            token: token.to_owned(),
            error,
            retry_after_s,
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

impl FcmFault {
    /// Whether the rule answers sends to registration `token`.
    pub(crate) fn matches(&self, token: &str) -> bool {
        token_matches(&self.token, token)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::fault::ANY_TOKEN;

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

    fn take(faults: &Faults, token: &str) -> Option<FcmFault> {
        faults.take(|fault| fault.matches(token))
    }

    #[test]
    fn rules_match_their_token_or_every_token() {
        let faults = Faults::default();
        faults
            .add(rule("a", FcmErrorCode::Unavailable, Some(1)))
            .unwrap();
        faults
            .add(rule(ANY_TOKEN, FcmErrorCode::Internal, None))
            .unwrap();
        let error = |token| take(&faults, token).unwrap().error;
        assert_eq!(error("a"), Some(FcmErrorCode::Unavailable));
        assert_eq!(error("a"), Some(FcmErrorCode::Internal));
        assert_eq!(error("b"), Some(FcmErrorCode::Internal));
    }

    #[test]
    fn rate_rule_answers_quota_exceeded_with_a_retry_after() {
        let faults = Faults::default();
        let fault = faults
            .add(NewFcmFault {
                error: None,
                max_per_second: Some(1),
                ..rule(ANY_TOKEN, FcmErrorCode::QuotaExceeded, None)
            })
            .unwrap();
        assert_eq!(fault.error, Some(FcmErrorCode::QuotaExceeded));
        assert_eq!(fault.retry_after_s, Some(DEFAULT_RATE_RETRY_AFTER_S));
        let now = Instant::now();
        let take_at = |token| faults.take_at(now, |fault| fault.matches(token));
        assert!(take_at("a").is_none());
        let refused = take_at("b").unwrap();
        assert_eq!(refused.error, Some(FcmErrorCode::QuotaExceeded));
        assert_eq!(refused.retry_after_s, Some(1));
    }

    #[test]
    fn latency_rule_accepts_after_its_delay() {
        let faults = Faults::default();
        faults
            .add(NewFcmFault {
                error: None,
                delay_ms: 250,
                ..rule("a", FcmErrorCode::Internal, None)
            })
            .unwrap();
        let answer = take(&faults, "a").unwrap();
        assert_eq!((answer.error, answer.delay_ms), (None, 250));
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
                    retry_after_s: Some(MAX_RETRY_AFTER_S + 1),
                    ..base.clone()
                },
                InvalidFault::RetryAfter,
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
                    max_per_second: Some(0),
                    ..base.clone()
                },
                InvalidFault::Limit(InvalidRule::Rate),
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
}
