//! Inputs and outages that must never stall a partition, lose an event or
//! double one: oversized and broken records, a broker that is down when the
//! node starts and goes down in the middle of ingest, a stop with a batch
//! in hand, and a start on a lake (another topic or Kafka cluster) or data
//! dir that belongs to something else.

use std::collections::HashSet;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use streamreel_actors::fault::FAIL_BRONZE_COMMITS_ENV;
use streamreel_node::simulate::MessageKind;
use streamreel_protocol::UserKeyer;
use streamreel_tests::TEST_SECRET;
use streamreel_tests::broker::{Broker, free_port};
use streamreel_tests::bronze_reader::bronze_rows;
use streamreel_tests::node_process::{NodeProcess, node_config, streamreel_command};
use streamreel_tests::simulated;
use streamreel_tests::topic_reader::read_topic;
use streamreel_tests::wait::{poll_every, wait_for};

use crate::support::{
    INPUT, admin_url, assert_bronze_exact, broker_with_events, committed_records, ingest_total,
    simulate_cli, status, wait_until_ingested,
};

const POLL: Duration = Duration::from_millis(250);

fn event(id: &str, user: &str, device: &str) -> Vec<u8> {
    format!(
        r#"{{"event_id":"{id}","session_id":"s-{id}","user_id":"{user}","video_id":"vid-0001","event_type":"play","position_s":1.5,"event_time":"2026-11-24T07:00:00Z","region":"eu-west","device":"{device}"}}"#
    )
    .into_bytes()
}

/// An event whose payload is exactly `bytes` long, padded in `device`.
fn event_of_size(id: &str, user: &str, bytes: usize) -> Vec<u8> {
    let bare = event(id, user, "").len();
    event(id, user, &"d".repeat(bytes - bare))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_pills_never_stall_a_partition() -> anyhow::Result<()> {
    let broker = Broker::start()?;
    broker.create_topic(INPUT, 1).await?;
    let data = tempfile::tempdir()?;
    let mut node = NodeProcess::start(
        &broker.brokers(),
        data.path(),
        &node_config(1_000, 200),
        &[],
    )?;
    // The record limit the node learnt from the broker, from its log.
    let limit: usize = wait_for(
        "the node to reach the broker",
        Duration::from_secs(60),
        || {
            let log = node.log();
            async move {
                Ok(log
                    .lines()
                    .find(|l| l.contains("kafka brokers ready"))
                    .and_then(|l| l.split("record_limit=").nth(1))
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|n| n.parse().ok()))
            }
        },
    )
    .await?;
    let max_event = limit - 4_096;

    let huge_number = |id: &str, bytes: usize| {
        format!(
            r#"{{"event_id":"{id}","position_s":"{}","user_id":"secret-user"}}"#,
            "7".repeat(bytes)
        )
        .into_bytes()
    };
    let mut invalid_utf8 = event("bad-utf8", "u-utf8", "tv");
    invalid_utf8[14] = 0xff;
    let poison: Vec<(&str, Vec<u8>)> = vec![
        ("u-1mb", huge_number("one-mb", 1_000_000)),
        ("u-5mb", huge_number("five-mb", 5_000_000)),
        (
            "u-deep",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
        ),
        ("u-utf8", invalid_utf8),
        ("u-over", event_of_size("one-over", "u-over", max_event + 1)),
    ];
    let good: Vec<(&str, Vec<u8>)> = vec![
        ("u-first", event("first", "u-first", "tv")),
        ("u-limit", event_of_size("at-limit", "u-limit", max_event)),
        ("u-last", event("last", "u-last", "web")),
    ];
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("message.max.bytes", "10000000")
        .create()?;
    // A record without a value (a tombstone) is refused, and its dead
    // letter has no value either.
    producer
        .send(
            FutureRecord::<str, [u8]>::to(INPUT).key("u-tombstone"),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| anyhow::anyhow!("producing the tombstone: {e}"))?;
    for (key, payload) in good[..1].iter().chain(&poison).chain(&good[1..]) {
        producer
            .send(
                FutureRecord::to(INPUT).key(*key).payload(payload),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("producing {key}: {e}"))?;
    }

    wait_until_ingested(&broker, data.path(), Duration::from_secs(120))
        .await
        .map_err(|e| e.context(node.log()))?;
    let ids: HashSet<String> = bronze_rows(data.path())
        .await?
        .into_iter()
        .map(|r| r.event_id)
        .collect();
    assert_eq!(
        ids,
        HashSet::from(["first".into(), "at-limit".into(), "last".into()])
    );

    let brokers = broker.brokers();
    let dlq =
        tokio::task::spawn_blocking(move || read_topic(&brokers, "video-events-dlq")).await??;
    assert_eq!(dlq.len(), poison.len() + 1);
    let keyer = UserKeyer::new(TEST_SECRET.as_bytes());
    let tombstone = keyer.user_key("u-tombstone").to_hex();
    let tombstone = dlq
        .iter()
        .find(|r| r.key.as_deref() == Some(tombstone.as_bytes()))
        .expect("the tombstone's dead letter");
    assert!(tombstone.null_value, "no value, as the input had none");
    assert_eq!(tombstone.headers["error-kind"], "not_json");
    for (key, payload) in &poison {
        let user_key = keyer.user_key(key).to_hex();
        let letter = dlq
            .iter()
            .find(|r| r.key.as_deref() == Some(user_key.as_bytes()))
            .unwrap_or_else(|| panic!("dead letter of {key}, keyed by its user_key"));
        let error = &letter.headers["error"];
        assert!(
            error.len() <= 256 && !error.contains("777"),
            "{key}: {error}"
        );
        assert!(letter.payload.len() <= limit && !letter.null_value);
        if payload.len() + 1_024 < limit {
            assert_eq!(&letter.payload, payload, "{key} kept byte for byte");
            assert!(!letter.headers.contains_key("truncated-from-bytes"));
        } else {
            assert!(payload.starts_with(&letter.payload), "{key}");
            assert_eq!(
                letter.headers.get("truncated-from-bytes"),
                Some(&payload.len().to_string()),
                "{key}"
            );
        }
    }
    let too_large = dlq
        .iter()
        .filter(|r| r.headers["error-kind"] == "too_large")
        .count();
    // 1 MB fits the limit: it is read, and refused for its type.
    assert_eq!(too_large, 2, "5 MB and one byte over the limit");
    let one_mb = keyer.user_key("u-1mb").to_hex();
    let one_mb = dlq
        .iter()
        .find(|r| r.key.as_deref() == Some(one_mb.as_bytes()))
        .expect("the 1 MB record's dead letter");
    assert_eq!(one_mb.headers["error-kind"], "schema");

    let url = admin_url(&node).await?;
    let status = status(&url)?;
    assert_eq!(
        ingest_total(&status, "restarts"),
        0,
        "never stalled: {status}"
    );
    assert_eq!(ingest_total(&status, "rejected"), poison.len() as u64 + 1);
    let log = node.log();
    assert!(
        !log.contains("secret-user") && !log.contains("7777777777"),
        "input values never reach the log"
    );
    assert!(node.stop(Duration::from_secs(60))?.success());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_down_at_start_and_mid_ingest_loses_and_doubles_nothing() -> anyhow::Result<()> {
    const EVENTS: u64 = 40_000;
    const SEED: u64 = 19;
    let port = free_port()?;
    let data = tempfile::tempdir()?;
    let mut node = NodeProcess::start(
        &format!("127.0.0.1:{port}"),
        data.path(),
        &node_config(300, 100),
        &[],
    )?;
    let url = admin_url(&node).await?;
    let broker_reachable = |want: bool| {
        let url = url.clone();
        async move {
            poll_every(
                POLL,
                &format!("status to say the broker is reachable: {want}"),
                Duration::from_secs(60),
                || {
                    let url = url.clone();
                    async move {
                        let status = status(&url)?;
                        let reachable = status["broker"]["reachable"].as_bool();
                        Ok((reachable == Some(want)).then_some(status))
                    }
                },
            )
            .await
        }
    };
    let down = broker_reachable(false).await?;
    assert!(down["broker"]["error"].is_string(), "{down}");
    assert!(node.is_running(), "a node without its broker keeps running");

    let mut broker = Broker::start_on(port)?;
    broker.create_topic(INPUT, 4).await?;
    simulate_cli(&broker, EVENTS, SEED)?;
    let sent = simulated::messages(EVENTS, SEED)?;
    broker_reachable(true).await?;
    poll_every(
        POLL,
        "ingest to be under way",
        Duration::from_secs(120),
        || async {
            let committed = committed_records(&status(&url)?);
            Ok((committed >= 4_000).then_some(()))
        },
    )
    .await
    .map_err(|e| e.context(node.log()))?;

    let restarts_before = ingest_total(&status(&url)?, "restarts");
    broker.kill()?;
    let during = broker_reachable(false).await?;
    let committed = committed_records(&during);
    assert!(
        committed < EVENTS as i64,
        "the outage began mid-ingest ({committed} committed)"
    );
    broker.restart()?;
    wait_until_ingested(&broker, data.path(), Duration::from_secs(240))
        .await
        .map_err(|e| e.context(node.log()))?;
    assert_bronze_exact(data.path(), &sent).await?;
    // The actors outlived the outage: their consumers reconnected by
    // themselves, and no batch in hand was given up and sent again.
    let after = status(&url)?;
    assert!(ingest_total(&after, "consumer_errors") > 0, "{after}");
    assert_eq!(ingest_total(&after, "restarts"), restarts_before, "{after}");
    assert!(node.is_running());
    assert!(node.stop(Duration::from_secs(60))?.success());
    // The broker was down when the node started, so the partitions recorded
    // its cluster as they resumed: another cluster is refused.
    let cluster = broker_cluster_id(&broker).await?;
    assert_lake_cluster(data.path(), &cluster).await
}

async fn broker_cluster_id(broker: &Broker) -> anyhow::Result<String> {
    let brokers = broker.brokers();
    tokio::task::spawn_blocking(move || {
        streamreel_actors::kafka::cluster_id(&brokers, Duration::from_secs(10))
    })
    .await??
    .ok_or_else(|| anyhow::anyhow!("the broker named no cluster id"))
}

/// Asserts that the lake in `data` records `cluster` as its Kafka cluster:
/// another id is refused, naming it.
async fn assert_lake_cluster(data: &std::path::Path, cluster: &str) -> anyhow::Result<()> {
    let bronze = streamreel_lake::BronzeTable::open_or_create(&data.join("lake")).await?;
    match bronze.ensure_kafka_cluster("not-this-cluster").await {
        Err(streamreel_lake::LakeError::KafkaClusterMismatch { found, .. }) => {
            assert_eq!(found, cluster);
            Ok(())
        }
        other => anyhow::bail!("expected the lake to name cluster {cluster:?}: {other:?}"),
    }
}

/// What is on disk decides what a node may do with it: a lake keeps the topic
/// and the Kafka cluster it was ingested from, a data dir the member that
/// first used it. All are refused at start, the topic and the member before
/// any broker is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_another_topics_or_clusters_lake_and_another_members_data_dir()
-> anyhow::Result<()> {
    let no_broker = "127.0.0.1:1";
    let data = tempfile::tempdir()?;
    let bronze = streamreel_lake::BronzeTable::open_or_create(&data.path().join("lake")).await?;
    bronze.ensure_input_topic(INPUT).await?;
    let other_topic = format!(
        "{}[kafka]\ninput-topic = \"other-events\"\n",
        node_config(1_000, 1_000)
    );
    let mut node = NodeProcess::start(no_broker, data.path(), &other_topic, &[])?;
    let exit = node.wait_for_exit(Duration::from_secs(30))?;
    assert_eq!(exit.code(), Some(1), "{}", node.log());
    assert!(
        node.log().contains(&format!(
            "ingested from topic \"{INPUT}\", and this node reads \"other-events\""
        )),
        "{}",
        node.log()
    );

    let data = tempfile::tempdir()?;
    std::fs::write(data.path().join("node-id"), "2\n")?;
    let mut node = NodeProcess::start(no_broker, data.path(), &node_config(1_000, 1_000), &[])?;
    let exit = node.wait_for_exit(Duration::from_secs(30))?;
    assert_eq!(exit.code(), Some(1), "{}", node.log());
    assert!(
        node.log().contains("belongs to node 2") && node.log().contains("this is node 1"),
        "{}",
        node.log()
    );

    // A topic of the same name on another cluster: its offsets hold other
    // records, so resuming there would skip or repeat events.
    let broker = Broker::start()?;
    let cluster = broker_cluster_id(&broker).await?;
    let data = tempfile::tempdir()?;
    let bronze = streamreel_lake::BronzeTable::open_or_create(&data.path().join("lake")).await?;
    bronze.ensure_input_topic(INPUT).await?;
    bronze.ensure_kafka_cluster("another-cluster").await?;
    let mut node = NodeProcess::start(
        &broker.brokers(),
        data.path(),
        &node_config(1_000, 1_000),
        &[],
    )?;
    let exit = node.wait_for_exit(Duration::from_secs(30))?;
    assert_eq!(exit.code(), Some(1), "{}", node.log());
    assert!(
        node.log().contains(&format!(
            "ingested from the Kafka cluster \"another-cluster\", and this node's brokers belong \
             to cluster {cluster:?}"
        )),
        "{}",
        node.log()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_commits_the_batch_in_hand_or_exits_non_zero() -> anyhow::Result<()> {
    const EVENTS: u64 = 3_000;
    const SEED: u64 = 23;
    let (broker, sent) = broker_with_events(2, EVENTS, SEED).await?;
    let records = sent.len() as u64;
    let data = tempfile::tempdir()?;
    // Batches that would only commit after ten minutes: only a stop commits them.
    let config = node_config(200_000, 600_000);
    let consumed_everything = |url: String| async move {
        poll_every(POLL, "every event to be consumed", Duration::from_secs(120), || {
            let url = url.clone();
            async move { Ok((ingest_total(&status(&url)?, "consumed") == records).then_some(())) }
        })
        .await
    };

    // A lake that refuses every commit keeps a stop busy retrying: a second
    // signal exits at once.
    let failing_lake = [(FAIL_BRONZE_COMMITS_ENV, "1000000")];
    let mut node = NodeProcess::start(&broker.brokers(), data.path(), &config, &failing_lake)?;
    consumed_everything(admin_url(&node).await?)
        .await
        .map_err(|e| e.context(node.log()))?;
    node.signal("TERM")?;
    wait_for(
        "the first signal to be taken",
        Duration::from_secs(10),
        || {
            let log = node.log();
            async move { Ok(log.contains("signal again to exit at once").then_some(())) }
        },
    )
    .await?;
    let exit = node.stop(Duration::from_secs(5))?;
    assert_eq!(exit.code(), Some(130), "the second signal exits at once");

    // With one signal the stop tries to commit, cannot, and says so with its
    // exit code.
    let mut node = NodeProcess::start(&broker.brokers(), data.path(), &config, &failing_lake)?;
    consumed_everything(admin_url(&node).await?)
        .await
        .map_err(|e| e.context(node.log()))?;
    let exit = node.stop(Duration::from_secs(60))?;
    assert!(!exit.success(), "an uncommitted batch exits non-zero");
    assert!(
        node.log()
            .contains("partitions [0, 1] stopped with a batch they could not commit"),
        "the log names the partitions: {}",
        node.log()
    );

    // Then with a working lake: the batch is read again and the stop commits it.
    let mut node = NodeProcess::start(&broker.brokers(), data.path(), &config, &[])?;
    consumed_everything(admin_url(&node).await?)
        .await
        .map_err(|e| e.context(node.log()))?;
    assert!(
        bronze_rows(data.path()).await?.is_empty(),
        "nothing committed before the stop"
    );
    let exit = node.stop(Duration::from_secs(60))?;
    assert!(exit.success(), "{exit}: {}", node.log());
    assert_bronze_exact(data.path(), &sent).await?;
    Ok(())
}

/// `admin`, `models`, `inspect` and `export` have nothing to finish: the first
/// signal stops them, with the exit status shells give a Ctrl-C.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_without_a_graceful_stop_ends_at_the_first_signal() -> anyhow::Result<()> {
    // A node that takes connections and never answers: `admin` would wait
    // for its whole timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    silent.set_nonblocking(true)?;
    let mut admin = streamreel_command()?
        .args([
            "admin",
            "--node",
            &format!("http://{}", silent.local_addr()?),
        ])
        .arg("status")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    // Connected: the command runs, and listens for signals.
    let _connection = wait_for("admin to connect", Duration::from_secs(30), || {
        let accepted = match silent.accept() {
            Ok((connection, _)) => Ok(Some(connection)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e.into()),
        };
        async move { accepted }
    })
    .await?;
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &admin.id().to_string()])
        .status()?;
    assert!(sent.success());
    let exit = wait_for("admin to exit", Duration::from_secs(10), || {
        let exited = admin.try_wait();
        async move { Ok(exited?) }
    })
    .await?;
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut admin.stderr.take().expect("piped"), &mut stderr)?;
    assert_eq!(exit.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted by a signal"), "{stderr}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_lake_commit_is_retried_without_sending_the_batch_again() -> anyhow::Result<()> {
    const EVENTS: u64 = 3_000;
    const SEED: u64 = 29;
    let (broker, sent) = broker_with_events(2, EVENTS, SEED).await?;
    let valid = sent.iter().filter(|m| m.kind == MessageKind::Valid).count();
    let data = tempfile::tempdir()?;
    let mut node = NodeProcess::start(
        &broker.brokers(),
        data.path(),
        &node_config(5_000, 300),
        &[(FAIL_BRONZE_COMMITS_ENV, "3")],
    )?;
    wait_until_ingested(&broker, data.path(), Duration::from_secs(120))
        .await
        .map_err(|e| e.context(node.log()))?;
    assert_bronze_exact(data.path(), &sent).await?;
    let status = status(&admin_url(&node).await?)?;
    assert_eq!(ingest_total(&status, "commit_retries"), 3, "{status}");
    assert_eq!(ingest_total(&status, "restarts"), 0, "{status}");
    let brokers = broker.brokers();
    let clean = tokio::task::spawn_blocking(move || read_topic(&brokers, "clean-events")).await??;
    assert_eq!(clean.len(), valid, "each clean event sent once");
    assert!(node.stop(Duration::from_secs(60))?.success());
    // The node recorded its brokers' cluster in the lake as it started.
    assert_lake_cluster(data.path(), &broker_cluster_id(&broker).await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_topic_never_moves_offsets_backwards() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let config = node_config(5_000, 300);
    let (first, _) = broker_with_events(1, 2_000, 31).await?;
    let mut node = NodeProcess::start(&first.brokers(), data.path(), &config, &[])?;
    wait_until_ingested(&first, data.path(), Duration::from_secs(120))
        .await
        .map_err(|e| e.context(node.log()))?;
    assert!(node.stop(Duration::from_secs(60))?.success());
    let rows = bronze_rows(data.path()).await?.len();
    drop(first);

    // The topic recreated (here: on a new broker) with fewer records than
    // bronze has read: reading it would move offsets backwards.
    let (second, _) = broker_with_events(1, 500, 32).await?;
    let error = partition_zero_stops(&second, data.path(), &config, rows).await?;
    assert!(error.contains("recreated or truncated"), "{error}");
    drop(second);

    // Recreated again, now with more records than bronze has read: offsets
    // alone would resume past the new log's first 2,000 records. The record
    // at bronze's newest offset is another event, so the partition stops.
    let (third, _) = broker_with_events(1, 3_000, 33).await?;
    let error = partition_zero_stops(&third, data.path(), &config, rows).await?;
    assert!(error.contains("not the event bronze ingested"), "{error}");
    Ok(())
}

/// Starts a node on `broker` over the lake in `data` (holding `rows` bronze
/// rows), waits for partition 0 to say why it stopped, checks that it read
/// nothing and that the node goes on and stops cleanly; returns the reason.
async fn partition_zero_stops(
    broker: &Broker,
    data: &std::path::Path,
    config: &str,
    rows: usize,
) -> anyhow::Result<String> {
    let mut node = NodeProcess::start(&broker.brokers(), data, config, &[])?;
    let url = admin_url(&node).await?;
    let error = poll_every(
        POLL,
        "the partition to say why it stopped",
        Duration::from_secs(60),
        || {
            let url = url.clone();
            async move {
                let status = status(&url)?;
                Ok(status["ingest"][0]["last_error"]
                    .as_str()
                    .map(str::to_string))
            }
        },
    )
    .await
    .map_err(|e| e.context(node.log()))?;
    assert!(error.contains("partition 0"), "{error}");
    assert_eq!(
        bronze_rows(data).await?.len(),
        rows,
        "nothing read from the new log"
    );
    assert!(node.is_running(), "the other partitions and the node go on");
    assert!(node.stop(Duration::from_secs(60))?.success());
    Ok(error)
}
