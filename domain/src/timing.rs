//! When a request runs: a scheduled send (`send_at`, `delay_seconds`) parsed into the instant
//! its workflow waits for, and a local-time send (`send_at_local`) that each recipient gets at
//! a wall-clock time in their own time zone.
//!
//! Instants are [`UnixMillis`]; the wire form is RFC 3339 with an offset (`2026-12-05T09:00:00Z`,
//! `2026-12-05T09:00:00+01:00`). Parsing takes `now` as an argument: this crate reads no clock.
//! Time zones come from the IANA database bundled into the build (jiff's `tzdb-bundle-always`),
//! so every machine computes the same instants whatever its `/usr/share/zoneinfo` holds.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{Disambiguation, TimeZone};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::UnixMillis;

/// The zone of a user without one whose tenant set no default.
pub const FALLBACK_TIMEZONE: &str = "UTC";

/// The most release groups one local-time request holds (one timer each). Recipients in the
/// same zone share a group; so do zones whose local target falls on the same instant. Past
/// this many distinct instants (only odd zones produce them), instants are rounded up to a
/// coarser step until they fit.
pub const MAX_RELEASE_GROUPS: usize = 100;

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

/// Looks a time zone up in the bundled IANA database.
pub fn zone(name: &str) -> Option<TimeZone> {
    TimeZone::get(name).ok()
}

/// A wall-clock time each recipient gets a request at in their own zone: `"09:00"`,
/// `"09:00:30"`, or with a date, `"2026-12-05T09:00"`. Without a date, a time already past in a
/// recipient's zone when the request is accepted is that time tomorrow; with one, a time already
/// past sends at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    date: Option<Date>,
    time: Time,
}

impl LocalTime {
    /// Parses `HH:MM`, `HH:MM:SS` or `YYYY-MM-DDTHH:MM[:SS]` (no offset: the offset is each
    /// recipient's).
    pub fn parse(raw: &str) -> Result<Self, TimingError> {
        let bad = || {
            TimingError::new(
                "send_at_local",
                format!(
                    "'{raw}' is not a local time: give HH:MM or HH:MM:SS (e.g. 09:00), optionally \
                     after a date (2026-12-05T09:00), with no offset: each recipient's own zone \
                     applies"
                ),
            )
        };
        if raw.len() > 32 {
            return Err(bad());
        }
        if raw.contains('T') {
            let at: DateTime = raw.parse().map_err(|_| bad())?;
            if raw.ends_with('Z') || raw[raw.find('T').unwrap_or(0)..].contains(['+', '-']) {
                return Err(bad());
            }
            Ok(Self {
                date: Some(at.date()),
                time: at.time(),
            })
        } else {
            let time: Time = raw.parse().map_err(|_| bad())?;
            Ok(Self { date: None, time })
        }
    }

    /// The instant a recipient in `zone` gets the request, for a request accepted at
    /// `accepted`. A wall time skipped by a DST change is taken as the same distance after the
    /// change (02:30 on a spring-forward night is 03:30); a repeated one is its first
    /// occurrence.
    pub fn release_at(&self, zone: &TimeZone, accepted: UnixMillis) -> UnixMillis {
        let Ok(now) = Timestamp::from_millisecond(accepted) else {
            return accepted;
        };
        let at = |date: Date| {
            zone.to_ambiguous_zoned(date.to_datetime(self.time))
                .disambiguate(Disambiguation::Compatible)
                .map(|z| z.timestamp().as_millisecond())
                .unwrap_or(accepted)
        };
        match self.date {
            Some(date) => at(date).max(accepted),
            None => {
                let today = now.to_zoned(zone.clone()).date();
                let first = at(today);
                if first >= accepted {
                    first
                } else {
                    today.tomorrow().map_or(accepted, at)
                }
            }
        }
    }
}

impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = self.time.strftime("%H:%M:%S");
        match self.date {
            Some(date) => write!(f, "{date}T{time}"),
            None => write!(f, "{time}"),
        }
    }
}

impl Serialize for LocalTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LocalTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// `at` rounded up to the next multiple of `step` (as it is when it is one already, or when
/// the step is not positive).
pub fn round_up(at: UnixMillis, step: UnixMillis) -> UnixMillis {
    if step <= 0 || at.rem_euclid(step) == 0 {
        return at;
    }
    at.div_euclid(step) * step + step
}

/// Groups recipients' release instants into at most [`MAX_RELEASE_GROUPS`] distinct instants:
/// as they are when they fit, else each rounded up to the next multiple of a step (a minute,
/// doubled until they fit). Returns the instant each input maps to, in input order.
pub fn group_instants(instants: &[UnixMillis]) -> Vec<UnixMillis> {
    let mut step: UnixMillis = 0;
    loop {
        let rounded: Vec<UnixMillis> = instants.iter().map(|at| round_up(*at, step)).collect();
        let mut distinct = rounded.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() <= MAX_RELEASE_GROUPS {
            return rounded;
        }
        step = if step == 0 { 60_000 } else { step * 2 };
    }
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

    fn ms(zone: &str, civil: &str) -> UnixMillis {
        let at: DateTime = civil.parse().unwrap();
        at.to_zoned(TimeZone::get(zone).unwrap())
            .unwrap()
            .timestamp()
            .as_millisecond()
    }

    #[test]
    fn local_times_parse_with_and_without_a_date_and_refuse_offsets() {
        assert_eq!(LocalTime::parse("09:00").unwrap().to_string(), "09:00:00");
        assert_eq!(
            LocalTime::parse("21:15:30").unwrap().to_string(),
            "21:15:30"
        );
        assert_eq!(
            LocalTime::parse("2026-12-05T09:00").unwrap().to_string(),
            "2026-12-05T09:00:00"
        );
        for bad in [
            "9",
            "25:00",
            "09:00Z",
            "2026-12-05T09:00+01:00",
            "2026-12-05T09:00Z",
            "soon",
            "",
        ] {
            let err = LocalTime::parse(bad).unwrap_err();
            assert_eq!(err.field, "send_at_local", "{bad}");
        }
        let json = serde_json::to_string(&LocalTime::parse("07:30").unwrap()).unwrap();
        assert_eq!(
            serde_json::from_str::<LocalTime>(&json).unwrap(),
            LocalTime::parse("07:30").unwrap()
        );
    }

    #[test]
    fn each_zone_gets_its_own_wall_clock_time_and_a_past_time_is_tomorrow() {
        let nine = LocalTime::parse("09:00").unwrap();
        // Accepted at 08:30 UTC on 5 December: 09:00 in Paris (UTC+1) is 08:00 UTC, half an
        // hour ago, so tomorrow; in Los Angeles (UTC-8) 09:00 is 17:00 UTC today; in Auckland
        // (UTC+13) it is already the 5th's evening, so the 6th's 09:00.
        let accepted = ms("UTC", "2026-12-05T08:30:00");
        let at = |z: &str| nine.release_at(&zone(z).unwrap(), accepted);
        assert_eq!(
            at("Europe/Paris"),
            ms("Europe/Paris", "2026-12-06T09:00:00")
        );
        assert_eq!(
            at("America/Los_Angeles"),
            ms("America/Los_Angeles", "2026-12-05T09:00:00")
        );
        assert_eq!(
            at("Pacific/Auckland"),
            ms("Pacific/Auckland", "2026-12-06T09:00:00")
        );
        assert_eq!(at("UTC"), ms("UTC", "2026-12-05T09:00:00"));
        // A dated time already past sends at once.
        let dated = LocalTime::parse("2026-12-05T07:00").unwrap();
        assert_eq!(dated.release_at(&zone("UTC").unwrap(), accepted), accepted);
    }

    #[test]
    fn daylight_saving_changes_are_resolved_by_the_tz_database() {
        let la = zone("America/Los_Angeles").unwrap();
        // 8 March 2026: clocks go from 02:00 to 03:00; 02:30 does not exist and is 03:30 PDT.
        let skipped = LocalTime::parse("2026-03-08T02:30").unwrap();
        let before = ms("UTC", "2026-03-01T00:00:00");
        assert_eq!(
            skipped.release_at(&la, before),
            ms("America/Los_Angeles", "2026-03-08T03:30:00")
        );
        // The same wall time is UTC-8 before the change and UTC-7 after.
        let nine = LocalTime::parse("09:00").unwrap();
        let on = |d: &str| nine.release_at(&la, ms("America/Los_Angeles", d));
        assert_eq!(on("2026-03-07T08:00:00"), ms("UTC", "2026-03-07T17:00:00"));
        assert_eq!(on("2026-03-09T08:00:00"), ms("UTC", "2026-03-09T16:00:00"));
    }

    #[test]
    fn release_instants_fit_in_a_bounded_number_of_groups() {
        let few = [3_000, 1_000, 3_000];
        assert_eq!(group_instants(&few), few);
        // 1,000 distinct instants a second apart: rounded up to steps until at most 100 remain,
        // never earlier than asked.
        let many: Vec<UnixMillis> = (0..1_000).map(|i| 1_000_000 + i * 1_000).collect();
        let grouped = group_instants(&many);
        let mut distinct = grouped.clone();
        distinct.dedup();
        assert!(distinct.len() <= MAX_RELEASE_GROUPS, "{}", distinct.len());
        assert!(grouped.iter().zip(&many).all(|(g, m)| g >= m));
    }
}
