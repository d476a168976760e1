//! A set of text keys asked about every row of a scan, most of whose rows
//! hold none of them: silver's search for the sessions a chunk touches
//! (every `session_id` of `view_sessions`) and gold's pair count (every
//! `user_key`).
//!
//! In the +1% bench run the exact set's lookups (foldhash over a 29-byte id,
//! then a compare) were a fifth of both scans' CPU. A [`KeySieve`] answers
//! first, from one bit per slot of a cheap hash of three 8-byte words of the
//! key; with 32 or more slots a key it lets 2-3% of the other keys through, and
//! only those reach the exact set. It never turns a key of the set away.

use std::collections::HashSet;

/// Slots per key, at least: at most about 1 in 32 keys outside the set
/// passes the sieve (slots are rounded up to a power of two).
const SLOTS_PER_KEY: usize = 32;

/// A key set with a sieve before its exact lookup.
#[derive(Debug, Clone, Default)]
pub struct SoughtKeys {
    sieve: KeySieve,
    exact: HashSet<String, foldhash::fast::RandomState>,
}

impl SoughtKeys {
    pub fn contains(&self, key: &str) -> bool {
        self.sieve.may_contain(key) && self.exact.contains(key)
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
    }
}

impl FromIterator<String> for SoughtKeys {
    fn from_iter<I: IntoIterator<Item = String>>(keys: I) -> Self {
        let exact: HashSet<String, foldhash::fast::RandomState> = keys.into_iter().collect();
        let sieve = KeySieve::new(exact.iter().map(String::as_str), exact.len());
        Self { sieve, exact }
    }
}

/// One bit per slot; a key's slot is the top bits of its [`cheap_hash`].
#[derive(Debug, Clone)]
pub struct KeySieve {
    words: Vec<u64>,
    /// 64 minus log2 of the number of slots.
    shift: u32,
}

impl Default for KeySieve {
    /// The sieve of no key: 64 empty slots.
    fn default() -> Self {
        Self::new([], 0)
    }
}

impl KeySieve {
    /// The sieve of `keys`, of which there are about `count`.
    pub fn new<'a>(keys: impl IntoIterator<Item = &'a str>, count: usize) -> Self {
        let slots = count
            .saturating_mul(SLOTS_PER_KEY)
            .next_power_of_two()
            .max(64);
        let mut sieve = Self {
            words: vec![0; slots / 64],
            shift: 64 - slots.trailing_zeros(),
        };
        for key in keys {
            let slot = sieve.slot(key);
            sieve.words[slot / 64] |= 1 << (slot % 64);
        }
        sieve
    }

    /// False only when `key` is none of the sieve's keys.
    pub fn may_contain(&self, key: &str) -> bool {
        let slot = self.slot(key);
        self.words[slot / 64] & (1 << (slot % 64)) != 0
    }

    fn slot(&self, key: &str) -> usize {
        // The top bits of a multiplicative hash are its best mixed ones.
        (cheap_hash(key.as_bytes()) >> self.shift) as usize
    }
}

/// A hash of `key`'s first, middle and last eight bytes and its length:
/// three loads and a multiply, where a full hash reads every byte. Keys that
/// differ only elsewhere share a slot, which costs a lookup, not a result.
fn cheap_hash(key: &[u8]) -> u64 {
    let word = |at: usize| {
        let mut bytes = [0u8; 8];
        let end = key.len().min(at + 8);
        bytes[..end - at].copy_from_slice(&key[at..end]);
        u64::from_le_bytes(bytes)
    };
    let len = key.len();
    let (first, middle, last) = match len {
        0..=8 => (word(0), 0, 0),
        _ => (word(0), word(len / 2 - 4), word(len - 8)),
    };
    (first ^ middle.rotate_left(21) ^ last.rotate_left(42) ^ len as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn a_set_finds_its_keys_and_only_them(
            keys in proptest::collection::vec(".{0,40}", 0..200),
            others in proptest::collection::vec(".{0,40}", 0..200),
        ) {
            let set: SoughtKeys = keys.iter().cloned().collect();
            for key in &keys {
                prop_assert!(set.contains(key), "{key:?} turned away");
            }
            for other in &others {
                prop_assert_eq!(set.contains(other), keys.contains(other));
            }
        }
    }

    /// How many of the `others` ids after the first `keys` ids pass the
    /// sieve of those `keys`.
    fn passed(id: impl Fn(u64) -> String, keys: u64, others: u64) -> usize {
        let sought: Vec<String> = (0..keys).map(&id).collect();
        let sieve = KeySieve::new(sought.iter().map(String::as_str), sought.len());
        (keys..keys + others)
            .filter(|&i| sieve.may_contain(&id(i)))
            .count()
    }

    #[test]
    fn the_sieve_lets_few_other_ids_through() {
        let id = |i: u64| format!("sess-{:024x}", i.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let passed = passed(id, 20_000, 200_000);
        // 20,000 keys in 2^20 slots: about 1.9% of other keys pass.
        assert!(passed < 200_000 / 25, "{passed} of 200,000 passed");
    }

    #[test]
    fn sequential_ids_spread_over_the_slots() {
        let passed = passed(|i| format!("session-{i:012}"), 1_000, 100_000);
        assert!(passed < 100_000 / 10, "{passed} of 100,000 passed");
    }

    #[test]
    fn an_empty_set_holds_nothing() {
        let set = SoughtKeys::default();
        assert!(set.is_empty());
        assert!(!set.contains(""));
        assert!(!set.contains("sess-1"));
    }
}
