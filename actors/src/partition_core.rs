//! What a partition does with one record, apart from any I/O: validate,
//! de-duplicate, pseudonymise. The actor executes the outcome.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::num::NonZeroU32;

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
    /// de-duplication window, handed on for the checkpoint's new ids;
    /// `output_partition` is the `clean-events` partition of the user's key.
    Accepted {
        clean: CleanEvent<'a>,
        id_hash: u128,
        output_partition: i32,
    },
    Duplicate,
    Rejected(Rejection),
}

/// Most viewers send many events; remembering their keys skips an HMAC each time.
const USER_KEY_CACHE: usize = 100_000;

/// A `user_key` as 32 lowercase hex digits.
type HexKey = [u8; 32];

/// What the cache keeps of a user: the key, and the output partition it maps
/// to, worked out once per user rather than once per event.
#[derive(Debug, Clone, Copy)]
struct CachedUser {
    key: HexKey,
    output_partition: i32,
}

pub struct PartitionCore {
    partition: i32,
    keyer: UserKeyer,
    dedup: DedupWindow,
    /// Keyed by the id's [`id_hash`] rather than the id itself: comparing a
    /// stored id meant a `memcmp` through a pointer to a cold heap string for
    /// every event (7% of the clean path's profile).
    user_keys: HashMap<u128, CachedUser, BuildHasherDefault<IdHasher>>,
    current: CachedUser,
    output_partitions: NonZeroU32,
    max_event_bytes: usize,
}

impl PartitionCore {
    /// A core for input partition `partition`, whose accepted events go to
    /// an output topic of `output_partitions` partitions.
    pub fn new(
        partition: i32,
        keyer: UserKeyer,
        dedup: DedupWindow,
        output_partitions: NonZeroU32,
    ) -> PartitionCore {
        PartitionCore {
            partition,
            keyer,
            dedup,
            user_keys: HashMap::with_capacity_and_hasher(USER_KEY_CACHE, Default::default()),
            current: CachedUser {
                key: [0; 32],
                output_partition: 0,
            },
            output_partitions,
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
        self.look_up_user(&event.user_id);
        Outcome::Accepted {
            clean: CleanEvent {
                event,
                user_key: std::str::from_utf8(&self.current.key).expect("hex digits are ascii"),
                kafka_partition,
                kafka_offset: offset,
                ingested_at_us: now_us,
            },
            id_hash: event_id_hash,
            output_partition: self.current.output_partition,
        }
    }

    /// The user's key and output partition land in `current`, so that a hit
    /// costs one map lookup.
    ///
    /// A cache of at most [`USER_KEY_CACHE`] ids could mistake one user for
    /// another only if two of their 128-bit hashes collided, as unlikely as
    /// for the de-duplication window's event ids.
    fn look_up_user(&mut self, user_id: &str) {
        let user_hash = id_hash(user_id);
        if let Some(user) = self.user_keys.get(&user_hash) {
            self.current = *user;
            return;
        }
        if self.user_keys.len() >= USER_KEY_CACHE {
            self.user_keys.clear();
        }
        let mut key = [0; 32];
        key.copy_from_slice(self.keyer.user_key(user_id).to_hex().as_bytes());
        self.current = CachedUser {
            key,
            output_partition: output_partition(&key, self.output_partitions),
        };
        self.user_keys.insert(user_hash, self.current);
    }
}

/// The partition librdkafka's default partitioner (`consistent_random`)
/// gives a record with key `key`: the key's CRC-32 (zlib's) modulo the
/// partition count. Worked out here, once per user, because librdkafka
/// hashed every record's key again, 2% of the node's CPU.
pub fn output_partition(key: &[u8], partitions: NonZeroU32) -> i32 {
    (crc32fast::hash(key) % partitions.get()) as i32
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
        PartitionCore::new(
            2,
            UserKeyer::new(b"a-test-secret-of-16+"),
            dedup,
            NonZeroU32::new(OUTPUT_PARTITIONS).unwrap(),
        )
    }

    const OUTPUT_PARTITIONS: u32 = 5;

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
            output_partition: partition,
        } = core.process(10, &first, 5)
        else {
            panic!("first delivery is accepted");
        };
        assert_eq!(
            (row.kafka_partition, row.kafka_offset, row.ingested_at_us),
            (2, 10, 5)
        );
        assert_eq!(id_hash, super::id_hash("e1"));
        let five = NonZeroU32::new(OUTPUT_PARTITIONS).unwrap();
        assert_eq!(partition, output_partition(row.user_key.as_bytes(), five));
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
                Outcome::Accepted {
                    clean: row,
                    output_partition: partition,
                    ..
                } => {
                    let key = keyer.user_key(user).to_hex();
                    assert_eq!(row.user_key, key, "{user:?}");
                    let five = NonZeroU32::new(OUTPUT_PARTITIONS).unwrap();
                    assert_eq!(partition, output_partition(key.as_bytes(), five));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    /// librdkafka hashes keys with zlib's `crc32` (CRC-32/ISO-HDLC), whose
    /// check value is that of "123456789"; the partitions are those Python's
    /// `zlib.crc32(key) % count` gives for these keys.
    #[test]
    fn output_partitions_follow_librdkafkas_default_partitioner() {
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        let count = |n| NonZeroU32::new(n).unwrap();
        let key = b"0123456789abcdef0123456789abcdef";
        assert_eq!(crc32fast::hash(key), 0x7759_B50E);
        assert_eq!(output_partition(key, count(4)), 2);
        assert_eq!(output_partition(key, count(7)), 6);
        assert_eq!(output_partition(key, count(12)), 10);
        assert_eq!(output_partition(key, count(1)), 0);
        for n in 1..=64 {
            assert!((0..n as i32).contains(&output_partition(key, count(n))));
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
