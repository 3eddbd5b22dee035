//! Quiet hours: a daily window of a recipient's local time (22:00–08:00, say) in which
//! non-urgent deliveries wait for the window's end instead of going out.
//!
//! A window is two wall times; one whose start is after its end spans midnight. Whether an
//! instant falls inside is read in the recipient's zone (theirs, else the tenant's default,
//! else UTC), DST included, from the IANA database bundled into the build. Deferred deliveries
//! are released in buckets ([`DEFAULT_BUCKET_MS`]): each release instant is rounded up to the
//! bucket, so a request holds one timer per bucket, not one per recipient.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::{Date, Time};
use jiff::tz::{Disambiguation, TimeZone};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::UnixMillis;

/// Deferred deliveries are released on multiples of five minutes.
pub const DEFAULT_BUCKET_MS: u64 = 5 * 60 * 1000;

/// The receipt `error_code` of a delivery deferred by its recipient's quiet hours; its
/// `release_at_ms` says when it goes out.
pub const QUIET_HOURS: &str = "quiet_hours";

/// A daily window of local wall time, start inclusive, end exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuietHours {
    start: Time,
    end: Time,
}

/// A tenant's quiet hours: the window its users without their own get, and the template
/// categories that go out through anyone's quiet hours (security codes, say). `high` priority
/// requests always do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantQuietHours {
    /// The default window; `null` for none.
    #[serde(default)]
    pub default: Option<QuietHours>,
    /// Categories whose notifications are never deferred.
    #[serde(default)]
    pub bypass_categories: Vec<String>,
}

/// The most categories a tenant may list as bypassing quiet hours.
pub const MAX_BYPASS_CATEGORIES: usize = 50;

/// A window that cannot be read, with what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QuietHoursError(pub String);

impl QuietHours {
    /// Parses a window from its two wall times, each `HH:MM` or `HH:MM:SS`.
    pub fn parse(start: &str, end: &str) -> Result<Self, QuietHoursError> {
        let time = |name: &str, raw: &str| -> Result<Time, QuietHoursError> {
            if raw.len() > 8 || !raw.contains(':') {
                return Err(bad_time(name, raw));
            }
            raw.parse().map_err(|_| bad_time(name, raw))
        };
        let (start, end) = (time("start", start)?, time("end", end)?);
        if start == end {
            return Err(QuietHoursError(
                "start and end are the same time: give a window such as 22:00 to 08:00".into(),
            ));
        }
        Ok(Self { start, end })
    }

    /// Reads the stored form, `HH:MM:SS-HH:MM:SS`.
    pub fn from_stored(raw: &str) -> Option<Self> {
        let (start, end) = raw.split_once('-')?;
        Self::parse(start, end).ok()
    }

    /// When the window holding `now` (in `zone`) ends; `None` when `now` is outside it.
    pub fn ends_after(&self, zone: &TimeZone, now: UnixMillis) -> Option<UnixMillis> {
        let local = Timestamp::from_millisecond(now)
            .ok()?
            .to_zoned(zone.clone());
        let (today, t) = (local.date(), local.time());
        let end_day = if self.start < self.end {
            (self.start <= t && t < self.end).then_some(today)?
        } else if t >= self.start {
            today.tomorrow().ok()?
        } else if t < self.end {
            today
        } else {
            return None;
        };
        Some(at(zone, end_day, self.end).max(now))
    }
}

/// A bucket's release instant: `at` rounded up to a multiple of `bucket_ms` (as it is when
/// the bucket is 0).
pub fn bucket(at: UnixMillis, bucket_ms: u64) -> UnixMillis {
    crate::timing::round_up(
        at,
        UnixMillis::try_from(bucket_ms).unwrap_or(UnixMillis::MAX),
    )
}

/// The instant of wall time `time` on `date` in `zone`; a time skipped by a DST change is the
/// same distance after it, a repeated one its first occurrence.
fn at(zone: &TimeZone, date: Date, time: Time) -> UnixMillis {
    zone.to_ambiguous_zoned(date.to_datetime(time))
        .disambiguate(Disambiguation::Compatible)
        .map(|z| z.timestamp().as_millisecond())
        .unwrap_or_default()
}

fn bad_time(name: &str, raw: &str) -> QuietHoursError {
    QuietHoursError(format!(
        "{name} '{raw}' is not a wall time: give HH:MM or HH:MM:SS, e.g. 22:00"
    ))
}

impl fmt::Display for QuietHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}",
            self.start.strftime("%H:%M:%S"),
            self.end.strftime("%H:%M:%S")
        )
    }
}

/// The wire form: `{"start": "22:00", "end": "08:00"}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = QuietHours)]
pub struct QuietHoursWire {
    /// When the window opens, local wall time `HH:MM` or `HH:MM:SS`.
    #[schema(example = "22:00")]
    pub start: String,
    /// When it closes (exclusive); before `start` for a window spanning midnight.
    #[schema(example = "08:00")]
    pub end: String,
}

impl Serialize for QuietHours {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        QuietHoursWire {
            start: self.start.strftime("%H:%M:%S").to_string(),
            end: self.end.strftime("%H:%M:%S").to_string(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for QuietHours {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = QuietHoursWire::deserialize(deserializer)?;
        Self::parse(&wire.start, &wire.end).map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for QuietHours {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <QuietHoursWire as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for QuietHours {}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(raw: &str) -> UnixMillis {
        crate::timing::parse_instant(raw).expect("instant")
    }

    fn zone(name: &str) -> TimeZone {
        crate::timing::zone(name).expect("zone")
    }

    #[test]
    fn a_window_across_midnight_ends_the_next_morning() {
        let night = QuietHours::parse("22:00", "08:00").expect("window");
        let paris = zone("Europe/Paris");
        // 23:30 in Paris (UTC+1 in December) ends at 08:00 the next day.
        assert_eq!(
            night.ends_after(&paris, utc("2026-12-05T22:30:00Z")),
            Some(utc("2026-12-06T07:00:00Z"))
        );
        // 03:00 ends the same morning.
        assert_eq!(
            night.ends_after(&paris, utc("2026-12-06T02:00:00Z")),
            Some(utc("2026-12-06T07:00:00Z"))
        );
        // Noon is outside; the end itself is outside, the start inside.
        assert_eq!(night.ends_after(&paris, utc("2026-12-06T11:00:00Z")), None);
        assert_eq!(night.ends_after(&paris, utc("2026-12-06T07:00:00Z")), None);
        assert!(
            night
                .ends_after(&paris, utc("2026-12-05T21:00:00Z"))
                .is_some()
        );
    }

    #[test]
    fn a_daytime_window_and_seconds() {
        let lunch = QuietHours::parse("12:00", "13:30:15").expect("window");
        let la = zone("America/Los_Angeles");
        assert_eq!(
            lunch.ends_after(&la, utc("2026-07-01T19:10:00Z")),
            Some(utc("2026-07-01T20:30:15Z"))
        );
        assert_eq!(lunch.ends_after(&la, utc("2026-07-01T18:59:59Z")), None);
    }

    #[test]
    fn the_end_follows_daylight_saving() {
        // Paris springs forward on 2026-03-29: 08:00 that morning is 06:00 UTC, not 07:00.
        let night = QuietHours::parse("22:00", "08:00").expect("window");
        assert_eq!(
            night.ends_after(&zone("Europe/Paris"), utc("2026-03-28T23:00:00Z")),
            Some(utc("2026-03-29T06:00:00Z"))
        );
    }

    #[test]
    fn bad_windows_say_what_to_fix() {
        for (start, end) in [("22", "08:00"), ("25:00", "08:00"), ("22:00", "8am")] {
            let e = QuietHours::parse(start, end).expect_err("refused");
            assert!(e.0.contains("HH:MM"), "{e}");
        }
        assert!(QuietHours::parse("08:00", "08:00").is_err());
    }

    #[test]
    fn the_stored_and_wire_forms_round_trip() {
        let night = QuietHours::parse("22:00", "08:00").expect("window");
        assert_eq!(QuietHours::from_stored(&night.to_string()), Some(night));
        let json = serde_json::to_value(night).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"start": "22:00:00", "end": "08:00:00"})
        );
        assert_eq!(
            serde_json::from_value::<QuietHours>(json).expect("back"),
            night
        );
    }

    #[test]
    fn releases_round_up_to_their_bucket() {
        assert_eq!(bucket(600_000, DEFAULT_BUCKET_MS), 600_000);
        assert_eq!(bucket(600_001, DEFAULT_BUCKET_MS), 900_000);
        assert_eq!(bucket(1_234, 0), 1_234);
    }
}
