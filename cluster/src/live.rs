//! Live aggregates: accepted events per video, per minute of event time, per
//! event type, merged over all partitions. Kept for a retention of event time
//! behind the newest event time seen (not behind the wall clock), so replicas
//! that apply the same commands hold the same numbers. That "newest minute",
//! the live clock, never runs ahead of the minute of the clock of the node that
//! proposed the events, so devices whose clocks run ahead cannot move the real
//! minutes out of the views.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

pub const MINUTE_US: i64 = 60_000_000;

/// Event types in counting order: play, pause, seek, stop.
pub const EVENT_TYPES: [&str; 4] = ["play", "pause", "seek", "stop"];

/// Accepted events of one video in one minute of event time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveCount {
    pub video_id: String,
    /// Start of the minute, UTC microseconds.
    pub minute_us: i64,
    /// Counts by [`EVENT_TYPES`] order.
    pub counts: [u64; 4],
}

/// The index of an event type in [`EVENT_TYPES`].
pub fn event_type_index(event_type: &str) -> Option<usize> {
    EVENT_TYPES.iter().position(|t| *t == event_type)
}

pub fn minute_of(event_time_us: i64) -> i64 {
    event_time_us.div_euclid(MINUTE_US) * MINUTE_US
}

/// foldhash, not std's SipHash: every accepted event is counted here.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Counts of one batch, gathered before they become a checkpoint increment.
#[derive(Debug, Default)]
pub struct LiveBatch {
    /// minute -> video -> counts; looked up by `&str` so a hit allocates nothing.
    counts: FastMap<i64, FastMap<String, [u64; 4]>>,
    /// About what the counts take in the checkpoint that carries them.
    bytes: usize,
}

/// About what a count takes in a checkpoint besides its video id: the id's
/// length, the minute and the four counts, as varints.
const LIVE_COUNT_BYTES: usize = 16;

/// The video id under which a batch counts events whose id is longer than
/// [`LIVE_VIDEO_ID_MAX_BYTES`]: no input id is empty, so replicas know these
/// events are accepted (for the accepted counter) and not counted live,
/// without the checkpoint carrying their ids.
const LEFT_OUT_VIDEO_ID: &str = "";

impl LiveBatch {
    pub fn add(&mut self, video_id: &str, event_time_us: i64, event_type: &str) {
        let Some(index) = event_type_index(event_type) else {
            return;
        };
        let video_id = if video_id.len() > LIVE_VIDEO_ID_MAX_BYTES {
            LEFT_OUT_VIDEO_ID
        } else {
            video_id
        };
        let videos = self.counts.entry(minute_of(event_time_us)).or_default();
        match videos.get_mut(video_id) {
            Some(counts) => counts[index] += 1,
            None => {
                let mut counts = [0; 4];
                counts[index] = 1;
                videos.insert(video_id.to_string(), counts);
                self.bytes += video_id.len() + LIVE_COUNT_BYTES;
            }
        }
    }

    /// About the bytes the batch's counts add to its checkpoint: one count
    /// per (minute, video), so up to one per event.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The batch's counts, sorted so that every replica folds them in one order.
    pub fn take(&mut self) -> Vec<LiveCount> {
        self.bytes = 0;
        let mut counts: Vec<LiveCount> = self
            .counts
            .drain()
            .flat_map(|(minute_us, videos)| {
                videos.into_iter().map(move |(video_id, counts)| LiveCount {
                    video_id,
                    minute_us,
                    counts,
                })
            })
            .collect();
        counts.sort_by(|a, b| (a.minute_us, &a.video_id).cmp(&(b.minute_us, &b.video_id)));
        counts
    }
}

/// The merged live aggregates of the cluster.
#[derive(Debug, Clone, Default)]
pub struct LiveAggregates {
    /// minute -> video -> counts: a fold finds a (minute, video) it already
    /// counts by `&str`, without building a key (the counts of a checkpoint
    /// are applied on every replica).
    counts: BTreeMap<i64, BTreeMap<String, [u64; 4]>>,
    /// The minutes each video has in `counts`, so that one video's minutes
    /// are found without scanning every video's: readers hold the state lock
    /// that applying commands waits for.
    minutes_of: HashMap<String, BTreeSet<i64>>,
    /// Events per minute over every video, and in all: the dashboard's live
    /// view reads them every few seconds under that lock, without a scan.
    minute_totals: BTreeMap<i64, u64>,
    total: u64,
    /// Events this replica counted since it loaded its state, starting from
    /// the total it loaded. Unlike `total` it never falls as minutes are
    /// forgotten, so its change over time is the accepted rate. Not part of
    /// the replicated state: a snapshot restarts it.
    counted_since_load: u64,
    /// Which load of this process `counted_since_load` counts from: a
    /// snapshot loaded can move it up by more than was accepted meanwhile,
    /// and a reader of the rate must then start again.
    load: u64,
    /// (minute, video) counts kept: what memory grows with.
    entries: usize,
    /// The live clock: the newest minute seen, but never after the minute
    /// of the proposal that brought it (see [`LiveAggregates::fold`]).
    /// Minutes after it are counted and kept, and enter the windows once it
    /// reaches them.
    newest_minute_us: Option<i64>,
}

/// Replicas agree on the counts; `counted_since_load` is each replica's own.
impl PartialEq for LiveAggregates {
    fn eq(&self, other: &LiveAggregates) -> bool {
        let LiveAggregates {
            counts,
            minutes_of,
            minute_totals,
            total,
            counted_since_load: _,
            load: _,
            entries,
            newest_minute_us,
        } = self;
        *counts == other.counts
            && *minutes_of == other.minutes_of
            && *minute_totals == other.minute_totals
            && *total == other.total
            && *entries == other.entries
            && *newest_minute_us == other.newest_minute_us
    }
}

impl Eq for LiveAggregates {}

/// What a snapshot holds of [`LiveAggregates`]: the counts, without the
/// index, which is rebuilt when loaded (so a snapshot copies no index).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveImage {
    counts: BTreeMap<(i64, String), [u64; 4]>,
    newest_minute_us: Option<i64>,
}

impl From<LiveImage> for LiveAggregates {
    fn from(image: LiveImage) -> LiveAggregates {
        let mut live = LiveAggregates {
            newest_minute_us: image.newest_minute_us,
            load: LOADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
            ..LiveAggregates::default()
        };
        for ((minute, video), counts) in image.counts {
            live.minutes_of
                .entry(video.clone())
                .or_default()
                .insert(minute);
            let events: u64 = counts.iter().sum();
            *live.minute_totals.entry(minute).or_default() += events;
            live.total += events;
            live.counted_since_load += events;
            live.entries += 1;
            live.counts.entry(minute).or_default().insert(video, counts);
        }
        live
    }
}

/// Loads of live aggregates from snapshots in this process.
static LOADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How far ahead of its proposal's clock an event's minute may be and still
/// count live: one event from a device whose clock reads the year 9999 would
/// be kept until the live clock reached it, forever. Generous, so that a
/// simulated stream running days ahead of the clock is still counted.
pub const LIVE_FUTURE_LIMIT_US: i64 = 30 * 24 * 60 * MINUTE_US;

/// The longest `video_id` counted live. The input rules bound an id only by
/// the record limit, so without this a producer sending ids of a megabyte
/// would grow every member's memory by a megabyte per (minute, video) count,
/// far below the `max-entries` cap, which counts entries, not bytes.
pub const LIVE_VIDEO_ID_MAX_BYTES: usize = 256;

impl LiveAggregates {
    /// Folds counts in, then forgets minutes older than `retention_us` behind
    /// the live clock. Minutes starting beyond [`LIVE_FUTURE_LIMIT_US`] after
    /// `proposed_at_us` (the increment's own time, so replicas agree), and
    /// video ids longer than [`LIVE_VIDEO_ID_MAX_BYTES`], are left out of the
    /// counts; their events are in bronze like any other, and in the
    /// accepted counter.
    ///
    /// The live clock moves to the newest minute folded, but never past the
    /// minute of `proposed_at_us`. Retention and the newest-minutes windows
    /// are measured from it: without that bound, a single device whose clock
    /// reads three days ahead would make every real minute older than a
    /// 48-hour retention (forgotten on every replica), and devices a few
    /// minutes ahead would fill the newest minutes of every window.
    pub fn fold(&mut self, counts: &[LiveCount], retention_us: i64, proposed_at_us: i64) {
        let latest_allowed = proposed_at_us.saturating_add(LIVE_FUTURE_LIMIT_US);
        let clock_bound = minute_of(proposed_at_us);
        for count in counts {
            let events: u64 = count.counts.iter().sum();
            // Accepted, so the accepted rate counts it, kept or not.
            self.counted_since_load += events;
            let left_out = count.video_id == LEFT_OUT_VIDEO_ID
                || count.video_id.len() > LIVE_VIDEO_ID_MAX_BYTES;
            if left_out || count.minute_us > latest_allowed {
                continue;
            }
            *self.minute_totals.entry(count.minute_us).or_default() += events;
            self.total += events;
            let videos = self.counts.entry(count.minute_us).or_default();
            if let Some(totals) = videos.get_mut(count.video_id.as_str()) {
                for (total, add) in totals.iter_mut().zip(count.counts) {
                    *total += add;
                }
            } else {
                videos.insert(count.video_id.clone(), count.counts);
                self.entries += 1;
                self.minutes_of
                    .entry(count.video_id.clone())
                    .or_default()
                    .insert(count.minute_us);
            }
            let clock = count.minute_us.min(clock_bound);
            self.newest_minute_us = Some(self.newest_minute_us.map_or(clock, |n| n.max(clock)));
        }
        if let Some(newest) = self.newest_minute_us {
            let oldest_kept = newest.saturating_sub(retention_us);
            while let Some(oldest) = self
                .counts
                .first_entry()
                .filter(|oldest| *oldest.key() < oldest_kept)
            {
                let (minute, videos) = oldest.remove_entry();
                self.forget(minute, videos);
            }
        }
    }

    /// Forgets minutes until at most `max_entries` (minute, video) counts
    /// are kept: a producer that gives every event a new `video_id` would
    /// otherwise grow every replica's memory with the input, for as long as
    /// the retention. Minutes after the live clock (devices whose clocks run
    /// ahead, kept until the clock passes them) go first, the farthest ahead
    /// first, so that they never push the real minutes out; then the oldest.
    /// Returns how many minutes it forgot.
    pub fn cap(&mut self, max_entries: usize) -> usize {
        let mut forgotten = 0;
        while self.entries > max_entries {
            let ahead = self
                .counts
                .last_key_value()
                .zip(self.newest_minute_us)
                .is_some_and(|((minute, _), clock)| *minute > clock);
            let gone = if ahead {
                self.counts.pop_last()
            } else {
                self.counts.pop_first()
            };
            let Some((minute, videos)) = gone else { break };
            self.forget(minute, videos);
            forgotten += 1;
        }
        forgotten
    }

    /// (minute, video) counts kept.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Removes what the index and the totals hold of `minute`, whose
    /// `videos` were just taken out of `counts`.
    fn forget(&mut self, minute: i64, videos: BTreeMap<String, [u64; 4]>) {
        self.total -= self.minute_totals.remove(&minute).unwrap_or(0);
        self.entries -= videos.len();
        for video in videos.into_keys() {
            if let Some(minutes) = self.minutes_of.get_mut(&video) {
                minutes.remove(&minute);
                if minutes.is_empty() {
                    self.minutes_of.remove(&video);
                }
            }
        }
    }

    /// The minutes of one video, oldest first.
    pub fn video(&self, video_id: &str) -> Vec<(i64, [u64; 4])> {
        let Some(minutes) = self.minutes_of.get(video_id) else {
            return Vec::new();
        };
        minutes
            .iter()
            .filter_map(|minute| {
                let counts = self.counts.get(minute)?.get(video_id)?;
                Some((*minute, *counts))
            })
            .collect()
    }

    /// The `limit` videos with the most events over the `minutes` minutes
    /// of event time ending with the live clock, most first (ties by video id).
    pub fn top_videos(&self, minutes: i64, limit: usize) -> Vec<(String, u64)> {
        let Some(newest) = self.newest_minute_us else {
            return Vec::new();
        };
        let from = newest - (minutes.max(1) - 1) * MINUTE_US;
        let mut totals: HashMap<&str, u64> = HashMap::new();
        for videos in self.counts.range(from..=newest).map(|(_, videos)| videos) {
            for (video, counts) in videos {
                *totals.entry(video).or_default() += counts.iter().sum::<u64>();
            }
        }
        // Selected before they are sorted or copied: the window may hold
        // millions of videos, and readers hold the lock applying waits for.
        let order = |a: &(&str, u64), b: &(&str, u64)| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0));
        let mut top: Vec<(&str, u64)> = totals.into_iter().collect();
        if limit == 0 {
            return Vec::new();
        }
        if top.len() > limit {
            top.select_nth_unstable_by(limit - 1, order);
            top.truncate(limit);
        }
        top.sort_unstable_by(order);
        top.into_iter().map(|(v, n)| (v.to_string(), n)).collect()
    }

    /// The live clock: the newest minute seen, bounded as [`LiveAggregates::fold`] says.
    pub fn newest_minute_us(&self) -> Option<i64> {
        self.newest_minute_us
    }

    /// Events of every video in each of the newest `count` minutes that
    /// have any, up to the live clock, oldest first.
    pub fn newest_minute_totals(&self, count: usize) -> Vec<(i64, u64)> {
        let Some(clock) = self.newest_minute_us else {
            return Vec::new();
        };
        let mut newest: Vec<(i64, u64)> = self
            .minute_totals
            .range(..=clock)
            .rev()
            .take(count)
            .map(|(minute, events)| (*minute, *events))
            .collect();
        newest.reverse();
        newest
    }

    /// Events of every video over every minute kept.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// A count of events that only grows until the state is loaded again
    /// (see the field): for rates, where [`LiveAggregates::total`] falls
    /// whenever a minute is forgotten.
    pub fn counted_since_load(&self) -> u64 {
        self.counted_since_load
    }

    /// Which load `counted_since_load` counts from: 0 for state built from
    /// the log alone, another number after each snapshot loaded.
    pub fn load(&self) -> u64 {
        self.load
    }

    /// The counts as a snapshot holds them.
    pub fn image(&self) -> LiveImage {
        LiveImage {
            counts: self
                .all()
                .map(|(minute, video, counts)| ((minute, video.to_string()), counts))
                .collect(),
            newest_minute_us: self.newest_minute_us,
        }
    }

    /// Every (minute, video, counts), ordered by minute then video.
    pub fn all(&self) -> impl Iterator<Item = (i64, &str, [u64; 4])> {
        self.counts.iter().flat_map(|(minute, videos)| {
            videos
                .iter()
                .map(|(video, counts)| (*minute, video.as_str(), *counts))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOUR_US: i64 = 60 * MINUTE_US;
    /// A proposal time later than every minute the tests count, so that the
    /// live clock follows their events.
    const LATER: i64 = 1_000 * HOUR_US;

    /// One play of video "v" in the minute starting at `minute_us`.
    fn count(minute_us: i64) -> LiveCount {
        LiveCount {
            video_id: "v".into(),
            minute_us,
            counts: [1, 0, 0, 0],
        }
    }

    #[test]
    fn counts_fold_per_minute_video_and_type() {
        let mut batch = LiveBatch::default();
        batch.add("v1", 10, "play");
        batch.add("v1", 20, "stop");
        batch.add("v1", MINUTE_US + 5, "play");
        batch.add("v2", 30, "seek");
        batch.add("v2", 30, "dance");
        let mut live = LiveAggregates::default();
        live.fold(&batch.take(), HOUR_US, LATER);
        assert_eq!(
            live.video("v1"),
            vec![(0, [1, 0, 0, 1]), (MINUTE_US, [1, 0, 0, 0])]
        );
        assert_eq!(live.video("v2"), vec![(0, [0, 0, 1, 0])]);
        assert!(batch.is_empty());
    }

    #[test]
    fn minutes_beyond_the_retention_behind_the_newest_event_are_forgotten() {
        let mut live = LiveAggregates::default();
        live.fold(&[count(0), count(HOUR_US)], HOUR_US, LATER);
        assert_eq!(live.video("v").len(), 2, "exactly one hour behind is kept");
        live.fold(&[count(HOUR_US + MINUTE_US)], HOUR_US, LATER);
        assert_eq!(live.video("v").len(), 2);
        assert_eq!(live.video("v")[0].0, HOUR_US);
    }

    #[test]
    fn the_count_since_load_keeps_what_retention_and_the_cap_forget() {
        let mut live = LiveAggregates::default();
        live.fold(&[count(0), count(HOUR_US)], HOUR_US, LATER);
        live.fold(&[count(2 * HOUR_US)], HOUR_US, LATER);
        assert_eq!((live.total(), live.counted_since_load()), (2, 3));
        live.cap(1);
        assert_eq!((live.total(), live.counted_since_load()), (1, 3));

        let restored = LiveAggregates::from(live.image());
        assert_eq!(restored, live, "the replicated counts are the same");
        assert_eq!(
            restored.counted_since_load(),
            1,
            "a load starts from its total"
        );
        assert_eq!(live.load(), 0, "built from the log");
        let again = LiveAggregates::from(live.image());
        assert!(
            restored.load() != 0 && again.load() != restored.load(),
            "each load is told apart"
        );
    }

    #[test]
    fn a_minute_far_ahead_of_the_proposal_neither_counts_nor_moves_the_clock() {
        let mut live = LiveAggregates::default();
        let now = 1_000 * HOUR_US;
        let year_9999 = 253_402_300_740_000_000;
        live.fold(&[count(now), count(year_9999)], HOUR_US, now);
        live.fold(&[count(now + MINUTE_US)], HOUR_US, now);
        assert_eq!(
            live.video("v"),
            vec![(now, [1, 0, 0, 0]), (now + MINUTE_US, [1, 0, 0, 0])]
        );
        assert_eq!(live.top_videos(1, 1), vec![("v".into(), 1)]);
        let ahead = now + LIVE_FUTURE_LIMIT_US;
        live.fold(&[count(ahead)], HOUR_US, now);
        assert_eq!(live.total(), 3, "the limit itself counts");
        assert_eq!(live.video("v").last(), Some(&(ahead, [1, 0, 0, 0])));
        // The one left out is still an accepted event, for the rate.
        assert_eq!(live.counted_since_load(), 4);
    }

    #[test]
    fn a_batch_carries_no_id_too_long_to_count_and_knows_its_size() {
        let too_long = "v".repeat(LIVE_VIDEO_ID_MAX_BYTES + 1);
        let mut batch = LiveBatch::default();
        batch.add("v1", 10, "play");
        batch.add("v1", 20, "stop");
        assert_eq!(batch.bytes(), 2 + LIVE_COUNT_BYTES);
        batch.add(&too_long, 30, "play");
        batch.add(&"w".repeat(1 << 20), 40, "play");
        assert_eq!(batch.bytes(), 2 + LIVE_COUNT_BYTES * 2);
        let counts = batch.take();
        assert_eq!(batch.bytes(), 0);
        assert_eq!(
            counts
                .iter()
                .map(|c| (c.video_id.as_str(), c.counts))
                .collect::<Vec<_>>(),
            vec![("", [2, 0, 0, 0]), ("v1", [1, 0, 0, 1])]
        );
        let mut live = LiveAggregates::default();
        live.fold(&counts, HOUR_US, LATER);
        assert_eq!(live.video(""), vec![]);
        assert_eq!((live.total(), live.counted_since_load()), (2, 4));
    }

    #[test]
    fn a_video_id_too_long_to_keep_is_left_out_but_counted_as_accepted() {
        let longest = "v".repeat(LIVE_VIDEO_ID_MAX_BYTES);
        let too_long = "v".repeat(LIVE_VIDEO_ID_MAX_BYTES + 1);
        let mut live = LiveAggregates::default();
        let played = |video: &str| LiveCount {
            video_id: video.into(),
            minute_us: 0,
            counts: [2, 0, 0, 0],
        };
        live.fold(&[played(&longest), played(&too_long)], HOUR_US, LATER);
        assert_eq!(live.video(&longest), vec![(0, [2, 0, 0, 0])]);
        assert_eq!(live.video(&too_long), vec![]);
        assert_eq!(live.entries(), 1);
        assert_eq!((live.total(), live.counted_since_load()), (2, 4));
        assert_eq!(live.top_videos(1, 10), vec![(longest, 2)]);
    }

    #[test]
    fn the_top_videos_are_the_first_of_them_all_sorted() {
        let mut live = LiveAggregates::default();
        // 200 videos, with many ties among their totals.
        let counts: Vec<LiveCount> = (0..200u64)
            .map(|i| LiveCount {
                video_id: format!("v{:03}", (i * 37) % 200),
                minute_us: 0,
                counts: [i % 7, 0, 0, 1],
            })
            .collect();
        live.fold(&counts, HOUR_US, LATER);
        let mut all: Vec<(String, u64)> = counts
            .iter()
            .map(|c| (c.video_id.clone(), c.counts.iter().sum()))
            .collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for limit in [0, 1, 5, 50, 199, 200, 1000] {
            let expected: Vec<(String, u64)> = all.iter().take(limit).cloned().collect();
            assert_eq!(live.top_videos(1, limit), expected, "limit {limit}");
        }
    }

    #[test]
    fn a_device_clock_ahead_moves_the_live_clock_no_further_than_the_proposals() {
        let now = 1_000 * HOUR_US;
        let retention = 48 * HOUR_US;
        let real = |video: &str, minute_us| LiveCount {
            video_id: video.into(),
            minute_us,
            counts: [2, 0, 0, 0],
        };
        let three_days_ahead = now + 72 * HOUR_US;
        let twenty_minutes_ahead = now + 20 * MINUTE_US;
        let mut live = LiveAggregates::default();
        live.fold(
            &[
                real("a", now - 5 * MINUTE_US),
                real("b", now),
                count(twenty_minutes_ahead),
                count(three_days_ahead),
            ],
            retention,
            now,
        );
        assert_eq!(live.newest_minute_us(), Some(now));
        assert_eq!(live.video("a"), vec![(now - 5 * MINUTE_US, [2, 0, 0, 0])]);
        assert_eq!(
            live.top_videos(10, 10),
            vec![("a".into(), 2), ("b".into(), 2)],
            "the window ends at the live clock: the devices ahead are not in it yet"
        );
        assert_eq!(live.total(), 6, "the events ahead are counted");
        assert_eq!(
            live.newest_minute_totals(30),
            vec![(now - 5 * MINUTE_US, 2), (now, 2)]
        );
        assert_eq!(
            live.video("v"),
            vec![
                (twenty_minutes_ahead, [1, 0, 0, 0]),
                (three_days_ahead, [1, 0, 0, 0])
            ]
        );

        // Three days later the clock reaches the device's minute, and the
        // real minutes of three days before are forgotten as usual.
        live.fold(&[real("c", three_days_ahead)], retention, three_days_ahead);
        assert_eq!(live.newest_minute_us(), Some(three_days_ahead));
        assert_eq!(
            live.top_videos(1, 10),
            vec![("c".into(), 2), ("v".into(), 1)]
        );
        assert!(live.video("a").is_empty());
        assert_eq!(live.total(), 3);
    }

    #[test]
    fn the_cap_forgets_the_minutes_ahead_of_the_live_clock_before_the_real_ones() {
        let now = 1_000 * HOUR_US;
        let mut live = LiveAggregates::default();
        let real = |minute_us| LiveCount {
            video_id: "real".into(),
            minute_us,
            counts: [1, 0, 0, 0],
        };
        live.fold(
            &[
                real(now - MINUTE_US),
                real(now),
                count(now + HOUR_US),
                count(now + 72 * HOUR_US),
            ],
            48 * HOUR_US,
            now,
        );
        assert_eq!(live.cap(3), 1);
        assert_eq!(
            live.video("v"),
            vec![(now + HOUR_US, [1, 0, 0, 0])],
            "the farthest ahead goes first"
        );
        assert_eq!(live.cap(2), 1);
        assert!(live.video("v").is_empty());
        assert_eq!(live.video("real").len(), 2, "the real minutes stay");
        assert_eq!(live.cap(1), 1);
        assert_eq!(live.video("real"), vec![(now, [1, 0, 0, 0])]);
        assert_eq!((live.entries(), live.total()), (1, 1));
    }

    #[test]
    fn the_cap_forgets_the_oldest_minutes_first() {
        let mut live = LiveAggregates::default();
        let count = |video: &str, minute_us| LiveCount {
            video_id: video.into(),
            minute_us,
            counts: [1, 1, 0, 0],
        };
        live.fold(
            &[
                count("a", 0),
                count("b", 0),
                count("a", MINUTE_US),
                count("c", 2 * MINUTE_US),
                count("d", 2 * MINUTE_US),
            ],
            HOUR_US,
            LATER,
        );
        assert_eq!(live.entries(), 5);
        assert_eq!(live.cap(5), 0);
        assert_eq!(live.cap(3), 1, "the oldest minute goes as a whole");
        assert_eq!(live.entries(), 3);
        assert_eq!(live.total(), 6);
        assert!(live.video("b").is_empty());
        assert_eq!(live.video("a"), vec![(MINUTE_US, [1, 1, 0, 0])]);
        assert_eq!(live.cap(1), 2, "a minute is never split");
        assert_eq!((live.entries(), live.total()), (0, 0));
        assert!(live.video("c").is_empty());
        assert_eq!(live.newest_minute_us(), Some(2 * MINUTE_US));
    }

    #[test]
    fn top_videos_look_at_the_newest_minutes_only() {
        let mut live = LiveAggregates::default();
        let count = |video: &str, minute_us, n| LiveCount {
            video_id: video.into(),
            minute_us,
            counts: [n, 0, 0, 0],
        };
        live.fold(
            &[
                count("old", 0, 100),
                count("a", 9 * MINUTE_US, 3),
                count("b", 9 * MINUTE_US, 5),
                count("a", 8 * MINUTE_US, 4),
            ],
            HOUR_US,
            LATER,
        );
        assert_eq!(
            live.top_videos(1, 10),
            vec![("b".into(), 5), ("a".into(), 3)]
        );
        assert_eq!(live.top_videos(2, 1), vec![("a".into(), 7)]);
        assert_eq!(live.top_videos(60, 1), vec![("old".into(), 100)]);
    }

    /// The counts of (video number, event time, event type index) events.
    fn counts_of(events: impl Iterator<Item = (u8, i64, usize)>) -> Vec<LiveCount> {
        let mut batch = LiveBatch::default();
        for (video, time, kind) in events {
            batch.add(&format!("v{video}"), time, EVENT_TYPES[kind]);
        }
        batch.take()
    }

    proptest! {
        /// Folding batch by batch equals counting everything at once.
        #[test]
        fn folding_batches_equals_one_count(events in proptest::collection::vec((0u8..4, 0i64..600_000_000, 0usize..4), 0..200), split in 1usize..20) {
            let mut live = LiveAggregates::default();
            for chunk in events.chunks(split) {
                live.fold(&counts_of(chunk.iter().copied()), HOUR_US, LATER);
            }
            let mut expected: BTreeMap<(i64, String), [u64; 4]> = BTreeMap::new();
            for (video, time, kind) in &events {
                expected.entry((minute_of(*time), format!("v{video}"))).or_default()[*kind] += 1;
            }
            let got: BTreeMap<(i64, String), [u64; 4]> = live.all().map(|(m, v, c)| ((m, v.to_string()), c)).collect();
            prop_assert_eq!(got, expected);
        }

        /// One video's minutes, read through the index, and the per-minute
        /// totals are those a scan finds, while minutes are forgotten and
        /// after a snapshot round trip.
        #[test]
        fn a_videos_minutes_are_those_a_scan_finds(events in proptest::collection::vec((0u8..5, 0i64..240, 0usize..4), 0..300), split in 1usize..20, max_entries in 1usize..60) {
            let mut live = LiveAggregates::default();
            for chunk in events.chunks(split) {
                let counts = counts_of(chunk.iter().map(|(v, minute, k)| (*v, minute * MINUTE_US, *k)));
                live.fold(&counts, 30 * MINUTE_US, LATER);
                live.cap(max_entries);
                prop_assert!(live.entries() <= max_entries);
                prop_assert_eq!(live.entries(), live.all().count());
                let image: LiveImage = streamreel_protocol::codec::decode(
                    &streamreel_protocol::codec::encode(&live.image()).unwrap(),
                )
                .unwrap();
                prop_assert_eq!(&LiveAggregates::from(image), &live);
                let mut per_minute: BTreeMap<i64, u64> = BTreeMap::new();
                for (minute, _, counts) in live.all() {
                    *per_minute.entry(minute).or_default() += counts.iter().sum::<u64>();
                }
                prop_assert_eq!(live.total(), per_minute.values().sum::<u64>());
                let newest: Vec<(i64, u64)> = per_minute.iter().rev().take(7).rev().map(|(m, n)| (*m, *n)).collect();
                prop_assert_eq!(live.newest_minute_totals(7), newest);
                for video in (0..6).map(|v| format!("v{v}")) {
                    let scanned: Vec<(i64, [u64; 4])> = live
                        .all()
                        .filter(|(_, v, _)| *v == video)
                        .map(|(minute, _, counts)| (minute, counts))
                        .collect();
                    prop_assert_eq!(live.video(&video), scanned);
                }
            }
            prop_assert!(live.minutes_of.values().all(|minutes| !minutes.is_empty()));
        }
    }
}
