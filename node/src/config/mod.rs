//! Node configuration: a TOML file with `[node]`, `[kafka]`, `[lake]`, `[dedup]`, `[jobs]`,
//! `[live]` and `[cluster]` sections, read into a raw serde shape (unknown keys refused)
//! and validated into [`NodeConfig`]. Command-line flags override the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use std::net::SocketAddr;

use streamreel_actors::coordinator::job::JobSchedule;
use streamreel_actors::start_position::OnMissingOffsets;
use streamreel_actors::{DedupSettings, IngestSettings, KafkaSettings, RestartPolicy};
use streamreel_lake::LakeSettings;
use streamreel_lake::maintenance::MIN_VACUUM_RETENTION_HOURS;

mod raw;
mod secrets;
mod validate;

use raw::*;
pub use secrets::is_header_safe;
use secrets::{ReadFile, TokenSource, read_token, resolve_secret};
pub(crate) use validate::directory_path_problem;
use validate::validate;
pub use validate::{brokers_are_valid, is_kafka_topic_name};

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
/// The largest bronze batch a config may ask for: its checkpoint carries 17
/// bytes per event through Raft, which must reach the followers within a
/// heartbeat (3.4 MB here, ten times the default batch's).
const MAX_COMMIT_EVENTS: usize = 200_000;

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
    #[error(
        "the {which} token from {from} holds a character other than printable ASCII (space to \
         '~'): an HTTP header cannot carry it, so every request with it would be refused"
    )]
    TokenNotAscii { which: &'static str, from: String },
    #[error("environment variable {var} is set but is not UTF-8")]
    EnvNotUnicode { var: &'static str },
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
    /// The node-to-node token; `None` only in demo mode or for a lone node
    /// on a loopback address.
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
    /// The most (minute, video) counts the live aggregates keep.
    pub live_max_entries: usize,
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
            live_max_entries,
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
            .field("live_max_entries", live_max_entries)
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
    pub fn from_process() -> Result<EnvSecrets, ConfigError> {
        EnvSecrets::from_lookup(|name| std::env::var(name))
    }

    /// A variable that is set but not UTF-8 is an error, not unset: read as
    /// unset, a bad admin token would leave the admin API open and a bad
    /// secret would quietly lose to the secret file.
    fn from_lookup(
        lookup: impl Fn(&str) -> Result<String, std::env::VarError>,
    ) -> Result<EnvSecrets, ConfigError> {
        let read = |var: &'static str| match lookup(var) {
            Ok(value) => Ok(Some(value)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError::EnvNotUnicode { var }),
        };
        Ok(EnvSecrets {
            user_key_secret: read(SECRET_ENV)?,
            cluster_token: read(CLUSTER_TOKEN_ENV)?,
            admin_token: read(ADMIN_TOKEN_ENV)?,
        })
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
    validate(raw, overrides, env, &|file| std::fs::read(file))
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
                "[live]\nmax-entries = 9999\n",
                "live.max-entries",
                "got 9999",
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
            (
                "[node]\ndata-dir = \"~/streamreel\"\n",
                "node.data-dir",
                "only a shell expands",
            ),
            (
                "[lake]\nuri = \"file:///srv/lake\"\n",
                "lake.uri",
                "is a URL",
            ),
            (
                "[lake]\nuri = \"s3://bucket/lake\"\n",
                "lake.uri",
                "object stores are not supported",
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
    fn a_bad_file_value_is_refused_by_its_key_even_where_a_flag_overrides_it() {
        let overrides = Overrides {
            node_id: Some(2),
            brokers: Some("b:2".into()),
            data_dir: Some("/tmp/x".into()),
            lake: Some("/tmp/lake".into()),
            demo: true,
        };
        for (file, key) in [
            ("[node]\nid = 0\n", "node.id"),
            ("[kafka]\nbrokers = \"no-port\"\n", "kafka.brokers"),
            ("[node]\ndata-dir = \"~/data\"\n", "node.data-dir"),
            ("[lake]\nuri = \"file:///srv/lake\"\n", "lake.uri"),
            (
                "[[cluster.node]]\nid = 1\naddr = \"127.0.0.1:9101\"\ndata-dir = \"~/one\"\n\
                 [[cluster.node]]\nid = 2\naddr = \"127.0.0.1:9102\"\n",
                "cluster.node.data-dir",
            ),
        ] {
            match load(file, overrides.clone(), env(SECRET)) {
                Err(ConfigError::Invalid { key: named, .. }) => assert_eq!(named, key, "{file}"),
                other => panic!("{file}: {other:?}"),
            }
        }
        // Good file values under the same flags load, the flags winning.
        let config = load(
            "[node]\nid = 1\ndata-dir = \"/srv/one\"\n[kafka]\nbrokers = \"a:1\"\n",
            overrides,
            env(SECRET),
        )
        .unwrap();
        assert_eq!((config.node_id, config.kafka.brokers.as_str()), (2, "b:2"));
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
        // A secret file may hold any bytes, not only text, and then is taken
        // whole: a line break at its end is the secret's own.
        let binary: Vec<u8> = (0..=255u8).rev().take(32).chain(*b"\r\n").collect();
        std::fs::write(&secret_file, &binary).unwrap();
        let config = load_config(&path, &Overrides::default(), EnvSecrets::default()).unwrap();
        assert_eq!(config.user_key_secret, binary);
        // A text file loses its trailing line breaks.
        std::fs::write(&secret_file, "sixteen-bytes-or-more\r\n\n").unwrap();
        let config = load_config(&path, &Overrides::default(), EnvSecrets::default()).unwrap();
        assert_eq!(config.user_key_secret, b"sixteen-bytes-or-more");
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
        // A probe round slowed by a member that does not answer must not make
        // the others look dead: 2 x 250 + 800 ms at least.
        for (failover, accepted) in [(1299, false), (1300, true)] {
            let text = THREE.replace(
                "failover-after-ms = 3000",
                &format!("heartbeat-ms = 250\nfailover-after-ms = {failover}"),
            );
            match load(&text, one.clone(), env.clone()) {
                Ok(_) => assert!(accepted, "{failover} accepted"),
                Err(error) => assert!(
                    !accepted && error.to_string().contains("cluster.failover-after-ms"),
                    "{error}"
                ),
            }
        }
        for (kafka, key) in [
            ("consumer-group = \" \"", "kafka.consumer-group"),
            (
                "input-topic = \"video.events\"\nclean-topic = \"video_events\"",
                "kafka.input-topic",
            ),
            (
                "clean-topic = \"clean_events\"\ndlq-topic = \"clean.events\"",
                "kafka.dlq-topic",
            ),
        ] {
            let text = format!("{THREE}[kafka]\n{kafka}\n");
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
        let error = load(THREE, nine, env.clone()).unwrap_err().to_string();
        assert!(error.contains("node 9 is not listed"), "{error}");
        // A member started without the flag would run as the file's node 9.
        let text = format!("{THREE}[node]\nid = 9\n");
        let error = load(&text, one.clone(), env).unwrap_err().to_string();
        assert!(
            error.contains("node.id") && error.contains("9 is not a listed member"),
            "{error}"
        );
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
    fn secret_files_are_read_only_for_what_the_environment_does_not_give() {
        let text = "[node]\nhttp-listen = \"0.0.0.0:8080\"\nuser-key-secret-file = \"/secrets/key\"\n\
                    admin-token-file = \"/secrets/admin\"\n";
        let raw = || toml::from_str::<RawConfig>(text).unwrap();
        let read = std::cell::RefCell::new(Vec::new());
        let files = |path: &Path| -> std::io::Result<Vec<u8>> {
            read.borrow_mut().push(path.to_path_buf());
            match path.to_str() {
                Some("/secrets/key") => Ok(b"a-file-secret-of-enough-bytes\n".to_vec()),
                Some("/secrets/admin") => Ok(b"  admin-from-file \n".to_vec()),
                _ => Err(std::io::ErrorKind::NotFound.into()),
            }
        };
        // The environment gives the cluster token; the files give the rest.
        let env = EnvSecrets {
            cluster_token: Some("cluster".into()),
            ..EnvSecrets::default()
        };
        let config = validate(raw(), &Overrides::default(), env, &files).unwrap();
        assert_eq!(config.user_key_secret, b"a-file-secret-of-enough-bytes");
        assert_eq!(config.admin_token.as_deref(), Some("admin-from-file"));
        assert_eq!(config.cluster.token.as_deref(), Some("cluster"));
        assert_eq!(read.borrow().len(), 2, "{:?}", read.borrow());
        // With everything in the environment, no file is read.
        read.borrow_mut().clear();
        let env = EnvSecrets {
            user_key_secret: Some(SECRET.into()),
            cluster_token: Some("cluster".into()),
            admin_token: Some("admin".into()),
        };
        let config = validate(raw(), &Overrides::default(), env, &files).unwrap();
        assert_eq!(config.admin_token.as_deref(), Some("admin"));
        assert!(read.borrow().is_empty(), "{:?}", read.borrow());
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

        // No HTTP header can carry these, so every request would be refused.
        let accented = dir.path().join("accented-token");
        std::fs::write(&accented, "jeton-sécurisé\n").unwrap();
        let text = format!(
            "[node]\nadmin-token-file = {:?}\n",
            accented.display().to_string()
        );
        let error = load(&text, Overrides::default(), env(SECRET)).unwrap_err();
        assert!(
            matches!(&error, ConfigError::TokenNotAscii { which: "admin", from } if from.ends_with("accented-token")),
            "{error}"
        );
        let control = EnvSecrets {
            cluster_token: Some("clus\u{7}ter".into()),
            admin_token: Some("admin token".into()),
            ..env(SECRET)
        };
        let error = load(exposed, Overrides::default(), control).unwrap_err();
        assert!(
            matches!(&error, ConfigError::TokenNotAscii { which: "cluster", from } if from == CLUSTER_TOKEN_ENV),
            "{error}"
        );
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
                "[jobs]\nvacuum-retention-hours = 6\ntimeout-s = 21600\n",
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
            (
                "[lake]\ncommit-max-events = 200001\n",
                "lake.commit-max-events",
            ),
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

    #[test]
    fn an_environment_variable_that_is_not_utf8_is_an_error_not_unset() {
        use std::env::VarError;
        use std::ffi::OsString;
        use std::os::unix::ffi::OsStringExt;
        let lookup = |bad: &'static str| {
            move |name: &str| {
                if name == bad {
                    Err(VarError::NotUnicode(OsString::from_vec(vec![0x61, 0xff])))
                } else if name == SECRET_ENV {
                    Ok(SECRET.to_string())
                } else {
                    Err(VarError::NotPresent)
                }
            }
        };
        for var in [SECRET_ENV, CLUSTER_TOKEN_ENV, ADMIN_TOKEN_ENV] {
            let error = EnvSecrets::from_lookup(lookup(var))
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(var) && error.contains("not UTF-8"),
                "{error}"
            );
        }
        let env = EnvSecrets::from_lookup(lookup("UNRELATED")).unwrap();
        assert_eq!(env.user_key_secret.as_deref(), Some(SECRET));
        assert_eq!(env.admin_token, None, "unset stays unset");
    }

    #[test]
    fn empty_paths_are_refused_by_their_key() {
        let error = parse("[node]\ndata-dir = \"\"\n").unwrap_err().to_string();
        assert!(
            error.contains("`node.data-dir`") && error.contains("empty"),
            "{error}"
        );
        let error = parse("[lake]\nuri = \"\"\n").unwrap_err().to_string();
        assert!(
            error.contains("`lake.uri`") && error.contains("empty"),
            "{error}"
        );
        let member = Overrides {
            node_id: Some(2),
            ..Overrides::default()
        };
        let env = EnvSecrets {
            cluster_token: Some("t0ken".into()),
            ..env(SECRET)
        };
        let text = THREE.replace("data-dir = \"/srv/two\"", "data-dir = \"\"");
        let error = load(&text, member.clone(), env.clone())
            .unwrap_err()
            .to_string();
        assert!(error.contains("`cluster.node.data-dir`"), "{error}");
        for (overrides, key) in [
            (
                Overrides {
                    data_dir: Some(PathBuf::new()),
                    ..member.clone()
                },
                "`--data-dir`",
            ),
            (
                Overrides {
                    lake: Some(PathBuf::new()),
                    ..member
                },
                "`--lake`",
            ),
        ] {
            let error = load(THREE, overrides, env.clone()).unwrap_err().to_string();
            assert!(error.contains(key) && error.contains("empty"), "{error}");
        }
    }
}
