//! `streamreel models run | test`: silver and gold from the command line.

use std::path::Path;

use streamreel_lake::LakeSettings;
use streamreel_lake::data_tests::{DATA_TESTS, report, run_data_tests};
use streamreel_lake::gold::{check_selection, run_models_after};
use streamreel_lake::read_metadata_file;
use streamreel_lake::silver::refresh_silver_before_gold;
use streamreel_lake::tables::Lake;

use crate::error::NodeError;
use crate::progress::Progress;

/// Brings silver up to date from bronze, then builds the selected gold models.
pub async fn models_run(
    lake_dir: &Path,
    metadata: &Path,
    select: Option<&str>,
    settings: &LakeSettings,
) -> Result<String, NodeError> {
    // A misspelt model is refused before silver, which may take minutes.
    check_selection(select)?;
    let videos = read_metadata_file(metadata)?;
    let mut progress = Progress::new("steps (silver, gold)", Some(2));
    let started = std::time::Instant::now();
    let (silver, tables) = refresh_silver_before_gold(lake_dir, &videos, settings).await?;
    let silver_time = started.elapsed();
    progress.advance(1);
    let mut out = format!(
        "silver: {} new bronze events ({} of unknown videos) in {} chunks, {} sessions written \
         ({} recomputed with earlier events) (bronze version {}) in {:.2} s: reading {:.2} s, \
         finding earlier events {:.2} s, sessionising (beyond the writes) {:.2} s, \
         writing {:.2} s (events {:.2} s, sessions {:.2} s)\n",
        silver.new_events,
        silver.unknown_video_events,
        silver.chunks,
        silver.sessions_written,
        silver.sessions_recomputed,
        silver
            .bronze_version
            .map_or("-".to_string(), |v| v.to_string()),
        silver_time.as_secs_f64(),
        silver.reading.as_secs_f64(),
        silver.looking_up.as_secs_f64(),
        silver.sessionising.as_secs_f64(),
        (silver.writing_events + silver.writing_sessions).as_secs_f64(),
        silver.writing_events.as_secs_f64(),
        silver.writing_sessions.as_secs_f64(),
    );
    let started = std::time::Instant::now();
    let gold = run_models_after(lake_dir, &videos, select, settings, tables).await?;
    progress.advance(1);
    progress.finish();
    out.push_str(&format!(
        "gold: built from view_sessions version {}, {} data tests passed before publishing, in {:.2} s\n",
        gold.sessions_version,
        gold.tests.len(),
        started.elapsed().as_secs_f64()
    ));
    for run in gold.models {
        if let Some(newer) = run.superseded_by {
            out.push_str(&format!(
                "gold {}: not published, another run already published it from view_sessions version {newer}\n",
                run.model
            ));
            continue;
        }
        let rebuilt = match (run.days_rebuilt, run.sessions_applied) {
            (_, Some(rows)) => format!(", updated by difference with {rows} session rows"),
            (Some(1), None) => ", rebuilt for the 1 day whose sessions changed".to_string(),
            (Some(days), None) => format!(", rebuilt for the {days} days whose sessions changed"),
            (None, None) => String::new(),
        };
        let timings = run.timings;
        out.push_str(&format!(
            "gold {}: {} rows (version {}{rebuilt}; built {:.2} s, tested {:.2} s, published {:.2} s) at {}\n",
            run.model,
            run.rows,
            run.version,
            timings.building.as_secs_f64(),
            timings.testing.as_secs_f64(),
            timings.publishing.as_secs_f64(),
            Lake::new(lake_dir).gold(&run.model).display()
        ));
    }
    Ok(out)
}

/// Runs every data test; returns the report and whether all passed.
pub async fn models_test(
    lake_dir: &Path,
    metadata: &Path,
    memory_limit_bytes: usize,
) -> Result<(String, bool), NodeError> {
    let videos = read_metadata_file(metadata)?;
    let results = run_data_tests(lake_dir, &videos, DATA_TESTS, memory_limit_bytes).await?;
    let passed = results.iter().all(|r| r.passed());
    Ok((report(&results), passed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_misspelt_model_is_refused_before_anything_is_read() {
        let lake = tempfile::tempdir().unwrap();
        let refused = models_run(
            lake.path(),
            Path::new("no-such-metadata.csv"),
            Some("top_video"),
            &LakeSettings::default(),
        )
        .await
        .unwrap_err();
        let message = refused.to_string();
        assert!(
            message.contains("top_video") && message.contains("top_videos"),
            "{message}"
        );
    }
}
