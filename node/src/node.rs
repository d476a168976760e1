//! Runs one node of the cluster: topics and the shared bronze table exist, the
//! Raft member starts (bootstrapping the cluster once), the HTTP address
//! serves Raft, admin and live routes, the ingest supervisor runs the
//! partitions the replicated state gives this node, and the coordinator runs
//! while this node is the leader. Stops gracefully when asked, and with an
//! error when one of its components dies.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorRef};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use streamreel_actors::coordinator::CoordinatorMsg;
use streamreel_actors::coordinator::scheduler::HISTORY;
use streamreel_actors::output::SharedOutput;
use streamreel_actors::{
    IngestContext, IngestStats, IngestSupervisor, KafkaSettings, SupervisorArgs, SupervisorMsg,
    kafka,
};
use streamreel_cluster::durable_file;
use streamreel_cluster::network::PeerClient;
use streamreel_cluster::{ClusterMember, Member, NodeId, RaftTimings, StateSettings};
use streamreel_lake::{BronzeTable, read_metadata_file};
use streamreel_protocol::UserKeyer;

use crate::broker_health::{BrokerHealth, watch_brokers};
use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::http::{AppState, GOLD_READS_AT_ONCE, LIVE_SCANS_AT_ONCE, serve};
use crate::job_runtime::JobRuntime;
use crate::leadership::{CoordinatorTemplate, follow_leadership};
use crate::partition_discovery::watch_partitions;

const REPORT_EVERY: Duration = Duration::from_secs(10);
const BROKER_CHECK_EVERY: Duration = Duration::from_secs(2);
/// How often every member lists the input topic's partitions.
const DISCOVER_EVERY: Duration = Duration::from_secs(10);

/// How long the start waits for the brokers to name their cluster.
const CLUSTER_ID_WAIT: Duration = Duration::from_secs(5);

/// Refuses a lake ingested from another Kafka cluster. Done here, before any
/// partition actor, so that recording the id on a new lake races no bronze
/// commit; brokers that do not answer yet are checked as partitions resume.
async fn check_kafka_cluster(bronze: &BronzeTable, brokers: &str) -> Result<(), NodeError> {
    let asked = brokers.to_string();
    let found =
        tokio::task::spawn_blocking(move || kafka::cluster_id(&asked, CLUSTER_ID_WAIT)).await??;
    match found {
        Some(cluster_id) => {
            bronze.ensure_kafka_cluster(&cluster_id).await?;
            info!(%cluster_id, "kafka cluster matches the lake's");
        }
        None => info!(
            brokers,
            "the brokers named no cluster id yet; it is checked as partitions resume"
        ),
    }
    Ok(())
}

pub async fn run_node(config: NodeConfig, shutdown: CancellationToken) -> Result<(), NodeError> {
    let lake_dir = config.lake_dir();
    let io = |dir: &std::path::Path| {
        let path = dir.display().to_string();
        move |source| NodeError::Io { path, source }
    };
    std::fs::create_dir_all(&lake_dir).map_err(io(&lake_dir))?;
    // Its vote and log are synced as written; a new data dir's own entry
    // must be too, or a power loss soon after the first vote could take it.
    durable_file::create_dir_durably(&config.data_dir).map_err(io(&config.data_dir))?;
    crate::data_dir_lock::lock_data_dir(&config.data_dir)?.hold_until_exit();
    crate::data_dir_identity::claim_data_dir(&config.data_dir, config.node_id)?;
    if config.demo {
        warn!("demo mode: user ids are pseudonymised with a public demo secret");
    }
    let settings = &config.kafka;
    // The lakehouse jobs read it at every run; a wrong path should stop the
    // node now, not fail the leader's first enrichment minutes later.
    read_metadata_file(&config.metadata).map_err(|e| NodeError::Argument {
        name: "node.metadata",
        reason: e.to_string(),
    })?;
    let jobs_runtime = JobRuntime::start(config.job_threads)?;
    let keyer = UserKeyer::new(&config.user_key_secret);
    // Created here, before any partition actor, so that writers never race to create it.
    let bronze = BronzeTable::open_or_create(&lake_dir).await?;
    bronze
        .ensure_secret_fingerprint(&keyer.fingerprint())
        .await?;
    bronze.ensure_input_topic(&settings.input_topic).await?;
    check_kafka_cluster(&bronze, &settings.brokers).await?;

    let member = ClusterMember::start(
        config.node_id,
        &config.raft_dir(),
        RaftTimings {
            heartbeat_ms: config.cluster.heartbeat_ms,
            election_timeout_ms: config.cluster.election_timeout_ms,
        },
        config.cluster.failover_after_ms,
        StateSettings {
            dedup: config.ingest.dedup,
            live_retention_us: config.live_retention.as_micros() as i64,
            live_max_entries: config.live_max_entries,
            job_history: HISTORY,
        },
        bronze.table_id()?,
        PeerClient::new(config.cluster.token.clone()),
    )
    .await?;
    info!(
        node_id = config.node_id,
        members = ?config.cluster.members,
        topic = %settings.input_topic,
        bronze = %bronze.path().display(),
        "node starting"
    );

    let lake_id = bronze.table_id()?;
    tokio::select! {
        checked = crate::voter_record::check_empty_start(
            &member,
            &lake_dir,
            &lake_id,
            &config.data_dir,
            &config.cluster.members,
        ) => checked?,
        _ = shutdown.cancelled() => return Ok(()),
    }
    // The lake's record outlives this member's removal, which its replica
    // may have applied before it stopped.
    if crate::voter_record::record_path(&lake_dir, config.node_id).exists() {
        member.was_member_before();
    }
    let stats = IngestStats::default();
    let broker_health = BrokerHealth::default();
    let mut tasks: Vec<JoinHandle<()>> = vec![
        tokio::spawn(watch_brokers(
            settings.brokers.clone(),
            broker_health.clone(),
            member.clone(),
            BROKER_CHECK_EVERY,
            shutdown.clone(),
        )),
        tokio::spawn(watch_partitions(
            settings.brokers.clone(),
            settings.input_topic.clone(),
            member.clone(),
            DISCOVER_EVERY,
            shutdown.clone(),
        )),
    ];
    let coordinator_slot: Arc<Mutex<Option<ActorRef<CoordinatorMsg>>>> = Arc::default();
    let app = AppState {
        member: member.clone(),
        stats: stats.clone(),
        coordinator: coordinator_slot.clone(),
        admin_token: config.admin_token.as_deref().map(Into::into),
        cluster_token: config.cluster.token.as_deref().map(Into::into),
        input_watermarks: Arc::new(kafka::Watermarks::new(
            &settings.brokers,
            &settings.input_topic,
        )),
        lake_dir: lake_dir.clone(),
        broker_health: broker_health.clone(),
        jobs_runtime: jobs_runtime.handle(),
        gold_reads: Arc::new(tokio::sync::Semaphore::new(GOLD_READS_AT_ONCE)),
        live_scans: Arc::new(tokio::sync::Semaphore::new(LIVE_SCANS_AT_ONCE)),
        job_outcomes: Arc::default(),
    };
    // Raft, forwarded writes and the members' pings share the HTTP server:
    // closed at the first signal, the others would take a member still
    // committing its last batches for dead and move its partitions, fencing
    // those commits. It closes when this function returns, Raft shut down.
    let http_stop = CancellationToken::new();
    let _http_stop_on_return = http_stop.clone().drop_guard();
    let http_addr = serve(config.http_listen, app, http_stop).await?;
    info!(%http_addr, "admin api listening");

    let members: BTreeMap<NodeId, Member> = config
        .cluster
        .members
        .iter()
        .map(|(id, addr)| (*id, Member { addr: addr.clone() }))
        .collect();
    {
        let member = member.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = member.bootstrap(members).await {
                warn!(error = %e, "bootstrap failed");
            }
        }));
    }
    tasks.push(tokio::spawn(crate::voter_record::record_as_voter(
        member.clone(),
        lake_dir.clone(),
    )));
    tasks.push(tokio::spawn(probe_members(
        member.clone(),
        Duration::from_millis(config.cluster.heartbeat_ms),
    )));

    // The control plane runs while the brokers are unreachable; the leader's
    // coordinator retries its own broker calls.
    let mut leadership = tokio::spawn(follow_leadership(
        member.clone(),
        coordinator_slot.clone(),
        CoordinatorTemplate {
            lake_dir: lake_dir.clone(),
            config: config.clone(),
            jobs_runtime: jobs_runtime.handle(),
        },
    ));
    let ingest = tokio::select! {
        _ = shutdown.cancelled() => None,
        result = &mut leadership => {
            return Err(leadership_ended(result));
        }
        ready = connect_to_brokers(&config) => Some(ready),
    };
    let outcome = match ingest {
        None => Ok(None),
        Some(BrokersReady { output }) => {
            let context = Arc::new(IngestContext {
                kafka: config.kafka.clone(),
                ingest: config.ingest,
                restart: config.restart,
                lake_dir: lake_dir.clone(),
                keyer,
                output: output.clone(),
                stats: stats.clone(),
                cluster: member.clone(),
            });
            let (supervisor, supervisor_handle) = Actor::spawn(
                Some(format!("ingest-supervisor-{}", config.node_id)),
                IngestSupervisor,
                SupervisorArgs { context },
            )
            .await?;
            tasks.push(tokio::spawn(follow_ownership(
                member.clone(),
                supervisor.clone(),
            )));
            let mut report = tokio::time::interval(REPORT_EVERY);
            report.tick().await;
            let mut supervisor_handle = supervisor_handle;
            let outcome = loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break Ok(()),
                    _ = report.tick() => log_progress(&stats),
                    _ = &mut supervisor_handle => {
                        break Err(NodeError::SupervisorDied);
                    }
                    result = &mut leadership => {
                        break Err(leadership_ended(result));
                    }
                }
            };
            info!("node stopping: committing in-flight batches");
            if let Err(e) = ractor::call!(supervisor, SupervisorMsg::Shutdown) {
                warn!(error = %e, "supervisor did not shut down cleanly");
            }
            supervisor.stop(None);
            outcome.map(|()| Some(output.newest().producer))
        }
    };
    leadership.abort();
    let coordinator = coordinator_slot.lock().expect("coordinator lock").take();
    if let Some(coordinator) = coordinator {
        coordinator.stop(None);
    }
    for task in tasks {
        task.abort();
    }
    if let Err(e) = member.raft.shutdown().await {
        warn!(error = %e, "raft did not shut down cleanly");
    }
    let producer = outcome?;
    if let Some(producer) = producer {
        let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10))).await;
    }
    log_progress(&stats);
    let uncommitted: Vec<i32> = stats
        .snapshot()
        .into_iter()
        .filter(|(_, s)| s.uncommitted.any())
        .map(|(partition, _)| partition)
        .collect();
    if !uncommitted.is_empty() {
        return Err(NodeError::Uncommitted {
            partitions: uncommitted,
        });
    }
    info!("node stopped");
    Ok(())
}

/// What ingest learns from the brokers before it starts.
struct BrokersReady {
    output: SharedOutput,
}

/// Creates the missing topics and learns the output topics' record limit,
/// trying again with backoff while the brokers are unreachable, so that a
/// node started before its brokers waits for them instead of exiting.
async fn connect_to_brokers(config: &NodeConfig) -> BrokersReady {
    let settings = &config.kafka;
    let mut backoff = Duration::from_secs(1);
    loop {
        let attempt = async {
            kafka::ensure_topics(
                &settings.brokers,
                &[
                    kafka::TopicSpec::plain(&settings.input_topic),
                    kafka::TopicSpec::plain(&settings.clean_topic),
                    kafka::TopicSpec {
                        name: &settings.dlq_topic,
                        configs: vec![(
                            "retention.ms",
                            settings.dlq_retention.as_millis().to_string(),
                        )],
                    },
                ],
                settings.default_partitions,
                settings.replication_factor,
            )
            .await?;
            let limits = kafka::record_limits(
                &settings.brokers,
                &settings.clean_topic,
                &settings.dlq_topic,
            )
            .await;
            Ok::<_, streamreel_actors::ActorError>(BrokersReady {
                output: SharedOutput::new(&settings.brokers, limits)?,
            })
        };
        match attempt.await {
            Ok(ready) => {
                let limits = ready.output.newest().limits;
                info!(
                    record_limit = limits.clean,
                    dlq_record_limit = limits.dead_letter,
                    "kafka brokers ready"
                );
                warn_on_long_dlq_retention(settings).await;
                return ready;
            }
            Err(error) => {
                warn!(
                    brokers = %settings.brokers,
                    %error,
                    retry_in_s = backoff.as_secs(),
                    "kafka not ready (brokers unreachable, or topics that cannot be created: see error); ingest waits and retries"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// A dead-letter topic created before the node (by hand or by a script) keeps
/// the broker's retention, which the node does not change; dead letters hold
/// what users sent, so keeping them longer than configured is worth a warning.
async fn warn_on_long_dlq_retention(settings: &KafkaSettings) {
    let wanted_ms = settings.dlq_retention.as_millis() as i64;
    let reported = kafka::topic_config(&settings.brokers, &[&settings.dlq_topic], "retention.ms")
        .await
        .ok()
        .and_then(|values| values.into_iter().next().flatten())
        .and_then(|value| value.parse::<i64>().ok());
    if let Some(retention_ms) = reported
        && (retention_ms < 0 || retention_ms > wanted_ms)
    {
        warn!(
            topic = %settings.dlq_topic,
            retention_ms,
            wanted_ms,
            "the dead-letter topic keeps records longer than kafka.dlq-retention-hours; set its retention.ms"
        );
    }
}

/// Pings every member each heartbeat, for failure detection and status.
async fn probe_members(member: ClusterMember, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        member.probe_members().await;
    }
}

/// Tells the supervisor the replicated ownership at every change, and once a
/// second anyway so that a failed start is retried. A member removed from
/// the cluster owns nothing, whatever its replica (no longer replicated to) says.
async fn follow_ownership(member: ClusterMember, supervisor: ActorRef<SupervisorMsg>) {
    let mut ownership = member.view.ownership();
    let mut removed = member.removed();
    loop {
        let mut current = ownership.borrow_and_update().clone();
        if *removed.borrow_and_update() {
            current = streamreel_cluster::removal::released(&current, member.id);
        }
        if supervisor.cast(SupervisorMsg::Reconcile(current)).is_err() {
            return;
        }
        let changed = tokio::time::timeout(Duration::from_secs(1), async {
            tokio::select! {
                changed = ownership.changed() => changed.is_ok(),
                changed = removed.changed() => changed.is_ok(),
            }
        })
        .await;
        // The replica is gone (Raft stopped on a fatal error): nothing more
        // to follow, and looking again at once would flood the supervisor.
        if changed == Ok(false) {
            return;
        }
    }
}

/// Why the leadership follower's task ended: a panic, or a return.
fn leadership_ended(result: Result<(), tokio::task::JoinError>) -> NodeError {
    match result {
        Ok(()) => NodeError::LeadershipFollowerEnded,
        Err(error) => NodeError::LeadershipFollowerPanicked(error),
    }
}

fn log_progress(stats: &IngestStats) {
    for (partition, partition_stats) in stats.snapshot() {
        let counters = partition_stats.counters();
        info!(
            partition,
            accepted = counters.accepted,
            duplicates = counters.duplicates,
            rejected = counters.rejected,
            commits = counters.commits,
            committed_offset = partition_stats
                .committed_offset
                .load(std::sync::atomic::Ordering::Relaxed),
            restarts = partition_stats
                .restarts
                .load(std::sync::atomic::Ordering::Relaxed),
            "ingest progress"
        );
    }
}
