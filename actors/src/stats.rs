//! Counters of the ingest path, shared between actors and the node's reporting.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use streamreel_protocol::PartitionCounters;

#[derive(Debug, Default)]
pub struct PartitionStats {
    pub accepted: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    pub commits: AtomicU64,
    pub restarts: AtomicU64,
    /// Last offset committed to bronze; -1 before the first commit.
    pub committed_offset: AtomicI64,
    /// Checkpoints proposed through Raft and accepted, and their total time
    /// and encoded size.
    pub checkpoints: AtomicU64,
    pub checkpoint_micros: AtomicU64,
    pub checkpoint_bytes: AtomicU64,
}

impl PartitionStats {
    pub fn counters(&self) -> PartitionCounters {
        PartitionCounters {
            accepted: self.accepted.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
        }
    }
}

/// Stats of every partition this node ingests, created on first use.
#[derive(Debug, Default, Clone)]
pub struct IngestStats {
    partitions: Arc<Mutex<BTreeMap<i32, Arc<PartitionStats>>>>,
}

impl IngestStats {
    pub fn partition(&self, partition: i32) -> Arc<PartitionStats> {
        let mut partitions = self.partitions.lock().expect("stats lock");
        partitions
            .entry(partition)
            .or_insert_with(|| {
                let stats = PartitionStats::default();
                stats.committed_offset.store(-1, Ordering::Relaxed);
                Arc::new(stats)
            })
            .clone()
    }

    pub fn snapshot(&self) -> Vec<(i32, Arc<PartitionStats>)> {
        let partitions = self.partitions.lock().expect("stats lock");
        partitions.iter().map(|(p, s)| (*p, s.clone())).collect()
    }

    pub fn totals(&self) -> PartitionCounters {
        self.snapshot()
            .iter()
            .fold(PartitionCounters::default(), |mut total, (_, stats)| {
                let c = stats.counters();
                total.accepted += c.accepted;
                total.duplicates += c.duplicates;
                total.rejected += c.rejected;
                total.commits += c.commits;
                total
            })
    }
}
