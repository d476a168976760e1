//! A voter whose Raft state was lost must not vote again as if it had never
//! voted. Its data dir emptied or replaced (a disk swapped, a directory wiped),
//! it would grant its vote to any candidate and count towards a majority
//! without the entries it had acknowledged: a candidate lacking committed
//! checkpoints and ownerships could win, and undo them.
//!
//! The lake, which outlives a member's disk, records each member that became
//! a voter: `<lake>/_cluster/voters/<id>`. A member that starts without Raft
//! state while the lake records it asks the other members, before it answers
//! any Raft request, whether it is still a member: if it is, it refuses to
//! start; if it was removed since, the record is stale and goes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use streamreel_cluster::durable_file;
use streamreel_cluster::{ClusterMember, NodeId, PingAnswer};

use crate::error::NodeError;

/// How long a member without Raft state waits for a member that holds some.
const ASK_FOR: Duration = Duration::from_secs(15);
const ASK_EVERY: Duration = Duration::from_millis(300);
/// A record that cannot be written (the lake unreachable) is tried again.
const WRITE_RETRY: Duration = Duration::from_secs(5);

/// Where the lake records that `node` became a voter.
pub fn record_path(lake_dir: &Path, node: NodeId) -> PathBuf {
    lake_dir
        .join("_cluster")
        .join("voters")
        .join(node.to_string())
}

/// What the other members' answers say of a member without Raft state.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A member holding Raft state still lists it: its state was lost.
    StillMember { told_by: NodeId },
    /// A member holding Raft state has applied a membership without it.
    Removed { told_by: NodeId },
    /// No member holding Raft state answered.
    Unknown,
}

/// Judges `answers` for member `me`. A member still listing it wins over one
/// that does not: a member that lags may not have applied its addition back.
pub fn judge(me: NodeId, answers: &[PingAnswer]) -> Verdict {
    let knowing = answers
        .iter()
        .filter(|answer| answer.initialized && answer.membership.index.is_some());
    let mut verdict = Verdict::Unknown;
    for answer in knowing {
        if answer.membership.members.contains(&me) {
            return Verdict::StillMember {
                told_by: answer.node,
            };
        }
        verdict = Verdict::Removed {
            told_by: answer.node,
        };
    }
    verdict
}

/// Refuses to go on when this member holds no Raft state while the lake
/// records it as a voter that was not removed since. Call before the member
/// answers Raft requests.
pub async fn check_empty_start(
    member: &ClusterMember,
    lake_dir: &Path,
    data_dir: &Path,
    configured: &BTreeMap<NodeId, String>,
) -> Result<(), NodeError> {
    // Asked of Raft's core, which has read the store by then; its metrics
    // may still be the defaults of a member without state.
    if member
        .raft
        .is_initialized()
        .await
        .map_err(|e| NodeError::Cluster(streamreel_cluster::ClusterError::raft(e)))?
    {
        return Ok(());
    }
    let record = record_path(lake_dir, member.id);
    if !record.exists() {
        return Ok(());
    }
    warn!(
        node = member.id,
        record = %record.display(),
        "no Raft state in the data dir, but the lake records this member as a voter: asking \
         the other members whether it is still one"
    );
    let others: Vec<(NodeId, &String)> = configured
        .iter()
        .filter(|(id, _)| **id != member.id)
        .map(|(id, addr)| (*id, addr))
        .collect();
    let deadline = Instant::now() + ASK_FOR;
    loop {
        let mut answers = Vec::new();
        for (_, addr) in &others {
            if let Ok(answer) = member.ping(addr).await {
                answers.push(answer);
            }
        }
        match judge(member.id, &answers) {
            Verdict::StillMember { told_by } => {
                return Err(NodeError::VoterStateLost {
                    node: member.id,
                    data_dir: data_dir.display().to_string(),
                    record: record.display().to_string(),
                    told_by,
                });
            }
            Verdict::Removed { told_by } => {
                info!(
                    node = member.id,
                    told_by,
                    record = %record.display(),
                    "this member was removed from the cluster since it was a voter: its record \
                     in the lake goes, and it waits to be added"
                );
                let io = |source| NodeError::Io {
                    path: record.display().to_string(),
                    source,
                };
                std::fs::remove_file(&record).map_err(io)?;
                return durable_file::sync_dir(record.parent().expect("a record has a parent"))
                    .map_err(io);
            }
            Verdict::Unknown if Instant::now() >= deadline => {
                return Err(NodeError::VoterStateUnconfirmed {
                    node: member.id,
                    data_dir: data_dir.display().to_string(),
                    record: record.display().to_string(),
                    waited_s: ASK_FOR.as_secs(),
                });
            }
            Verdict::Unknown => tokio::time::sleep(ASK_EVERY).await,
        }
    }
}

/// Records in the lake, once, that this member is a voter holding Raft
/// state. Runs until it has, or until Raft stops.
pub async fn record_once_voter(member: ClusterMember, lake_dir: PathBuf) {
    let mut metrics = member.raft.metrics();
    loop {
        let voter = {
            let now = metrics.borrow_and_update();
            let voters = now
                .membership_config
                .membership()
                .voter_ids()
                .collect::<Vec<_>>();
            now.last_log_index.is_some() && voters.contains(&member.id)
        };
        if voter {
            break;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
    let record = record_path(&lake_dir, member.id);
    loop {
        let path = record.clone();
        let node = member.id;
        let written = tokio::task::spawn_blocking(move || write_record(&path, node)).await;
        match written {
            Ok(Ok(())) => return,
            Ok(Err(error)) => {
                warn!(record = %record.display(), %error, "cannot record this voter in the lake; trying again");
            }
            Err(error) => warn!(%error, "the task recording this voter failed; trying again"),
        }
        tokio::time::sleep(WRITE_RETRY).await;
    }
}

fn write_record(path: &Path, node: NodeId) -> std::io::Result<()> {
    if path.exists() {
        return Ok(());
    }
    durable_file::create_dir_durably(path.parent().expect("a record has a parent"))?;
    durable_file::write_durably(
        path,
        format!("node {node} is a voter of the cluster writing this lake\n").as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use streamreel_cluster::removal::MembershipSeen;
    use streamreel_cluster::state::StateSettings;

    use super::*;

    fn answer(node: NodeId, initialized: bool, members: &[NodeId]) -> PingAnswer {
        PingAnswer {
            node,
            initialized,
            reaches_brokers: true,
            settings: StateSettings {
                dedup: streamreel_cluster::dedup::DedupSettings {
                    window_events: 10,
                    window: Duration::from_secs(60),
                    max_ids: 10,
                },
                live_retention_us: 1,
                live_max_entries: 1,
                job_history: 1,
            },
            lake: "lake".into(),
            membership: MembershipSeen {
                index: initialized.then_some(7),
                members: members.iter().copied().collect::<BTreeSet<_>>(),
            },
        }
    }

    #[test]
    fn a_member_still_listed_lost_its_state_and_one_left_out_was_removed() {
        assert_eq!(judge(2, &[]), Verdict::Unknown);
        // Members that lost their state too know nothing.
        assert_eq!(judge(2, &[answer(3, false, &[])]), Verdict::Unknown);
        assert_eq!(
            judge(2, &[answer(1, true, &[1, 2, 3])]),
            Verdict::StillMember { told_by: 1 }
        );
        assert_eq!(
            judge(2, &[answer(1, true, &[1, 3])]),
            Verdict::Removed { told_by: 1 }
        );
        // One that still lists it outweighs one that lags behind its re-addition.
        assert_eq!(
            judge(2, &[answer(1, true, &[1, 3]), answer(3, true, &[1, 2, 3])]),
            Verdict::StillMember { told_by: 3 }
        );
    }
}
