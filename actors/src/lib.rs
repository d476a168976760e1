//! StreamReel's actors: one partition actor per Kafka partition, under a supervisor.
//!
//! # Layout
//! - [`settings`]: what the node tells the actors (topics, batching, dedup, restarts).
//! - `dedup`: the de-duplication window (pure; it lives in the cluster crate, which replicates it).
//! - [`partition_core`]: validate, de-duplicate, pseudonymise one record (pure).
//! - [`restart`]: the supervisor's backoff decisions (pure).
//! - [`kafka`]: client configuration and topic administration.
//! - [`acks`]: the output producer, acknowledgements counted per batch.
//! - [`output`]: which output producer an actor takes, for the topics' record limit.
//! - [`partition_actor`]: consumes a partition, writes outputs, commits bronze.
//! - [`partition_resume`]: resumes a partition at its epoch (fence, gap replay).
//! - [`checkpoint`]: a partition's checkpoint through Raft.
//! - [`commit_retry`]: what to do after a failed bronze commit, and the retry loop.
//! - [`repeated_error`]: a recurring error logged as a warning once.
//! - [`supervisor`]: starts partition actors and restarts the ones that fail.
//! - [`coordinator`]: schedules the lakehouse jobs and keeps their history.
//! - [`stats`]: counters the node reports.
//! - [`fault`]: opt-in fault injection for chaos tests.

pub mod acks;
pub mod checkpoint;
pub mod commit_retry;
pub mod context;
pub use streamreel_cluster::dedup;
pub mod coordinator;
pub mod dead_letter;
pub mod error;
pub mod fault;
pub mod kafka;
pub mod output;
pub mod partition_actor;
pub mod partition_core;
pub mod partition_resume;
pub mod repeated_error;
pub mod restart;
pub mod settings;
pub mod start_position;
pub mod stats;
pub mod supervisor;

pub use context::IngestContext;
pub use error::ActorError;
pub use settings::{DedupSettings, IngestSettings, KafkaSettings, RestartPolicy};
pub use stats::{IngestStats, PartitionStats};
pub use supervisor::{IngestSupervisor, SupervisorArgs, SupervisorMsg};
