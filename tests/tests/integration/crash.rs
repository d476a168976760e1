//! Chaos: the node is SIGKILLed in the middle of ingest (twice), and two of its
//! partition actors panic (one before a bronze commit, one between a bronze
//! commit and its checkpoint); after restarts bronze is still exact, by event
//! id, clean-events holds every bronze event, the dead-letter topic every
//! malformed input, and the live aggregates exactly bronze's events.

use std::collections::HashSet;
use std::time::Duration;

use streamreel_actors::fault::{PANIC_AFTER_COMMIT_ENV, PANIC_BEFORE_COMMIT_ENV};
use streamreel_node::simulate::MessageKind;
use streamreel_tests::bronze_reader::bronze_rows;
use streamreel_tests::node_process::{NodeProcess, node_config};
use streamreel_tests::wait::poll_every;

use crate::support::{
    admin_url, assert_bronze_exact, assert_outputs_at_least_once, broker_with_events,
    committed_records, ingest_total, live_differs_from_bronze, status, wait_until_ingested,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_ingest_loses_nothing_and_doubles_nothing() -> anyhow::Result<()> {
    const EVENTS: u64 = 60_000;
    const SEED: u64 = 7;
    let (broker, sent) = broker_with_events(4, EVENTS, SEED).await?;
    let data = tempfile::tempdir()?;
    // Small batches: many commits, so a kill lands between and inside them.
    let config = node_config(500, 200);
    // What bronze holds once everything is ingested: each valid event once.
    let accepted = sent
        .iter()
        .filter(|m| m.kind == MessageKind::Valid)
        .filter_map(|m| m.event_id.as_deref())
        .collect::<HashSet<_>>()
        .len();

    for (round, kill_at) in [(1, 8_000i64), (2, 25_000)] {
        // Round 1 also panics partition 2 between a bronze commit and its
        // checkpoint: duplicates of that batch sent later must still be caught.
        let env: &[(&str, &str)] = if round == 1 {
            &[
                (PANIC_BEFORE_COMMIT_ENV, "1"),
                (PANIC_AFTER_COMMIT_ENV, "2"),
            ]
        } else {
            &[]
        };
        let mut node = NodeProcess::start(&broker.brokers(), data.path(), &config, env)?;
        let url = admin_url(&node).await?;
        poll_every(
            Duration::from_millis(250),
            &format!("{kill_at} records committed"),
            Duration::from_secs(120),
            || {
                let alive = node.is_running();
                let url = url.clone();
                async move {
                    anyhow::ensure!(alive, "node exited early");
                    Ok((committed_records(&status(&url)?) >= kill_at).then_some(()))
                }
            },
        )
        .await
        .map_err(|e| e.context(node.log()))?;
        if round == 1 {
            let restarts = ingest_total(&status(&url)?, "restarts");
            assert!(
                restarts >= 2,
                "the supervisor restarted both panicked actors ({restarts} restarts)"
            );
            // Partition 2 died between its bronze commit and its checkpoint:
            // its new actor takes that batch's ids from bronze, not Raft
            // (logged once it resumed, after its restart backoff).
            poll_every(
                Duration::from_millis(100),
                "partition 2 to resume replaying its uncheckpointed batch",
                Duration::from_secs(30),
                || {
                    let replayed = replayed_on_resume(&node.log(), 2);
                    async move { Ok(replayed.iter().any(|n| *n > 0).then_some(())) }
                },
            )
            .await
            .map_err(|e| e.context(node.log()))?;
        }
        node.kill9()?;
        let rows = bronze_rows(data.path()).await?.len();
        assert!(
            rows < accepted,
            "killed mid-ingest, not after it ({rows} of {accepted} rows)"
        );
    }

    let mut node = NodeProcess::start(&broker.brokers(), data.path(), &config, &[])?;
    wait_until_ingested(&broker, data.path(), Duration::from_secs(180))
        .await
        .map_err(|e| e.context(node.log()))?;
    assert_bronze_exact(data.path(), &sent).await?;
    // The batches lost to the kills and the one committed before its
    // checkpoint were counted live exactly once: by their first owner's
    // checkpoint or by the resume's replay. (Checkpoints follow commits, so
    // the last one may land just after bronze holds everything.)
    let url = admin_url(&node).await?;
    let lake = data.path().join("lake");
    let equal = poll_every(
        Duration::from_millis(250),
        "the live aggregates to equal bronze",
        Duration::from_secs(30),
        || {
            let (url, lake) = (url.clone(), lake.clone());
            async move {
                let difference = live_differs_from_bronze(&url, &lake).await?;
                Ok(difference.is_none().then_some(()))
            }
        },
    )
    .await;
    if let Err(e) = equal {
        let difference = live_differs_from_bronze(&url, &lake).await?;
        return Err(e.context(format!("{difference:?}")).context(node.log()));
    }
    node.kill9()?;

    assert_outputs_at_least_once(&broker.brokers(), data.path(), &sent).await?;
    Ok(())
}

/// What each resume of `partition` in a node's log replayed from bronze.
fn replayed_on_resume(log: &str, partition: i32) -> Vec<u64> {
    let field = |line: &str, name: &str| -> Option<String> {
        let start = line.find(&format!(" {name}="))? + name.len() + 2;
        line[start..].split_whitespace().next().map(str::to_string)
    };
    log.lines()
        .filter(|line| line.contains("partition actor resumed"))
        .filter(|line| field(line, "partition") == Some(partition.to_string()))
        .filter_map(|line| field(line, "replayed")?.parse().ok())
        .collect()
}
