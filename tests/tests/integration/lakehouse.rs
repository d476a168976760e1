//! Silver and gold against an independent reference model, over several
//! incremental runs; data tests that catch a broken table; compaction and vacuum.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::Context;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::table::config::TablePropertiesExt;
use streamreel_lake::data_tests::{DATA_TESTS, run_data_tests};
use streamreel_lake::gold::per_day::PER_DAY_MODELS;
use streamreel_lake::gold::{
    FROM_SESSIONS_APP_ID, GoldRun, run_models, run_models_after, run_models_audited_by,
    trim_replaced_sessions,
};
use streamreel_lake::maintenance::{compact, file_count, vacuum, vacuum_as_of};
use streamreel_lake::query::{
    column_as_f64, column_as_i64, column_as_strings, register_path, run_sql,
};
use streamreel_lake::silver::{refresh_silver, refresh_silver_before_gold, refresh_silver_with};
use streamreel_lake::tables::Lake;
use streamreel_lake::{BronzeTable, rows_to_batch};
use streamreel_lake::{LakeSettings, VideoMetadata};
use streamreel_protocol::BronzeRow;
use streamreel_tests::bronze_fixture::{accepted_rows, write_bronze};
use streamreel_tests::node_process::streamreel_command;
use streamreel_tests::simulated;

use crate::reference;
use crate::support::models_run;

async fn query(
    path: &Path,
    sql: &str,
) -> anyhow::Result<Vec<deltalake::arrow::array::RecordBatch>> {
    let ctx = SessionContext::new();
    register_path(&ctx, "t", path).await?;
    Ok(run_sql(&ctx, sql).await?)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Every row of `rows` split into `parts` consecutive slices per partition.
/// How each model was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Built {
    InFull,
    /// Rebuilt for this many days whose sessions changed.
    Days(usize),
    /// Updated by difference with this many session rows.
    Difference(usize),
}

fn how_built(run: &GoldRun) -> Vec<(String, Built)> {
    run.models
        .iter()
        .map(|m| {
            let built = match (m.days_rebuilt, m.sessions_applied) {
                (_, Some(rows)) => Built::Difference(rows),
                (Some(days), None) => Built::Days(days),
                (None, None) => Built::InFull,
            };
            (m.model.clone(), built)
        })
        .collect()
}

fn split(
    rows: &BTreeMap<i32, Vec<BronzeRow>>,
    parts: usize,
    part: usize,
) -> BTreeMap<i32, Vec<BronzeRow>> {
    rows.iter()
        .map(|(p, rows)| {
            let size = rows.len().div_ceil(parts);
            let slice = rows.iter().skip(part * size).take(size).cloned().collect();
            (*p, slice)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gold_matches_an_independent_reference_across_incremental_runs() -> anyhow::Result<()> {
    let videos = simulated::catalogue()?;
    let messages = simulated::messages(40_000, 11)?;
    let mut rows = accepted_rows(&messages, 3);
    // Some events arrive two runs late: moved from the first third of each
    // partition to its end, with new offsets, so that the last run must merge
    // them into sessions the first one stored.
    for partition_rows in rows.values_mut() {
        let third = partition_rows.len() / 3;
        let next_offset = partition_rows.last().map_or(0, |r| r.kafka_offset) + 1;
        let mut moved: Vec<BronzeRow> = (0..10)
            .rev()
            .map(|n| partition_rows.remove(5 + n * third / 12))
            .collect();
        moved.reverse();
        for (offset, mut row) in (next_offset..).zip(moved) {
            row.kafka_offset = offset;
            partition_rows.push(row);
        }
    }
    // Events of a video missing from the catalogue: kept in silver, left out of gold.
    let mut unknown = rows[&0].last().unwrap().clone();
    for (n, kind) in ["play", "stop"].into_iter().enumerate() {
        unknown.event_id = format!("unknown-video-{n}");
        unknown.session_id = "unknown-video-session".into();
        unknown.video_id = "vid-not-in-catalogue".into();
        unknown.event_type = kind.into();
        unknown.seek_to_s = None;
        unknown.kafka_offset += 1;
        rows.get_mut(&0).unwrap().push(unknown.clone());
    }
    let all: Vec<BronzeRow> = rows.values().flatten().cloned().collect();
    let late = all.iter().filter(|r| {
        all.iter().any(|o| {
            o.session_id == r.session_id
                && o.kafka_offset < r.kafka_offset
                && o.event_time_us > r.event_time_us
        })
    });
    assert!(
        late.count() > 0,
        "the stream has events arriving out of time order"
    );
    // And some arrive in the last run, older than events of their session
    // the first run stored.
    let mut newest_in_first_run: HashMap<&str, i64> = HashMap::new();
    let first_run = split(&rows, 3, 0);
    for o in first_run.values().flatten() {
        let newest = newest_in_first_run
            .entry(o.session_id.as_str())
            .or_insert(i64::MIN);
        *newest = (*newest).max(o.event_time_us);
    }
    let late_across_runs = split(&rows, 3, 2).values().flatten().any(|r| {
        newest_in_first_run
            .get(r.session_id.as_str())
            .is_some_and(|newest| *newest > r.event_time_us)
    });
    assert!(
        late_across_runs,
        "a run gets late events of sessions an earlier run stored"
    );

    let lake = tempfile::tempdir()?;
    // Three runs over growing bronze: sessions straddle the run boundaries,
    // and, in chunks smaller than a partition's backlog, the chunk boundaries.
    let small_chunks = LakeSettings {
        chunk_events: 2_000,
        ..LakeSettings::default()
    };
    let mut recomputed = 0;
    let mut runs = Vec::new();
    for part in 0..3 {
        write_bronze(lake.path(), &split(&rows, 3, part), 4).await?;
        let (report, silver) =
            refresh_silver_before_gold(lake.path(), &videos, &small_chunks).await?;
        assert!(
            report.new_events > 0 && report.chunks > 3,
            "run {part} read only new bronze rows, in chunks: {report:?}"
        );
        recomputed += report.sessions_recomputed;
        if part == 1 {
            // Silver's record of the rows it replaced lost: gold cannot
            // update by difference and falls back.
            assert!(report.sessions_recomputed > 0, "{report:?}");
            std::fs::remove_dir_all(Lake::new(lake.path()).replaced_sessions())?;
            runs.push(how_built(&run_models(lake.path(), &videos, None).await?));
        } else {
            // As `models run` does: gold from the tables silver left.
            let settings = LakeSettings::default();
            let gold = run_models_after(lake.path(), &videos, None, &settings, silver).await?;
            runs.push(how_built(&gold));
        }
    }
    assert!(
        recomputed > 0,
        "some sessions were completed by a later chunk"
    );
    let again = refresh_silver(lake.path(), &videos).await?;
    assert_eq!(again.new_events, 0, "nothing new, nothing read");
    let last = how_built(&run_models(lake.path(), &videos, None).await?);
    // The first gold run builds every model in full. Without silver's record
    // the per-day models are rebuilt for the days whose sessions changed,
    // the others in full. With it, every model is updated by difference,
    // with no rows when nothing changed.
    assert!(runs[0].iter().all(|(_, b)| *b == Built::InFull), "{runs:?}");
    for (model, built) in &runs[1] {
        match built {
            Built::Days(days) => {
                assert!(PER_DAY_MODELS.contains(&model.as_str()) && *days >= 1)
            }
            Built::InFull => assert!(!PER_DAY_MODELS.contains(&model.as_str())),
            Built::Difference(_) => panic!("{model} updated without the record: {runs:?}"),
        }
    }
    assert!(
        runs[2]
            .iter()
            .all(|(_, b)| matches!(b, Built::Difference(n) if *n > 0)),
        "{runs:?}"
    );
    assert!(
        last.iter().all(|(_, b)| *b == Built::Difference(0)),
        "{last:?}"
    );
    // Every gold table is past every recorded version: trimming empties the
    // record, and the next run still updates by difference.
    assert!(trim_replaced_sessions(lake.path()).await?);
    let left = query(
        &Lake::new(lake.path()).replaced_sessions(),
        "SELECT COUNT(*) AS n FROM t",
    )
    .await?;
    assert_eq!(column_as_i64(&left[0], "n")?[0], 0);
    let after_trim = how_built(&run_models(lake.path(), &videos, None).await?);
    assert!(
        after_trim.iter().all(|(_, b)| *b == Built::Difference(0)),
        "{after_trim:?}"
    );
    // The incremental runs' tables, before anything is rebuilt.
    assert_matches_reference(lake.path(), &all, &videos)
        .await
        .context("after three incremental runs")?;
    // A view_sessions deleted and built again (from enriched_events, in more
    // commits than the old one had) is a new table: every model is built
    // from it in full, not patched with its later commits.
    std::fs::remove_dir_all(Lake::new(lake.path()).view_sessions())?;
    let tiny_chunks = LakeSettings {
        chunk_events: 500,
        ..LakeSettings::default()
    };
    refresh_silver_with(lake.path(), &videos, &tiny_chunks).await?;
    let after_rebuild = how_built(&run_models(lake.path(), &videos, None).await?);
    assert!(
        after_rebuild.iter().all(|(_, b)| *b == Built::InFull),
        "{after_rebuild:?}"
    );

    // And the tables of one run over everything, for comparison.
    assert_matches_reference(lake.path(), &all, &videos)
        .await
        .context("after view_sessions was built again")?;
    Ok(())
}

/// Every `view_sessions` column the independent reference computes, for
/// every session, and every gold table equal to the reference's, and the data
/// tests passing.
async fn assert_matches_reference(
    lake: &Path,
    all: &[BronzeRow],
    videos: &[VideoMetadata],
) -> anyhow::Result<()> {
    let expected = reference::sessions(all, videos);
    let enriched = query(
        &Lake::new(lake).enriched_events(),
        "SELECT COUNT(*) AS n, COUNT(title) AS known FROM t",
    )
    .await?;
    assert_eq!(
        column_as_i64(&enriched[0], "n")?[0],
        all.len() as i64,
        "each bronze row enriched once"
    );
    assert_eq!(
        column_as_i64(&enriched[0], "known")?[0],
        all.len() as i64 - 2
    );

    // view_sessions: every column the reference computes, of every session.
    let batches = query(
        &Lake::new(lake).view_sessions(),
        "SELECT session_id, user_key, video_id, region, event_count, watch_s, max_position_s, \
         exit_position_s, pct_watched, COALESCE(CAST(completed AS INT), -1) AS completed, \
         CAST(day AS INT) AS day, CAST(started_at AS BIGINT) AS started_at, \
         CAST(last_event_at AS BIGINT) AS last_event_at, COALESCE(device, '<null>') AS device, \
         COALESCE(genre, '<null>') AS genre, COALESCE(creator, '<null>') AS creator, \
         COALESCE(duration_s, -1.0) AS duration_s FROM t ORDER BY session_id",
    )
    .await?;
    let mut actual = Vec::new();
    for b in &batches {
        let ids = column_as_strings(b, "session_id")?;
        let counts = column_as_i64(b, "event_count")?;
        let watch = column_as_f64(b, "watch_s")?;
        let max = column_as_f64(b, "max_position_s")?;
        let exit = column_as_f64(b, "exit_position_s")?;
        let pct = column_as_f64(b, "pct_watched")?;
        let days = column_as_i64(b, "day")?;
        let users = column_as_strings(b, "user_key")?;
        let video_ids = column_as_strings(b, "video_id")?;
        let regions = column_as_strings(b, "region")?;
        let completed = column_as_i64(b, "completed")?;
        let started = column_as_i64(b, "started_at")?;
        let last = column_as_i64(b, "last_event_at")?;
        let devices = column_as_strings(b, "device")?;
        let genres = column_as_strings(b, "genre")?;
        let creators = column_as_strings(b, "creator")?;
        let durations = column_as_f64(b, "duration_s")?;
        for i in 0..b.num_rows() {
            actual.push((
                ids[i].clone(),
                counts[i],
                watch[i],
                max[i],
                exit[i],
                pct[i],
                days[i],
                (users[i].clone(), video_ids[i].clone(), regions[i].clone()),
                completed[i],
                (
                    started[i],
                    last[i],
                    devices[i].clone(),
                    genres[i].clone(),
                    creators[i].clone(),
                    durations[i],
                ),
            ));
        }
    }
    let mut expected_sorted = expected.clone();
    expected_sorted.sort_by(|a, b| a.session_id.cmp(&b.session_id));
    assert_eq!(actual.len(), expected_sorted.len(), "one row per session");
    for (got, want) in actual.iter().zip(&expected_sorted) {
        assert_eq!(got.0, want.session_id);
        assert_eq!(got.1, want.event_count, "{}", want.session_id);
        assert!(
            close(got.2, want.watch_s),
            "watch_s of {}: {} vs {}",
            want.session_id,
            got.2,
            want.watch_s
        );
        assert!(
            close(got.3, want.max_position_s),
            "max_position_s of {}",
            want.session_id
        );
        assert!(
            close(got.4, want.exit_position_s),
            "exit_position_s of {}",
            want.session_id
        );
        match want.pct_watched() {
            Some(pct) => assert!(close(got.5, pct)),
            None => assert!(got.5.is_nan(), "unknown video: null pct_watched"),
        }
        assert_eq!(got.6, want.day);
        assert_eq!(
            got.7,
            (
                want.user_key.clone(),
                want.video_id.clone(),
                want.region.clone()
            ),
            "the first event's user, video and region for {}",
            want.session_id
        );
        let completed = want.completed().map_or(-1, i64::from);
        assert_eq!(got.8, completed, "completed of {}", want.session_id);
        let null = || "<null>".to_string();
        let video = want.video.as_ref();
        assert_eq!(
            got.9,
            (
                want.started_at_us,
                want.last_event_at_us,
                want.device.clone().unwrap_or_else(null),
                video.map_or_else(null, |v| v.genre.clone()),
                video.map_or_else(null, |v| v.creator.clone()),
                video.map_or(-1.0, |v| v.duration_s),
            ),
            "started_at, last_event_at, device, genre, creator, duration_s of {}",
            want.session_id
        );
    }

    // Gold, table by table.
    let gold = |name: &str| Lake::new(lake).gold(name);
    let retention = reference::viewer_retention(&expected);
    let b = query(&gold("viewer_retention"), "SELECT * FROM t").await?;
    let mut seen = 0;
    for b in &b {
        let (v, k, n, r, q) = (
            column_as_strings(b, "video_id")?,
            column_as_i64(b, "bucket_pct")?,
            column_as_i64(b, "sessions")?,
            column_as_i64(b, "viewers_reached")?,
            column_as_f64(b, "retention")?,
        );
        for i in 0..b.num_rows() {
            let want = retention[&(v[i].clone(), k[i])];
            assert_eq!((n[i], r[i]), (want.0, want.1), "{} {}", v[i], k[i]);
            assert!(close(q[i], want.2));
            seen += 1;
        }
    }
    assert_eq!(seen, retention.len());

    let dropoff = reference::dropoff_by_genre(&expected);
    let b = query(&gold("dropoff_by_genre"), "SELECT * FROM t").await?;
    let mut seen = 0;
    for b in &b {
        let (g, k, n, s) = (
            column_as_strings(b, "genre")?,
            column_as_i64(b, "bucket_pct")?,
            column_as_i64(b, "sessions")?,
            column_as_f64(b, "share")?,
        );
        for i in 0..b.num_rows() {
            let want = dropoff[&(g[i].clone(), k[i])];
            assert_eq!(n[i], want.0, "{} {}", g[i], k[i]);
            assert!(close(s[i], want.1));
            seen += 1;
        }
    }
    assert_eq!(seen, dropoff.len());

    let regional = reference::regional_viewership(&expected);
    let b = query(
        &gold("regional_viewership"),
        "SELECT CAST(day AS INT) AS day, region, sessions, unique_viewers, watch_hours FROM t",
    )
    .await?;
    let mut seen = 0;
    for b in &b {
        let (d, r, n, u, h) = (
            column_as_i64(b, "day")?,
            column_as_strings(b, "region")?,
            column_as_i64(b, "sessions")?,
            column_as_i64(b, "unique_viewers")?,
            column_as_f64(b, "watch_hours")?,
        );
        for i in 0..b.num_rows() {
            let want = regional[&(d[i], r[i].clone())];
            assert_eq!((n[i], u[i]), (want.0, want.1));
            assert!(close(h[i], want.2));
            seen += 1;
        }
    }
    assert_eq!(seen, regional.len());

    let videos_ref = reference::top_videos(&expected);
    let b = query(&gold("top_videos"), "SELECT * FROM t").await?;
    let mut seen = 0;
    for b in &b {
        let (v, c, n, u, h, cr, rk) = (
            column_as_strings(b, "video_id")?,
            column_as_strings(b, "creator")?,
            column_as_i64(b, "sessions")?,
            column_as_i64(b, "unique_viewers")?,
            column_as_f64(b, "watch_hours")?,
            column_as_f64(b, "completion_rate")?,
            column_as_i64(b, "rank")?,
        );
        for i in 0..b.num_rows() {
            let want = &videos_ref[&v[i]];
            assert_eq!(
                (&c[i], n[i], u[i], rk[i]),
                (&want.0, want.1, want.2, want.5),
                "{}",
                v[i]
            );
            assert!(close(h[i], want.3) && close(cr[i], want.4));
            seen += 1;
        }
    }
    assert_eq!(seen, videos_ref.len());

    let creators = reference::top_creators(&expected);
    let b = query(&gold("top_creators"), "SELECT * FROM t").await?;
    let mut seen = 0;
    for b in &b {
        let (c, v, n, h, rk) = (
            column_as_strings(b, "creator")?,
            column_as_i64(b, "videos")?,
            column_as_i64(b, "sessions")?,
            column_as_f64(b, "watch_hours")?,
            column_as_i64(b, "rank")?,
        );
        for i in 0..b.num_rows() {
            let want = creators[&c[i]];
            assert_eq!((v[i], n[i], rk[i]), (want.0, want.1, want.3), "{}", c[i]);
            assert!(close(h[i], want.2));
            seen += 1;
        }
    }
    assert_eq!(seen, creators.len());

    let daily = reference::daily_engagement(&expected);
    let b = query(&gold("daily_engagement"), "SELECT CAST(day AS INT) AS day, sessions, unique_viewers, watch_hours, avg_pct_watched, completion_rate FROM t").await?;
    let mut seen = 0;
    for b in &b {
        let (d, n, u, h, p, c) = (
            column_as_i64(b, "day")?,
            column_as_i64(b, "sessions")?,
            column_as_i64(b, "unique_viewers")?,
            column_as_f64(b, "watch_hours")?,
            column_as_f64(b, "avg_pct_watched")?,
            column_as_f64(b, "completion_rate")?,
        );
        for i in 0..b.num_rows() {
            let want = daily[&d[i]];
            assert_eq!((n[i], u[i]), (want.0, want.1));
            assert!(close(h[i], want.2) && close(p[i], want.3) && close(c[i], want.4));
            seen += 1;
        }
    }
    assert_eq!(seen, daily.len());

    let results = run_data_tests(lake, videos, DATA_TESTS, 1 << 30).await?;
    let failed: Vec<_> = results.iter().filter(|r| !r.passed()).collect();
    assert!(
        failed.is_empty(),
        "data tests pass on correct tables: {failed:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_gold_table_fails_models_test_with_a_readable_report() -> anyhow::Result<()> {
    let lake = tempfile::tempdir()?;
    let data_dir = lake.path();
    write_bronze(
        &data_dir.join("lake"),
        &accepted_rows(&simulated::messages(3_000, 5)?, 2),
        1,
    )
    .await?;
    models_run(&data_dir.join("lake"), &[])?;
    let ok = streamreel_command()?
        .current_dir(streamreel_tests::repo_root())
        .args(["models", "test", "--data-dir"])
        .arg(data_dir)
        .output()?;
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );

    // Break viewer_retention: a retention above 1 and a duplicated key.
    let path = Lake::new(data_dir.join("lake")).gold("viewer_retention");
    let ctx = SessionContext::new();
    register_path(&ctx, "t", &path).await?;
    let broken = run_sql(
        &ctx,
        "SELECT video_id, bucket_pct, sessions, viewers_reached, \
         CASE WHEN bucket_pct = 0 THEN retention + 1.5 ELSE retention END AS retention FROM t \
         UNION ALL SELECT * FROM (SELECT * FROM t LIMIT 1)",
    )
    .await?;
    let table = streamreel_lake::tables::open_if_exists(&path)
        .await?
        .unwrap();
    table
        .write(broken)
        .with_save_mode(deltalake::protocol::SaveMode::Overwrite)
        .await?;

    let failed = streamreel_command()?
        .current_dir(streamreel_tests::repo_root())
        .args(["models", "test", "--data-dir"])
        .arg(data_dir)
        .output()?;
    let report = String::from_utf8(failed.stdout)?;
    assert!(
        !failed.status.success(),
        "a failing data test exits non-zero:\n{report}"
    );
    assert!(
        report.contains("FAIL viewer_retention.range(retention, 0, 1)"),
        "{report}"
    );
    assert!(
        report.contains("FAIL viewer_retention.unique(video_id, bucket_pct): 1 failing rows"),
        "{report}"
    );
    assert!(
        report.contains("PASS top_videos.unique(video_id)"),
        "{report}"
    );
    // Bucket 0's retention is 1.0; broken, it reads 2.5.
    assert!(
        report.contains("failing rows, for example:")
            && report
                .lines()
                .any(|line| line.starts_with("    |") && line.contains("2.5")),
        "examples show the failing rows:\n{report}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_rows_and_vacuum_waits_for_the_retention_period() -> anyhow::Result<()> {
    let lake = tempfile::tempdir()?;
    let rows = accepted_rows(&simulated::messages(6_000, 3)?, 2);
    write_bronze(lake.path(), &rows, 15).await?;
    let path = BronzeTable::path_in(lake.path());
    let fingerprint = "SELECT COUNT(*) AS n, COUNT(DISTINCT event_id) AS ids, SUM(kafka_offset) AS offsets, \
                       SUM(position_s) AS positions FROM t";
    let before = query(&path, fingerprint).await?;
    let files_before = file_count(&path).await?;
    assert!(
        files_before >= 30,
        "many small commits: {files_before} files"
    );

    let report = compact(&path, &LakeSettings::default()).await?;
    assert_eq!(report.files_removed, files_before);
    let files_after = file_count(&path).await?;
    assert!(
        files_after < files_before && files_after <= 2,
        "{files_after} files after compaction"
    );
    let after = query(&path, fingerprint).await?;
    for column in ["n", "ids", "offsets"] {
        assert_eq!(
            column_as_i64(&before[0], column)?,
            column_as_i64(&after[0], column)?
        );
    }
    assert!(close(
        column_as_f64(&before[0], "positions")?[0],
        column_as_f64(&after[0], "positions")?[0]
    ));

    let parquet_files = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "parquet")
            })
            .count()
    };
    let on_disk = parquet_files(&path);
    assert_eq!(
        vacuum(&path, chrono::Duration::hours(1)).await?,
        0,
        "within retention nothing goes"
    );
    assert_eq!(parquet_files(&path), on_disk);
    let refused = vacuum(&path, chrono::Duration::zero())
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("below the 1 h floor"), "{refused}");
    // Two hours on, the files compaction replaced are past the retention.
    let later = chrono::Utc::now().timestamp_millis() + 2 * 3_600_000;
    let deleted = vacuum_as_of(&path, chrono::Duration::hours(1), later).await?;
    assert_eq!(
        deleted, files_before,
        "past retention the replaced files go"
    );
    assert_eq!(parquet_files(&path), files_after as usize);
    let after_vacuum = query(&path, fingerprint).await?;
    assert_eq!(
        column_as_i64(&after_vacuum[0], "n")?,
        column_as_i64(&before[0], "n")?
    );
    // A retention raised again is the table's again.
    vacuum(&path, chrono::Duration::hours(168)).await?;
    let table = streamreel_lake::tables::open_if_exists(&path)
        .await?
        .expect("bronze exists");
    assert_eq!(
        table
            .snapshot()?
            .table_config()
            .deleted_file_retention_duration(),
        std::time::Duration::from_secs(168 * 3600)
    );
    // More appends still work on the compacted table.
    let mut bronze = BronzeTable::open_or_create(lake.path()).await?;
    let extra = rows[&0].last().unwrap().clone();
    let mut extra = extra;
    extra.event_id = "after-compaction".into();
    extra.kafka_offset += 1;
    bronze
        .append(rows_to_batch(&[extra.clone()])?, 0, extra.kafka_offset)
        .await?;
    assert_eq!(
        BronzeTable::open_or_create(lake.path())
            .await?
            .committed_offset(0)
            .await?,
        Some(extra.kafka_offset)
    );
    let appended = query(
        &path,
        "SELECT COUNT(*) AS n, COUNT(CASE WHEN event_id = 'after-compaction' THEN 1 END) AS extra FROM t",
    )
    .await?;
    assert_eq!(
        column_as_i64(&appended[0], "n")?[0],
        column_as_i64(&before[0], "n")?[0] + 1
    );
    assert_eq!(column_as_i64(&appended[0], "extra")?, vec![1]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vacuum_beside_a_writer_loses_nothing() -> anyhow::Result<()> {
    let lake = tempfile::tempdir()?;
    let rows = accepted_rows(&simulated::messages(4_000, 21)?, 2);
    let expected: usize = rows.values().map(Vec::len).sum();
    let path = BronzeTable::path_in(lake.path());
    BronzeTable::open_or_create(lake.path()).await?;
    // The first vacuum records the retention in the table's properties (a
    // metadata commit, which a concurrent writer retries); later ones commit
    // nothing.
    assert_eq!(vacuum(&path, chrono::Duration::hours(1)).await?, 0);
    let writer = {
        let (dir, rows) = (lake.path().to_path_buf(), rows.clone());
        tokio::spawn(async move { write_bronze(&dir, &rows, 40).await })
    };
    // Vacuum over and over while files are written and committed: a file not
    // yet in the log must survive it.
    let mut vacuums = 0;
    while !writer.is_finished() {
        assert_eq!(vacuum(&path, chrono::Duration::hours(1)).await?, 0);
        vacuums += 1;
    }
    writer.await??;
    assert!(
        vacuums > 1,
        "vacuum ran beside the writer ({vacuums} times)"
    );
    let count = query(
        &path,
        "SELECT COUNT(*) AS n, COUNT(DISTINCT event_id) AS ids FROM t",
    )
    .await?;
    assert_eq!(column_as_i64(&count[0], "n")?[0], expected as i64);
    assert_eq!(column_as_i64(&count[0], "ids")?[0], expected as i64);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gold_is_published_only_when_its_data_tests_pass() -> anyhow::Result<()> {
    let videos = simulated::catalogue()?;
    let lake = tempfile::tempdir()?;
    write_bronze(
        lake.path(),
        &accepted_rows(&simulated::messages(3_000, 7)?, 2),
        1,
    )
    .await?;
    refresh_silver(lake.path(), &videos).await?;
    let published = run_models(lake.path(), &videos, None).await?;
    assert_eq!(published.models.len(), 6);
    assert!(published.tests.iter().all(|t| t.passed()));
    let sessions_version =
        streamreel_lake::tables::open_if_exists(&Lake::new(lake.path()).view_sessions())
            .await?
            .unwrap()
            .version();
    assert_eq!(Some(published.sessions_version), sessions_version);

    // Every gold commit names the silver version it was built from.
    let gold_state = || async {
        let mut state = Vec::new();
        for run in &published.models {
            let table =
                streamreel_lake::tables::open_if_exists(&Lake::new(lake.path()).gold(&run.model))
                    .await?
                    .unwrap();
            let from = table
                .snapshot()?
                .transaction_version(table.log_store().as_ref(), FROM_SESSIONS_APP_ID)
                .await?;
            state.push((run.model.clone(), table.version(), from));
        }
        anyhow::Ok(state)
    };
    let before = gold_state().await?;
    for (model, version, from) in &before {
        assert_eq!(*from, Some(published.sessions_version as i64), "{model}");
        assert!(version.is_some(), "{model}");
    }

    // A data test that the new data fails: nothing is published, not even the
    // models whose own tests pass, and the run fails with the report.
    let error = run_models_audited_by(
        lake.path(),
        &videos,
        None,
        "[top_videos]\nrange = { sessions = [0, 0] }\n",
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(error.contains("gold not published"), "{error}");
    assert!(
        error.contains("FAIL top_videos.range(sessions, 0, 0)"),
        "{error}"
    );
    assert_eq!(
        gold_state().await?,
        before,
        "the previous gold stays visible"
    );

    // A video removed from the metadata file: its sessions stay in silver, the
    // gold tables keyed by video drop it, and every data test still passes.
    let gold = |name: &str| Lake::new(lake.path()).gold(name);
    let top = query(&gold("top_videos"), "SELECT video_id FROM t WHERE rank = 1").await?;
    let removed = column_as_strings(&top[0], "video_id")?[0].clone();
    let fewer: Vec<_> = videos
        .iter()
        .filter(|v| v.video_id != removed)
        .cloned()
        .collect();
    let rerun = run_models(lake.path(), &fewer, None).await?;
    assert!(rerun.tests.iter().all(|t| t.passed()), "{:?}", rerun.tests);
    for model in ["viewer_retention", "top_videos"] {
        let sql = format!("SELECT COUNT(*) AS n FROM t WHERE video_id = '{removed}'");
        let left = column_as_i64(&query(&gold(model), &sql).await?[0], "n")?[0];
        assert_eq!(left, 0, "{model} dropped {removed}");
    }
    let sql = format!("SELECT COUNT(*) AS n FROM t WHERE video_id = '{removed}'");
    let kept = column_as_i64(
        &query(&Lake::new(lake.path()).view_sessions(), &sql).await?[0],
        "n",
    )?[0];
    assert!(kept > 0, "silver keeps the sessions of {removed}");
    let tests = run_data_tests(lake.path(), &fewer, DATA_TESTS, 1 << 30).await?;
    let failed: Vec<_> = tests.iter().filter(|t| !t.passed()).collect();
    assert!(failed.is_empty(), "{failed:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_writes_any_table_to_csv_and_parquet_and_logs_can_be_json() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let lake = data.path().join("lake");
    write_bronze(
        &lake,
        &accepted_rows(&simulated::messages(3_000, 13)?, 2),
        1,
    )
    .await?;
    let run = models_run(&lake, &["--log-format", "json"])?;
    // With --log-format json every log line is one JSON object.
    let logs = String::from_utf8(run.stderr)?;
    let mut events = 0;
    for line in logs.lines() {
        let event: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("not a JSON log line ({e}): {line}"))?;
        assert!(
            event["level"].is_string() && event["fields"].is_object(),
            "{line}"
        );
        events += 1;
    }
    assert!(
        events >= 6,
        "one line per published model at least:\n{logs}"
    );
    let export = |table: &str, format: &str, out: &Path| -> anyhow::Result<_> {
        Ok(streamreel_command()?
            .args(["export", "--table", table, "--format", format, "--out"])
            .arg(out)
            .arg("--lake")
            .arg(&lake)
            .output()?)
    };

    // CSV: a header and one line per row, the gold values as written.
    let csv_path = data.path().join("top_videos.csv");
    let out = export("gold/top_videos", "csv", &csv_path)?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&csv_path)?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    assert!(
        header.contains(&"video_id") && header.contains(&"watch_hours"),
        "{header:?}"
    );
    let gold = query(
        &Lake::new(&lake).gold("top_videos"),
        "SELECT video_id, rank FROM t ORDER BY rank",
    )
    .await?;
    let gold_rows: usize = gold.iter().map(|b| b.num_rows()).sum();
    assert_eq!(lines.clone().count(), gold_rows);
    let first_video = &column_as_strings(&gold[0], "video_id")?[0];
    let rank = header.iter().position(|c| *c == "rank").unwrap();
    let video = header.iter().position(|c| *c == "video_id").unwrap();
    assert!(
        lines.any(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            cells[video] == first_video && cells[rank] == "1"
        }),
        "rank 1 is {first_video}"
    );

    // The dashboard's rows of one video; a model without videos refuses the filter.
    let one = streamreel_lake::gold::gold_rows(&lake, "top_videos", Some(first_video))
        .await?
        .expect("top_videos is built");
    let one: Vec<serde_json::Value> = serde_json::from_slice(&one.json)?;
    assert!(
        one.len() == 1 && one[0]["video_id"] == first_video.as_str(),
        "{one:?}"
    );
    let refused = streamreel_lake::gold::gold_rows(&lake, "top_creators", Some(first_video)).await;
    assert!(
        matches!(refused, Err(streamreel_lake::LakeError::NotPerVideo { .. })),
        "{refused:?}"
    );

    // A directory as the target is refused before anything is written.
    let out = export("gold/top_videos", "csv", data.path())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("is a directory"),
        "{stderr}"
    );

    // Parquet: bronze, every row; read back with the Parquet reader.
    let parquet_path = data.path().join("bronze.parquet");
    let out = export("bronze", "parquet", &parquet_path)?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = std::fs::File::open(&parquet_path)?;
    let reader =
        deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?
            .build()?;
    let mut rows = 0;
    for batch in reader {
        rows += batch?.num_rows();
    }
    let bronze = query(&BronzeTable::path_in(&lake), "SELECT COUNT(*) AS n FROM t").await?;
    assert_eq!(rows as i64, column_as_i64(&bronze[0], "n")?[0]);

    // A table without rows still exports its header.
    let empty_lake = data.path().join("empty-lake");
    BronzeTable::open_or_create(&empty_lake).await?;
    let empty_csv = data.path().join("empty.csv");
    let out = streamreel_command()?
        .args(["export", "--table", "bronze", "--format", "csv", "--out"])
        .arg(&empty_csv)
        .arg("--lake")
        .arg(&empty_lake)
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&empty_csv)?;
    assert!(
        text.lines().count() == 1 && text.starts_with("event_id,"),
        "{text:?}"
    );

    // An unknown table is refused by name, and no file is left behind.
    let out = export("gold/nope", "csv", &data.path().join("nope.csv"))?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown table \"gold/nope\""));
    assert!(!data.path().join("nope.csv").exists());
    Ok(())
}
