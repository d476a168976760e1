use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::time::Duration;

use deltalake::datafusion::prelude::SessionContext;
use streamreel_lake::BronzeTable;
use streamreel_lake::query::{column_as_i64, column_as_strings, register_path, run_sql};
use streamreel_node::simulate::{MessageKind, SimulatedMessage};
use streamreel_protocol::BronzeRow;
use streamreel_tests::broker::Broker;
pub use streamreel_tests::bronze_reader::assert_bronze_exact;
use streamreel_tests::bronze_reader::{bronze_rows, caught_up};
use streamreel_tests::node_process::streamreel_command;
use streamreel_tests::topic_reader::{high_watermarks, read_topic};
use streamreel_tests::wait::{poll_every, wait_for};

pub const INPUT: &str = "video-events";

/// Runs the real `streamreel simulate` command and returns its stdout.
pub fn simulate_cli(broker: &Broker, events: u64, seed: u64) -> anyhow::Result<String> {
    let output = streamreel_command()?
        .current_dir(streamreel_tests::repo_root())
        .args(["simulate", "--brokers", &broker.brokers()])
        .args(["--events", &events.to_string(), "--seed", &seed.to_string()])
        .args(["--start", "2026-11-24T00:00:00Z"])
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "simulate failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

/// Runs `streamreel admin --node URL ARGS...`: whether it succeeded, and what it printed.
/// The admin token of the nodes that tests start with one. `admin_cli` always
/// sends it; a node without a token ignores it.
pub const ADMIN_TOKEN: &str = "admin-test-token-0123456789";

pub fn admin_cli(node_url: &str, args: &[&str]) -> anyhow::Result<(bool, String)> {
    let output = streamreel_command()?
        .env("STREAMREEL_ADMIN_TOKEN", ADMIN_TOKEN)
        .args(["admin", "--node", node_url])
        .args(args)
        .output()?;
    Ok((
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    ))
}

/// Waits until the node has committed every input record to bronze.
pub async fn wait_until_ingested(
    broker: &Broker,
    data_dir: &Path,
    timeout: Duration,
) -> anyhow::Result<()> {
    let brokers = broker.brokers();
    let high = tokio::task::spawn_blocking(move || high_watermarks(&brokers, INPUT)).await??;
    wait_for("bronze to catch up with the input topic", timeout, || {
        let high = high.clone();
        async move { Ok(caught_up(data_dir, &high).await?.then_some(())) }
    })
    .await
}

/// The Kafka outputs are at-least-once (a batch in flight at a kill may be
/// sent twice): every bronze event is in `clean-events`, and every malformed
/// input in the dead-letter topic.
pub async fn assert_outputs_at_least_once(
    brokers: &str,
    data_dir: &Path,
    sent: &[SimulatedMessage],
) -> anyhow::Result<()> {
    let (clean, dead) = tokio::task::spawn_blocking({
        let brokers = brokers.to_string();
        move || -> anyhow::Result<_> {
            Ok((
                read_topic(&brokers, "clean-events")?,
                read_topic(&brokers, "video-events-dlq")?,
            ))
        }
    })
    .await??;
    let mut published = HashSet::new();
    for record in &clean {
        let row: BronzeRow = serde_json::from_slice(&record.payload)?;
        published.insert(row.event_id);
    }
    let missing: Vec<_> = bronze_rows(data_dir)
        .await?
        .into_iter()
        .filter(|r| !published.contains(&r.event_id))
        .take(5)
        .map(|r| r.event_id)
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "bronze events missing from clean-events: {missing:?}"
    );
    let dead: HashSet<&[u8]> = dead.iter().map(|r| r.payload.as_slice()).collect();
    let malformed: Vec<&[u8]> = sent
        .iter()
        .filter(|m| m.kind == MessageKind::Malformed)
        .map(|m| m.payload.as_slice())
        .collect();
    anyhow::ensure!(!malformed.is_empty(), "the stream has malformed inputs");
    let lost = malformed.iter().filter(|p| !dead.contains(*p)).count();
    anyhow::ensure!(
        lost == 0,
        "{lost} of {} malformed inputs missing from the dead-letter topic",
        malformed.len()
    );
    Ok(())
}

/// `GET /admin/status` through the CLI, as JSON.
pub fn status(node_url: &str) -> anyhow::Result<serde_json::Value> {
    let (ok, out) = admin_cli(node_url, &["status"])?;
    anyhow::ensure!(ok, "admin status failed: {out}");
    Ok(serde_json::from_str(&out)?)
}

/// The sum over this node's partitions of `field` in the status's `ingest` list.
pub fn ingest_total(status: &serde_json::Value, field: &str) -> u64 {
    status["ingest"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p[field].as_u64())
        .sum()
}

/// Records bronze has committed, by the status's committed offsets (offsets
/// count from 0 per partition).
pub fn committed_records(status: &serde_json::Value) -> i64 {
    status["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["committed_offset"].as_i64())
        .map(|offset| offset + 1)
        .sum()
}

/// The admin URL of a node, once it listens.
pub async fn admin_url(
    node: &streamreel_tests::node_process::NodeProcess,
) -> anyhow::Result<String> {
    wait_for("the admin api", Duration::from_secs(30), || async {
        Ok(node.admin_url())
    })
    .await
}

/// Starts `job` through the admin CLI (or follows the run already going) and
/// waits until that run ends; fails unless it succeeded. Returns its run id.
pub async fn run_job_to_success(node_url: &str, job: &str) -> anyhow::Result<u64> {
    let (ok, out) = admin_cli(node_url, &["run", job])?;
    let run_id = if ok {
        serde_json::from_str::<serde_json::Value>(&out)?["run_id"].as_u64()
    } else {
        out.split("already running (run ")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .and_then(|id| id.parse().ok())
    }
    .ok_or_else(|| anyhow::anyhow!("{job}: no run id in {out}"))?;
    let finished = poll_every(
        Duration::from_millis(500),
        &format!("{job} run {run_id} to finish"),
        Duration::from_secs(120),
        || async {
            let (_, jobs) = admin_cli(node_url, &["jobs"])?;
            let runs: serde_json::Value = serde_json::from_str(&jobs)?;
            let run = runs["runs"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["id"] == run_id)
                .cloned();
            Ok(run.filter(|r| r["status"] != "running"))
        },
    )
    .await?;
    anyhow::ensure!(
        finished["job"] == job && finished["status"] == "succeeded",
        "{job} run {run_id} did not succeed: {finished}"
    );
    Ok(run_id)
}

/// Runs `streamreel [FLAGS] models run --lake LAKE` from the repository root
/// (where `metadata/` is); fails unless it succeeds. Returns its output.
pub fn models_run(lake: &Path, flags: &[&str]) -> anyhow::Result<std::process::Output> {
    let output = streamreel_command()?
        .current_dir(streamreel_tests::repo_root())
        .args(flags)
        .args(["models", "run", "--lake"])
        .arg(lake)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "models run failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output)
}

/// A broker whose input topic has `partitions` partitions and holds what the
/// real `streamreel simulate` sent; returns the sent messages, regenerated
/// in-process as the oracle.
pub async fn broker_with_events(
    partitions: i32,
    events: u64,
    seed: u64,
) -> anyhow::Result<(Broker, Vec<SimulatedMessage>)> {
    let broker = Broker::start()?;
    broker.create_topic(INPUT, partitions).await?;
    simulate_cli(&broker, events, seed)?;
    let sent = streamreel_tests::simulated::messages(events, seed)?;
    Ok((broker, sent))
}
/// Accepted events per (video, minute, type) in bronze.
async fn bronze_counts(lake: &Path) -> anyhow::Result<BTreeMap<(String, i64, String), u64>> {
    let ctx = SessionContext::new();
    register_path(&ctx, "bronze", &BronzeTable::path_in(lake)).await?;
    let batches = run_sql(
        &ctx,
        "SELECT video_id, event_type, CAST(date_trunc('minute', event_time) AS BIGINT) AS minute_us, \
         COUNT(*) AS n FROM bronze GROUP BY video_id, event_type, minute_us",
    )
    .await?;
    let mut counts = BTreeMap::new();
    for batch in &batches {
        let videos = column_as_strings(batch, "video_id")?;
        let types = column_as_strings(batch, "event_type")?;
        let minutes = column_as_i64(batch, "minute_us")?;
        let n = column_as_i64(batch, "n")?;
        for i in 0..batch.num_rows() {
            counts.insert(
                (videos[i].clone(), minutes[i], types[i].clone()),
                n[i] as u64,
            );
        }
    }
    Ok(counts)
}

/// How the live aggregates the node at `node_url` answers differ from the
/// same group-by over bronze, or `None` when they are equal (their totals
/// too, so no count is there for a video bronze lacks).
pub async fn live_differs_from_bronze(
    node_url: &str,
    lake: &Path,
) -> anyhow::Result<Option<String>> {
    let http = reqwest::Client::new();
    let get = |path: String| {
        let request = http.get(format!("{node_url}{path}"));
        async move {
            let answer = request.send().await?;
            let code = answer.status();
            let body: serde_json::Value = serde_json::from_slice(&answer.bytes().await?)?;
            anyhow::ensure!(code.is_success(), "{path}: {code} {body}");
            anyhow::Ok(body)
        }
    };
    let expected = bronze_counts(lake).await?;
    let videos: BTreeSet<&String> = expected.keys().map(|(v, _, _)| v).collect();
    let mut live = BTreeMap::new();
    for video in videos {
        let answer = get(format!("/live/video/{video}")).await?;
        for minute in answer["minutes"].as_array().into_iter().flatten() {
            let time = chrono::DateTime::parse_from_rfc3339(
                minute["minute"].as_str().unwrap_or_default(),
            )?;
            for kind in ["play", "pause", "seek", "stop"] {
                let n = minute[kind].as_u64().unwrap_or(0);
                if n > 0 {
                    live.insert(
                        (video.clone(), time.timestamp_micros(), kind.to_string()),
                        n,
                    );
                }
            }
        }
    }
    if live != expected {
        return Ok(Some(format!(
            "live aggregates differ from bronze: {} live keys, {} bronze keys; first differences: {:?}",
            live.len(),
            expected.len(),
            expected
                .iter()
                .filter(|(k, v)| live.get(*k) != Some(v))
                .take(3)
                .collect::<Vec<_>>()
        )));
    }
    let answer = get("/dashboard/api/live".to_string()).await?;
    let bronze_total: u64 = expected.values().sum();
    if answer["accepted_total"].as_u64() != Some(bronze_total) {
        return Ok(Some(format!(
            "live total {} against bronze's {bronze_total}",
            answer["accepted_total"]
        )));
    }
    // The rate's counter starts from the total and keeps what is forgotten.
    if answer["accepted_counter"].as_u64() < Some(bronze_total) {
        return Ok(Some(format!(
            "live counter {} below bronze's {bronze_total}",
            answer["accepted_counter"]
        )));
    }
    Ok(None)
}
