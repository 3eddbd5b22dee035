//! Adaptive batching: one provider's window of sends in flight from this worker, and how it
//! adapts to the provider's answers (see [`super::Limits`]).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::breaker::Health;

/// How the sends in flight to a provider adapt to its answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdaptiveConfig {
    /// Whether the window applies at all.
    pub enabled: bool,
    /// The most sends in flight to one provider from one worker (and where the window starts).
    pub max_in_flight: u32,
    /// A latency this many times the provider's usual one counts as congestion.
    pub slow_factor: u32,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_in_flight: 512,
            slow_factor: 4,
        }
    }
}

/// Decreases of a window at most this often: one burst of bad answers is one signal.
const WINDOW_CUT_EVERY: Duration = Duration::from_millis(500);

/// One provider's window of sends in flight. Time and latency are passed in, so it is tested
/// without a provider.
#[derive(Debug, Clone)]
pub struct Window {
    limit: f64,
    max: f64,
    slow_factor: f64,
    in_flight: u32,
    usual_ms: Option<f64>,
    cut_at: Option<Instant>,
}

impl Window {
    /// A window wide open at `max`.
    pub fn new(config: &AdaptiveConfig) -> Self {
        let max = f64::from(config.max_in_flight.max(1));
        Self {
            limit: max,
            max,
            slow_factor: f64::from(config.slow_factor.max(2)),
            in_flight: 0,
            usual_ms: None,
            cut_at: None,
        }
    }

    /// Sends allowed in flight now.
    pub fn limit(&self) -> u32 {
        self.limit as u32
    }

    /// Sends in flight now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Whether a slot is free.
    pub fn has_room(&self) -> bool {
        self.in_flight < self.limit()
    }

    /// Takes a slot if one is free.
    pub fn try_enter(&mut self) -> bool {
        if self.has_room() {
            self.in_flight += 1;
            true
        } else {
            false
        }
    }

    /// Frees a slot without feedback (the send never completed).
    pub fn leave(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Adapts to one answer that took `latency`.
    pub fn observe(&mut self, health: Health, latency: Duration, now: Instant) {
        let ms = latency.as_secs_f64() * 1000.0;
        let slow = health == Health::Up
            && self
                .usual_ms
                .is_some_and(|usual| ms > (usual * self.slow_factor).max(20.0));
        if health == Health::Up {
            // A slow-moving average: a provider that is simply slower becomes the new usual
            // within a few dozen answers, a sudden climb stands out.
            self.usual_ms = Some(self.usual_ms.map_or(ms, |usual| usual * 0.95 + ms * 0.05));
        }
        let cut = match health {
            Health::Throttled | Health::Down => 0.5,
            Health::Up if slow => 0.9,
            Health::Up => {
                self.limit = (self.limit + 1.0 / self.limit).min(self.max);
                return;
            }
        };
        if self
            .cut_at
            .is_none_or(|at| now.saturating_duration_since(at) >= WINDOW_CUT_EVERY)
        {
            self.limit = (self.limit * cut).max(1.0);
            self.cut_at = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_halves_on_push_back_shrinks_on_slowness_and_grows_back() {
        let config = AdaptiveConfig {
            enabled: true,
            max_in_flight: 64,
            slow_factor: 4,
        };
        let mut w = Window::new(&config);
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(w.limit(), 64);
        // Usual latency 10 ms; a throttle halves, a second one within the half second does not.
        for _ in 0..20 {
            w.observe(Health::Up, ms(10), t0);
        }
        w.observe(Health::Throttled, ms(10), t0);
        assert_eq!(w.limit(), 32);
        w.observe(Health::Down, ms(10), t0 + ms(100));
        assert_eq!(w.limit(), 32);
        w.observe(Health::Down, ms(10), t0 + ms(600));
        assert_eq!(w.limit(), 16);
        // Latency far above the usual shrinks it by a tenth.
        w.observe(Health::Up, ms(200), t0 + ms(1_200));
        assert_eq!(w.limit(), 14);
        // Slots: only `limit` at once.
        let entered = (0..20).filter(|_| w.try_enter()).count();
        assert_eq!(entered, 14);
        w.leave();
        assert!(w.try_enter());
        // Good answers grow it back by about one per window's worth, never past the maximum.
        let mut t = t0 + ms(2_000);
        for _ in 0..15 {
            w.observe(Health::Up, ms(10), t);
            t += ms(1);
        }
        assert_eq!(w.limit(), 15);
        for _ in 0..10_000 {
            w.observe(Health::Up, ms(10), t);
        }
        assert_eq!(w.limit(), 64);
        // It never closes entirely.
        for i in 0..20 {
            w.observe(Health::Down, ms(10), t + ms(1_000 * i));
        }
        assert_eq!(w.limit(), 1);
    }
}
