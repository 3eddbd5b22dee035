//! When a request runs: a scheduled send (`send_at`, `delay_seconds`) parsed into the instant
//! its workflow waits for.
//!
//! Instants are [`UnixMillis`]; the wire form is RFC 3339 with an offset (`2026-12-05T09:00:00Z`,
//! `2026-12-05T09:00:00+01:00`). Parsing takes `now` as an argument: this crate reads no clock.

use jiff::Timestamp;

use crate::UnixMillis;

/// How far ahead a request may be scheduled: 30 days, as far as a request's time-to-live.
pub const MAX_SCHEDULE_AHEAD_SECONDS: u32 = 30 * 24 * 3600;

/// How far in the past a `send_at` may be and still be accepted (it then runs at once): five
/// minutes, for callers whose clocks run a little ahead of ours. Further back is a mistake.
pub const SEND_AT_PAST_TOLERANCE_SECONDS: u32 = 300;

/// A timing field that cannot be honoured, with the field to name in the error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TimingError {
    /// The offending field (`send_at`, `delay_seconds`).
    pub field: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl TimingError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// When a request asked to run, as sent: at most one of the two.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Schedule<'a> {
    /// An RFC 3339 instant.
    pub send_at: Option<&'a str>,
    /// Seconds after the request is accepted.
    pub delay_seconds: Option<u32>,
}

impl Schedule<'_> {
    /// The instant the request runs at, or `None` to run at once. A `send_at` within
    /// [`SEND_AT_PAST_TOLERANCE_SECONDS`] before `now` runs at once; `delay_seconds: 0` too.
    pub fn run_at(&self, now: UnixMillis) -> Result<Option<UnixMillis>, TimingError> {
        let latest = now + i64::from(MAX_SCHEDULE_AHEAD_SECONDS) * 1000;
        let at = match (self.send_at, self.delay_seconds) {
            (Some(_), Some(_)) => {
                return Err(TimingError::new(
                    "delay_seconds",
                    "send either send_at or delay_seconds, not both",
                ));
            }
            (None, None) => return Ok(None),
            (None, Some(0)) => return Ok(None),
            (None, Some(delay)) => {
                if delay > MAX_SCHEDULE_AHEAD_SECONDS {
                    return Err(TimingError::new(
                        "delay_seconds",
                        format!(
                            "delay_seconds must be at most {MAX_SCHEDULE_AHEAD_SECONDS} (30 days)"
                        ),
                    ));
                }
                now + i64::from(delay) * 1000
            }
            (Some(raw), None) => {
                let at = parse_instant(raw).map_err(|m| TimingError::new("send_at", m))?;
                if at < now - i64::from(SEND_AT_PAST_TOLERANCE_SECONDS) * 1000 {
                    return Err(TimingError::new(
                        "send_at",
                        format!(
                            "send_at {raw} is more than {SEND_AT_PAST_TOLERANCE_SECONDS} seconds in \
                             the past; leave it out to send now"
                        ),
                    ));
                }
                if at > latest {
                    return Err(TimingError::new(
                        "send_at",
                        format!(
                            "send_at must be at most {MAX_SCHEDULE_AHEAD_SECONDS} seconds (30 days) ahead"
                        ),
                    ));
                }
                at
            }
        };
        Ok((at > now).then_some(at))
    }
}

/// Parses an RFC 3339 instant (an offset or `Z` is required) into milliseconds.
pub fn parse_instant(raw: &str) -> Result<UnixMillis, String> {
    raw.parse::<Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| {
            format!(
                "'{raw}' is not an RFC 3339 instant with an offset (e.g. 2026-12-05T09:00:00Z): {e}"
            )
        })
}

/// Formats milliseconds as an RFC 3339 instant in UTC (`2026-12-05T09:00:00Z`).
pub fn format_instant(at: UnixMillis) -> String {
    Timestamp::from_millisecond(at).map_or_else(|_| at.to_string(), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixMillis = 1_780_000_000_000;

    fn at(send_at: &str) -> Result<Option<UnixMillis>, TimingError> {
        Schedule {
            send_at: Some(send_at),
            delay_seconds: None,
        }
        .run_at(NOW)
    }

    #[test]
    fn a_send_at_in_the_future_is_its_instant() {
        let when = format_instant(NOW + 60_000);
        assert_eq!(at(&when), Ok(Some(NOW + 60_000)));
        let offset = Timestamp::from_millisecond(NOW + 60_000)
            .unwrap()
            .to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(2)))
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string();
        assert_eq!(at(&offset), Ok(Some(NOW + 60_000)), "{offset}");
    }

    #[test]
    fn a_delay_counts_from_now_and_zero_means_now() {
        let delay = |d| {
            Schedule {
                send_at: None,
                delay_seconds: Some(d),
            }
            .run_at(NOW)
        };
        assert_eq!(delay(5), Ok(Some(NOW + 5_000)));
        assert_eq!(delay(0), Ok(None));
        assert_eq!(
            delay(MAX_SCHEDULE_AHEAD_SECONDS + 1).unwrap_err().field,
            "delay_seconds"
        );
    }

    #[test]
    fn a_slightly_past_send_at_runs_now_and_an_old_one_is_refused() {
        assert_eq!(at(&format_instant(NOW - 10_000)), Ok(None));
        let err = at(&format_instant(NOW - 3_600_000)).unwrap_err();
        assert_eq!(err.field, "send_at");
        assert!(err.message.contains("in the past"), "{}", err.message);
    }

    #[test]
    fn malformed_far_and_doubled_schedules_name_their_field() {
        for raw in ["tomorrow", "2026-12-05T09:00:00", "2026-12-05"] {
            let err = at(raw).unwrap_err();
            assert_eq!(err.field, "send_at", "{raw}");
            assert!(err.message.contains("RFC 3339"), "{}", err.message);
        }
        let far = format_instant(NOW + i64::from(MAX_SCHEDULE_AHEAD_SECONDS) * 1000 + 1_000);
        assert_eq!(at(&far).unwrap_err().field, "send_at");
        let both = Schedule {
            send_at: Some("2026-12-05T09:00:00Z"),
            delay_seconds: Some(5),
        };
        assert_eq!(both.run_at(NOW).unwrap_err().field, "delay_seconds");
    }
}
