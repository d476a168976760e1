//! Per-partition progress, as carried between node components (and later Raft).

use serde::{Deserialize, Serialize};

/// Where a partition stands: everything up to `last_offset` is in bronze at
/// `delta_version`, and its outputs to `clean-events` and the dead-letter topic
/// were acknowledged by the broker before that commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionCheckpoint {
    pub partition: i32,
    pub last_offset: i64,
    pub delta_version: i64,
}

impl PartitionCheckpoint {
    /// The Delta app transaction id of a partition's bronze commits.
    pub fn bronze_app_id(partition: i32) -> String {
        format!("streamreel-bronze-{partition}")
    }

    /// The first Kafka offset still to be ingested.
    pub fn next_offset(&self) -> i64 {
        self.last_offset + 1
    }
}

/// Counts of what a partition actor did since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionCounters {
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub commits: u64,
}
