use std::path::PathBuf;

use streamreel_cluster::ClusterMember;
use streamreel_protocol::UserKeyer;

use crate::output::SharedOutput;
use crate::settings::{IngestSettings, KafkaSettings, RestartPolicy};
use crate::stats::IngestStats;

/// What every partition actor of a node shares.
#[derive(Clone)]
pub struct IngestContext {
    pub kafka: KafkaSettings,
    pub ingest: IngestSettings,
    pub restart: RestartPolicy,
    pub lake_dir: PathBuf,
    pub keyer: UserKeyer,
    /// The output producer, for the output topics' record limit.
    pub output: SharedOutput,
    pub stats: IngestStats,
    /// This node's cluster member: its replica of the state, and where checkpoints go.
    pub cluster: ClusterMember,
}
