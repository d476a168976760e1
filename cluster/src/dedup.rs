//! The de-duplication window of one partition.
//!
//! The contract asks to catch a repeated `event_id` over at least the last
//! 1,000,000 accepted events or 24 hours. An id is kept while it is among the
//! newest `window_events` ids *or* younger than `window`, so both promises hold;
//! `max_ids` caps memory when 24 hours hold more than that.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long an accepted event id is remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupSettings {
    /// Ids of at least this many most recent accepted events are remembered.
    pub window_events: usize,
    /// Ids younger than this are remembered too...
    pub window: Duration,
    /// ...up to this many ids in all (bounds memory under sustained load).
    pub max_ids: usize,
}

/// Keys that are already 128-bit hashes are hashed by taking 64 bits: the
/// de-duplication set's ids, and the partition's cache of user keys.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }

    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
    }
}

/// A replica's copy of a partition's window: the accepted ids in order, with
/// the window's trimming rule, but without a set to look them up in. Only the
/// partition's owner asks whether an id was seen (a [`DedupWindow`] it builds
/// from this log when it takes the partition), and a checkpoint carries only
/// ids the owner found new, so a replica need not check them again. That saves
/// every member a set insert and removal per event, and the set's memory, for
/// every partition it replicates. The ids of one checkpoint share one time
/// (and an owner's, one second), so times are kept as runs: 16 bytes per id
/// instead of 32.
pub struct DedupLog {
    settings: DedupSettings,
    ids: VecDeque<u128>,
    /// The acceptance times of `ids` as (time, how many ids), oldest first.
    times: VecDeque<(i64, usize)>,
}

impl DedupLog {
    pub fn new(settings: DedupSettings) -> DedupLog {
        DedupLog {
            settings,
            ids: VecDeque::new(),
            times: VecDeque::new(),
        }
    }

    /// A log holding `entries` (oldest first), as [`DedupLog::entries`] gave them.
    ///
    /// Loaded as given and trimmed once, as of its newest entry: that trim
    /// finds nothing to take from a log kept under the same settings (it was
    /// trimmed as of that entry when it came), and applies new ones. Pushing
    /// the entries one by one would trim as of each in turn, and where times
    /// went backwards (a partition moved to a member whose clock is behind)
    /// could forget an id the replica it came from still holds.
    pub fn from_entries(
        settings: DedupSettings,
        entries: impl IntoIterator<Item = (u128, i64)>,
    ) -> DedupLog {
        let mut log = DedupLog::new(settings);
        for (id, at) in entries {
            log.append(id, at);
        }
        log.trim(|_| {});
        log
    }

    /// Appends an id its owner accepted, then trims the log as the window is.
    pub fn push(&mut self, id_hash: u128, accepted_at_us: i64) {
        self.push_evicting(id_hash, accepted_at_us, |_| {});
    }

    /// [`DedupLog::push`], handing each id trimmed off to `evicted`.
    fn push_evicting(&mut self, id_hash: u128, accepted_at_us: i64, evicted: impl FnMut(u128)) {
        self.append(id_hash, accepted_at_us);
        self.trim(evicted);
    }

    fn append(&mut self, id_hash: u128, accepted_at_us: i64) {
        self.ids.push_back(id_hash);
        match self.times.back_mut() {
            Some((at, count)) if *at == accepted_at_us => *count += 1,
            _ => self.times.push_back((accepted_at_us, 1)),
        }
    }

    /// Forgets the oldest ids as of the newest one's time.
    fn trim(&mut self, mut evicted: impl FnMut(u128)) {
        let Some(&(accepted_at_us, _)) = self.times.back() else {
            return;
        };
        let window_us = self.settings.window.as_micros() as i64;
        while let Some((accepted_at, count)) = self.times.front_mut() {
            let beyond_count = self.ids.len() > self.settings.window_events;
            let beyond_age = accepted_at_us - *accepted_at > window_us;
            let over_cap = self.ids.len() > self.settings.max_ids;
            if !((beyond_count && beyond_age) || over_cap) {
                break;
            }
            if let Some(oldest) = self.ids.pop_front() {
                evicted(oldest);
            }
            *count -= 1;
            if *count == 0 {
                self.times.pop_front();
            }
        }
    }

    /// The remembered ids with when they were accepted, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = (u128, i64)> + '_ {
        let times = self
            .times
            .iter()
            .flat_map(|&(at, count)| std::iter::repeat_n(at, count));
        self.ids.iter().copied().zip(times)
    }

    pub fn settings(&self) -> DedupSettings {
        self.settings
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A [`DedupLog`] with a set of its ids: what the partition's owner decides with.
pub struct DedupWindow {
    ids: HashSet<u128, BuildHasherDefault<IdHasher>>,
    log: DedupLog,
}

/// The owner's acceptance times are rounded up to whole seconds, so that the
/// ids of one second share one run of its log (16 bytes per id, not 32). An id
/// is then kept up to a second longer than its own time says, never shorter.
const OWNER_TIME_STEP_US: i64 = 1_000_000;

impl DedupWindow {
    pub fn new(settings: DedupSettings) -> DedupWindow {
        // Not sized up front: a table sized for a full window touches its
        // pages as soon as ids arrive (tens of MiB), however few they are.
        // Growing costs a rehash now and then instead.
        DedupWindow {
            ids: HashSet::default(),
            log: DedupLog::new(settings),
        }
    }

    /// A window holding `entries` (oldest first), as [`DedupWindow::entries`]
    /// or a replica's [`DedupLog::entries`] gave them.
    ///
    /// A replica's log may hold an id twice: it trims by each checkpoint's
    /// time where the owner trimmed by each id's, so it can still hold an id
    /// the owner had forgotten and accepted again. The newer copy is the one
    /// kept: keeping the older would forget the id too early, and a later
    /// redelivery of it would be accepted once more.
    pub fn from_entries(
        settings: DedupSettings,
        entries: impl IntoIterator<Item = (u128, i64)>,
    ) -> DedupWindow {
        let entries: Vec<(u128, i64)> = entries.into_iter().collect();
        let mut window = DedupWindow::new(settings);
        let mut newest_copies = Vec::with_capacity(entries.len());
        for &(id, at) in entries.iter().rev() {
            if window.ids.insert(id) {
                newest_copies.push((id, at));
            }
        }
        drop(entries);
        // Loaded, then trimmed once, as a replica's log is (see `DedupLog::from_entries`).
        for (id, at) in newest_copies.into_iter().rev() {
            window.log.append(id, round_up_to_step(at));
        }
        let ids = &mut window.ids;
        window.log.trim(|oldest| {
            ids.remove(&oldest);
        });
        window
    }

    /// The remembered ids with when they were accepted (rounded up to the
    /// second), oldest first.
    pub fn entries(&self) -> impl Iterator<Item = (u128, i64)> + '_ {
        self.log.entries()
    }

    pub fn settings(&self) -> DedupSettings {
        self.log.settings()
    }

    pub fn len(&self) -> usize {
        self.log.len()
    }

    pub fn is_empty(&self) -> bool {
        self.log.is_empty()
    }

    pub fn contains(&self, id_hash: u128) -> bool {
        self.ids.contains(&id_hash)
    }

    /// Remembers an accepted id. Returns false (and changes nothing) if the id
    /// is already in the window: the event is a duplicate.
    pub fn insert(&mut self, id_hash: u128, accepted_at_us: i64) -> bool {
        if !self.ids.insert(id_hash) {
            return false;
        }
        let ids = &mut self.ids;
        self.log
            .push_evicting(id_hash, round_up_to_step(accepted_at_us), |oldest| {
                ids.remove(&oldest);
            });
        true
    }
}

fn round_up_to_step(at_us: i64) -> i64 {
    at_us
        .saturating_add(OWNER_TIME_STEP_US - 1)
        .div_euclid(OWNER_TIME_STEP_US)
        * OWNER_TIME_STEP_US
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn settings(window_events: usize, window_s: u64, max_ids: usize) -> DedupSettings {
        DedupSettings {
            window_events,
            window: Duration::from_secs(window_s),
            max_ids,
        }
    }

    const S: i64 = 1_000_000;

    #[test]
    fn a_repeated_id_is_a_duplicate() {
        let mut window = DedupWindow::new(settings(10, 60, 100));
        assert!(window.insert(1, 0));
        assert!(!window.insert(1, S));
        assert_eq!(window.len(), 1);
    }

    /// Times that went backwards: the live log kept `2` while `1` (stamped
    /// later) was at its front, and still holds it once the cap took `1`; a
    /// log rebuilt from it keeps the same ids.
    #[test]
    fn a_rebuilt_log_keeps_the_ids_of_the_log_it_came_from() {
        let settings = settings(1, 10, 3);
        let mut live = DedupLog::new(settings);
        for (id, at) in [(1, 100 * S), (2, 50 * S), (3, 65 * S), (4, 60 * S)] {
            live.push(id, at);
        }
        let kept: Vec<(u128, i64)> = live.entries().collect();
        assert_eq!(kept, [(2, 50 * S), (3, 65 * S), (4, 60 * S)]);
        let rebuilt = DedupLog::from_entries(settings, kept.clone());
        assert_eq!(rebuilt.entries().collect::<Vec<_>>(), kept);
        let window = DedupWindow::from_entries(settings, kept.clone());
        assert_eq!(window.entries().collect::<Vec<_>>(), kept);
        // New settings apply when the log is loaded.
        let fewer = DedupLog::from_entries(self::settings(1, 10, 2), kept);
        assert_eq!(fewer.len(), 2);
    }

    /// The replica's log held `1` from before the owner forgot it and from
    /// its acceptance again; the rebuilt window keeps it from the second.
    #[test]
    fn a_window_rebuilt_from_a_log_holding_an_id_twice_keeps_its_newer_copy() {
        let settings = settings(1, 10, 100);
        let entries = [(1, 0), (2, S), (1, 2 * S)];
        let mut window = DedupWindow::from_entries(settings, entries);
        assert_eq!(window.entries().collect::<Vec<_>>(), [(2, S), (1, 2 * S)]);
        // 11 s: 1's old copy would be forgotten now, its new one is 9 s old.
        assert!(window.insert(3, 11 * S));
        assert!(window.contains(1));
        assert!(!window.insert(1, 11 * S), "still a duplicate");
        // 13 s: past 10 s since its second acceptance, it goes.
        assert!(window.insert(4, 13 * S));
        assert!(!window.contains(1));
    }

    #[test]
    fn young_ids_are_kept_beyond_the_count() {
        let mut window = DedupWindow::new(settings(2, 60, 100));
        for id in 0..10 {
            window.insert(id, id as i64 * S);
        }
        assert_eq!(window.len(), 10, "all are younger than 60 s");
        window.insert(100, 200 * S);
        assert_eq!(window.len(), 2, "old ones go once the count is exceeded");
        assert!(window.contains(9) && window.contains(100));
    }

    #[test]
    fn recent_ids_are_kept_beyond_the_age() {
        let mut window = DedupWindow::new(settings(5, 1, 100));
        for id in 0..5 {
            window.insert(id, id as i64 * 10 * S);
        }
        assert_eq!(window.len(), 5, "the last 5 stay however old");
        assert!(window.contains(0));
    }

    #[test]
    fn an_owner_keeps_an_id_up_to_a_second_longer_never_shorter() {
        let mut window = DedupWindow::new(settings(1, 1, 100));
        window.insert(1, S / 2);
        window.insert(2, 2 * S);
        assert!(
            window.contains(1),
            "1.5 s old by its own time, 1 s by its second"
        );
        window.insert(3, 2 * S + S / 2);
        assert!(!window.contains(1) && window.contains(2));
    }

    #[test]
    fn ids_of_one_second_share_one_time() {
        let mut window = DedupWindow::new(settings(10_000, 60, 10_000));
        for id in 0..1_000 {
            window.insert(id, 7 * S + 1 + id as i64);
        }
        assert_eq!(window.log.times.len(), 1);
        assert!(window.entries().all(|(_, at)| at == 8 * S));
    }

    #[test]
    fn the_cap_bounds_memory() {
        let mut window = DedupWindow::new(settings(2, 3600, 3));
        for id in 0..10 {
            window.insert(id, 0);
        }
        assert_eq!(window.len(), 3);
        assert!(window.contains(9) && !window.contains(6));
    }

    proptest! {
        /// Against a reference model over rising acceptance times: after each
        /// accepted id the window holds the newest `max(window_events, ids
        /// younger than the window)` ids, at most `max_ids`; an id is a
        /// duplicate exactly when it is among them.
        #[test]
        fn matches_a_reference_model(
            steps in proptest::collection::vec((0u128..40, 0i64..3), 0..300),
            window_events in 1usize..10,
            window_s in 0u64..5,
            extra_ids in 0usize..10,
        ) {
            let max_ids = window_events + extra_ids;
            let mut window = DedupWindow::new(settings(window_events, window_s, max_ids));
            let mut accepted: Vec<(u128, i64)> = Vec::new();
            let mut kept_from = 0;
            let mut now = 0;
            for (id, seconds_later) in steps {
                now += seconds_later * S;
                let expected_new = !accepted[kept_from..].iter().any(|(a, _)| *a == id);
                prop_assert_eq!(window.insert(id, now), expected_new);
                if expected_new {
                    accepted.push((id, now));
                    let young = accepted[kept_from..]
                        .iter()
                        .filter(|(_, at)| now - at <= window_s as i64 * S)
                        .count();
                    let keep = window_events.max(young).min(max_ids);
                    kept_from = kept_from.max(accepted.len().saturating_sub(keep));
                }
                prop_assert_eq!(window.len(), accepted.len() - kept_from);
            }
        }

        /// A replica's log, given the ids the owner's window accepted (what
        /// checkpoints carry), holds the window's entries after every step, so
        /// a window rebuilt from it on a new owner decides as the old one would.
        #[test]
        fn a_log_of_accepted_ids_keeps_the_windows_entries(
            steps in proptest::collection::vec((0u128..40, 0i64..3), 0..300),
            window_events in 1usize..10,
            window_s in 0u64..5,
            extra_ids in 0usize..10,
        ) {
            let settings = settings(window_events, window_s, window_events + extra_ids);
            let mut window = DedupWindow::new(settings);
            let mut log = DedupLog::new(settings);
            let mut now = 0;
            for (id, seconds_later) in steps {
                now += seconds_later * S;
                if window.insert(id, now) {
                    log.push(id, now);
                }
                prop_assert!(window.entries().eq(log.entries()));
            }
            let reloaded = DedupLog::from_entries(settings, log.entries());
            prop_assert!(reloaded.entries().eq(log.entries()), "a snapshot's log loads as it was");
            let rebuilt = DedupWindow::from_entries(settings, log.entries());
            prop_assert!(rebuilt.entries().eq(window.entries()));
            prop_assert!((0u128..40).all(|id| rebuilt.contains(id) == window.contains(id)));
        }
    }
}
