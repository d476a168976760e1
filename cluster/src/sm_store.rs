//! The state machine store: applies committed commands to [`ClusterState`] in
//! memory and keeps durable snapshots (`snapshot.bin`, written atomically).
//!
//! The state itself is not persisted on every apply: on start it is rebuilt
//! from the last snapshot, and openraft applies the log after it again. That is
//! why openraft purges only log entries a persisted snapshot already holds.
//!
//! Readers on the node (supervisor, coordinator, HTTP) share it through
//! [`ClusterView`], and are told of every apply through a watch channel.

use std::collections::BTreeSet;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use streamreel_protocol::codec::{decode, encode};

use crate::durable_file;
use crate::error::ClusterError;
use crate::state::{ClusterState, Ownership, StateImage, StateSettings};
use crate::types::{CommandResult, Member, NodeId, TypeConfig};

const SNAPSHOT_FILE: &str = "snapshot.bin";

/// The applied state and where in the log it stands.
pub struct Applied {
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, Member>,
    pub state: ClusterState,
}

impl Applied {
    /// Voting members: the nodes partitions may be given to.
    pub fn voters(&self) -> BTreeSet<NodeId> {
        self.membership.membership().voter_ids().collect()
    }

    /// The voter sets of a change of voters under way (Raft's joint
    /// configuration: from the first to the last), or `None`.
    pub fn voters_changing(&self) -> Option<Vec<BTreeSet<NodeId>>> {
        voters_changing_in(self.membership.membership())
    }

    /// Every member (voters and learners) with its address.
    pub fn members(&self) -> Vec<(NodeId, Member)> {
        self.membership
            .membership()
            .nodes()
            .map(|(id, member)| (*id, member.clone()))
            .collect()
    }
}

/// The voter sets of `membership` when it is a joint configuration.
pub fn voters_changing_in(
    membership: &openraft::Membership<NodeId, Member>,
) -> Option<Vec<BTreeSet<NodeId>>> {
    let sets = membership.get_joint_config();
    (sets.len() > 1).then(|| sets.clone())
}

/// A read handle on this node's replica of the state.
#[derive(Clone)]
pub struct ClusterView {
    applied: Arc<RwLock<Applied>>,
    ownership: watch::Receiver<Ownership>,
    applies: watch::Receiver<u64>,
}

impl ClusterView {
    pub fn read(&self) -> RwLockReadGuard<'_, Applied> {
        self.applied.read().expect("state lock")
    }

    /// Changes whenever the owner or epoch of a partition changes.
    pub fn ownership(&self) -> watch::Receiver<Ownership> {
        self.ownership.clone()
    }

    /// Changes after every apply (the value is the last applied index).
    pub fn applies(&self) -> watch::Receiver<u64> {
        self.applies.clone()
    }
}

/// What `snapshot.bin` holds.
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotFile {
    pub(crate) meta: SnapshotMeta<NodeId, Member>,
    pub(crate) data: Vec<u8>,
}

#[derive(Clone)]
pub struct StateMachineStore {
    dir: PathBuf,
    settings: StateSettings,
    applied: Arc<RwLock<Applied>>,
    ownership: watch::Sender<Ownership>,
    applies: watch::Sender<u64>,
    /// The last log index the snapshot on disk covers. Its lock serialises
    /// snapshot writes: openraft builds snapshots in a task of their own,
    /// beside the installing of one received from the leader.
    snapshot_on_disk: Arc<Mutex<Option<u64>>>,
    durable_snapshot: watch::Sender<Option<u64>>,
}

impl StateMachineStore {
    /// Opens the store in `dir`, restoring the state from its last snapshot.
    pub fn open(dir: &Path, settings: StateSettings) -> Result<StateMachineStore, ClusterError> {
        std::fs::create_dir_all(dir).map_err(|e| ClusterError::io(dir.display(), e))?;
        let mut applied = Applied {
            last_applied: None,
            membership: StoredMembership::default(),
            state: ClusterState::new(settings),
        };
        if let Some(file) = read_snapshot_file(dir)? {
            let image: StateImage = decode(&file.data)?;
            applied = Applied {
                last_applied: file.meta.last_log_id,
                membership: file.meta.last_membership,
                state: ClusterState::from_image(settings, image),
            };
        }
        let (ownership, _) = watch::channel(applied.state.ownership());
        let (applies, _) = watch::channel(applied.last_applied.map_or(0, |l| l.index));
        let on_disk = applied.last_applied.map(|l| l.index);
        let (durable_snapshot, _) = watch::channel(on_disk);
        Ok(StateMachineStore {
            dir: dir.to_path_buf(),
            settings,
            applied: Arc::new(RwLock::new(applied)),
            ownership,
            applies,
            snapshot_on_disk: Arc::new(Mutex::new(on_disk)),
            durable_snapshot,
        })
    }

    /// The last log index covered by the snapshot on disk, as it changes.
    pub fn durable_snapshot(&self) -> watch::Receiver<Option<u64>> {
        self.durable_snapshot.subscribe()
    }

    /// Writes `file` as the snapshot on disk unless the one there covers as
    /// much of the log or more (a build that read the state before an
    /// install replaced it must not put the older state back).
    pub(crate) fn save_snapshot(&self, file: &SnapshotFile) -> Result<(), AnyError> {
        let mut on_disk = self.snapshot_on_disk.lock().expect("snapshot lock");
        let index = file.meta.last_log_id.map(|l| l.index);
        if on_disk.is_some() && *on_disk >= index {
            return Ok(());
        }
        let bytes = encode(file)
            .map(durable_file::seal)
            .map_err(|e| AnyError::new(&e))?;
        durable_file::write_durably(&self.snapshot_path(), &bytes)
            .map_err(|e| AnyError::new(&e))?;
        *on_disk = index;
        self.durable_snapshot.send_replace(index);
        Ok(())
    }

    pub fn view(&self) -> ClusterView {
        ClusterView {
            applied: self.applied.clone(),
            ownership: self.ownership.subscribe(),
            applies: self.applies.subscribe(),
        }
    }

    fn publish(&self) {
        let (ownership, index) = {
            let applied = self.applied.read().expect("state lock");
            (
                applied.state.ownership(),
                applied.last_applied.map_or(0, |l| l.index),
            )
        };
        self.ownership.send_if_modified(|current| {
            let changed = *current != ownership;
            *current = ownership;
            changed
        });
        self.applies.send_replace(index);
    }

    fn snapshot_path(&self) -> PathBuf {
        self.dir.join(SNAPSHOT_FILE)
    }
}

fn read_snapshot_file(dir: &Path) -> Result<Option<SnapshotFile>, ClusterError> {
    let path = dir.join(SNAPSHOT_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let body = durable_file::unseal(&bytes).map_err(|source| ClusterError::Damaged {
                path: path.display().to_string(),
                source,
            })?;
            decode(body)
                .map(Some)
                .map_err(|source| ClusterError::Corrupt {
                    path: path.display().to_string(),
                    source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ClusterError::io(path.display(), e)),
    }
}

/// Boxed where it crosses to a blocking thread and back: the error is large.
type BoxedStorageError = Box<StorageError<NodeId>>;

fn snapshot_error(e: &(impl std::error::Error + 'static)) -> StorageError<NodeId> {
    StorageIOError::write_snapshot(None, AnyError::new(e)).into()
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    /// Only the image is taken under the state's lock; encoding and the
    /// durable write (tens of MiB with full de-duplication windows) run on a
    /// blocking thread. On the runtime's two workers they held up applies,
    /// heartbeats and partition actors for as long.
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (meta, image) = {
            let applied = self.applied.read().expect("state lock");
            let snapshot_id = match applied.last_applied {
                Some(log_id) => format!("{}-{}", log_id.leader_id, log_id.index),
                None => "empty".to_string(),
            };
            let meta = SnapshotMeta {
                last_log_id: applied.last_applied,
                last_membership: applied.membership.clone(),
                snapshot_id,
            };
            (meta, applied.state.image())
        };
        let store = self.clone();
        let file = tokio::task::spawn_blocking(move || {
            let data = encode(&image).map_err(|e| Box::new(snapshot_error(&e)))?;
            // Freed before the sealed copy is made: one full copy fewer at the peak.
            drop(image);
            let file = SnapshotFile { meta, data };
            store.save_snapshot(&file).map_err(|e| {
                Box::new(StorageError::from(StorageIOError::write_snapshot(None, e)))
            })?;
            Ok::<_, BoxedStorageError>(file)
        })
        .await
        .map_err(|e| snapshot_error(&e))?
        .map_err(|e| *e)?;
        Ok(Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(file.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>), StorageError<NodeId>>
    {
        let applied = self.applied.read().expect("state lock");
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut results = Vec::new();
        {
            let mut applied = self.applied.write().expect("state lock");
            for entry in entries {
                applied.last_applied = Some(entry.log_id);
                let result = match entry.payload {
                    EntryPayload::Blank => CommandResult::Done,
                    EntryPayload::Normal(command) => {
                        let voters = applied.voters();
                        applied.state.apply(&command, &voters)
                    }
                    EntryPayload::Membership(membership) => {
                        applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                        CommandResult::Done
                    }
                };
                results.push(result);
            }
        }
        self.publish();
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        // Decoding, the durable write and rebuilding the state run on a
        // blocking thread, and the state's lock is held only to swap it in
        // (see `build_snapshot`).
        let store = self.clone();
        let meta_owned = meta.clone();
        let state = tokio::task::spawn_blocking(move || {
            let data = snapshot.into_inner();
            let image: StateImage = decode(&data).map_err(|e| {
                Box::new(StorageError::from(StorageIOError::read_snapshot(
                    Some(meta_owned.signature()),
                    AnyError::new(&e),
                )))
            })?;
            let file = SnapshotFile {
                meta: meta_owned,
                data,
            };
            store.save_snapshot(&file).map_err(|e| {
                Box::new(StorageError::from(StorageIOError::write_snapshot(None, e)))
            })?;
            Ok::<_, BoxedStorageError>(ClusterState::from_image(store.settings, image))
        })
        .await
        .map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(
                Some(meta.signature()),
                AnyError::new(&e),
            ))
        })?
        .map_err(|e| *e)?;
        {
            let mut applied = self.applied.write().expect("state lock");
            *applied = Applied {
                last_applied: meta.last_log_id,
                membership: meta.last_membership.clone(),
                state,
            };
        }
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let file = read_snapshot_file(&self.dir).map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(None, AnyError::new(&e)))
        })?;
        Ok(file.map(|file| Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(file.data)),
        }))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use openraft::{Entry, Membership};

    use super::*;
    use crate::dedup::DedupSettings;
    use crate::live::LiveCount;
    use crate::types::{CheckpointIncrement, Command};

    #[test]
    fn a_joint_configuration_is_a_change_of_voters_under_way() {
        let member = |port: u16| Member {
            addr: format!("127.0.0.1:{port}"),
        };
        let nodes: BTreeMap<NodeId, Member> =
            (1..=3).map(|id| (id, member(8080 + id as u16))).collect();
        let (all, two) = (BTreeSet::from([1, 2, 3]), BTreeSet::from([1, 2]));
        let joint = openraft::Membership::new(vec![all.clone(), two.clone()], nodes.clone());
        assert_eq!(voters_changing_in(&joint), Some(vec![all.clone(), two]));
        let settled = openraft::Membership::new(vec![all], nodes);
        assert_eq!(voters_changing_in(&settled), None);
    }

    /// Small windows, for the stores' tests here and in the log store's.
    pub(crate) fn settings() -> StateSettings {
        StateSettings {
            dedup: DedupSettings {
                window_events: 1000,
                window: Duration::from_secs(3600),
                max_ids: 1000,
            },
            live_retention_us: 3_600_000_000,
            live_max_entries: 1_000_000,
            job_history: 10,
        }
    }

    fn entry(index: u64, payload: EntryPayload<TypeConfig>) -> Entry<TypeConfig> {
        Entry {
            log_id: openraft::testing::log_id(1, 1, index),
            payload,
        }
    }

    fn image(store: &StateMachineStore) -> (Option<LogId<NodeId>>, StateImage) {
        let applied = store.applied.read().expect("state lock");
        (applied.last_applied, applied.state.image())
    }

    /// Encoding, writing and decoding run on blocking threads: the state a
    /// follower installs, and the one a store reopens from its disk, are the
    /// leader's.
    #[tokio::test]
    async fn a_snapshot_carries_the_whole_state_to_a_follower_and_to_disk() {
        let (leader_dir, follower_dir) =
            (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut leader = StateMachineStore::open(leader_dir.path(), settings()).unwrap();
        let member = Member {
            addr: "127.0.0.1:1".into(),
        };
        let membership = Membership::new(vec![BTreeSet::from([1])], BTreeMap::from([(1, member)]));
        let checkpoint = CheckpointIncrement {
            partition: 0,
            epoch: 1,
            after_offset: -1,
            last_offset: 41,
            delta_version: 3,
            new_ids: vec![7, 8, 9],
            accepted_at_us: 5_000_000,
            live: vec![LiveCount {
                video_id: "v".into(),
                minute_us: 0,
                counts: [3, 0, 0, 0],
            }],
            at_ms: 5_000,
        };
        let results = leader
            .apply(vec![
                entry(1, EntryPayload::Membership(membership)),
                entry(
                    2,
                    EntryPayload::Normal(Command::AddPartitions {
                        partitions: vec![0, 1],
                    }),
                ),
                entry(
                    3,
                    EntryPayload::Normal(Command::Assign {
                        partition: 0,
                        to: 1,
                        expected_epoch: 0,
                    }),
                ),
                entry(4, EntryPayload::Normal(Command::Checkpoint(checkpoint))),
            ])
            .await
            .unwrap();
        assert_eq!(results[3], CommandResult::Done, "{results:?}");
        let built = leader
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(
            built.meta.last_log_id,
            Some(openraft::testing::log_id(1, 1, 4))
        );

        let mut follower = StateMachineStore::open(follower_dir.path(), settings()).unwrap();
        follower
            .install_snapshot(&built.meta, built.snapshot)
            .await
            .unwrap();
        let (at, state) = image(&leader);
        assert_eq!(state.partitions[0].dedup.len(), 3);
        assert_eq!(
            state.partitions[0].checkpoint.map(|c| c.last_offset),
            Some(41)
        );
        assert_eq!(image(&follower), (at, state.clone()));
        let reopened = StateMachineStore::open(follower_dir.path(), settings()).unwrap();
        assert_eq!(image(&reopened), (at, state.clone()));
        let reopened_leader = StateMachineStore::open(leader_dir.path(), settings()).unwrap();
        assert_eq!(image(&reopened_leader), (at, state));
    }
}
