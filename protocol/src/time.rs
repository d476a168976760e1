//! Timestamps are carried as microseconds since the Unix epoch, UTC, as in bronze.

use chrono::{DateTime, SecondsFormat, Utc};

/// Parses an RFC 3339 time (any offset) into UTC microseconds.
pub fn parse_rfc3339_micros(text: &str) -> Result<i64, String> {
    let parsed = DateTime::parse_from_rfc3339(text).map_err(|e| e.to_string())?;
    Ok(parsed.with_timezone(&Utc).timestamp_micros())
}

/// Formats UTC microseconds as RFC 3339 with microseconds and a `Z` suffix.
pub fn format_rfc3339_micros(micros: i64) -> String {
    match DateTime::<Utc>::from_timestamp_micros(micros) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Micros, true),
        None => format!("invalid-timestamp-{micros}"),
    }
}

/// The current time in UTC microseconds.
pub fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_offset_normalised_to_utc() {
        let micros = parse_rfc3339_micros("2026-11-24T08:00:00.123456+01:00").unwrap();
        assert_eq!(format_rfc3339_micros(micros), "2026-11-24T07:00:00.123456Z");
    }

    #[test]
    fn rejects_dates_without_time() {
        assert!(parse_rfc3339_micros("2026-11-24").is_err());
    }
}
