//! The bronze row: one accepted, de-duplicated event. Its JSON form is the value
//! of the `clean-events` topic.
//!
//! Two shapes share one writer: [`CleanEvent`] borrows from the input message
//! (the ingest hot path allocates nothing per event), [`BronzeRow`] owns its
//! text (readers, fixtures, tests). Both give a [`BronzeRowView`], which is
//! what the JSON writer and the bronze column builder read.

use serde::{Deserialize, Serialize, Serializer};

use crate::event::EngagementEvent;
use crate::plain_json::first_special;
use crate::time::{format_rfc3339_micros, write_rfc3339_micros};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BronzeRow {
    pub event_id: String,
    pub session_id: String,
    pub user_key: String,
    pub video_id: String,
    pub event_type: String,
    pub position_s: f64,
    pub seek_to_s: Option<f64>,
    /// UTC microseconds; RFC 3339 in JSON.
    #[serde(
        rename = "event_time",
        serialize_with = "rfc3339",
        deserialize_with = "from_rfc3339"
    )]
    pub event_time_us: i64,
    pub region: String,
    pub device: Option<String>,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    /// UTC microseconds; RFC 3339 in JSON.
    #[serde(
        rename = "ingested_at",
        serialize_with = "rfc3339",
        deserialize_with = "from_rfc3339"
    )]
    pub ingested_at_us: i64,
}

/// An accepted event as it leaves the partition: the validated input, its
/// `user_key` (hex) and where it was read. Borrows everything.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanEvent<'a> {
    pub event: EngagementEvent<'a>,
    pub user_key: &'a str,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    pub ingested_at_us: i64,
}

/// The columns of one bronze row, borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BronzeRowView<'a> {
    pub event_id: &'a str,
    pub session_id: &'a str,
    pub user_key: &'a str,
    pub video_id: &'a str,
    pub event_type: &'a str,
    pub position_s: f64,
    pub seek_to_s: Option<f64>,
    pub event_time_us: i64,
    pub region: &'a str,
    pub device: Option<&'a str>,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    pub ingested_at_us: i64,
}

impl CleanEvent<'_> {
    pub fn view(&self) -> BronzeRowView<'_> {
        let event = &self.event;
        BronzeRowView {
            event_id: &event.event_id,
            session_id: &event.session_id,
            user_key: self.user_key,
            video_id: &event.video_id,
            event_type: event.event_type.as_str(),
            position_s: event.position_s,
            seek_to_s: event.seek_to_s,
            event_time_us: event.event_time_us,
            region: &event.region,
            device: event.device.as_deref(),
            kafka_partition: self.kafka_partition,
            kafka_offset: self.kafka_offset,
            ingested_at_us: self.ingested_at_us,
        }
    }
}

impl BronzeRow {
    /// A valid row of one `play` event at `offset` of `partition` (event id
    /// `e-<partition>-<offset>`), for fixtures and tests.
    pub fn example(partition: i32, offset: i64) -> BronzeRow {
        BronzeRow {
            event_id: format!("e-{partition}-{offset}"),
            session_id: "s".into(),
            user_key: "0123456789abcdef0123456789abcdef".into(),
            video_id: "vid-00001".into(),
            event_type: "play".into(),
            position_s: 1.5,
            seek_to_s: None,
            event_time_us: 1_795_503_600_000_000,
            region: "eu-west".into(),
            device: None,
            kafka_partition: partition,
            kafka_offset: offset,
            ingested_at_us: 1_795_503_600_000_000 + offset,
        }
    }

    pub fn view(&self) -> BronzeRowView<'_> {
        BronzeRowView {
            event_id: &self.event_id,
            session_id: &self.session_id,
            user_key: &self.user_key,
            video_id: &self.video_id,
            event_type: &self.event_type,
            position_s: self.position_s,
            seek_to_s: self.seek_to_s,
            event_time_us: self.event_time_us,
            region: &self.region,
            device: self.device.as_deref(),
            kafka_partition: self.kafka_partition,
            kafka_offset: self.kafka_offset,
            ingested_at_us: self.ingested_at_us,
        }
    }

    /// The `clean-events` value.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.view().write_json(&mut out);
        out
    }
}

impl From<BronzeRowView<'_>> for BronzeRow {
    fn from(view: BronzeRowView<'_>) -> BronzeRow {
        BronzeRow {
            event_id: view.event_id.to_string(),
            session_id: view.session_id.to_string(),
            user_key: view.user_key.to_string(),
            video_id: view.video_id.to_string(),
            event_type: view.event_type.to_string(),
            position_s: view.position_s,
            seek_to_s: view.seek_to_s,
            event_time_us: view.event_time_us,
            region: view.region.to_string(),
            device: view.device.map(str::to_string),
            kafka_partition: view.kafka_partition,
            kafka_offset: view.kafka_offset,
            ingested_at_us: view.ingested_at_us,
        }
    }
}

impl BronzeRowView<'_> {
    /// Appends the `clean-events` JSON to `out`. The output is byte for byte
    /// what serde_json makes of a [`BronzeRow`] (a property test holds it to
    /// that); written by hand because this runs once per event.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.reserve(512);
        out.extend_from_slice(b"{\"event_id\":");
        write_json_str(out, self.event_id);
        out.extend_from_slice(b",\"session_id\":");
        write_json_str(out, self.session_id);
        out.extend_from_slice(b",\"user_key\":");
        write_json_str(out, self.user_key);
        out.extend_from_slice(b",\"video_id\":");
        write_json_str(out, self.video_id);
        out.extend_from_slice(b",\"event_type\":");
        write_json_str(out, self.event_type);
        out.extend_from_slice(b",\"position_s\":");
        write_json_f64(out, self.position_s);
        out.extend_from_slice(b",\"seek_to_s\":");
        match self.seek_to_s {
            Some(value) => write_json_f64(out, value),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"event_time\":\"");
        write_rfc3339_micros(out, self.event_time_us);
        out.extend_from_slice(b"\",\"region\":");
        write_json_str(out, self.region);
        out.extend_from_slice(b",\"device\":");
        match self.device {
            Some(device) => write_json_str(out, device),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"kafka_partition\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.kafka_partition).as_bytes());
        out.extend_from_slice(b",\"kafka_offset\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.kafka_offset).as_bytes());
        out.extend_from_slice(b",\"ingested_at\":\"");
        write_rfc3339_micros(out, self.ingested_at_us);
        out.extend_from_slice(b"\"}");
    }
}

/// A JSON string literal, escaped as serde_json escapes: `"`, `\` and control
/// characters; everything else (all of UTF-8) verbatim.
fn write_json_str(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    // Ids almost never need an escape: one scan, eight bytes at a time, and
    // one copy.
    if first_special(bytes).is_none() {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(byte >> 4)],
                    HEX[usize::from(byte & 0xf)],
                ]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// As serde_json: shortest round-trip form, `null` for what JSON cannot hold.
fn write_json_f64(out: &mut Vec<u8>, value: f64) {
    if value.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(value).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

fn rfc3339<S: Serializer>(micros: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_rfc3339_micros(*micros))
}

fn from_rfc3339<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let text = String::deserialize(deserializer)?;
    crate::time::parse_rfc3339_micros(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_event;
    use crate::pseudonym::UserKeyer;
    use proptest::prelude::*;

    #[test]
    fn json_uses_contract_column_names_and_no_raw_user_id() {
        let raw = br#"{"event_id":"e1","session_id":"s1","user_id":"alice@example.com","video_id":"v1",
            "event_type":"play","position_s":0,"event_time":"2026-11-24T07:00:00Z","region":"eu-west"}"#;
        let event = parse_event(raw).unwrap();
        let key = UserKeyer::new(b"k").user_key(&event.user_id).to_hex();
        let clean = CleanEvent {
            event,
            user_key: &key,
            kafka_partition: 3,
            kafka_offset: 42,
            ingested_at_us: 1_795_503_601_000_000,
        };
        let row = BronzeRow::from(clean.view());
        // The contract's members, in its order, with nulls for absent ones.
        assert_eq!(
            String::from_utf8(row.to_json()).unwrap(),
            format!(
                r#"{{"event_id":"e1","session_id":"s1","user_key":"{key}","video_id":"v1","event_type":"play","position_s":0.0,"seek_to_s":null,"event_time":"2026-11-24T07:00:00.000000Z","region":"eu-west","device":null,"kafka_partition":3,"kafka_offset":42,"ingested_at":"2026-11-24T07:00:01.000000Z"}}"#
            )
        );
        let json: serde_json::Value = serde_json::from_slice(&row.to_json()).unwrap();
        assert_eq!(json["user_key"], key);
        assert_eq!(json["event_time"], "2026-11-24T07:00:00.000000Z");
        assert_eq!(json["kafka_offset"], 42);
        assert!(!String::from_utf8(row.to_json()).unwrap().contains("alice"));
        let back: BronzeRow = serde_json::from_slice(&row.to_json()).unwrap();
        assert_eq!(back, row);
    }

    fn any_row() -> impl Strategy<Value = BronzeRow> {
        (
            (
                any::<String>(),
                any::<String>(),
                "[0-9a-f]{32}",
                any::<String>(),
            ),
            (
                prop_oneof![Just("play"), Just("pause"), Just("seek"), Just("stop")],
                prop_oneof![0.0..1e7f64, any::<f64>()],
                proptest::option::of(0.0..1e5f64),
                -62_135_596_800_000_000i64..253_402_300_799_999_999,
            ),
            (
                any::<String>(),
                proptest::option::of(any::<String>()),
                any::<i32>(),
                any::<i64>(),
                0i64..253_402_300_799_999_999,
            ),
        )
            .prop_map(
                |(
                    (event_id, session_id, user_key, video_id),
                    (event_type, position_s, seek_to_s, event_time_us),
                    (region, device, kafka_partition, kafka_offset, ingested_at_us),
                )| BronzeRow {
                    event_id,
                    session_id,
                    user_key,
                    video_id,
                    event_type: event_type.to_string(),
                    position_s,
                    seek_to_s,
                    event_time_us,
                    region,
                    device,
                    kafka_partition,
                    kafka_offset,
                    ingested_at_us,
                },
            )
    }

    proptest! {
        /// The hand-written writer and serde_json agree on every row, including
        /// control characters, quotes and non-ASCII text in any field.
        #[test]
        fn the_writer_matches_serde_json(row in any_row()) {
            let by_hand = String::from_utf8(row.to_json()).unwrap();
            let by_serde = serde_json::to_string(&row).unwrap();
            prop_assert_eq!(by_hand, by_serde);
        }
    }
}
