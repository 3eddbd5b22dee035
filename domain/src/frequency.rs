//! Frequency caps: at most `max` deliveries of a template category to one user on one channel
//! per period, a tenant's rule (`PUT /v1/frequency-caps/{category}`).
//!
//! Periods are fixed windows aligned to the Unix epoch: the window holding an instant `t`
//! starts at `floor(t / period) * period`. A day-long cap's windows therefore start at 00:00
//! UTC, an hour-long cap's on the hour, and a user may receive `max` at the end of one window
//! and `max` again at the start of the next. Fixed windows are what lets delivery keep one
//! counter row per (tenant, category, user, channel, window) and claim slots exactly.

use serde::{Deserialize, Serialize};

/// The smallest `max` a cap may have (a cap of 0 would be a block: use preferences for that).
pub const MIN_CAP_MAX: u32 = 1;

/// The largest `max` a cap may have.
pub const MAX_CAP_MAX: u32 = 10_000;

/// The shortest period a cap may have, in seconds.
pub const MIN_CAP_PERIOD_SECONDS: u32 = 60;

/// The longest period a cap may have, in seconds: 31 days.
pub const MAX_CAP_PERIOD_SECONDS: u32 = 31 * 24 * 3600;

/// A category's cap: at most `max` deliveries per user and channel per `period_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FrequencyCap {
    /// Deliveries allowed per user, channel and window.
    pub max: u32,
    /// The window's length in seconds.
    pub period_seconds: u32,
}

/// One window of a cap, in Unix milliseconds: `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapWindow {
    /// The first millisecond of the window.
    pub start_ms: i64,
    /// The first millisecond after it.
    pub end_ms: i64,
}

impl FrequencyCap {
    /// The window holding `now_ms` (epoch-aligned; see the module docs).
    pub fn window_at(&self, now_ms: i64) -> CapWindow {
        let period_ms = i64::from(self.period_seconds.max(1)) * 1000;
        let start_ms = now_ms.div_euclid(period_ms) * period_ms;
        CapWindow {
            start_ms,
            end_ms: start_ms + period_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        let daily = FrequencyCap {
            max: 3,
            period_seconds: 86_400,
        };
        // 2026-12-04T22:10:09Z.
        let now = 1_796_422_209_000;
        let w = daily.window_at(now);
        assert_eq!(w.start_ms, 1_796_342_400_000, "00:00 UTC that day");
        assert_eq!(w.end_ms - w.start_ms, 86_400_000);
        assert_eq!(
            daily.window_at(w.start_ms),
            w,
            "the first millisecond is in"
        );
        assert_eq!(daily.window_at(w.end_ms - 1), w, "the last one too");
        assert_eq!(
            daily.window_at(w.end_ms).start_ms,
            w.end_ms,
            "the next is not"
        );

        let minute = FrequencyCap {
            max: 1,
            period_seconds: 60,
        };
        assert_eq!(minute.window_at(119_999).start_ms, 60_000);
        assert_eq!(
            minute.window_at(-1).start_ms,
            -60_000,
            "floor, not truncation"
        );
    }
}
