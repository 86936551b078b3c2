//! Wall-clock timestamps in Azure's textual forms.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A UTC instant with 100 ns precision (Azure's tick), or "never" (`0001-01-01T00:00:00Z`, which
/// Azure uses for times that were never set).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(Option<OffsetDateTime>);

impl Timestamp {
    /// The "never set" value.
    pub const NEVER: Timestamp = Timestamp(None);

    /// Returns the current time, truncated to Azure's 100 ns tick.
    pub fn now() -> Self {
        Self::from_datetime(OffsetDateTime::now_utc())
    }

    /// Wraps a date-time, truncated to 100 ns.
    pub fn from_datetime(at: OffsetDateTime) -> Self {
        let nanos = at.nanosecond();
        let at = at.replace_nanosecond(nanos - nanos % 100).unwrap_or(at);
        Self(Some(at.to_offset(time::UtcOffset::UTC)))
    }

    /// Returns the instant from Unix seconds.
    pub fn from_unix_seconds(seconds: i64) -> Self {
        OffsetDateTime::from_unix_timestamp(seconds).map_or(Self::NEVER, Self::from_datetime)
    }

    /// Returns the instant from Unix milliseconds.
    pub fn from_unix_millis(millis: i64) -> Self {
        let nanos = i128::from(millis) * 1_000_000;
        OffsetDateTime::from_unix_timestamp_nanos(nanos).map_or(Self::NEVER, Self::from_datetime)
    }

    /// Returns Unix milliseconds, or `None` for "never".
    pub fn unix_millis(self) -> Option<i64> {
        self.0.map(|at| (at.unix_timestamp_nanos() / 1_000_000) as i64)
    }

    /// Returns Unix seconds, or `None` for "never".
    pub fn unix_seconds(self) -> Option<i64> {
        self.0.map(OffsetDateTime::unix_timestamp)
    }

    /// Returns the date-time, or `None` for "never".
    pub fn datetime(self) -> Option<OffsetDateTime> {
        self.0
    }

    /// Returns whether this is the "never set" value.
    pub fn is_never(self) -> bool {
        self.0.is_none()
    }
}

impl fmt::Display for Timestamp {
    /// Formats as `2026-11-26T11:13:13.1234567Z` (seven fractional digits, as Azure writes
    /// `$lastUpdated`), or `0001-01-01T00:00:00Z` for "never".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(at) = self.0 else {
            return f.write_str("0001-01-01T00:00:00Z");
        };
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}Z",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second(),
            at.nanosecond() / 100
        )
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl std::str::FromStr for Timestamp {
    type Err = time::error::Parse;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("0001-01-01") {
            return Ok(Self::NEVER);
        }
        OffsetDateTime::parse(s, &Rfc3339).map(Self::from_datetime)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_formats_as_azure_zero_date() {
        assert_eq!(Timestamp::NEVER.to_string(), "0001-01-01T00:00:00Z");
        assert_eq!(
            "0001-01-01T00:00:00Z".parse::<Timestamp>().unwrap(),
            Timestamp::NEVER
        );
    }

    #[test]
    fn formats_with_seven_fraction_digits_and_round_trips() {
        let at = Timestamp::from_unix_seconds(1_795_692_329);
        assert_eq!(at.to_string(), "2026-11-26T11:25:29.0000000Z");
        assert_eq!(at.to_string().parse::<Timestamp>().unwrap(), at);
        let now = Timestamp::now();
        assert_eq!(now.to_string().parse::<Timestamp>().unwrap(), now);
    }
}
