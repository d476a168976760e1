//! Commits that refuse to add a data file that is not there.
//!
//! A writer writes its Parquet files first and commits them after. One that
//! stood still in between (a frozen process, a paused VM) for longer than
//! vacuum's retention finds its files deleted as orphans; its commit would
//! leave the table naming files it no longer has, and every later read of
//! the table would fail. Every table the crate opens or creates has its log
//! store wrapped with this check, so that every commit (bronze appends, silver, gold,
//! compaction) is checked just before it is written. Vacuum, for its part,
//! reads the table's newest version again just before it deletes, and keeps
//! the files listed there: a writer that passed this check while vacuum
//! planned keeps its files. What is left is the time between vacuum's
//! re-read and its last deletion (seconds at most), against an hour of
//! retention at least.

use async_trait::async_trait;
use deltalake::DeltaTable;
use deltalake::kernel::transaction::TransactionError;
use deltalake::kernel::{Add, Version};
use deltalake::logstore::LogStoreRef;
use deltalake::logstore::object_store::ObjectStoreExt;
use tracing::warn;

use crate::append_log::entry_actions;
use crate::checked_log_store::{CommitCheck, with_check};
use crate::tables::object_path;

/// `table` with its log store wrapped in the [`PresentFiles`] check; the
/// loaded state is kept.
pub(crate) fn checked(table: DeltaTable) -> DeltaTable {
    with_check(table, PresentFiles)
}

/// Refuses an entry adding a file that cannot be found.
struct PresentFiles;

#[async_trait]
impl CommitCheck for PresentFiles {
    async fn check(
        &self,
        inner: &LogStoreRef,
        _version: Version,
        entry: &[u8],
    ) -> Result<(), TransactionError> {
        let store = inner.object_store(None);
        for action in entry_actions(entry) {
            let action =
                action.map_err(|json_err| TransactionError::SerializeLogJson { json_err })?;
            let Some(add) = action.get("add") else {
                continue;
            };
            // As delta-rs reads it: the log holds the path percent-encoded.
            let path = serde_json::from_value::<Add>(add.clone())
                .map_err(|json_err| TransactionError::SerializeLogJson { json_err })?
                .path;
            let location = object_path(&path);
            if let Err(error) = store.head(&location).await {
                let gone = matches!(error, deltalake::ObjectStoreError::NotFound { .. });
                warn!(
                    file = path,
                    gone, "commit refused: a file it adds cannot be found"
                );
                let why = if gone {
                    "is gone (deleted by a vacuum while the run stood still?)"
                } else {
                    "cannot be read"
                };
                return Err(TransactionError::LogStoreError {
                    msg: format!(
                        "commit refused: its new file {path} {why}; the run is dropped, the \
                         table unchanged"
                    ),
                    source: Box::new(error),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use deltalake::logstore::CommitOrBytes;
    use uuid::Uuid;

    use super::*;

    /// Writes version `version` through `store`: refused while the entry adds
    /// a file that is not in `table_dir`, written once the file is there.
    async fn gone_refused_present_written(
        store: LogStoreRef,
        table_dir: &std::path::Path,
        version: Version,
    ) {
        let entry = |added: &str| {
            Bytes::from(format!(
                "{{\"commitInfo\":{{\"timestamp\":1,\"operation\":\"WRITE\"}}}}\n\
                 {{\"add\":{{\"path\":\"{added}\",\"partitionValues\":{{}},\"size\":1,\
                 \"modificationTime\":1,\"dataChange\":true}}}}\n"
            ))
        };
        let error = store
            .write_commit_entry(
                version,
                CommitOrBytes::LogBytes(entry("p=a%20b/f.parquet")),
                Uuid::new_v4(),
            )
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("p=a b/f.parquet is gone"),
            "{error}"
        );
        assert!(store.read_commit_entry(version).await.unwrap().is_none());
        // Once there, it passes, its path read as the log encodes it.
        std::fs::create_dir_all(table_dir.join("p=a b")).unwrap();
        std::fs::write(table_dir.join("p=a b/f.parquet"), b"data").unwrap();
        store
            .write_commit_entry(
                version,
                CommitOrBytes::LogBytes(entry("p=a%20b/f.parquet")),
                Uuid::new_v4(),
            )
            .await
            .unwrap();
        assert!(store.read_commit_entry(version).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_commit_adding_a_file_that_is_gone_is_refused_on_every_table() {
        use deltalake::arrow::array::{Int64Array, RecordBatch};
        use deltalake::arrow::datatypes::{DataType, Field, Schema};

        let dir = tempfile::tempdir().unwrap();

        // A table the crate creates (silver and gold's first write).
        let created = dir.path().join("created");
        let (table, _) = crate::tables::write_target(None, &created).unwrap();
        gone_refused_present_written(table.log_store(), &created, 0).await;

        // A table the crate opens (every later silver, gold and compaction write).
        let opened = dir.path().join("opened");
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
        let (table, _) = crate::tables::write_target(None, &opened).unwrap();
        table.write(vec![batch]).await.unwrap();
        let table = crate::tables::open_if_exists(&opened)
            .await
            .unwrap()
            .unwrap();
        let next = table.version().unwrap() + 1;
        gone_refused_present_written(table.log_store(), &opened, next).await;

        // Bronze, created by the node's first start, then opened by later ones.
        let lake = dir.path().join("lake");
        for _ in 0..2 {
            let bronze = crate::bronze::BronzeTable::open_or_create(&lake)
                .await
                .unwrap();
            let store = bronze.log_store();
            let next = store.get_latest_version(0).await.unwrap() + 1;
            let bronze_dir = crate::bronze::BronzeTable::path_in(&lake);
            let _ = std::fs::remove_dir_all(bronze_dir.join("p=a b"));
            gone_refused_present_written(store, &bronze_dir, next).await;
        }
    }

    /// Through deltalake's own commit path, as the writers commit: a change
    /// there (a store it no longer hands the entry's bytes to) would leave
    /// the check above unrun.
    #[tokio::test]
    async fn deltalakes_commit_path_runs_the_check() {
        use crate::test_commits::{add_like, append, commit};
        use deltalake::arrow::array::{Int64Array, RecordBatch};
        use deltalake::arrow::datatypes::{DataType, Field, Schema};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
        let (table, _) = crate::tables::write_target(None, &path).unwrap();
        table.write(vec![batch]).await.unwrap();
        let table = crate::tables::open_if_exists(&path).await.unwrap().unwrap();
        let version = table.version().unwrap();
        let file = table.snapshot().unwrap().log_data().iter().next().unwrap();
        let add = |name: &str| vec![add_like(&file, name)];

        let error = commit(&path, add("gone.parquet"), append())
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("gone.parquet is gone"),
            "{error}"
        );
        let reread = crate::tables::open_if_exists(&path).await.unwrap().unwrap();
        assert_eq!(reread.version(), Some(version), "the table is unchanged");

        // The same file again, this time present: committed.
        std::fs::copy(path.join(file.path().as_ref()), path.join("there.parquet")).unwrap();
        commit(&path, add("there.parquet"), append()).await.unwrap();
        let reread = crate::tables::open_if_exists(&path).await.unwrap().unwrap();
        assert_eq!(reread.version(), Some(version + 1));
    }
}
