//! Node configuration: a TOML file with `[node]`, `[kafka]`, `[lake]`, `[dedup]` and `[jobs]`
//! sections, read into a raw serde shape (unknown keys refused) and validated into
//! [`NodeConfig`]. Command-line flags override the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use std::net::SocketAddr;

use streamreel_actors::coordinator::job::JobSchedule;
use streamreel_actors::{DedupSettings, IngestSettings, KafkaSettings, RestartPolicy};

/// The environment variable that carries the pseudonymisation secret.
pub const SECRET_ENV: &str = "STREAMREEL_USER_KEY_SECRET";
/// Used only in demo mode, so a demo needs no setup; never for real data.
const DEMO_SECRET: &str = "streamreel-demo-secret-not-for-production";
const MIN_SECRET_BYTES: usize = 16;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
struct RawNode {
    id: u64,
    data_dir: PathBuf,
    demo: bool,
    user_key_secret_file: Option<PathBuf>,
    restart_backoff_min_ms: u64,
    restart_backoff_max_ms: u64,
    http_listen: String,
    admin_token_file: Option<PathBuf>,
    metadata: PathBuf,
}

impl Default for RawNode {
    fn default() -> Self {
        RawNode {
            id: 1,
            data_dir: PathBuf::from("data/node-1"),
            demo: false,
            user_key_secret_file: None,
            restart_backoff_min_ms: 200,
            restart_backoff_max_ms: 30_000,
            http_listen: "127.0.0.1:8080".into(),
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
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
struct RawLake {
    commit_max_events: usize,
    commit_interval_ms: u64,
}

impl Default for RawLake {
    fn default() -> Self {
        RawLake {
            commit_max_events: 20_000,
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
        }
    }
}

/// Flags given on the command line; each one set overrides the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub node_id: Option<u64>,
    pub brokers: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub demo: bool,
}

/// A validated node configuration.
#[derive(Debug, Clone)]
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
}

impl NodeConfig {
    pub fn lake_dir(&self) -> PathBuf {
        self.data_dir.join("lake")
    }
}

/// Reads, overrides and validates a config file. `secret_from_env` is the value
/// of [`SECRET_ENV`] (passed in so tests need not touch the process environment).
pub fn load_config(
    path: &Path,
    overrides: &Overrides,
    secret_from_env: Option<String>,
) -> Result<NodeConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let raw: RawConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    validate(raw, overrides, secret_from_env)
}

fn validate(
    raw: RawConfig,
    overrides: &Overrides,
    secret_from_env: Option<String>,
) -> Result<NodeConfig, ConfigError> {
    let invalid = |key, reason: &str| ConfigError::Invalid {
        key,
        reason: reason.to_string(),
    };
    let node_id = overrides.node_id.unwrap_or(raw.node.id);
    if node_id == 0 {
        return Err(invalid("node.id", "must be at least 1"));
    }
    let brokers = overrides.brokers.clone().unwrap_or(raw.kafka.brokers);
    if brokers.trim().is_empty() || brokers.split(',').any(|b| !b.contains(':')) {
        return Err(invalid("kafka.brokers", "must be HOST:PORT[,HOST:PORT...]"));
    }
    for (key, topic) in [
        ("kafka.input-topic", &raw.kafka.input_topic),
        ("kafka.clean-topic", &raw.kafka.clean_topic),
        ("kafka.dlq-topic", &raw.kafka.dlq_topic),
    ] {
        if topic.is_empty()
            || !topic
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(invalid(key, "must be a Kafka topic name ([a-zA-Z0-9._-]+)"));
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
    if raw.kafka.default_partitions < 1 {
        return Err(invalid("kafka.default-partitions", "must be at least 1"));
    }
    if raw.lake.commit_max_events == 0 {
        return Err(invalid("lake.commit-max-events", "must be at least 1"));
    }
    if raw.lake.commit_interval_ms == 0 {
        return Err(invalid("lake.commit-interval-ms", "must be at least 1"));
    }
    if raw.dedup.window_events < 1_000_000 {
        return Err(invalid(
            "dedup.window-events",
            "must be at least 1000000 (the contract's de-duplication window)",
        ));
    }
    if raw.dedup.window_hours < 24 {
        return Err(invalid(
            "dedup.window-hours",
            "must be at least 24 (the contract's de-duplication window)",
        ));
    }
    if raw.dedup.max_ids < raw.dedup.window_events {
        return Err(invalid(
            "dedup.max-ids",
            "must be at least dedup.window-events",
        ));
    }
    if raw.node.restart_backoff_min_ms == 0
        || raw.node.restart_backoff_max_ms < raw.node.restart_backoff_min_ms
    {
        return Err(invalid(
            "node.restart-backoff-max-ms",
            "backoff bounds must satisfy 0 < min <= max",
        ));
    }
    let http_listen: SocketAddr = raw
        .node
        .http_listen
        .parse()
        .map_err(|_| invalid("node.http-listen", "must be IP:PORT, e.g. 127.0.0.1:8080"))?;
    let jobs = &raw.jobs;
    for (key, value) in [
        ("jobs.enrich-interval-s", jobs.enrich_interval_s),
        ("jobs.gold-interval-s", jobs.gold_interval_s),
        ("jobs.compact-interval-s", jobs.compact_interval_s),
        ("jobs.vacuum-interval-s", jobs.vacuum_interval_s),
        ("jobs.retry-backoff-ms", jobs.retry_backoff_ms),
    ] {
        if value == 0 {
            return Err(invalid(key, "must be at least 1"));
        }
    }
    let admin_token = match &raw.node.admin_token_file {
        Some(file) => Some(
            std::fs::read_to_string(file)
                .map_err(|source| ConfigError::Read {
                    path: file.display().to_string(),
                    source,
                })?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let demo = overrides.demo || raw.node.demo;
    let user_key_secret = resolve_secret(
        secret_from_env,
        raw.node.user_key_secret_file.as_deref(),
        demo,
    )?;

    Ok(NodeConfig {
        node_id,
        data_dir: overrides.data_dir.clone().unwrap_or(raw.node.data_dir),
        demo,
        user_key_secret,
        kafka: KafkaSettings {
            brokers,
            input_topic: raw.kafka.input_topic,
            clean_topic: raw.kafka.clean_topic,
            dlq_topic: raw.kafka.dlq_topic,
            consumer_group: raw.kafka.consumer_group,
            default_partitions: raw.kafka.default_partitions,
        },
        ingest: IngestSettings {
            commit_max_events: raw.lake.commit_max_events,
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
        },
    })
}

/// The environment wins over the file; demo mode falls back to a fixed secret.
fn resolve_secret(
    from_env: Option<String>,
    file: Option<&Path>,
    demo: bool,
) -> Result<Vec<u8>, ConfigError> {
    let secret = match (from_env.filter(|s| !s.is_empty()), file) {
        (Some(secret), _) => secret.into_bytes(),
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
                path: file.display().to_string(),
                source,
            })?;
            text.trim_end_matches(['\n', '\r']).as_bytes().to_vec()
        }
        (None, None) if demo => DEMO_SECRET.as_bytes().to_vec(),
        (None, None) => return Err(ConfigError::MissingSecret),
    };
    if secret.len() < MIN_SECRET_BYTES {
        return Err(ConfigError::Invalid {
            key: "user-key secret",
            reason: format!("must be at least {MIN_SECRET_BYTES} bytes"),
        });
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-test-secret-of-enough-bytes";

    fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, text).unwrap();
        load_config(&path, &Overrides::default(), Some(SECRET.into()))
    }

    #[test]
    fn shipped_configs_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cluster-config");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                load_config(&path, &Overrides::default(), Some(SECRET.into()))
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
            demo: false,
        };
        let config = load_config(&path, &overrides, Some(SECRET.into())).unwrap();
        assert_eq!(config.node_id, 7);
        assert_eq!(config.kafka.brokers, "b:2");
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn refuses_to_start_without_a_secret_unless_demo() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "").unwrap();
        let error = load_config(&path, &Overrides::default(), None).unwrap_err();
        assert!(matches!(error, ConfigError::MissingSecret));
        let demo = Overrides {
            demo: true,
            ..Overrides::default()
        };
        assert!(load_config(&path, &demo, None).unwrap().demo);
        let short = load_config(&path, &Overrides::default(), Some("short".into()));
        assert!(short.unwrap_err().to_string().contains("at least 16 bytes"));
    }
}
