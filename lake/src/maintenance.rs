//! Table maintenance: compaction (Delta optimize) and vacuum.

use std::path::Path;

use crate::error::LakeError;
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
        .await
        .map_err(|e| LakeError::delta(&name, e))?;
    Ok(CompactionReport {
        files_removed: metrics.num_files_removed,
        files_added: metrics.num_files_added,
    })
}

/// Deletes files no table version within `retention` refers to. Returns how many.
pub async fn vacuum(path: &Path, retention: chrono::Duration) -> Result<u64, LakeError> {
    let Some(table) = open_if_exists(path).await? else {
        return Ok(0);
    };
    let name = path.display().to_string();
    let (_, metrics) = table
        .vacuum()
        .with_retention_period(retention)
        .with_enforce_retention_duration(false)
        .with_mode(deltalake::operations::vacuum::VacuumMode::Full)
        .await
        .map_err(|e| LakeError::delta(&name, e))?;
    Ok(metrics.files_deleted.len() as u64)
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
