//! A partition's checkpoint through Raft: its offset, bronze version, new
//! de-duplication ids and live counts, as one replicated command.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use streamreel_cluster::{CheckpointIncrement, Command, CommandResult};

use crate::context::IngestContext;
use crate::error::ActorError;

/// How long a checkpoint may wait for Raft before the actor gives up (and a
/// fresh one resumes from bronze).
const CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `increment` was committed through Raft; a refusal (a stale epoch
/// or owner) is an error.
pub async fn propose_checkpoint(
    context: &IngestContext,
    increment: CheckpointIncrement,
) -> Result<(), ActorError> {
    let partition = increment.partition;
    let command = Command::Checkpoint(increment);
    let bytes = streamreel_protocol::codec::encoded_len(&command);
    let started = Instant::now();
    match context.cluster.propose(command, CHECKPOINT_TIMEOUT).await? {
        CommandResult::Refused(refusal) => {
            Err(ActorError::CheckpointRefused { partition, refusal })
        }
        _ => {
            let stats = context.stats.partition(partition);
            stats.checkpoints.fetch_add(1, Ordering::Relaxed);
            stats
                .checkpoint_micros
                .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            stats
                .checkpoint_bytes
                .fetch_add(bytes as u64, Ordering::Relaxed);
            Ok(())
        }
    }
}
