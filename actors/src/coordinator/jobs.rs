//! What each job does, on the lake.

use std::path::Path;
use std::time::Duration;

use tokio::sync::Mutex;
use tracing::warn;

use streamreel_lake::LakeError;
use streamreel_lake::gold::{model_names, run_models_with, trim_replaced_sessions};
use streamreel_lake::maintenance::{compact, vacuum};
use streamreel_lake::read_metadata_file;
use streamreel_lake::silver::refresh_silver_with;
use streamreel_lake::tables::Lake;

use super::job::{JobKind, JobOutcome, JobSchedule};
use crate::error::ActorError;

/// Held by an enrich run, and by a compaction while it rewrites
/// `view_sessions` and `replaced_sessions`. Compacting `view_sessions` reads
/// all of it, so any sessions an enrich run replaces meanwhile (a
/// data-changing removal) make Delta refuse the compaction, and on a large
/// table every time; trimming `replaced_sessions` under a running enrich can
/// fail that run. Bronze and `enriched_events`, which enrich only appends to
/// or reads, are compacted without it.
pub type SilverWrites = Mutex<()>;

/// How long a compaction waits for the enrich run in progress to end before
/// it leaves `view_sessions` and `replaced_sessions` to its next run, so that
/// a long or stuck enrich run does not hold up compaction (and the vacuum
/// that never runs beside it) for as long.
const SILVER_WAIT: Duration = Duration::from_secs(600);

/// A run of [`run_job`], cancelled at its next await once it has run for
/// `timeout` (the schedule's `run_timeout`), so that a run stalled on the lake
/// fails and is retried instead of holding its job, and the silver lock,
/// until the leader changes (the coordinator logs the failure by run id). Cancelling is safe at any await: each commit is one
/// put-if-absent, a commit already handed to the blocking pool that lands
/// anyway is one the retry's conflict checks see (enrich's chunk marks, the
/// compaction guard, gold's overwrite), and files written for a commit that
/// never happened are left to vacuum.
pub async fn bounded(
    timeout: Duration,
    run: impl Future<Output = Result<JobOutcome, ActorError>>,
) -> Result<JobOutcome, ActorError> {
    tokio::time::timeout(timeout, run)
        .await
        .unwrap_or(Err(ActorError::JobTimedOut {
            seconds: timeout.as_secs(),
        }))
}

pub async fn run_job(
    job: JobKind,
    lake_dir: &Path,
    metadata: &Path,
    schedule: &JobSchedule,
    silver_writes: &SilverWrites,
) -> Result<JobOutcome, ActorError> {
    match job {
        JobKind::Enrich => {
            let videos = read_metadata_file(metadata)?;
            let _silver = silver_writes.lock().await;
            let silver = refresh_silver_with(lake_dir, &videos, &schedule.lake).await?;
            Ok(JobOutcome {
                rows: silver.new_events,
                detail: format!(
                    "bronze version {}: {} new events ({} of unknown videos), {} sessions written",
                    silver
                        .bronze_version
                        .map_or("-".to_string(), |v| v.to_string()),
                    silver.new_events,
                    silver.unknown_video_events,
                    silver.sessions_written
                ),
            })
        }
        JobKind::Gold => {
            let videos = read_metadata_file(metadata)?;
            // Write-audit-publish: a failing data test publishes nothing and
            // fails the run with the report.
            let gold = match run_models_with(lake_dir, &videos, None, &schedule.lake).await {
                Ok(gold) => gold,
                // Before the first events reach silver there is nothing to
                // build: not a failure to alarm anyone with.
                Err(LakeError::MissingTable { table }) => {
                    return Ok(JobOutcome {
                        rows: 0,
                        detail: format!("no {table} yet (no events enriched): nothing to build"),
                    });
                }
                Err(error) => return Err(error.into()),
            };
            let rows = gold.models.iter().map(|r| r.rows).sum();
            Ok(JobOutcome {
                rows,
                detail: format!(
                    "{} models, {rows} rows from view_sessions version {}; data tests: {} passed",
                    gold.models.len(),
                    gold.sessions_version,
                    gold.tests.len()
                ),
            })
        }
        JobKind::Compact => {
            let mut removed = 0;
            let mut added = 0;
            let lake = Lake::new(lake_dir);
            for path in [lake.bronze(), lake.enriched_events()] {
                let report = compact(&path, &schedule.lake).await?;
                removed += report.files_removed;
                added += report.files_added;
            }
            let mut detail = String::new();
            match tokio::time::timeout(SILVER_WAIT, silver_writes.lock()).await {
                Ok(_silver) => {
                    trim_replaced_sessions(lake_dir).await?;
                    for path in [lake.view_sessions(), lake.replaced_sessions()] {
                        let report = compact(&path, &schedule.lake).await?;
                        removed += report.files_removed;
                        added += report.files_added;
                    }
                }
                Err(_) => {
                    warn!(
                        waited_s = SILVER_WAIT.as_secs(),
                        "an enrich run held silver all along: view_sessions and replaced_sessions are left to the next compaction"
                    );
                    detail = format!(
                        "; view_sessions and replaced_sessions left to the next run (an enrich \
                         run held them for {} s)",
                        SILVER_WAIT.as_secs()
                    );
                }
            }
            Ok(JobOutcome {
                rows: removed,
                detail: format!("compacted {removed} files into {added}{detail}"),
            })
        }
        JobKind::Vacuum => {
            let retention = chrono::Duration::from_std(schedule.vacuum_retention)
                .map_err(ActorError::VacuumRetention)?;
            let lake = Lake::new(lake_dir);
            let mut paths = vec![
                lake.bronze(),
                lake.enriched_events(),
                lake.view_sessions(),
                lake.replaced_sessions(),
            ];
            paths.extend(model_names().into_iter().map(|m| lake.gold(m)));
            let mut deleted = 0;
            for path in paths {
                deleted += vacuum(&path, retention).await?;
            }
            Ok(JobOutcome {
                rows: deleted,
                detail: format!("deleted {deleted} unreferenced files"),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn schedule() -> JobSchedule {
        JobSchedule {
            enrich_every: Duration::from_secs(30),
            gold_every: Duration::from_secs(120),
            compact_every: Duration::from_secs(3600),
            vacuum_every: Duration::from_secs(86_400),
            vacuum_retention: Duration::from_secs(7 * 86_400),
            max_retries: 3,
            retry_backoff: Duration::from_secs(2),
            run_timeout: Duration::from_secs(3600),
            lake: streamreel_lake::LakeSettings::default(),
        }
    }

    /// Read at run time: a test binary built in another clone sharing the
    /// target dir keeps that clone's compile-time path.
    fn metadata() -> std::path::PathBuf {
        Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"))
            .join("../metadata/video_metadata.csv")
    }

    #[tokio::test]
    async fn gold_before_any_silver_succeeds_with_nothing_to_build() {
        let lake = std::env::temp_dir().join(format!("streamreel-no-lake-{}", std::process::id()));
        let (schedule, metadata) = (schedule(), metadata());
        let outcome = run_job(
            JobKind::Gold,
            &lake,
            &metadata,
            &schedule,
            &SilverWrites::default(),
        )
        .await
        .expect("no silver yet is not a failure");
        assert_eq!(outcome.rows, 0);
        assert!(outcome.detail.contains("nothing to build"), "{outcome:?}");
        assert!(!lake.exists(), "nothing was created");
    }

    #[tokio::test]
    async fn a_run_past_its_timeout_fails_by_name_and_waits_for_silver_no_more() {
        let lake =
            std::env::temp_dir().join(format!("streamreel-no-lake-timeout-{}", std::process::id()));
        let (schedule, metadata) = (schedule(), metadata());
        let silver_writes = SilverWrites::default();
        let enrich = |timeout| {
            bounded(
                timeout,
                run_job(JobKind::Enrich, &lake, &metadata, &schedule, &silver_writes),
            )
        };
        // A compaction holding silver: the enrich run waits for it past its timeout.
        let held = silver_writes.lock().await;
        let outcome = enrich(Duration::from_millis(200)).await;
        assert!(
            matches!(outcome, Err(ActorError::JobTimedOut { .. })),
            "{outcome:?}"
        );
        drop(held);
        // Cancelled, the run no longer queues for silver: the next one gets
        // it and runs (no bronze yet: nothing to enrich) well within its time.
        let outcome = enrich(Duration::from_secs(60))
            .await
            .expect("the lock was let go");
        assert_eq!(outcome.rows, 0);
    }
}
