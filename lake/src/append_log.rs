//! Bronze appends committed straight to the Delta log.
//!
//! delta-rs's write path brings its table state up to date after every commit
//! (and again when another writer took the version first) by replaying the
//! whole file list and parsing every file's statistics. Its cost grows with
//! the files bronze holds, and bronze gains a file per partition and commit
//! interval until compaction: at about 900 files a commit cost half a second of
//! CPU and ingest fell behind the broker. A partition writer only appends, so
//! it needs nothing of the file list: it writes the next version's log entry
//! put-if-absent, and when another writer took that version, it reads only
//! the entries in between and tries the version after them, unless one of
//! them carries one of its own app transactions (another writer of the same
//! partition: fenced) or changes the table's schema or protocol.

use deltalake::kernel::transaction::TransactionError;
use deltalake::logstore::{CommitOrBytes, LogStoreRef};
use serde_json::Value;

/// Versions tried before a commit gives up: each failed try means another
/// writer committed, and there are only as many writers as partitions.
const MAX_ATTEMPTS: usize = 100;

/// What a commit that landed before ours did, as far as ours is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interleaved {
    /// Other partitions' appends, compaction, vacuum: ours goes on top.
    Unrelated,
    /// It carries one of our app transactions: another writer of our partition.
    SamePartition,
    /// It changed the table's metadata or protocol, which our entry was not
    /// checked against.
    TableChanged,
}

/// Classifies one log entry (newline-delimited JSON actions) against the app
/// transaction ids of the commit being made.
pub(crate) fn classify(entry: &[u8], app_ids: &[String]) -> Result<Interleaved, serde_json::Error> {
    let mut found = Interleaved::Unrelated;
    for action in entry_actions(entry) {
        let action = action?;
        let app_id = action
            .get("txn")
            .and_then(|txn| txn.get("appId"))
            .and_then(Value::as_str);
        if app_id.is_some_and(|id| app_ids.iter().any(|ours| ours == id)) {
            return Ok(Interleaved::SamePartition);
        }
        if action.get("metaData").is_some() || action.get("protocol").is_some() {
            found = Interleaved::TableChanged;
        }
    }
    Ok(found)
}

/// The actions of a log entry (newline-delimited JSON), blank lines skipped.
pub(crate) fn entry_actions(
    entry: &[u8],
) -> impl Iterator<Item = Result<Value, serde_json::Error>> + '_ {
    entry
        .split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(serde_json::from_slice)
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("version {version} carries this partition's marks: another writer committed it")]
    SamePartition { version: u64 },
    #[error("version {version} changed the table's metadata or protocol")]
    TableChanged { version: u64 },
    #[error("version {version} is missing from the log although a later one exists")]
    MissingEntry { version: u64 },
    #[error("version {version} is not valid JSON: {source}")]
    Unreadable {
        version: u64,
        #[source]
        source: serde_json::Error,
    },
    #[error("{attempts} versions in a row were taken by other writers")]
    TooManyAttempts { attempts: usize },
    #[error("log store {name} has no put-if-absent, which these commits rely on")]
    UnsupportedLogStore { name: String },
    #[error(transparent)]
    Transaction(#[from] TransactionError),
    #[error(transparent)]
    Delta(#[from] deltalake::DeltaTableError),
}

/// Commits `entry` as the first free version after `base`, the version the
/// writer's view of the table is at. Returns the version it landed as.
pub(crate) async fn append(
    log_store: &LogStoreRef,
    base: u64,
    entry: bytes::Bytes,
    app_ids: &[String],
) -> Result<u64, AppendError> {
    // Stores without put-if-absent stage a temporary file and rename it,
    // which delta-rs keeps to its own commit path.
    let name = log_store.name();
    if !matches!(name.as_str(), "DefaultLogStore" | "LakeFSLogStore") {
        return Err(AppendError::UnsupportedLogStore { name });
    }
    let operation_id = uuid::Uuid::new_v4();
    let mut base = base;
    for _ in 0..MAX_ATTEMPTS {
        let version = base + 1;
        match log_store
            .write_commit_entry(
                version,
                CommitOrBytes::LogBytes(entry.clone()),
                operation_id,
            )
            .await
        {
            Ok(()) => return Ok(version),
            Err(TransactionError::VersionAlreadyExists(_)) => {}
            Err(error) => return Err(error.into()),
        }
        let latest = log_store.get_latest_version(version).await?;
        for taken in version..=latest {
            let Some(winner) = log_store.read_commit_entry(taken).await? else {
                return Err(AppendError::MissingEntry { version: taken });
            };
            match classify(&winner, app_ids).map_err(|source| AppendError::Unreadable {
                version: taken,
                source,
            })? {
                Interleaved::Unrelated => {}
                Interleaved::SamePartition => {
                    return Err(AppendError::SamePartition { version: taken });
                }
                Interleaved::TableChanged => {
                    return Err(AppendError::TableChanged { version: taken });
                }
            }
        }
        base = latest;
    }
    Err(AppendError::TooManyAttempts {
        attempts: MAX_ATTEMPTS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> Vec<String> {
        vec![
            "streamreel-bronze-2".to_string(),
            "streamreel-bronze-epoch-2".to_string(),
        ]
    }

    #[test]
    fn another_partitions_append_is_unrelated() {
        let entry = br#"{"commitInfo":{"timestamp":1,"operation":"WRITE"}}
{"add":{"path":"a.parquet","size":1,"partitionValues":{},"modificationTime":1,"dataChange":true}}
{"txn":{"appId":"streamreel-bronze-1","version":7}}
{"txn":{"appId":"streamreel-bronze-epoch-1","version":3}}"#;
        assert_eq!(classify(entry, &ids()).unwrap(), Interleaved::Unrelated);
    }

    #[test]
    fn an_entry_with_our_partitions_mark_is_another_writer_of_it() {
        let entry = br#"{"commitInfo":{"timestamp":1}}
{"txn":{"appId":"streamreel-bronze-epoch-2","version":4}}
"#;
        assert_eq!(classify(entry, &ids()).unwrap(), Interleaved::SamePartition);
        // A prefix of our id is another partition's.
        let entry = br#"{"txn":{"appId":"streamreel-bronze-22","version":4}}"#;
        assert_eq!(classify(entry, &ids()).unwrap(), Interleaved::Unrelated);
    }

    #[test]
    fn metadata_or_protocol_changes_are_reported() {
        let entry = br#"{"metaData":{"id":"x","configuration":{}}}"#;
        assert_eq!(classify(entry, &ids()).unwrap(), Interleaved::TableChanged);
        let entry = br#"{"protocol":{"minReaderVersion":3,"minWriterVersion":7}}"#;
        assert_eq!(classify(entry, &ids()).unwrap(), Interleaved::TableChanged);
        // Being fenced is the stronger answer.
        let entry = br#"{"metaData":{"id":"x"}}
{"txn":{"appId":"streamreel-bronze-2","version":9}}"#;
        assert_eq!(classify(entry, &ids()).unwrap(), Interleaved::SamePartition);
    }

    #[test]
    fn a_damaged_entry_is_an_error() {
        assert!(classify(b"{\"add\":", &ids()).is_err());
    }
}
