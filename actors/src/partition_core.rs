//! What a partition does with one record, apart from any I/O: validate,
//! de-duplicate, pseudonymise. The actor executes the outcome.

use std::collections::HashMap;

use xxhash_rust::xxh3::Xxh3Builder;

use streamreel_protocol::{BronzeRow, Rejection, UserKeyer, event_id_hash, parse_event};

use crate::dedup::DedupWindow;

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Accepted(BronzeRow),
    Duplicate,
    Rejected(Rejection),
}

/// Most viewers send many events; remembering their keys skips an HMAC each time.
const USER_KEY_CACHE: usize = 100_000;

pub struct PartitionCore {
    partition: i32,
    keyer: UserKeyer,
    dedup: DedupWindow,
    /// user_id -> hex user_key.
    user_keys: HashMap<String, String, Xxh3Builder>,
}

impl PartitionCore {
    pub fn new(partition: i32, keyer: UserKeyer, dedup: DedupWindow) -> PartitionCore {
        PartitionCore {
            partition,
            keyer,
            dedup,
            user_keys: HashMap::with_hasher(Xxh3Builder::new()),
        }
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    pub fn dedup_len(&self) -> usize {
        self.dedup.len()
    }

    /// Decides what happens to the record at `offset`.
    pub fn process(&mut self, offset: i64, payload: &[u8], now_us: i64) -> Outcome {
        let event = match parse_event(payload) {
            Ok(event) => event,
            Err(rejection) => return Outcome::Rejected(rejection),
        };
        if !self.dedup.insert(event_id_hash(&event.event_id), now_us) {
            return Outcome::Duplicate;
        }
        let user_key = self.user_key(&event.user_id);
        Outcome::Accepted(BronzeRow::new(
            &event,
            user_key,
            self.partition,
            offset,
            now_us,
        ))
    }

    fn user_key(&mut self, user_id: &str) -> String {
        if let Some(key) = self.user_keys.get(user_id) {
            return key.clone();
        }
        if self.user_keys.len() >= USER_KEY_CACHE {
            self.user_keys.clear();
        }
        let key = self.keyer.user_key(user_id).to_hex();
        self.user_keys.insert(user_id.to_string(), key.clone());
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::DedupSettings;
    use std::time::Duration;

    fn core() -> PartitionCore {
        let dedup = DedupWindow::new(DedupSettings {
            window_events: 1_000_000,
            window: Duration::from_secs(86_400),
            max_ids: 2_000_000,
        });
        PartitionCore::new(2, UserKeyer::new(b"a-test-secret-of-16+"), dedup)
    }

    fn event(id: &str, user: &str) -> Vec<u8> {
        format!(
            r#"{{"event_id":"{id}","session_id":"s","user_id":"{user}","video_id":"v",
            "event_type":"play","position_s":0,"event_time":"2026-11-24T07:00:00Z","region":"eu-west"}}"#
        )
        .into_bytes()
    }

    #[test]
    fn accepts_then_drops_the_same_id_and_rejects_garbage() {
        let mut core = core();
        let Outcome::Accepted(row) = core.process(10, &event("e1", "alice"), 5) else {
            panic!("first delivery is accepted");
        };
        assert_eq!(
            (row.kafka_partition, row.kafka_offset, row.ingested_at_us),
            (2, 10, 5)
        );
        assert_eq!(
            row.user_key,
            UserKeyer::new(b"a-test-secret-of-16+")
                .user_key("alice")
                .to_hex()
        );
        assert_eq!(
            core.process(11, &event("e1", "alice"), 6),
            Outcome::Duplicate
        );
        assert!(matches!(core.process(12, b"nope", 7), Outcome::Rejected(_)));
        assert_eq!(core.dedup_len(), 1, "rejected events are not remembered");
    }

    #[test]
    fn cached_user_keys_equal_fresh_ones() {
        let mut core = core();
        let keys: Vec<String> = (0..3)
            .map(
                |n| match core.process(n, &event(&format!("e{n}"), "bob"), 0) {
                    Outcome::Accepted(row) => row.user_key,
                    other => panic!("{other:?}"),
                },
            )
            .collect();
        assert!(keys.iter().all(|k| *k == keys[0]));
    }
}
