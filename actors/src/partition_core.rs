//! What a partition does with one record, apart from any I/O: validate,
//! de-duplicate, pseudonymise. The actor executes the outcome.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use streamreel_protocol::{CleanEvent, Rejection, UserKeyer, id_hash, parse_event};

use crate::dedup::{DedupWindow, IdHasher};

/// What becomes of one record. An accepted event borrows the record and the
/// partition's user-key cache, so deciding allocates nothing.
// Boxing the accepted event would allocate once per event; an outcome is
// matched as soon as it is returned and never stored, so its size costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<'a> {
    /// `id_hash` is the event id's [`id_hash`], already computed for the
    /// de-duplication window, handed on for the checkpoint's new ids.
    Accepted {
        clean: CleanEvent<'a>,
        id_hash: u128,
    },
    Duplicate,
    Rejected(Rejection),
}

/// Most viewers send many events; remembering their keys skips an HMAC each time.
const USER_KEY_CACHE: usize = 100_000;

/// A `user_key` as 32 lowercase hex digits.
type HexKey = [u8; 32];

pub struct PartitionCore {
    partition: i32,
    keyer: UserKeyer,
    dedup: DedupWindow,
    /// Keyed by the id's [`id_hash`] rather than the id itself: comparing a
    /// stored id meant a `memcmp` through a pointer to a cold heap string for
    /// every event (7% of the clean path's profile).
    user_keys: HashMap<u128, HexKey, BuildHasherDefault<IdHasher>>,
    current_key: HexKey,
    max_event_bytes: usize,
}

impl PartitionCore {
    pub fn new(partition: i32, keyer: UserKeyer, dedup: DedupWindow) -> PartitionCore {
        PartitionCore {
            partition,
            keyer,
            dedup,
            user_keys: HashMap::with_capacity_and_hasher(USER_KEY_CACHE, Default::default()),
            current_key: [0; 32],
            max_event_bytes: usize::MAX,
        }
    }

    /// Records above `limit` bytes are rejected unread: their clean record
    /// would not fit the output topic, and parsing them costs for nothing.
    pub fn with_max_event_bytes(mut self, limit: usize) -> PartitionCore {
        self.max_event_bytes = limit;
        self
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    pub fn dedup_len(&self) -> usize {
        self.dedup.len()
    }

    /// Decides what happens to the record at `offset`.
    pub fn process<'a>(&'a mut self, offset: i64, payload: &'a [u8], now_us: i64) -> Outcome<'a> {
        if payload.len() > self.max_event_bytes {
            return Outcome::Rejected(Rejection::TooLarge {
                bytes: payload.len(),
                limit: self.max_event_bytes,
            });
        }
        let event = match parse_event(payload) {
            Ok(event) => event,
            Err(rejection) => return Outcome::Rejected(rejection),
        };
        let event_id_hash = id_hash(&event.event_id);
        if !self.dedup.insert(event_id_hash, now_us) {
            return Outcome::Duplicate;
        }
        let kafka_partition = self.partition;
        let user_key = self.user_key(&event.user_id);
        Outcome::Accepted {
            clean: CleanEvent {
                event,
                user_key,
                kafka_partition,
                kafka_offset: offset,
                ingested_at_us: now_us,
            },
            id_hash: event_id_hash,
        }
    }

    /// The key lands in `current_key` so that a hit costs one map lookup.
    ///
    /// A cache of at most [`USER_KEY_CACHE`] ids could mistake one user for
    /// another only if two of their 128-bit hashes collided, as unlikely as
    /// for the de-duplication window's event ids.
    fn user_key(&mut self, user_id: &str) -> &str {
        let user_hash = id_hash(user_id);
        if let Some(hex) = self.user_keys.get(&user_hash) {
            self.current_key = *hex;
        } else {
            if self.user_keys.len() >= USER_KEY_CACHE {
                self.user_keys.clear();
            }
            self.current_key
                .copy_from_slice(self.keyer.user_key(user_id).to_hex().as_bytes());
            self.user_keys.insert(user_hash, self.current_key);
        }
        std::str::from_utf8(&self.current_key).expect("hex digits are ascii")
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
        let first = event("e1", "alice");
        let Outcome::Accepted {
            clean: row,
            id_hash,
        } = core.process(10, &first, 5)
        else {
            panic!("first delivery is accepted");
        };
        assert_eq!(
            (row.kafka_partition, row.kafka_offset, row.ingested_at_us),
            (2, 10, 5)
        );
        assert_eq!(id_hash, super::id_hash("e1"));
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
        let fresh = UserKeyer::new(b"a-test-secret-of-16+")
            .user_key("bob")
            .to_hex();
        for n in 0..3 {
            let payload = event(&format!("e{n}"), "bob");
            match core.process(n, &payload, 0) {
                Outcome::Accepted { clean: row, .. } => assert_eq!(row.user_key, fresh),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn interleaved_users_each_keep_their_own_cached_key() {
        let mut core = core();
        let keyer = UserKeyer::new(b"a-test-secret-of-16+");
        let users = ["ann", "ben", "cy", "ann ", "Ann"];
        for n in 0..20 {
            let user = users[n % users.len()];
            let payload = event(&format!("e{n}"), user);
            match core.process(n as i64, &payload, 0) {
                Outcome::Accepted { clean: row, .. } => {
                    assert_eq!(row.user_key, keyer.user_key(user).to_hex(), "{user:?}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn an_oversized_record_is_rejected_unread_and_not_remembered() {
        let mut core = core().with_max_event_bytes(300);
        let mut big = event("e-big", "carol");
        big.truncate(big.len() - 1);
        big.extend_from_slice(format!(r#","device":"{}"}}"#, "x".repeat(400)).as_bytes());
        match core.process(1, &big, 0) {
            Outcome::Rejected(Rejection::TooLarge { bytes, limit }) => {
                assert_eq!((bytes, limit), (big.len(), 300));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(core.dedup_len(), 0);
        let at_limit = event("e-big", "carol");
        assert!(at_limit.len() <= 300);
        assert!(matches!(
            core.process(2, &at_limit, 0),
            Outcome::Accepted { .. }
        ));
    }
}
