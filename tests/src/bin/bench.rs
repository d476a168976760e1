//! `streamreel-bench`: prints the numbers of docs/performance.md.
//!
//! 1. In-process, one core, median of 5 rounds: the clean path's decisions
//!    (validate, de-duplicate, pseudonymise), alone and with its outputs
//!    (clean-events JSON, bronze arrow columns), then with bronze commits to
//!    a local Delta table.
//! 2. End to end on a real tansu broker: one node ingesting a topic, against a
//!    bare rdkafka consumer reading the same topic and a pass-through
//!    (consume + produce the same messages), with the ratios and the CPU each
//!    run cost the broker and the reader. Each reader gets a fresh broker,
//!    with the header index `scripts/tansu-header-index.sql` adds; with
//!    `--stock-tansu` the node runs once more on a broker without it. The node
//!    runs twice: with its lakehouse jobs on the shipped schedule, and with
//!    them after the run (ingest alone). With `--e2e-rounds R` the
//!    pass-through and both node runs alternate R times, and the medians of
//!    the ratios and of the node's CPU per event follow.
//!
//! 3. With `--lakehouse N[,M...]`: `models run` over N bronze events against
//!    the same silver and gold in DuckDB, then 1% more events incrementally
//!    (see `bench_lakehouse.rs`).
//!
//! 4. With `--cluster`: three nodes against one, failover time over
//!    `--kills K` SIGKILLs (default 10; 0 skips failover), the Raft cost per checkpoint, the
//!    snapshot size at 1M events per partition, peak RSS per node.
//!
//! Usage: `streamreel-bench --help`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use streamreel_actors::DedupSettings;
use streamreel_actors::dedup::DedupWindow;
use streamreel_actors::kafka::{self, InFlight};
use streamreel_actors::partition_core::{Outcome, PartitionCore};
use streamreel_lake::{BronzeBatchBuilder, BronzeTable};
use streamreel_protocol::UserKeyer;
use streamreel_tests::broker::{Broker, HeaderIndex};
use streamreel_tests::bronze_reader::{assert_bronze_exact, time_to_catch_up};
use streamreel_tests::cpu::{cpu_seconds, cpu_seconds_by_thread_kind, own_cpu_seconds};
use streamreel_tests::node_process::{NodeProcess, node_config};
use streamreel_tests::simulated;
use streamreel_tests::topic_reader::high_watermarks;

#[path = "bench_bronze.rs"]
mod bench_bronze;
#[path = "bench_cluster.rs"]
mod bench_cluster;
#[path = "bench_lakehouse.rs"]
mod bench_lakehouse;

const INPUT: &str = "video-events";

/// Prints the numbers docs/performance.md logs; what each part measures is in
/// that document.
#[derive(Parser)]
#[command(name = "streamreel-bench")]
struct Args {
    /// Simulated messages for the in-process clean path.
    #[arg(long, default_value_t = 1_000_000, value_parser = at_least_one())]
    events: u64,
    /// Messages each end-to-end reader reads on tansu.
    #[arg(long, default_value_t = 300_000, value_parser = at_least_one())]
    e2e_events: u64,
    /// Rounds of the pass-through and the node (with its jobs, then alone),
    /// alternating on fresh brokers; with more than one, the medians of the
    /// ratios and of the node's CPU per event follow.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=20))]
    e2e_rounds: u64,
    /// Leaves out the in-process clean path.
    #[arg(long)]
    skip_clean_path: bool,
    /// Leaves out the end-to-end runs.
    #[arg(long)]
    skip_e2e: bool,
    /// Runs the node once more on a broker without the header index.
    #[arg(long)]
    stock_tansu: bool,
    /// Bronze sizes (events, comma separated) for silver + gold against DuckDB.
    #[arg(long, value_delimiter = ',', value_parser = at_least_one())]
    lakehouse: Vec<u64>,
    /// Leaves the lakehouse bench's lakes in this (empty or new) directory
    /// instead of a temporary one: `lake`, `lake-new-day-only`, and
    /// `lake-full` as it was after the full build.
    #[arg(long, requires = "lakehouse")]
    keep_lake: Option<std::path::PathBuf>,
    /// Three members against one, failover, Raft cost, snapshot size.
    #[arg(long)]
    cluster: bool,
    /// Messages for the cluster's throughput runs.
    #[arg(long, default_value_t = 200_000, value_parser = at_least_one(), requires = "cluster")]
    cluster_events: u64,
    /// Members SIGKILLed one after another to time failover (0 skips it).
    #[arg(long, default_value_t = 10, requires = "cluster")]
    kills: u32,
    /// Bronze commits timed as the table grows, against delta-rs's write path.
    #[arg(long)]
    bronze_commits: Option<usize>,
    /// Commits of delta-rs's write path (its cost grows with the table).
    #[arg(long, default_value_t = 600, requires = "bronze_commits")]
    bronze_baseline_commits: usize,
}

fn at_least_one() -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(1..)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    if !args.skip_clean_path {
        clean_path(args.events, &runtime)?;
    }
    if !args.skip_e2e {
        runtime.block_on(end_to_end(
            args.e2e_events,
            args.e2e_rounds,
            args.stock_tansu,
        ))?;
    }
    if let Some(commits) = args.bronze_commits {
        runtime.block_on(bench_bronze::bronze_commits(
            commits,
            args.bronze_baseline_commits,
        ))?;
    }
    if args.cluster {
        runtime.block_on(bench_cluster::cluster(args.cluster_events, args.kills))?;
    }
    for size in args.lakehouse {
        runtime.block_on(bench_lakehouse::lakehouse(size, args.keep_lake.as_deref()))?;
    }
    Ok(())
}

/// The clean topic's partitions, as in the end-to-end runs.
const CLEAN_PARTITIONS: std::num::NonZeroU32 = std::num::NonZeroU32::new(4).unwrap();

fn dedup() -> DedupWindow {
    DedupWindow::new(DedupSettings {
        window_events: 1_000_000,
        window: Duration::from_secs(86_400),
        max_ids: 4_000_000,
    })
}

fn clean_path(events: u64, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    println!(
        "== clean path, in-process, one core ({events} simulated messages, median of {ROUNDS} rounds) =="
    );
    let payloads: Vec<Vec<u8>> = simulated::messages(events, 1)?
        .into_iter()
        .map(|m| m.payload)
        .collect();
    let keyer = UserKeyer::new(b"bench-secret-0123456789");

    let parse = median_time(|| {
        for payload in &payloads {
            let _ = std::hint::black_box(streamreel_protocol::parse_event(payload));
        }
        Ok(())
    })?;
    report("parse + validate only", events, parse, 1_000_000.0);

    let mut accepted = 0u64;
    let decide = median_time(|| {
        let mut core = PartitionCore::new(0, keyer.clone(), dedup(), CLEAN_PARTITIONS);
        accepted = 0;
        for (offset, payload) in payloads.iter().enumerate() {
            if let Outcome::Accepted { clean, .. } = core.process(offset as i64, payload, 1) {
                accepted += 1;
                std::hint::black_box(clean);
            }
        }
        Ok(())
    })?;
    report(
        "validate + dedup + pseudonymise",
        events,
        decide,
        1_000_000.0,
    );

    // What the partition actor does per record, short of handing bytes to
    // librdkafka: decide, write the clean-events value, append the bronze row.
    let mut json_bytes = 0usize;
    let full = median_time(|| {
        json_bytes = actor_work(&payloads, &keyer, None)?;
        Ok(())
    })?;
    report(
        "... + clean-events JSON + bronze columns",
        events,
        full,
        1_000_000.0,
    );
    println!(
        "   accepted {accepted}, clean JSON {:.0} bytes/event",
        json_bytes as f64 / accepted as f64
    );

    // The rest of a partition actor's own work: each batch's bronze commit
    // (Parquet encoding, the file, the Delta log entry), to a local table.
    let committed = median_time(|| {
        let lake = tempfile::tempdir()?;
        let mut bronze = runtime.block_on(BronzeTable::open_or_create(lake.path()))?;
        actor_work(&payloads, &keyer, Some((runtime, &mut bronze)))?;
        Ok(())
    })?;
    report(
        "... + bronze commits (local Delta table)",
        events,
        committed,
        1_000_000.0,
    );
    Ok(())
}

/// A partition actor's work on `payloads` short of librdkafka: decide, write
/// each `clean-events` value, build bronze batches of [`BATCH`] rows, and
/// commit each to `bronze` when given. Returns the bytes of JSON written.
fn actor_work(
    payloads: &[Vec<u8>],
    keyer: &UserKeyer,
    mut bronze: Option<(&tokio::runtime::Runtime, &mut BronzeTable)>,
) -> anyhow::Result<usize> {
    let mut core = PartitionCore::new(0, keyer.clone(), dedup(), CLEAN_PARTITIONS);
    let mut rows = BronzeBatchBuilder::with_capacity(BATCH);
    let mut json = Vec::with_capacity(1024);
    let mut json_bytes = 0;
    let mut last_offset = 0;
    let mut finish_batch = |rows: &mut BronzeBatchBuilder, last_offset| -> anyhow::Result<()> {
        let batch = rows.finish()?;
        match bronze.as_mut() {
            Some((runtime, table)) => {
                runtime.block_on(table.append(batch, 0, last_offset))?;
            }
            None => {
                std::hint::black_box(batch);
            }
        }
        Ok(())
    };
    for (offset, payload) in payloads.iter().enumerate() {
        last_offset = offset as i64;
        if let Outcome::Accepted { clean, .. } = core.process(last_offset, payload, 1) {
            let row = clean.view();
            json.clear();
            row.write_json(&mut json);
            json_bytes += std::hint::black_box(&json).len();
            rows.append(&row);
            if rows.len() == BATCH {
                finish_batch(&mut rows, last_offset)?;
            }
        }
    }
    finish_batch(&mut rows, last_offset)?;
    Ok(json_bytes)
}

/// Rounds per in-process measurement; the median is reported (this machine's
/// timings vary by a fifth between runs).
const ROUNDS: usize = 5;

fn median_time(mut run: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let mut times = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        run()?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times[ROUNDS / 2])
}

/// Rows per bronze commit, as the node's default `commit-max-events`.
const BATCH: usize = 20_000;

fn report(what: &str, events: u64, elapsed: Duration, goal: f64) {
    let rate = events as f64 / elapsed.as_secs_f64();
    println!(
        "{what:<42} {rate:>12.0} events/s  ({:.2} s; goal {goal:.0}/s, ratio {:.2})",
        elapsed.as_secs_f64(),
        rate / goal
    );
}

async fn end_to_end(events: u64, rounds: u64, stock_tansu: bool) -> anyhow::Result<()> {
    println!(
        "== end to end on tansu ({events} messages, 4 partitions, a fresh broker per reader, \
         {rounds} round(s) of pass-through and node) =="
    );
    let messages = simulated::messages(events, 2)?;

    let (broker, high) = broker_with_input(&messages, HeaderIndex::Added).await?;
    let brokers = broker.brokers();
    let total: i64 = high.values().sum();
    let cpu = CpuMeter::start(broker.pid(), std::process::id())?;
    let brokers_read = brokers.clone();
    let high_read = high.clone();
    let read =
        tokio::task::spawn_blocking(move || consume_all(&brokers_read, &high_read, |_| Ok(())))
            .await??;
    report(
        "bare rdkafka consumer (read only)",
        total as u64,
        read,
        38_000.0,
    );
    cpu.report(total as u64, cpu.client_seconds()?)?;
    drop(broker);

    // The pass-through and the node alternate, so that a slow spell of the
    // machine (runs here vary by a fifth) falls on both.
    let mut measured = Vec::with_capacity(rounds as usize);
    for round in 1..=rounds {
        if rounds > 1 {
            println!("-- round {round} of {rounds}");
        }
        let pass = pass_through(&messages, HeaderIndex::Added).await?;
        let with_jobs = node_ingest(&messages, HeaderIndex::Added, NodeJobs::Shipped).await?;
        println!(
            "node / bare consumer = {:.2}   node / pass-through = {:.2}   (goal: node / pass-through >= 0.95)",
            read.as_secs_f64() / with_jobs.elapsed.as_secs_f64(),
            pass.elapsed.as_secs_f64() / with_jobs.elapsed.as_secs_f64()
        );
        let alone = node_ingest(&messages, HeaderIndex::Added, NodeJobs::Deferred).await?;
        println!(
            "ingest alone: node / pass-through = {:.2}",
            pass.elapsed.as_secs_f64() / alone.elapsed.as_secs_f64()
        );
        measured.push(Round {
            pass,
            with_jobs,
            alone,
        });
    }
    if rounds > 1 {
        print_round_medians(&measured);
    }
    if stock_tansu {
        // Both on the stock broker: a ratio of runs on two brokers would
        // measure the brokers.
        let pass = pass_through(&messages, HeaderIndex::Stock).await?;
        let stock = node_ingest(&messages, HeaderIndex::Stock, NodeJobs::Shipped).await?;
        println!(
            "on tansu without the header index: node / pass-through = {:.2}",
            pass.elapsed.as_secs_f64() / stock.elapsed.as_secs_f64()
        );
    }
    Ok(())
}

/// One reader's run: its wall time and its own CPU per event.
#[derive(Debug, Clone, Copy)]
struct Run {
    elapsed: Duration,
    client_us_per_event: f64,
    /// CPU per event after the warm-up ([`warm_up_events`]).
    steady_us_per_event: f64,
}

/// The runs of one round of the end-to-end bench.
struct Round {
    pass: Run,
    with_jobs: Run,
    alone: Run,
}

/// Each round's ratios, then the medians over the rounds.
fn print_round_medians(rounds: &[Round]) {
    let ratio = |pass: &Run, node: &Run| pass.elapsed.as_secs_f64() / node.elapsed.as_secs_f64();
    let with_jobs: Vec<f64> = rounds
        .iter()
        .map(|r| ratio(&r.pass, &r.with_jobs))
        .collect();
    let alone: Vec<f64> = rounds.iter().map(|r| ratio(&r.pass, &r.alone)).collect();
    let node_cpu: Vec<f64> = rounds.iter().map(|r| r.alone.client_us_per_event).collect();
    let pass_cpu: Vec<f64> = rounds.iter().map(|r| r.pass.client_us_per_event).collect();
    let node_steady: Vec<f64> = rounds.iter().map(|r| r.alone.steady_us_per_event).collect();
    let pass_steady: Vec<f64> = rounds.iter().map(|r| r.pass.steady_us_per_event).collect();
    let list = |values: &[f64], digits: usize| {
        values
            .iter()
            .map(|v| format!("{v:.digits$}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("== over {} rounds (medians) ==", rounds.len());
    println!(
        "node / pass-through with the jobs: {} -> median {:.2}   (goal >= 0.95)",
        list(&with_jobs, 2),
        median(&with_jobs)
    );
    println!(
        "node / pass-through, ingest alone: {} -> median {:.2}   (goal >= 0.95)",
        list(&alone, 2),
        median(&alone)
    );
    println!(
        "node cpu per event, ingest alone:  {} us -> median {:.1} us   (goal <= 4 us; pass-through median {:.1} us)",
        list(&node_cpu, 1),
        median(&node_cpu),
        median(&pass_cpu)
    );
    println!(
        "  after the first quarter:         {} us -> median {:.1} us   (pass-through median {:.1} us)",
        list(&node_steady, 1),
        median(&node_steady),
        median(&pass_steady)
    );
}

/// The middle value (the mean of the two middle ones for an even count).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    match sorted.len() % 2 {
        0 => (sorted[middle - 1] + sorted[middle]) / 2.0,
        _ => sorted[middle],
    }
}

/// Times consuming every input message and producing it again to another
/// topic, on a fresh broker: the baseline the node is held to.
async fn pass_through(
    messages: &[streamreel_node::simulate::SimulatedMessage],
    header_index: HeaderIndex,
) -> anyhow::Result<Run> {
    let (broker, high) = broker_with_input(messages, header_index).await?;
    let total: i64 = high.values().sum();
    let brokers = broker.brokers();
    broker.create_topic("passthrough", 4).await?;
    let pass_producer = kafka::producer(&brokers, kafka::DEFAULT_RECORD_LIMIT)?;
    let cpu = CpuMeter::start(broker.pid(), std::process::id())?;
    let started = Instant::now();
    let handle = tokio::runtime::Handle::current();
    let warm_up = warm_up_events(total);
    let cpu_after_warm_up = tokio::task::spawn_blocking(move || {
        let mut in_flight = InFlight::new();
        let mut consumed = 0;
        let mut cpu_after_warm_up = None;
        consume_all(&brokers, &high, |message| {
            let record = FutureRecord::to("passthrough")
                .key(message.key().unwrap_or_default())
                .payload(message.payload().unwrap_or_default());
            handle.block_on(kafka::send_record(&pass_producer, &mut in_flight, record))?;
            consumed += 1;
            if consumed == warm_up {
                cpu_after_warm_up = Some(own_cpu_seconds()?);
            }
            Ok(())
        })?;
        handle.block_on(kafka::await_all(&mut in_flight))?;
        cpu_after_warm_up.ok_or_else(|| anyhow::anyhow!("fewer than {warm_up} messages read"))
    })
    .await??;
    let elapsed = started.elapsed();
    report(
        "pass-through (consume + produce)",
        total as u64,
        elapsed,
        38_000.0,
    );
    let client = cpu.client_seconds()?;
    cpu.report(total as u64, client)?;
    let steady = SteadyCpu {
        events: total - warm_up,
        seconds: own_cpu_seconds()? - cpu_after_warm_up,
    };
    steady.report();
    Ok(Run {
        elapsed,
        client_us_per_event: client * 1e6 / total as f64,
        steady_us_per_event: steady.us_per_event(),
    })
}

/// Input events a reader handles before its CPU is measured a second time:
/// the first quarter, where it grows its buffers, queues and de-duplication
/// sets, which a node running for long pays once.
fn warm_up_events(total: i64) -> i64 {
    total / 4
}

/// A reader's CPU over the events after its warm-up.
struct SteadyCpu {
    events: i64,
    seconds: f64,
}

impl SteadyCpu {
    fn us_per_event(&self) -> f64 {
        self.seconds * 1e6 / self.events as f64
    }

    fn report(&self) {
        println!(
            "   cpu after the first quarter: client {:.1} s for {} events ({:.1} us/event)",
            self.seconds,
            self.events,
            self.us_per_event()
        );
    }
}

/// Whether the node runs its lakehouse jobs on the shipped schedule while it
/// ingests, or only after the run (to see what ingest alone costs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeJobs {
    Shipped,
    Deferred,
}

/// Times a node from process start until bronze holds every input message.
async fn node_ingest(
    messages: &[streamreel_node::simulate::SimulatedMessage],
    header_index: HeaderIndex,
    jobs: NodeJobs,
) -> anyhow::Result<Run> {
    let (broker, high) = broker_with_input(messages, header_index).await?;
    let total: i64 = high.values().sum();
    let brokers = broker.brokers();
    let data = tempfile::tempdir()?;
    let mut config = node_config(20_000, 1_000);
    if jobs == NodeJobs::Deferred {
        config.push_str("[jobs]\nenrich-interval-s = 86400\ngold-interval-s = 86400\n");
    }
    let started_at = SystemTime::now();
    let mut node = NodeProcess::start(&brokers, data.path(), &config, &[])?;
    let cpu = CpuMeter::start(broker.pid(), node.pid())?;
    let (warm_up, cpu_after_warm_up) = node_past_warm_up(&mut node, total).await?;
    let ingest = time_to_catch_up(
        data.path(),
        &high,
        started_at,
        Duration::from_secs(600),
        || {
            anyhow::ensure!(node.is_running(), "node exited: {}", node.log());
            Ok(())
        },
    )
    .await?;
    let node_cpu = cpu.client_seconds()?;
    let steady = SteadyCpu {
        events: total - warm_up,
        seconds: cpu_seconds(node.pid())? - cpu_after_warm_up,
    };
    let threads = cpu_seconds_by_thread_kind(node.pid())?;
    node.kill9()?;
    // A node that dead-lettered or dropped events would catch up sooner.
    assert_bronze_exact(data.path(), messages).await?;
    let what = match (header_index, jobs) {
        (HeaderIndex::Added, NodeJobs::Shipped) => "streamreel node (process start to bronze)",
        (HeaderIndex::Added, NodeJobs::Deferred) => "streamreel node, jobs after the run",
        (HeaderIndex::Stock, _) => "streamreel node, tansu without the header index",
    };
    report(what, total as u64, ingest, 38_000.0);
    cpu.report(total as u64, node_cpu)?;
    steady.report();
    report_threads(&threads, total);
    Ok(Run {
        elapsed: ingest,
        client_us_per_event: node_cpu * 1e6 / total as f64,
        steady_us_per_event: steady.us_per_event(),
    })
}

/// The node's CPU per event by thread kind, largest first: how much went to
/// librdkafka's own threads and how much to the runtime running the actors.
fn report_threads(threads: &BTreeMap<String, f64>, events: i64) {
    let mut kinds: Vec<(&String, &f64)> = threads.iter().filter(|(_, s)| **s > 0.0).collect();
    kinds.sort_by(|a, b| b.1.total_cmp(a.1));
    let listed: Vec<String> = kinds
        .iter()
        .map(|(kind, seconds)| format!("{kind} {:.2}", **seconds * 1e6 / events as f64))
        .collect();
    println!("   node threads, us/event: {}", listed.join(", "));
}

/// Waits until the node has consumed its warm-up's worth of events; returns
/// how many it had consumed and its CPU seconds then. Bronze's committed
/// count would lag the CPU by the open batches (up to `commit-max-events`
/// per partition), whose work would then count for the steady events: the
/// actors' own count is read just before and just after the CPU, and the two
/// averaged.
async fn node_past_warm_up(node: &mut NodeProcess, total: i64) -> anyhow::Result<(i64, f64)> {
    let warm_up = warm_up_events(total);
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        anyhow::ensure!(node.is_running(), "node exited: {}", node.log());
        anyhow::ensure!(
            Instant::now() < deadline,
            "the node did not consume {warm_up} events in 600 s"
        );
        // A status that fails (the node still starting) is asked again.
        if let Some(url) = node.admin_url()
            && let Ok(before) = consumed(&http, &url).await
            && before >= warm_up
        {
            let cpu = cpu_seconds(node.pid())?;
            let after = consumed(&http, &url).await.unwrap_or(before);
            let mark = (before + after) / 2;
            if total - mark < total / 2 {
                println!(
                    "   (the warm-up mark came late, at {mark} of {total} events: the steady figure covers fewer)"
                );
            }
            return Ok((mark, cpu));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The events the node's partition actors have consumed, from its status.
async fn consumed(http: &reqwest::Client, url: &str) -> anyhow::Result<i64> {
    let body = http
        .get(format!("{url}/admin/status"))
        .timeout(Duration::from_secs(5))
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let status: serde_json::Value = serde_json::from_slice(&body)?;
    let ingest = status["ingest"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("a status without `ingest`: {status}"))?;
    Ok(ingest.iter().filter_map(|p| p["consumed"].as_i64()).sum())
}

/// A fresh broker holding `messages` in the input topic, with its high
/// watermarks: every reader starts from the same broker state.
async fn broker_with_input(
    messages: &[streamreel_node::simulate::SimulatedMessage],
    header_index: HeaderIndex,
) -> anyhow::Result<(Broker, HashMap<i32, i64>)> {
    let broker = Broker::start_with(header_index)?;
    broker.create_topic(INPUT, 4).await?;
    let producer = kafka::producer(&broker.brokers(), kafka::DEFAULT_RECORD_LIMIT)?;
    let mut in_flight = InFlight::new();
    for message in messages {
        let record = FutureRecord::to(INPUT)
            .key(&message.key)
            .payload(&message.payload);
        kafka::send_record(&producer, &mut in_flight, record).await?;
    }
    kafka::await_all(&mut in_flight).await?;
    let brokers = broker.brokers();
    let high = tokio::task::spawn_blocking(move || high_watermarks(&brokers, INPUT)).await??;
    Ok((broker, high))
}

/// CPU used by the broker and by the client under test since `start`.
struct CpuMeter {
    broker_pid: u32,
    client_pid: u32,
    broker_start: f64,
    client_start: f64,
}

impl CpuMeter {
    fn start(broker_pid: u32, client_pid: u32) -> anyhow::Result<CpuMeter> {
        Ok(CpuMeter {
            broker_pid,
            client_pid,
            broker_start: cpu_seconds(broker_pid)?,
            client_start: cpu_seconds(client_pid)?,
        })
    }

    fn client_seconds(&self) -> anyhow::Result<f64> {
        Ok(cpu_seconds(self.client_pid)? - self.client_start)
    }

    /// `client` is passed in because a node must be measured before it is killed.
    fn report(&self, events: u64, client: f64) -> anyhow::Result<()> {
        let broker = cpu_seconds(self.broker_pid)? - self.broker_start;
        let per_event = |seconds: f64| seconds * 1e6 / events as f64;
        println!(
            "   cpu: broker {broker:.1} s ({:.1} us/event), client {client:.1} s ({:.1} us/event = {:.0} events per cpu-second)",
            per_event(broker),
            per_event(client),
            events as f64 / client
        );
        Ok(())
    }
}

/// Reads every partition up to `high`, calling `each` per message; returns the time taken.
fn consume_all(
    brokers: &str,
    high: &HashMap<i32, i64>,
    mut each: impl FnMut(&rdkafka::message::BorrowedMessage<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<Duration> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "streamreel-bench")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50")
        .set("queued.min.messages", "20000")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for partition in high.keys() {
        assignment.add_partition_offset(INPUT, *partition, Offset::Beginning)?;
    }
    let started = Instant::now();
    consumer.assign(&assignment)?;
    let mut remaining: HashMap<i32, i64> = high
        .iter()
        .filter(|(_, h)| **h > 0)
        .map(|(p, h)| (*p, *h))
        .collect();
    while !remaining.is_empty() {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message?;
        each(&message)?;
        if remaining
            .get(&message.partition())
            .is_some_and(|h| message.offset() + 1 >= *h)
        {
            remaining.remove(&message.partition());
        }
    }
    Ok(started.elapsed())
}
