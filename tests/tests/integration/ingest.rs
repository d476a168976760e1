//! One node ingests a simulated stream: bronze, clean-events and the dead-letter
//! topic hold exactly what they should, and no raw user id leaves the node.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use rdkafka::producer::FutureRecord;
use streamreel_actors::kafka;

use streamreel_node::simulate::MessageKind;
use streamreel_protocol::{BronzeRow, UserKeyer, parse_event};
use streamreel_tests::TEST_SECRET;
use streamreel_tests::broker::Broker;
use streamreel_tests::bronze_reader::bronze_rows;
use streamreel_tests::node_process::{NodeProcess, node_config};
use streamreel_tests::simulated;
use streamreel_tests::topic_reader::{Record, high_watermarks, read_topic};
use streamreel_tests::wait::wait_for;

use crate::support::{INPUT, assert_bronze_exact, simulate_cli, wait_until_ingested};

const CLEAN: &str = "clean-events";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bronze_clean_events_and_dlq_hold_exactly_what_was_sent() -> anyhow::Result<()> {
    const EVENTS: u64 = 30_000;
    const SEED: u64 = 42;
    let broker = Broker::start()?;
    broker.create_topic(INPUT, 4).await?;
    let stdout = simulate_cli(&broker, EVENTS, SEED)?;
    let sent = simulated::messages(EVENTS, SEED)?;
    let valid = sent.iter().filter(|m| m.kind == MessageKind::Valid).count();
    let malformed: Vec<_> = sent
        .iter()
        .filter(|m| m.kind == MessageKind::Malformed)
        .collect();
    assert!(
        stdout.contains(&format!("valid {valid}, malformed {}", malformed.len())),
        "the simulator's summary matches the regenerated stream: {stdout}"
    );

    let data = tempfile::tempdir()?;
    let mut node = NodeProcess::start(
        &broker.brokers(),
        data.path(),
        &node_config(5_000, 500),
        &[],
    )?;
    wait_until_ingested(&broker, data.path(), Duration::from_secs(180))
        .await
        .map_err(|e| e.context(node.log()))?;
    assert_bronze_exact(data.path(), &sent).await?;

    // Pseudonymisation: every bronze user_key is the HMAC of the sender's user id.
    let keyer = UserKeyer::new(TEST_SECRET.as_bytes());
    let user_of_event: HashMap<String, String> = sent
        .iter()
        .filter(|m| m.kind == MessageKind::Valid)
        .map(|m| (m.event_id.clone().unwrap(), m.key.clone()))
        .collect();
    for row in bronze_rows(data.path()).await? {
        let user_id = &user_of_event[&row.event_id];
        assert_eq!(row.user_key, keyer.user_key(user_id).to_hex());
    }

    let brokers = broker.brokers();
    let (input, clean, dlq) = tokio::task::spawn_blocking(move || {
        anyhow::Ok((
            read_topic(&brokers, INPUT)?,
            read_topic(&brokers, CLEAN)?,
            read_topic(&brokers, "video-events-dlq")?,
        ))
    })
    .await??;

    // clean-events: one bronze row per valid event, keyed by user_key, no raw ids.
    let mut valid_ids: Vec<&str> = sent
        .iter()
        .filter(|m| m.kind == MessageKind::Valid)
        .filter_map(|m| m.event_id.as_deref())
        .collect();
    let mut clean_ids = Vec::new();
    for record in &clean {
        let text = String::from_utf8(record.payload.clone())?;
        assert!(
            !text.contains("@viewers.example"),
            "raw user id leaked: {text}"
        );
        let row: BronzeRow = serde_json::from_str(&text)?;
        assert_eq!(record.key.as_deref(), Some(row.user_key.as_bytes()));
        assert_eq!(record.timestamp_ms, Some(row.ingested_at_us / 1000));
        clean_ids.push(row.event_id);
    }
    valid_ids.sort_unstable();
    clean_ids.sort_unstable();
    assert_eq!(
        clean_ids, valid_ids,
        "without failures clean-events is exact"
    );
    assert_partitioned_as_librdkafka_would(&broker, &clean).await?;

    // Dead letters: exactly the malformed inputs, byte for byte, each with a reason.
    assert_eq!(dlq.len(), malformed.len());
    let mut expected_payloads: Vec<&[u8]> =
        malformed.iter().map(|m| m.payload.as_slice()).collect();
    let mut dead_payloads: Vec<&[u8]> = dlq.iter().map(|r| r.payload.as_slice()).collect();
    expected_payloads.sort();
    dead_payloads.sort();
    assert_eq!(dead_payloads, expected_payloads);
    let input_at: HashMap<(i32, i64), &Record> =
        input.iter().map(|r| ((r.partition, r.offset), r)).collect();
    for record in &dlq {
        let reason = &record.headers["error"];
        let expected = parse_event(&record.payload)
            .expect_err("dead letters are invalid")
            .to_string();
        assert_eq!(reason, &expected);
        let source = (
            record.headers["source-partition"].parse::<i32>()?,
            record.headers["source-offset"].parse::<i64>()?,
        );
        let input = input_at.get(&source).copied();
        assert_eq!(
            input.map(|r| r.payload.as_slice()),
            Some(record.payload.as_slice()),
            "a dead letter names the input record it copies: {source:?}"
        );
    }
    // Keyed by the user_key of the input key: the raw user id never leaves.
    let mut expected_keys: Vec<Option<Vec<u8>>> = malformed
        .iter()
        .map(|m| Some(keyer.user_key(&m.key).to_hex().into_bytes()))
        .collect();
    let mut dead_keys: Vec<Option<Vec<u8>>> = dlq.iter().map(|r| r.key.clone()).collect();
    expected_keys.sort();
    dead_keys.sort();
    assert_eq!(dead_keys, expected_keys);

    let status = node.stop(Duration::from_secs(60))?;
    assert!(status.success(), "graceful stop: {status}\n{}", node.log());
    Ok(())
}

/// The coordinator's jobs, driven through the admin CLI of a running node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_runs_lakehouse_jobs_and_reports_their_history() -> anyhow::Result<()> {
    use streamreel_tests::wait::wait_for;

    use crate::support::{ADMIN_TOKEN, broker_with_events, run_job_to_success};

    let (broker, _) = broker_with_events(2, 5_000, 3).await?;
    let data = tempfile::tempdir()?;
    let node = NodeProcess::start(
        &broker.brokers(),
        data.path(),
        &node_config(5_000, 300),
        &[("STREAMREEL_ADMIN_TOKEN", ADMIN_TOKEN)],
    )?;
    wait_until_ingested(&broker, data.path(), Duration::from_secs(120)).await?;
    let url = wait_for("the admin api", Duration::from_secs(30), || async {
        Ok(node.admin_url())
    })
    .await?;
    // Admin routes refuse a request without the token or with another one.
    let http = reqwest::Client::new();
    for token in [None, Some("not-the-token")] {
        let mut request = http.get(format!("{url}/admin/status"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let code = request.send().await?.status().as_u16();
        assert_eq!(code, 401, "/admin/status with token {token:?}");
    }
    let admin = |args: &[&str]| crate::support::admin_cli(&url, args);
    for job in ["enrich", "gold", "compact"] {
        run_job_to_success(&url, job)
            .await
            .map_err(|e| e.context(node.log()))?;
    }
    // The CLI knows the jobs; the route refuses others for any other client.
    let (ok, out) = admin(&["run", "reindex"])?;
    assert!(!ok && out.contains("unknown job"), "{out}");
    let answer = http
        .post(format!("{url}/admin/jobs/reindex/run"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?;
    assert_eq!(answer.status().as_u16(), 404);
    assert!(answer.text().await?.contains("unknown job"));
    // On a loopback address, what a page of another site could send on its
    // own is refused, token or not; the node's own pages are not.
    let post_from = |origin: &str| {
        http.post(format!("{url}/admin/jobs/gold/run"))
            .bearer_auth(ADMIN_TOKEN)
            .header("Origin", origin)
            .send()
    };
    let answer = post_from("https://elsewhere.example").await?;
    assert_eq!(answer.status().as_u16(), 403);
    assert!(answer.text().await?.contains("origin"));
    let answer = post_from(&url).await?;
    let code = answer.status().as_u16();
    let text = answer.text().await?;
    // Taken: started, or refused only because a gold run is going already.
    assert!(
        code == 202 || (code == 409 && text.contains("already running")),
        "{code} {text}"
    );
    let port = url.rsplit(':').next().unwrap_or_default();
    let answer = http
        .get(format!("{url}/admin/status"))
        .bearer_auth(ADMIN_TOKEN)
        .header("Host", format!("rebound.example:{port}"))
        .send()
        .await?;
    assert_eq!(answer.status().as_u16(), 403);
    assert!(answer.text().await?.contains("loopback"));
    let (ok, status) = admin(&["status"])?;
    assert!(ok, "{status}");
    let status: serde_json::Value = serde_json::from_str(&status)?;
    let partitions = status["partitions"].as_array().cloned().unwrap_or_default();
    assert_eq!(partitions.len(), 2, "{status}");
    for partition in &partitions {
        assert_eq!(partition["lag"], 0, "everything ingested: {partition}");
        // Nothing was deleted, so every record written was ingested.
        assert_eq!(
            partition["high_watermark"].as_i64(),
            partition["committed_offset"].as_i64().map(|c| c + 1),
            "{partition}"
        );
    }
    // Lag's watermark client reads both ends of every partition, as
    // librdkafka's own per-partition query does.
    let brokers = broker.brokers();
    let (asked, expected) = tokio::task::spawn_blocking(move || {
        let expected: Vec<_> = (0..2)
            .map(|p| kafka::watermarks(&brokers, INPUT, p).map(|(low, high)| (p, low, high)))
            .collect::<Result<_, _>>()?;
        let asked =
            kafka::Watermarks::new(&brokers, INPUT).fetch(&[0, 1], Duration::from_secs(10))?;
        anyhow::Ok((asked, expected))
    })
    .await??;
    let mut asked: Vec<_> = asked.iter().map(|m| (m.partition, m.low, m.high)).collect();
    asked.sort();
    let expected: Vec<_> = expected
        .iter()
        .map(|(p, low, high)| (*p, Some(*low), *high))
        .collect();
    assert_eq!(asked, expected);
    assert!(
        expected.iter().all(|(_, _, high)| *high > 0),
        "{expected:?}"
    );
    for model in streamreel_lake::gold::model_names() {
        let log = data.path().join(format!("lake/gold/{model}/_delta_log"));
        assert!(log.exists(), "the gold job built {model}");
    }
    Ok(())
}

/// The node picks each clean record's partition itself, once per user; every
/// record must sit where librdkafka's default partitioner puts its key, as
/// found by producing each key once more, the default way, to a topic with as
/// many partitions.
async fn assert_partitioned_as_librdkafka_would(
    broker: &Broker,
    clean: &[Record],
) -> anyhow::Result<()> {
    const PROBE: &str = "partitioner-probe";
    let brokers = broker.brokers();
    let count = tokio::task::spawn_blocking(move || kafka::partition_ids(&brokers, CLEAN))
        .await??
        .len();
    assert!(count > 1, "one partition would show nothing");
    broker.create_topic(PROBE, count as i32).await?;
    let producer = kafka::producer(&broker.brokers(), kafka::DEFAULT_RECORD_LIMIT)?;
    let keys: BTreeSet<&[u8]> = clean.iter().filter_map(|r| r.key.as_deref()).collect();
    assert_eq!(clean.iter().filter(|r| r.key.is_none()).count(), 0);
    let mut deliveries = Vec::with_capacity(keys.len());
    for key in &keys {
        let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(PROBE).key(*key).payload(b"");
        let delivery = producer
            .send_result(record)
            .map_err(|(error, _)| anyhow::anyhow!("probe record not queued: {error}"))?;
        deliveries.push((*key, delivery));
    }
    let mut partition_of_key = HashMap::new();
    for (key, delivery) in deliveries {
        let delivered = delivery
            .await?
            .map_err(|(error, _)| anyhow::anyhow!("probe record not delivered: {error}"))?;
        partition_of_key.insert(key, delivered.partition);
    }
    let used: BTreeSet<i32> = partition_of_key.values().copied().collect();
    assert!(used.len() > 1, "{} users on one partition", keys.len());
    for record in clean {
        let key = record.key.as_deref().expect("checked above");
        assert_eq!(record.partition, partition_of_key[key], "key {key:?}");
    }
    Ok(())
}

/// A node started on a broker without its topics creates them with
/// `kafka.default-partitions`, registers every partition and ingests them all,
/// logging no error on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_creates_missing_topics_and_ingests_every_partition() -> anyhow::Result<()> {
    const EVENTS: u64 = 3_000;
    const SEED: u64 = 11;
    const PARTITIONS: usize = 3;
    let broker = Broker::start()?;
    let data = tempfile::tempdir()?;
    let config = format!(
        "{}[kafka]\ndefault-partitions = {PARTITIONS}\n",
        node_config(1_000, 300)
    );
    let node = NodeProcess::start(&broker.brokers(), data.path(), &config, &[])?;
    for topic in [INPUT, CLEAN, "video-events-dlq"] {
        let brokers = broker.brokers();
        wait_for(
            &format!("the node to create {topic}"),
            Duration::from_secs(60),
            || {
                let brokers = brokers.clone();
                async move {
                    let found =
                        tokio::task::spawn_blocking(move || high_watermarks(&brokers, topic))
                            .await?;
                    Ok(found.ok().filter(|p| p.len() == PARTITIONS))
                }
            },
        )
        .await
        .map_err(|e| e.context(node.log()))?;
    }
    simulate_cli(&broker, EVENTS, SEED)?;
    wait_until_ingested(&broker, data.path(), Duration::from_secs(120))
        .await
        .map_err(|e| e.context(node.log()))?;
    assert_bronze_exact(data.path(), &simulated::messages(EVENTS, SEED)?).await?;
    let partitions: std::collections::BTreeSet<i32> = bronze_rows(data.path())
        .await?
        .iter()
        .map(|row| row.partition)
        .collect();
    assert_eq!(partitions, (0..PARTITIONS as i32).collect());
    // A first start on an empty lake and a bare broker is routine: nothing
    // in the node's log may read as an error.
    let log = node.log();
    assert!(!log.contains(" ERROR "), "{log}");
    Ok(())
}
