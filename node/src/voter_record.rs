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
    /// The newest membership a member holding Raft state applied lists it
    /// as a voter: its state was lost.
    StillVoter { told_by: NodeId },
    /// The newest membership leaves it out as a voter, and is newer than the
    /// one the record was written for: it was removed since.
    Removed { told_by: NodeId },
    /// No member holding Raft state of this lake answered, or none newer
    /// than the record (one lagging behind cannot tell a removal).
    Unknown,
}

/// Judges `answers` (each paired with the id it was asked as) for member
/// `me`, recorded as a voter of the membership at log index `recorded`, by
/// the newest membership among them: committed memberships follow one
/// another, so the newest is the one that counts, whoever else lags.
pub fn judge(me: NodeId, recorded: u64, lake: &str, answers: &[(NodeId, PingAnswer)]) -> Verdict {
    let newest = answers
        .iter()
        .filter(|(asked, answer)| answer.node == *asked && answer.lake == lake)
        .filter(|(_, answer)| answer.initialized)
        .filter_map(|(_, answer)| Some((answer.membership.index?, answer)))
        .max_by_key(|(index, _)| *index);
    match newest {
        None => Verdict::Unknown,
        Some((_, answer)) if answer.membership.voters.contains(&me) => Verdict::StillVoter {
            told_by: answer.node,
        },
        Some((index, answer)) if index > recorded => Verdict::Removed {
            told_by: answer.node,
        },
        Some(_) => Verdict::Unknown,
    }
}

/// The membership index a record holds. A record that cannot be read counts
/// as the newest possible, so that no answer takes it for stale.
fn read_record(path: &Path) -> std::io::Result<u64> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .next()
        .and_then(|line| line.trim().parse().ok())
        .unwrap_or(u64::MAX))
}

/// Refuses to go on when this member holds no Raft state while the lake
/// records it as a voter that was not removed since. Call before the member
/// answers Raft requests.
pub async fn check_empty_start(
    member: &ClusterMember,
    lake_dir: &Path,
    lake_id: &str,
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
    let io = |source| NodeError::Io {
        path: record.display().to_string(),
        source,
    };
    let recorded = match read_record(&record) {
        Ok(index) => index,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e)),
    };
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
    // Alone in its config, no one can answer: no point in waiting.
    let wait = if others.is_empty() {
        Duration::ZERO
    } else {
        ASK_FOR
    };
    let deadline = Instant::now() + wait;
    loop {
        let asked = others.iter().map(|(id, addr)| async move {
            let answer = tokio::time::timeout(ASK_EVERY * 3, member.ping(addr)).await;
            answer.ok()?.ok().map(|answer| (*id, answer))
        });
        let answers: Vec<(NodeId, PingAnswer)> = futures::future::join_all(asked)
            .await
            .into_iter()
            .flatten()
            .collect();
        match judge(member.id, recorded, lake_id, &answers) {
            Verdict::StillVoter { told_by } => {
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
                std::fs::remove_file(&record).map_err(io)?;
                return durable_file::sync_dir(record.parent().expect("a record has a parent"))
                    .map_err(io);
            }
            Verdict::Unknown if Instant::now() >= deadline => {
                return Err(NodeError::VoterStateUnconfirmed {
                    node: member.id,
                    data_dir: data_dir.display().to_string(),
                    record: record.display().to_string(),
                    waited_s: wait.as_secs(),
                });
            }
            Verdict::Unknown => tokio::time::sleep(ASK_EVERY).await,
        }
    }
}

/// Keeps this member's record in the lake: the log index of the newest
/// membership that lists it as a voter, written when such a membership
/// reaches its log (before or as it acknowledges entries as a voter).
/// Runs until Raft stops.
pub async fn record_as_voter(member: ClusterMember, lake_dir: PathBuf) {
    let record = record_path(&lake_dir, member.id);
    // An unreadable record is written again at the next membership.
    let mut recorded = read_record(&record).ok().filter(|index| *index != u64::MAX);
    let mut metrics = member.raft.metrics();
    loop {
        let voter_at = {
            let now = metrics.borrow_and_update();
            let membership = &now.membership_config;
            let voter = membership
                .membership()
                .voter_ids()
                .any(|id| id == member.id);
            membership.log_id().map(|id| id.index).filter(|_| voter)
        };
        if let Some(index) = voter_at.filter(|index| recorded < Some(*index)) {
            write_until_done(&record, index).await;
            recorded = Some(index);
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

async fn write_until_done(record: &Path, index: u64) {
    loop {
        let path = record.to_path_buf();
        let written = tokio::task::spawn_blocking(move || write_record(&path, index)).await;
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

fn write_record(path: &Path, index: u64) -> std::io::Result<()> {
    durable_file::create_dir_durably(path.parent().expect("a record has a parent"))?;
    durable_file::write_durably(
        path,
        format!("{index}\nthe log index of the newest membership listing this member as a voter\n")
            .as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use streamreel_cluster::removal::MembershipSeen;
    use streamreel_cluster::state::StateSettings;

    use super::*;

    fn answer(node: NodeId, index: Option<u64>, voters: &[NodeId]) -> (NodeId, PingAnswer) {
        let voters: BTreeSet<NodeId> = voters.iter().copied().collect();
        let answer = PingAnswer {
            node,
            initialized: index.is_some(),
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
                index,
                members: voters.clone(),
                voters,
            },
        };
        (node, answer)
    }

    #[test]
    fn the_newest_membership_decides() {
        let judge = |answers: &[(NodeId, PingAnswer)]| judge(2, 40, "lake", answers);
        assert_eq!(judge(&[]), Verdict::Unknown);
        // Members that lost their state too know nothing.
        assert_eq!(judge(&[answer(3, None, &[])]), Verdict::Unknown);
        assert_eq!(
            judge(&[answer(1, Some(50), &[1, 2, 3])]),
            Verdict::StillVoter { told_by: 1 }
        );
        assert_eq!(
            judge(&[answer(1, Some(60), &[1, 3])]),
            Verdict::Removed { told_by: 1 }
        );
        // One not newer than the record may lag behind its addition.
        assert_eq!(judge(&[answer(1, Some(30), &[1, 3])]), Verdict::Unknown);
        // A member removed earlier, still running, lists it at an old index;
        // the newest membership counts.
        assert_eq!(
            judge(&[
                answer(4, Some(45), &[1, 2, 4]),
                answer(1, Some(60), &[1, 3])
            ]),
            Verdict::Removed { told_by: 1 }
        );
        assert_eq!(
            judge(&[
                answer(1, Some(45), &[1, 3]),
                answer(3, Some(60), &[1, 2, 3])
            ]),
            Verdict::StillVoter { told_by: 3 }
        );
        // A learner is not a voter.
        let (id, mut learner_listed) = answer(1, Some(60), &[1, 3]);
        learner_listed.membership.members.insert(2);
        assert_eq!(
            judge(&[(id, learner_listed)]),
            Verdict::Removed { told_by: 1 }
        );
    }

    #[test]
    fn answers_of_another_lake_or_under_another_id_are_not_heard() {
        let (_, other_lake) = answer(1, Some(60), &[1, 3]);
        let other_lake = PingAnswer {
            lake: "other".into(),
            ..other_lake
        };
        assert_eq!(judge(2, 40, "lake", &[(1, other_lake)]), Verdict::Unknown);
        let (_, as_five) = answer(5, Some(60), &[1, 3]);
        assert_eq!(judge(2, 40, "lake", &[(1, as_five)]), Verdict::Unknown);
    }

    #[test]
    fn a_record_holds_its_index_and_an_unreadable_one_counts_as_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = record_path(dir.path(), 2);
        write_record(&path, 17).unwrap();
        assert_eq!(read_record(&path).unwrap(), 17);
        write_record(&path, 23).unwrap();
        assert_eq!(read_record(&path).unwrap(), 23);
        std::fs::write(&path, "garbage").unwrap();
        assert_eq!(read_record(&path).unwrap(), u64::MAX);
    }
}
