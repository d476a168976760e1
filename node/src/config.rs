//! Node configuration: a TOML file with `[node]`, `[kafka]`, `[lake]`, `[dedup]`, `[jobs]`,
//! `[live]` and `[cluster]` sections, read into a raw serde shape (unknown keys refused)
//! and validated into [`NodeConfig`]. Command-line flags override the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use std::net::SocketAddr;

use streamreel_actors::coordinator::job::JobSchedule;
use streamreel_actors::start_position::OnMissingOffsets;
use streamreel_actors::{DedupSettings, IngestSettings, KafkaSettings, RestartPolicy};
use streamreel_lake::LakeSettings;
use streamreel_lake::maintenance::MIN_VACUUM_RETENTION_HOURS;

/// The environment variable that carries the pseudonymisation secret.
pub const SECRET_ENV: &str = "STREAMREEL_USER_KEY_SECRET";
/// The node-to-node secret (or `cluster.token-file`).
pub const CLUSTER_TOKEN_ENV: &str = "STREAMREEL_CLUSTER_TOKEN";
/// The admin API token (or `node.admin-token-file`).
pub const ADMIN_TOKEN_ENV: &str = "STREAMREEL_ADMIN_TOKEN";
/// Used only in demo mode, so a demo needs no setup; never for real data.
const DEMO_SECRET: &str = "streamreel-demo-secret-not-for-production";
const MIN_SECRET_BYTES: usize = 16;
/// Ten years: the longest retention a config may ask for.
const MAX_HOURS: u64 = 10 * 366 * 24;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// A file the config names (a token or secret file).
    #[error("cannot read {what} {path}: {source}")]
    ReadNamedFile {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid config value `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error(
        "no pseudonymisation secret: set {SECRET_ENV} or node.user-key-secret-file (or run in demo mode with --demo)"
    )]
    MissingSecret,
    #[error(
        "no cluster token: a node with peers, or listening on a non-loopback address (its /raft/* routes take commands), needs {CLUSTER_TOKEN_ENV} or cluster.token-file (or --demo)"
    )]
    MissingClusterToken,
    #[error(
        "no shared lake: the {members} members of a cluster must write one lake; set lake.uri (or --lake), or each would write its own <data-dir>/lake"
    )]
    UnsharedLake { members: usize },
    #[error(
        "no admin token: a node listening on {addr} (not loopback) needs {ADMIN_TOKEN_ENV} or node.admin-token-file (or --demo)"
    )]
    MissingAdminToken { addr: SocketAddr },
    #[error("token file {path} is empty")]
    EmptyToken { path: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawConfig {
    #[serde(default)]
    node: RawNode,
    #[serde(default)]
    kafka: RawKafka,
    #[serde(default)]
    lake: RawLake,
    #[serde(default)]
    dedup: RawDedup,
    #[serde(default)]
    jobs: RawJobs,
    #[serde(default)]
    live: RawLive,
    cluster: Option<RawCluster>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
struct RawLive {
    retention_hours: u64,
}

impl Default for RawLive {
    fn default() -> Self {
        RawLive {
            retention_hours: 48,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawCluster {
    #[serde(default = "default_heartbeat_ms")]
    heartbeat_ms: u64,
    #[serde(default = "default_election_timeout_ms")]
    election_timeout_ms: u64,
    #[serde(default = "default_failover_after_ms")]
    failover_after_ms: u64,
    token_file: Option<PathBuf>,
    #[serde(default)]
    node: Vec<RawMember>,
}

fn default_heartbeat_ms() -> u64 {
    250
}
fn default_election_timeout_ms() -> u64 {
    1_500
}
fn default_failover_after_ms() -> u64 {
    2_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawMember {
    id: u64,
    addr: String,
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
struct RawNode {
    /// 1 when absent; a cluster of several members needs it (or `--node-id`).
    id: Option<u64>,
    /// `data/node-1` when absent; refused beside `[cluster]`, whose members name their own.
    data_dir: Option<PathBuf>,
    /// Refused when present: demo mode comes only from `--demo`.
    demo: Option<bool>,
    user_key_secret_file: Option<PathBuf>,
    restart_backoff_min_ms: u64,
    restart_backoff_max_ms: u64,
    /// `127.0.0.1:8080` when absent; refused beside `[cluster]`, whose members listen on their `addr`.
    http_listen: Option<String>,
    admin_token_file: Option<PathBuf>,
    metadata: PathBuf,
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
struct RawKafka {
    brokers: String,
    input_topic: String,
    clean_topic: String,
    dlq_topic: String,
    consumer_group: String,
    /// Partition count for topics the node has to create itself.
    default_partitions: i32,
    /// Their replication factor: 1 suits one broker, a production Kafka wants 3.
    replication_factor: i32,
    on_missing_offsets: RawOnMissingOffsets,
    dlq_retention_hours: u64,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RawOnMissingOffsets {
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
struct RawLake {
    /// The lake shared by every node; default `<data-dir>/lake`.
    uri: Option<PathBuf>,
    commit_max_events: usize,
    commit_max_bytes: usize,
    commit_interval_ms: u64,
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
struct RawDedup {
    window_events: usize,
    window_hours: u64,
    max_ids: usize,
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
struct RawJobs {
    enrich_interval_s: u64,
    gold_interval_s: u64,
    compact_interval_s: u64,
    vacuum_interval_s: u64,
    vacuum_retention_hours: u64,
    max_retries: u32,
    retry_backoff_ms: u64,
    /// Threads of the lakehouse jobs' own runtime.
    threads: usize,
    /// DataFusion's memory pool for a silver or gold run.
    memory_limit_mb: u64,
    /// Bronze events silver processes at once.
    chunk_events: u64,
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
            threads: 1,
            memory_limit_mb: (LakeSettings::DEFAULT_MEMORY_LIMIT_BYTES >> 20) as u64,
            chunk_events: LakeSettings::DEFAULT_CHUNK_EVENTS,
        }
    }
}

/// Flags given on the command line; each one set overrides the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub node_id: Option<u64>,
    pub brokers: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub lake: Option<PathBuf>,
    pub demo: bool,
}

/// The cluster this node belongs to (one member when the file has no `[cluster]`).
#[derive(Clone)]
pub struct ClusterConfig {
    /// Every member's id and HTTP address.
    pub members: BTreeMap<u64, String>,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: u64,
    pub failover_after_ms: u64,
    /// The node-to-node token; `None` only in demo mode or for a lone node.
    pub token: Option<String>,
}

/// A validated node configuration. Its `Debug` never shows a secret or token.
#[derive(Clone)]
pub struct NodeConfig {
    pub node_id: u64,
    pub data_dir: PathBuf,
    pub demo: bool,
    pub user_key_secret: Vec<u8>,
    pub kafka: KafkaSettings,
    pub ingest: IngestSettings,
    pub restart: RestartPolicy,
    pub http_listen: SocketAddr,
    pub admin_token: Option<String>,
    pub metadata: PathBuf,
    pub jobs: JobSchedule,
    /// Threads of the runtime lakehouse jobs run on, apart from ingest.
    pub job_threads: usize,
    pub lake_dir: PathBuf,
    pub live_retention: Duration,
    pub cluster: ClusterConfig,
}

impl NodeConfig {
    pub fn lake_dir(&self) -> PathBuf {
        self.lake_dir.clone()
    }

    /// Where this node keeps its Raft log, vote and snapshots.
    pub fn raft_dir(&self) -> PathBuf {
        self.data_dir.join("raft")
    }
}

const REDACTED: &str = "<redacted>";

// Destructured without `..`, so that a new field cannot skip this decision.
impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let NodeConfig {
            node_id,
            data_dir,
            demo,
            user_key_secret: _,
            kafka,
            ingest,
            restart,
            http_listen,
            admin_token,
            metadata,
            jobs,
            job_threads,
            lake_dir,
            live_retention,
            cluster,
        } = self;
        f.debug_struct("NodeConfig")
            .field("node_id", node_id)
            .field("data_dir", data_dir)
            .field("demo", demo)
            .field("user_key_secret", &REDACTED)
            .field("kafka", kafka)
            .field("ingest", ingest)
            .field("restart", restart)
            .field("http_listen", http_listen)
            .field("admin_token", &admin_token.as_ref().map(|_| REDACTED))
            .field("metadata", metadata)
            .field("jobs", jobs)
            .field("job_threads", job_threads)
            .field("lake_dir", lake_dir)
            .field("live_retention", live_retention)
            .field("cluster", cluster)
            .finish()
    }
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ClusterConfig {
            members,
            heartbeat_ms,
            election_timeout_ms,
            failover_after_ms,
            token,
        } = self;
        f.debug_struct("ClusterConfig")
            .field("members", members)
            .field("heartbeat_ms", heartbeat_ms)
            .field("election_timeout_ms", election_timeout_ms)
            .field("failover_after_ms", failover_after_ms)
            .field("token", &token.as_ref().map(|_| REDACTED))
            .finish()
    }
}

/// Secrets read from the environment (passed in so tests need not touch the
/// process environment).
#[derive(Default, Clone)]
pub struct EnvSecrets {
    /// [`SECRET_ENV`]
    pub user_key_secret: Option<String>,
    /// [`CLUSTER_TOKEN_ENV`]
    pub cluster_token: Option<String>,
    /// [`ADMIN_TOKEN_ENV`]
    pub admin_token: Option<String>,
}

impl EnvSecrets {
    pub fn from_process() -> EnvSecrets {
        EnvSecrets {
            user_key_secret: std::env::var(SECRET_ENV).ok(),
            cluster_token: std::env::var(CLUSTER_TOKEN_ENV).ok(),
            admin_token: std::env::var(ADMIN_TOKEN_ENV).ok(),
        }
    }
}

// Secrets never reach a log through Debug.
impl std::fmt::Debug for EnvSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnvSecrets { .. }")
    }
}

/// Reads, overrides and validates a config file.
pub fn load_config(
    path: &Path,
    overrides: &Overrides,
    env: EnvSecrets,
) -> Result<NodeConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let raw: RawConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    validate(raw, overrides, env)
}

fn validate(
    raw: RawConfig,
    overrides: &Overrides,
    env: EnvSecrets,
) -> Result<NodeConfig, ConfigError> {
    let EnvSecrets {
        user_key_secret: secret_from_env,
        cluster_token: cluster_token_from_env,
        admin_token: admin_token_from_env,
    } = env;
    let invalid = |key, reason: &str| ConfigError::Invalid {
        key,
        reason: reason.to_string(),
    };
    // Errors name the flag when the value came from one, else the file's key.
    let node_id = overrides.node_id.or(raw.node.id).unwrap_or(1);
    if node_id == 0 {
        let key = if overrides.node_id.is_some() {
            "--node-id"
        } else {
            "node.id"
        };
        return Err(invalid(key, "must be at least 1"));
    }
    let brokers = overrides.brokers.clone().unwrap_or(raw.kafka.brokers);
    if !brokers_are_valid(&brokers) {
        return Err(ConfigError::Invalid {
            key: if overrides.brokers.is_some() {
                "--brokers"
            } else {
                "kafka.brokers"
            },
            reason: format!("must be HOST:PORT[,HOST:PORT...], got {brokers:?}"),
        });
    }
    for (key, topic) in [
        ("kafka.input-topic", &raw.kafka.input_topic),
        ("kafka.clean-topic", &raw.kafka.clean_topic),
        ("kafka.dlq-topic", &raw.kafka.dlq_topic),
    ] {
        if !is_kafka_topic_name(topic) {
            return Err(ConfigError::Invalid {
                key,
                reason: format!(
                    "must be a Kafka topic name (1 to 249 of [a-zA-Z0-9._-], not \".\" or \"..\"), \
                     got {topic:?}"
                ),
            });
        }
    }
    if raw.kafka.input_topic == raw.kafka.clean_topic
        || raw.kafka.input_topic == raw.kafka.dlq_topic
    {
        return Err(invalid(
            "kafka.input-topic",
            "must differ from the clean and dead-letter topics",
        ));
    }
    // Dead letters carry raw user ids, which `clean-events` promises never to hold.
    if raw.kafka.clean_topic == raw.kafka.dlq_topic {
        return Err(invalid(
            "kafka.dlq-topic",
            "must differ from kafka.clean-topic",
        ));
    }
    if raw.node.demo.is_some() {
        return Err(invalid(
            "node.demo",
            "demo mode is chosen only with the --demo flag, never by a config file",
        ));
    }
    within(
        "kafka.default-partitions",
        raw.kafka.default_partitions,
        1,
        10_000,
    )?;
    within(
        "kafka.replication-factor",
        raw.kafka.replication_factor,
        1,
        i16::MAX as i32,
    )?;
    within(
        "kafka.dlq-retention-hours",
        raw.kafka.dlq_retention_hours,
        1,
        MAX_HOURS,
    )?;
    within(
        "lake.commit-max-events",
        raw.lake.commit_max_events,
        1,
        10_000_000,
    )?;
    within(
        "lake.commit-max-bytes",
        raw.lake.commit_max_bytes,
        1 << 20,
        1 << 30,
    )?;
    within(
        "lake.commit-interval-ms",
        raw.lake.commit_interval_ms,
        1,
        600_000,
    )?;
    // The lower bounds are the contract's de-duplication window.
    within(
        "dedup.window-events",
        raw.dedup.window_events,
        1_000_000,
        100_000_000,
    )?;
    within("dedup.window-hours", raw.dedup.window_hours, 24, 24 * 366)?;
    not_below(
        ("dedup.max-ids", raw.dedup.max_ids as u64),
        ("dedup.window-events", raw.dedup.window_events as u64),
    )?;
    within("dedup.max-ids", raw.dedup.max_ids, 1_000_000, 400_000_000)?;
    within(
        "node.restart-backoff-min-ms",
        raw.node.restart_backoff_min_ms,
        1,
        3_600_000,
    )?;
    not_below(
        (
            "node.restart-backoff-max-ms",
            raw.node.restart_backoff_max_ms,
        ),
        (
            "node.restart-backoff-min-ms",
            raw.node.restart_backoff_min_ms,
        ),
    )?;
    within(
        "node.restart-backoff-max-ms",
        raw.node.restart_backoff_max_ms,
        1,
        3_600_000,
    )?;
    within(
        "jobs.vacuum-retention-hours",
        raw.jobs.vacuum_retention_hours,
        MIN_VACUUM_RETENTION_HOURS as u64,
        MAX_HOURS,
    )?;
    within("jobs.max-retries", raw.jobs.max_retries, 0, 100)?;
    within(
        "jobs.retry-backoff-ms",
        raw.jobs.retry_backoff_ms,
        1,
        3_600_000,
    )?;
    within("jobs.threads", raw.jobs.threads, 1, 64)?;
    within(
        "jobs.memory-limit-mb",
        raw.jobs.memory_limit_mb,
        64,
        1 << 20,
    )?;
    within(
        "jobs.chunk-events",
        raw.jobs.chunk_events,
        1_000,
        1_000_000_000,
    )?;
    if raw.cluster.is_some() {
        // Silently ignored, they would leave a member listening or keeping
        // its Raft state somewhere other than the file says.
        for (key, present, instead) in [
            (
                "node.http-listen",
                raw.node.http_listen.is_some(),
                "cluster.node.addr",
            ),
            (
                "node.data-dir",
                raw.node.data_dir.is_some(),
                "cluster.node.data-dir (or --data-dir)",
            ),
        ] {
            if present {
                return Err(ConfigError::Invalid {
                    key,
                    reason: format!(
                        "has no effect beside [cluster]: each member's comes from {instead}; \
                         remove it"
                    ),
                });
            }
        }
    }
    let http_listen_text = raw.node.http_listen.as_deref().unwrap_or("127.0.0.1:8080");
    let http_listen: SocketAddr = http_listen_text.parse().map_err(|_| ConfigError::Invalid {
        key: "node.http-listen",
        reason: format!("must be IP:PORT, e.g. 127.0.0.1:8080, got {http_listen_text:?}"),
    })?;
    let jobs = &raw.jobs;
    for (key, value) in [
        ("jobs.enrich-interval-s", jobs.enrich_interval_s),
        ("jobs.gold-interval-s", jobs.gold_interval_s),
        ("jobs.compact-interval-s", jobs.compact_interval_s),
        ("jobs.vacuum-interval-s", jobs.vacuum_interval_s),
    ] {
        within(key, value, 1, 366 * 86_400)?;
    }
    let demo = overrides.demo;
    within(
        "live.retention-hours",
        raw.live.retention_hours,
        1,
        24 * 366,
    )?;
    let admin_token = read_token(admin_token_from_env, raw.node.admin_token_file.as_deref())?;
    // A config without [cluster] is a one-member cluster on node.http-listen.
    let (members, member_data_dir, timings, cluster_token_file) = match &raw.cluster {
        None => (
            BTreeMap::from([(node_id, http_listen.to_string())]),
            None,
            (
                default_heartbeat_ms(),
                default_election_timeout_ms(),
                default_failover_after_ms(),
            ),
            None,
        ),
        Some(cluster) => {
            // Started without saying which member it is, a process would run
            // as node 1 beside the real one.
            if cluster.node.len() > 1 && overrides.node_id.is_none() && raw.node.id.is_none() {
                return Err(ConfigError::Invalid {
                    key: "node.id",
                    reason: format!(
                        "the cluster lists {} members: say which one this process is with \
                         --node-id N",
                        cluster.node.len()
                    ),
                });
            }
            let mut members = BTreeMap::new();
            let mut addrs: BTreeMap<SocketAddr, u64> = BTreeMap::new();
            let mut own_data_dir = None;
            for member in &cluster.node {
                if member.id == 0 {
                    return Err(invalid("cluster.node.id", "must be at least 1"));
                }
                let Ok(addr) = member.addr.parse::<SocketAddr>() else {
                    return Err(ConfigError::Invalid {
                        key: "cluster.node.addr",
                        reason: format!("{:?} of node {} must be IP:PORT", member.addr, member.id),
                    });
                };
                if cluster.node.len() > 1 && (addr.ip().is_unspecified() || addr.port() == 0) {
                    return Err(ConfigError::Invalid {
                        key: "cluster.node.addr",
                        reason: format!(
                            "{:?} of node {}: the other members dial this address, so it needs \
                             a real IP and port (not {}, not port 0)",
                            member.addr,
                            member.id,
                            if addr.is_ipv4() { "0.0.0.0" } else { "::" }
                        ),
                    });
                }
                if let Some(other) = addrs.insert(addr, member.id) {
                    return Err(ConfigError::Invalid {
                        key: "cluster.node.addr",
                        reason: format!(
                            "nodes {other} and {} share the address {}",
                            member.id, member.addr
                        ),
                    });
                }
                if members.insert(member.id, member.addr.clone()).is_some() {
                    return Err(ConfigError::Invalid {
                        key: "cluster.node.id",
                        reason: format!("node {} is listed twice", member.id),
                    });
                }
                if member.id == node_id {
                    own_data_dir = Some(
                        member
                            .data_dir
                            .clone()
                            .unwrap_or_else(|| PathBuf::from(format!("data/node-{node_id}"))),
                    );
                }
            }
            if own_data_dir.is_none() {
                return Err(ConfigError::Invalid {
                    key: "cluster.node",
                    reason: format!(
                        "node {node_id} is not listed (members: {:?}); start it with \
                         --node-id and one of those ids",
                        members.keys().collect::<Vec<_>>()
                    ),
                });
            }
            // Below 10 ms the Raft timeouts derived from these two settings
            // can coincide, which Raft refuses at startup.
            if cluster.heartbeat_ms < 10 || cluster.heartbeat_ms > 60_000 {
                return Err(invalid("cluster.heartbeat-ms", "must be within 10..=60000"));
            }
            // Followers must hear several heartbeats within an election timeout.
            if cluster.election_timeout_ms < 3 * cluster.heartbeat_ms
                || cluster.election_timeout_ms > 600_000
            {
                return Err(invalid(
                    "cluster.election-timeout-ms",
                    "must be at least 3 x cluster.heartbeat-ms and at most 600000",
                ));
            }
            if cluster.failover_after_ms < cluster.heartbeat_ms
                || cluster.failover_after_ms > 3_600_000
            {
                return Err(invalid(
                    "cluster.failover-after-ms",
                    "must be at least cluster.heartbeat-ms and at most 3600000",
                ));
            }
            (
                members,
                own_data_dir,
                (
                    cluster.heartbeat_ms,
                    cluster.election_timeout_ms,
                    cluster.failover_after_ms,
                ),
                cluster.token_file.clone(),
            )
        }
    };
    let listen_addr = members[&node_id].clone();
    let http_listen: SocketAddr = listen_addr.parse().expect("checked above");
    let cluster_token = read_token(cluster_token_from_env, cluster_token_file.as_deref())?;
    let exposed = !http_listen.ip().is_loopback();
    if !demo && exposed && admin_token.is_none() {
        return Err(ConfigError::MissingAdminToken { addr: http_listen });
    }
    // Without a cluster token `/raft/*` takes commands (checkpoints, owners,
    // Raft entries) from anyone who reaches the address: an admin token alone
    // would guard nothing.
    if !demo && (members.len() > 1 || exposed) && cluster_token.is_none() {
        return Err(ConfigError::MissingClusterToken);
    }
    let data_dir = overrides
        .data_dir
        .clone()
        .or(member_data_dir)
        .or(raw.node.data_dir)
        .unwrap_or_else(|| PathBuf::from("data/node-1"));
    if members.len() > 1 && overrides.lake.is_none() && raw.lake.uri.is_none() {
        return Err(ConfigError::UnsharedLake {
            members: members.len(),
        });
    }
    let lake_dir = overrides
        .lake
        .clone()
        .or(raw.lake.uri.clone())
        .unwrap_or_else(|| data_dir.join("lake"));
    let user_key_secret = resolve_secret(
        secret_from_env,
        raw.node.user_key_secret_file.as_deref(),
        demo,
    )?;

    Ok(NodeConfig {
        node_id,
        data_dir,
        lake_dir,
        live_retention: Duration::from_secs(raw.live.retention_hours * 3600),
        cluster: ClusterConfig {
            members,
            heartbeat_ms: timings.0,
            election_timeout_ms: timings.1,
            failover_after_ms: timings.2,
            token: cluster_token,
        },
        demo,
        user_key_secret,
        kafka: KafkaSettings {
            brokers,
            input_topic: raw.kafka.input_topic,
            clean_topic: raw.kafka.clean_topic,
            dlq_topic: raw.kafka.dlq_topic,
            consumer_group: raw.kafka.consumer_group,
            default_partitions: raw.kafka.default_partitions,
            replication_factor: raw.kafka.replication_factor,
            on_missing_offsets: match raw.kafka.on_missing_offsets {
                RawOnMissingOffsets::Fail => OnMissingOffsets::Fail,
                RawOnMissingOffsets::ResumeAtEarliest => OnMissingOffsets::ResumeAtEarliest,
            },
            dlq_retention: Duration::from_secs(raw.kafka.dlq_retention_hours * 3600),
        },
        ingest: IngestSettings {
            commit_max_events: raw.lake.commit_max_events,
            commit_max_bytes: raw.lake.commit_max_bytes,
            commit_interval: Duration::from_millis(raw.lake.commit_interval_ms),
            dedup: DedupSettings {
                window_events: raw.dedup.window_events,
                window: Duration::from_secs(raw.dedup.window_hours * 3600),
                max_ids: raw.dedup.max_ids,
            },
        },
        restart: RestartPolicy {
            min_backoff: Duration::from_millis(raw.node.restart_backoff_min_ms),
            max_backoff: Duration::from_millis(raw.node.restart_backoff_max_ms),
        },
        http_listen,
        admin_token,
        metadata: raw.node.metadata,
        jobs: JobSchedule {
            enrich_every: Duration::from_secs(jobs.enrich_interval_s),
            gold_every: Duration::from_secs(jobs.gold_interval_s),
            compact_every: Duration::from_secs(jobs.compact_interval_s),
            vacuum_every: Duration::from_secs(jobs.vacuum_interval_s),
            vacuum_retention: Duration::from_secs(jobs.vacuum_retention_hours * 3600),
            max_retries: jobs.max_retries,
            retry_backoff: Duration::from_millis(jobs.retry_backoff_ms),
            lake: LakeSettings {
                memory_limit_bytes: (jobs.memory_limit_mb as usize) << 20,
                chunk_events: jobs.chunk_events,
            },
        },
        job_threads: jobs.threads,
    })
}

/// `value` within `min..=max`, else an error naming `key`, the range and the
/// value. Upper bounds keep every duration and size far from overflow, and
/// refuse values that can only be typing mistakes.
/// `value` of `key` is at least that of `other`, a setting it depends on.
fn not_below(
    (key, value): (&'static str, u64),
    (other, bound): (&'static str, u64),
) -> Result<(), ConfigError> {
    if value >= bound {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        key,
        reason: format!("must be at least {other} ({bound}), got {value}"),
    })
}

fn within<T: PartialOrd + std::fmt::Display>(
    key: &'static str,
    value: T,
    min: T,
    max: T,
) -> Result<(), ConfigError> {
    if min <= value && value <= max {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key,
            reason: format!("must be within {min}..={max}, got {value}"),
        })
    }
}

/// Kafka's rule for topic names: brokers refuse anything else when the node
/// creates the topic, which would read as an unreachable broker.
pub fn is_kafka_topic_name(topic: &str) -> bool {
    (1..=249).contains(&topic.len())
        && topic != "."
        && topic != ".."
        && topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// `HOST:PORT[,HOST:PORT...]` with a host and a port (1-65535) in every part.
pub fn brokers_are_valid(brokers: &str) -> bool {
    brokers.split(',').all(|broker| {
        broker.trim().rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|port| port > 0)
        })
    })
}

/// A token from the environment, else from a file (trimmed); an empty file is refused.
fn read_token(
    from_env: Option<String>,
    file: Option<&Path>,
) -> Result<Option<String>, ConfigError> {
    if let Some(token) = from_env.filter(|t| !t.trim().is_empty()) {
        return Ok(Some(token.trim().to_string()));
    }
    let Some(file) = file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::ReadNamedFile {
        what: "token file",
        path: file.display().to_string(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ConfigError::EmptyToken {
            path: file.display().to_string(),
        });
    }
    Ok(Some(token.to_string()))
}

/// The environment wins over the file; demo mode falls back to a fixed secret.
fn resolve_secret(
    from_env: Option<String>,
    file: Option<&Path>,
    demo: bool,
) -> Result<Vec<u8>, ConfigError> {
    // A blank variable counts as unset, as for the tokens.
    match (from_env.filter(|s| !s.trim().is_empty()), file) {
        (Some(secret), _) => long_enough(secret.into_bytes(), SECRET_ENV, "it"),
        (None, Some(file)) => {
            let text =
                std::fs::read_to_string(file).map_err(|source| ConfigError::ReadNamedFile {
                    what: "user-key secret file",
                    path: file.display().to_string(),
                    source,
                })?;
            let secret = text.trim_end_matches(['\n', '\r']).as_bytes().to_vec();
            long_enough(
                secret,
                "node.user-key-secret-file",
                &file.display().to_string(),
            )
        }
        (None, None) if demo => Ok(DEMO_SECRET.as_bytes().to_vec()),
        (None, None) => Err(ConfigError::MissingSecret),
    }
}

/// The secret from `source` (named by `key`), unless it is too short to be one.
fn long_enough(secret: Vec<u8>, key: &'static str, source: &str) -> Result<Vec<u8>, ConfigError> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(ConfigError::Invalid {
            key,
            reason: format!(
                "{source} holds {} bytes; the secret must be at least {MIN_SECRET_BYTES}",
                secret.len()
            ),
        });
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-test-secret-of-enough-bytes";

    fn env(secret: &str) -> EnvSecrets {
        EnvSecrets {
            user_key_secret: Some(secret.into()),
            ..EnvSecrets::default()
        }
    }

    fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, text).unwrap();
        load_config(&path, &Overrides::default(), env(SECRET))
    }

    #[test]
    fn shipped_configs_are_valid() {
        let dir = std::path::PathBuf::from(
            std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
        )
        .join("../cluster-config");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let env = EnvSecrets {
                    cluster_token: Some("token".into()),
                    ..env(SECRET)
                };
                // As the scripts start them: every member told its id.
                let first = Overrides {
                    node_id: Some(1),
                    ..Overrides::default()
                };
                load_config(&path, &first, env)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
        }
    }

    #[test]
    fn an_unknown_key_is_named() {
        let error = parse("[lake]\ncommit-max-event = 10\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("unknown field `commit-max-event`"),
            "{error}"
        );
        let error = parse("[lakes]\n").unwrap_err().to_string();
        assert!(error.contains("unknown field `lakes`"), "{error}");
    }

    #[test]
    fn a_bad_value_is_named() {
        let error = parse("[lake]\ncommit-max-events = \"many\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("commit-max-events"), "{error}");
        let error = parse("[kafka]\nbrokers = \"localhost\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("kafka.brokers"), "{error}");
        let error = parse("[dedup]\nwindow-events = 10\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("dedup.window-events"), "{error}");
        // The message gives the bad value and the range it must be in.
        for (text, key, says) in [
            ("[kafka]\nbrokers = \"x:\"\n", "kafka.brokers", "got \"x:\""),
            ("[kafka]\nbrokers = \"a:1,:2\"\n", "kafka.brokers", "got"),
            (
                "[kafka]\ndefault-partitions = -3\n",
                "kafka.default-partitions",
                "got -3",
            ),
            (
                "[dedup]\nwindow-events = 200000000\n",
                "dedup.window-events",
                "1000000..=100000000",
            ),
            (
                "[node]\nrestart-backoff-min-ms = 0\n",
                "node.restart-backoff-min-ms",
                "got 0",
            ),
            (
                "[node]\nrestart-backoff-min-ms = 900\nrestart-backoff-max-ms = 800\n",
                "node.restart-backoff-max-ms",
                "at least node.restart-backoff-min-ms (900), got 800",
            ),
            (
                "[dedup]\nwindow-events = 2000000\nmax-ids = 1500000\n",
                "dedup.max-ids",
                "at least dedup.window-events (2000000), got 1500000",
            ),
            (
                "[node]\nhttp-listen = \"localhost:80\"\n",
                "node.http-listen",
                "got \"localhost:80\"",
            ),
            (
                "[live]\nretention-hours = 0\n",
                "live.retention-hours",
                "got 0",
            ),
            (
                "[kafka]\nreplication-factor = 0\n",
                "kafka.replication-factor",
                "got 0",
            ),
            (
                "[kafka]\ninput-topic = \".\"\n",
                "kafka.input-topic",
                "got \".\"",
            ),
            (
                "[kafka]\ndlq-topic = \"a b\"\n",
                "kafka.dlq-topic",
                "got \"a b\"",
            ),
        ] {
            let error = parse(text).unwrap_err().to_string();
            assert!(
                error.contains(key) && error.contains(says),
                "{text}: {error}"
            );
        }
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "[node]\nid = 3\n[kafka]\nbrokers = \"a:1\"\n").unwrap();
        let overrides = Overrides {
            node_id: Some(7),
            brokers: Some("b:2".into()),
            data_dir: Some("/tmp/x".into()),
            lake: None,
            demo: false,
        };
        let config = load_config(&path, &overrides, env(SECRET)).unwrap();
        assert_eq!(config.node_id, 7);
        assert_eq!(config.kafka.brokers, "b:2");
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn refuses_to_start_without_a_secret_unless_demo() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "").unwrap();
        let error = load_config(&path, &Overrides::default(), EnvSecrets::default()).unwrap_err();
        assert!(matches!(error, ConfigError::MissingSecret));
        let demo = Overrides {
            demo: true,
            ..Overrides::default()
        };
        assert!(
            load_config(&path, &demo, EnvSecrets::default())
                .unwrap()
                .demo
        );
        let short = load_config(&path, &Overrides::default(), env("short"));
        let error = short.unwrap_err().to_string();
        assert!(
            error.contains(SECRET_ENV) && error.contains("holds 5 bytes"),
            "{error}"
        );
        // A blank variable is unset, as for the tokens.
        let blank = load_config(&path, &Overrides::default(), env("   "));
        assert!(matches!(blank.unwrap_err(), ConfigError::MissingSecret));
        // A short secret file is named with its size.
        let secret_file = dir.path().join("secret");
        std::fs::write(&secret_file, "short\n").unwrap();
        let config = format!("[node]\nuser-key-secret-file = {:?}\n", secret_file);
        std::fs::write(&path, config).unwrap();
        let error = load_config(&path, &Overrides::default(), EnvSecrets::default())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("node.user-key-secret-file") && error.contains("holds 5 bytes"),
            "{error}"
        );
    }

    const THREE: &str = r#"
[cluster]
failover-after-ms = 3000
[[cluster.node]]
id = 1
addr = "127.0.0.1:9101"
[[cluster.node]]
id = 2
addr = "127.0.0.1:9102"
data-dir = "/srv/two"
[lake]
uri = "/srv/lake"
"#;

    fn load(text: &str, overrides: Overrides, env: EnvSecrets) -> Result<NodeConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.toml");
        std::fs::write(&path, text).unwrap();
        load_config(&path, &overrides, env)
    }

    #[test]
    fn a_cluster_member_listens_on_its_addr_and_shares_the_lake() {
        let env = EnvSecrets {
            cluster_token: Some("t0ken".into()),
            ..env(SECRET)
        };
        let two = Overrides {
            node_id: Some(2),
            ..Overrides::default()
        };
        let config = load(THREE, two, env.clone()).unwrap();
        assert_eq!(config.http_listen.to_string(), "127.0.0.1:9102");
        assert_eq!(config.data_dir, PathBuf::from("/srv/two"));
        assert_eq!(config.lake_dir(), PathBuf::from("/srv/lake"));
        assert_eq!(config.cluster.members.len(), 2);
        assert_eq!(config.cluster.failover_after_ms, 3000);
        assert_eq!(config.cluster.heartbeat_ms, 250);
        let one = Overrides {
            node_id: Some(1),
            data_dir: Some("/x".into()),
            ..Overrides::default()
        };
        let config = load(THREE, one.clone(), env.clone()).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/x"), "--data-dir wins");
        // Timings Raft itself would refuse at startup are refused here, by key.
        for (timings, key) in [
            (
                "heartbeat-ms = 1\nelection-timeout-ms = 3",
                "cluster.heartbeat-ms",
            ),
            (
                "heartbeat-ms = 100\nelection-timeout-ms = 250",
                "cluster.election-timeout-ms",
            ),
        ] {
            let text = THREE.replace("[cluster]\n", &format!("[cluster]\n{timings}\n"));
            let error = load(&text, one.clone(), env.clone())
                .unwrap_err()
                .to_string();
            assert!(error.contains(key), "{error}");
        }
        // Keys a member takes from its [[cluster.node]] are refused under
        // [node], rather than ignored.
        for (key, line) in [
            ("node.http-listen", "http-listen = \"127.0.0.1:9\""),
            ("node.data-dir", "data-dir = \"/y\""),
        ] {
            let text = format!("{THREE}[node]\n{line}\n");
            let error = load(&text, one.clone(), env.clone())
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(key) && error.contains("no effect beside [cluster]"),
                "{error}"
            );
        }
        let nine = Overrides {
            node_id: Some(9),
            ..Overrides::default()
        };
        let error = load(THREE, nine, env).unwrap_err().to_string();
        assert!(error.contains("node 9 is not listed"), "{error}");
    }

    #[test]
    fn a_member_must_be_told_its_id_and_have_an_address_of_its_own() {
        let env = EnvSecrets {
            cluster_token: Some("t0ken".into()),
            ..env(SECRET)
        };
        let error = load(THREE, Overrides::default(), env.clone())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("lists 2 members") && error.contains("--node-id"),
            "{error}"
        );
        let in_file = format!("[node]\nid = 2\n{THREE}");
        assert_eq!(
            load(&in_file, Overrides::default(), env.clone())
                .unwrap()
                .node_id,
            2
        );
        let one = || Overrides {
            node_id: Some(1),
            ..Overrides::default()
        };
        let shared = THREE.replace("127.0.0.1:9102", "127.0.0.1:9101");
        let error = load(&shared, one(), env.clone()).unwrap_err().to_string();
        assert!(
            error.contains("nodes 1 and 2 share the address 127.0.0.1:9101"),
            "{error}"
        );
        for addr in ["0.0.0.0:9102", "127.0.0.1:0", "[::]:9102"] {
            let unreachable = THREE.replace("127.0.0.1:9102", addr);
            let error = load(&unreachable, one(), env.clone())
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("needs a real IP and port"),
                "{addr}: {error}"
            );
        }
    }

    #[test]
    fn a_cluster_without_a_shared_lake_is_refused() {
        let unshared = THREE.replace("[lake]\nuri = \"/srv/lake\"\n", "");
        assert_ne!(unshared, THREE);
        let demo = || Overrides {
            node_id: Some(2),
            demo: true,
            ..Overrides::default()
        };
        let error = load(&unshared, demo(), env(SECRET)).unwrap_err();
        assert!(
            matches!(error, ConfigError::UnsharedLake { members: 2 }),
            "{error}"
        );
        assert!(error.to_string().contains("lake.uri"), "{error}");
        let with_flag = Overrides {
            lake: Some("/srv/lake".into()),
            ..demo()
        };
        let config = load(&unshared, with_flag, env(SECRET)).unwrap();
        assert_eq!(config.lake_dir(), PathBuf::from("/srv/lake"));
    }

    #[test]
    fn tokens_are_required_outside_demo_mode() {
        let one = || Overrides {
            node_id: Some(1),
            ..Overrides::default()
        };
        let error = load(THREE, one(), env(SECRET)).unwrap_err();
        assert!(matches!(error, ConfigError::MissingClusterToken), "{error}");
        let demo = Overrides {
            demo: true,
            ..one()
        };
        assert!(load(THREE, demo, env(SECRET)).is_ok());

        let exposed = "[node]\nhttp-listen = \"0.0.0.0:8080\"\n";
        let error = load(exposed, Overrides::default(), env(SECRET)).unwrap_err();
        assert!(
            matches!(error, ConfigError::MissingAdminToken { .. }),
            "{error}"
        );
        let admin_only = EnvSecrets {
            admin_token: Some("admin".into()),
            ..env(SECRET)
        };
        let error = load(exposed, Overrides::default(), admin_only.clone()).unwrap_err();
        assert!(matches!(error, ConfigError::MissingClusterToken), "{error}");
        let with_tokens = EnvSecrets {
            cluster_token: Some("cluster".into()),
            ..admin_only
        };
        assert!(load(exposed, Overrides::default(), with_tokens).is_ok());

        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty-token");
        std::fs::write(&empty, "\n").unwrap();
        let text = format!(
            "[node]\nadmin-token-file = {:?}\n",
            empty.display().to_string()
        );
        let error = load(&text, Overrides::default(), env(SECRET)).unwrap_err();
        assert!(matches!(error, ConfigError::EmptyToken { .. }), "{error}");
    }

    #[test]
    fn values_that_would_overflow_or_are_unsafe_are_refused_by_name() {
        for (text, key) in [
            (
                "[dedup]\nwindow-hours = 9223372036854775807\n",
                "dedup.window-hours",
            ),
            (
                "[dedup]\nwindow-events = 9223372036854775807\n",
                "dedup.window-events",
            ),
            (
                "[jobs]\nvacuum-retention-hours = 9223372036854775807\n",
                "jobs.vacuum-retention-hours",
            ),
            (
                "[jobs]\nvacuum-retention-hours = 0\n",
                "jobs.vacuum-retention-hours",
            ),
            (
                "[jobs]\ngold-interval-s = 9223372036854775807\n",
                "jobs.gold-interval-s",
            ),
            (
                "[lake]\ncommit-interval-ms = 9223372036854775807\n",
                "lake.commit-interval-ms",
            ),
            ("[lake]\ncommit-max-bytes = 10\n", "lake.commit-max-bytes"),
            ("[jobs]\nthreads = 0\n", "jobs.threads"),
            ("[jobs]\nmemory-limit-mb = 8\n", "jobs.memory-limit-mb"),
            ("[jobs]\nchunk-events = 0\n", "jobs.chunk-events"),
            (
                "[kafka]\ndlq-retention-hours = 0\n",
                "kafka.dlq-retention-hours",
            ),
            (
                "[kafka]\ndefault-partitions = -3\n",
                "kafka.default-partitions",
            ),
            (
                "[node]\nrestart-backoff-max-ms = 9223372036854775807\n",
                "node.restart-backoff-max-ms",
            ),
            (
                "[kafka]\nclean-topic = \"x\"\ndlq-topic = \"x\"\n",
                "kafka.dlq-topic",
            ),
        ] {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.contains(key), "{text}: {error}");
        }
    }

    #[test]
    fn on_missing_offsets_and_dlq_retention_are_read() {
        let config = parse(
            "[kafka]\non-missing-offsets = \"resume-at-earliest\"\ndlq-retention-hours = 24\n",
        )
        .unwrap();
        assert_eq!(
            config.kafka.on_missing_offsets,
            OnMissingOffsets::ResumeAtEarliest
        );
        assert_eq!(config.kafka.dlq_retention, Duration::from_secs(86_400));
        let defaults = parse("").unwrap();
        assert_eq!(defaults.kafka.on_missing_offsets, OnMissingOffsets::Fail);
        assert_eq!(
            defaults.kafka.dlq_retention,
            Duration::from_secs(168 * 3600)
        );
        let error = parse("[kafka]\non-missing-offsets = \"skip\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("on-missing-offsets"), "{error}");
    }

    #[test]
    fn demo_mode_comes_only_from_the_flag() {
        let error = ConfigError::MissingSecret.to_string();
        assert!(error.contains("--demo"));
        let refused = load(
            "[node]\ndemo = true\n",
            Overrides::default(),
            EnvSecrets::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            refused.contains("node.demo") && refused.contains("--demo"),
            "{refused}"
        );
    }

    #[test]
    fn debug_output_never_shows_a_secret_or_token() {
        let env = EnvSecrets {
            user_key_secret: Some("user-key-secret-value-0123".into()),
            cluster_token: Some("cluster-token-value".into()),
            admin_token: Some("admin-token-value".into()),
        };
        let config = load(
            THREE,
            Overrides {
                node_id: Some(1),
                ..Overrides::default()
            },
            env,
        )
        .unwrap();
        let text = format!("{config:?} {config:#?}");
        for secret in [
            "user-key-secret-value-0123",
            "cluster-token-value",
            "admin-token-value",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert!(text.contains("<redacted>"));
    }
}
