//! Table maintenance: compaction (Delta optimize) and vacuum.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use deltalake::operations::vacuum::{Clock, VacuumMode};
use deltalake::table::config::TablePropertiesExt;

use crate::error::LakeError;
use crate::parquet_layout::writer_properties;
use crate::tables::open_if_exists;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionReport {
    pub files_removed: u64,
    pub files_added: u64,
}

/// Rewrites small files into larger ones; rows and their values do not change,
/// and concurrent appends are not disturbed (compaction removes are not data changes).
pub async fn compact(path: &Path) -> Result<CompactionReport, LakeError> {
    let Some(table) = open_if_exists(path).await? else {
        return Ok(CompactionReport::default());
    };
    let name = path.display().to_string();
    let (_, metrics) = table
        .optimize()
        .with_writer_properties(writer_properties())
        .await
        .map_err(|e| LakeError::delta(&name, e))?;
    Ok(CompactionReport {
        files_removed: metrics.num_files_removed,
        files_added: metrics.num_files_added,
    })
}

/// The shortest vacuum retention: a file a writer is still committing, or
/// committed after vacuum read its snapshot, is younger than this.
pub const MIN_VACUUM_RETENTION_HOURS: i64 = 1;

/// Deletes files no table version within `retention` refers to, and orphaned
/// files older than `retention`. Returns how many. Refuses a retention below
/// [`MIN_VACUUM_RETENTION_HOURS`]; the library's own retention check stays on,
/// with the table's `delta.deletedFileRetentionDuration` set to `retention`
/// first when it differs.
pub async fn vacuum(path: &Path, retention: chrono::Duration) -> Result<u64, LakeError> {
    vacuum_as_of(path, retention, chrono::Utc::now().timestamp_millis()).await
}

/// [`vacuum`] as if the time were `now_ms`: tests use it to see what a later
/// vacuum deletes without waiting for the retention period.
pub async fn vacuum_as_of(
    path: &Path,
    retention: chrono::Duration,
    now_ms: i64,
) -> Result<u64, LakeError> {
    if retention < chrono::Duration::hours(MIN_VACUUM_RETENTION_HOURS) {
        return Err(LakeError::RetentionTooShort {
            hours: retention.num_hours(),
        });
    }
    let Some(mut table) = open_if_exists(path).await? else {
        return Ok(0);
    };
    let name = path.display().to_string();
    let table_retention = table
        .snapshot()
        .map_err(|e| LakeError::delta(&name, e))?
        .table_config()
        .deleted_file_retention_duration();
    // Set both ways: a retention raised again must protect removed files
    // that long once more (checkpoints keep their tombstones only that long).
    if retention
        .to_std()
        .is_ok_and(|wanted| wanted != table_retention)
    {
        let property = HashMap::from([(
            "delta.deletedFileRetentionDuration".to_string(),
            format!("interval {} seconds", retention.num_seconds()),
        )]);
        table = table
            .set_tbl_properties()
            .with_properties(property)
            .await
            .map_err(|e| LakeError::delta(&name, e))?;
    }
    let (_, metrics) = table
        .vacuum()
        .with_retention_period(retention)
        .with_enforce_retention_duration(true)
        .with_mode(VacuumMode::Full)
        .with_clock(Arc::new(FixedClock(now_ms)))
        .await
        .map_err(|e| LakeError::delta(&name, e))?;
    Ok(metrics.files_deleted.len() as u64)
}

#[derive(Debug)]
struct FixedClock(i64);

impl Clock for FixedClock {
    fn current_timestamp_millis(&self) -> i64 {
        self.0
    }
}

/// Number of data files in the table's latest version.
pub async fn file_count(path: &Path) -> Result<u64, LakeError> {
    let Some(table) = open_if_exists(path).await? else {
        return Ok(0);
    };
    let name = path.display().to_string();
    let uris = table
        .get_file_uris()
        .map_err(|e| LakeError::delta(&name, e))?;
    Ok(uris.count() as u64)
}
