//! Registers the input topic's partitions in the replicated state, where the
//! coordinator places them. Every member looks, not only the leader: a leader
//! cut off from the brokers would otherwise register none. A follower's
//! proposal is forwarded to the leader, and a partition registered twice is
//! registered once.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use streamreel_actors::kafka;
use streamreel_cluster::{ClusterMember, Command};

/// How long a member waits for its proposal to be committed.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// The next look after one whose proposal failed: soon.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How long a look waits for a leader before it starts over. A new cluster
/// elects one within milliseconds of its start, and its partitions are
/// registered as soon as it has (a look that slept instead held every new
/// node's ingest back by a second).
const LEADER_WAIT: Duration = Duration::from_secs(1);

/// How one look ended.
#[derive(Debug)]
enum Look {
    /// The state holds every partition listed.
    Done,
    /// No leader after waiting [`LEADER_WAIT`] for one: look again at once.
    NoLeader,
    /// The proposal failed: look again soon.
    Retry,
    /// The brokers did not list the topic's partitions.
    ListingFailed(String),
}

/// The wait after `failures` listings in a row failed: from 1 s, doubling up
/// to `every` (a topic the node is still creating is listed soon; a long
/// outage is not polled each second by every member).
fn listing_backoff(failures: u32, every: Duration) -> Duration {
    RETRY_AFTER
        .saturating_mul(1 << failures.saturating_sub(1).min(10))
        .min(every)
}

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
    let mut listing_error: Option<String> = None;
    let mut failed_listings: u32 = 0;
    loop {
        // A look may wait a second for a leader; a stop need not. A proposal
        // dropped here may still be committed: registering is idempotent.
        let look = tokio::select! {
            _ = shutdown.cancelled() => return,
            look = look_once(&brokers, &topic, &member) => look,
        };
        let wait = match look {
            Look::Done => {
                if listing_error.take().is_some() {
                    info!(%topic, "the input topic's partitions are listed again");
                }
                failed_listings = 0;
                every
            }
            Look::NoLeader => Duration::ZERO,
            Look::Retry => RETRY_AFTER,
            Look::ListingFailed(error) => {
                if listing_error.as_ref() != Some(&error) {
                    warn!(%error, %topic, "cannot list the input topic's partitions");
                }
                listing_error = Some(error);
                failed_listings += 1;
                listing_backoff(failed_listings, every)
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn look_once(brokers: &str, topic: &str, member: &ClusterMember) -> Look {
    if member.leader_within(LEADER_WAIT).await.is_none() {
        return Look::NoLeader;
    }
    let (brokers, topic) = (brokers.to_string(), topic.to_string());
    let listed =
        match tokio::task::spawn_blocking(move || kafka::partition_ids(&brokers, &topic)).await {
            Ok(Ok(listed)) => listed,
            Ok(Err(e)) => return Look::ListingFailed(e.to_string()),
            Err(e) => return Look::ListingFailed(format!("the listing task failed: {e}")),
        };
    let new = unregistered(&listed, &member.view.read().state.ownership());
    if new.is_empty() {
        return Look::Done;
    }
    info!(partitions = ?new, node = member.id, "new input partitions");
    match member
        .propose(Command::AddPartitions { partitions: new }, PROPOSE_TIMEOUT)
        .await
    {
        Ok(_) => Look::Done,
        Err(e) => {
            warn!(error = %e, "could not register new partitions; trying again");
            Look::Retry
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_listings_back_off_from_a_second_to_the_period() {
        let every = Duration::from_secs(10);
        let waits: Vec<u64> = (1..=6)
            .map(|n| listing_backoff(n, every).as_secs())
            .collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 10, 10]);
        assert_eq!(listing_backoff(u32::MAX, every), every);
    }

    #[test]
    fn only_partitions_the_state_lacks_are_proposed() {
        let registered: BTreeMap<i32, ()> = [(0, ()), (1, ())].into();
        assert_eq!(unregistered(&[0, 1, 2, 3], &registered), vec![2, 3]);
        assert!(unregistered(&[1, 0], &registered).is_empty());
        assert_eq!(unregistered(&[5], &BTreeMap::<i32, ()>::new()), vec![5]);
    }
}
