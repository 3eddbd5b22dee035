//! Fault injection: rules that make the SMTP server refuse chosen recipients.
//!
//! A rule matches an envelope recipient case-insensitively and answers either that recipient's
//! `RCPT TO` or the end of the message's `DATA` with the configured reply. Rules apply in the
//! order they were added; one limited to `times` answers are removed once used up.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::mailbox::address_matches;

/// Longest delay a rule may add before its reply.
const MAX_DELAY_MS: u64 = 10 * 60 * 1000;

/// Longest reply text a rule may carry.
const MAX_MESSAGE_LEN: usize = 512;

/// Reply text used when a rule gives none.
const DEFAULT_MESSAGE: &str = "fault injected by fanout-sandbox";

/// Where in the SMTP transaction a rule answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultStage {
    /// The matching recipient's `RCPT TO` is refused; the message is never sent.
    #[default]
    Rcpt,
    /// The recipient is accepted, but the final reply after the message content refuses the
    /// whole message.
    Data,
}

/// Body of `POST /api/smtp/faults`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewFault {
    /// Envelope recipient the rule matches, compared case-insensitively; `@domain` matches
    /// every address at that domain.
    pub rcpt: String,
    /// SMTP reply code, 400 to 599 (421 also closes the connection), or 250 to accept normally
    /// after `delay_ms`: latency injection without a failure.
    pub code: u16,
    /// Reply text, e.g. `5.1.1 mailbox unavailable`.
    #[serde(default)]
    pub message: String,
    /// Where the reply is given; `rcpt` when absent.
    #[serde(default)]
    pub stage: FaultStage,
    /// How many replies the rule gives before it is removed; forever when absent.
    #[serde(default)]
    pub times: Option<u32>,
    /// Delay before the reply, in milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
}

/// An active fault rule, as `GET /api/smtp/faults` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// Identifier for `DELETE /api/smtp/faults/{id}`.
    pub id: u64,
    /// Envelope recipient the rule matches.
    pub rcpt: String,
    /// SMTP reply code.
    pub code: u16,
    /// Reply text.
    pub message: String,
    /// Where the reply is given.
    pub stage: FaultStage,
    /// Replies left before the rule is removed; `null` means forever.
    pub remaining: Option<u32>,
    /// Delay before the reply, in milliseconds.
    pub delay_ms: u64,
}

/// Body of `GET /api/smtp/faults`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultList {
    /// Active rules, in the order they apply.
    pub faults: Vec<Fault>,
}

/// Why a rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InvalidFault {
    #[error("rcpt must not be empty")]
    EmptyRecipient,
    #[error("code must be 250 (accept after delay_ms) or between 400 and 599")]
    Code,
    #[error("message must be one line of at most {MAX_MESSAGE_LEN} bytes")]
    Message,
    #[error("times must be at least 1 when given")]
    Times,
    #[error("delay_ms must be at most {MAX_DELAY_MS}")]
    Delay,
}

/// The reply a matching rule prescribes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FaultReply {
    pub code: u16,
    pub message: String,
    pub delay: Duration,
}

impl FaultReply {
    /// Whether the rule only delays an otherwise normal acceptance.
    pub fn accepts(&self) -> bool {
        self.code == 250
    }
}

/// The shared set of active rules.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    rules: Vec<Fault>,
    last_id: u64,
}

impl Faults {
    /// Validates and adds a rule after the existing ones.
    pub fn add(&self, new: NewFault) -> Result<Fault, InvalidFault> {
        let rcpt = new.rcpt.trim();
        if rcpt.is_empty() {
            return Err(InvalidFault::EmptyRecipient);
        }
        if new.code != 250 && !(400..=599).contains(&new.code) {
            return Err(InvalidFault::Code);
        }
        if new.message.len() > MAX_MESSAGE_LEN || new.message.contains(['\r', '\n']) {
            return Err(InvalidFault::Message);
        }
        if new.times == Some(0) {
            return Err(InvalidFault::Times);
        }
        if new.delay_ms > MAX_DELAY_MS {
            return Err(InvalidFault::Delay);
        }
        let message = match new.message.trim() {
            "" => DEFAULT_MESSAGE.to_owned(),
            message => message.to_owned(),
        };
        let mut inner = self.lock();
        inner.last_id += 1;
        let fault = Fault {
            id: inner.last_id,
            rcpt: rcpt.to_owned(),
            code: new.code,
            message,
            stage: new.stage,
            remaining: new.times,
            delay_ms: new.delay_ms,
        };
        inner.rules.push(fault.clone());
        Ok(fault)
    }

    /// Returns the active rules in the order they apply.
    pub fn list(&self) -> Vec<Fault> {
        self.lock().rules.clone()
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.lock().rules.clear();
    }

    /// Removes the rule with `id`, telling whether it existed.
    pub fn remove(&self, id: u64) -> bool {
        let mut inner = self.lock();
        let before = inner.rules.len();
        inner.rules.retain(|fault| fault.id != id);
        inner.rules.len() != before
    }

    /// Uses up one answer of the first rule matching `rcpt` at `stage`, if any.
    pub fn take(&self, stage: FaultStage, rcpt: &str) -> Option<FaultReply> {
        let mut inner = self.lock();
        let index = inner
            .rules
            .iter()
            .position(|fault| fault.stage == stage && address_matches(&fault.rcpt, rcpt))?;
        let fault = &mut inner.rules[index];
        let reply = FaultReply {
            code: fault.code,
            message: fault.message.clone(),
            delay: Duration::from_millis(fault.delay_ms),
        };
        if let Some(remaining) = &mut fault.remaining {
            *remaining -= 1;
            if *remaining == 0 {
                inner.rules.remove(index);
            }
        }
        Some(reply)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(rcpt: &str, code: u16, stage: FaultStage, times: Option<u32>) -> NewFault {
        NewFault {
            rcpt: rcpt.to_owned(),
            code,
            message: format!("{code} reply"),
            stage,
            times,
            delay_ms: 0,
        }
    }

    #[test]
    fn limited_rule_is_removed_when_used_up() {
        let faults = Faults::default();
        faults
            .add(rule("a@example.com", 451, FaultStage::Rcpt, Some(2)))
            .unwrap();
        assert_eq!(
            faults.take(FaultStage::Rcpt, "A@Example.com").unwrap().code,
            451
        );
        assert_eq!(faults.list()[0].remaining, Some(1));
        assert!(faults.take(FaultStage::Rcpt, "a@example.com").is_some());
        assert!(faults.take(FaultStage::Rcpt, "a@example.com").is_none());
        assert!(faults.list().is_empty());
    }

    #[test]
    fn rules_match_their_stage_and_apply_in_order() {
        let faults = Faults::default();
        faults
            .add(rule("a@example.com", 451, FaultStage::Data, Some(1)))
            .unwrap();
        faults
            .add(rule("a@example.com", 550, FaultStage::Data, None))
            .unwrap();
        assert!(faults.take(FaultStage::Rcpt, "a@example.com").is_none());
        assert!(faults.take(FaultStage::Data, "b@example.com").is_none());
        assert_eq!(
            faults.take(FaultStage::Data, "a@example.com").unwrap().code,
            451
        );
        assert_eq!(
            faults.take(FaultStage::Data, "a@example.com").unwrap().code,
            550
        );
        assert_eq!(
            faults.take(FaultStage::Data, "a@example.com").unwrap().code,
            550
        );
    }

    #[test]
    fn refuses_invalid_rules() {
        let faults = Faults::default();
        let base = rule("a@example.com", 550, FaultStage::Rcpt, None);
        let invalid = [
            (
                NewFault {
                    rcpt: " ".to_owned(),
                    ..base.clone()
                },
                InvalidFault::EmptyRecipient,
            ),
            (
                NewFault {
                    code: 354,
                    ..base.clone()
                },
                InvalidFault::Code,
            ),
            (
                NewFault {
                    message: "a\r\nb".to_owned(),
                    ..base.clone()
                },
                InvalidFault::Message,
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
                    delay_ms: MAX_DELAY_MS + 1,
                    ..base
                },
                InvalidFault::Delay,
            ),
        ];
        for (new, expected) in invalid {
            assert_eq!(faults.add(new), Err(expected));
        }
        assert!(faults.list().is_empty());
    }

    #[test]
    fn empty_message_gets_default_text_and_rules_can_be_removed() {
        let faults = Faults::default();
        let fault = faults
            .add(NewFault {
                message: String::new(),
                ..rule("a@example.com", 550, FaultStage::Rcpt, None)
            })
            .unwrap();
        assert_eq!(fault.message, DEFAULT_MESSAGE);
        assert!(faults.remove(fault.id));
        assert!(!faults.remove(fault.id));
    }
}
