//! Counters of the ingest path, shared between actors and the node's reporting.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::histogram::Histogram;
use streamreel_protocol::PartitionCounters;

/// Upper bounds (seconds) of the bronze commit latency buckets.
const COMMIT_SECONDS_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug)]
pub struct PartitionStats {
    /// Whether an actor of this partition runs on this node now (set by the
    /// supervisor).
    pub running: AtomicBool,
    /// Records read from the input topic (every record, as it is consumed).
    pub consumed: AtomicU64,
    /// Accepted, duplicate and rejected records, counted when their batch
    /// commits: the same numbers as bronze.
    pub accepted: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    pub commits: AtomicU64,
    pub restarts: AtomicU64,
    /// Last offset committed to bronze; -1 before the first commit.
    pub committed_offset: AtomicI64,
    /// Last offset the partition's actor consumed; -1 before the first. A
    /// panic skips the actor's own bookkeeping of a lost batch: the
    /// supervisor compares this with `committed_offset` instead.
    pub consumed_offset: AtomicI64,
    /// Checkpoints proposed through Raft and accepted, and their total time
    /// and encoded size.
    pub checkpoints: AtomicU64,
    pub checkpoint_micros: AtomicU64,
    pub checkpoint_bytes: AtomicU64,
    /// Offsets skipped because the broker no longer had them
    /// (`kafka.on-missing-offsets = "resume-at-earliest"`).
    pub skipped_offsets: AtomicU64,
    /// The last offset counted in `skipped_offsets`: a restart before the
    /// partition's next commit finds the same gap, and must not count it again.
    skipped_through: AtomicI64,
    /// Bronze commits that failed and were tried again.
    pub commit_retries: AtomicU64,
    /// Consumer errors librdkafka recovers from (lost connections, brokers
    /// down), which the actor outlives.
    pub consumer_errors: AtomicU64,
    /// Why the partition's last actor ended, or the consumer error it is
    /// waiting out, until it commits again.
    pub last_error: Mutex<Option<String>>,
    /// Events this node consumed (and sent on) that bronze does not hold.
    pub uncommitted: Uncommitted,
    /// Rejected records by [`Rejection::kind`](streamreel_protocol::Rejection::kind).
    pub rejected_by_kind: Mutex<BTreeMap<&'static str, u64>>,
    /// Time of each bronze commit, retries included.
    pub commit_seconds: Histogram,
}

impl PartitionStats {
    /// The partition's actor failed (an error or a panic): what it consumed
    /// beyond its last commit is not in bronze.
    pub fn actor_failed(&self) {
        let consumed = self.consumed_offset.load(Ordering::SeqCst);
        if consumed > self.committed_offset.load(Ordering::SeqCst) {
            self.uncommitted.lost_through(consumed);
        }
    }

    /// Counts the offsets `from..to` as skipped, but for those an earlier
    /// start of the partition on this node counted already; returns how
    /// many were new.
    pub fn count_skipped(&self, from: i64, to: i64) -> u64 {
        let through = self.skipped_through.fetch_max(to - 1, Ordering::Relaxed);
        let new = (to - from.max(through + 1)).max(0) as u64;
        self.skipped_offsets.fetch_add(new, Ordering::Relaxed);
        new
    }
}

impl Default for PartitionStats {
    fn default() -> PartitionStats {
        PartitionStats {
            running: AtomicBool::default(),
            consumed: AtomicU64::default(),
            accepted: AtomicU64::default(),
            duplicates: AtomicU64::default(),
            rejected: AtomicU64::default(),
            commits: AtomicU64::default(),
            restarts: AtomicU64::default(),
            committed_offset: AtomicI64::new(-1),
            consumed_offset: AtomicI64::new(-1),
            checkpoints: AtomicU64::default(),
            checkpoint_micros: AtomicU64::default(),
            checkpoint_bytes: AtomicU64::default(),
            skipped_offsets: AtomicU64::default(),
            skipped_through: AtomicI64::new(-1),
            commit_retries: AtomicU64::default(),
            consumer_errors: AtomicU64::default(),
            last_error: Mutex::default(),
            uncommitted: Uncommitted::default(),
            rejected_by_kind: Mutex::default(),
            commit_seconds: Histogram::new(COMMIT_SECONDS_BUCKETS),
        }
    }
}

/// The last offset of events an actor of the partition consumed and did not
/// commit to bronze (its stop or its last round failed), until a later actor
/// commits that far or the partition moves to another owner: at the end of a
/// shutdown it names the partitions whose outputs the next owner sends again.
#[derive(Debug)]
pub struct Uncommitted(AtomicI64);

/// No uncommitted events.
const NONE: i64 = -1;

impl Default for Uncommitted {
    fn default() -> Uncommitted {
        Uncommitted(AtomicI64::new(NONE))
    }
}

impl Uncommitted {
    /// A batch ending at `last_offset` was lost.
    pub fn lost_through(&self, last_offset: i64) {
        self.0.fetch_max(last_offset, Ordering::SeqCst);
    }

    /// A batch of which no offset is known was lost (a stop that timed out).
    pub fn lost_unknown(&self) {
        self.lost_through(i64::MAX);
    }

    /// Bronze holds the partition's events through `offset`.
    pub fn committed_through(&self, offset: i64) {
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |lost| {
                (lost != NONE && lost <= offset).then_some(NONE)
            });
    }

    /// Another owner reads the partition from bronze's marks now.
    pub fn handed_over(&self) {
        self.0.store(NONE, Ordering::SeqCst);
    }

    pub fn any(&self) -> bool {
        self.0.load(Ordering::SeqCst) != NONE
    }
}

impl PartitionStats {
    pub fn add_rejections(&self, by_kind: &BTreeMap<&'static str, u64>) {
        let mut counts = self.rejected_by_kind.lock().expect("stats lock");
        for (kind, n) in by_kind {
            *counts.entry(kind).or_default() += n;
        }
    }

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
        partitions.entry(partition).or_default().clone()
    }

    /// The partition's stats if an actor of it ran here, without creating them.
    pub fn get(&self, partition: i32) -> Option<Arc<PartitionStats>> {
        let partitions = self.partitions.lock().expect("stats lock");
        partitions.get(&partition).cloned()
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    #[test]
    fn a_failed_actor_loses_what_it_consumed_beyond_its_commit() {
        let stats = super::PartitionStats::default();
        stats.actor_failed();
        assert!(!stats.uncommitted.any(), "nothing consumed");
        stats.consumed_offset.store(120, Ordering::SeqCst);
        stats.committed_offset.store(120, Ordering::SeqCst);
        stats.actor_failed();
        assert!(!stats.uncommitted.any(), "everything consumed is committed");
        stats.consumed_offset.store(180, Ordering::SeqCst);
        stats.actor_failed();
        assert!(stats.uncommitted.any(), "121-180 are not in bronze");
        // The restarted actor commits 150: 151-180 are still missing.
        stats.uncommitted.committed_through(150);
        assert!(stats.uncommitted.any());
        stats.uncommitted.committed_through(180);
        assert!(!stats.uncommitted.any());
    }

    #[test]
    fn a_gap_found_again_by_a_restart_is_counted_once() {
        let stats = super::PartitionStats::default();
        // Bronze ends at 100, the broker's log starts at 1000.
        assert_eq!(stats.count_skipped(101, 1000), 899);
        assert_eq!(stats.count_skipped(101, 1000), 0, "the same gap");
        // Retention moved on before the next start: only the new offsets.
        assert_eq!(stats.count_skipped(101, 1200), 200);
        assert_eq!(stats.skipped_offsets.load(Ordering::Relaxed), 1099);
        // Later gaps (after commits) count in full.
        assert_eq!(stats.count_skipped(5000, 5010), 10);
    }

    use super::*;

    #[test]
    fn a_lost_batch_counts_until_a_commit_reaches_its_last_offset() {
        let uncommitted = Uncommitted::default();
        assert!(!uncommitted.any());
        uncommitted.lost_through(200);
        uncommitted.committed_through(150);
        assert!(uncommitted.any(), "offsets 151-200 are not in bronze yet");
        uncommitted.committed_through(200);
        assert!(!uncommitted.any());
    }

    #[test]
    fn the_furthest_loss_is_kept_and_a_move_clears_it() {
        let uncommitted = Uncommitted::default();
        uncommitted.lost_through(300);
        uncommitted.lost_through(100);
        uncommitted.committed_through(250);
        assert!(uncommitted.any());
        uncommitted.lost_unknown();
        uncommitted.committed_through(1_000_000);
        assert!(uncommitted.any(), "a loss of unknown extent stays");
        uncommitted.handed_over();
        assert!(!uncommitted.any());
    }
}
