//! `streamreel`: thin entry point. Parses flags, sets up logging, runs a command,
//! and turns Ctrl-C / SIGTERM into a cancellation every task observes.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use streamreel_node::admin::{AdminCommand, admin};
use streamreel_node::cli::{
    AdminSubcommand, Cli, Command, LogFormat, ModelsCommand, NodeArgs, SimulateArgs,
};
use streamreel_node::config::{ConfigError, EnvSecrets, Overrides, load_config};
use streamreel_node::error::error_chain_text;
use streamreel_node::simulate::SimulationSettings;
use streamreel_node::simulate::run::{SimulateOptions, run_simulation};
use streamreel_node::{export, inspect, models, node};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `RUST_LOG`'s filter, or ours when it is unset or blank. A filter that
/// does not parse is an error: ignoring it would hide the logs asked for.
fn log_filter() -> anyhow::Result<EnvFilter> {
    match std::env::var("RUST_LOG") {
        Ok(text) if !text.trim().is_empty() => EnvFilter::try_new(&text)
            .with_context(|| format!("RUST_LOG={text:?} is not a log filter")),
        Err(std::env::VarError::NotUnicode(_)) => anyhow::bail!("RUST_LOG is not UTF-8"),
        // The Delta kernel logs every snapshot at info, and openraft its whole
        // state at start; keep ours readable (the node logs its own leadership).
        _ => Ok(EnvFilter::new(
            "info,buoyant_kernel=warn,deltalake_core=warn,datafusion=warn,openraft=warn",
        )),
    }
}

/// How long the exit waits for blocking work left when a command returns.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

fn main() -> ExitCode {
    let cli = Cli::parse_checked();
    let filter = match log_filter() {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().with_current_span(false).init(),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // Blocking calls still under way (a broker check or partition listing
    // against unreachable brokers, up to 10 s) would hold the exit while
    // signals go unanswered; a Raft snapshot being written needs far less.
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Interrupted>() => {
            eprintln!("error: {e}");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("error: {}", error_chain_text(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// A command without a graceful stop was stopped by a signal: exit 130, as
/// shells report a command ended by Ctrl-C.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by a signal before it finished")]
struct Interrupted;

async fn run(cli: Cli) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    match cli.command {
        Command::Node(args) => {
            tokio::spawn(cancel_on_signal(StopSignals::listen(), shutdown.clone()));
            run_node(args, shutdown).await
        }
        Command::Simulate(args) => {
            tokio::spawn(cancel_on_signal(StopSignals::listen(), shutdown.clone()));
            simulate(args, shutdown).await
        }
        // The others have nothing to finish: each of their lake commits is
        // whole, and an export is renamed into place only when complete.
        command => {
            let partial = match &command {
                Command::Export(args) => Some(export::partial_path(&args.out)),
                _ => None,
            };
            let mut signals = StopSignals::listen();
            tokio::select! {
                result = run_once(command) => result,
                () = signals.next() => {
                    if let Some(partial) = partial {
                        let _ = std::fs::remove_file(partial);
                    }
                    Err(Interrupted.into())
                }
            }
        }
    }
}

/// The commands that run to their end, or until the first signal.
async fn run_once(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Node(_) | Command::Simulate(_) => {
            unreachable!("node and simulate stop gracefully, in `run`")
        }
        Command::Models(args) => match args.command {
            ModelsCommand::Run {
                select,
                lake,
                metadata,
                memory,
                chunk_events,
            } => {
                let settings = streamreel_lake::LakeSettings {
                    memory_limit_bytes: memory.bytes(),
                    chunk_events,
                };
                print!(
                    "{}",
                    models::models_run(&lake.lake_dir()?, &metadata, select.as_deref(), &settings)
                        .await?
                );
                Ok(())
            }
            ModelsCommand::Test {
                lake,
                metadata,
                memory,
            } => {
                let (report, passed) =
                    models::models_test(&lake.lake_dir()?, &metadata, memory.bytes()).await?;
                print!("{report}");
                anyhow::ensure!(passed, "data tests failed");
                Ok(())
            }
        },
        Command::Admin(args) => {
            let command = match args.command {
                AdminSubcommand::Status => AdminCommand::Status,
                AdminSubcommand::Jobs => AdminCommand::Jobs,
                AdminSubcommand::Run { job } => AdminCommand::Run(job),
                AdminSubcommand::Rebalance => AdminCommand::Rebalance,
                AdminSubcommand::Move { partition, to } => AdminCommand::Move { partition, to },
                AdminSubcommand::AddNode { id, addr } => AdminCommand::AddNode { id, addr },
                AdminSubcommand::RemoveNode { id } => AdminCommand::RemoveNode(id),
            };
            println!(
                "{}",
                admin(&args.node, args.token.as_deref(), command).await?
            );
            Ok(())
        }
        Command::Inspect(args) => {
            print!("{}", inspect::inspect(&args.lake.lake_dir()?).await?);
            Ok(())
        }
        Command::Export(args) => {
            let rows =
                export::export(&args.lake.lake_dir()?, &args.table, args.format, &args.out).await?;
            println!(
                "{rows} rows of {} written to {}",
                args.table,
                args.out.display()
            );
            Ok(())
        }
    }
}

async fn run_node(args: NodeArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let overrides = Overrides {
        node_id: args.node_id,
        brokers: args.brokers,
        data_dir: args.data_dir,
        lake: args.lake,
        demo: args.demo,
    };
    let config = match load_config(&args.config, &overrides, EnvSecrets::from_process()?) {
        Ok(config) => config,
        // These two name the file already.
        Err(e @ (ConfigError::Read { .. } | ConfigError::Parse { .. })) => return Err(e.into()),
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context(format!("config file {}", args.config.display()))
            );
        }
    };
    node::run_node(config, shutdown).await?;
    Ok(())
}

async fn simulate(args: SimulateArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    // Each flag's own range, and the shares' sum, are clap's to check (exit 2
    // with the usage).
    let start = args.start.unwrap_or_else(|| {
        Utc::now()
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
    });
    let seed = args.seed.unwrap_or_else(|| {
        let seed = rand::random();
        // On stderr before anything is sent: a run that fails or is cut
        // short never prints its summary, and is the one to reproduce.
        // The start defaults to today, so a rerun tomorrow needs it named.
        eprintln!(
            "random seed {seed} (--seed {seed} --start {} repeats this run with the same --events, shares and metadata)",
            start.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        );
        seed
    });
    let options = SimulateOptions {
        brokers: args.brokers,
        topic: args.topic,
        partitions: args.partitions,
        replication_factor: args.replication_factor,
        metadata: args.metadata,
        rate: args.rate,
        settings: SimulationSettings {
            events: args.events,
            seed,
            start_us: start.timestamp_micros(),
            malformed_share: args.malformed_share,
            duplicate_share: args.duplicate_share,
            users: None,
        },
    };
    run_simulation(options, shutdown).await?;
    Ok(())
}

/// The first Ctrl-C / SIGTERM asks every task to stop (a node commits its
/// in-flight batches); a second one exits at once.
async fn cancel_on_signal(mut signals: StopSignals, shutdown: CancellationToken) {
    // `signals` listens from before the first signal to after the second: a
    // listener made after the first would miss a second signal sent in
    // between, and the stop would go on retrying.
    signals.next().await;
    eprintln!("stopping: committing in-flight work (signal again to exit at once)");
    shutdown.cancel();
    signals.next().await;
    eprintln!(
        "second signal: exiting without waiting; uncommitted batches are read again on restart"
    );
    std::process::exit(130);
}

/// SIGINT (Ctrl-C) and SIGTERM, each counted from when this was made.
struct StopSignals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn listen() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(listener) => Some(listener),
                Err(error) => {
                    tracing::warn!(%error, signal = name, "cannot listen for this signal; it will not stop the process gracefully");
                    None
                }
            };
            StopSignals {
                interrupt: listen(SignalKind::interrupt(), "SIGINT"),
                terminate: listen(SignalKind::terminate(), "SIGTERM"),
            }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// Waits for the next stop signal.
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            async fn received(listener: &mut Option<tokio::signal::unix::Signal>) {
                match listener {
                    Some(listener) => {
                        listener.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = received(&mut self.interrupt) => {}
                _ = received(&mut self.terminate) => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
