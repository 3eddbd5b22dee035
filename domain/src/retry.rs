//! Provider-aware retry of transient delivery failures: exponential backoff from 250 ms with
//! full jitter, never shorter than the provider's `Retry-After`, under a cap that adapts to how
//! the provider is doing.
//!
//! The page workflow owns one [`Backoff`] per channel and asks it how long to wait before the
//! next delivery round; the random draw comes from the workflow's deterministic random source, so
//! the policy replays exactly. The cap starts at [`INITIAL_CAP`], doubles after every round in
//! which nothing got through (sustained 429s or 5xx) up to [`MAX_CAP`], and halves again after a
//! round that delivered something, down to [`MIN_CAP`].

use std::time::Duration;

/// The first retry waits up to this long.
pub const BASE: Duration = Duration::from_millis(250);
/// The cap a fresh page starts with.
pub const INITIAL_CAP: Duration = Duration::from_secs(30);
/// The cap never shrinks below this.
pub const MIN_CAP: Duration = Duration::from_secs(5);
/// The cap never grows past this.
pub const MAX_CAP: Duration = Duration::from_secs(300);
/// Delivery rounds per page and channel; instances still failing transiently after the last one
/// are recorded as failed and go to the dead-letter list. With the cap at its maximum the rounds
/// span roughly half an hour in expectation, longer than most provider incidents.
pub const MAX_ROUNDS: u32 = 16;

/// What one delivery round saw, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoundOutcome {
    /// Instances that reached a final status during the round.
    pub settled: u64,
    /// Instances still waiting for a retry.
    pub pending: u64,
    /// The longest `Retry-After` a provider asked for during the round.
    pub retry_after: Option<Duration>,
}

/// The backoff state of one page on one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    retries: u32,
    cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            retries: 0,
            cap: INITIAL_CAP,
        }
    }
}

impl Backoff {
    /// The cap in force.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// Retries scheduled so far.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Records a round that left instances pending and returns how long to wait before the
    /// next one. `unit` is a uniform draw from `[0, 1)`.
    pub fn next_delay(&mut self, round: RoundOutcome, unit: f64) -> Duration {
        self.cap = if round.settled == 0 {
            (self.cap * 2).min(MAX_CAP)
        } else {
            (self.cap / 2).max(MIN_CAP)
        };
        let exponential = BASE
            .checked_mul(1u32.checked_shl(self.retries.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(MAX_CAP);
        let ceiling = exponential.min(self.cap);
        self.retries += 1;
        let jittered = ceiling.mul_f64(unit.clamp(0.0, 1.0));
        // The provider's word wins over the jitter, even past the cap: sending earlier only
        // earns another 429.
        jittered.max(round.retry_after.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing() -> RoundOutcome {
        RoundOutcome {
            settled: 0,
            pending: 10,
            retry_after: None,
        }
    }

    #[test]
    fn delays_grow_exponentially_from_the_base_with_full_jitter() {
        let mut b = Backoff::default();
        assert_eq!(b.next_delay(failing(), 0.999_999), BASE.mul_f64(0.999_999));
        assert_eq!(b.next_delay(failing(), 0.5), BASE);
        assert_eq!(b.next_delay(failing(), 0.5), BASE * 2);
        assert_eq!(b.next_delay(failing(), 0.0), Duration::ZERO);
        assert_eq!(b.retries(), 4);
    }

    #[test]
    fn the_cap_grows_under_sustained_failure_and_shrinks_on_success() {
        let mut b = Backoff::default();
        let mut longest = Duration::ZERO;
        for _ in 0..40 {
            longest = longest.max(b.next_delay(failing(), 0.999_999));
        }
        assert_eq!(b.cap(), MAX_CAP);
        assert!(
            longest <= MAX_CAP && longest > MAX_CAP.mul_f64(0.99),
            "{longest:?}"
        );

        let recovering = RoundOutcome {
            settled: 5,
            pending: 5,
            retry_after: None,
        };
        for _ in 0..3 {
            b.next_delay(recovering, 0.5);
        }
        assert_eq!(b.cap(), MAX_CAP / 8);
        let shrunk = b.next_delay(recovering, 0.999_999);
        assert!(shrunk <= MAX_CAP / 16, "{shrunk:?}");
        for _ in 0..10 {
            b.next_delay(recovering, 0.5);
        }
        assert_eq!(b.cap(), MIN_CAP);
    }

    #[test]
    fn retry_after_is_a_floor() {
        let mut b = Backoff::default();
        let asked = RoundOutcome {
            retry_after: Some(Duration::from_secs(2)),
            ..failing()
        };
        assert_eq!(b.next_delay(asked, 0.1), Duration::from_secs(2));
        let long = RoundOutcome {
            retry_after: Some(Duration::from_secs(900)),
            ..failing()
        };
        assert_eq!(b.next_delay(long, 0.9), Duration::from_secs(900));
    }

    #[test]
    fn out_of_range_draws_are_clamped() {
        let mut b = Backoff::default();
        assert_eq!(b.next_delay(failing(), 7.0), BASE);
        assert_eq!(b.next_delay(failing(), -1.0), Duration::ZERO);
    }
}
