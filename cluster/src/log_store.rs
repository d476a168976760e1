//! The durable Raft log and vote.
//!
//! Layout of the store's directory:
//! - `vote.bin`: the last saved vote;
//! - `purged.bin`: the id of the last purged entry;
//! - `committed.bin`: the last saved committed log id;
//! - `log/{index:020}.bin`: one file per entry.
//!
//! Every write reaches the disk (file and directory fsynced) before openraft
//! is told it is done. Every file is written whole to a `.tmp` file and then
//! renamed over its name, so a crash never leaves a torn file behind, and
//! ends with a checksum, so a file damaged later is refused, never misread.
//!
//! Entries are also kept in memory: openraft purges the log once a snapshot
//! holds it, so the log stays short.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, Entry, ErrorSubject, ErrorVerb, LogId, LogState, OptionalSend, RaftLogReader,
    StorageError, StorageIOError, Vote,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Mutex, watch};

use streamreel_protocol::CodecError;
use streamreel_protocol::codec::{decode, encode};

use crate::durable_file::{self, TMP_SUFFIX};
use crate::error::ClusterError;
use crate::types::{NodeId, TypeConfig};

const VOTE_FILE: &str = "vote.bin";
const PURGED_FILE: &str = "purged.bin";
const COMMITTED_FILE: &str = "committed.bin";
const LOG_DIR: &str = "log";
const ENTRY_SUFFIX: &str = ".bin";

/// The Raft log store. Clones share the same log; the clone openraft gets as
/// its log reader reads what the store has appended.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
    /// The last log index the state machine's snapshot on disk covers.
    durable_snapshot: Option<watch::Receiver<Option<u64>>>,
}

/// How long a purge waits for the snapshot covering it to reach the disk.
const PURGE_WAIT: Duration = Duration::from_secs(60);

struct Inner {
    dir: PathBuf,
    log_dir: PathBuf,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
    last_purged: Option<LogId<NodeId>>,
    entries: BTreeMap<u64, Entry<TypeConfig>>,
}

impl LogStore {
    /// Opens the store in `dir` (created if missing) and loads the log.
    ///
    /// Leftovers of a crash are removed: entries a purge had already given up,
    /// and entries after a hole (an append or truncate that never completed,
    /// so never acknowledged).
    pub fn open(dir: &Path) -> Result<LogStore, ClusterError> {
        let inner = load(dir).map_err(FileError::into_cluster)?;
        Ok(LogStore {
            inner: Arc::new(Mutex::new(inner)),
            durable_snapshot: None,
        })
    }

    /// Makes purges wait for the state machine's snapshot on disk to cover
    /// the entries they remove (see `purge`).
    pub fn purging_behind(mut self, durable_snapshot: watch::Receiver<Option<u64>>) -> LogStore {
        self.durable_snapshot = Some(durable_snapshot);
        self
    }
}

fn load(dir: &Path) -> Result<Inner, FileError> {
    let log_dir = dir.join(LOG_DIR);
    fs::create_dir_all(&log_dir).map_err(|e| io_at(&log_dir, e))?;
    // A directory entry not yet fsynced can vanish in a crash, with every file under it.
    sync_dir(dir)?;
    if let Some(parent) = dir.parent()
        && !parent.as_os_str().is_empty()
    {
        sync_dir(parent)?;
    }

    let vote: Option<Vote<NodeId>> = read_value(&dir.join(VOTE_FILE))?;
    let last_purged: Option<LogId<NodeId>> = read_value(&dir.join(PURGED_FILE))?;
    let committed = read_value::<Option<LogId<NodeId>>>(&dir.join(COMMITTED_FILE))?.flatten();

    let mut files = Vec::new();
    let mut stale = Vec::new();
    for item in fs::read_dir(&log_dir).map_err(|e| io_at(&log_dir, e))? {
        let item = item.map_err(|e| io_at(&log_dir, e))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if name.ends_with(TMP_SUFFIX) {
            stale.push(item.path());
        } else if let Some(index) = name
            .strip_suffix(ENTRY_SUFFIX)
            .and_then(|stem| stem.parse::<u64>().ok())
        {
            files.push((index, item.path()));
        }
    }
    files.sort_unstable_by_key(|(index, _)| *index);

    let mut entries = BTreeMap::new();
    let mut next = last_purged.map(|purged| purged.index + 1);
    let mut hole = false;
    for (index, path) in files {
        if last_purged.is_some_and(|purged| index <= purged.index) {
            stale.push(path);
            continue;
        }
        if hole || next.is_some_and(|next| next != index) {
            // Acknowledged entries never follow a hole: appends are acknowledged
            // in order, each after the ones before it are on disk (a hole at
            // or below the commit mark is damage: refused below).
            hole = true;
            tracing::warn!(index, "dropping a log entry found after a hole in the log");
            stale.push(path);
            continue;
        }
        let entry: Entry<TypeConfig> = decode_at(&path, &read_file(&path)?)?;
        if entry.log_id.index != index {
            return Err(io_at(
                &path,
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("holds entry {} instead", entry.log_id.index),
                ),
            ));
        }
        entries.insert(index, entry);
        next = Some(index + 1);
    }

    // `next` is the first index missing, after a hole or at the end. A crash
    // mid-append cannot lose a committed entry, so one missing is damage:
    // refuse, before dropping anything a restore would need.
    if let (Some(missing), Some(committed)) = (next, committed)
        && missing <= committed.index
    {
        return Err(missing_entry(&log_dir, missing));
    }
    for path in &stale {
        remove_file(path)?;
    }
    if !stale.is_empty() {
        sync_dir(&log_dir)?;
    }

    Ok(Inner {
        dir: dir.to_path_buf(),
        log_dir,
        vote,
        committed,
        last_purged,
        entries,
    })
}

impl Inner {
    fn entry_path(&self, index: u64) -> PathBuf {
        self.log_dir.join(format!("{index:020}{ENTRY_SUFFIX}"))
    }

    /// Replaces the small file `name` atomically and durably.
    fn save_value<T: Serialize>(&self, name: &str, value: &T) -> Result<(), FileError> {
        let path = self.dir.join(name);
        replace_file(&path, &encode_at(&path, value)?)?;
        sync_dir(&self.dir)
    }

    /// Removes the files of the entries at `indexes`, durably.
    fn remove_entries(&self, indexes: &[u64]) -> Result<(), FileError> {
        for &index in indexes {
            remove_file(&self.entry_path(index))?;
        }
        if !indexes.is_empty() {
            sync_dir(&self.log_dir)?;
        }
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let start = range.start_bound().cloned();
        let end = range.end_bound().cloned();
        // `BTreeMap::range` panics on these; for us they are just empty.
        if is_inverted(start, end) {
            return Ok(Vec::new());
        }
        let inner = self.inner.lock().await;
        Ok(inner
            .entries
            .range((start, end))
            .map(|(_, entry)| entry.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let inner = self.inner.lock().await;
        let last_log_id = inner
            .entries
            .last_key_value()
            .map(|(_, entry)| entry.log_id)
            .or(inner.last_purged);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        inner
            .save_value(VOTE_FILE, vote)
            .map_err(|e| e.into_storage(ErrorSubject::Vote, ErrorVerb::Write))?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.lock().await.vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        inner
            .save_value(COMMITTED_FILE, &committed)
            .map_err(|e| e.into_storage(ErrorSubject::Store, ErrorVerb::Write))?;
        inner.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.lock().await.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.inner.lock().await;
        let mut written = Vec::new();
        for entry in entries {
            let path = inner.entry_path(entry.log_id.index);
            encode_at(&path, &entry)
                .and_then(|bytes| replace_file(&path, &bytes))
                .map_err(|e| e.into_storage(ErrorSubject::Log(entry.log_id), ErrorVerb::Write))?;
            written.push(entry);
        }
        // One directory fsync makes all the renames above durable.
        sync_dir(&inner.log_dir)
            .map_err(|e| e.into_storage(ErrorSubject::Logs, ErrorVerb::Write))?;
        for entry in written {
            inner.entries.insert(entry.log_id.index, entry);
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        // Newest first: a crash in the middle is likelier to leave a shorter log
        // than a hole (and `open` drops whatever follows a hole anyway).
        let doomed: Vec<u64> = inner
            .entries
            .range(log_id.index..)
            .rev()
            .map(|(index, _)| *index)
            .collect();
        inner
            .remove_entries(&doomed)
            .map_err(|e| e.into_storage(ErrorSubject::Logs, ErrorVerb::Delete))?;
        inner.entries.retain(|index, _| *index < log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // openraft 0.9 purges the entries a snapshot received from the leader
        // covers as soon as it hands the snapshot to the state machine, before
        // that is written: a crash in between would leave neither the entries
        // nor the snapshot. Wait until the snapshot is on disk; entries no
        // snapshot covers are never deleted (an install that failed stops
        // Raft anyway).
        if let Some(durable) = &self.durable_snapshot {
            let mut durable = durable.clone();
            let covered = durable.wait_for(|on_disk| on_disk.is_some_and(|i| i >= log_id.index));
            if !matches!(tokio::time::timeout(PURGE_WAIT, covered).await, Ok(Ok(_))) {
                let error = io::Error::other(format!(
                    "no snapshot on disk covers log index {} after {} s: not purging",
                    log_id.index,
                    PURGE_WAIT.as_secs()
                ));
                return Err(StorageError::from(StorageIOError::write_logs(
                    AnyError::new(&error),
                )));
            }
        }
        let mut inner = self.inner.lock().await;
        // Moving the purge point back would make `open` take the entries after
        // it for a log with a hole, and drop them.
        if inner
            .last_purged
            .is_some_and(|purged| purged.index >= log_id.index)
        {
            return Ok(());
        }
        // Recorded before anything is deleted: after a crash in between, `open`
        // finishes the purge instead of finding a log that starts too late.
        inner
            .save_value(PURGED_FILE, &log_id)
            .map_err(|e| e.into_storage(ErrorSubject::Logs, ErrorVerb::Write))?;
        inner.last_purged = Some(log_id);
        let doomed: Vec<u64> = inner
            .entries
            .range(..=log_id.index)
            .map(|(index, _)| *index)
            .collect();
        inner
            .remove_entries(&doomed)
            .map_err(|e| e.into_storage(ErrorSubject::Logs, ErrorVerb::Delete))?;
        inner.entries.retain(|index, _| *index > log_id.index);
        Ok(())
    }
}

/// Whether `BTreeMap::range` would panic on these bounds.
fn is_inverted(start: Bound<u64>, end: Bound<u64>) -> bool {
    match (start, end) {
        (Bound::Excluded(start), Bound::Excluded(end)) => start >= end,
        (
            Bound::Included(start) | Bound::Excluded(start),
            Bound::Included(end) | Bound::Excluded(end),
        ) => start > end,
        _ => false,
    }
}

/// A file operation that failed, with the file it failed on.
#[derive(Debug, thiserror::Error)]
enum FileError {
    #[error("cannot read or write {}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot encode or decode {}", .path.display())]
    Codec {
        path: PathBuf,
        #[source]
        source: CodecError,
    },
    #[error("{} is damaged", .path.display())]
    Damaged {
        path: PathBuf,
        #[source]
        source: durable_file::Damaged,
    },
}

impl FileError {
    fn into_cluster(self) -> ClusterError {
        match self {
            FileError::Io { path, source } => ClusterError::io(path.display(), source),
            FileError::Codec { path, source } => ClusterError::Corrupt {
                path: path.display().to_string(),
                source,
            },
            FileError::Damaged { path, source } => ClusterError::Damaged {
                path: path.display().to_string(),
                source,
            },
        }
    }

    fn into_storage(self, subject: ErrorSubject<NodeId>, verb: ErrorVerb) -> StorageError<NodeId> {
        StorageIOError::new(subject, verb, AnyError::new(&self)).into()
    }
}

/// A committed entry's file is missing: damage, which no crash leaves.
fn missing_entry(log_dir: &Path, index: u64) -> FileError {
    io_at(
        &log_dir.join(format!("{index:020}{ENTRY_SUFFIX}")),
        io::Error::new(
            io::ErrorKind::NotFound,
            "this committed log entry is missing: restore it, or remove this member \
             (`remove-node`), empty its data dir and add it again",
        ),
    )
}

fn io_at(path: &Path, source: io::Error) -> FileError {
    FileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The sealed bytes of `value` (see [`durable_file::seal`]).
fn encode_at<T: Serialize>(path: &Path, value: &T) -> Result<Vec<u8>, FileError> {
    encode(value)
        .map(durable_file::seal)
        .map_err(|source| FileError::Codec {
            path: path.to_path_buf(),
            source,
        })
}

fn decode_at<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, FileError> {
    let body = durable_file::unseal(bytes).map_err(|source| FileError::Damaged {
        path: path.to_path_buf(),
        source,
    })?;
    decode(body).map_err(|source| FileError::Codec {
        path: path.to_path_buf(),
        source,
    })
}

fn read_file(path: &Path) -> Result<Vec<u8>, FileError> {
    fs::read(path).map_err(|e| io_at(path, e))
}

/// Reads a small file, `None` if it was never written.
fn read_value<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, FileError> {
    match fs::read(path) {
        Ok(bytes) => decode_at(path, &bytes).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_at(path, e)),
    }
}

fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    durable_file::replace(path, bytes).map_err(|e| io_at(path, e))
}

/// A file that is already gone is fine: removals are repeated after a crash.
fn remove_file(path: &Path) -> Result<(), FileError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_at(path, e)),
        _ => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> Result<(), FileError> {
    durable_file::sync_dir(dir).map_err(|e| io_at(dir, e))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use openraft::EntryPayload;
    use openraft::storage::RaftLogStorageExt;
    use openraft::testing::{StoreBuilder, Suite, blank_ent, membership_ent};
    use tempfile::TempDir;

    use super::*;
    use crate::sm_store::tests::settings;
    use crate::sm_store::{SnapshotFile, StateMachineStore};
    use crate::state::ClusterState;
    use crate::types::Command;

    /// The suite's stores live in a temporary directory it keeps until the end of each test.
    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
            let dir = TempDir::new().expect("temp dir");
            let log = LogStore::open(&dir.path().join("log")).expect("open log store");
            let sm = StateMachineStore::open(&dir.path().join("sm"), settings())
                .expect("open state machine store");
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn passes_the_openraft_storage_suite() {
        // The suite runs its own tokio runtimes, so this is not a tokio test.
        Suite::<TypeConfig, LogStore, StateMachineStore, Builder, TempDir>::test_all(Builder)
            .expect("storage suite");
    }

    fn id(term: u64, index: u64) -> LogId<NodeId> {
        openraft::testing::log_id(term, 1, index)
    }

    fn command(index: u64, node: NodeId) -> Entry<TypeConfig> {
        Entry {
            log_id: id(2, index),
            payload: EntryPayload::Normal(Command::ForgetMember { node }),
        }
    }

    fn indexes(entries: &[Entry<TypeConfig>]) -> Vec<u64> {
        entries.iter().map(|entry| entry.log_id.index).collect()
    }

    /// Appends entries `0..count`, each a command, to `store`.
    async fn append_commands(mut store: LogStore, count: u64) -> LogStore {
        store
            .blocking_append((0..count).map(|index| command(index, index)))
            .await
            .unwrap();
        store
    }

    #[tokio::test]
    async fn reopens_with_the_same_state() {
        let dir = TempDir::new().unwrap();
        let vote: Vote<NodeId> = Vote::new(3, 1);
        let membership = membership_ent::<TypeConfig>(1, 1, 1, vec![BTreeSet::from([1, 2, 3])]);
        {
            let mut store = LogStore::open(dir.path()).unwrap();
            store
                .blocking_append([blank_ent::<TypeConfig>(1, 1, 0), membership.clone()])
                .await
                .unwrap();
            store
                .blocking_append([command(2, 7), command(3, 8), command(4, 9)])
                .await
                .unwrap();
            store.save_vote(&vote).await.unwrap();
            store.save_committed(Some(id(2, 3))).await.unwrap();
            store.purge(id(1, 0)).await.unwrap();
            store.truncate(id(2, 4)).await.unwrap();
        }

        let mut store = LogStore::open(dir.path()).unwrap();
        assert_eq!(store.read_vote().await.unwrap(), Some(vote));
        assert_eq!(store.read_committed().await.unwrap(), Some(id(2, 3)));
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(id(1, 0)));
        assert_eq!(state.last_log_id, Some(id(2, 3)));
        let entries = store.try_get_log_entries(..).await.unwrap();
        assert_eq!(entries, vec![membership, command(2, 7), command(3, 8)]);
    }

    #[tokio::test]
    async fn a_damaged_file_is_refused_and_named() {
        let dir = TempDir::new().unwrap();
        {
            let mut store = append_commands(LogStore::open(dir.path()).unwrap(), 3).await;
            store.save_vote(&Vote::new(3, 1)).await.unwrap();
        }
        let flip_first_byte = |path: &Path| {
            let mut bytes = fs::read(path).unwrap();
            bytes[0] ^= 0x04;
            fs::write(path, bytes).unwrap();
        };
        let entry = dir.path().join(LOG_DIR).join(format!("{:020}.bin", 1));
        flip_first_byte(&entry);
        match LogStore::open(dir.path()) {
            Err(ClusterError::Damaged { path, .. }) => {
                assert_eq!(path, entry.display().to_string())
            }
            Err(other) => panic!("another error: {other}"),
            Ok(_) => panic!("a damaged entry was read"),
        }
        flip_first_byte(&entry);
        LogStore::open(dir.path()).expect("the mended log opens");
        let vote = dir.path().join(VOTE_FILE);
        flip_first_byte(&vote);
        assert!(matches!(
            LogStore::open(dir.path()),
            Err(ClusterError::Damaged { path, .. }) if path == vote.display().to_string()
        ));
    }

    #[tokio::test]
    async fn files_written_before_checksums_are_read() {
        let dir = TempDir::new().unwrap();
        let log_dir = dir.path().join(LOG_DIR);
        fs::create_dir_all(&log_dir).unwrap();
        let vote: Vote<NodeId> = Vote::new(4, 2);
        fs::write(dir.path().join(VOTE_FILE), encode(&vote).unwrap()).unwrap();
        for index in 0..2 {
            let path = log_dir.join(format!("{index:020}.bin"));
            fs::write(path, encode(&command(index, 5)).unwrap()).unwrap();
        }
        let mut store = LogStore::open(dir.path()).unwrap();
        assert_eq!(store.read_vote().await.unwrap(), Some(vote));
        let entries = store.try_get_log_entries(..).await.unwrap();
        assert_eq!(entries, vec![command(0, 5), command(1, 5)]);
    }

    #[tokio::test]
    async fn drops_entries_after_a_hole_on_open() {
        let dir = TempDir::new().unwrap();
        append_commands(LogStore::open(dir.path()).unwrap(), 5).await;
        let log_dir = dir.path().join(LOG_DIR);
        fs::remove_file(log_dir.join(format!("{:020}.bin", 2))).unwrap();

        let mut store = LogStore::open(dir.path()).unwrap();
        let entries = store.try_get_log_entries(..).await.unwrap();
        assert_eq!(indexes(&entries), vec![0, 1]);
        assert!(!log_dir.join(format!("{:020}.bin", 3)).exists());
        assert!(!log_dir.join(format!("{:020}.bin", 4)).exists());

        // The log goes on from the hole.
        store.blocking_append([command(2, 20)]).await.unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(id(2, 2)));
    }

    #[tokio::test]
    async fn a_committed_entry_missing_refuses_the_open_and_deletes_nothing() {
        let dir = TempDir::new().unwrap();
        let mut store = append_commands(LogStore::open(dir.path()).unwrap(), 5).await;
        store.save_committed(Some(id(2, 3))).await.unwrap();
        drop(store);
        let log_dir = dir.path().join(LOG_DIR);
        let missing = log_dir.join(format!("{:020}.bin", 2));
        fs::remove_file(&missing).unwrap();

        let error = LogStore::open(dir.path()).err().expect("a damaged log");
        let text = format!("{error}: {:?}", std::error::Error::source(&error));
        assert!(
            text.contains(&missing.display().to_string()) && text.contains("committed"),
            "{text}"
        );
        assert!(log_dir.join(format!("{:020}.bin", 3)).exists());
        assert!(log_dir.join(format!("{:020}.bin", 4)).exists());

        // Committed entries missing at the end of the log are damage too.
        for index in 3..5 {
            fs::remove_file(log_dir.join(format!("{index:020}.bin"))).unwrap();
        }
        let error = LogStore::open(dir.path()).err().expect("a damaged log");
        assert!(
            format!("{error}").contains(&missing.display().to_string()),
            "{error}"
        );
    }

    #[tokio::test]
    async fn empty_and_inverted_ranges_read_nothing() {
        let dir = TempDir::new().unwrap();
        let mut store = append_commands(LogStore::open(dir.path()).unwrap(), 3).await;
        let excluded: (Bound<u64>, Bound<u64>) = (Bound::Excluded(1), Bound::Excluded(1));
        assert!(
            store
                .try_get_log_entries(excluded)
                .await
                .unwrap()
                .is_empty()
        );
        let inverted: (Bound<u64>, Bound<u64>) = (Bound::Included(2), Bound::Excluded(1));
        assert!(
            store
                .try_get_log_entries(inverted)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            indexes(&store.try_get_log_entries(1..).await.unwrap()),
            vec![1, 2]
        );
    }

    #[tokio::test]
    async fn a_purge_waits_until_a_snapshot_on_disk_covers_it() {
        let dir = TempDir::new().unwrap();
        let (durable, on_disk) = watch::channel(Some(1));
        let mut store = append_commands(
            LogStore::open(dir.path()).unwrap().purging_behind(on_disk),
            5,
        )
        .await;
        let mut purging = store.clone();
        let mut purge = std::pin::pin!(purging.purge(id(2, 3)));
        assert!(futures::poll!(purge.as_mut()).is_pending(), "snapshot at 1");
        assert_eq!(
            indexes(&store.try_get_log_entries(..).await.unwrap()),
            [0, 1, 2, 3, 4]
        );
        durable.send_replace(Some(3));
        purge.await.unwrap();
        assert_eq!(indexes(&store.try_get_log_entries(..).await.unwrap()), [4]);
    }

    fn snapshot_file(index: u64) -> SnapshotFile {
        SnapshotFile {
            meta: openraft::SnapshotMeta {
                last_log_id: Some(id(1, index)),
                last_membership: Default::default(),
                snapshot_id: index.to_string(),
            },
            data: encode(&ClusterState::new(settings()).image()).unwrap(),
        }
    }

    #[tokio::test]
    async fn an_older_snapshot_never_replaces_a_newer_one_on_disk() {
        use openraft::storage::RaftStateMachine;
        let dir = TempDir::new().unwrap();
        let mut sm = StateMachineStore::open(dir.path(), settings()).unwrap();
        assert_eq!(*sm.durable_snapshot().borrow(), None);
        // Built from the state before an install, written after it.
        sm.save_snapshot(&snapshot_file(10)).unwrap();
        sm.save_snapshot(&snapshot_file(5)).unwrap();
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.last_log_id, Some(id(1, 10)));
        assert_eq!(*sm.durable_snapshot().borrow(), Some(10));
        let reopened = StateMachineStore::open(dir.path(), settings()).unwrap();
        assert_eq!(*reopened.durable_snapshot().borrow(), Some(10));
    }

    #[test]
    fn a_damaged_snapshot_is_refused_and_named() {
        let dir = TempDir::new().unwrap();
        let sm = StateMachineStore::open(dir.path(), settings()).unwrap();
        sm.save_snapshot(&snapshot_file(10)).unwrap();
        let path = dir.path().join("snapshot.bin");
        let mut bytes = fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x10;
        fs::write(&path, bytes).unwrap();
        assert!(matches!(
            StateMachineStore::open(dir.path(), settings()),
            Err(ClusterError::Damaged { path: named, .. }) if named == path.display().to_string()
        ));
    }

    #[tokio::test]
    async fn purging_past_the_last_entry_moves_the_last_log_id() {
        let dir = TempDir::new().unwrap();
        let mut store = append_commands(LogStore::open(dir.path()).unwrap(), 3).await;
        store.purge(id(3, 10)).await.unwrap();
        // An older purge point never moves it back.
        store.purge(id(2, 1)).await.unwrap();
        drop(store);

        let mut store = LogStore::open(dir.path()).unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(id(3, 10)));
        assert_eq!(state.last_log_id, Some(id(3, 10)));
        assert!(store.try_get_log_entries(..).await.unwrap().is_empty());
    }
}
