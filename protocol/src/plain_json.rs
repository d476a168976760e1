//! A fast reader for the shape nearly every input event has: one flat JSON
//! object whose strings have no escapes and whose numbers are short decimals.
//!
//! It answers `None` for anything else (escapes, nesting, exponents, long or
//! negative numbers, duplicate or missing fields, any syntax error), and the
//! caller hands that message to serde_json, which decides and words the
//! error. So this reader never accepts what serde_json would refuse, and
//! what it accepts it reads exactly as serde_json would: a property test holds
//! it to that.

use std::borrow::Cow;

use crate::event::WireEvent;

/// Decimals with at most this many digits convert exactly the same way in
/// serde_json and in `str::parse` (both are exact below 2^53).
const MAX_DIGITS: usize = 15;

pub(crate) fn read_plain_event(text: &str) -> Option<WireEvent<'_>> {
    let mut reader = Reader { text, at: 0 };
    let mut fields = Fields::default();
    reader.skip_whitespace();
    reader.expect(b'{')?;
    reader.skip_whitespace();
    if reader.peek() == Some(b'}') {
        reader.at += 1;
    } else {
        loop {
            reader.skip_whitespace();
            let key = reader.string()?;
            reader.skip_whitespace();
            reader.expect(b':')?;
            reader.skip_whitespace();
            fields.read_value(key, &mut reader)?;
            reader.skip_whitespace();
            match reader.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
    }
    reader.skip_whitespace();
    if reader.at != text.len() {
        return None;
    }
    fields.into_wire()
}

#[derive(Default)]
struct Fields<'a> {
    event_id: Option<&'a str>,
    session_id: Option<&'a str>,
    user_id: Option<&'a str>,
    video_id: Option<&'a str>,
    event_type: Option<&'a str>,
    position_s: Option<f64>,
    seek_to_s: Option<Option<f64>>,
    event_time: Option<&'a str>,
    region: Option<&'a str>,
    device: Option<Option<&'a str>>,
}

impl<'a> Fields<'a> {
    fn read_value(&mut self, key: &str, reader: &mut Reader<'a>) -> Option<()> {
        match key {
            "event_id" => set_once(&mut self.event_id, reader.string()?),
            "session_id" => set_once(&mut self.session_id, reader.string()?),
            "user_id" => set_once(&mut self.user_id, reader.string()?),
            "video_id" => set_once(&mut self.video_id, reader.string()?),
            "event_type" => set_once(&mut self.event_type, reader.string()?),
            "position_s" => set_once(&mut self.position_s, reader.number()?),
            "seek_to_s" => {
                let value = if reader.literal(b"null") {
                    None
                } else {
                    Some(reader.number()?)
                };
                set_once(&mut self.seek_to_s, value)
            }
            "event_time" => set_once(&mut self.event_time, reader.string()?),
            "region" => set_once(&mut self.region, reader.string()?),
            "device" => {
                let value = if reader.literal(b"null") {
                    None
                } else {
                    Some(reader.string()?)
                };
                set_once(&mut self.device, value)
            }
            _ => reader.skip_scalar(),
        }
    }

    fn into_wire(self) -> Option<WireEvent<'a>> {
        Some(WireEvent {
            event_id: Cow::Borrowed(self.event_id?),
            session_id: Cow::Borrowed(self.session_id?),
            user_id: Cow::Borrowed(self.user_id?),
            video_id: Cow::Borrowed(self.video_id?),
            event_type: Cow::Borrowed(self.event_type?),
            position_s: self.position_s?,
            seek_to_s: self.seek_to_s.flatten(),
            event_time: Cow::Borrowed(self.event_time?),
            region: Cow::Borrowed(self.region?),
            device: self.device.flatten().map(Cow::Borrowed),
        })
    }
}

/// serde refuses a repeated field, so the fast reader gives up on one.
fn set_once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value);
    Some(())
}

struct Reader<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    /// A string without escapes or control characters, borrowed.
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.at;
        let length = first_special(&self.bytes()[start..])?;
        if self.bytes()[start + length] != b'"' {
            return None;
        }
        self.at = start + length + 1;
        // Both ends sit next to an ASCII quote, so this is a char boundary.
        Some(&self.text[start..start + length])
    }

    /// A non-negative decimal without exponent and with at most
    /// [`MAX_DIGITS`] digits.
    fn number(&mut self) -> Option<f64> {
        let start = self.at;
        let integer = self.digits();
        if integer == 0 || (integer > 1 && self.bytes()[start] == b'0') {
            return None;
        }
        let mut fraction = 0;
        if self.peek() == Some(b'.') {
            self.at += 1;
            fraction = self.digits();
            if fraction == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) || integer + fraction > MAX_DIGITS {
            return None;
        }
        self.text[start..self.at].parse().ok()
    }

    fn digits(&mut self) -> usize {
        let count = self.bytes()[self.at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        self.at += count;
        count
    }

    /// Of a known length, so that the comparison is a few instructions
    /// rather than a call to `memcmp`.
    fn literal<const N: usize>(&mut self, word: &[u8; N]) -> bool {
        if self.bytes().get(self.at..self.at + N) == Some(word.as_slice()) {
            self.at += N;
            true
        } else {
            false
        }
    }

    /// The value of a field the event does not use: only flat scalars here.
    fn skip_scalar(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'0'..=b'9' => self.number().map(drop),
            _ if self.literal(b"true") || self.literal(b"false") || self.literal(b"null") => {
                Some(())
            }
            _ => None,
        }
    }
}

/// Whether `byte` ends a plain string: its closing quote, or what the fast
/// reader leaves to serde_json (an escape, a control character). These are
/// also exactly the bytes a JSON writer must escape.
fn is_special(byte: u8) -> bool {
    byte == b'"' || byte == b'\\' || byte < 0x20
}

/// Where the first [`is_special`] byte of `bytes` is, looked for eight bytes
/// at a time: the reader's largest cost was this scan, a byte and three
/// comparisons at a time, over every key and string of every event.
///
/// In each word, a byte equal to the sought one becomes zero after the XOR,
/// and `(x - 0x01..) & !x & 0x80..` sets the high bit of zero bytes (and of
/// bytes below 0x20 with `0x20..`). A borrow can also flag a byte above a
/// flagged one, never below, so the lowest flag is exact.
pub(crate) fn first_special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x;
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunks of eight"));
        let flags = (zero_bytes(word ^ (ONES * u64::from(b'"')))
            | zero_bytes(word ^ (ONES * u64::from(b'\\')))
            | (word.wrapping_sub(ONES * 0x20) & !word))
            & HIGHS;
        if flags != 0 {
            return Some(offset + flags.trailing_zeros() as usize / 8);
        }
        offset += 8;
    }
    let rest = chunks.remainder().iter().position(|&b| is_special(b))?;
    Some(offset + rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{OPTIONAL_MEMBERS, REQUIRED_MEMBERS};
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;

    fn serde_reads(text: &str) -> Result<WireEvent<'_>, serde_json::Error> {
        serde_json::from_str(text)
    }

    #[test]
    fn reads_a_plain_event_like_serde_json() {
        let text = r#" {"event_id":"e1", "session_id":"s1","user_id":"u\u00e9x","video_id":"v1",
            "event_type":"seek","position_s":12.5,"seek_to_s":30,"event_time":"2026-11-24T07:00:00Z",
            "region":"eu-west","device":null,"extra":true} "#
            .replace("\\u00e9", "é");
        assert_eq!(read_plain_event(&text), Some(serde_reads(&text).unwrap()));
    }

    #[test]
    fn leaves_unusual_messages_to_serde_json() {
        for text in [
            r#"{"event_id":"e\"1"}"#,
            r#"{"extra":{"nested":1}}"#,
            r#"{"position_s":1e3}"#,
            r#"{"position_s":-1}"#,
            r#"{"position_s":01}"#,
            r#"{"position_s":1234567890123456}"#,
            "[]",
            "{}",
        ] {
            assert_eq!(read_plain_event(text), None, "{text}");
        }
    }

    /// Members of a complete event (`KNOWN` of them), then an unknown member
    /// and an escaped spelling of `event_id`.
    const KNOWN: usize = REQUIRED_MEMBERS.len() + OPTIONAL_MEMBERS.len();
    const UNKNOWN: usize = KNOWN;

    fn keys() -> Vec<&'static str> {
        REQUIRED_MEMBERS
            .into_iter()
            .chain(OPTIONAL_MEMBERS)
            .chain(["extra", "event\\u005fid"])
            .collect()
    }

    fn odd_value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("null"),
            Just("true"),
            Just("false"),
            Just("-1"),
            Just("{}"),
            Just("[1]"),
            Just("\"a\\\"b\""),
            Just("\"tab\\tx\""),
            Just("nul"),
            Just("\"\t\""),
            Just("1."),
            Just("01"),
            Just("1e2"),
            Just("12345678901234567"),
        ]
        .prop_map(str::to_string)
    }

    fn text_value() -> impl Strategy<Value = String> {
        prop_oneof![
            30 => "[a-z0-9é :.+-]{0,24}".prop_map(|s| format!("\"{s}\"")),
            1 => odd_value(),
        ]
    }

    fn number_value() -> impl Strategy<Value = String> {
        prop_oneof![
            30 => "(0|[1-9][0-9]{0,16})(\\.[0-9]{1,4})?",
            1 => odd_value(),
        ]
    }

    /// Objects that are mostly complete events, with odd values, repeated and
    /// unknown fields, whitespace and trailing text mixed in.
    fn any_object() -> impl Strategy<Value = String> {
        let keys = keys();
        let known: Vec<BoxedStrategy<Option<(usize, String)>>> = (0..KNOWN)
            .map(|i| {
                let value = if matches!(keys[i], "position_s" | "seek_to_s") {
                    number_value().boxed()
                } else {
                    text_value().boxed()
                };
                proptest::option::weighted(0.98, value.prop_map(move |v| (i, v))).boxed()
            })
            .collect();
        // Mostly unknown keys (ignored); sometimes a repeated or escaped one.
        let extra_key = prop_oneof![9 => Just(UNKNOWN), 1 => 0..keys.len()];
        let extra = proptest::collection::vec((extra_key, text_value()), 0..3);
        (
            known,
            extra,
            proptest::sample::select(vec!["", " ", "\n", "\t "]),
            proptest::sample::select(vec!["", "", "", " ", ",", "}", "x"]),
        )
            .prop_flat_map(move |(known, extra, space, tail)| {
                let entries: Vec<(usize, String)> =
                    known.into_iter().flatten().chain(extra).collect();
                let keys = keys.clone();
                Just(entries).prop_shuffle().prop_map(move |entries| {
                    let body: Vec<String> = entries
                        .iter()
                        .map(|(key, value)| {
                            format!("{space}\"{}\"{space}:{space}{value}", keys[*key])
                        })
                        .collect();
                    format!("{{{}}}{tail}", body.join(","))
                })
            })
    }

    /// Whatever the fast reader accepts, serde_json accepts and reads the same;
    /// and the generated objects exercise the fast path, not only the fallback.
    #[test]
    fn agrees_with_serde_json() {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let objects = any_object();
        let (mut fast_count, cases) = (0, 4000);
        for _ in 0..cases {
            let text = objects.new_tree(&mut runner).unwrap().current();
            if let Some(fast) = read_plain_event(&text) {
                fast_count += 1;
                assert_eq!(
                    Ok(fast),
                    serde_reads(&text).map_err(|e| e.to_string()),
                    "{text}"
                );
            }
        }
        assert!(
            fast_count > cases / 10,
            "only {fast_count} of {cases} took the fast path"
        );
    }

    proptest! {
        /// The word-at-a-time scan finds what a byte-at-a-time scan finds,
        /// wherever the special byte falls in a word, and among UTF-8 bytes.
        #[test]
        fn finds_the_first_special_byte_as_a_plain_scan_does(
            bytes in proptest::collection::vec(
                prop_oneof![
                    8 => b'a'..=b'z',
                    2 => 0x80u8..=0xff,
                    1 => Just(b'"'),
                    1 => Just(b'\\'),
                    1 => 0u8..0x20,
                    1 => Just(0x20u8),
                    1 => any::<u8>(),
                ],
                0..40,
            )
        ) {
            prop_assert_eq!(first_special(&bytes), bytes.iter().position(|&b| is_special(b)));
        }
    }

    proptest! {
        /// Complete events with every field in any order are read by the fast path.
        #[test]
        fn reads_complete_plain_events(
            order in Just((0..KNOWN).collect::<Vec<usize>>()).prop_shuffle(),
            position in 0u32..100_000,
            hundredths in 0u32..100,
        ) {
            // In the order of `keys()`; `position_s` varies.
            let values = [
                "\"e1\"", "\"s1\"", "\"u1\"", "\"v1\"", "\"seek\"", "",
                "\"2026-11-24T07:00:00.5+01:00\"", "\"eu-west\"", "7.25", "\"tv\"",
            ];
            let keys = keys();
            let position = format!("{position}.{hundredths:02}");
            let body: Vec<String> = order
                .iter()
                .map(|&i| {
                    let value = if keys[i] == "position_s" { position.as_str() } else { values[i] };
                    format!("\"{}\":{value}", keys[i])
                })
                .collect();
            let text = format!("{{{}}}", body.join(","));
            let fast = read_plain_event(&text);
            prop_assert!(fast.is_some(), "{}", text);
            prop_assert_eq!(fast.unwrap(), serde_reads(&text).unwrap());
        }
    }
}
