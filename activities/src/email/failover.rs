//! Which relay a message goes to: the first in order that is not resting, else the last (which
//! never rests: its outages are the provider breaker's to handle).
//!
//! Each relay keeps its transient failures in a row. At `rest_after` it rests for `rest_ms`:
//! messages skip it and go to the next relay. When the rest is over one message probes it
//! (others keep skipping it while the probe is out); a success ends the failures and traffic
//! comes back to it, a failure starts another rest. Any answer from the relay that is not a
//! transient failure counts as a success: a 550 for one mailbox says the relay is working.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A relay's recent record.
#[derive(Debug, Default)]
pub(super) struct Health {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    failures: u32,
    resting_until: Option<Instant>,
    probing: bool,
}

/// Whether a message may go to a relay now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Turn {
    /// Yes.
    Go,
    /// Yes, as the probe after a rest: its answer decides whether the relay is back.
    Probe,
    /// No: it is resting, or its probe is out.
    Skip,
}

impl Health {
    /// Whether a message sent `now` may go to the relay; a [`Turn::Probe`] is handed out once.
    pub(super) fn turn(&self, now: Instant) -> Turn {
        let mut state = self.lock();
        match state.resting_until {
            None => Turn::Go,
            Some(_) if state.probing => Turn::Skip,
            Some(until) if now < until => Turn::Skip,
            Some(_) => {
                state.probing = true;
                Turn::Probe
            }
        }
    }

    /// The relay answered (accepted, or refused for good).
    pub(super) fn answered(&self) {
        *self.lock() = State::default();
    }

    /// The relay failed transiently; at `rest_after` failures in a row (or a failed probe) it
    /// rests for `rest`.
    pub(super) fn failed(&self, now: Instant, rest_after: u32, rest: Duration) {
        let mut state = self.lock();
        state.failures = state.failures.saturating_add(1);
        if state.probing || state.failures >= rest_after.max(1) {
            state.resting_until = Some(now + rest);
        }
        state.probing = false;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REST: Duration = Duration::from_secs(30);

    #[test]
    fn a_relay_rests_after_failures_in_a_row_and_one_probe_brings_it_back() {
        let health = Health::default();
        let t0 = Instant::now();
        assert_eq!(health.turn(t0), Turn::Go);
        health.failed(t0, 3, REST);
        health.failed(t0, 3, REST);
        assert_eq!(health.turn(t0), Turn::Go, "two failures: still in use");
        health.answered();
        health.failed(t0, 3, REST);
        health.failed(t0, 3, REST);
        assert_eq!(health.turn(t0), Turn::Go, "an answer reset the count");
        health.failed(t0, 3, REST);
        assert_eq!(health.turn(t0), Turn::Skip);

        let later = t0 + REST;
        assert_eq!(health.turn(later), Turn::Probe);
        assert_eq!(health.turn(later), Turn::Skip, "one probe at a time");
        health.failed(later, 3, REST);
        assert_eq!(health.turn(later), Turn::Skip, "a failed probe rests");

        let again = later + REST;
        assert_eq!(health.turn(again), Turn::Probe);
        health.answered();
        assert_eq!(health.turn(again), Turn::Go, "a good probe brings it back");
    }
}
