use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use streamreel_node::simulate::{MessageKind, SimulatedMessage};
use streamreel_tests::broker::Broker;
use streamreel_tests::bronze_reader::{bronze_rows, caught_up};
use streamreel_tests::node_process::streamreel_binary;
use streamreel_tests::topic_reader::high_watermarks;
use streamreel_tests::wait::wait_for;

pub const INPUT: &str = "video-events";

/// Runs the real `streamreel simulate` command and returns its stdout.
pub fn simulate_cli(broker: &Broker, events: u64, seed: u64) -> anyhow::Result<String> {
    let output = Command::new(streamreel_binary()?)
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
pub fn admin_cli(node_url: &str, args: &[&str]) -> anyhow::Result<(bool, String)> {
    let output = Command::new(streamreel_binary()?)
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

/// Bronze holds exactly the valid events sent, each once.
pub async fn assert_bronze_exact(data_dir: &Path, sent: &[SimulatedMessage]) -> anyhow::Result<()> {
    let rows = bronze_rows(data_dir).await?;
    let expected: HashSet<&str> = sent
        .iter()
        .filter(|m| m.kind == MessageKind::Valid)
        .filter_map(|m| m.event_id.as_deref())
        .collect();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for row in &rows {
        *seen.entry(row.event_id.as_str()).or_default() += 1;
    }
    let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    anyhow::ensure!(
        doubled.is_empty(),
        "event ids written more than once: {doubled:?}"
    );
    let missing: Vec<_> = expected
        .iter()
        .filter(|id| !seen.contains_key(**id))
        .take(5)
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "valid events missing from bronze: {missing:?} ..."
    );
    let unexpected: Vec<_> = seen
        .keys()
        .filter(|id| !expected.contains(**id))
        .take(5)
        .collect();
    anyhow::ensure!(
        unexpected.is_empty(),
        "bronze holds ids never sent as valid: {unexpected:?}"
    );
    assert_eq!(rows.len(), expected.len());
    Ok(())
}
