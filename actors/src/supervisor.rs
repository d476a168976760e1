//! Starts one partition actor per partition and restarts the ones that fail,
//! with exponential backoff per partition; the others keep running.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tracing::{error, info, warn};

use crate::context::IngestContext;
use crate::partition_actor::{PartitionActor, PartitionArgs, PartitionMsg, PartitionStatus};
use crate::restart::RestartTracker;

pub enum SupervisorMsg {
    /// (Re)start the actor of a partition.
    Start(i32),
    Status(RpcReplyPort<Vec<PartitionStatus>>),
    /// Stop every partition actor gracefully (each commits what it consumed).
    Shutdown(RpcReplyPort<()>),
}

pub struct SupervisorArgs {
    pub partitions: Vec<i32>,
    pub context: Arc<IngestContext>,
}

pub struct IngestSupervisor;

struct Child {
    partition: i32,
    actor: ActorRef<PartitionMsg>,
    started: Instant,
}

pub struct SupervisorState {
    context: Arc<IngestContext>,
    children: HashMap<ActorId, Child>,
    restarts: HashMap<i32, RestartTracker>,
    shutting_down: bool,
}

/// How long a graceful stop may take per partition (one batch interval plus a commit).
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

impl Actor for IngestSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        for partition in &args.partitions {
            myself.cast(SupervisorMsg::Start(*partition))?;
        }
        Ok(SupervisorState {
            context: args.context,
            children: HashMap::new(),
            restarts: HashMap::new(),
            shutting_down: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        message: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Start(partition) if !state.shutting_down => {
                state.start_child(&myself, partition).await;
            }
            SupervisorMsg::Start(_) => {}
            SupervisorMsg::Status(reply) => {
                let mut statuses = Vec::new();
                for child in state.children.values() {
                    if let Ok(status) = ractor::call_t!(child.actor, PartitionMsg::Status, 5_000) {
                        statuses.push(status);
                    }
                }
                statuses.sort_by_key(|s| s.partition);
                let _ = reply.send(statuses);
            }
            SupervisorMsg::Shutdown(reply) => {
                state.shutting_down = true;
                for (_, child) in state.children.drain() {
                    if let Err(e) = child.actor.stop_and_wait(None, Some(STOP_TIMEOUT)).await {
                        warn!(partition = child.partition, error = %e, "partition actor did not stop in time");
                    }
                }
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        // Overridden so that a child's end never stops the supervisor itself.
        let (cell, reason) = match event {
            SupervisionEvent::ActorFailed(cell, error) => (cell, error.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.unwrap_or_else(|| "stopped".into()))
            }
            _ => return Ok(()),
        };
        let Some(child) = state.children.remove(&cell.get_id()) else {
            return Ok(());
        };
        if state.shutting_down {
            return Ok(());
        }
        let partition = child.partition;
        let delay = state
            .restarts
            .entry(partition)
            .or_default()
            .on_failure(&state.context.restart, child.started.elapsed());
        state
            .context
            .stats
            .partition(partition)
            .restarts
            .fetch_add(1, Ordering::Relaxed);
        error!(partition, %reason, delay_ms = delay.as_millis() as u64, "partition actor ended; restarting");
        myself.send_after(delay, move || SupervisorMsg::Start(partition));
        Ok(())
    }
}

impl SupervisorState {
    async fn start_child(&mut self, myself: &ActorRef<SupervisorMsg>, partition: i32) {
        let args = PartitionArgs {
            partition,
            context: self.context.clone(),
        };
        match Actor::spawn_linked(None, PartitionActor, args, myself.get_cell()).await {
            Ok((actor, _handle)) => {
                info!(partition, actor = %actor.get_id(), "partition actor running");
                self.children.insert(
                    actor.get_id(),
                    Child {
                        partition,
                        actor,
                        started: Instant::now(),
                    },
                );
            }
            Err(e) => {
                // Startup failed (broker or lake unreachable): no supervision event
                // follows, so schedule the next attempt here.
                let delay = self
                    .restarts
                    .entry(partition)
                    .or_default()
                    .on_failure(&self.context.restart, Duration::ZERO);
                error!(partition, error = %e, delay_ms = delay.as_millis() as u64, "partition actor failed to start; retrying");
                myself.send_after(delay, move || SupervisorMsg::Start(partition));
            }
        }
    }
}
