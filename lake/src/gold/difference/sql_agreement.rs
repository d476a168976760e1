//! The models updated by difference agree with their SQL: for random
//! sessions and random changes, the SQL's rows over the sessions before,
//! updated with the changes, equal the SQL's rows over the sessions after.

use std::sync::Arc;

use chrono::NaiveDate;
use deltalake::arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, RecordBatch, StringArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::arrow::util::display::array_value_to_string;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::SessionContext;
use proptest::prelude::*;

use super::models::{Update, exit_bucket, top_step, updated_rows};
use super::{CHANGE_COLUMNS, LiveCounts, LiveRow, PairsToCount, SessionChanges, SessionRow};
use crate::gold::MODELS;
use crate::metadata::VideoMetadata;
use crate::silver::replaced_rows::change_type;
use crate::tables::register_metadata;

fn catalogue() -> Vec<VideoMetadata> {
    (0..4)
        .map(|i| VideoMetadata {
            video_id: format!("v{i}"),
            title: format!("title {i}"),
            genre: format!("g{}", i % 2),
            creator: format!("c{}", i % 3),
            duration_s: 100.0,
            release_date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        })
        .collect()
}

fn a_session() -> impl Strategy<Value = SessionRow> {
    let names = (
        0..6usize,
        0..5usize,
        0..3usize,
        0..3usize,
        0..2usize,
        0..3i32,
    );
    let reached = prop_oneof![
        Just(0.0),
        Just(0.05),
        Just(0.3),
        Just(0.95),
        Just(1.0),
        0.0..1.0f64
    ];
    let durations = prop_oneof![Just(100.0), Just(37.5), Just(3.0)];
    (names, reached.clone(), reached, durations, 0.0..500.0f64).prop_map(
        |((user, video, genre, creator, region, day), reached, exit, duration, watch_s)| {
            let max_position_s = reached * duration;
            SessionRow {
                user_key: format!("u{user}"),
                // v4 is not in the catalogue (it was when the session was enriched).
                video_id: format!("v{video}"),
                genre: (genre < 2).then(|| format!("g{genre}")),
                creator: (creator < 2).then(|| format!("c{creator}")),
                region: ["EU", "US"][region].to_string(),
                day,
                watch_s,
                exit_position_s: exit * duration,
                duration_s: duration,
                pct_watched: 100.0 * max_position_s / duration,
                completed: max_position_s >= 0.95 * duration,
            }
        },
    )
}

fn batch_of(rows: &[SessionRow]) -> RecordBatch {
    let text = |f: &dyn Fn(&SessionRow) -> Option<String>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<StringArray>())
    };
    let number = |f: &dyn Fn(&SessionRow) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(rows.iter().map(f)))
    };
    let columns = vec![
        text(&|r| Some(r.user_key.clone())),
        text(&|r| Some(r.video_id.clone())),
        text(&|r| r.genre.clone()),
        text(&|r| r.creator.clone()),
        text(&|r| Some(r.region.clone())),
        Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.day))) as ArrayRef,
        number(&|r| r.watch_s),
        number(&|r| r.exit_position_s),
        number(&|r| r.duration_s),
        number(&|r| r.pct_watched),
        Arc::new(BooleanArray::from_iter(
            rows.iter().map(|r| Some(r.completed)),
        )),
    ];
    let fields: Vec<Field> = CHANGE_COLUMNS
        .iter()
        .map(|name| Field::new(*name, change_type(name), true))
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

async fn model_rows(sql: &str, sessions: &[SessionRow]) -> (Arc<Schema>, Vec<RecordBatch>) {
    let ctx = SessionContext::new();
    register_metadata(&ctx, &catalogue()).unwrap();
    let batch = batch_of(sessions);
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
    ctx.register_table("view_sessions", Arc::new(table))
        .unwrap();
    let frame = ctx.sql(sql).await.unwrap();
    let schema = Arc::new(frame.schema().as_arrow().clone());
    (schema, frame.collect().await.unwrap())
}

/// Rows as (text of the exact columns, the doubles), sorted.
fn comparable(batches: &[RecordBatch]) -> Vec<(Vec<String>, Vec<f64>)> {
    let mut rows = Vec::new();
    for batch in batches {
        for i in 0..batch.num_rows() {
            let (mut exact, mut doubles) = (Vec::new(), Vec::new());
            for column in batch.columns() {
                match column.data_type() {
                    DataType::Float64 => doubles.push(
                        column
                            .as_any()
                            .downcast_ref::<Float64Array>()
                            .unwrap()
                            .value(i),
                    ),
                    _ => exact.push(array_value_to_string(column, i).unwrap()),
                }
            }
            rows.push((exact, doubles));
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

/// The live counts as `gold::live_pairs` scans them: `after` in files of
/// `file_rows`, each counting the rows of wanted videos too only while the
/// files before it leave a creator-video pair unsettled.
fn live_counts(wanted: &PairsToCount, after: &[SessionRow], file_rows: usize) -> LiveCounts {
    let mut total = LiveCounts::default();
    for file in after.chunks(file_rows) {
        let videos = wanted.wants_videos() && !wanted.creator_videos_settled(&total);
        let mut counts = LiveCounts::default();
        for row in file {
            let kept =
                wanted.wants_user(&row.user_key) || (videos && wanted.wants_video(&row.video_id));
            if kept {
                counts.count(
                    wanted,
                    &LiveRow {
                        user_key: &row.user_key,
                        video_id: &row.video_id,
                        creator: row.creator.as_deref(),
                        region: &row.region,
                        day: row.day,
                    },
                );
            }
        }
        total.add(&counts);
    }
    total
}

/// The rows a commit over `live` removes (those `mask` marks) and adds
/// (`new`, and the removed ones recomputed when `recompute`).
fn one_commit(
    live: &[SessionRow],
    mask: &[bool],
    mut new: Vec<SessionRow>,
    recompute: bool,
) -> (Vec<SessionRow>, Vec<SessionRow>) {
    let removed: Vec<SessionRow> = live
        .iter()
        .zip(mask)
        .filter(|(_, r)| **r)
        .map(|(s, _)| s.clone())
        .collect();
    if recompute {
        // Same viewer, video and day, new measures.
        new.extend(removed.iter().map(|r| SessionRow {
            watch_s: r.watch_s + 1.0,
            ..r.clone()
        }));
    }
    (removed, new)
}

/// `before` without one copy of each `removed` row, with the `added` ones.
fn live_after(
    before: &[SessionRow],
    removed: &[SessionRow],
    added: &[SessionRow],
) -> Vec<SessionRow> {
    let mut live = before.to_vec();
    live.extend(added.iter().cloned());
    for row in removed {
        let at = live.iter().position(|r| r == row).expect("a live row");
        live.remove(at);
    }
    live
}

/// Updates `before`'s rows of every model by two commits (the second may
/// replace rows the first added) and checks them against the SQL's rows
/// over the sessions after: exact columns equal (ranks among them), doubles
/// within the last bits.
fn check_every_model(
    before: &[SessionRow],
    first: (&[bool], Vec<SessionRow>, bool),
    second_mask: &[bool],
    file_rows: usize,
) -> Result<(), TestCaseError> {
    let (removed_mask, added, replaced_again) = first;
    let (mut removed, mut added) = one_commit(before, removed_mask, added, replaced_again);
    let middle = live_after(before, &removed, &added);
    let (removed2, added2) = one_commit(&middle, second_mask, Vec::new(), true);
    removed.extend(removed2);
    added.extend(added2);
    let after = live_after(before, &removed, &added);
    let changes = SessionChanges { removed, added };
    let wanted = changes.pairs_to_count();
    let distinct = wanted
        .distinct_changes(&live_counts(&wanted, &after, file_rows))
        .unwrap();
    let videos = catalogue();
    let update = Update::new(&changes, &distinct, &videos);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for (name, sql) in MODELS {
        let (schema, previous) = runtime.block_on(model_rows(sql, before));
        let (_, expected) = runtime.block_on(model_rows(sql, &after));
        let updated = updated_rows(name, &schema, &previous, &update).unwrap();
        let updated = updated.unwrap_or_else(|| panic!("{name} was not updated"));
        let (got, want) = (comparable(&[updated]), comparable(&expected));
        prop_assert_eq!(got.len(), want.len(), "{} rows", name);
        for (g, w) in got.iter().zip(&want) {
            prop_assert_eq!(&g.0, &w.0, "{}", name);
            for (a, b) in g.1.iter().zip(&w.1) {
                prop_assert!(
                    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
                    "{}: {:?} against {:?}",
                    name,
                    g,
                    w
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn every_model_updated_by_difference_equals_its_sql_over_the_sessions_after(
        before in proptest::collection::vec(a_session(), 0..40),
        removed_mask in proptest::collection::vec(any::<bool>(), 40),
        added in proptest::collection::vec(a_session(), 0..15),
        replaced_again in any::<bool>(),
        second_mask in proptest::collection::vec(any::<bool>(), 60),
        file_rows in 1usize..8,
    ) {
        check_every_model(&before, (&removed_mask, added, replaced_again), &second_mask, file_rows)?;
    }

    /// Whole-second watch times tie often, and many (57 s, 59 s, ...) do not
    /// survive `/ 3600 * 3600`: ranks on equal sums must still follow the names.
    #[test]
    fn ranks_on_equal_whole_second_sums_follow_the_names(
        before in proptest::collection::vec(a_session_of_whole_seconds(), 0..40),
        removed_mask in proptest::collection::vec(any::<bool>(), 40),
        added in proptest::collection::vec(a_session_of_whole_seconds(), 0..15),
        replaced_again in any::<bool>(),
        second_mask in proptest::collection::vec(any::<bool>(), 60),
    ) {
        check_every_model(&before, (&removed_mask, added, replaced_again), &second_mask, 3)?;
    }
}

fn a_session_of_whole_seconds() -> impl Strategy<Value = SessionRow> {
    let seconds = prop_oneof![Just(1.0), Just(56.0), Just(57.0), Just(2.0), Just(61.0)];
    (a_session(), seconds).prop_map(|(session, watch_s)| SessionRow { watch_s, ..session })
}

/// Video v1 held 57 s (stored as `57 / 3600` hours) and loses 56 of them;
/// v0 holds 1 s. A full build ties them at 1 s and ranks v0 first.
#[test]
fn a_sum_left_equal_to_another_ranks_by_name() {
    let one = |video: &str, watch_s: f64| SessionRow {
        user_key: format!("u-{video}-{watch_s}"),
        video_id: video.to_string(),
        genre: Some("g0".into()),
        creator: Some(if video == "v0" { "c0" } else { "c1" }.into()),
        region: "EU".into(),
        day: 1,
        watch_s,
        exit_position_s: 10.0,
        duration_s: 100.0,
        pct_watched: 10.0,
        completed: false,
    };
    let before = vec![one("v0", 1.0), one("v1", 56.0), one("v1", 1.0)];
    check_every_model(&before, (&[false, true, false], vec![], false), &[], 2).unwrap();
}

#[test]
fn buckets_and_steps_round_as_the_sql_does() {
    // An exit at exactly 30% is in the 30 bucket though 10 * 0.3 / 1 is
    // 2.9999999999999996; an exit at the end is in the 90 bucket.
    assert_eq!(exit_bucket(0.3, 1.0), Some(30));
    assert_eq!(exit_bucket(1.0, 1.0), Some(90));
    assert_eq!(exit_bucket(0.0, 1.0), Some(0));
    assert_eq!(exit_bucket(f64::NAN, 1.0), None);
    assert_eq!(top_step(100.0), Some(100));
    assert_eq!(top_step(15.0), Some(15));
    assert_eq!(top_step(14.999), Some(10));
    assert_eq!(top_step(0.0), Some(0));
}
