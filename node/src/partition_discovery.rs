//! Registers the input topic's partitions in the replicated state, where the
//! coordinator places them. Every member looks, not only the leader: a leader
//! cut off from the brokers would otherwise register none. A follower's
//! proposal is forwarded to the leader, and a partition registered twice is
//! registered once.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use streamreel_actors::kafka;
use streamreel_cluster::{ClusterMember, Command};

/// How long a member waits for its proposal to be committed.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// The next look after one that could not finish (no leader yet, brokers
/// unreachable, proposal refused): soon, so that a new cluster registers its
/// partitions as soon as it has a leader.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The listed partitions the state does not hold yet.
pub fn unregistered<V>(listed: &[i32], registered: &BTreeMap<i32, V>) -> Vec<i32> {
    listed
        .iter()
        .copied()
        .filter(|partition| !registered.contains_key(partition))
        .collect()
}

/// Lists `topic`'s partitions every `every` until cancelled and proposes
/// those not registered yet.
pub async fn watch_partitions(
    brokers: String,
    topic: String,
    member: ClusterMember,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let wait = if look_once(&brokers, &topic, &member).await {
            every
        } else {
            RETRY_AFTER
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One look; true when the state holds every partition listed.
async fn look_once(brokers: &str, topic: &str, member: &ClusterMember) -> bool {
    if member.leader().is_none() {
        return false;
    }
    let (brokers, topic) = (brokers.to_string(), topic.to_string());
    let listed =
        match tokio::task::spawn_blocking(move || kafka::partition_ids(&brokers, &topic)).await {
            Ok(Ok(listed)) => listed,
            // Unreachable brokers are reported by the broker check already.
            Ok(Err(e)) => {
                debug!(error = %e, "cannot list the input topic's partitions");
                return false;
            }
            Err(e) => {
                warn!(error = %e, "partition discovery panicked");
                return false;
            }
        };
    let new = unregistered(&listed, &member.view.read().state.ownership());
    if new.is_empty() {
        return true;
    }
    info!(partitions = ?new, node = member.id, "new input partitions");
    match member
        .propose(Command::AddPartitions { partitions: new }, PROPOSE_TIMEOUT)
        .await
    {
        Ok(_) => true,
        Err(e) => {
            warn!(error = %e, "could not register new partitions; trying again");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_partitions_the_state_lacks_are_proposed() {
        let registered: BTreeMap<i32, ()> = [(0, ()), (1, ())].into();
        assert_eq!(unregistered(&[0, 1, 2, 3], &registered), vec![2, 3]);
        assert!(unregistered(&[1, 0], &registered).is_empty());
        assert_eq!(unregistered(&[5], &BTreeMap::<i32, ()>::new()), vec![5]);
    }
}
