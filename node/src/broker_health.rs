//! Whether this node reaches its Kafka brokers, as last checked; shown in
//! `/admin/status` so that an outage is visible without reading logs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use streamreel_actors::kafka;
use streamreel_cluster::ClusterMember;
use streamreel_protocol::time::now_micros;

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct BrokerState {
    /// `None` until the first check, as is `checked_at_ms`.
    pub reachable: Option<bool>,
    pub error: Option<String>,
    pub checked_at_ms: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct BrokerHealth(Arc<Mutex<BrokerState>>);

impl BrokerHealth {
    pub fn get(&self) -> BrokerState {
        self.0.lock().expect("broker health lock").clone()
    }

    /// Records a check; logs only changes, so an outage is one line, not one a second.
    pub fn record(&self, result: Result<(), String>) {
        let mut state = self.0.lock().expect("broker health lock");
        let reachable = result.is_ok();
        match (&result, state.reachable) {
            (Ok(()), Some(false)) => info!("kafka brokers reachable again"),
            (Err(error), Some(true) | None) => warn!(%error, "kafka brokers unreachable"),
            _ => {}
        }
        state.reachable = Some(reachable);
        state.error = result.err();
        state.checked_at_ms = Some(now_micros() / 1_000);
    }
}

/// Checks the brokers every `every` until cancelled; tells `member` each
/// result, which its ping answers pass on to the leader (a member cut off from
/// the brokers while others reach them loses its partitions).
pub async fn watch_brokers(
    brokers: String,
    health: BrokerHealth,
    member: ClusterMember,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let brokers = brokers.clone();
        let result = tokio::task::spawn_blocking(move || kafka::probe(&brokers, every))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        member.set_reaches_brokers(result.is_ok());
        health.record(result);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
