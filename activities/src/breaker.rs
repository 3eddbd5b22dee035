//! A circuit breaker per provider: while a provider is down, sends to it are not attempted.
//!
//! Closed, it counts outcomes in a tumbling window and opens when, over at least
//! `min_requests` sends, the share of failures reaches `error_percent`. Open, it holds every
//! send for `open_ms`: the delivery leaves those instances pending (not failed, not
//! dead-lettered) and tells the page workflow when to come back. Then it is half-open: up to
//! `probes` sends go through; a probe that succeeds closes it, one that fails opens it again.
//! Throttling (429, `Retry-After`) is not an outage and is left to the rate feedback.
//!
//! The state is per worker process: each worker finds out about an outage from its own sends,
//! which costs at most `min_requests` failed sends per worker, and no store round trip per
//! send. Time is passed in, so the state machine is tested with a made-up clock.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// When a breaker opens, how long it stays open and how it probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BreakerConfig {
    /// Whether breakers hold sends at all.
    pub enabled: bool,
    /// Outcomes are counted over tumbling windows of this many milliseconds.
    pub window_ms: u64,
    /// Fewer sends than this in a window never open the breaker.
    pub min_requests: u32,
    /// The breaker opens when this percentage of a window's sends failed.
    pub error_percent: u32,
    /// How long an open breaker holds sends before probing, in milliseconds.
    pub open_ms: u64,
    /// Sends let through at once while half-open.
    pub probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            window_ms: 10_000,
            min_requests: 10,
            error_percent: 50,
            open_ms: 15_000,
            probes: 2,
        }
    }
}

/// How long a held send waits when the breaker is half-open and its probes are out.
const PROBING_WAIT: Duration = Duration::from_secs(1);

/// What one send's outcome says about the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The provider answered (accepted, or refused this message for good).
    Up,
    /// The provider asked us to slow down: a matter for the rate, not the breaker.
    Throttled,
    /// The provider failed (5xx, connection trouble, timeouts).
    Down,
}

/// What the breaker lets a send do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: send.
    Pass,
    /// Half-open: send as a probe and report the outcome.
    Probe,
    /// Open (or probing already): do not send; try again after this long.
    Held(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        since: Instant,
        ok: u32,
        failed: u32,
    },
    Open {
        until: Instant,
    },
    HalfOpen {
        probing: u32,
    },
}

/// One provider's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    state: State,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig, now: Instant) -> Self {
        Self {
            config,
            state: State::Closed {
                since: now,
                ok: 0,
                failed: 0,
            },
        }
    }

    /// Whether sends are being held.
    pub fn is_open(&self) -> bool {
        !matches!(self.state, State::Closed { .. })
    }

    /// Decides whether a send may go now.
    pub fn admit(&mut self, now: Instant) -> Admission {
        if let State::Open { until } = self.state {
            if now < until {
                return Admission::Held(until - now);
            }
            self.state = State::HalfOpen { probing: 0 };
        }
        match &mut self.state {
            State::Closed { .. } => Admission::Pass,
            State::HalfOpen { probing } if *probing < self.config.probes.max(1) => {
                *probing += 1;
                Admission::Probe
            }
            State::HalfOpen { .. } => Admission::Held(PROBING_WAIT),
            State::Open { .. } => unreachable!("an open breaker returned above"),
        }
    }

    /// Gives back a probe that was not sent after all.
    pub fn release(&mut self, admission: Admission) {
        if admission == Admission::Probe
            && let State::HalfOpen { probing } = &mut self.state
        {
            *probing = probing.saturating_sub(1);
        }
    }

    /// Records the outcome of a send the breaker admitted as `admission`.
    pub fn record(&mut self, admission: Admission, health: Health, now: Instant) {
        let open = State::Open {
            until: now + Duration::from_millis(self.config.open_ms),
        };
        match (admission, &mut self.state) {
            (Admission::Probe, State::HalfOpen { probing }) => match health {
                Health::Up => {
                    self.state = State::Closed {
                        since: now,
                        ok: 0,
                        failed: 0,
                    }
                }
                Health::Down => self.state = open,
                Health::Throttled => *probing = probing.saturating_sub(1),
            },
            (Admission::Pass, State::Closed { since, ok, failed }) => {
                if now.saturating_duration_since(*since)
                    >= Duration::from_millis(self.config.window_ms)
                {
                    (*since, *ok, *failed) = (now, 0, 0);
                }
                match health {
                    Health::Up => *ok += 1,
                    Health::Down => *failed += 1,
                    Health::Throttled => return,
                }
                let total = u64::from(*ok) + u64::from(*failed);
                if total >= u64::from(self.config.min_requests.max(1))
                    && u64::from(*failed) * 100 >= u64::from(self.config.error_percent) * total
                {
                    self.state = open;
                }
            }
            // Sends that started before the state changed say nothing about the new state.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            enabled: true,
            window_ms: 1_000,
            min_requests: 4,
            error_percent: 50,
            open_ms: 5_000,
            probes: 2,
        }
    }

    #[test]
    fn opens_on_the_error_rate_only_past_the_minimum_volume() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config(), t0);
        for _ in 0..3 {
            assert_eq!(b.admit(t0), Admission::Pass);
            b.record(Admission::Pass, Health::Down, t0);
        }
        assert!(!b.is_open(), "three sends are below the minimum volume");
        // A new window starts over: old failures do not count.
        let t1 = t0 + Duration::from_millis(1_500);
        b.record(Admission::Pass, Health::Down, t1);
        b.record(Admission::Pass, Health::Up, t1);
        b.record(Admission::Pass, Health::Up, t1);
        b.record(Admission::Pass, Health::Up, t1);
        assert!(!b.is_open(), "one failure in four is below half");
        // Throttling is neither success nor failure.
        b.record(Admission::Pass, Health::Throttled, t1);
        b.record(Admission::Pass, Health::Down, t1);
        assert!(!b.is_open(), "two failures in five");
        b.record(Admission::Pass, Health::Down, t1);
        assert!(b.is_open(), "three failures in six");
        assert_eq!(b.admit(t1), Admission::Held(Duration::from_secs(5)));
        assert_eq!(
            b.admit(t1 + Duration::from_secs(2)),
            Admission::Held(Duration::from_secs(3))
        );
    }

    #[test]
    fn half_open_probes_close_on_success_and_reopen_on_failure() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config(), t0);
        for _ in 0..4 {
            b.record(Admission::Pass, Health::Down, t0);
        }
        let t1 = t0 + Duration::from_secs(5);
        // Half-open: two probes, then sends are held briefly while they are out.
        assert_eq!(b.admit(t1), Admission::Probe);
        assert_eq!(b.admit(t1), Admission::Probe);
        assert_eq!(b.admit(t1), Admission::Held(PROBING_WAIT));
        // A late result of a send admitted while closed changes nothing.
        b.record(Admission::Pass, Health::Up, t1);
        assert!(b.is_open());
        // A failed probe opens the breaker for another interval.
        b.record(Admission::Probe, Health::Down, t1);
        assert_eq!(b.admit(t1), Admission::Held(Duration::from_secs(5)));
        let t2 = t1 + Duration::from_secs(5);
        assert_eq!(b.admit(t2), Admission::Probe);
        // A probe given back frees its slot; a throttled probe too.
        b.release(Admission::Probe);
        assert_eq!(b.admit(t2), Admission::Probe);
        b.record(Admission::Probe, Health::Throttled, t2);
        assert_eq!(b.admit(t2), Admission::Probe);
        assert_eq!(b.admit(t2), Admission::Probe);
        assert_eq!(b.admit(t2), Admission::Held(PROBING_WAIT));
        // A successful probe closes it.
        b.record(Admission::Probe, Health::Up, t2);
        assert!(!b.is_open());
        assert_eq!(b.admit(t2), Admission::Pass);
    }
}
