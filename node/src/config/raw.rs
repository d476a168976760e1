//! The config file's serde shape: sections, keys and defaults, as written;
//! unknown keys are refused. [`super::validate`] turns it into a
//! [`super::NodeConfig`].

use std::path::PathBuf;

use serde::Deserialize;
use streamreel_lake::LakeSettings;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) node: RawNode,
    #[serde(default)]
    pub(super) kafka: RawKafka,
    #[serde(default)]
    pub(super) lake: RawLake,
    #[serde(default)]
    pub(super) dedup: RawDedup,
    #[serde(default)]
    pub(super) jobs: RawJobs,
    #[serde(default)]
    pub(super) live: RawLive,
    pub(super) cluster: Option<RawCluster>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub(super) struct RawLive {
    pub(super) retention_hours: u64,
    pub(super) max_entries: u64,
}

impl Default for RawLive {
    fn default() -> Self {
        RawLive {
            retention_hours: 48,
            max_entries: 5_000_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawCluster {
    #[serde(default = "default_heartbeat_ms")]
    pub(super) heartbeat_ms: u64,
    #[serde(default = "default_election_timeout_ms")]
    pub(super) election_timeout_ms: u64,
    #[serde(default = "default_failover_after_ms")]
    pub(super) failover_after_ms: u64,
    pub(super) token_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) node: Vec<RawMember>,
}

pub(super) fn default_heartbeat_ms() -> u64 {
    250
}
pub(super) fn default_election_timeout_ms() -> u64 {
    1_500
}
pub(super) fn default_failover_after_ms() -> u64 {
    2_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawMember {
    pub(super) id: u64,
    pub(super) addr: String,
    pub(super) data_dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub(super) struct RawNode {
    /// 1 when absent; a cluster of several members needs it (or `--node-id`).
    pub(super) id: Option<u64>,
    /// `data/node-1` when absent; refused beside `[cluster]`, whose members name their own.
    pub(super) data_dir: Option<PathBuf>,
    /// Refused when present: demo mode comes only from `--demo`.
    pub(super) demo: Option<bool>,
    pub(super) user_key_secret_file: Option<PathBuf>,
    pub(super) restart_backoff_min_ms: u64,
    pub(super) restart_backoff_max_ms: u64,
    /// `127.0.0.1:8080` when absent; refused beside `[cluster]`, whose members listen on their `addr`.
    pub(super) http_listen: Option<String>,
    pub(super) admin_token_file: Option<PathBuf>,
    pub(super) metadata: PathBuf,
}

impl Default for RawNode {
    fn default() -> Self {
        RawNode {
            id: None,
            data_dir: None,
            demo: None,
            user_key_secret_file: None,
            restart_backoff_min_ms: 200,
            restart_backoff_max_ms: 30_000,
            http_listen: None,
            admin_token_file: None,
            metadata: PathBuf::from("metadata/video_metadata.csv"),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub(super) struct RawKafka {
    pub(super) brokers: String,
    pub(super) input_topic: String,
    pub(super) clean_topic: String,
    pub(super) dlq_topic: String,
    pub(super) consumer_group: String,
    /// Partition count for topics the node has to create itself.
    pub(super) default_partitions: i32,
    /// Their replication factor: 1 suits one broker, a production Kafka wants 3.
    pub(super) replication_factor: i32,
    pub(super) on_missing_offsets: RawOnMissingOffsets,
    pub(super) dlq_retention_hours: u64,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum RawOnMissingOffsets {
    Fail,
    ResumeAtEarliest,
}

impl Default for RawKafka {
    fn default() -> Self {
        RawKafka {
            brokers: "127.0.0.1:9092".into(),
            input_topic: "video-events".into(),
            clean_topic: "clean-events".into(),
            dlq_topic: "video-events-dlq".into(),
            consumer_group: "streamreel".into(),
            default_partitions: 4,
            replication_factor: 1,
            on_missing_offsets: RawOnMissingOffsets::Fail,
            dlq_retention_hours: 168,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub(super) struct RawLake {
    /// The lake shared by every node; default `<data-dir>/lake`.
    pub(super) uri: Option<PathBuf>,
    pub(super) commit_max_events: usize,
    pub(super) commit_max_bytes: usize,
    pub(super) commit_interval_ms: u64,
}

impl Default for RawLake {
    fn default() -> Self {
        RawLake {
            uri: None,
            commit_max_events: 20_000,
            commit_max_bytes: 64 << 20,
            commit_interval_ms: 1_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub(super) struct RawDedup {
    pub(super) window_events: usize,
    pub(super) window_hours: u64,
    pub(super) max_ids: usize,
}

impl Default for RawDedup {
    fn default() -> Self {
        RawDedup {
            window_events: 1_000_000,
            window_hours: 24,
            max_ids: 4_000_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub(super) struct RawJobs {
    pub(super) enrich_interval_s: u64,
    pub(super) gold_interval_s: u64,
    pub(super) compact_interval_s: u64,
    pub(super) vacuum_interval_s: u64,
    pub(super) vacuum_retention_hours: u64,
    pub(super) max_retries: u32,
    pub(super) retry_backoff_ms: u64,
    /// A run still going after this long is cancelled (a failed run).
    pub(super) timeout_s: u64,
    /// Threads of the lakehouse jobs' own runtime.
    pub(super) threads: usize,
    /// DataFusion's memory pool for a silver or gold run.
    pub(super) memory_limit_mb: u64,
    /// Bronze events silver processes at once.
    pub(super) chunk_events: u64,
}

impl Default for RawJobs {
    fn default() -> Self {
        RawJobs {
            enrich_interval_s: 30,
            gold_interval_s: 120,
            compact_interval_s: 3_600,
            vacuum_interval_s: 86_400,
            vacuum_retention_hours: 168,
            max_retries: 3,
            retry_backoff_ms: 2_000,
            timeout_s: 21_600,
            threads: 1,
            memory_limit_mb: (LakeSettings::DEFAULT_MEMORY_LIMIT_BYTES >> 20) as u64,
            chunk_events: LakeSettings::DEFAULT_CHUNK_EVENTS,
        }
    }
}
