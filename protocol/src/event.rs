//! The input event (`video-events` topic) and its validation.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::rejection::{Rejection, redact_input};
use crate::time::parse_rfc3339_micros;

/// What the viewer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Play,
    Pause,
    Seek,
    Stop,
}

impl EventType {
    pub const ALL: [EventType; 4] = [
        EventType::Play,
        EventType::Pause,
        EventType::Seek,
        EventType::Stop,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Play => "play",
            EventType::Pause => "pause",
            EventType::Seek => "seek",
            EventType::Stop => "stop",
        }
    }

    pub fn parse(text: &str) -> Option<EventType> {
        match text {
            "play" => Some(EventType::Play),
            "pause" => Some(EventType::Pause),
            "seek" => Some(EventType::Seek),
            "stop" => Some(EventType::Stop),
            _ => None,
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated input event. Strings borrow from the input where JSON escapes allow.
#[derive(Debug, Clone, PartialEq)]
pub struct EngagementEvent<'a> {
    pub event_id: Cow<'a, str>,
    pub session_id: Cow<'a, str>,
    pub user_id: Cow<'a, str>,
    pub video_id: Cow<'a, str>,
    pub event_type: EventType,
    pub position_s: f64,
    pub seek_to_s: Option<f64>,
    /// `event_time` in UTC microseconds since the Unix epoch.
    pub event_time_us: i64,
    pub region: Cow<'a, str>,
    pub device: Option<Cow<'a, str>>,
}

/// The JSON shape before the contract's rules are applied. Unknown fields are ignored.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(expecting = "a JSON object")]
pub(crate) struct WireEvent<'a> {
    #[serde(borrow)]
    pub(crate) event_id: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) session_id: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) user_id: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) video_id: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) event_type: Cow<'a, str>,
    pub(crate) position_s: f64,
    #[serde(default)]
    pub(crate) seek_to_s: Option<f64>,
    #[serde(borrow)]
    pub(crate) event_time: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) region: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(crate) device: Option<Cow<'a, str>>,
}

/// Parses and validates one input event. Any byte string either yields a valid
/// event or a [`Rejection`] saying why; this never panics.
///
/// Identifiers (`event_id`, `session_id`, `user_id`, `video_id`, `region`) must be
/// non-empty: an empty session or user id would silently merge unrelated viewing.
pub fn parse_event(bytes: &[u8]) -> Result<EngagementEvent<'_>, Rejection> {
    // serde would read a JSON array as a struct too; the contract wants an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(not_an_object(bytes));
    }
    // Plain messages take the fast reader; serde_json decides everything
    // else and words every error.
    let wire: WireEvent<'_> = match std::str::from_utf8(bytes) {
        Ok(text) => match crate::plain_json::read_plain_event(text) {
            Some(wire) => wire,
            None => read_with_serde(text)?,
        },
        // serde_json would let invalid UTF-8 pass inside members it skips.
        Err(error) => return Err(invalid_utf8(&error)),
    };

    for (field, value) in [
        ("event_id", &wire.event_id),
        ("session_id", &wire.session_id),
        ("user_id", &wire.user_id),
        ("video_id", &wire.video_id),
        ("region", &wire.region),
    ] {
        if value.is_empty() {
            return Err(Rejection::EmptyField { field });
        }
    }

    let event_type = EventType::parse(&wire.event_type).ok_or(Rejection::UnknownEventType)?;
    check_position("position_s", wire.position_s)?;
    if let Some(target) = wire.seek_to_s {
        check_position("seek_to_s", target)?;
    }
    match (event_type, wire.seek_to_s) {
        (EventType::Seek, None) => return Err(Rejection::MissingSeekTarget),
        (EventType::Seek, Some(_)) => {}
        (_, Some(_)) => {
            return Err(Rejection::UnexpectedSeekTarget {
                event_type: event_type.as_str(),
            });
        }
        (_, None) => {}
    }
    let event_time_us =
        parse_rfc3339_micros(&wire.event_time).map_err(|detail| Rejection::BadTime {
            detail: redact_input(&detail),
        })?;

    Ok(EngagementEvent {
        event_id: wire.event_id,
        session_id: wire.session_id,
        user_id: wire.user_id,
        video_id: wire.video_id,
        event_type,
        // `-0` is a valid position; adding 0 writes it as 0.0, not -0.0.
        position_s: wire.position_s + 0.0,
        seek_to_s: wire.seek_to_s.map(|target| target + 0.0),
        event_time_us,
        region: wire.region,
        device: wire.device,
    })
}

/// The 128-bit hash under which an id is remembered: an `event_id` in the
/// de-duplication window and the checkpoint, a `user_id` in the user-key
/// cache. At a few million ids per partition a collision is beyond
/// astronomically unlikely.
pub fn id_hash(id: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(id.as_bytes())
}

/// The largest position or seek target accepted, in seconds (about 31
/// years). Without a bound, a position near `f64::MAX` passes as finite, and
/// two of them summed overflow a session's `watch_s` or gold's watch hours
/// to infinity, which the data tests refuse at every later run.
pub const MAX_POSITION_S: f64 = 1_000_000_000.0;

fn check_position(field: &'static str, value: f64) -> Result<(), Rejection> {
    if (0.0..=MAX_POSITION_S).contains(&value) {
        Ok(())
    } else {
        Err(Rejection::BadNumber { field, value })
    }
}

/// Why a message that does not start with `{` is refused.
fn not_an_object(bytes: &[u8]) -> Rejection {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => return invalid_utf8(&error),
    };
    if let Some(error) = json_error(text) {
        return classify_json_error(error);
    }
    let kind = match text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .as_bytes()
        .first()
    {
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        Some(b'"') => "a string",
        Some(b'[') => "an array",
        Some(b'{') => "an object",
        _ => "a number",
    };
    Rejection::Schema {
        detail: format!("expected a JSON object, got {kind}"),
    }
}

/// Why `text` is not JSON, if it is not. serde_json's values check number
/// ranges and escapes as well as the syntax; they stop at 128 levels, beyond
/// which only the syntax is checked (valid JSON nested deeper is still JSON).
fn json_error(text: &str) -> Option<serde_json::Error> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(_) => None,
        Err(error) if error.to_string().starts_with("recursion limit exceeded") => {
            serde_json::from_str::<serde::de::IgnoredAny>(text).err()
        }
        Err(error) => Some(error),
    }
}

fn invalid_utf8(error: &std::str::Utf8Error) -> Rejection {
    Rejection::NotJson {
        detail: format!("invalid UTF-8 at byte {}", error.valid_up_to()),
    }
}

/// The members an event must have.
pub const REQUIRED_MEMBERS: [&str; 8] = [
    "event_id",
    "session_id",
    "user_id",
    "video_id",
    "event_type",
    "position_s",
    "event_time",
    "region",
];

/// The members an event may have.
pub const OPTIONAL_MEMBERS: [&str; 2] = ["seek_to_s", "device"];

/// serde_json's reading, which decides every case the fast reader leaves; a
/// wrong type is reported with the member it is in.
fn read_with_serde(text: &str) -> Result<WireEvent<'_>, Rejection> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let wire = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let member = error.path().to_string();
        // serde stops at a wrong type, a missing or repeated member before it
        // reaches a syntax error further on: text that is not JSON at all is
        // `not_json`, whatever serde met first.
        if let Some(syntax) = json_error(text) {
            return classify_json_error(syntax);
        }
        match classify_json_error(error.into_inner()) {
            // Only a listed name: an unknown member's name is input.
            Rejection::Schema { detail }
                if REQUIRED_MEMBERS.contains(&member.as_str())
                    || OPTIONAL_MEMBERS.contains(&member.as_str()) =>
            {
                // Redacting again is harmless and keeps the contract's cap.
                Rejection::Schema {
                    detail: redact_input(&format!("member `{member}`: {detail}")),
                }
            }
            other => other,
        }
    })?;
    deserializer.end().map_err(classify_json_error)?;
    Ok(with_exact_positions(text, wire))
}

/// The two positions as their text says. serde_json (without its
/// `float_roundtrip` feature) can read a decimal 1 ULP off: one of more than
/// 15 significant digits, as a player's `JSON.stringify(currentTime)` writes,
/// or with a large exponent; Rust's parser rounds correctly. The fast reader
/// takes only numbers that read exactly either way.
fn with_exact_positions<'a>(text: &'a str, mut wire: WireEvent<'a>) -> WireEvent<'a> {
    #[derive(Deserialize)]
    struct Positions<'a> {
        #[serde(borrow)]
        position_s: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow)]
        seek_to_s: Option<&'a serde_json::value::RawValue>,
    }
    let exact = |raw: Option<&serde_json::value::RawValue>| {
        raw.and_then(|raw| raw.get().trim().parse::<f64>().ok())
            .filter(|value| value.is_finite())
    };
    // The event was read, so each member is there once and is a number (or
    // a null `seek_to_s`).
    if let Ok(positions) = serde_json::from_str::<Positions<'_>>(text) {
        wire.position_s = exact(positions.position_s).unwrap_or(wire.position_s);
        wire.seek_to_s = wire
            .seek_to_s
            .map(|read| exact(positions.seek_to_s).unwrap_or(read));
    }
    wire
}

fn classify_json_error(error: serde_json::Error) -> Rejection {
    use serde_json::error::Category;
    let detail = redact_input(&error.to_string());
    match error.classify() {
        Category::Data => Rejection::Schema { detail },
        Category::Syntax | Category::Eof | Category::Io => Rejection::NotJson { detail },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VALID: &str = r#"{"event_id":"e1","session_id":"s1","user_id":"u1","video_id":"v1",
        "event_type":"seek","position_s":12.5,"seek_to_s":30,"event_time":"2026-11-24T07:00:00.123Z",
        "region":"eu-west","device":"tv","extra":{"ignored":true}}"#;

    fn with(field: &str, value: &str) -> String {
        with_fields(&[(field, value)])
    }

    /// The valid event with fields replaced (`<absent>` removes one).
    fn with_fields(changes: &[(&str, &str)]) -> String {
        let mut object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(VALID).unwrap();
        for (field, value) in changes {
            if *value == "<absent>" {
                object.remove(*field);
            } else {
                object.insert(field.to_string(), serde_json::from_str(value).unwrap());
            }
        }
        serde_json::to_string(&object).unwrap()
    }

    fn reject(json: &str) -> Rejection {
        parse_event(json.as_bytes()).expect_err("should be rejected")
    }

    #[test]
    fn accepts_a_valid_event_and_ignores_unknown_fields() {
        let event = parse_event(VALID.as_bytes()).unwrap();
        assert_eq!(event.event_id, "e1");
        assert_eq!(event.event_type, EventType::Seek);
        assert_eq!(event.seek_to_s, Some(30.0));
        assert_eq!(event.event_time_us, 1_795_503_600_123_000);
        assert_eq!(event.device.as_deref(), Some("tv"));
    }

    #[test]
    fn long_decimals_are_read_as_their_text_says() {
        // serde_json alone reads the first two 1 ULP off.
        for text in ["938.5958677423489", "1e-23", "0.30000000000000004"] {
            let expected: f64 = text.parse().unwrap();
            let json = VALID
                .replace("\"position_s\":12.5", &format!("\"position_s\":{text}"))
                .replace("\"seek_to_s\":30", &format!("\"seek_to_s\":{text}"));
            let event = parse_event(json.as_bytes()).unwrap();
            assert_eq!(event.position_s.to_bits(), expected.to_bits(), "{text}");
            assert_eq!(event.seek_to_s.map(f64::to_bits), Some(expected.to_bits()));
        }
    }

    #[test]
    fn a_negative_zero_position_is_zero() {
        let seek = with_fields(&[("position_s", "-0.0"), ("seek_to_s", "-0.0")]);
        let event = parse_event(seek.as_bytes()).unwrap();
        assert!(event.position_s.is_sign_positive());
        assert!(event.seek_to_s.is_some_and(f64::is_sign_positive));
    }

    #[test]
    fn device_is_optional_and_may_be_null() {
        assert_eq!(
            parse_event(with("device", "<absent>").as_bytes())
                .unwrap()
                .device,
            None
        );
        assert_eq!(
            parse_event(with("device", "null").as_bytes())
                .unwrap()
                .device,
            None
        );
    }

    #[test]
    fn rejects_what_is_not_json_or_not_an_object() {
        assert_eq!(reject("{not json").kind(), "not_json");
        assert_eq!(reject("").kind(), "not_json");
        let not_object = reject("[1,2]");
        assert_eq!(not_object.kind(), "schema");
        assert!(
            not_object.to_string().contains("a JSON object"),
            "{not_object}"
        );
        // Text that is not JSON is not_json even where serde first meets a
        // wrong type, a missing member or a repeated one.
        for text in [
            r#"{"event_id":7"#,
            r#"{"event_id":"a"} xyz"#,
            r#"{"event_id":"a","event_id":"b""#,
            "[1,2",
            "1e400",
            "[1e400]",
            r#""\ud800""#,
        ] {
            assert_eq!(reject(text).kind(), "not_json", "{text}");
        }
        // Valid JSON nested deeper than serde_json's values go is still JSON.
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(reject(&deep).kind(), "schema");
        assert_eq!(reject(" null").kind(), "schema");
        assert!(reject("\"a\"").to_string().contains("got a string"));
    }

    #[test]
    fn rejects_missing_and_mistyped_fields_naming_them() {
        for field in REQUIRED_MEMBERS {
            let rejection = reject(&with(field, "<absent>"));
            assert!(
                rejection.to_string().contains(field),
                "{field}: {rejection}"
            );
        }
        let mistyped = reject(&with("position_s", "\"12\""));
        assert_eq!(mistyped.kind(), "schema");
        assert!(mistyped.to_string().contains("invalid type"), "{mistyped}");
        assert_eq!(reject(&with("device", "7")).kind(), "schema");
        // The member is named and the value never quoted.
        let phone = reject(&with("user_id", "4155550123")).to_string();
        assert!(
            phone.contains("member `user_id`") && !phone.contains("4155550123"),
            "{phone}"
        );
        let null = reject(&with("video_id", "null")).to_string();
        assert!(null.contains("member `video_id`"), "{null}");
    }

    #[test]
    fn invalid_utf8_is_not_json_even_in_an_unknown_member() {
        let head = &VALID[..VALID.rfind("\"extra\"").unwrap()];
        let mut bytes = head.as_bytes().to_vec();
        bytes.extend_from_slice(b"\"note\":\"\xff\"}");
        assert_eq!(
            parse_event(&bytes).unwrap_err(),
            Rejection::NotJson {
                detail: format!("invalid UTF-8 at byte {}", bytes.len() - 3)
            }
        );
    }

    #[test]
    fn a_negative_seek_target_is_a_bad_number_before_it_is_unexpected() {
        let play = with_fields(&[("event_type", "\"play\""), ("seek_to_s", "-1")]);
        assert_eq!(
            reject(&play),
            Rejection::BadNumber {
                field: "seek_to_s",
                value: -1.0
            }
        );
    }

    #[test]
    fn rejects_empty_identifiers() {
        assert_eq!(
            reject(&with("event_id", "\"\"")),
            Rejection::EmptyField { field: "event_id" }
        );
        assert_eq!(
            reject(&with("user_id", "\"\"")),
            Rejection::EmptyField { field: "user_id" }
        );
    }

    #[test]
    fn checks_event_type_and_seek_target_together() {
        assert_eq!(
            reject(&with("event_type", "\"jump\"")).kind(),
            "unknown_event_type"
        );
        assert_eq!(
            reject(&with("seek_to_s", "null")),
            Rejection::MissingSeekTarget
        );
        let play_with_target = with("event_type", "\"play\"");
        assert_eq!(
            reject(&play_with_target),
            Rejection::UnexpectedSeekTarget { event_type: "play" }
        );
        let play = with_fields(&[("event_type", "\"play\""), ("seek_to_s", "null")]);
        assert_eq!(parse_event(play.as_bytes()).unwrap().seek_to_s, None);
    }

    #[test]
    fn rejects_negative_and_out_of_range_numbers() {
        assert_eq!(
            reject(&with("position_s", "-1")),
            Rejection::BadNumber {
                field: "position_s",
                value: -1.0
            }
        );
        assert_eq!(reject(&with("seek_to_s", "-0.5")).kind(), "bad_number");
        assert_eq!(
            reject(&with("position_s", "1e308")).to_string(),
            "field `position_s` must be a number from 0 to 1000000000, got 1e308"
        );
        assert_eq!(
            reject(&with("seek_to_s", "1000000000.5")).kind(),
            "bad_number"
        );
        assert_eq!(
            reject(&with("position_s", "-1e-300")).to_string(),
            "field `position_s` must be a number from 0 to 1000000000, got -1e-300"
        );
        let longest = with("seek_to_s", "1000000000");
        assert_eq!(
            parse_event(longest.as_bytes()).unwrap().seek_to_s,
            Some(1e9)
        );
        assert_eq!(
            reject(&VALID.replace("12.5", "1e999")).kind(),
            "not_json",
            "serde_json refuses numbers beyond f64"
        );
    }

    #[test]
    fn rejects_times_that_are_not_rfc3339() {
        for (bad, kind) in [
            ("\"2026-11-24\"", "bad_time"),
            ("\"yesterday\"", "bad_time"),
            ("\"2026-13-01T00:00:00Z\"", "bad_time"),
            // Not a string at all: the schema, not the time, is wrong.
            ("1700000000", "schema"),
        ] {
            let rejection = reject(&with("event_time", bad));
            assert_eq!(rejection.kind(), kind, "{bad}: {rejection}");
        }
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let json = with("user_id", r#""caf\u00e9""#);
        let event = parse_event(json.as_bytes()).unwrap();
        assert_eq!(event.user_id, "café");
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_give_a_reason(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            match parse_event(&bytes) {
                Ok(event) => prop_assert!(!event.event_id.is_empty()),
                // The reason goes into a dead-letter header: bounded whatever
                // the input (its detail is capped at 160 characters).
                Err(rejection) => {
                    let reason = rejection.to_string();
                    prop_assert!(!reason.is_empty() && reason.chars().count() <= 220, "{}", reason);
                }
            }
        }

        #[test]
        fn mutated_valid_events_parse_or_give_a_reason(
            cut in 0usize..VALID.len(),
            insert in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let mut bytes = VALID.as_bytes().to_vec();
            bytes.splice(cut..cut, insert);
            if let Ok(event) = parse_event(&bytes) {
                prop_assert!((0.0..=MAX_POSITION_S).contains(&event.position_s));
            }
        }

        #[test]
        fn valid_positions_round_trip(position in 0.0f64..1e9, seek in 0.0f64..1e9) {
            // Written as text (a round trip through serde_json's values
            // could move the number), shortest form, as a player writes it.
            let json = VALID
                .replace("\"position_s\":12.5", &format!("\"position_s\":{position}"))
                .replace("\"seek_to_s\":30", &format!("\"seek_to_s\":{seek}"));
            let event = parse_event(json.as_bytes()).unwrap();
            prop_assert_eq!(event.position_s.to_bits(), position.to_bits());
            prop_assert_eq!(event.seek_to_s.map(f64::to_bits), Some(seek.to_bits()));
        }
    }
}
