//! What each job does, on the lake.

use std::path::Path;

use streamreel_lake::data_tests::{DATA_TESTS, report, run_data_tests};
use streamreel_lake::gold::{model_names, run_models};
use streamreel_lake::maintenance::{compact, vacuum};
use streamreel_lake::read_metadata_file;
use streamreel_lake::silver::refresh_silver;
use streamreel_lake::tables::Lake;

use super::job::{JobKind, JobOutcome, JobSchedule};

pub async fn run_job(
    job: JobKind,
    lake_dir: &Path,
    metadata: &Path,
    schedule: &JobSchedule,
) -> Result<JobOutcome, String> {
    let text = |e: streamreel_lake::LakeError| e.to_string();
    match job {
        JobKind::Enrich => {
            let videos = read_metadata_file(metadata).map_err(text)?;
            let silver = refresh_silver(lake_dir, &videos).await.map_err(text)?;
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
            let videos = read_metadata_file(metadata).map_err(text)?;
            let runs = run_models(lake_dir, &videos, None).await.map_err(text)?;
            let rows = runs.iter().map(|r| r.rows).sum();
            let results = run_data_tests(lake_dir, &videos, DATA_TESTS)
                .await
                .map_err(text)?;
            let failed = results.iter().filter(|r| !r.passed()).count();
            let summary = format!(
                "{} models, {rows} rows; data tests: {} passed, {failed} failed",
                runs.len(),
                results.len() - failed
            );
            if failed > 0 {
                return Err(format!("{summary}\n{}", report(&results)));
            }
            Ok(JobOutcome {
                rows,
                detail: summary,
            })
        }
        JobKind::Compact => {
            let mut removed = 0;
            let mut added = 0;
            let lake = Lake::new(lake_dir);
            for path in [lake.bronze(), lake.enriched_events(), lake.view_sessions()] {
                let report = compact(&path).await.map_err(text)?;
                removed += report.files_removed;
                added += report.files_added;
            }
            Ok(JobOutcome {
                rows: removed,
                detail: format!("compacted {removed} files into {added}"),
            })
        }
        JobKind::Vacuum => {
            let retention =
                chrono::Duration::from_std(schedule.vacuum_retention).map_err(|e| e.to_string())?;
            let lake = Lake::new(lake_dir);
            let mut paths = vec![lake.bronze(), lake.enriched_events(), lake.view_sessions()];
            paths.extend(model_names().into_iter().map(|m| lake.gold(m)));
            let mut deleted = 0;
            for path in paths {
                deleted += vacuum(&path, retention).await.map_err(text)?;
            }
            Ok(JobOutcome {
                rows: deleted,
                detail: format!("deleted {deleted} unreferenced files"),
            })
        }
    }
}
