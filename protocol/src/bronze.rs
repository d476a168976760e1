//! The bronze row: one accepted, de-duplicated event. Its JSON form is the value
//! of the `clean-events` topic.

use serde::{Deserialize, Serialize, Serializer};

use crate::event::EngagementEvent;
use crate::time::format_rfc3339_micros;

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

impl BronzeRow {
    pub fn new(
        event: &EngagementEvent<'_>,
        user_key: String,
        kafka_partition: i32,
        kafka_offset: i64,
        ingested_at_us: i64,
    ) -> BronzeRow {
        BronzeRow {
            event_id: event.event_id.to_string(),
            session_id: event.session_id.to_string(),
            user_key,
            video_id: event.video_id.to_string(),
            event_type: event.event_type.as_str().to_string(),
            position_s: event.position_s,
            seek_to_s: event.seek_to_s,
            event_time_us: event.event_time_us,
            region: event.region.to_string(),
            device: event.device.as_ref().map(|d| d.to_string()),
            kafka_partition,
            kafka_offset,
            ingested_at_us,
        }
    }

    /// The `clean-events` value. `user_key` is the hex form of a [`crate::UserKey`].
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a bronze row always serialises")
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

    #[test]
    fn json_uses_contract_column_names_and_no_raw_user_id() {
        let raw = br#"{"event_id":"e1","session_id":"s1","user_id":"alice@example.com","video_id":"v1",
            "event_type":"play","position_s":0,"event_time":"2026-11-24T07:00:00Z","region":"eu-west"}"#;
        let event = parse_event(raw).unwrap();
        let key = UserKeyer::new(b"k").user_key(&event.user_id);
        let row = BronzeRow::new(&event, key.to_hex(), 3, 42, 1_795_503_601_000_000);
        let json: serde_json::Value = serde_json::from_slice(&row.to_json()).unwrap();
        assert_eq!(json["user_key"], key.to_hex());
        assert_eq!(json["event_time"], "2026-11-24T07:00:00.000000Z");
        assert_eq!(json["kafka_offset"], 42);
        assert!(!String::from_utf8(row.to_json()).unwrap().contains("alice"));
        let back: BronzeRow = serde_json::from_slice(&row.to_json()).unwrap();
        assert_eq!(back, row);
    }
}
