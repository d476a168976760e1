//! The cluster against real components: three `streamreel node` processes
//! sharing one lake, a real tansu broker, the real simulator streaming while
//! members are SIGKILLed, frozen and moved around.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use streamreel_cluster::PingAnswer;
use streamreel_cluster::network::{PeerClient, paths};
use streamreel_lake::BronzeTable;
use streamreel_tests::broker::{Broker, free_port};
use streamreel_tests::cluster::{CLUSTER_TOKEN, Cluster, member_ids};
use streamreel_tests::node_process::{NodeProcess, node_config, streamreel_command};
use streamreel_tests::simulated;
use streamreel_tests::wait::wait_for;

use crate::support::{
    INPUT, admin_cli, admin_url, assert_bronze_exact, assert_outputs_at_least_once,
    live_differs_from_bronze, status,
};

/// Small batches, so that kills land between and inside commits.
const BATCHING: &str = "commit-max-events = 500\ncommit-interval-ms = 200\n\
    [node]\nrestart-backoff-min-ms = 100\nrestart-backoff-max-ms = 2000\n";

/// A broker with the input topic, and a cluster of `size` members on it
/// sharing a lake in a fresh directory.
async fn start_cluster(
    partitions: usize,
    size: u64,
) -> anyhow::Result<(Broker, tempfile::TempDir, Cluster)> {
    let broker = Broker::start()?;
    broker.create_topic(INPUT, partitions as i32).await?;
    let base = tempfile::tempdir()?;
    let cluster = Cluster::start(&broker.brokers(), base.path(), size, BATCHING)?;
    Ok((broker, base, cluster))
}

/// The real simulator, paced, in the background.
fn stream(broker: &Broker, events: u64, seed: u64, rate: u64) -> anyhow::Result<Simulator> {
    let child = streamreel_command()?
        .current_dir(streamreel_tests::repo_root())
        .args(["simulate", "--brokers", &broker.brokers()])
        .args(["--events", &events.to_string(), "--seed", &seed.to_string()])
        .args([
            "--rate",
            &rate.to_string(),
            "--start",
            "2026-11-24T00:00:00Z",
        ])
        .stdout(Stdio::null())
        // Never read: a full pipe would stall the simulator mid-stream.
        .stderr(Stdio::null())
        .spawn()?;
    Ok(Simulator(child))
}

/// A background simulator, killed when dropped: a test that fails before it
/// finishes must not leave it sending to a broker that is gone.
struct Simulator(Child);

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for the background simulator to exit, successfully.
async fn wait_simulator(simulator: &mut Simulator, timeout: Duration) -> anyhow::Result<()> {
    let succeeded = wait_for("the simulator to finish", timeout, || {
        let done = simulator.0.try_wait().map(|s| s.map(|s| s.success()));
        async move { Ok(done?) }
    })
    .await?;
    anyhow::ensure!(succeeded, "the simulator failed");
    Ok(())
}

/// Rows committed to bronze in all, as member `via` reports it.
async fn committed(cluster: &Cluster, via: u64) -> u64 {
    let Ok(status) = cluster.status(via).await else {
        return 0;
    };
    status["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| (p["committed_offset"].as_i64().unwrap_or(-1) + 1) as u64)
        .sum()
}

async fn wait_committed(cluster: &Cluster, via: u64, at_least: u64) -> anyhow::Result<()> {
    wait_for(
        &format!("{at_least} offsets committed"),
        Duration::from_secs(120),
        || async { Ok((committed(cluster, via).await >= at_least).then_some(())) },
    )
    .await
}

/// Polls member `via`'s status until `check` finds what it waits for (a
/// member that does not answer is polled again).
async fn wait_status<T>(
    cluster: &Cluster,
    via: u64,
    what: &str,
    timeout: Duration,
    check: impl Fn(&Value) -> Option<T>,
) -> anyhow::Result<T> {
    wait_for(what, timeout, || async {
        Ok(cluster
            .status(via)
            .await
            .ok()
            .and_then(|status| check(&status)))
    })
    .await
}

/// The `partitions` of a status answer.
fn partitions(status: &Value) -> Vec<Value> {
    status["partitions"].as_array().cloned().unwrap_or_default()
}

/// Waits until `via` reports a partition owned by a member `chosen` accepts,
/// and returns that member: one whose partitions moving away then shows a
/// failover (a member restarted a moment ago may own none until the
/// coordinator rebalances).
async fn wait_owner(
    cluster: &Cluster,
    via: u64,
    what: &str,
    chosen: impl Fn(u64) -> bool,
) -> anyhow::Result<u64> {
    wait_status(cluster, via, what, Duration::from_secs(60), |status| {
        partitions(status)
            .iter()
            .filter_map(|p| p["owner"].as_u64())
            .find(|owner| chosen(*owner))
    })
    .await
}

/// Waits until no partition is owned by `node`, as `via` sees it.
async fn wait_moved_away(cluster: &Cluster, via: u64, node: u64) -> anyhow::Result<()> {
    let what = format!("node {node}'s partitions to move");
    wait_status(cluster, via, &what, Duration::from_secs(60), |status| {
        let parts = partitions(status);
        let moved = !parts.is_empty()
            && parts
                .iter()
                .all(|p| p["owner"].as_u64().is_some_and(|o| o != node));
        moved.then_some(())
    })
    .await
}

/// A process at a free port that answers `/raft/ping` as member `id` (a
/// real member's answer, renumbered) and every Raft RPC with 503: a member
/// that would be added but never takes the log. Serves until dropped.
struct SilentMember {
    addr: String,
    server: tokio::task::JoinHandle<()>,
}

impl SilentMember {
    async fn start(cluster: &Cluster, like: u64, id: u64) -> anyhow::Result<SilentMember> {
        let peers = PeerClient::new(Some(CLUSTER_TOKEN.to_string()));
        let real = cluster.url(like);
        let mut answer: PingAnswer = peers
            .post(
                real.trim_start_matches("http://"),
                paths::PING,
                &(),
                Duration::from_secs(5),
            )
            .await?;
        answer.node = id;
        answer.initialized = false;
        answer.membership = Default::default();
        let ping = streamreel_protocol::codec::encode(&answer)?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", free_port()?)).await?;
        let addr = listener.local_addr()?.to_string();
        let server = tokio::spawn(async move {
            while let Ok((connection, _)) = listener.accept().await {
                tokio::spawn(answer_once(connection, ping.clone()));
            }
        });
        Ok(SilentMember { addr, server })
    }
}

impl Drop for SilentMember {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Reads one HTTP request and answers it, then closes the connection.
async fn answer_once(mut connection: tokio::net::TcpStream, ping: Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = Vec::new();
    let mut buffer = [0_u8; 8192];
    // The head is enough to route; the body is not needed.
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match connection.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    }
    let head = String::from_utf8_lossy(&request);
    let (status, body) = if head.starts_with(&format!("POST {} ", paths::PING)) {
        ("200 OK", ping)
    } else {
        ("503 Service Unavailable", Vec::new())
    };
    let header = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = connection.write_all(header.as_bytes()).await;
    let _ = connection.write_all(&body).await;
    let _ = connection.shutdown().await;
}

/// Waits until member `via` lists exactly `expected` (voters and learners).
async fn wait_members(cluster: &Cluster, via: u64, expected: &[u64]) -> anyhow::Result<()> {
    let what = format!("node {via} to list members {expected:?}");
    wait_status(cluster, via, &what, Duration::from_secs(30), |status| {
        (member_ids(status) == expected).then_some(())
    })
    .await
}

/// Waits until removed `node` knows it was removed and runs no partition
/// actor, while the replica it no longer receives still names it an owner.
/// With `ran`, it must have run some (a member removed straight after it was
/// given partitions may not have started one yet).
async fn wait_removed_and_idle(cluster: &Cluster, node: u64, ran: bool) -> anyhow::Result<()> {
    let last = std::sync::Mutex::new(None);
    let waited = wait_for(
        &format!("node {node} to know it was removed and stop its partitions"),
        Duration::from_secs(60),
        || async {
            let status = cluster.status(node).await;
            let idle = status.as_ref().is_ok_and(|status| {
                let ingest = status["ingest"].as_array().cloned().unwrap_or_default();
                status["removed"] == json!(true)
                    && !(ran && ingest.is_empty())
                    && ingest.iter().all(|p| p["running"] == json!(false))
            });
            *last.lock().expect("last status") = Some(status.map_err(|e| e.to_string()));
            Ok(idle.then_some(()))
        },
    )
    .await;
    waited.map_err(|e| {
        e.context(format!(
            "node {node}'s last status: {:?}",
            last.lock().expect("last status")
        ))
    })
}

/// Every epoch txn in the bronze log, in commit order, never goes down.
fn assert_epochs_never_went_down(lake: &Path) -> anyhow::Result<usize> {
    let log = BronzeTable::path_in(lake).join("_delta_log");
    let mut commits: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(&log)?
        .flatten()
        .map(|e| e.path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            let version = name.strip_suffix(".json")?.parse().ok()?;
            Some((version, p))
        })
        .collect();
    commits.sort();
    let mut epochs: HashMap<String, i64> = HashMap::new();
    let mut seen = 0;
    for (version, path) in commits {
        for line in std::fs::read_to_string(&path)?.lines() {
            let action: Value = serde_json::from_str(line)?;
            let Some(txn) = action.get("txn") else {
                continue;
            };
            let app = txn["appId"].as_str().unwrap_or_default();
            if !app.starts_with("streamreel-bronze-epoch-") {
                continue;
            }
            let epoch = txn["version"].as_i64().unwrap_or(-1);
            let last = epochs.entry(app.to_string()).or_insert(epoch);
            anyhow::ensure!(
                epoch >= *last,
                "{app} went down from {last} to {epoch} at version {version}"
            );
            *last = epoch;
            seen += 1;
        }
    }
    Ok(seen)
}

/// Bad input gets a JSON error with the right status, whichever layer refuses
/// it: a handler (a path id that is not a number is an unknown one), a query
/// that does not parse, or no route at all.
async fn assert_errors_are_json(cluster: &Cluster, via: u64) -> anyhow::Result<()> {
    use reqwest::Method;
    for (method, path, status, says) in [
        (
            Method::GET,
            "/live/top-videos?minutes=0",
            400,
            "minutes must be within",
        ),
        (
            Method::GET,
            "/live/top-videos?limit=5000",
            400,
            "limit must be within",
        ),
        (Method::GET, "/live/top-videos?limit=-1", 400, "limit"),
        (
            Method::DELETE,
            "/admin/nodes/abc",
            404,
            "unknown node \"abc\"",
        ),
        (
            Method::POST,
            "/admin/partitions/x/move",
            404,
            "unknown partition \"x\"",
        ),
        (
            Method::GET,
            "/no/such/route",
            404,
            "no route GET /no/such/route",
        ),
        (Method::POST, "/admin/status", 405, "Method Not Allowed"),
    ] {
        let (code, answer) = cluster.call(via, method, path, None).await?;
        let error = answer["error"].as_str().unwrap_or_default();
        anyhow::ensure!(
            code == status && error.contains(says),
            "{path}: {code} {answer}"
        );
    }
    for addr in ["0.0.0.0:9000", "127.0.0.1:0"] {
        let body = json!({"id": 7, "addr": addr});
        let (code, answer) = cluster
            .call(via, Method::POST, "/admin/nodes", Some(body))
            .await?;
        let error = answer["error"].as_str().unwrap_or_default();
        anyhow::ensure!(
            code == 400 && error.contains("needs a real IP and port"),
            "add-node {addr}: {code} {answer}"
        );
    }
    Ok(())
}

/// Raft routes need the cluster token, and read bodies larger than axum's
/// 2 MiB default: openraft sends snapshots in 3 MiB chunks. Garbage of 4 MiB
/// is read, then refused as bincode.
async fn assert_raft_is_guarded_and_takes_large_bodies(
    cluster: &Cluster,
    via: u64,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    for token in [None, Some("wrong-token")] {
        let mut request = http.post(format!("{}/raft/ping", cluster.url(via)));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let code = request.send().await?.status().as_u16();
        anyhow::ensure!(code == 401, "/raft/ping with token {token:?}: {code}");
    }
    let garbage = vec![0xff; 4 * 1024 * 1024];
    let (code, answer) = cluster
        .post_as_member(via, "/raft/snapshot", garbage)
        .await?;
    anyhow::ensure!(
        code == 400 && !answer.contains("length limit"),
        "a 4 MiB snapshot chunk: {code} {answer}"
    );
    Ok(())
}

/// The live aggregates of member `via` equal the same group-by over bronze.
async fn assert_live_equals_bronze(cluster: &Cluster, via: u64, lake: &Path) -> anyhow::Result<()> {
    match live_differs_from_bronze(&cluster.url(via), lake).await? {
        None => Ok(()),
        Some(difference) => anyhow::bail!("member {via}: {difference}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_killed_and_frozen_while_events_stream_lose_and_double_nothing()
-> anyhow::Result<()> {
    const EVENTS: u64 = 36_000;
    const SEED: u64 = 11;
    const PARTITIONS: usize = 6;
    let (broker, _lake_dir, mut cluster) = start_cluster(PARTITIONS, 3).await?;
    let result = async {
        let leader = cluster.wait_for_leader(Duration::from_secs(60)).await?;
        cluster
            .wait_settled(leader, PARTITIONS, Duration::from_secs(60))
            .await?;
        let mut simulator = stream(&broker, EVENTS, SEED, 1_500)?;

        // The leader dies twice, a follower once; each comes back.
        let mut via = leader;
        for (round, at) in [(1, 4_000), (2, 10_000), (3, 16_000)] {
            wait_committed(&cluster, via, at).await?;
            let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
            let victim = wait_owner(&cluster, leader, "a victim owning a partition", |owner| {
                (owner == leader) == (round < 3)
            })
            .await?;
            via = cluster
                .ids()
                .into_iter()
                .find(|id| *id != victim)
                .expect("a survivor");
            let killed = std::time::Instant::now();
            cluster.kill(victim)?;
            let new_leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
            wait_moved_away(&cluster, new_leader, victim).await?;
            println!(
                "round {round}: killed node {victim} (leader was {leader}); new leader {new_leader}; \
                 its partitions moved after {:?}",
                killed.elapsed()
            );
            cluster.start_node(victim)?;
        }
        // A follower freezes past the failover time, loses its partitions, wakes up.
        let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
        let frozen = wait_owner(&cluster, leader, "a follower owning a partition", |owner| {
            owner != leader
        })
        .await?;
        wait_committed(&cluster, leader, 20_000).await?;
        cluster.freeze(frozen)?;
        wait_moved_away(&cluster, leader, frozen).await?;
        // Moving a partition to the frozen member would be undone at once.
        let (code, answer) = cluster
            .call(
                leader,
                reqwest::Method::POST,
                "/admin/partitions/0/move",
                Some(json!({ "to": frozen })),
            )
            .await?;
        anyhow::ensure!(
            code == 409 && answer["error"].as_str().unwrap_or_default().contains("not alive"),
            "move to a frozen member: {code} {answer}"
        );
        cluster.thaw(frozen)?;
        println!("froze node {frozen} until its partitions moved, then thawed it");

        wait_simulator(&mut simulator, Duration::from_secs(180)).await?;
        let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
        let status = cluster
            .wait_settled(leader, PARTITIONS, Duration::from_secs(180))
            .await?;
        for id in cluster.ids() {
            anyhow::ensure!(cluster.is_running(id), "member {id} is still running");
        }

        let sent = simulated::messages(EVENTS, SEED)?;
        assert_bronze_exact(cluster.lake_parent(), &sent).await?;
        assert_outputs_at_least_once(&broker.brokers(), cluster.lake_parent(), &sent).await?;
        let lake = cluster.lake_parent().join("lake");
        let epochs = assert_epochs_never_went_down(&lake)?;
        anyhow::ensure!(epochs > 0, "bronze commits carry epochs");
        let max_epoch = status["partitions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["epoch"].as_u64())
            .max()
            .unwrap_or(0);
        anyhow::ensure!(max_epoch >= 2, "partitions moved: {status}");
        println!("settled: {status}");
        // Every member's replica answers the same live numbers as bronze.
        for id in cluster.ids() {
            assert_live_equals_bronze(&cluster, id, &lake).await?;
        }
        assert_errors_are_json(&cluster, cluster.ids()[0]).await?;
        assert_raft_is_guarded_and_takes_large_bodies(&cluster, cluster.ids()[0]).await?;

        // A voter whose data dir was emptied (its vote and log lost) refuses
        // to start while the others list it: it would vote as if it never had.
        let lost = cluster.ids()[2];
        anyhow::ensure!(
            cluster.voter_record(lost).exists(),
            "the lake records voter {lost}"
        );
        cluster.kill(lost)?;
        cluster.empty_data_dir(lost)?;
        cluster.start_node(lost)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while cluster.is_running(lost) {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "the emptied voter still runs: {}",
                cluster.log(lost)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = cluster.log(lost);
        anyhow::ensure!(
            log.contains(&format!("node {lost}'s data dir"))
                && log.contains("holds no Raft state, yet node")
                && log.contains(&format!("remove-node {lost}")),
            "{log}"
        );
        Ok(())
    }
    .await;
    result.map_err(|e: anyhow::Error| e.context(cluster.logs()))
}

/// The owner of each partition, as `status` lists them.
fn owners(status: &Value) -> Vec<Option<u64>> {
    status["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p["owner"].as_u64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cut_off_from_the_broker_gives_its_partitions_to_the_others() -> anyhow::Result<()>
{
    const EVENTS: u64 = 6_000;
    const SEED: u64 = 13;
    const PARTITIONS: usize = 4;
    let broker = Broker::start()?;
    broker.create_topic(INPUT, PARTITIONS as i32).await?;
    let base = tempfile::tempdir()?;
    let mut cluster = Cluster::configure(&broker.brokers(), base.path(), 3, BATCHING)?;
    let result = async {
        // Members 1 and 2 (a majority) start the cluster and lead it.
        cluster.start_node(1)?;
        cluster.start_node(2)?;
        let leader = cluster.wait_for_leader(Duration::from_secs(60)).await?;
        cluster
            .wait_settled(leader, PARTITIONS, Duration::from_secs(60))
            .await?;
        // Member 3 with another cluster token: refused by the others, and
        // refusing them, it says so instead of only seeing them as down.
        let brokers = broker.brokers();
        cluster.start_node_with(3, &brokers, "not-the-cluster-token-0123")?;
        wait_for(
            "member 3 to log that the others refuse its token",
            Duration::from_secs(30),
            || async {
                let refused = cluster
                    .log(3)
                    .contains("a member refuses this member's cluster token");
                Ok(refused.then_some(()))
            },
        )
        .await?;
        cluster.kill(3)?;
        // Member 3 joins with a broker address nothing listens on. Until its
        // first check fails it counts as healthy and is given partitions.
        let nowhere = format!("127.0.0.1:{}", free_port()?);
        cluster.start_node_with_brokers(3, &nowhere)?;
        wait_for(
            "member 3 to be given partitions",
            Duration::from_secs(30),
            || async {
                let status = cluster.status(leader).await?;
                Ok(owners(&status).contains(&Some(3)).then_some(()))
            },
        )
        .await?;
        let mut simulator = stream(&broker, EVENTS, SEED, 2_000)?;
        // It answers pings but cannot ingest: after the cut-off time its
        // partitions go to the members that reach the broker.
        let status = wait_for(
            "member 3's partitions to move to members reaching the broker",
            Duration::from_secs(60),
            || async {
                let status = cluster.status(leader).await?;
                let owners = owners(&status);
                let moved = owners.len() == PARTITIONS
                    && owners.iter().all(|o| matches!(o, Some(1) | Some(2)));
                Ok(moved.then_some(status))
            },
        )
        .await?;
        let member_3 = member(&status, 3);
        assert_eq!(member_3["alive"], json!(true), "{member_3}");
        assert_eq!(member_3["reaches_brokers"], json!(false), "{member_3}");
        assert_eq!(member_3["can_ingest"], json!(false), "{member_3}");
        assert_eq!(member_3["same_settings"], json!(true), "{member_3}");
        wait_simulator(&mut simulator, Duration::from_secs(60)).await?;
        cluster
            .wait_settled(leader, PARTITIONS, Duration::from_secs(120))
            .await?;
        assert_bronze_exact(cluster.lake_parent(), &simulated::messages(EVENTS, SEED)?).await?;

        // Member 3 back with the brokers but another lake (a relative
        // lake.uri on another machine, say): the leader's silver and gold
        // would never see its partitions, so it is given none.
        cluster.kill(3)?;
        let other_lake = tempfile::tempdir()?;
        cluster.start_node_with_lake(3, other_lake.path())?;
        wait_for(
            "the leader to see that member 3 writes another lake",
            Duration::from_secs(60),
            || async {
                let status = cluster.status(leader).await?;
                let member_3 = member(&status, 3);
                let seen = member_3["alive"] == json!(true)
                    && member_3["reaches_brokers"] == json!(true)
                    && member_3["same_lake"] == json!(false);
                Ok(seen.then_some(()))
            },
        )
        .await?;
        let (ok, answer) = admin_cli(&cluster.url(leader), &["rebalance"])?;
        anyhow::ensure!(ok, "rebalance: {answer}");
        let status = cluster.status(leader).await?;
        assert_eq!(member(&status, 3)["can_ingest"], json!(false), "{status}");
        let owners = owners(&status);
        assert!(
            owners.len() == PARTITIONS && owners.iter().all(|o| matches!(o, Some(1) | Some(2))),
            "{status}"
        );
        assert!(
            cluster
                .log(leader)
                .contains("a member writes another lake than this one"),
            "{}",
            cluster.log(leader)
        );
        Ok(())
    }
    .await;
    result.map_err(|e: anyhow::Error| e.context(cluster.logs()))
}

/// Member `id` as `status` lists it (`null` when it is not listed).
fn member(status: &Value, id: u64) -> Value {
    status["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["id"] == id)
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_and_rebalance_under_load_lose_and_double_nothing() -> anyhow::Result<()> {
    const EVENTS: u64 = 16_000;
    const SEED: u64 = 5;
    const PARTITIONS: usize = 4;
    let (broker, _lake_dir, cluster) = start_cluster(PARTITIONS, 3).await?;
    let result = async {
        let leader = cluster.wait_for_leader(Duration::from_secs(60)).await?;
        let status = cluster
            .wait_settled(leader, PARTITIONS, Duration::from_secs(60))
            .await?;
        let mut simulator = stream(&broker, EVENTS, SEED, 1_500)?;
        wait_committed(&cluster, leader, 2_000).await?;

        // Through a follower's CLI: the change is forwarded to the leader.
        let follower = cluster
            .ids()
            .into_iter()
            .find(|id| *id != leader)
            .expect("a follower");
        let node_url = cluster.url(follower);
        let admin = |args: &[&str]| admin_cli(&node_url, args);
        let owner = status["partitions"][0]["owner"].as_u64().expect("owned");
        let epoch = status["partitions"][0]["epoch"].as_u64().expect("epoch");
        let target = cluster
            .ids()
            .into_iter()
            .find(|id| *id != owner)
            .expect("another member");
        // Metrics: the owner's counters of partition 0 move as events flow.
        // Waited for: a member exports no partition series during an election.
        let accepted_before = wait_for(
            "the owner to expose partition 0",
            Duration::from_secs(30),
            || async {
                Ok(partition_sample(
                    &cluster.metrics(owner).await?,
                    "streamreel_events_accepted_total",
                    0,
                ))
            },
        )
        .await?;
        wait_for(
            "partition 0's counter to move",
            Duration::from_secs(30),
            || async {
                let now = partition_sample(
                    &cluster.metrics(owner).await?,
                    "streamreel_events_accepted_total",
                    0,
                );
                Ok(now.filter(|v| *v > accepted_before).map(|_| ()))
            },
        )
        .await?;
        let (ok, out) = admin(&["move", "0", "--to", &target.to_string()])?;
        anyhow::ensure!(ok, "move: {out}");
        let moved: Value = serde_json::from_str(&out)?;
        assert_eq!(moved["owner"], json!(target));
        assert_eq!(moved["epoch"], json!(epoch + 1));
        // `move` answered only once the new owner resumed: the leader, which
        // answered, already holds a checkpoint written at the new epoch.
        let on_leader = cluster.status(leader).await?;
        assert_eq!(
            on_leader["partitions"][0]["checkpoint_epoch"],
            json!(epoch + 1),
            "{on_leader}"
        );
        // The follower's replica learns the commit with its next heartbeat.
        wait_for(
            "the follower to see the move",
            Duration::from_secs(10),
            || async {
                let after = cluster.status(follower).await?;
                Ok((after["partitions"][0]["owner"] == json!(target)).then_some(()))
            },
        )
        .await?;

        // The old owner's series of partition 0 are gone; the new owner has them.
        wait_for(
            "partition 0's series to leave the old owner",
            Duration::from_secs(30),
            || async {
                let scrape = cluster.metrics(owner).await?;
                let gone = !scrape
                    .samples
                    .iter()
                    .any(|s| s.labels.get("partition") == Some("0"));
                Ok(gone.then_some(()))
            },
        )
        .await?;
        let (on_target, exposed) = wait_for(
            "the new owner to expose partition 0",
            Duration::from_secs(30),
            || async {
                let scrape = cluster.metrics(target).await?;
                let exposed = partition_sample(&scrape, "streamreel_partition_committed_offset", 0);
                Ok(exposed.map(|value| (scrape, value)))
            },
        )
        .await?;
        // What bronze holds by the checkpoint the leader saw after the move;
        // the new owner may have committed more since, never less.
        let checkpointed = on_leader["partitions"][0]["committed_offset"]
            .as_i64()
            .expect("an offset");
        assert!(
            exposed as i64 >= checkpointed,
            "metric {exposed} behind the checkpoint's {checkpointed}"
        );
        assert!(
            on_target
                .samples
                .iter()
                .any(|s| s.metric == "streamreel_raft_term"),
            "raft figures are exposed"
        );

        let (ok, out) = admin(&["move", "0", "--to", "9"])?;
        anyhow::ensure!(!ok && out.contains("unknown node 9"), "{out}");
        let (ok, out) = admin(&["move", "99", "--to", "1"])?;
        anyhow::ensure!(!ok && out.contains("partition 99 out of range"), "{out}");

        // Every partition onto one member, so that a rebalance has work to do.
        let before = cluster.status(leader).await?;
        for entry in before["partitions"].as_array().into_iter().flatten() {
            let partition = entry["partition"].as_u64().expect("a partition number");
            if entry["owner"] != json!(target) {
                let (ok, out) =
                    admin(&["move", &partition.to_string(), "--to", &target.to_string()])?;
                anyhow::ensure!(ok, "move {partition}: {out}");
            }
        }
        let (ok, out) = admin(&["rebalance"])?;
        anyhow::ensure!(ok, "rebalance: {out}");
        let answer: Value = serde_json::from_str(&out)?;
        let moves = answer["moves"].as_array().map_or(0, Vec::len);
        anyhow::ensure!(
            moves >= 2,
            "all {PARTITIONS} partitions were on node {target}: two must move: {answer}"
        );
        let mut load: HashMap<u64, usize> = HashMap::new();
        for p in answer["owners"].as_array().into_iter().flatten() {
            *load.entry(p["owner"].as_u64().unwrap_or(0)).or_default() += 1;
        }
        let (min, max) = (load.values().min().copied(), load.values().max().copied());
        anyhow::ensure!(
            load.len() == 3 && max.zip(min).is_some_and(|(max, min)| max - min <= 1),
            "rebalanced evenly: {answer}"
        );

        wait_simulator(&mut simulator, Duration::from_secs(120)).await?;
        cluster
            .wait_settled(leader, PARTITIONS, Duration::from_secs(120))
            .await?;
        assert_bronze_exact(cluster.lake_parent(), &simulated::messages(EVENTS, SEED)?).await?;
        let epochs = assert_epochs_never_went_down(&cluster.lake_parent().join("lake"))?;
        anyhow::ensure!(epochs > 0, "no epoch marker in bronze's log");
        Ok(())
    }
    .await;
    result.map_err(|e: anyhow::Error| e.context(cluster.logs()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_and_removed_under_load_takes_and_gives_back_partitions()
-> anyhow::Result<()> {
    const EVENTS: u64 = 12_000;
    const SEED: u64 = 21;
    const PARTITIONS: usize = 4;
    let (broker, _lake_dir, mut cluster) = start_cluster(PARTITIONS, 2).await?;
    let result = async {
        let leader = cluster.wait_for_leader(Duration::from_secs(60)).await?;
        cluster
            .wait_settled(leader, PARTITIONS, Duration::from_secs(60))
            .await?;
        let mut simulator = stream(&broker, EVENTS, SEED, 1_500)?;
        let node_url = cluster.url(1);
        let admin = |args: &[&str]| admin_cli(&node_url, args);
        // A member that is not running is refused at once, not waited for.
        let nobody = format!("127.0.0.1:{}", free_port()?);
        let (ok, out) = admin(&["add-node", "5", "--addr", &nobody])?;
        anyhow::ensure!(
            !ok && out.contains("node 5 does not answer") && out.contains("start it first"),
            "{out}"
        );
        // A member that answers pings but never takes the log stays a
        // learner, with a clear answer within the admin client's time, and
        // can be removed.
        let silent = SilentMember::start(&cluster, 1, 7).await?;
        let (ok, out) = admin(&["add-node", "7", "--addr", &silent.addr])?;
        anyhow::ensure!(
            !ok && out.contains("504")
                && out
                    .contains("node 7 was added as a learner but has not taken the cluster's log"),
            "{out}"
        );
        wait_members(&cluster, 1, &[1, 2, 7]).await?;
        let (ok, out) = admin(&["move", "0", "--to", "7"])?;
        anyhow::ensure!(
            !ok && out.contains("409") && out.contains("node 7 is a learner"),
            "{out}"
        );
        let (ok, out) = admin(&["remove-node", "7"])?;
        anyhow::ensure!(ok, "remove-node 7: {out}");
        drop(silent);
        wait_members(&cluster, 1, &[1, 2]).await?;
        // A process that started a cluster of its own is refused: it would
        // not take this cluster's log.
        let loner_dir = tempfile::tempdir()?;
        let loner_config = node_config(1_000, 1_000).replace("id = 1", "id = 6");
        let loner = NodeProcess::start(
            &broker.brokers(),
            loner_dir.path(),
            &loner_config,
            &[("STREAMREEL_CLUSTER_TOKEN", CLUSTER_TOKEN)],
        )?;
        let loner_url = admin_url(&loner).await?;
        wait_for("node 6 to lead itself", Duration::from_secs(60), || async {
            Ok(status(&loner_url)
                .is_ok_and(|s| s["leader"] == json!(6))
                .then_some(()))
        })
        .await?;
        let loner_addr = loner_url.trim_start_matches("http://").to_string();
        let (ok, out) = admin(&["add-node", "6", "--addr", &loner_addr])?;
        anyhow::ensure!(
            !ok && out.contains("node 6 at") && out.contains("already holds Raft state"),
            "{out}"
        );
        drop(loner);
        let addr = cluster.start_new_member(3)?;
        wait_for("node 3 to answer", Duration::from_secs(60), || async {
            Ok(cluster.status(3).await.is_ok().then_some(()))
        })
        .await?;
        let (ok, out) = admin(&["add-node", "4", "--addr", &addr])?;
        anyhow::ensure!(
            !ok && out.contains("answers as node 3, not node 4"),
            "{out}"
        );
        // Raft would keep node 1's address and still answer success.
        let (ok, out) = admin(&["add-node", "1", "--addr", &addr])?;
        anyhow::ensure!(
            !ok && out.contains("node 1 is already a member at") && out.contains("remove-node 1"),
            "{out}"
        );
        let (ok, out) = admin(&["add-node", "3", "--addr", &addr])?;
        anyhow::ensure!(ok, "add-node: {out}");
        // A member that joins gets its share of the partitions.
        wait_status(
            &cluster,
            1,
            "node 3 to own partitions",
            Duration::from_secs(60),
            |status| {
                let owns = partitions(status).iter().any(|p| p["owner"] == json!(3));
                (owns && member(status, 3)["alive"] == json!(true)).then_some(())
            },
        )
        .await?;
        // A change that would leave the voters without a majority alive is
        // refused: with node 3 stopped, removing node 2 would leave {1, 3}.
        cluster.freeze(3)?;
        let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
        wait_status(
            &cluster,
            leader,
            "the leader to see node 3 dead",
            Duration::from_secs(60),
            |status| (member(status, 3)["alive"] == json!(false)).then_some(()),
        )
        .await?;
        let (ok, out) = admin(&["remove-node", "2"])?;
        anyhow::ensure!(
            !ok && out.contains("409")
                && out.contains("removing node 2 would leave the voters {1, 3}")
                && out.contains("nodes {3} have not answered within the failover time"),
            "{out}"
        );
        cluster.thaw(3)?;
        // Node 3, back, may call an election: it stays a voter until the
        // removal below, which needs a settled leader.
        let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
        wait_status(
            &cluster,
            leader,
            "the leader to see node 3 alive again",
            Duration::from_secs(60),
            |status| {
                let back = member(status, 3)["alive"] == json!(true);
                (back && status["voters_changing"].is_null()).then_some(())
            },
        )
        .await?;

        let (ok, out) = admin(&["remove-node", "3"])?;
        anyhow::ensure!(ok, "remove-node: {out}");
        let (ok, out) = admin(&["remove-node", "7"])?;
        anyhow::ensure!(!ok && out.contains("unknown node 7"), "{out}");
        let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
        wait_moved_away(&cluster, leader, 3).await?;
        let status = cluster.status(leader).await?;
        assert_eq!(member_ids(&status), [1, 2], "{status}");
        wait_removed_and_idle(&cluster, 3, false).await?;
        cluster.kill(3)?;
        // Emptied after its removal, it starts and waits to be added again:
        // the lake's record of it as a voter is stale, and goes.
        anyhow::ensure!(cluster.voter_record(3).exists(), "the lake records voter 3");
        cluster.empty_data_dir(3)?;
        cluster.start_node(3)?;
        wait_for(
            "node 3 to drop its stale voter record",
            Duration::from_secs(60),
            || async { Ok((!cluster.voter_record(3).exists()).then_some(())) },
        )
        .await?;
        anyhow::ensure!(cluster.is_running(3), "{}", cluster.log(3));
        cluster.kill(3)?;

        wait_simulator(&mut simulator, Duration::from_secs(120)).await?;
        cluster
            .wait_settled(leader, PARTITIONS, Duration::from_secs(120))
            .await?;
        assert_bronze_exact(cluster.lake_parent(), &simulated::messages(EVENTS, SEED)?).await?;
        let epochs = assert_epochs_never_went_down(&cluster.lake_parent().join("lake"))?;
        anyhow::ensure!(epochs > 0, "no epoch marker in bronze's log");

        // The leader removed through itself: it answers once the removal is
        // committed, and the other member, now leading alone, takes every partition.
        let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
        let other = if leader == 1 { 2 } else { 1 };
        let (ok, out) = admin_cli(&cluster.url(leader), &["remove-node", &leader.to_string()])?;
        anyhow::ensure!(ok, "remove-node of the leader: {out}");
        wait_status(
            &cluster,
            other,
            "the other member to lead alone and own every partition",
            Duration::from_secs(60),
            |status| {
                let parts = partitions(status);
                let alone = status["leader"] == json!(other)
                    && member_ids(status) == [other]
                    && parts.len() == PARTITIONS
                    && parts
                        .iter()
                        .all(|p| p["owner"] == json!(other) && p["lag"].as_i64() == Some(0));
                alone.then_some(())
            },
        )
        .await?;
        wait_removed_and_idle(&cluster, leader, true).await?;
        // The removed leader names itself leader no more (openraft steps it
        // down at its next tick after the removal applies, a moment after it
        // knows it was removed), and refuses changes.
        wait_status(
            &cluster,
            leader,
            "the removed leader to step down",
            Duration::from_secs(30),
            |status| (status["leader"] != json!(leader)).then_some(()),
        )
        .await?;
        let (ok, out) = admin_cli(&cluster.url(leader), &["rebalance"])?;
        anyhow::ensure!(
            !ok && out.contains("409") && out.contains("was removed from the cluster"),
            "{out}"
        );
        Ok(())
    }
    .await;
    result.map_err(|e: anyhow::Error| e.context(cluster.logs()))
}

/// The value of `metric` for `partition` in a scrape.
fn partition_sample(
    scrape: &prometheus_parse::Scrape,
    metric: &str,
    partition: i32,
) -> Option<f64> {
    let partition = partition.to_string();
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && s.labels.get("partition") == Some(partition.as_str()))
        .and_then(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}
