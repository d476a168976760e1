//! Chaos: the node is SIGKILLed in the middle of ingest (twice), and one of its
//! partition actors panics; after restarts bronze is still exact, by event id.

use std::time::Duration;

use streamreel_actors::fault::PANIC_BEFORE_COMMIT_ENV;
use streamreel_tests::broker::Broker;
use streamreel_tests::bronze_reader::bronze_rows;
use streamreel_tests::node_process::{NodeProcess, node_config};
use streamreel_tests::simulated;

use crate::support::{INPUT, assert_bronze_exact, simulate_cli, wait_until_ingested};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_ingest_loses_nothing_and_doubles_nothing() -> anyhow::Result<()> {
    const EVENTS: u64 = 60_000;
    const SEED: u64 = 7;
    let broker = Broker::start()?;
    broker.create_topic(INPUT, 4).await?;
    simulate_cli(&broker, EVENTS, SEED)?;
    let sent = simulated::messages(EVENTS, SEED)?;
    let data = tempfile::tempdir()?;
    // Small batches: many commits, so a kill lands between and inside them.
    let config = node_config(500, 200);

    for (round, kill_at) in [(1, 8_000), (2, 25_000)] {
        let env: &[(&str, &str)] = if round == 1 {
            &[(PANIC_BEFORE_COMMIT_ENV, "1")]
        } else {
            &[]
        };
        let mut node = NodeProcess::start(&broker.brokers(), data.path(), &config, env)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while bronze_rows(data.path()).await?.len() < kill_at {
            anyhow::ensure!(node.is_running(), "node exited early: {}", node.log());
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "no progress: {}",
                node.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        node.kill9()?;
        if round == 1 {
            let log = node.log();
            assert!(
                log.contains("injected fault") && log.contains("restarting"),
                "the supervisor restarted the panicked actor:\n{log}"
            );
        }
        let rows = bronze_rows(data.path()).await?.len();
        assert!(
            rows < sent.len(),
            "killed mid-ingest, not after it ({rows} rows)"
        );
    }

    let mut node = NodeProcess::start(&broker.brokers(), data.path(), &config, &[])?;
    wait_until_ingested(&broker, data.path(), Duration::from_secs(180))
        .await
        .map_err(|e| e.context(node.log()))?;
    assert_bronze_exact(data.path(), &sent).await?;
    node.kill9()?;
    Ok(())
}
