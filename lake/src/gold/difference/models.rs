//! The six models updated by difference: each reads its previous rows back
//! into the totals they were computed from, applies the removed and added
//! sessions, and writes the rows as its SQL (`lake/models/<name>.sql`)
//! would. A function answers `None` when the previous rows cannot be read
//! back (a column missing, a total that would fall below zero): the model is
//! then built in full.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, AsArray, Date32Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use deltalake::arrow::compute::{cast, concat_batches};
use deltalake::arrow::datatypes::{DataType, Date32Type, Float64Type, Int64Type, SchemaRef};

use super::{DistinctChanges, SessionChanges, SessionRow, ViewerGroup};
use crate::error::LakeError;
use crate::metadata::VideoMetadata;
use crate::query::string_values;

/// What a model is updated with.
pub struct Update<'a> {
    changes: &'a SessionChanges,
    distinct: &'a DistinctChanges,
    videos: HashMap<&'a str, &'a VideoMetadata>,
}

impl<'a> Update<'a> {
    pub fn new(
        changes: &'a SessionChanges,
        distinct: &'a DistinctChanges,
        videos: &'a [VideoMetadata],
    ) -> Update<'a> {
        let videos = videos.iter().map(|v| (v.video_id.as_str(), v)).collect();
        Update {
            changes,
            distinct,
            videos,
        }
    }

    /// Each removed row with -1, each added row with +1.
    fn signed(&self) -> impl Iterator<Item = (i64, &SessionRow)> {
        let removed = self.changes.removed.iter().map(|row| (-1, row));
        removed.chain(self.changes.added.iter().map(|row| (1, row)))
    }

    fn viewers(&self, group: &ViewerGroup) -> i64 {
        self.distinct.viewers.get(group).copied().unwrap_or(0)
    }

    fn video(&self, video_id: &str) -> Option<&'a VideoMetadata> {
        self.videos.get(video_id).copied()
    }
}

/// The rows of model `name` after `update`, from its `previous` rows (in
/// the table's `schema`); `None` when they must be built in full.
pub fn updated_rows(
    name: &str,
    schema: &SchemaRef,
    previous: &[RecordBatch],
    update: &Update<'_>,
) -> Result<Option<RecordBatch>, LakeError> {
    let previous = Previous(concat_batches(schema, previous)?);
    let columns = match name {
        "daily_engagement" => daily_engagement(&previous, update)?,
        "regional_viewership" => regional_viewership(&previous, update)?,
        "top_videos" => top_videos(&previous, update)?,
        "top_creators" => top_creators(&previous, update)?,
        "dropoff_by_genre" => dropoff_by_genre(&previous, update)?,
        "viewer_retention" => viewer_retention(&previous, update)?,
        _ => None,
    };
    let Some(columns) = columns else {
        return Ok(None);
    };
    conformed(schema, columns)
}

/// `columns` (name, values) as a batch of `schema`, each cast to its
/// field's type; `None` unless they are the schema's columns in its order.
fn conformed(
    schema: &SchemaRef,
    columns: Vec<(&str, ArrayRef)>,
) -> Result<Option<RecordBatch>, LakeError> {
    if columns.len() != schema.fields().len()
        || columns
            .iter()
            .zip(schema.fields())
            .any(|((name, _), field)| field.name() != name)
    {
        return Ok(None);
    }
    let arrays = columns
        .iter()
        .zip(schema.fields())
        .map(|((_, values), field)| cast(values, field.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(RecordBatch::try_new(schema.clone(), arrays)?))
}

/// A model's previous rows, read by column name.
struct Previous(RecordBatch);

impl Previous {
    fn rows(&self) -> usize {
        self.0.num_rows()
    }

    fn column(&self, name: &str, kind: &DataType) -> Option<ArrayRef> {
        cast(self.0.column_by_name(name)?, kind).ok()
    }

    fn texts(&self, name: &str) -> Option<Vec<Option<String>>> {
        let column = self.column(name, &DataType::Utf8)?;
        Some(
            string_values(&column)?
                .map(|v| v.map(str::to_string))
                .collect(),
        )
    }

    /// Non-null integers.
    fn counts(&self, name: &str) -> Option<Vec<i64>> {
        let column = self.column(name, &DataType::Int64)?;
        column.as_primitive::<Int64Type>().iter().collect()
    }

    /// Non-null doubles.
    fn numbers(&self, name: &str) -> Option<Vec<f64>> {
        let column = self.column(name, &DataType::Float64)?;
        column.as_primitive::<Float64Type>().iter().collect()
    }

    /// Non-null dates, as days since 1970-01-01.
    fn days(&self, name: &str) -> Option<Vec<i32>> {
        let column = self.column(name, &DataType::Date32)?;
        column.as_primitive::<Date32Type>().iter().collect()
    }
}

/// Sessions, distinct viewers and sums of a group.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    sessions: i64,
    viewers: i64,
    watch_s: CarriedSum,
    pct_watched: CarriedSum,
    completed: i64,
}

impl Totals {
    /// From a row's `watch_hours` (`SUM(watch_s) / 3600`) and averages.
    fn read_back(sessions: i64, viewers: i64, watch_hours: f64, avg_pct: f64, rate: f64) -> Totals {
        let n = sessions as f64;
        Totals {
            sessions,
            viewers,
            watch_s: CarriedSum::read_back(seconds_of(watch_hours)),
            pct_watched: CarriedSum::read_back(avg_pct * n),
            completed: (rate * n).round() as i64,
        }
    }

    fn apply(&mut self, sign: i64, row: &SessionRow) {
        let s = sign as f64;
        self.sessions += sign;
        self.watch_s.add(s * row.watch_s);
        self.pct_watched.add(s * row.pct_watched);
        self.completed += sign * i64::from(row.completed);
    }

    /// `None` for a group the changes left with fewer than nothing. (Not
    /// every model reads `completed` back, so its count is not checked here;
    /// a wrong one would fail the `completion_rate` range test.)
    fn checked(self) -> Option<Option<Totals>> {
        if self.sessions < 0 || self.viewers < 0 {
            return None;
        }
        if self.sessions == 0 {
            return (self.viewers == 0).then_some(None);
        }
        if self.viewers == 0 {
            return None;
        }
        Some(Some(self))
    }

    // Sums read back from a stored average and updated by difference drift
    // in the last bits, so they are held to the bounds every full build
    // meets: a watch time of a few hundredths of a nanosecond below zero, or
    // an average of 100.00000000000001, would fail the data tests and stop
    // every later run publishing.
    fn watch_hours(&self) -> f64 {
        (self.watch_s.value() / 3600.0).max(0.0)
    }

    fn avg_pct_watched(&self) -> f64 {
        (self.pct_watched.value() / self.sessions as f64).clamp(0.0, 100.0)
    }

    fn completion_rate(&self) -> f64 {
        self.completed as f64 / self.sessions as f64
    }
}

/// A sum carried from a stored row and updated by difference.
///
/// When sessions with fractional values leave a group, their subtraction
/// leaves a residue in the last bits (watch times 64.4, 25.8 and 1713 s, less
/// the first two, give 1713.0000000000002), which later runs carry on: a
/// group of silent sessions kept a watch time of 8e-18 hours, and a group
/// back to whole seconds ranked above its equal, where a full build gives
/// exactly 0 or the whole number and ranks equal sums by name. So the
/// additions keep their own rounding errors (Neumaier's compensation: the
/// result is the stored sum plus the changes, to about a unit in the last
/// place, however many changes), and a result within a few units in the last
/// place of a whole number is taken as that number: the stored sum is one
/// rounding of a full build's (its last bits). A sum of real positions
/// (milliseconds) that is not whole is off a whole number by far more, even
/// in a group of millions of sessions (at 6e8 s a unit is 1.2e-7 s).
#[derive(Debug, Clone, Copy, Default)]
struct CarriedSum {
    sum: f64,
    /// The rounding errors of the additions since the read, summed.
    compensation: f64,
    /// How far the stored sum may be from its group's exact sum.
    stored_error: f64,
}

impl CarriedSum {
    fn read_back(sum: f64) -> CarriedSum {
        CarriedSum {
            sum,
            compensation: 0.0,
            stored_error: 2.0 * f64::EPSILON * sum.abs(),
        }
    }

    fn add(&mut self, value: f64) {
        let sum = self.sum + value;
        // The exact error of that addition (Neumaier).
        self.compensation += if self.sum.abs() >= value.abs() {
            (self.sum - sum) + value
        } else {
            (value - sum) + self.sum
        };
        self.sum = sum;
    }

    /// The sum, or the whole number within its bound. Adding 0.0 turns a
    /// -0.0 into 0.0.
    fn value(&self) -> f64 {
        let total = self.sum + self.compensation;
        let whole = total.round();
        if (total - whole).abs() <= self.stored_error + f64::EPSILON * total.abs() {
            whole + 0.0
        } else {
            total
        }
    }
}

/// The sum of seconds a stored `watch_hours` was divided from: the whole
/// number of seconds that gives it when there is one, else `watch_hours *
/// 3600`. A full build sums whole seconds exactly and ranks groups with
/// equal sums by name; `57 / 3600 * 3600` is `57.00000000000001`, so a group
/// carried through that round trip would rank above its equal.
fn seconds_of(watch_hours: f64) -> f64 {
    let seconds = watch_hours * 3600.0;
    let whole = seconds.round();
    if whole / 3600.0 == watch_hours {
        whole
    } else {
        seconds
    }
}

/// The groups left after `update`, from `totals` read back, with the
/// distinct viewers of each group's `viewer_group`.
fn applied<K: Ord + Clone>(
    mut totals: BTreeMap<K, Totals>,
    update: &Update<'_>,
    key: impl Fn(&SessionRow) -> Option<K>,
    viewer_group: impl Fn(&K) -> Option<ViewerGroup>,
) -> Option<BTreeMap<K, Totals>> {
    for (sign, row) in update.signed() {
        if let Some(k) = key(row) {
            totals.entry(k).or_default().apply(sign, row);
        }
    }
    let mut kept = BTreeMap::new();
    for (k, mut t) in totals {
        if let Some(group) = viewer_group(&k) {
            t.viewers += update.viewers(&group);
        }
        if let Some(t) = t.checked()? {
            kept.insert(k, t);
        }
    }
    Some(kept)
}

type Columns = Vec<(&'static str, ArrayRef)>;

fn daily_engagement(
    previous: &Previous,
    update: &Update<'_>,
) -> Result<Option<Columns>, LakeError> {
    let read = || {
        let (days, sessions, viewers) = (
            previous.days("day")?,
            previous.counts("sessions")?,
            previous.counts("unique_viewers")?,
        );
        let (hours, pct, rate) = (
            previous.numbers("watch_hours")?,
            previous.numbers("avg_pct_watched")?,
            previous.numbers("completion_rate")?,
        );
        let totals: BTreeMap<i32, Totals> = (0..previous.rows())
            .map(|i| {
                let t = Totals::read_back(sessions[i], viewers[i], hours[i], pct[i], rate[i]);
                (days[i], t)
            })
            .collect();
        applied(
            totals,
            update,
            |r| Some(r.day),
            |d| Some(ViewerGroup::Day(*d)),
        )
    };
    let Some(days) = read() else {
        return Ok(None);
    };
    Ok(Some(vec![
        ("day", dates(days.keys().copied())),
        ("sessions", ints(days.values().map(|t| t.sessions))),
        ("unique_viewers", ints(days.values().map(|t| t.viewers))),
        (
            "watch_hours",
            floats(days.values().map(Totals::watch_hours)),
        ),
        (
            "avg_pct_watched",
            floats(days.values().map(Totals::avg_pct_watched)),
        ),
        (
            "completion_rate",
            floats(days.values().map(Totals::completion_rate)),
        ),
    ]))
}

fn regional_viewership(
    previous: &Previous,
    update: &Update<'_>,
) -> Result<Option<Columns>, LakeError> {
    let read = || {
        let (days, regions) = (previous.days("day")?, previous.texts("region")?);
        let (sessions, viewers, hours) = (
            previous.counts("sessions")?,
            previous.counts("unique_viewers")?,
            previous.numbers("watch_hours")?,
        );
        let mut totals = BTreeMap::new();
        for i in 0..previous.rows() {
            let t = Totals::read_back(sessions[i], viewers[i], hours[i], 0.0, 0.0);
            totals.insert((days[i], regions[i].clone()?), t);
        }
        applied(
            totals,
            update,
            |r| Some((r.day, r.region.clone())),
            |(d, region)| Some(ViewerGroup::DayRegion(*d, region.clone())),
        )
    };
    let Some(groups) = read() else {
        return Ok(None);
    };
    Ok(Some(vec![
        ("day", dates(groups.keys().map(|(d, _)| *d))),
        (
            "region",
            texts(groups.keys().map(|(_, r)| Some(r.as_str()))),
        ),
        ("sessions", ints(groups.values().map(|t| t.sessions))),
        ("unique_viewers", ints(groups.values().map(|t| t.viewers))),
        (
            "watch_hours",
            floats(groups.values().map(Totals::watch_hours)),
        ),
    ]))
}

fn top_videos(previous: &Previous, update: &Update<'_>) -> Result<Option<Columns>, LakeError> {
    let read = || {
        let videos = previous.texts("video_id")?;
        let (sessions, viewers, hours, rate) = (
            previous.counts("sessions")?,
            previous.counts("unique_viewers")?,
            previous.numbers("watch_hours")?,
            previous.numbers("completion_rate")?,
        );
        let mut totals = BTreeMap::new();
        for i in 0..previous.rows() {
            let t = Totals::read_back(sessions[i], viewers[i], hours[i], 0.0, rate[i]);
            totals.insert(videos[i].clone()?, t);
        }
        // Videos the catalogue does not list have no row (the SQL's join).
        applied(
            totals,
            update,
            |r| update.video(&r.video_id).map(|_| r.video_id.clone()),
            |v| Some(ViewerGroup::Video(v.clone())),
        )
    };
    let Some(videos) = read() else {
        return Ok(None);
    };
    let mut ranked: Vec<(&String, &Totals)> = videos.iter().collect();
    ranked.sort_by(|a, b| {
        b.1.watch_hours()
            .total_cmp(&a.1.watch_hours())
            .then_with(|| a.0.cmp(b.0))
    });
    let mut rows = Vec::with_capacity(ranked.len());
    for (rank, (id, t)) in ranked.into_iter().enumerate() {
        let Some(video) = update.video(id) else {
            return Ok(None);
        };
        rows.push((video, *t, rank as i32 + 1));
    }
    Ok(Some(vec![
        (
            "video_id",
            texts(rows.iter().map(|r| Some(r.0.video_id.as_str()))),
        ),
        (
            "title",
            texts(rows.iter().map(|r| Some(r.0.title.as_str()))),
        ),
        (
            "creator",
            texts(rows.iter().map(|r| Some(r.0.creator.as_str()))),
        ),
        (
            "genre",
            texts(rows.iter().map(|r| Some(r.0.genre.as_str()))),
        ),
        ("sessions", ints(rows.iter().map(|r| r.1.sessions))),
        ("unique_viewers", ints(rows.iter().map(|r| r.1.viewers))),
        (
            "watch_hours",
            floats(rows.iter().map(|r| r.1.watch_hours())),
        ),
        (
            "completion_rate",
            floats(rows.iter().map(|r| r.1.completion_rate())),
        ),
        (
            "rank",
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.2))),
        ),
    ]))
}

fn top_creators(previous: &Previous, update: &Update<'_>) -> Result<Option<Columns>, LakeError> {
    let read = || {
        let creators = previous.texts("creator")?;
        let (videos, sessions, hours) = (
            previous.counts("videos")?,
            previous.counts("sessions")?,
            previous.numbers("watch_hours")?,
        );
        let mut totals = BTreeMap::new();
        for i in 0..previous.rows() {
            // The distinct videos ride in `viewers`.
            let t = Totals::read_back(sessions[i], videos[i], hours[i], 0.0, 0.0);
            totals.insert(creators[i].clone(), t);
        }
        for (creator, step) in &update.distinct.creator_videos {
            totals.entry(creator.clone()).or_default().viewers += step;
        }
        applied(totals, update, |r| Some(r.creator.clone()), |_| None)
    };
    let Some(creators) = read() else {
        return Ok(None);
    };
    let mut ranked: Vec<(&Option<String>, &Totals)> = creators.iter().collect();
    // ORDER BY watch_hours DESC, creator: nulls last.
    ranked.sort_by(|a, b| {
        b.1.watch_hours()
            .total_cmp(&a.1.watch_hours())
            .then_with(|| match (a.0, b.0) {
                (Some(x), Some(y)) => x.cmp(y),
                (x, y) => x.is_none().cmp(&y.is_none()),
            })
    });
    Ok(Some(vec![
        ("creator", texts(ranked.iter().map(|r| r.0.as_deref()))),
        ("videos", ints(ranked.iter().map(|r| r.1.viewers))),
        ("sessions", ints(ranked.iter().map(|r| r.1.sessions))),
        (
            "watch_hours",
            floats(ranked.iter().map(|r| r.1.watch_hours())),
        ),
        (
            "rank",
            Arc::new(Int32Array::from_iter_values(
                (1..=ranked.len()).map(|r| r as i32),
            )),
        ),
    ]))
}

/// The 10% bucket of a session's exit, as `dropoff_by_genre.sql` computes
/// it (the same operations on doubles, so the same rounding).
pub fn exit_bucket(exit_position_s: f64, duration_s: f64) -> Option<i32> {
    let (e, d) = (exit_position_s, duration_s);
    let b = (10.0 * e / d).floor();
    if !b.is_finite() || b.abs() > 1e9 {
        return None;
    }
    let b = b as i32;
    let corrected = if 10.0 * e >= f64::from(b + 1) * d {
        b + 1
    } else if 10.0 * e < f64::from(b) * d {
        b - 1
    } else {
        b
    };
    Some(corrected.min(9) * 10)
}

fn dropoff_by_genre(
    previous: &Previous,
    update: &Update<'_>,
) -> Result<Option<Columns>, LakeError> {
    let read = || {
        let (genres, buckets, sessions) = (
            previous.texts("genre")?,
            previous.counts("bucket_pct")?,
            previous.counts("sessions")?,
        );
        let mut counts: BTreeMap<(Option<String>, i64), i64> = (0..previous.rows())
            .map(|i| ((genres[i].clone(), buckets[i]), sessions[i]))
            .collect();
        for (sign, row) in update.signed() {
            let bucket = exit_bucket(row.exit_position_s, row.duration_s)?;
            *counts
                .entry((row.genre.clone(), i64::from(bucket)))
                .or_default() += sign;
        }
        if counts.values().any(|n| *n < 0) {
            return None;
        }
        counts.retain(|_, n| *n > 0);
        Some(counts)
    };
    let Some(counts) = read() else {
        return Ok(None);
    };
    let mut per_genre: HashMap<&Option<String>, i64> = HashMap::new();
    for ((genre, _), n) in &counts {
        *per_genre.entry(genre).or_default() += n;
    }
    Ok(Some(vec![
        ("genre", texts(counts.keys().map(|(g, _)| g.as_deref()))),
        (
            "bucket_pct",
            Arc::new(Int32Array::from_iter_values(
                counts.keys().map(|(_, b)| *b as i32),
            )),
        ),
        ("sessions", ints(counts.values().copied())),
        (
            "share",
            floats(
                counts
                    .iter()
                    .map(|((g, _), n)| *n as f64 / per_genre[g] as f64),
            ),
        ),
    ]))
}

/// The highest 5% step of its duration a session reached, as
/// `viewer_retention.sql` computes it.
pub fn top_step(pct_watched: f64) -> Option<i32> {
    let f = (pct_watched / 5.0).floor();
    if !f.is_finite() || f.abs() > 1e8 {
        return None;
    }
    let step = f as i32 * 5;
    Some(if pct_watched < f64::from(step) {
        step - 5
    } else {
        step.min(100)
    })
}

const STEPS: usize = 21;

fn viewer_retention(
    previous: &Previous,
    update: &Update<'_>,
) -> Result<Option<Columns>, LakeError> {
    // Per video: sessions per top step (index = step / 5), and those below 0.
    let read = || {
        let (videos, buckets, sessions, reached) = (
            previous.texts("video_id")?,
            previous.counts("bucket_pct")?,
            previous.counts("sessions")?,
            previous.counts("viewers_reached")?,
        );
        let mut curves: BTreeMap<String, (i64, [Option<i64>; STEPS])> = BTreeMap::new();
        for i in 0..previous.rows() {
            let step = usize::try_from(buckets[i] / 5)
                .ok()
                .filter(|s| *s < STEPS && buckets[i] % 5 == 0)?;
            let curve = curves
                .entry(videos[i].clone()?)
                .or_insert((sessions[i], [None; STEPS]));
            if curve.0 != sessions[i] || curve.1[step].replace(reached[i]).is_some() {
                return None;
            }
        }
        let mut steps: BTreeMap<String, [i64; STEPS + 1]> = BTreeMap::new();
        for (video, (total, reached)) in curves {
            let reached: Vec<i64> = reached.into_iter().collect::<Option<_>>()?;
            let mut per_step = [0; STEPS + 1];
            for s in 0..STEPS {
                per_step[s] = reached[s] - reached.get(s + 1).copied().unwrap_or(0);
            }
            per_step[STEPS] = total - reached[0];
            steps.insert(video, per_step);
        }
        for (sign, row) in update.signed() {
            if update.video(&row.video_id).is_none() {
                continue;
            }
            let step = top_step(row.pct_watched)?;
            let index = if step < 0 {
                STEPS
            } else {
                usize::try_from(step / 5).ok().filter(|s| *s < STEPS)?
            };
            steps.entry(row.video_id.clone()).or_insert([0; STEPS + 1])[index] += sign;
        }
        if steps.values().flatten().any(|n| *n < 0) {
            return None;
        }
        steps.retain(|_, s| s.iter().any(|n| *n > 0));
        Some(steps)
    };
    let Some(steps) = read() else {
        return Ok(None);
    };
    let (mut videos, mut buckets, mut sessions, mut reached, mut retention) =
        (vec![], vec![], vec![], vec![], vec![]);
    for (video, per_step) in &steps {
        let total: i64 = per_step.iter().sum();
        let mut above = 0;
        let mut curve = [0i64; STEPS];
        for s in (0..STEPS).rev() {
            above += per_step[s];
            curve[s] = above;
        }
        for (s, n) in curve.iter().enumerate() {
            videos.push(video.as_str());
            buckets.push(s as i32 * 5);
            sessions.push(total);
            reached.push(*n);
            retention.push(*n as f64 / total as f64);
        }
    }
    Ok(Some(vec![
        ("video_id", texts(videos.into_iter().map(Some))),
        ("bucket_pct", Arc::new(Int32Array::from(buckets))),
        ("sessions", Arc::new(Int64Array::from(sessions))),
        ("viewers_reached", Arc::new(Int64Array::from(reached))),
        ("retention", Arc::new(Float64Array::from(retention))),
    ]))
}

fn dates(values: impl Iterator<Item = i32>) -> ArrayRef {
    Arc::new(Date32Array::from_iter_values(values))
}

fn ints(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(values))
}

fn floats(values: impl Iterator<Item = f64>) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(values))
}

fn texts<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(watch_s: f64, pct_watched: f64) -> SessionRow {
        SessionRow {
            user_key: "u".into(),
            video_id: "v".into(),
            genre: None,
            creator: None,
            region: "EU".into(),
            day: 1,
            watch_s,
            exit_position_s: 0.0,
            duration_s: 100.0,
            pct_watched,
            completed: false,
        }
    }

    #[test]
    fn totals_updated_by_difference_stay_within_what_a_full_build_gives() {
        // Sessions of 100, 100 and 78.87233511355132 % stored as their mean;
        // the last one leaving must give exactly 100, not 100.00000000000001.
        let mut totals = Totals::read_back(3, 1, 0.0, 92.95744503785045, 0.0);
        totals.apply(-1, &session(0.0, 78.87233511355132));
        assert_eq!(totals.avg_pct_watched(), 100.0);
        // Watch times 0, 0.1 and 0.7 s: without the last two, none is left.
        let mut totals = Totals::read_back(3, 1, 0.7999999999999999 / 3600.0, 0.0, 0.0);
        totals.apply(-1, &session(0.7, 0.0));
        totals.apply(-1, &session(0.1, 0.0));
        assert_eq!(totals.watch_hours(), 0.0);
    }

    #[test]
    fn whole_seconds_survive_the_round_trip_through_watch_hours() {
        assert_ne!(57.0 / 3600.0 * 3600.0, 57.0);
        assert_eq!(seconds_of(57.0 / 3600.0), 57.0);
        for n in 0..200_000 {
            let whole = f64::from(n);
            assert_eq!(seconds_of(whole / 3600.0), whole, "{n}");
        }
        // A sum that is not whole keeps the product.
        let hours = 57.25 / 3600.0;
        assert_eq!(seconds_of(hours), hours * 3600.0);
        let mut totals = Totals::read_back(2, 1, 57.0 / 3600.0, 0.0, 0.0);
        totals.apply(-1, &session(56.0, 0.0));
        assert_eq!(totals.watch_hours(), 1.0 / 3600.0);
    }

    #[test]
    fn a_group_back_to_whole_seconds_or_nothing_carries_no_residue() {
        // Watch times 64.4, 25.8 and 1713 s, summed as a full build would;
        // the fractional two leave, and 1713 s is left, exactly, so the
        // group ties with another of 1713 s and ranks by name.
        let stored = (64.4 + 25.8 + 1713.0) / 3600.0;
        let mut totals = Totals::read_back(3, 1, stored, 0.0, 0.0);
        assert_ne!((stored * 3600.0 - 64.4) - 25.8, 1713.0, "the residue");
        totals.apply(-1, &session(64.4, 0.0));
        totals.apply(-1, &session(25.8, 0.0));
        assert_eq!(totals.watch_hours(), 1713.0 / 3600.0);
        // Read back and updated again, it stays exact.
        let mut again = Totals::read_back(1, 1, totals.watch_hours(), 0.0, 0.0);
        again.apply(1, &session(0.0, 0.0));
        assert_eq!(again.watch_hours(), 1713.0 / 3600.0);

        // Watch times 281.441, 147.944 and 0 s, watched 99.564, 47.026 and
        // 0 %; the first two leave.
        let stored = (281.441 + 147.944 + 0.0) / 3600.0;
        let average = (99.564 + 47.026 + 0.0) / 3.0;
        let mut totals = Totals::read_back(3, 1, stored, average, 0.0);
        assert!((average * 3.0 - 99.564) - 47.026 > 0.0, "the residue");
        totals.apply(-1, &session(281.441, 99.564));
        totals.apply(-1, &session(147.944, 47.026));
        let zero = totals.watch_hours();
        assert!(zero == 0.0 && zero.is_sign_positive(), "{zero:e}");
        let zero = totals.avg_pct_watched();
        assert!(zero == 0.0 && zero.is_sign_positive(), "{zero:e}");
    }

    #[test]
    fn a_fractional_sum_outside_its_rounding_bound_is_kept() {
        // 1713.25 s less 0.25 s is whole; 1713.25 s less 0.2499 s is not,
        // and is no residue.
        let mut totals = Totals::read_back(2, 1, 1713.25 / 3600.0, 0.0, 0.0);
        totals.apply(-1, &session(0.2499, 0.0));
        assert_eq!(totals.watch_hours(), (1713.25 - 0.2499) / 3600.0);
        totals.apply(-1, &session(0.0001, 0.0));
        assert_eq!(totals.watch_hours(), 1713.0 / 3600.0);
        let mut sum = CarriedSum::read_back(1e6 + 0.001);
        assert_eq!(sum.value(), 1e6 + 0.001);
        sum.add(-0.001);
        assert_eq!(sum.value(), 1e6);
        // A group of millions of sessions keeps a millisecond, whatever
        // the number of changes applied.
        let mut sum = CarriedSum::read_back(6e8 + 0.2);
        for _ in 0..100_000 {
            sum.add(0.0123);
            sum.add(-0.0123);
        }
        sum.add(-0.199);
        assert!(
            (sum.value() - (6e8 + 0.001)).abs() < 1e-6,
            "{}",
            sum.value()
        );
    }
}
