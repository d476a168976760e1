//! StreamReel's cluster: a Raft group (openraft) whose replicated state holds
//! the members, the owner and ownership epoch of every input partition, each
//! partition's checkpoint and de-duplication window, the live aggregates and
//! the lakehouse job history.
//!
//! # Layout
//! - [`types`]: ids, members, commands and results (the Raft type config).
//! - [`state`]: the replicated state and its deterministic `apply` (pure).
//! - [`dedup`]: the de-duplication window (pure).
//! - [`live`]: live aggregates (pure).
//! - [`placement`]: who should own what (pure).
//! - [`failure`]: which members are silent (pure).
//! - [`quorum`]: whether a change of voters can commit now (pure).
//! - [`removal`]: whether this member was removed from the cluster (pure).
//! - [`log_store`]: the durable Raft log and vote.
//! - [`sm_store`]: the state machine store and its snapshots.
//! - [`network`]: Raft RPCs to other members over HTTP.
//! - [`member`]: one member: starts Raft, bootstraps once, proposes (forwarding to the leader), pings.
//! - [`error`]: the crate's error type.

pub mod dedup;
pub mod durable_file;
pub mod error;
pub mod failure;
pub mod live;
pub mod log_store;
pub mod member;
pub mod network;
pub mod placement;
pub mod quorum;
pub mod removal;
pub mod sm_store;
pub mod state;
pub mod types;

pub use error::ClusterError;
pub use member::{ClusterMember, PingAnswer, RaftTimings, WriteAnswer, leader_in};
pub use sm_store::ClusterView;
pub use state::{Checkpoint, ClusterState, Ownership, StateSettings};
pub use types::{
    CheckpointIncrement, Command, CommandResult, Epoch, FIRST_JOB_RUN_ID, Member, NodeId,
    PartitionId, Raft, Refusal, TypeConfig,
};
