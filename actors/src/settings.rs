use std::time::Duration;

pub use streamreel_cluster::dedup::DedupSettings;

#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSettings {
    pub brokers: String,
    pub input_topic: String,
    pub clean_topic: String,
    pub dlq_topic: String,
    pub consumer_group: String,
    /// Partition count for topics the node creates because they are missing.
    pub default_partitions: i32,
    /// Replication factor of the topics the node creates.
    pub replication_factor: i32,
    pub on_missing_offsets: crate::start_position::OnMissingOffsets,
    /// Retention of the dead-letter topic when the node creates it.
    pub dlq_retention: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IngestSettings {
    /// A partition commits to bronze when its batch holds this many events...
    pub commit_max_events: usize,
    /// ...or when its records add up to this many bytes...
    pub commit_max_bytes: usize,
    /// ...or when its oldest uncommitted record is this old.
    pub commit_interval: Duration,
    pub dedup: DedupSettings,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RestartPolicy {
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}
