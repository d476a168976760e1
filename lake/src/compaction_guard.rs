//! Compaction commits that refuse to land on a table where another commit
//! removed one of their files since they read it.
//!
//! A compaction removes files with `dataChange: false`, and Delta's conflict
//! check ignores such removals: two compactions of the same files both
//! commit, and the rows of those files are then in the table twice. The
//! coordinator runs one compaction at a time, and a new leader holds the
//! compaction an old one left running, but a leader frozen past that hold (a
//! paused VM) could still commit its run beside the new leader's. This log
//! store, wrapped around the table's own for compaction only, reads the
//! commits made since the compaction's read version (`readVersion` in its
//! `commitInfo`) before it writes, and refuses the commit when one of them
//! removed a file it removes. The write that follows is put-if-absent: a
//! commit that took the version meanwhile makes it try the next version,
//! checked the same way, so no race is left between check and write. Stores
//! that stage a temporary commit file instead (`CommitOrBytes::TmpCommit`)
//! are not guarded; StreamReel's lake is on a local file system.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use deltalake::datafusion::execution::object_store::ObjectStoreUrl;
use deltalake::kernel::transaction::TransactionError;
use deltalake::kernel::{Add, Version};
use deltalake::logstore::object_store::ObjectStoreExt;
use deltalake::logstore::{CommitOrBytes, LogStore, LogStoreConfig, LogStoreRef};
use deltalake::{DeltaResult, DeltaTable, ObjectStore, Path};
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use tracing::warn;
use url::Url;
use uuid::Uuid;

use crate::append_log::entry_actions;
use crate::tables::object_path;

/// Another commit removed files this compaction removes.
#[derive(Debug, thiserror::Error)]
#[error(
    "version {version} already removed {files} of the files this compaction rewrites \
     (another compaction ran at the same time); this one is dropped, rows unchanged"
)]
pub struct CompactedTwice {
    pub version: Version,
    pub files: usize,
}

/// What a commit entry removes, and the version it was planned against.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Removals {
    pub read_version: Option<Version>,
    pub paths: HashSet<String>,
}

impl Removals {
    /// Parses a commit entry (newline-delimited JSON actions).
    pub(crate) fn of_entry(entry: &[u8]) -> Result<Removals, serde_json::Error> {
        let mut removals = Removals::default();
        for action in entry_actions(entry) {
            let action = action?;
            if let Some(path) = action.pointer("/remove/path").and_then(Value::as_str) {
                removals.paths.insert(path.to_string());
            }
            if let Some(read) = action
                .pointer("/commitInfo/readVersion")
                .and_then(Value::as_u64)
            {
                removals.read_version = Some(read);
            }
        }
        Ok(removals)
    }

    /// How many of `ours` this entry removes too.
    pub(crate) fn shared_with(&self, ours: &Removals) -> usize {
        self.paths.intersection(&ours.paths).count()
    }
}

/// `table` with its log store wrapped in a [`CompactionGuard`]; the table's
/// loaded state is kept, not read again.
pub(crate) fn guarded(table: DeltaTable) -> DeltaTable {
    let store: LogStoreRef = Arc::new(CompactionGuard {
        inner: table.log_store(),
        read: Mutex::default(),
    });
    let mut guarded = DeltaTable::new(store);
    guarded.state = table.state;
    guarded
}

struct CompactionGuard {
    inner: LogStoreRef,
    /// What each commit read so far removes: a commit retried at a later
    /// version (another writer took the one it tried) reads only the
    /// versions after them, so that it keeps up with a busy table.
    read: Mutex<HashMap<Version, Removals>>,
}

/// Commit entries read at once.
const READS_AT_ONCE: usize = 8;

impl CompactionGuard {
    /// The first commit after `ours` was planned that removed one of its files.
    async fn removed_since(
        &self,
        ours: &Removals,
        version: Version,
    ) -> Result<Option<CompactedTwice>, TransactionError> {
        let Some(read_version) = ours.read_version.filter(|_| !ours.paths.is_empty()) else {
            return Ok(None);
        };
        let since: Vec<Version> = (read_version + 1..version).collect();
        let unread: Vec<Version> = {
            let read = self.read.lock().expect("guard lock");
            since
                .iter()
                .copied()
                .filter(|v| !read.contains_key(v))
                .collect()
        };
        let fetched: Vec<(Version, Removals)> = futures::stream::iter(unread)
            .map(|other| async move {
                let entry = self
                    .inner
                    .read_commit_entry(other)
                    .await
                    .map_err(|e| log_store_error(other, e))?;
                let removals = match entry {
                    Some(entry) => Removals::of_entry(&entry)
                        .map_err(|json_err| TransactionError::SerializeLogJson { json_err })?,
                    None => Removals::default(),
                };
                Ok::<_, TransactionError>((other, removals))
            })
            .buffered(READS_AT_ONCE)
            .try_collect()
            .await?;
        let mut read = self.read.lock().expect("guard lock");
        for (other, removals) in fetched {
            read.insert(other, removals);
        }
        Ok(since.into_iter().find_map(|other| {
            let files = read.get(&other)?.shared_with(ours);
            (files > 0).then_some(CompactedTwice {
                version: other,
                files,
            })
        }))
    }
}

fn log_store_error(
    version: Version,
    source: impl std::error::Error + Send + Sync + 'static,
) -> TransactionError {
    TransactionError::LogStoreError {
        msg: format!("could not read version {version} to check the compaction against it"),
        source: Box::new(source),
    }
}

impl CompactionGuard {
    /// Refuses an entry adding a file that is not there. A run that stood
    /// still (a frozen process) for longer than vacuum's retention between
    /// writing its files and committing finds them deleted as orphans; its
    /// commit would leave the table naming files it no longer has.
    async fn added_files_exist(&self, entry: &[u8]) -> Result<(), TransactionError> {
        let store = self.inner.object_store(None);
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
                    gone, "compaction refused: a file it adds cannot be found"
                );
                return Err(TransactionError::LogStoreError {
                    msg: format!(
                        "compaction refused: its new file {path} cannot be found (deleted by \
                         a vacuum while the run stood still?)"
                    ),
                    source: Box::new(error),
                });
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl LogStore for CompactionGuard {
    fn name(&self) -> String {
        self.inner.name()
    }

    async fn refresh(&self) -> DeltaResult<()> {
        self.inner.refresh().await
    }

    async fn read_commit_entry(&self, version: Version) -> DeltaResult<Option<Bytes>> {
        self.inner.read_commit_entry(version).await
    }

    async fn write_commit_entry(
        &self,
        version: Version,
        commit_or_bytes: CommitOrBytes,
        operation_id: Uuid,
    ) -> Result<(), TransactionError> {
        // Stores that stage a temporary file hand no bytes here; they are not
        // guarded (the lake is on a local or put-if-absent store).
        if let CommitOrBytes::LogBytes(bytes) = &commit_or_bytes {
            let ours = Removals::of_entry(bytes)
                .map_err(|json_err| TransactionError::SerializeLogJson { json_err })?;
            if let Some(conflict) = self.removed_since(&ours, version).await? {
                warn!(
                    version,
                    other = conflict.version,
                    files = conflict.files,
                    "compaction refused: another commit removed the same files"
                );
                return Err(TransactionError::LogStoreError {
                    msg: "compaction refused".to_string(),
                    source: Box::new(conflict),
                });
            }
            self.added_files_exist(bytes).await?;
        }
        self.inner
            .write_commit_entry(version, commit_or_bytes, operation_id)
            .await
    }

    async fn abort_commit_entry(
        &self,
        version: Version,
        commit_or_bytes: CommitOrBytes,
        operation_id: Uuid,
    ) -> Result<(), TransactionError> {
        self.inner
            .abort_commit_entry(version, commit_or_bytes, operation_id)
            .await
    }

    async fn get_latest_version(&self, start_version: Version) -> DeltaResult<Version> {
        self.inner.get_latest_version(start_version).await
    }

    fn object_store(&self, operation_id: Option<Uuid>) -> Arc<dyn ObjectStore> {
        self.inner.object_store(operation_id)
    }

    fn root_object_store(&self, operation_id: Option<Uuid>) -> Arc<dyn ObjectStore> {
        self.inner.root_object_store(operation_id)
    }

    fn to_uri(&self, location: &Path) -> String {
        self.inner.to_uri(location)
    }

    fn root_url(&self) -> &Url {
        self.inner.root_url()
    }

    fn log_path(&self) -> &Path {
        self.inner.log_path()
    }

    fn transaction_url(&self, operation_id: Option<Uuid>) -> DeltaResult<Url> {
        self.inner.transaction_url(operation_id)
    }

    async fn is_delta_table_location(&self) -> DeltaResult<bool> {
        self.inner.is_delta_table_location().await
    }

    fn config(&self) -> &LogStoreConfig {
        self.inner.config()
    }

    fn object_store_url(&self) -> ObjectStoreUrl {
        self.inner.object_store_url()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_names_what_it_removes_and_the_version_it_read() {
        let entry = br#"{"commitInfo":{"timestamp":1,"operation":"OPTIMIZE","readVersion":7}}
{"remove":{"path":"day=1/a.parquet","dataChange":false}}
{"add":{"path":"day=1/c.parquet","dataChange":false}}
{"remove":{"path":"day=1/b.parquet","dataChange":false}}
"#;
        let removals = Removals::of_entry(entry).unwrap();
        assert_eq!(removals.read_version, Some(7));
        assert_eq!(
            removals.paths,
            HashSet::from(["day=1/a.parquet".to_string(), "day=1/b.parquet".to_string()])
        );
    }

    #[tokio::test]
    async fn a_compaction_adding_a_file_that_is_gone_is_refused() {
        use deltalake::arrow::array::{Int64Array, RecordBatch};
        use deltalake::arrow::datatypes::{DataType, Field, Schema};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
        let (table, _) = crate::tables::write_target(None, &path).unwrap();
        table.write(vec![batch]).await.unwrap();
        let table = guarded(crate::tables::open_if_exists(&path).await.unwrap().unwrap());
        let read = table.version().unwrap();
        let kept = table.snapshot().unwrap().log_data().iter().next().unwrap();
        let entry = |added: &str| {
            Bytes::from(format!(
                "{{\"commitInfo\":{{\"timestamp\":1,\"operation\":\"OPTIMIZE\",\"readVersion\":{read}}}}}\n\
                 {{\"add\":{{\"path\":\"{added}\",\"partitionValues\":{{}},\"size\":1,\
                 \"modificationTime\":1,\"dataChange\":false}}}}\n"
            ))
        };
        let store = table.log_store();
        let error = store
            .write_commit_entry(
                read + 1,
                CommitOrBytes::LogBytes(entry("gone.parquet")),
                Uuid::new_v4(),
            )
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("gone.parquet cannot be found"),
            "{error}"
        );
        assert!(store.read_commit_entry(read + 1).await.unwrap().is_none());
        // A file that is there passes, its path read as the log encodes it.
        std::fs::create_dir(path.join("p=a b")).unwrap();
        std::fs::copy(
            path.join(kept.path().as_ref()),
            path.join("p=a b/f.parquet"),
        )
        .unwrap();
        store
            .write_commit_entry(
                read + 1,
                CommitOrBytes::LogBytes(entry("p=a%20b/f.parquet")),
                Uuid::new_v4(),
            )
            .await
            .unwrap();
    }

    #[test]
    fn only_files_both_remove_are_shared() {
        let ours = Removals {
            read_version: Some(3),
            paths: HashSet::from(["a".to_string(), "b".to_string()]),
        };
        let append = Removals::of_entry(br#"{"add":{"path":"a"}}"#).unwrap();
        assert_eq!(append.shared_with(&ours), 0);
        let other = Removals::of_entry(
            br#"{"remove":{"path":"b"}}
{"remove":{"path":"x"}}"#,
        )
        .unwrap();
        assert_eq!(other.shared_with(&ours), 1);
    }
}
