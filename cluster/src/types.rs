//! The cluster's vocabulary: ids, members, the commands the state machine
//! applies and what it answers.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::live::LiveCount;

pub type NodeId = u64;
pub type PartitionId = i32;
/// Ownership epoch of a partition: grows by one at every change of owner.
pub type Epoch = u64;

/// A member as Raft knows it: where its HTTP address is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub addr: String,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.addr)
    }
}

openraft::declare_raft_types!(
    /// StreamReel's Raft types: commands in, results out, members by HTTP address.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = Member,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;

/// A change to the replicated state. Every command is compare-and-set, so a
/// retried or late command never undoes a newer decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// The input topic has these partitions (new ones start without an owner).
    AddPartitions { partitions: Vec<PartitionId> },
    /// Gives `partition` to `to` at the next epoch, if its epoch is still `expected_epoch`.
    Assign {
        partition: PartitionId,
        to: NodeId,
        expected_epoch: Epoch,
    },
    /// The owner's progress after a bronze commit.
    Checkpoint(CheckpointIncrement),
    /// A member left the cluster: it owns nothing any more.
    ForgetMember { node: NodeId },
    /// A lakehouse job run started or ended (the coordinator's history).
    RecordJobRun(JobRunRecord),
}

/// What a partition's owner adds to the replicated state after a bronze commit:
/// only what is new since the previous checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointIncrement {
    pub partition: PartitionId,
    /// The writer's ownership epoch; refused unless it is the partition's epoch.
    pub epoch: Epoch,
    /// The checkpointed offset this increment continues from (-1: none). The
    /// state machine refuses it unless that is still the partition's
    /// checkpoint, so an increment is never folded in twice or on top of a
    /// different one.
    pub after_offset: i64,
    /// Everything up to this Kafka offset is in bronze.
    pub last_offset: i64,
    /// The bronze table version holding it.
    pub delta_version: i64,
    /// Ids of the events accepted since the last checkpoint (hashes), oldest first.
    pub new_ids: Vec<u128>,
    /// When the newest of them was accepted (UTC microseconds). Replicas keep
    /// every id of the increment from this time on: a little longer than the
    /// owner does, never shorter, at a third of the bytes of a time per id.
    pub accepted_at_us: i64,
    /// Accepted events since the last checkpoint, per video, minute and type.
    pub live: Vec<LiveCount>,
    /// Wall-clock time of the proposal (UTC milliseconds), for the checkpoint's age.
    pub at_ms: i64,
}

/// The id of a cluster's first job run: run ids count up from it across leaders.
pub const FIRST_JOB_RUN_ID: u64 = 1;

/// One lakehouse job run as the replicated history keeps it (and `/admin/jobs`
/// shows it). Times are UTC microseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRunRecord {
    pub id: u64,
    pub job: String,
    /// `schedule`, `retry` or `manual`.
    pub trigger: String,
    pub attempt: u32,
    pub started_at_us: i64,
    pub ended_at_us: Option<i64>,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    pub rows: u64,
    pub detail: String,
    pub error: Option<String>,
}

/// The state machine's answer to one command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CommandResult {
    Done,
    Assigned {
        partition: PartitionId,
        owner: NodeId,
        epoch: Epoch,
    },
    Refused(Refusal),
}

/// Why a command changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error("partition {partition} is unknown")]
    UnknownPartition { partition: PartitionId },
    #[error("partition {partition} is at epoch {current}, not {given}")]
    StaleEpoch {
        partition: PartitionId,
        current: Epoch,
        given: Epoch,
    },
    #[error(
        "partition {partition} is checkpointed at offset {current}, not {expected} as the increment expects"
    )]
    CheckpointMoved {
        partition: PartitionId,
        current: i64,
        expected: i64,
    },
    #[error(
        "partition {partition}: an increment cannot end at {last} before it starts after {after}"
    )]
    OffsetWentBack {
        partition: PartitionId,
        after: i64,
        last: i64,
    },
    #[error("node {node} is not a member")]
    NotAMember { node: NodeId },
}
