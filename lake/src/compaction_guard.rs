//! Compaction commits that refuse to land on a table where another commit
//! removed one of their files since they read it.
//!
//! A compaction removes files with `dataChange: false`, and Delta's conflict
//! check ignores such removals: two compactions of the same files both
//! commit, and the rows of those files are then in the table twice. The
//! coordinator runs one compaction at a time, and a new leader holds the
//! compaction an old one left running, but a leader frozen past that hold (a
//! paused VM) could still commit its run beside the new leader's. This check,
//! wrapped around the table's log store for compaction only, reads the
//! commits made since the compaction's read version (`readVersion` in its
//! `commitInfo`) before it writes, and refuses the commit when one of them
//! removed a file it removes. The write that follows is put-if-absent: a
//! commit that took the version meanwhile makes it try the next version,
//! checked the same way, so no race is left between check and write. Stores
//! that stage a temporary commit file instead (`CommitOrBytes::TmpCommit`)
//! are not guarded; StreamReel's lake is on a local file system.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use deltalake::DeltaTable;
use deltalake::kernel::Version;
use deltalake::kernel::transaction::TransactionError;
use deltalake::logstore::LogStoreRef;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use tracing::warn;

use crate::append_log::entry_actions;
use crate::checked_log_store::{CommitCheck, with_check};

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
    with_check(
        table,
        CompactionGuard {
            read: Mutex::default(),
        },
    )
}

struct CompactionGuard {
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
        inner: &LogStoreRef,
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
                let entry = inner
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

#[async_trait::async_trait]
impl CommitCheck for CompactionGuard {
    async fn check(
        &self,
        inner: &LogStoreRef,
        version: Version,
        entry: &[u8],
    ) -> Result<(), TransactionError> {
        let ours = Removals::of_entry(entry)
            .map_err(|json_err| TransactionError::SerializeLogJson { json_err })?;
        if let Some(conflict) = self.removed_since(inner, &ours, version).await? {
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
        Ok(())
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
