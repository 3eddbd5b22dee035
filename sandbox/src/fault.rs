//! Fault injection as the simulated providers share it: an ordered set of rules that answer
//! matching requests, and the routes that list, add and remove them.
//!
//! Rules apply in the order they were added and the first that fires answers. A rule limited
//! to `times` answers is removed once used up; without `times` it stays. A rule with
//! `max_per_second` is a rate limit: the first `max_per_second` matching requests of each
//! one-second window pass through it (to later rules and normal delivery), and it fires for
//! the rest.
//!
//! Each provider keeps what is its own ([`Rule`]): the JSON shape of its rules and how a request
//! for one is checked, what a request is matched on, and what a fired rule does to it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Sandbox;
use crate::http::{ApiError, ApiResult};

/// The token pattern that matches every device or registration token.
pub const ANY_TOKEN: &str = "*";

/// Longest delay a rule may add before its answer.
pub(crate) const MAX_DELAY_MS: u64 = 10 * 60 * 1000;

/// How long a rate rule's counting window lasts.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// Body of `GET /api/{provider}/faults`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleList<F> {
    /// Active rules, in the order they apply.
    pub faults: Vec<F>,
}

/// A provider's fault rule, as its `GET .../faults` lists it.
pub(crate) trait Rule: Clone {
    /// Body of `POST .../faults`.
    type New;
    /// Why a rule was refused.
    type Invalid: From<InvalidRule>;

    /// Checks what `new` asks for and makes it the rule numbered `id`. The limits the rule set
    /// acts on ([`Limits`]) are checked afterwards.
    fn build(new: Self::New, id: u64) -> Result<Self, Self::Invalid>;

    /// The parts of the rule the rule set acts on.
    fn limits(&mut self) -> Limits<'_>;
}

/// The parts of a rule the rule set acts on.
#[derive(Debug)]
pub(crate) struct Limits<'a> {
    /// Answers left before the rule is removed; `None` means forever.
    pub remaining: &'a mut Option<u32>,
    /// For a rate rule, the matching requests let through each second.
    pub max_per_second: Option<u32>,
    /// Delay before the answer, in milliseconds.
    pub delay_ms: u64,
}

/// Why a rule was refused: the limits every provider's rules share.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InvalidRule {
    #[error("times must be at least 1 when given")]
    Times,
    #[error("max_per_second must be at least 1 when given")]
    Rate,
    #[error("delay_ms must be at most {MAX_DELAY_MS}")]
    Delay,
}

/// Whether a rule's token `pattern` matches `token`: the same token, or [`ANY_TOKEN`].
pub(crate) fn token_matches(pattern: &str, token: &str) -> bool {
    pattern == ANY_TOKEN || pattern == token
}

/// The shared set of active rules of one provider.
#[derive(Debug)]
pub(crate) struct Rules<F> {
    inner: Mutex<Inner<F>>,
}

#[derive(Debug)]
struct Inner<F> {
    entries: Vec<Entry<F>>,
    last_id: u64,
}

#[derive(Debug)]
struct Entry<F> {
    id: u64,
    rule: F,
    /// Start of a rate rule's current window and the requests it let through in it.
    window: Option<(Instant, u32)>,
}

impl<F> Default for Rules<F> {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                entries: Vec::new(),
                last_id: 0,
            }),
        }
    }
}

impl<F: Rule> Rules<F> {
    /// Validates and adds a rule after the existing ones.
    pub fn add(&self, new: F::New) -> Result<F, F::Invalid> {
        let mut inner = self.lock();
        let id = inner.last_id + 1;
        let mut rule = F::build(new, id)?;
        let limits = rule.limits();
        if *limits.remaining == Some(0) {
            return Err(InvalidRule::Times.into());
        }
        if limits.max_per_second == Some(0) {
            return Err(InvalidRule::Rate.into());
        }
        if limits.delay_ms > MAX_DELAY_MS {
            return Err(InvalidRule::Delay.into());
        }
        inner.last_id = id;
        inner.entries.push(Entry {
            id,
            rule: rule.clone(),
            window: None,
        });
        Ok(rule)
    }

    /// Returns the active rules in the order they apply.
    pub fn list(&self) -> Vec<F> {
        let inner = self.lock();
        inner
            .entries
            .iter()
            .map(|entry| entry.rule.clone())
            .collect()
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.lock().entries.clear();
    }

    /// Removes the rule numbered `id`, telling whether it existed.
    pub fn remove(&self, id: u64) -> bool {
        let mut inner = self.lock();
        let before = inner.entries.len();
        inner.entries.retain(|entry| entry.id != id);
        inner.entries.len() != before
    }

    /// Counts a request now against the rules it `matches` and uses up one answer of the first
    /// that fires, which it returns.
    pub fn take(&self, matches: impl Fn(&F) -> bool) -> Option<F> {
        self.take_at(Instant::now(), matches)
    }

    /// Like [`Rules::take`], for a request arriving at `now`.
    pub fn take_at(&self, now: Instant, matches: impl Fn(&F) -> bool) -> Option<F> {
        let mut inner = self.lock();
        let index = inner
            .entries
            .iter_mut()
            .position(|entry| matches(&entry.rule) && entry.fires(now))?;
        let rule = &mut inner.entries[index].rule;
        let fired = rule.clone();
        if let Some(remaining) = rule.limits().remaining {
            *remaining -= 1;
            if *remaining == 0 {
                inner.entries.remove(index);
            }
        }
        Some(fired)
    }

    fn lock(&self) -> MutexGuard<'_, Inner<F>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<F: Rule> Entry<F> {
    /// Whether the rule answers a matching request arriving at `now`; a rate rule counts the
    /// requests it lets through.
    fn fires(&mut self, now: Instant) -> bool {
        let Some(limit) = self.rule.limits().max_per_second else {
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

/// The routes of one provider's rules, `GET|POST|DELETE {path}` and `DELETE {path}/{id}`, with
/// `rules` finding them in the sandbox.
pub(crate) fn routes<F>(path: &str, rules: fn(&Sandbox) -> &Rules<F>) -> Router<Arc<Sandbox>>
where
    F: Rule + Serialize + Send + Sync + 'static,
    F::New: DeserializeOwned + Send + 'static,
    F::Invalid: std::error::Error + Send + Sync + 'static,
{
    let list = move |State(sandbox): State<Arc<Sandbox>>| async move {
        Json(RuleList {
            faults: rules(&sandbox).list(),
        })
    };
    let add = move |State(sandbox): State<Arc<Sandbox>>,
                    new: Result<Json<F::New>, JsonRejection>| async move {
        let Json(new) = new?;
        let fault = rules(&sandbox).add(new).map_err(ApiError::invalid_fault)?;
        ApiResult::Ok((StatusCode::CREATED, Json(fault)))
    };
    let clear = move |State(sandbox): State<Arc<Sandbox>>| async move {
        rules(&sandbox).clear();
        StatusCode::NO_CONTENT
    };
    let remove = move |State(sandbox): State<Arc<Sandbox>>,
                       id: Result<Path<u64>, PathRejection>| async move {
        let Path(id) = id?;
        if rules(&sandbox).remove(id) {
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(ApiError::NotFound("fault"))
        }
    };
    Router::new()
        .route(path, get(list).post(add).delete(clear))
        .route(&format!("{path}/{{id}}"), delete(remove))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rule that matches requests by name.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    struct TestRule {
        id: u64,
        name: &'static str,
        remaining: Option<u32>,
        max_per_second: Option<u32>,
        delay_ms: u64,
    }

    #[derive(Debug, PartialEq, Eq)]
    struct Refused(InvalidRule);

    impl From<InvalidRule> for Refused {
        fn from(invalid: InvalidRule) -> Self {
            Self(invalid)
        }
    }

    impl Rule for TestRule {
        type New = TestRule;
        type Invalid = Refused;

        fn build(new: TestRule, id: u64) -> Result<Self, Refused> {
            Ok(Self { id, ..new })
        }

        fn limits(&mut self) -> Limits<'_> {
            Limits {
                remaining: &mut self.remaining,
                max_per_second: self.max_per_second,
                delay_ms: self.delay_ms,
            }
        }
    }

    fn rule(name: &'static str, times: Option<u32>) -> TestRule {
        TestRule {
            name,
            remaining: times,
            ..TestRule::default()
        }
    }

    fn rate_rule(name: &'static str, max_per_second: u32) -> TestRule {
        TestRule {
            max_per_second: Some(max_per_second),
            ..rule(name, None)
        }
    }

    fn take(rules: &Rules<TestRule>, name: &str) -> Option<u64> {
        rules.take(|rule| rule.name == name).map(|rule| rule.id)
    }

    #[test]
    fn rules_apply_in_order_and_limited_ones_are_used_up() {
        let rules = Rules::<TestRule>::default();
        let first = rules.add(rule("a", Some(2))).unwrap();
        let second = rules.add(rule("a", None)).unwrap();
        assert_eq!((first.id, second.id), (1, 2));
        assert_eq!(take(&rules, "a"), Some(1));
        assert_eq!(rules.list()[0].remaining, Some(1));
        assert_eq!(take(&rules, "a"), Some(1));
        assert_eq!(rules.list(), [second]);
        assert_eq!(take(&rules, "a"), Some(2));
        assert_eq!(take(&rules, "a"), Some(2));
        assert_eq!(take(&rules, "b"), None);
    }

    #[test]
    fn rate_rule_fires_above_its_limit_within_each_window() {
        let rules = Rules::<TestRule>::default();
        rules.add(rate_rule("a", 2)).unwrap();
        let start = Instant::now();
        let take_at = |ms| {
            let now = start + Duration::from_millis(ms);
            rules.take_at(now, |rule| rule.name == "a").is_some()
        };
        assert!(!take_at(0));
        assert!(!take_at(10));
        assert!(take_at(20));
        assert!(take_at(999));
        // A new window lets requests through again.
        assert!(!take_at(1000));
        assert!(!take_at(1500));
        assert!(take_at(1600));
    }

    #[test]
    fn requests_under_a_rate_reach_later_rules() {
        let rules = Rules::<TestRule>::default();
        rules.add(rate_rule("a", 1)).unwrap();
        rules.add(rule("a", None)).unwrap();
        let now = Instant::now();
        let fired = || rules.take_at(now, |_| true).map(|rule| rule.id);
        assert_eq!(fired(), Some(2));
        assert_eq!(fired(), Some(1));
    }

    #[test]
    fn refuses_the_shared_limits_and_keeps_ids_dense() {
        let rules = Rules::<TestRule>::default();
        let invalid = [
            (rule("a", Some(0)), InvalidRule::Times),
            (rate_rule("a", 0), InvalidRule::Rate),
            (
                TestRule {
                    delay_ms: MAX_DELAY_MS + 1,
                    ..rule("a", None)
                },
                InvalidRule::Delay,
            ),
        ];
        for (new, expected) in invalid {
            assert_eq!(rules.add(new), Err(Refused(expected)));
        }
        assert!(rules.list().is_empty());
        assert_eq!(rules.add(rule("a", None)).unwrap().id, 1);
    }

    #[test]
    fn rules_can_be_removed_by_id_or_all_at_once() {
        let rules = Rules::<TestRule>::default();
        let fault = rules.add(rule("a", None)).unwrap();
        assert!(rules.remove(fault.id));
        assert!(!rules.remove(fault.id));
        assert_eq!(take(&rules, "a"), None);
        rules.add(rule("a", None)).unwrap();
        rules.clear();
        assert!(rules.list().is_empty());
    }

    #[test]
    fn the_wildcard_token_matches_every_token() {
        assert!(token_matches(ANY_TOKEN, "abc"));
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abc", "abd"));
    }
}
