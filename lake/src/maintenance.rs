//! Table maintenance: compaction (Delta optimize, then rewriting partitions
//! whose deletion vectors mark many rows) and vacuum.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use deltalake::operations::optimize::OptimizeType;
use deltalake::operations::vacuum::{Clock, VacuumMode};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::table::config::TablePropertiesExt;
use deltalake::{DeltaTable, ObjectStoreError, Path as ObjectPath};
use deltalake::{FilterOp, FilterValue};
use futures::{StreamExt, TryStreamExt};
use tracing::info;

use crate::compaction_guard::guarded;
use crate::engine::LakeSettings;
use crate::error::LakeError;
use crate::parquet_layout::writer_properties_for;
use crate::tables::{object_path, open_if_exists};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionReport {
    pub files_removed: u64,
    pub files_added: u64,
}

/// Rewrites small files into larger ones, then rewrites whole the
/// partitions where deletion vectors still mark at least
/// [`PURGE_DELETED_SHARE`] of the rows. The rows readers see and their values
/// do not change, and concurrent appends are not disturbed (compaction
/// removes are not data changes). `settings` bounds the memory of the
/// rewrites, which sort a partition. A compaction whose files another one
/// removed meanwhile is refused (see [`crate::compaction_guard`]).
pub async fn compact(path: &Path, settings: &LakeSettings) -> Result<CompactionReport, LakeError> {
    let Some(table) = open_if_exists(path).await? else {
        return Ok(CompactionReport::default());
    };
    compact_table(table, path, settings).await
}

/// [`compact`] of `table` as loaded, which may be older than the table's
/// latest version.
async fn compact_table(
    table: DeltaTable,
    path: &Path,
    settings: &LakeSettings,
) -> Result<CompactionReport, LakeError> {
    let name = path.display().to_string();
    let properties = writer_properties_for(path);
    let (table, metrics) = guarded(table)
        .optimize()
        .with_writer_properties(properties.clone())
        .await
        .map_err(|e| LakeError::delta(&name, e))?;
    let purged = purge_deleted_rows(table, &name, &properties, settings).await?;
    Ok(CompactionReport {
        files_removed: metrics.num_files_removed + purged.files_removed,
        files_added: metrics.num_files_added + purged.files_added,
    })
}

/// The share of a partition's rows its deletion vectors must mark for
/// compaction to rewrite it whole. Bin-packing leaves a file above the
/// target size, or alone in its bin, as it is, with the rows its vector
/// deletes still on disk and read past by every scan; the share bounds how
/// often a large partition is rewritten for a few deleted rows.
pub const PURGE_DELETED_SHARE: f64 = 0.1;

/// A partition's values, by column.
pub type PartitionValues = BTreeMap<String, Option<String>>;

/// One data file as purging weighs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRows {
    pub partition: PartitionValues,
    /// Rows the file holds, deleted ones included (0 when unrecorded).
    pub records: u64,
    /// Rows its deletion vector marks deleted.
    pub deleted: u64,
}

/// The partitions whose deleted rows reach [`PURGE_DELETED_SHARE`] of their
/// rows; a file without a row count counts none, so its deletions weigh fully.
pub fn partitions_to_purge(files: &[FileRows]) -> Vec<PartitionValues> {
    let mut totals: BTreeMap<&PartitionValues, (u64, u64)> = BTreeMap::new();
    for file in files {
        let (records, deleted) = totals.entry(&file.partition).or_default();
        *records += file.records;
        *deleted += file.deleted;
    }
    totals
        .into_iter()
        .filter(|(_, (records, deleted))| {
            *deleted > 0 && *deleted as f64 >= PURGE_DELETED_SHARE * *records as f64
        })
        .map(|(partition, _)| partition.clone())
        .collect()
}

/// Rewrites the [`partitions_to_purge`] of `table`, one commit each. Through
/// Z-order, the one optimize of delta-rs that rewrites every file of a
/// partition whatever its size; it reads through deletion vectors, so the
/// deleted rows are left behind.
async fn purge_deleted_rows(
    mut table: DeltaTable,
    name: &str,
    properties: &WriterProperties,
    settings: &LakeSettings,
) -> Result<CompactionReport, LakeError> {
    let failed = |e| LakeError::delta(name, e);
    let snapshot = table.snapshot().map_err(failed)?;
    let files: Vec<FileRows> = snapshot
        .log_data()
        .iter()
        .map(|file| FileRows {
            partition: file.partition_values_map().into_iter().collect(),
            records: file.num_records().unwrap_or(0) as u64,
            deleted: file
                .deletion_vector_descriptor()
                .map_or(0, |vector| vector.cardinality.max(0) as u64),
        })
        .collect();
    let partitions = partitions_to_purge(&files);
    let partition_columns = snapshot.metadata().partition_columns().to_vec();
    // Any column will do to order by: the point is the rewrite.
    let Some(order_by) = snapshot
        .schema()
        .fields()
        .find(|f| {
            !partition_columns.contains(f.name()) && f.data_type().as_primitive_opt().is_some()
        })
        .map(|f| f.name().clone())
    else {
        return Ok(CompactionReport::default());
    };
    let mut report = CompactionReport::default();
    for partition in partitions {
        // Delta's partition filters read an empty value as null.
        let filters: Vec<_> = partition
            .iter()
            .map(|(column, value)| {
                let value = value.as_deref().unwrap_or("");
                (column.as_str(), FilterOp::Eq, FilterValue::Scalar(value))
            })
            .collect();
        let session = Arc::new(settings.context()?.state());
        let (rewritten, metrics) = table
            .optimize()
            .with_type(OptimizeType::ZOrder(vec![order_by.clone()]))
            .with_filters(&filters)
            .with_writer_properties(properties.clone())
            .with_session_state(session)
            .await
            .map_err(failed)?;
        table = rewritten;
        info!(
            table = name,
            ?partition,
            files_removed = metrics.num_files_removed,
            files_added = metrics.num_files_added,
            "rewrote a partition without the rows its deletion vectors mark"
        );
        report.files_removed += metrics.num_files_removed;
        report.files_added += metrics.num_files_added;
    }
    Ok(report)
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
    match plan_vacuum(path, retention, now_ms).await? {
        Some(plan) => plan.delete().await,
        None => Ok(0),
    }
}

/// The files a vacuum found to delete, checked again against the table
/// just before they go ([`VacuumPlan::delete`]): writers may commit while
/// the plan is made.
struct VacuumPlan {
    table: DeltaTable,
    name: String,
    files: Vec<ObjectPath>,
    /// A file removed at or after this (by the remover's clock) is kept.
    retained_since_ms: i64,
}

async fn plan_vacuum(
    path: &Path,
    retention: chrono::Duration,
    now_ms: i64,
) -> Result<Option<VacuumPlan>, LakeError> {
    if retention < chrono::Duration::hours(MIN_VACUUM_RETENTION_HOURS) {
        return Err(LakeError::RetentionTooShort {
            hours: retention.num_hours(),
        });
    }
    let Some(mut table) = open_if_exists(path).await? else {
        return Ok(None);
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
    // delta-rs plans the deletion from every `remove` in the log, and deletes
    // a file once any of them expired, even when the same path was added
    // back and removed again within the retention (silver replaces a
    // `view_sessions` file's deletion vector by removing and re-adding the
    // path): a reader of a version still within the retention would lose
    // the file. So the plan is taken as a dry run, and a path with a newer
    // `remove` is kept ([`VacuumPlan::delete`]).
    let (table, plan) = table
        .vacuum()
        .with_retention_period(retention)
        .with_enforce_retention_duration(true)
        .with_mode(VacuumMode::Full)
        .with_clock(Arc::new(FixedClock(now_ms)))
        .with_dry_run(true)
        .await
        .map_err(|e| LakeError::delta(&name, e))?;
    Ok(Some(VacuumPlan {
        table,
        name,
        files: plan
            .files_deleted
            .iter()
            .map(|file| object_path(file))
            .collect(),
        retained_since_ms: now_ms - retention.num_milliseconds(),
    }))
}

impl VacuumPlan {
    /// Deletes the planned files but those the newest version lists or
    /// removed within the retention. A writer that stood still past the
    /// retention and woke while the plan was made found its files still
    /// there and committed them (see `present_files`), and may have replaced
    /// them since: both are read after the plan. Returns how many went.
    async fn delete(self) -> Result<u64, LakeError> {
        let VacuumPlan {
            mut table,
            name,
            files,
            retained_since_ms,
        } = self;
        table
            .update_state()
            .await
            .map_err(|e| LakeError::delta(&name, e))?;
        let kept = removed_since(&table, retained_since_ms)
            .await
            .map_err(|e| LakeError::delta(&name, e))?;
        let listed: HashSet<ObjectPath> = table
            .snapshot()
            .map_err(|e| LakeError::delta(&name, e))?
            .log_data()
            .iter()
            .map(|file| file.object_store_path())
            .collect();
        let doomed: Vec<ObjectPath> = files
            .into_iter()
            .filter(|path| !kept.contains(path) && !listed.contains(path))
            .collect();
        let deleted: Vec<ObjectPath> = table
            .log_store()
            .object_store(None)
            .delete_stream(futures::stream::iter(doomed).map(Ok).boxed())
            .filter_map(|result| async move {
                match result {
                    Ok(path) => Some(Ok(path)),
                    // Deleted meanwhile (by another vacuum): as good as done.
                    Err(ObjectStoreError::NotFound { .. }) => None,
                    Err(e) => Some(Err(e)),
                }
            })
            .try_collect()
            .await
            .map_err(|e| LakeError::delta(&name, e.into()))?;
        Ok(deleted.len() as u64)
    }
}

/// The paths of files removed at or after `since_ms` (by the remover's clock).
async fn removed_since(
    table: &DeltaTable,
    since_ms: i64,
) -> Result<HashSet<ObjectPath>, deltalake::DeltaTableError> {
    table
        .snapshot()?
        .all_tombstones(table.log_store().as_ref())
        .try_filter_map(|tombstone| async move {
            let recent = tombstone.deletion_timestamp().unwrap_or(0) >= since_ms;
            Ok(recent.then(|| object_path(&tombstone.path())))
        })
        .try_collect()
        .await
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

#[cfg(test)]
mod tests {
    use deltalake::arrow::array::{Int64Array, RecordBatch};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::tables::write_target;

    async fn append_rows(path: &Path, count: i64) {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from_iter_values(0..count))],
        )
        .unwrap();
        let loaded = open_if_exists(path).await.unwrap();
        let (table, _) = write_target(loaded, path).unwrap();
        table.write(vec![batch]).await.unwrap();
    }

    async fn row_count(path: &Path) -> usize {
        let table = open_if_exists(path).await.unwrap().unwrap();
        let snapshot = table.snapshot().unwrap();
        snapshot
            .log_data()
            .iter()
            .map(|file| file.num_records().unwrap())
            .sum()
    }

    fn error_chain(error: &dyn std::error::Error) -> String {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(inner) = source {
            text = format!("{text}: {inner}");
            source = inner.source();
        }
        text
    }

    #[tokio::test]
    async fn a_compaction_of_files_another_compaction_removed_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        for _ in 0..3 {
            append_rows(&path, 10).await;
        }
        // Two more runs that read the table before the first one commits.
        let late = open_if_exists(&path).await.unwrap().unwrap();
        let unguarded = open_if_exists(&path).await.unwrap().unwrap();
        let settings = LakeSettings::default();

        let first = compact(&path, &settings).await.unwrap();
        assert_eq!(first.files_removed, 3);
        assert_eq!(row_count(&path).await, 30);

        let refused = compact_table(late, &path, &settings).await.unwrap_err();
        let text = error_chain(&refused);
        assert!(
            text.contains("another compaction ran at the same time"),
            "{text}"
        );
        assert_eq!(row_count(&path).await, 30);

        // What the guard prevents: Delta alone commits the late rewrite, and
        // the rows of the three files are in the table twice.
        unguarded.optimize().await.unwrap();
        assert_eq!(row_count(&path).await, 60);
    }

    /// silver removes a `view_sessions` file and adds the same path back with
    /// a new deletion vector; a later compaction removes it for good. The
    /// first remove expiring must not take the file from the versions before
    /// the last one.
    #[tokio::test]
    async fn a_file_removed_again_within_the_retention_is_kept() {
        use crate::test_commits::{add_like, append, commit, delete};
        use deltalake::kernel::Action;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        append_rows(&path, 10).await;
        let now_ms = chrono::Utc::now().timestamp_millis();
        let hour_ms = 3_600_000;
        let table = open_if_exists(&path).await.unwrap().unwrap();
        let file = table.snapshot().unwrap().log_data().iter().next().unwrap();
        let add = add_like(&file, &file.path());
        let file_path = path.join(file.path().as_ref());
        let removed_at = |ms: i64| {
            let mut remove = file.remove_action(true);
            remove.deletion_timestamp = Some(ms);
            Action::Remove(remove)
        };
        let removed = vec![removed_at(now_ms - 3 * hour_ms)];
        commit(&path, removed, delete()).await.unwrap();
        commit(&path, vec![add], append()).await.unwrap();
        let removed = vec![removed_at(now_ms - 1_000)];
        commit(&path, removed, delete()).await.unwrap();

        let retention = chrono::Duration::hours(1);
        let deleted = vacuum_as_of(&path, retention, now_ms).await.unwrap();
        assert_eq!(deleted, 0);
        assert!(
            file_path.exists(),
            "a version within the retention names it"
        );
        // Once its last remove expires too, it goes.
        let deleted = vacuum_as_of(&path, retention, now_ms + 2 * hour_ms)
            .await
            .unwrap();
        assert_eq!(deleted, 1);
        assert!(!file_path.exists());
    }

    /// A writer frozen past the retention wakes while vacuum plans: its
    /// file, an orphan when the plan was made, is committed before vacuum
    /// deletes (kept: the newest version lists it); another is committed
    /// and removed again (kept: a version within the retention lists it).
    #[tokio::test]
    async fn files_committed_while_the_vacuum_planned_are_kept() {
        use crate::test_commits::{add_like, append, commit, delete};
        use deltalake::kernel::Action;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        append_rows(&path, 10).await;
        let table = open_if_exists(&path).await.unwrap().unwrap();
        let file = table.snapshot().unwrap().log_data().iter().next().unwrap();
        let data = path.join(file.path().as_ref());
        for orphan in ["listed.parquet", "replaced.parquet", "orphan.parquet"] {
            std::fs::copy(&data, path.join(orphan)).unwrap();
        }
        let hour_ms = 3_600_000;
        let now_ms = chrono::Utc::now().timestamp_millis() + 2 * hour_ms;
        let retention = chrono::Duration::hours(1);

        let plan = plan_vacuum(&path, retention, now_ms)
            .await
            .unwrap()
            .unwrap();
        let mut planned: Vec<String> = plan.files.iter().map(|p| p.to_string()).collect();
        planned.sort();
        assert_eq!(
            planned,
            ["listed.parquet", "orphan.parquet", "replaced.parquet"]
        );

        let added = vec![
            add_like(&file, "listed.parquet"),
            add_like(&file, "replaced.parquet"),
        ];
        commit(&path, added, append()).await.unwrap();
        let table = open_if_exists(&path).await.unwrap().unwrap();
        let replaced = table
            .snapshot()
            .unwrap()
            .log_data()
            .iter()
            .find(|f| f.path() == "replaced.parquet")
            .unwrap();
        let mut remove = replaced.remove_action(true);
        remove.deletion_timestamp = Some(now_ms - 1_000);
        commit(&path, vec![Action::Remove(remove)], delete())
            .await
            .unwrap();

        assert_eq!(plan.delete().await.unwrap(), 1);
        assert!(path.join("listed.parquet").exists());
        assert!(path.join("replaced.parquet").exists());
        assert!(!path.join("orphan.parquet").exists());
    }

    fn file(day: Option<&str>, records: u64, deleted: u64) -> FileRows {
        FileRows {
            partition: [("day".to_string(), day.map(str::to_string))].into(),
            records,
            deleted,
        }
    }

    fn days(partitions: &[PartitionValues]) -> Vec<Option<String>> {
        partitions.iter().map(|p| p["day"].clone()).collect()
    }

    #[test]
    fn a_partition_is_rewritten_once_its_deleted_rows_reach_the_share() {
        let files = [
            // 10 of 100: at the share.
            file(Some("2026-11-01"), 100, 10),
            // 9 of 100 over two files: below it.
            file(Some("2026-11-02"), 60, 9),
            file(Some("2026-11-02"), 40, 0),
            // A large file's few deletions and the small file beside it
            // (bin-packing rewrites the small one, leaving the large).
            file(Some("2026-11-03"), 1_000_000, 50_000),
            file(Some("2026-11-03"), 10, 0),
            // Nothing deleted.
            file(Some("2026-11-04"), 100, 0),
            // No row count: its deletions weigh fully.
            file(Some("2026-11-05"), 0, 1),
            // The null partition is one partition.
            file(None, 5, 1),
        ];
        assert_eq!(
            days(&partitions_to_purge(&files)),
            [None, Some("2026-11-01".into()), Some("2026-11-05".into())]
        );
        assert!(partitions_to_purge(&[]).is_empty());
    }
}
