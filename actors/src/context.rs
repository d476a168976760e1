use std::path::PathBuf;

use streamreel_cluster::ClusterMember;
use streamreel_protocol::UserKeyer;

use crate::acks::OutputProducer;
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
    pub producer: OutputProducer,
    /// The largest record the output topics take (bytes).
    pub record_limit: usize,
    pub stats: IngestStats,
    /// This node's cluster member: its replica of the state, and where checkpoints go.
    pub cluster: ClusterMember,
}
