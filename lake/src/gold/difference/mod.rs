//! Gold models updated by difference: a run that finds a model's table built
//! from an earlier `view_sessions` version applies the session rows removed
//! and added since then to the table's rows, instead of reading every
//! session again.
//!
//! Pure: the rows of the changes, the distinct-viewer arithmetic and the six
//! models' updates ([`models`]). What the changes are (the Delta log and
//! `silver/replaced_sessions`) and how many live sessions each changed pair
//! still has (a read of `view_sessions`) are read by `gold::session_changes`
//! and `gold::live_pairs`.
//!
//! Every model reads only sessions of known videos (`duration_s IS NOT
//! NULL`), so only those rows are kept. Counts are exact; sums are carried
//! from the previous table's values (a sum of `watch_s` as the whole seconds
//! `watch_hours` was divided from, else `watch_hours * 3600`), so sums that
//! are not whole seconds may differ from a full build's in the last bits, as
//! summing in another order does.

pub mod models;
#[cfg(test)]
mod sql_agreement;

use std::collections::HashMap;

use deltalake::arrow::array::{AsArray, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Date32Type, Float64Type};

use crate::error::LakeError;
use crate::key_sieve::KeySieve;
use crate::query::{named_column, string_values};

/// The `view_sessions` columns the models read, and so the columns of the
/// changes.
pub use super::sessions_in_memory::MODEL_COLUMNS as CHANGE_COLUMNS;

/// One session of a known video, as the models read it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub user_key: String,
    pub video_id: String,
    pub genre: Option<String>,
    pub creator: Option<String>,
    pub region: String,
    /// Days since 1970-01-01.
    pub day: i32,
    pub watch_s: f64,
    pub exit_position_s: f64,
    pub duration_s: f64,
    pub pct_watched: f64,
    pub completed: bool,
}

/// The session rows some commits of `view_sessions` removed and added.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionChanges {
    pub removed: Vec<SessionRow>,
    pub added: Vec<SessionRow>,
}

/// The rows of `batch` (with the [`CHANGE_COLUMNS`]) that the models read:
/// those of known videos. `None` when one of them has a null where the
/// contract has none, or a measure that is not finite: the models' SQL then
/// decides what it means, in a full build.
pub fn session_rows(batch: &RecordBatch) -> Result<Option<Vec<SessionRow>>, LakeError> {
    let text = |name: &str| -> Result<Vec<Option<String>>, LakeError> {
        let column = cast(named_column(batch, name)?, &DataType::Utf8)?;
        Ok(string_values(&column)
            .expect("cast to Utf8")
            .map(|v| v.map(str::to_string))
            .collect())
    };
    let number = |name: &str| -> Result<Vec<Option<f64>>, LakeError> {
        let column = cast(named_column(batch, name)?, &DataType::Float64)?;
        Ok(column.as_primitive::<Float64Type>().iter().collect())
    };
    let days = cast(named_column(batch, "day")?, &DataType::Date32)?;
    let days: Vec<Option<i32>> = days.as_primitive::<Date32Type>().iter().collect();
    let completed = cast(named_column(batch, "completed")?, &DataType::Boolean)?;
    let completed: Vec<Option<bool>> = completed.as_boolean().iter().collect();
    let (users, videos, genres, creators, regions) = (
        text("user_key")?,
        text("video_id")?,
        text("genre")?,
        text("creator")?,
        text("region")?,
    );
    let (watch, exit, duration, pct) = (
        number("watch_s")?,
        number("exit_position_s")?,
        number("duration_s")?,
        number("pct_watched")?,
    );
    let mut rows = Vec::new();
    for i in 0..batch.num_rows() {
        let Some(duration_s) = duration[i] else {
            continue;
        };
        let finite = |v: Option<f64>| v.filter(|v| v.is_finite());
        let row = (|| {
            Some(SessionRow {
                user_key: users[i].clone()?,
                video_id: videos[i].clone()?,
                genre: genres[i].clone(),
                creator: creators[i].clone(),
                region: regions[i].clone()?,
                day: days[i]?,
                watch_s: finite(watch[i])?,
                exit_position_s: finite(exit[i])?,
                duration_s: finite(Some(duration_s)).filter(|d| *d > 0.0)?,
                pct_watched: finite(pct[i])?,
                completed: completed[i]?,
            })
        })();
        match row {
            Some(row) => rows.push(row),
            None => return Ok(None),
        }
    }
    Ok(Some(rows))
}

/// A group whose distinct viewers a model counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ViewerGroup {
    Day(i32),
    DayRegion(i32, String),
    Video(String),
}

impl ViewerGroup {
    fn of(row: &SessionRow) -> [ViewerGroup; 3] {
        [
            ViewerGroup::Day(row.day),
            ViewerGroup::DayRegion(row.day, row.region.clone()),
            ViewerGroup::Video(row.video_id.clone()),
        ]
    }

    /// Whether `row` is one of the group's.
    fn holds(&self, row: &LiveRow<'_>) -> bool {
        match self {
            ViewerGroup::Day(day) => *day == row.day,
            ViewerGroup::DayRegion(day, region) => *day == row.day && region == row.region,
            ViewerGroup::Video(video) => video == row.video_id,
        }
    }
}

/// A creator (null for videos the catalogue gave none) and one of its videos.
pub type CreatorVideo = (Option<String>, String);

/// How many rows of a pair the changes removed and added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct PairChange {
    removed: i64,
    added: i64,
}

impl PairChange {
    /// Whether the changes alone leave open if the pair's presence changed:
    /// with as many rows added as removed it did not. (A removed row may
    /// have been added within the same changes, so rows removed do not
    /// prove the pair was present before.)
    fn unsettled(self) -> bool {
        self.removed != self.added
    }
}

impl SessionChanges {
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.added.is_empty()
    }

    fn viewer_pairs(&self) -> FastMap<(ViewerGroup, &str), PairChange> {
        self.pair_changes(|row| ViewerGroup::of(row).map(|g| (g, row.user_key.as_str())))
    }

    fn creator_video_pairs(&self) -> FastMap<CreatorVideo, PairChange> {
        self.pair_changes(|row| [(row.creator.clone(), row.video_id.clone())])
    }

    /// How many rows of each pair (the `pairs` of a row) the changes
    /// removed and added.
    fn pair_changes<'a, K, P>(
        &'a self,
        pairs: impl Fn(&'a SessionRow) -> P,
    ) -> FastMap<K, PairChange>
    where
        K: std::hash::Hash + Eq,
        P: IntoIterator<Item = K>,
    {
        let mut changes: FastMap<K, PairChange> = FastMap::default();
        for row in &self.removed {
            for pair in pairs(row) {
                changes.entry(pair).or_default().removed += 1;
            }
        }
        for row in &self.added {
            for pair in pairs(row) {
                changes.entry(pair).or_default().added += 1;
            }
        }
        changes
    }

    /// The pairs whose presence the changes leave open, to be counted in the
    /// new `view_sessions`.
    pub fn pairs_to_count(&self) -> PairsToCount {
        let mut wanted = PairsToCount::default();
        for ((group, user), change) in self.viewer_pairs() {
            if change.unsettled() {
                wanted
                    .users
                    .entry(user.to_string())
                    .or_default()
                    .push((group.clone(), wanted.viewer_pairs.len()));
                wanted
                    .viewer_pairs
                    .push(((group, user.to_string()), change));
            }
        }
        for ((creator, video), change) in self.creator_video_pairs() {
            if change.unsettled() {
                wanted
                    .videos
                    .entry(video.clone())
                    .or_default()
                    .push((creator.clone(), wanted.creator_video_pairs.len()));
                wanted.creator_video_pairs.push(((creator, video), change));
            }
        }
        wanted.user_sieve =
            KeySieve::new(wanted.users.keys().map(String::as_str), wanted.users.len());
        wanted
    }
}

/// +1 when a pair with `after` live rows was absent before `change`, -1 when
/// it is absent after it, else 0; `None` when it would have had fewer than
/// no rows before.
fn presence_step(after: i64, change: PairChange) -> Option<i64> {
    let before = after - change.added + change.removed;
    if before < 0 {
        return None;
    }
    Some(i64::from(after > 0) - i64::from(before > 0))
}

/// foldhash, not SipHash: a scan looks up every row's viewer, and a run
/// groups every changed session's pairs (SipHash was 1.5% of the +1% run).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The pairs whose live rows a run counts in the new `view_sessions`, each
/// with its change, numbered so that a count is a slot of a vector: a scan
/// counts the rows of thousands of viewers, and a count per pair asked for
/// (not per group of each wanted viewer) compares and allocates nothing.
#[derive(Debug, Clone, Default)]
pub struct PairsToCount {
    viewer_pairs: Vec<((ViewerGroup, String), PairChange)>,
    creator_video_pairs: Vec<(CreatorVideo, PairChange)>,
    /// Per viewer: the groups of its pairs, and their numbers.
    users: FastMap<String, Vec<(ViewerGroup, usize)>>,
    /// Asked before `users`: a scan looks up every row's viewer.
    user_sieve: KeySieve,
    /// Per video: the creators of its pairs, and their numbers.
    videos: FastMap<String, Vec<(Option<String>, usize)>>,
}

impl PairsToCount {
    pub fn is_empty(&self) -> bool {
        self.viewer_pairs.is_empty() && self.creator_video_pairs.is_empty()
    }

    /// Whether any video's rows are wanted whoever watched them.
    pub fn wants_videos(&self) -> bool {
        !self.videos.is_empty()
    }

    pub fn wants_user(&self, user: &str) -> bool {
        self.groups_of(user).is_some()
    }

    /// The groups of `user`'s pairs and their numbers, the sieve asked
    /// first: most rows a scan looks at belong to no wanted viewer.
    fn groups_of(&self, user: &str) -> Option<&Vec<(ViewerGroup, usize)>> {
        match self.user_sieve.may_contain(user) {
            true => self.users.get(user),
            false => None,
        }
    }

    pub fn wants_video(&self, video: &str) -> bool {
        self.videos.contains_key(video)
    }

    /// Whether `counts`, live rows found so far, settle every creator-video
    /// pair: each has more rows than its changes added net, so it had rows
    /// before them and has rows after, and no further row can change its
    /// step. A scan then needs to count only the viewer pairs' rows.
    ///
    /// A creator-video pair asks for every row of a video, and in a run with
    /// a new day every video's pair is open: a scan that counted all of them
    /// decoded and counted every row of the table (1.6M where the wanted
    /// viewers have 80k, in the lakehouse bench); a few files settle them.
    pub fn creator_videos_settled(&self, counts: &LiveCounts) -> bool {
        self.creator_video_pairs
            .iter()
            .enumerate()
            .all(|(at, (_, change))| {
                counts.creator_video_rows(at) > (change.added - change.removed).max(0)
            })
    }

    /// How the distinct counts changed, given the live `counts` of these
    /// pairs; `None` when the counts contradict the changes (fewer rows than
    /// the changes added). A creator-video pair's count may be any number of
    /// its rows once it settles them (see [`Self::creator_videos_settled`]):
    /// its step is 0 from there on.
    pub fn distinct_changes(&self, counts: &LiveCounts) -> Option<DistinctChanges> {
        let mut changes = DistinctChanges::default();
        for (at, ((group, _), change)) in self.viewer_pairs.iter().enumerate() {
            let step = presence_step(counts.viewer_rows(at), *change)?;
            if step != 0 {
                *changes.viewers.entry(group.clone()).or_default() += step;
            }
        }
        for (at, ((creator, _), change)) in self.creator_video_pairs.iter().enumerate() {
            let step = presence_step(counts.creator_video_rows(at), *change)?;
            if step != 0 {
                *changes.creator_videos.entry(creator.clone()).or_default() += step;
            }
        }
        Some(changes)
    }
}

/// Live rows (of known videos) per pair of a [`PairsToCount`], by its
/// numbers; a pair beyond the vectors has none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveCounts {
    viewers: Vec<i64>,
    creator_videos: Vec<i64>,
}

impl LiveCounts {
    /// Counts one live row of a known video, as far as `wanted` asks.
    pub fn count(&mut self, wanted: &PairsToCount, row: &LiveRow<'_>) {
        if let Some(groups) = wanted.groups_of(row.user_key) {
            for (group, at) in groups {
                if group.holds(row) {
                    *slot(&mut self.viewers, *at) += 1;
                }
            }
        }
        if let Some(creators) = wanted.videos.get(row.video_id) {
            for (creator, at) in creators {
                if creator.as_deref() == row.creator {
                    *slot(&mut self.creator_videos, *at) += 1;
                }
            }
        }
    }

    /// Adds `other`'s counts (of other rows).
    pub fn add(&mut self, other: &LiveCounts) {
        for (mine, theirs) in [
            (&mut self.viewers, &other.viewers),
            (&mut self.creator_videos, &other.creator_videos),
        ] {
            for (at, n) in theirs.iter().enumerate() {
                *slot(mine, at) += n;
            }
        }
    }

    fn viewer_rows(&self, at: usize) -> i64 {
        self.viewers.get(at).copied().unwrap_or(0)
    }

    fn creator_video_rows(&self, at: usize) -> i64 {
        self.creator_videos.get(at).copied().unwrap_or(0)
    }
}

/// The count at `at`, the vector grown with zeros to hold it.
fn slot(counts: &mut Vec<i64>, at: usize) -> &mut i64 {
    if counts.len() <= at {
        counts.resize(at + 1, 0);
    }
    &mut counts[at]
}

/// The columns of a live row that the pairs are made of.
#[derive(Debug, Clone, Copy)]
pub struct LiveRow<'a> {
    pub user_key: &'a str,
    pub video_id: &'a str,
    pub creator: Option<&'a str>,
    pub region: &'a str,
    pub day: i32,
}

/// How many distinct viewers each group, and distinct videos each creator,
/// gained (or lost, when negative).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DistinctChanges {
    pub viewers: HashMap<ViewerGroup, i64>,
    pub creator_videos: HashMap<Option<String>, i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live<'a>(user: &'a str, video: &'a str, day: i32) -> LiveRow<'a> {
        LiveRow {
            user_key: user,
            video_id: video,
            creator: Some("c"),
            region: "EU",
            day,
        }
    }

    fn row(user: &str, video: &str, day: i32) -> SessionRow {
        SessionRow {
            user_key: user.into(),
            video_id: video.into(),
            genre: Some("g".into()),
            creator: Some("c".into()),
            region: "EU".into(),
            day,
            watch_s: 10.0,
            exit_position_s: 10.0,
            duration_s: 100.0,
            pct_watched: 10.0,
            completed: false,
        }
    }

    #[test]
    fn a_replaced_session_of_the_same_viewer_and_video_asks_for_no_count() {
        let changes = SessionChanges {
            removed: vec![row("u", "v", 1)],
            added: vec![row("u", "v", 1)],
        };
        let wanted = changes.pairs_to_count();
        assert!(wanted.is_empty());
        assert_eq!(
            wanted.distinct_changes(&LiveCounts::default()),
            Some(DistinctChanges::default())
        );
    }

    #[test]
    fn a_session_added_then_replaced_within_the_changes_counts_as_new() {
        // Version 1 added it, version 2 replaced it: removed once, added twice.
        let changes = SessionChanges {
            removed: vec![row("u", "v", 1)],
            added: vec![row("u", "v", 1), row("u", "v", 1)],
        };
        let wanted = changes.pairs_to_count();
        let mut counts = LiveCounts::default();
        counts.count(&wanted, &live("u", "v", 1));
        let changed = wanted.distinct_changes(&counts).unwrap();
        assert_eq!(changed.viewers[&ViewerGroup::Video("v".into())], 1);
        assert_eq!(changed.creator_videos[&Some("c".to_string())], 1);
    }

    #[test]
    fn a_new_session_counts_its_viewer_once_unless_the_viewer_was_there() {
        let changes = SessionChanges {
            removed: vec![],
            added: vec![row("u", "v", 2), row("u", "v", 2)],
        };
        let wanted = changes.pairs_to_count();
        assert!(wanted.wants_user("u") && !wanted.wants_user("w"));
        // Only the two new rows: the viewer is new to the day and the video.
        let mut counts = LiveCounts::default();
        for _ in 0..2 {
            counts.count(&wanted, &live("u", "v", 2));
        }
        let changed = wanted.distinct_changes(&counts).unwrap();
        assert_eq!(changed.viewers[&ViewerGroup::Day(2)], 1);
        assert_eq!(changed.viewers[&ViewerGroup::Video("v".into())], 1);
        assert_eq!(changed.creator_videos[&Some("c".to_string())], 1);
        // One more live row of the video on day 1: the video had the viewer.
        counts.count(&wanted, &live("u", "v", 1));
        let changed = wanted.distinct_changes(&counts).unwrap();
        assert_eq!(changed.viewers.get(&ViewerGroup::Video("v".into())), None);
        assert_eq!(changed.viewers[&ViewerGroup::Day(2)], 1);
        assert_eq!(changed.creator_videos.get(&Some("c".to_string())), None);
    }

    #[test]
    fn counts_of_files_added_up_equal_counts_of_all_rows_at_once() {
        let changes = SessionChanges {
            removed: vec![row("w", "x", 1)],
            added: vec![row("u", "v", 2), row("w", "v", 3)],
        };
        let wanted = changes.pairs_to_count();
        let rows = [
            live("u", "v", 2),
            live("u", "x", 1),
            live("w", "v", 3),
            live("w", "x", 1),
            live("z", "v", 2),
        ];
        let mut at_once = LiveCounts::default();
        for r in &rows {
            at_once.count(&wanted, r);
        }
        let (mut first, mut second) = (LiveCounts::default(), LiveCounts::default());
        for r in &rows[..2] {
            first.count(&wanted, r);
        }
        for r in &rows[2..] {
            second.count(&wanted, r);
        }
        first.add(&second);
        assert_eq!(
            wanted.distinct_changes(&first),
            wanted.distinct_changes(&at_once)
        );
        assert!(wanted.distinct_changes(&at_once).is_some());
    }

    #[test]
    fn a_video_pair_settles_once_it_has_more_rows_than_the_changes_added() {
        let changes = SessionChanges {
            removed: vec![],
            added: vec![row("u", "v", 2), row("w", "v", 2)],
        };
        let wanted = changes.pairs_to_count();
        let mut counts = LiveCounts::default();
        assert!(!wanted.creator_videos_settled(&counts));
        for user in ["u", "w"] {
            counts.count(&wanted, &live(user, "v", 2));
        }
        // Just the added rows: the video may be new to its creator.
        assert!(!wanted.creator_videos_settled(&counts));
        let only_added = wanted.distinct_changes(&counts).unwrap();
        assert_eq!(only_added.creator_videos[&Some("c".to_string())], 1);
        counts.count(&wanted, &live("z1", "v", 1));
        assert!(wanted.creator_videos_settled(&counts));
        // Any more rows of the video change nothing.
        let mut all = counts.clone();
        for user in ["z2", "z3"] {
            all.count(&wanted, &live(user, "v", 1));
        }
        let settled = wanted.distinct_changes(&counts).unwrap();
        assert_eq!(settled, wanted.distinct_changes(&all).unwrap());
        assert_eq!(settled.creator_videos.get(&Some("c".to_string())), None);
    }

    #[test]
    fn a_removed_last_session_loses_its_viewer_and_counts_below_the_changes_are_refused() {
        let changes = SessionChanges {
            removed: vec![row("u", "v", 1)],
            added: vec![],
        };
        let changed = changes
            .pairs_to_count()
            .distinct_changes(&LiveCounts::default())
            .unwrap();
        assert_eq!(changed.viewers[&ViewerGroup::Day(1)], -1);
        assert_eq!(changed.creator_videos[&Some("c".to_string())], -1);
        let added = SessionChanges {
            removed: vec![],
            added: vec![row("u", "v", 1)],
        };
        assert_eq!(
            added
                .pairs_to_count()
                .distinct_changes(&LiveCounts::default()),
            None
        );
    }
}
