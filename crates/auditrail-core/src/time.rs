//! Timestamps: parsing what clients send and the one format auditrail writes.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

/// RFC 3339 in UTC with `Z` and only as many fractional digits as needed (0, 3, 6 or 9).
pub fn format(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// RFC 3339 in UTC with exactly millisecond precision, as `received_at` is written.
pub fn format_millis(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn parse_rfc3339(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A search bound: a full RFC 3339 timestamp or a bare `YYYY-MM-DD` (midnight UTC).
pub fn parse_bound(s: &str) -> Option<DateTime<Utc>> {
    parse_rfc3339(s).or_else(|| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|dt| dt.and_utc())
    })
}

/// Microseconds since the epoch, the unit time columns are stored in.
pub fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_offsets_and_precision() {
        let t = parse_rfc3339("2026-11-21T11:15:30.120+01:00").unwrap();
        assert_eq!(format(t), "2026-11-21T10:15:30.120Z");
        assert_eq!(
            format(parse_rfc3339("2026-11-21T10:15:30Z").unwrap()),
            "2026-11-21T10:15:30Z"
        );
        assert_eq!(format_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            parse_bound("2026-11-01").map(micros),
            parse_rfc3339("2026-11-01T00:00:00Z").map(micros)
        );
        assert!(parse_bound("yesterday").is_none());
    }
}
