//! Fault injection: rules that make the SMTP server refuse chosen recipients.
//!
//! A rule matches an envelope recipient case-insensitively and answers either that recipient's
//! `RCPT TO` or the end of the message's `DATA` with the configured reply. How rules are
//! ordered and used up is [`crate::fault`]'s.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::fault::{InvalidRule, Limits, Rule, RuleList, Rules};
use crate::mailbox::address_matches;

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
pub type FaultList = RuleList<Fault>;

/// Why a rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InvalidFault {
    #[error("rcpt must not be empty")]
    EmptyRecipient,
    #[error("code must be 250 (accept after delay_ms) or between 400 and 599")]
    Code,
    #[error("message must be one line of at most {MAX_MESSAGE_LEN} bytes")]
    Message,
    #[error(transparent)]
    Limit(#[from] InvalidRule),
}

/// The SMTP server's active rules.
pub(crate) type Faults = Rules<Fault>;

impl Rule for Fault {
    type New = NewFault;
    type Invalid = InvalidFault;

    fn build(new: NewFault, id: u64) -> Result<Self, InvalidFault> {
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
        let message = match new.message.trim() {
            "" => DEFAULT_MESSAGE.to_owned(),
            message => message.to_owned(),
        };
        Ok(Self {
            id,
            rcpt: rcpt.to_owned(),
            code: new.code,
            message,
            stage: new.stage,
            remaining: new.times,
            delay_ms: new.delay_ms,
        })
    }

    fn limits(&mut self) -> Limits<'_> {
        Limits {
            remaining: &mut self.remaining,
            max_per_second: None,
            delay_ms: self.delay_ms,
        }
    }
}

impl Fault {
    /// Whether the rule answers recipient `rcpt` at `stage`.
    pub(crate) fn matches(&self, stage: FaultStage, rcpt: &str) -> bool {
        self.stage == stage && address_matches(&self.rcpt, rcpt)
    }

    /// Whether the rule only delays an otherwise normal acceptance.
    pub(crate) fn accepts(&self) -> bool {
        self.code == 250
    }

    /// How long the rule holds its reply back.
    pub(crate) fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::MAX_DELAY_MS;

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

    fn take(faults: &Faults, stage: FaultStage, rcpt: &str) -> Option<u16> {
        faults
            .take(|fault| fault.matches(stage, rcpt))
            .map(|fault| fault.code)
    }

    #[test]
    fn rules_match_their_stage_and_recipient_case_insensitively() {
        let faults = Faults::default();
        faults
            .add(rule("a@example.com", 451, FaultStage::Data, Some(1)))
            .unwrap();
        faults
            .add(rule("@example.com", 550, FaultStage::Data, None))
            .unwrap();
        assert_eq!(take(&faults, FaultStage::Rcpt, "a@example.com"), None);
        assert_eq!(take(&faults, FaultStage::Data, "A@Example.com"), Some(451));
        assert_eq!(take(&faults, FaultStage::Data, "a@example.com"), Some(550));
        assert_eq!(take(&faults, FaultStage::Data, "b@example.com"), Some(550));
        assert_eq!(take(&faults, FaultStage::Data, "b@example.org"), None);
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
                    delay_ms: MAX_DELAY_MS + 1,
                    ..base
                },
                InvalidFault::Limit(InvalidRule::Delay),
            ),
        ];
        for (new, expected) in invalid {
            assert_eq!(faults.add(new), Err(expected));
        }
        assert!(faults.list().is_empty());
    }

    #[test]
    fn empty_message_gets_default_text() {
        let faults = Faults::default();
        let fault = faults
            .add(NewFault {
                message: String::new(),
                ..rule("a@example.com", 550, FaultStage::Rcpt, None)
            })
            .unwrap();
        assert_eq!(fault.message, DEFAULT_MESSAGE);
        assert!(!fault.accepts());
    }
}
