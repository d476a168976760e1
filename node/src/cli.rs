//! The `streamreel` command line.

use std::path::PathBuf;

use crate::error::NodeError;
use chrono::{DateTime, Datelike, Utc};
use clap::{Args, Parser, Subcommand};
use streamreel_actors::coordinator::job::JobKind;

#[derive(Debug, Parser)]
#[command(
    name = "streamreel",
    version,
    about = "StreamReel video-engagement analytics"
)]
pub struct Cli {
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "STREAMREEL_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the process's arguments; a command line clap cannot check
    /// flag by flag (shares that add up past 1) exits 2 with the usage too.
    pub fn parse_checked() -> Cli {
        let cli = Cli::parse();
        if let Err(error) = cli.check() {
            error.exit();
        }
        cli
    }

    fn check(&self) -> Result<(), clap::Error> {
        if let Command::Simulate(args) = &self.command
            && args.malformed_share + args.duplicate_share > 1.0
        {
            // Built, so that the usage shown is `streamreel simulate`'s.
            let mut command = <Cli as clap::CommandFactory>::command();
            command.build();
            let simulate = command
                .find_subcommand_mut("simulate")
                .expect("simulate is a command");
            return Err(simulate.error(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "--malformed-share ({}) plus --duplicate-share ({}) must be at most 1",
                    args.malformed_share, args.duplicate_share
                ),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node: ingest the input topic into bronze.
    Node(NodeArgs),
    /// Produce realistic viewing events to the input topic.
    Simulate(SimulateArgs),
    /// Build silver and gold, or run the data tests.
    Models(ModelsArgs),
    /// Talk to a running node's admin API.
    Admin(AdminArgs),
    /// Show what the bronze table holds: rows, per-partition progress.
    Inspect(InspectArgs),
    /// Write one table of the lake to a CSV or Parquet file (for BI tools).
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// `bronze`, `silver/enriched_events`, `silver/view_sessions` or `gold/NAME`.
    #[arg(long)]
    pub table: String,
    #[arg(long, value_enum)]
    pub format: crate::export::ExportFormat,
    /// The file to write (replaced if it exists).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub lake: LakeArgs,
}

/// How log lines are written (to standard error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: ModelsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Bring silver up to date from bronze, then build the gold models.
    Run {
        /// Only this model (default: all).
        #[arg(long)]
        select: Option<String>,
        #[command(flatten)]
        lake: LakeArgs,
        #[command(flatten)]
        memory: MemoryLimitArg,
        /// Bronze events silver processes at once (a larger backlog runs in
        /// chunks), as `jobs.chunk-events`.
        #[arg(
            long,
            default_value_t = streamreel_lake::LakeSettings::DEFAULT_CHUNK_EVENTS,
            value_parser = clap::value_parser!(u64).range(1_000..=1_000_000_000),
        )]
        chunk_events: u64,
        #[arg(long, default_value = "metadata/video_metadata.csv")]
        metadata: PathBuf,
    },
    /// Run the data tests; exits non-zero when one fails.
    Test {
        #[command(flatten)]
        lake: LakeArgs,
        #[command(flatten)]
        memory: MemoryLimitArg,
        #[arg(long, default_value = "metadata/video_metadata.csv")]
        metadata: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct MemoryLimitArg {
    /// Memory DataFusion may hold before it spills or fails a query (MiB),
    /// as `jobs.memory-limit-mb`; shared by all the command's queries.
    #[arg(
        long = "memory-limit-mb",
        default_value_t = (streamreel_lake::LakeSettings::DEFAULT_MEMORY_LIMIT_BYTES >> 20) as u64,
        value_parser = clap::value_parser!(u64).range(64..=1 << 20),
    )]
    pub mib: u64,
}

impl MemoryLimitArg {
    pub fn bytes(&self) -> usize {
        (self.mib as usize) << 20
    }
}

#[derive(Args)]
pub struct AdminArgs {
    /// Any node's HTTP URL, e.g. http://127.0.0.1:8081 (changes reach the leader from there)
    #[arg(long)]
    pub node: String,
    /// The admin token, if the node has one.
    // Without `hide_env_values`, `--help` would print the variable's value.
    #[arg(long, env = "STREAMREEL_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: AdminSubcommand,
}

impl std::fmt::Debug for AdminArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminArgs")
            .field("node", &self.node)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("command", &self.command)
            .finish()
    }
}

#[derive(Debug, Subcommand)]
pub enum AdminSubcommand {
    /// Partitions, offsets and counters.
    Status,
    /// Lakehouse job runs, newest first.
    Jobs,
    /// Start a job now: enrich, gold, compact or vacuum.
    Run { job: JobKind },
    /// Spread partitions evenly over the live members.
    Rebalance,
    /// Move one partition to a member; returns once the new owner has resumed it.
    Move {
        partition: i32,
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        to: u64,
    },
    /// Add a member (it must run with the same cluster token).
    AddNode {
        #[arg(value_parser = clap::value_parser!(u64).range(1..))]
        id: u64,
        /// Its HTTP address, IP:PORT.
        #[arg(long)]
        addr: String,
    },
    /// Remove a member; its partitions move to the others.
    RemoveNode {
        #[arg(value_parser = clap::value_parser!(u64).range(1..))]
        id: u64,
    },
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The node's TOML config (see cluster-config/).
    #[arg(long)]
    pub config: PathBuf,
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub node_id: Option<u64>,
    /// HOST:PORT[,HOST:PORT...]
    #[arg(long)]
    pub brokers: Option<String>,
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The lake shared by the cluster (overrides lake.uri).
    #[arg(long)]
    pub lake: Option<PathBuf>,
    /// Demo mode: pseudonymise with a public demo secret when none is configured.
    #[arg(long)]
    pub demo: bool,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// HOST:PORT[,HOST:PORT...]
    #[arg(long, value_parser = brokers)]
    pub brokers: String,
    /// Messages to send in all (valid, malformed and duplicates).
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,
    /// Messages per second (default: as fast as the broker takes them).
    #[arg(long, value_parser = rate)]
    pub rate: Option<f64>,
    /// The same seed and start give the same events (default: random, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long, default_value = "metadata/video_metadata.csv")]
    pub metadata: PathBuf,
    #[arg(long, default_value = "video-events", value_parser = topic)]
    pub topic: String,
    /// Partitions if the topic has to be created.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub partitions: i32,
    /// Replication factor if the topic has to be created.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=i16::MAX as i64))]
    pub replication_factor: i32,
    /// Share of malformed messages, 0..1.
    #[arg(long, default_value_t = 0.005, value_parser = share)]
    pub malformed_share: f64,
    /// Share of redelivered duplicates, 0..1.
    #[arg(long, default_value_t = 0.01, value_parser = share)]
    pub duplicate_share: f64,
    /// Event time of the first session, RFC 3339 (default: today 00:00 UTC).
    #[arg(long, value_parser = start_time)]
    pub start: Option<DateTime<Utc>>,
}

/// Broker addresses, for clap.
fn brokers(text: &str) -> Result<String, String> {
    if crate::config::brokers_are_valid(text) {
        Ok(text.to_string())
    } else {
        Err("must be HOST:PORT[,HOST:PORT...]".into())
    }
}

/// A Kafka topic name, for clap.
fn topic(text: &str) -> Result<String, String> {
    if crate::config::is_kafka_topic_name(text) {
        Ok(text.to_string())
    } else {
        Err("must be a Kafka topic name (1 to 249 of [a-zA-Z0-9._-], not \".\" or \"..\")".into())
    }
}

/// The first session's time, for clap. Event times must lie in the years
/// 0000 to 9999 UTC (the contract's range); a year of room keeps any run of
/// up to about 10^8 events (a few per simulated second) inside it, where a
/// longer one's later events the node would reject as `bad_time`.
fn start_time(text: &str) -> Result<DateTime<Utc>, String> {
    let start = DateTime::parse_from_rfc3339(text)
        .map_err(|e| format!("not an RFC 3339 time ({e})"))?
        .with_timezone(&Utc);
    if (0..=9998).contains(&start.year()) {
        Ok(start)
    } else {
        Err(format!(
            "must lie in the years 0000 to 9998 in UTC, got {start}"
        ))
    }
}

/// A share within 0..=1, for clap: out of range is a command line not
/// understood, as for the integer flags' ranges.
fn share(text: &str) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("must be within 0..1, got {value}"))
    }
}

/// Messages per second, for clap.
fn rate(text: &str) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if (0.001..=1e9).contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "must be between 0.001 and 1000000000 messages per second, got {value}"
        ))
    }
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub lake: LakeArgs,
}

/// Where the lake is: `--lake DIR`, or `--data-dir DIR` for `<DIR>/lake`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct LakeArgs {
    /// A node's data directory; the lake is `<DIR>/lake`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The lake itself (a cluster's shared `lake.uri`).
    #[arg(long)]
    pub lake: Option<PathBuf>,
}

impl LakeArgs {
    /// The lake's directory, which must exist: every command reading a lake
    /// says so once, instead of failing table by table.
    pub fn lake_dir(&self) -> Result<PathBuf, NodeError> {
        let (dir, flag) = match (&self.lake, &self.data_dir) {
            (Some(lake), _) => (lake.clone(), "--lake"),
            (None, Some(data_dir)) => (data_dir.join("lake"), "--data-dir"),
            (None, None) => unreachable!("clap requires one of --lake and --data-dir"),
        };
        if let Some(problem) = crate::config::directory_path_problem(&dir) {
            Err(NodeError::Argument {
                name: flag,
                reason: problem.to_string(),
            })
        } else if dir.is_dir() {
            Ok(dir)
        } else {
            Err(NodeError::Argument {
                name: flag,
                reason: format!(
                    "no lake at {}: the directory does not exist (--lake takes the lake itself, \
                     --data-dir a node's data directory holding lake/)",
                    dir.display()
                ),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn the_admin_token_is_never_shown() {
        let cli = Cli::try_parse_from([
            "streamreel",
            "admin",
            "--node",
            "http://127.0.0.1:8080",
            "--token",
            "tok-3141592653",
            "status",
        ])
        .unwrap();
        let Command::Admin(args) = &cli.command else {
            panic!("parsed as {cli:?}");
        };
        assert_eq!(args.token.as_deref(), Some("tok-3141592653"));
        let shown = format!("{cli:?}");
        assert!(!shown.contains("tok-3141592653"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");

        // `--help` names the variable but not its value.
        let command = Cli::command();
        let admin = command.find_subcommand("admin").unwrap();
        let token = admin
            .get_arguments()
            .find(|a| a.get_id() == "token")
            .unwrap();
        assert_eq!(
            token.get_env(),
            Some(std::ffi::OsStr::new("STREAMREEL_ADMIN_TOKEN"))
        );
        assert!(token.is_hide_env_values_set());
    }

    /// A value outside a flag's range is clap's error, so the command exits
    /// 2 with the usage, as for a value that is not a number.
    #[test]
    fn numbers_outside_their_flags_range_are_command_line_errors() {
        let simulate = |flag: &str, value: &str| {
            let arg = format!("{flag}={value}");
            Cli::try_parse_from(["streamreel", "simulate", "--brokers", "a:1", &arg])
        };
        for (flag, value) in [
            ("--partitions", "0"),
            ("--partitions", "10001"),
            ("--replication-factor", "0"),
            ("--malformed-share", "1.5"),
            ("--duplicate-share", "-0.1"),
            ("--rate", "0"),
            ("--rate", "NaN"),
            ("--start", "yesterday"),
            ("--start", "9999-06-01T00:00:00Z"),
            ("--topic", ".."),
        ] {
            let error = simulate(flag, value).unwrap_err();
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{flag} {value}: {error}"
            );
            assert_eq!(error.exit_code(), 2);
        }
        for (flag, value) in [
            ("--partitions", "12"),
            ("--rate", "0.5"),
            ("--malformed-share", "1"),
            ("--start", "2026-05-01T12:00:00+02:00"),
        ] {
            assert!(simulate(flag, value).is_ok(), "{flag} {value}");
        }
        let brokers = Cli::try_parse_from(["streamreel", "simulate", "--brokers", "localhost"]);
        assert_eq!(
            brokers.unwrap_err().kind(),
            clap::error::ErrorKind::ValueValidation
        );
        // Node ids start at 1, on every admin command that names one.
        let admin = |args: &[&str]| {
            let base = ["streamreel", "admin", "--node", "http://127.0.0.1:1"];
            Cli::try_parse_from(base.iter().chain(args))
        };
        for args in [
            &["add-node", "0", "--addr", "127.0.0.1:2"][..],
            &["remove-node", "0"],
            &["move", "1", "--to", "0"],
        ] {
            let error = admin(args).unwrap_err();
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{args:?}"
            );
        }
        assert!(admin(&["move", "1", "--to", "2"]).is_ok());
        let shares = |malformed: &str, duplicate: &str| {
            Cli::try_parse_from([
                "streamreel",
                "simulate",
                "--brokers",
                "a:1",
                "--malformed-share",
                malformed,
                "--duplicate-share",
                duplicate,
            ])
            .unwrap()
            .check()
        };
        let error = shares("0.7", "0.4").unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert_eq!(error.exit_code(), 2);
        // Every message malformed (to exercise the dead-letter path) is a run.
        assert!(shares("1", "0").is_ok());
        assert!(shares("0.5", "0.5").is_ok());
        let node = Cli::try_parse_from(["streamreel", "node", "--config", "c", "--node-id", "0"]);
        assert_eq!(
            node.unwrap_err().kind(),
            clap::error::ErrorKind::ValueValidation
        );
    }

    /// delta-rs would read these as another directory than the file
    /// system does, so they are refused by name before either is asked.
    #[test]
    fn a_lake_given_as_a_url_or_under_a_tilde_is_refused_by_its_flag() {
        for (flag, value, says) in [
            ("--lake", "file:///srv/lake", "is a URL"),
            ("--lake", "~/lake", "only a shell expands"),
            ("--data-dir", "~/node-1", "only a shell expands"),
        ] {
            let cli = Cli::try_parse_from(["streamreel", "inspect", flag, value]).unwrap();
            let Command::Inspect(args) = &cli.command else {
                panic!("parsed as {cli:?}");
            };
            let error = args.lake.lake_dir().unwrap_err().to_string();
            assert!(error.contains(flag) && error.contains(says), "{error}");
        }
        // An empty path is clap's to refuse (it would read `./lake`).
        for flag in ["--lake", "--data-dir"] {
            assert!(Cli::try_parse_from(["streamreel", "inspect", flag, ""]).is_err());
        }
        let dir = tempfile::tempdir().unwrap();
        let lake = dir.path().to_str().unwrap();
        let cli = Cli::try_parse_from(["streamreel", "inspect", "--lake", lake]).unwrap();
        let Command::Inspect(args) = &cli.command else {
            panic!("parsed as {cli:?}");
        };
        assert_eq!(args.lake.lake_dir().unwrap(), dir.path());
    }
}
