//! `streamreel models run | test`: silver and gold from the command line.

use std::path::Path;

use streamreel_lake::data_tests::{DATA_TESTS, report, run_data_tests};
use streamreel_lake::gold::run_models;
use streamreel_lake::read_metadata_file;
use streamreel_lake::silver::refresh_silver;
use streamreel_lake::tables::Lake;

use crate::error::NodeError;

/// Brings silver up to date from bronze, then builds the selected gold models.
pub async fn models_run(
    lake_dir: &Path,
    metadata: &Path,
    select: Option<&str>,
) -> Result<String, NodeError> {
    let videos = read_metadata_file(metadata)?;
    let silver = refresh_silver(lake_dir, &videos).await?;
    let mut out = format!(
        "silver: {} new bronze events ({} of unknown videos), {} sessions written (bronze version {})\n",
        silver.new_events,
        silver.unknown_video_events,
        silver.sessions_written,
        silver
            .bronze_version
            .map_or("-".to_string(), |v| v.to_string()),
    );
    for run in run_models(lake_dir, &videos, select).await? {
        out.push_str(&format!(
            "gold {}: {} rows (version {}) at {}\n",
            run.model,
            run.rows,
            run.version,
            Lake::new(lake_dir).gold(&run.model).display()
        ));
    }
    Ok(out)
}

/// Runs every data test; returns the report and whether all passed.
pub async fn models_test(lake_dir: &Path, metadata: &Path) -> Result<(String, bool), NodeError> {
    let videos = read_metadata_file(metadata)?;
    let results = run_data_tests(lake_dir, &videos, DATA_TESTS).await?;
    let passed = results.iter().all(|r| r.passed());
    Ok((report(&results), passed))
}
