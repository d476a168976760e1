//! The cluster's numbers: failover time over repeated SIGKILLs while events
//! stream, three nodes against one on the same broker and events, the Raft
//! cost of a checkpoint, the snapshot size at 1M events per partition, and
//! the peak memory of each node.

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime};

use streamreel_cluster::dedup::{DedupSettings, DedupWindow};
use streamreel_cluster::live::LiveBatch;
use streamreel_cluster::state::{ClusterState, StateImage, StateSettings};
use streamreel_cluster::{CheckpointIncrement, Command as RaftCommand};
use streamreel_protocol::codec::{decode, encode, encoded_len};
use streamreel_tests::broker::{Broker, HeaderIndex};
use streamreel_tests::bronze_reader::time_to_catch_up;
use streamreel_tests::cluster::Cluster;
use streamreel_tests::node_process::streamreel_command;
use streamreel_tests::simulated;

use super::{INPUT, broker_with_input};

const BATCHING: &str = "commit-max-events = 20000\ncommit-interval-ms = 1000\n";

pub async fn cluster(events: u64, kills: u32) -> anyhow::Result<()> {
    throughput(events).await?;
    // `--kills 0` measures throughput and snapshots only.
    if kills > 0 {
        failover(kills).await?;
    }
    snapshot_size()?;
    Ok(())
}

/// Three nodes against one, each on a fresh broker holding the same input.
async fn throughput(events: u64) -> anyhow::Result<()> {
    println!("== cluster throughput ({events} messages, 4 partitions, a fresh broker per run) ==");
    let messages = simulated::messages(events, 3)?;
    let mut elapsed = BTreeMap::new();
    for size in [1u64, 3] {
        let (broker, high) = broker_with_input(&messages, HeaderIndex::Added).await?;
        let base = tempfile::tempdir()?;
        let started_at = SystemTime::now();
        let mut cluster = Cluster::start(&broker.brokers(), base.path(), size, BATCHING)?;
        let took = time_to_catch_up(
            base.path(),
            &high,
            started_at,
            Duration::from_secs(900),
            || {
                for id in cluster.ids() {
                    anyhow::ensure!(
                        cluster.is_running(id),
                        "node {id} exited: {}",
                        cluster.logs()
                    );
                }
                Ok(())
            },
        )
        .await?;
        let leader = cluster.wait_for_leader(Duration::from_secs(10)).await?;
        let mut checkpoints = 0.0;
        let mut ms = 0.0;
        let mut bytes = 0.0;
        for id in cluster.ids() {
            if let Ok(status) = cluster.status(id).await {
                for p in status["ingest"].as_array().into_iter().flatten() {
                    let n = p["checkpoints"].as_f64().unwrap_or(0.0);
                    checkpoints += n;
                    ms += n * p["checkpoint_ms_avg"].as_f64().unwrap_or(0.0);
                    bytes += n * p["checkpoint_bytes_avg"].as_f64().unwrap_or(0.0);
                }
            }
        }
        println!(
            "{size} node(s): {:>9.0} events/s  ({} messages in {:.1} s, process start to bronze; leader {leader})",
            events as f64 / took.as_secs_f64(),
            events,
            took.as_secs_f64()
        );
        if checkpoints > 0.0 {
            println!(
                "           Raft checkpoint: {checkpoints:.0} checkpoints, {:.1} ms and {:.0} bytes each on average",
                ms / checkpoints,
                bytes / checkpoints
            );
        }
        print_rss(&cluster)?;
        elapsed.insert(size, took);
        for id in cluster.ids() {
            cluster.kill(id)?;
        }
    }
    println!(
        "three nodes / one node = {:.2} (same broker process kind, same events)",
        elapsed[&1].as_secs_f64() / elapsed[&3].as_secs_f64()
    );
    Ok(())
}

/// Each running member's peak RSS. A member restarted by the failover
/// rounds reports its new process's peak only.
fn print_rss(cluster: &Cluster) -> anyhow::Result<()> {
    for (id, pid) in cluster.pids() {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let peak = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/{pid}/status"))?;
        println!(
            "           node {id} peak RSS {} MiB (goal < 500)",
            peak / 1024
        );
    }
    Ok(())
}

fn stream(broker: &Broker, rate: u64, seconds: u64) -> anyhow::Result<Child> {
    Ok(streamreel_command()?
        .current_dir(streamreel_tests::repo_root())
        .args(["simulate", "--brokers", &broker.brokers()])
        .args(["--events", &(rate * seconds).to_string(), "--seed", "9"])
        .args(["--rate", &rate.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

/// Each partition's owner and committed offset, as `via` sees them. The
/// owner is `None` while the partition has none, or while its checkpoint is
/// still one of an earlier owner's (the new owner has not checkpointed yet).
async fn progress(cluster: &Cluster, via: u64) -> Option<BTreeMap<i64, (Option<u64>, i64)>> {
    let status = cluster.status(via).await.ok()?;
    Some(
        status["partitions"]
            .as_array()?
            .iter()
            .map(|p| {
                let checkpointed = p["checkpoint_epoch"] == p["epoch"];
                (
                    p["partition"].as_i64().unwrap_or(-1),
                    (
                        p["owner"].as_u64().filter(|_| checkpointed),
                        p["committed_offset"].as_i64().unwrap_or(-1),
                    ),
                )
            })
            .collect(),
    )
}

/// SIGKILLs a member `kills` times while events stream (each member in turn,
/// the leader among them), and times kill -> every partition it owned
/// advancing in bronze again under a new owner.
async fn failover(kills: u32) -> anyhow::Result<()> {
    println!("== failover: {kills} SIGKILLs of a member of three while events stream ==");
    let broker = Broker::start()?;
    broker.create_topic(INPUT, 6).await?;
    let base = tempfile::tempdir()?;
    let mut cluster = Cluster::start(
        &broker.brokers(),
        base.path(),
        3,
        "commit-max-events = 5000\ncommit-interval-ms = 250\n",
    )?;
    let leader = cluster.wait_for_leader(Duration::from_secs(60)).await?;
    cluster
        .wait_settled(leader, 6, Duration::from_secs(60))
        .await?;
    let mut simulator = stream(&broker, 1_000, 40 * kills as u64 + 60)?;
    let mut times = Vec::new();
    for round in 0..kills {
        let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
        let ids = cluster.ids();
        let victim = ids[round as usize % ids.len()];
        let via = *ids.iter().find(|id| **id != victim).expect("a survivor");
        // The victim restarted by an earlier round gets partitions back by a
        // rebalance; killing it before that would time an empty failover.
        let asked = Instant::now();
        let owned: Vec<(i64, i64)> = loop {
            if let Some(before) = progress(&cluster, via).await {
                let owned: Vec<(i64, i64)> = before
                    .iter()
                    .filter(|(_, (owner, _))| *owner == Some(victim))
                    .map(|(p, (_, offset))| (*p, *offset))
                    .collect();
                if !owned.is_empty() {
                    break owned;
                }
            }
            anyhow::ensure!(
                asked.elapsed() < Duration::from_secs(60),
                "node {victim} owns no partition after 60 s: {}",
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let killed = Instant::now();
        cluster.kill(victim)?;
        loop {
            anyhow::ensure!(
                killed.elapsed() < Duration::from_secs(60),
                "no failover: {}",
                cluster.logs()
            );
            if let Some(now) = progress(&cluster, via).await {
                let advanced = owned.iter().all(|(p, offset)| {
                    now.get(p)
                        .is_some_and(|(owner, o)| owner.is_some_and(|n| n != victim) && o > offset)
                });
                if advanced {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let took = killed.elapsed();
        println!(
            "kill {}: node {victim}{} owned {} partitions, advancing again after {:.2} s",
            round + 1,
            if victim == leader { " (leader)" } else { "" },
            owned.len(),
            took.as_secs_f64()
        );
        times.push(took);
        cluster.start_node(victim)?;
        let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
        cluster
            .wait_owned(leader, 6, Duration::from_secs(60))
            .await?;
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "failover median {:.2} s (goal < 3 s), max {:.2} s over {} kills",
        median.as_secs_f64(),
        times.last().expect("kills").as_secs_f64(),
        times.len()
    );
    print_rss(&cluster)?;
    let _ = simulator.kill();
    Ok(())
}

/// The replicated state of one partition after 1M events, and one batch's checkpoint.
fn snapshot_size() -> anyhow::Result<()> {
    println!("== Raft state size ==");
    let settings = StateSettings {
        dedup: DedupSettings {
            window_events: 1_000_000,
            window: Duration::from_secs(86_400),
            max_ids: 4_000_000,
        },
        live_retention_us: 48 * 3_600_000_000,
        live_max_entries: 5_000_000,
        job_history: 200,
    };
    let mut state = ClusterState::new(settings);
    let members = [1].into();
    state.apply(
        &RaftCommand::AddPartitions {
            partitions: vec![0],
        },
        &members,
    );
    state.apply(
        &RaftCommand::Assign {
            partition: 0,
            to: 1,
            expected_epoch: 0,
        },
        &members,
    );
    let messages = simulated::messages(1_000_000, 4)?;
    let mut window = DedupWindow::new(settings.dedup);
    let mut first_batch = 0;
    let mut applying = Duration::ZERO;
    let mut messages_applied = 0;
    for (batch_no, chunk) in messages.chunks(20_000).enumerate() {
        let mut live = LiveBatch::default();
        let mut new_ids = Vec::new();
        for message in chunk {
            let Ok(event) = streamreel_protocol::parse_event(&message.payload) else {
                continue;
            };
            let id = streamreel_protocol::id_hash(&event.event_id);
            if window.insert(id, 0) {
                new_ids.push(id);
                live.add(
                    &event.video_id,
                    event.event_time_us,
                    event.event_type.as_str(),
                );
            }
        }
        let command = RaftCommand::Checkpoint(CheckpointIncrement {
            partition: 0,
            epoch: 1,
            after_offset: batch_no as i64 * 20_000 - 1,
            last_offset: (batch_no as i64 + 1) * 20_000 - 1,
            delta_version: batch_no as i64,
            new_ids,
            // Times of the events' days, so that the varints take the bytes
            // they do in use and the live counts are kept (they drop events
            // far ahead of the checkpoint's clock).
            accepted_at_us: simulated::START_US + batch_no as i64 * 1_000_000,
            live: live.take(),
            at_ms: (simulated::START_US + batch_no as i64 * 1_000_000) / 1_000,
        });
        if batch_no == 0 {
            first_batch = encoded_len(&command);
        }
        let started = Instant::now();
        state.apply(&command, &members);
        applying += started.elapsed();
        messages_applied += chunk.len();
    }
    let image = encode(&state.image())?;
    let started = Instant::now();
    decode::<StateImage>(&image)?;
    let read_back = format!("read back in {} ms", started.elapsed().as_millis());
    println!("one checkpoint of a 20,000-event batch: {first_batch} bytes");
    // What every member spends per event on a partition it replicates
    // (folding ids and live counts), apart from Raft's own log and network.
    println!(
        "applying the checkpoints of {messages_applied} messages to a replica: {:.0} ms ({:.2} us per message)",
        applying.as_secs_f64() * 1e3,
        applying.as_secs_f64() * 1e6 / messages_applied.max(1) as f64
    );
    println!(
        "snapshot of one partition after 1,000,000 events: {:.1} MiB ({} ids in the window), {read_back}",
        image.len() as f64 / (1024.0 * 1024.0),
        state.partition(0).map_or(0, |p| p.dedup.len())
    );
    Ok(())
}
