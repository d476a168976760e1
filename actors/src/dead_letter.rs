//! The shape of a dead-letter record, apart from any I/O: pseudonymised key,
//! bounded headers, and a payload that fits the topic's record limit.
//!
//! The payload is the input byte for byte (an operator repairs and replays it),
//! so the dead-letter topic holds personal data; the key never does.

use streamreel_protocol::{Rejection, UserKeyer};

/// The longest `error` header; a reason is short, this is a backstop.
pub const MAX_ERROR_BYTES: usize = 256;

/// Room left in a record for Kafka's own framing (record batch and record
/// headers, lengths, timestamps, CRC).
pub const FRAMING_BYTES: usize = 512;

/// A dead-letter record ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter<'a> {
    /// The HMAC `user_key` of the input record's key, when it had one.
    pub key: Option<String>,
    /// The input's value; `None` for a record without one (a tombstone).
    pub payload: Option<&'a [u8]>,
    pub headers: Vec<(&'static str, String)>,
}

impl DeadLetter<'_> {
    /// The record's size as the limit counts it, framing included.
    pub fn size(&self) -> usize {
        FRAMING_BYTES
            + self.key.as_ref().map_or(0, String::len)
            + self.payload.map_or(0, <[u8]>::len)
            + self
                .headers
                .iter()
                .map(|(name, value)| name.len() + value.len())
                .sum::<usize>()
    }
}

/// Where a rejected record came from.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    pub partition: i32,
    pub offset: i64,
}

/// Builds the dead-letter record of `source`, never larger than `record_limit`
/// bytes: a payload that would not fit is cut, with a `truncated-from-bytes`
/// header giving its full size, so that no input can stall its partition.
pub fn dead_letter<'a>(
    keyer: &UserKeyer,
    source: Source<'a>,
    rejection: &Rejection,
    record_limit: usize,
) -> DeadLetter<'a> {
    let key = source.key.map(|key| keyer.user_key_of_bytes(key).to_hex());
    let mut headers = vec![
        ("error", capped(rejection.to_string(), MAX_ERROR_BYTES)),
        ("error-kind", rejection.kind().to_string()),
        ("source-partition", source.partition.to_string()),
        ("source-offset", source.offset.to_string()),
    ];
    let overhead = |headers: &[(&str, String)]| {
        FRAMING_BYTES
            + key.as_ref().map_or(0, String::len)
            + headers
                .iter()
                .map(|(name, value)| name.len() + value.len())
                .sum::<usize>()
    };
    let mut payload = source.payload;
    if let Some(value) = payload
        && value.len() + overhead(&headers) > record_limit
    {
        headers.push(("truncated-from-bytes", value.len().to_string()));
        let room = record_limit.saturating_sub(overhead(&headers));
        payload = Some(&value[..room.min(value.len())]);
    }
    DeadLetter {
        key,
        payload,
        headers,
    }
}

/// `text` cut to at most `limit` bytes, on a character boundary.
fn capped(mut text: String, limit: usize) -> String {
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keyer() -> UserKeyer {
        UserKeyer::new(b"a-test-secret-of-16+")
    }

    fn source(payload: &[u8]) -> Source<'_> {
        Source {
            key: Some(b"user-42"),
            payload: Some(payload),
            partition: 3,
            offset: 17,
        }
    }

    #[test]
    fn the_key_is_the_user_key_and_a_small_payload_is_kept_whole() {
        let record = dead_letter(
            &keyer(),
            source(b"{nope"),
            &Rejection::UnknownEventType,
            10_000,
        );
        assert_eq!(record.key, Some(keyer().user_key("user-42").to_hex()));
        assert_eq!(record.payload, Some(&b"{nope"[..]));
        let header = |name| {
            record
                .headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("source-partition"), Some("3"));
        assert_eq!(header("source-offset"), Some("17"));
        assert_eq!(header("error-kind"), Some("unknown_event_type"));
        assert_eq!(header("truncated-from-bytes"), None);
    }

    #[test]
    fn a_record_without_a_value_is_dead_lettered_without_one() {
        let source = Source {
            payload: None,
            ..source(b"")
        };
        let record = dead_letter(&keyer(), source, &Rejection::UnknownEventType, 10_000);
        assert_eq!(record.payload, None);
        assert!(record.size() > FRAMING_BYTES, "its headers count");
    }

    #[test]
    fn keys_that_are_not_utf8_keep_apart() {
        let key_of = |key: &'static [u8]| {
            let source = Source {
                key: Some(key),
                ..source(b"{nope")
            };
            dead_letter(&keyer(), source, &Rejection::UnknownEventType, 10_000).key
        };
        // Both would read "user-\u{FFFD}" after a lossy conversion.
        let (a, b) = (key_of(b"user-\xff"), key_of(b"user-\xfe"));
        assert!(a.is_some());
        assert_ne!(a, b);
        assert_ne!(a, Some(keyer().user_key("user-\u{FFFD}").to_hex()));
    }

    #[test]
    fn a_payload_too_large_for_the_topic_is_cut_and_says_so() {
        let payload = vec![b'x'; 5_000_000];
        let record = dead_letter(
            &keyer(),
            source(&payload),
            &Rejection::TooLarge {
                bytes: 5_000_000,
                limit: 1_000_000,
            },
            1_048_588,
        );
        assert!(record.size() <= 1_048_588);
        assert!(record.payload.unwrap().len() > 1_000_000);
        assert!(
            record
                .headers
                .contains(&("truncated-from-bytes", "5000000".to_string()))
        );
    }

    proptest! {
        #[test]
        fn a_record_never_exceeds_the_limit(
            len in 0usize..20_000,
            limit in 1_000usize..10_000,
            detail in ".{0,2000}",
        ) {
            let payload = vec![b'a'; len];
            let rejection = Rejection::Schema { detail };
            let record = dead_letter(&keyer(), source(&payload), &rejection, limit);
            prop_assert!(record.size() <= limit);
            prop_assert!(payload.starts_with(record.payload.unwrap()));
            let error = &record.headers[0].1;
            prop_assert!(error.len() <= MAX_ERROR_BYTES);
        }
    }
}
