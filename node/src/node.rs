//! Runs one node: make sure topics and the bronze table exist, start the ingest
//! supervisor over every partition of the input topic, report progress, and
//! stop gracefully when asked.

use std::sync::Arc;
use std::time::Duration;

use ractor::Actor;
use rdkafka::producer::Producer;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use streamreel_actors::coordinator::{Coordinator, CoordinatorArgs};
use streamreel_actors::{
    IngestContext, IngestStats, IngestSupervisor, SupervisorArgs, SupervisorMsg, kafka,
};
use streamreel_lake::BronzeTable;
use streamreel_protocol::UserKeyer;

use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::http::{AdminState, serve};

const REPORT_EVERY: Duration = Duration::from_secs(10);

pub async fn run_node(config: NodeConfig, shutdown: CancellationToken) -> Result<(), NodeError> {
    let lake_dir = config.lake_dir();
    std::fs::create_dir_all(&lake_dir).map_err(|source| NodeError::Io {
        path: lake_dir.display().to_string(),
        source,
    })?;
    if config.demo {
        warn!("demo mode: user ids are pseudonymised with a public demo secret");
    }
    let settings = &config.kafka;
    kafka::ensure_topics(
        &settings.brokers,
        &[
            &settings.input_topic,
            &settings.clean_topic,
            &settings.dlq_topic,
        ],
        settings.default_partitions,
    )
    .await?;
    let partitions = {
        let (brokers, topic) = (settings.brokers.clone(), settings.input_topic.clone());
        tokio::task::spawn_blocking(move || kafka::partition_ids(&brokers, &topic))
            .await
            .map_err(|e| NodeError::Actors(e.to_string()))??
    };
    // Created once here so that partition actors never race to create it.
    let bronze = BronzeTable::open_or_create(&lake_dir).await?;
    info!(
        node_id = config.node_id,
        topic = %settings.input_topic,
        partitions = ?partitions,
        bronze = %bronze.path().display(),
        "node starting"
    );

    let stats = IngestStats::default();
    let producer = kafka::producer(&settings.brokers)?;
    let context = Arc::new(IngestContext {
        kafka: config.kafka.clone(),
        ingest: config.ingest,
        restart: config.restart,
        lake_dir: lake_dir.clone(),
        keyer: UserKeyer::new(&config.user_key_secret),
        producer: producer.clone(),
        stats: stats.clone(),
    });
    let (supervisor, supervisor_handle) = Actor::spawn(
        Some(format!("ingest-supervisor-{}", config.node_id)),
        IngestSupervisor,
        SupervisorArgs {
            partitions,
            context,
        },
    )
    .await
    .map_err(|e| NodeError::Actors(e.to_string()))?;

    // The coordinator runs on this node; with the Raft cluster it will run on the leader.
    let (coordinator, coordinator_handle) = Actor::spawn(
        Some(format!("coordinator-{}", config.node_id)),
        Coordinator,
        CoordinatorArgs {
            lake_dir,
            metadata: config.metadata.clone(),
            schedule: config.jobs,
        },
    )
    .await
    .map_err(|e| NodeError::Actors(e.to_string()))?;
    let admin = AdminState {
        node_id: config.node_id,
        stats: stats.clone(),
        coordinator: coordinator.clone(),
        token: config.admin_token.as_deref().map(Into::into),
    };
    let http_addr = serve(config.http_listen, admin, shutdown.clone()).await?;
    info!(%http_addr, "admin api listening");

    let mut report = tokio::time::interval(REPORT_EVERY);
    report.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = report.tick() => log_progress(&stats),
        }
    }

    info!("node stopping: committing in-flight batches");
    if let Err(e) = ractor::call!(supervisor, SupervisorMsg::Shutdown) {
        warn!(error = %e, "supervisor did not shut down cleanly");
    }
    supervisor.stop(None);
    let _ = supervisor_handle.await;
    coordinator.stop(None);
    let _ = coordinator_handle.await;
    let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10))).await;
    log_progress(&stats);
    info!("node stopped");
    Ok(())
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
