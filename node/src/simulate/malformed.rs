//! The ways a real client breaks the event contract. Each variant must be
//! refused by validation; a test checks that for every variant.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};
use streamreel_protocol::REQUIRED_MEMBERS;

pub const VARIANTS: usize = 10;

/// Corrupts a valid event (as a JSON object) into one of the malformed variants.
pub fn corrupt(rng: &mut ChaCha8Rng, mut event: Map<String, Value>) -> Vec<u8> {
    corrupt_as(rng.random_range(0..VARIANTS), rng, &mut event)
}

pub fn corrupt_as(variant: usize, rng: &mut ChaCha8Rng, event: &mut Map<String, Value>) -> Vec<u8> {
    match variant {
        0 => {
            // Truncated in flight.
            let full = serde_json::to_vec(event).expect("json");
            let cut = rng.random_range(1..full.len() - 1);
            full[..cut].to_vec()
        }
        1 => b"PLAY \xff\xfe legacy-client-frame \x00".to_vec(),
        2 => {
            event.remove(REQUIRED_MEMBERS[rng.random_range(0..REQUIRED_MEMBERS.len())]);
            serde_json::to_vec(event).expect("json")
        }
        3 => {
            let position = event["position_s"].to_string();
            event.insert("position_s".into(), Value::String(position));
            serde_json::to_vec(event).expect("json")
        }
        4 => {
            event.insert("event_type".into(), Value::String("rewind".into()));
            serde_json::to_vec(event).expect("json")
        }
        5 => {
            event.insert("position_s".into(), serde_json::json!(-12.5));
            serde_json::to_vec(event).expect("json")
        }
        6 => {
            event.insert(
                "event_time".into(),
                Value::String("24/11/2026 07:00".into()),
            );
            serde_json::to_vec(event).expect("json")
        }
        7 => {
            event.insert("event_type".into(), Value::String("seek".into()));
            event.remove("seek_to_s");
            serde_json::to_vec(event).expect("json")
        }
        8 => serde_json::to_vec(&Value::Array(vec![Value::Object(event.clone())])).expect("json"),
        _ => {
            event.insert("event_id".into(), Value::String(String::new()));
            serde_json::to_vec(event).expect("json")
        }
    }
}
