//! Timestamps are carried as microseconds since the Unix epoch, UTC, as in bronze.
//!
//! Every event passes through here twice (parse on input, format for
//! `clean-events`), so the common shapes take a hand-written fast path; chrono
//! decides everything else and is the reference the property tests check against.

use chrono::{DateTime, SecondsFormat, Utc};

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Parses an RFC 3339 time (any offset) into UTC microseconds.
pub fn parse_rfc3339_micros(text: &str) -> Result<i64, String> {
    let micros = match parse_fast(text.as_bytes()) {
        Some(micros) => micros,
        // chrono also takes U+2212 MINUS SIGN in an offset; RFC 3339 is ASCII.
        None if !text.is_ascii() => return Err("not ASCII, as RFC 3339 is".into()),
        None => DateTime::parse_from_rfc3339(text)
            .map_err(|e| e.to_string())?
            .with_timezone(&Utc)
            .timestamp_micros(),
    };
    // An offset can carry 9999-12-31 or 0000-01-01 past what UTC can write
    // in RFC 3339, which every output promises.
    if (FIRST_UTC_US..=LAST_UTC_US).contains(&micros) {
        Ok(micros)
    } else {
        Err("outside the years 0000 to 9999 in UTC".into())
    }
}

/// 0000-01-01T00:00:00Z and the last microsecond of 9999 in UTC microseconds.
const FIRST_UTC_US: i64 = -62_167_219_200_000_000;
const LAST_UTC_US: i64 = 253_402_300_799_999_999;

/// Formats UTC microseconds as RFC 3339 with microseconds and a `Z` suffix.
pub fn format_rfc3339_micros(micros: i64) -> String {
    let mut out = Vec::with_capacity(27);
    write_rfc3339_micros(&mut out, micros);
    String::from_utf8(out).expect("rfc 3339 text is ascii")
}

/// As [`format_rfc3339_micros`], appending to `out` without allocating.
pub fn write_rfc3339_micros(out: &mut Vec<u8>, micros: i64) {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        let text = match DateTime::<Utc>::from_timestamp_micros(micros) {
            Some(t) => t.to_rfc3339_opts(SecondsFormat::Micros, true),
            None => format!("invalid-timestamp-{micros}"),
        };
        out.extend_from_slice(text.as_bytes());
        return;
    }
    let of_day = micros.rem_euclid(MICROS_PER_DAY);
    let (seconds, fraction) = (of_day / 1_000_000, of_day % 1_000_000);
    let mut text = [0u8; 27];
    write_digits(&mut text[0..4], year as u64);
    text[4] = b'-';
    write_digits(&mut text[5..7], month as u64);
    text[7] = b'-';
    write_digits(&mut text[8..10], day as u64);
    text[10] = b'T';
    write_digits(&mut text[11..13], (seconds / 3600) as u64);
    text[13] = b':';
    write_digits(&mut text[14..16], (seconds / 60 % 60) as u64);
    text[16] = b':';
    write_digits(&mut text[17..19], (seconds % 60) as u64);
    text[19] = b'.';
    write_digits(&mut text[20..26], fraction as u64);
    text[26] = b'Z';
    out.extend_from_slice(&text);
}

/// The current time in UTC microseconds.
pub fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

fn write_digits(out: &mut [u8], mut value: u64) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

fn digits(bytes: &[u8]) -> Option<i64> {
    bytes.iter().try_fold(0i64, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`; `None` sends the text to chrono.
fn parse_fast(b: &[u8]) -> Option<i64> {
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (hour, minute, second) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut rest = &b[19..];
    let mut micros = 0;
    if let [b'.', tail @ ..] = rest {
        let count = tail.iter().take_while(|c| c.is_ascii_digit()).count();
        if count == 0 || count > 9 {
            return None;
        }
        let fraction = digits(&tail[..count])?;
        micros = fraction * 1_000_000 / 10i64.pow(count as u32);
        rest = &tail[count..];
    }
    let offset_s = match rest {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return None;
            }
            let offset = h * 3600 + m * 60;
            if *sign == b'-' { -offset } else { offset }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let local_s = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some((local_s - offset_s) * 1_000_000 + micros)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chrono_parse(text: &str) -> Option<i64> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc).timestamp_micros())
    }

    #[test]
    fn round_trips_with_offset_normalised_to_utc() {
        let micros = parse_rfc3339_micros("2026-11-24T08:00:00.123456+01:00").unwrap();
        assert_eq!(format_rfc3339_micros(micros), "2026-11-24T07:00:00.123456Z");
    }

    #[test]
    fn times_that_utc_cannot_write_in_rfc3339_are_refused() {
        let last = parse_rfc3339_micros("9999-12-31T23:59:59.999999Z").unwrap();
        assert_eq!(format_rfc3339_micros(last), "9999-12-31T23:59:59.999999Z");
        let first = parse_rfc3339_micros("0000-01-01T00:00:00Z").unwrap();
        assert_eq!(format_rfc3339_micros(first), "0000-01-01T00:00:00.000000Z");
        for beyond in ["9999-12-31T23:59:59-01:00", "0000-01-01T00:00:00+00:01"] {
            let error = parse_rfc3339_micros(beyond).unwrap_err();
            assert!(error.contains("0000 to 9999"), "{beyond}: {error}");
        }
    }

    #[test]
    fn rejects_dates_without_time_and_impossible_dates() {
        assert!(parse_rfc3339_micros("2026-11-24").is_err());
        assert!(parse_rfc3339_micros("2026-02-30T00:00:00Z").is_err());
        // U+2212 MINUS SIGN, which chrono would read as '-'.
        assert!(parse_rfc3339_micros("2026-11-24T08:00:00\u{2212}01:00").is_err());
        assert!(parse_rfc3339_micros("2026-11-24T24:00:00Z").is_err());
    }

    proptest! {
        #[test]
        fn the_fast_path_agrees_with_chrono(
            micros in -2_000_000_000_000_000i64..250_000_000_000_000_000,
            offset_min in -1439i64..1440,
            digits in 0usize..10,
        ) {
            let t = DateTime::<Utc>::from_timestamp_micros(micros).unwrap()
                .with_timezone(&chrono::FixedOffset::east_opt((offset_min * 60) as i32).unwrap());
            let text = match digits {
                0 => t.format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
                3 => t.format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string(),
                6 => t.format("%Y-%m-%dT%H:%M:%S%.6f%:z").to_string(),
                9 => t.format("%Y-%m-%dT%H:%M:%S%.9f%:z").to_string(),
                _ => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            };
            prop_assert_eq!(parse_rfc3339_micros(&text).ok(), chrono_parse(&text), "{}", text);
        }

        #[test]
        fn any_text_parses_like_chrono(text in "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,10})?(Z|[+-][0-9]{2}:[0-9]{2}|z|)") {
            let writable = chrono_parse(&text).filter(|m| (FIRST_UTC_US..=LAST_UTC_US).contains(m));
            prop_assert_eq!(parse_rfc3339_micros(&text).ok(), writable, "{}", text);
        }

        #[test]
        fn formatting_agrees_with_chrono(micros in -62_135_596_800_000_000i64..253_402_300_799_999_999) {
            let expected = DateTime::<Utc>::from_timestamp_micros(micros).unwrap()
                .to_rfc3339_opts(SecondsFormat::Micros, true);
            prop_assert_eq!(format_rfc3339_micros(micros), expected);
        }
    }
}
