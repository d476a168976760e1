//! Whether a change of voters can commit now (pure). Raft moves from one set
//! of voters to another through a joint configuration, whose entries commit
//! only with a majority of **both** sets. Once proposed, a change cannot be
//! withdrawn: if the new set's alive members are no majority of it, every
//! later entry (every checkpoint of every partition) waits until enough of
//! them return.

use std::collections::BTreeSet;

use crate::types::NodeId;

/// Why a change of voters would stall the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumShortfall {
    /// The set without a majority alive: the voters after the change, or
    /// (when the cluster has already lost its majority) before it.
    pub voters: BTreeSet<NodeId>,
    /// Its members not alive.
    pub not_alive: BTreeSet<NodeId>,
    /// How many alive members it needs.
    pub needed: usize,
}

/// `None` when a majority of `before` and a majority of `after` are alive.
pub fn change_shortfall(
    before: &BTreeSet<NodeId>,
    after: &BTreeSet<NodeId>,
    alive: &BTreeSet<NodeId>,
) -> Option<QuorumShortfall> {
    [after, before].into_iter().find_map(|voters| {
        let needed = voters.len() / 2 + 1;
        let not_alive: BTreeSet<NodeId> = voters.difference(alive).copied().collect();
        (voters.len() - not_alive.len() < needed).then(|| QuorumShortfall {
            voters: voters.clone(),
            not_alive,
            needed,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn removing_a_live_voter_while_another_is_dead_would_stall() {
        let shortfall = change_shortfall(&set(&[1, 2, 3]), &set(&[1, 3]), &set(&[1, 2]));
        assert_eq!(
            shortfall,
            Some(QuorumShortfall {
                voters: set(&[1, 3]),
                not_alive: set(&[3]),
                needed: 2,
            })
        );
    }

    #[test]
    fn removing_the_dead_voter_is_allowed() {
        assert_eq!(
            change_shortfall(&set(&[1, 2, 3]), &set(&[1, 2]), &set(&[1, 2])),
            None
        );
        // Five voters, two dead: either may go, one after the other.
        let alive = set(&[1, 2, 3]);
        assert_eq!(
            change_shortfall(&set(&[1, 2, 3, 4, 5]), &set(&[1, 2, 3, 5]), &alive),
            None
        );
        assert_eq!(
            change_shortfall(&set(&[1, 2, 3, 5]), &set(&[1, 2, 3]), &alive),
            None
        );
        // But a live one may not go while both are dead.
        assert!(change_shortfall(&set(&[1, 2, 3, 4, 5]), &set(&[1, 2, 4, 5]), &alive).is_some());
    }

    #[test]
    fn adding_a_voter_needs_the_new_set_to_keep_a_majority() {
        // 2 of 3 alive, the new one alive: 3 of 4.
        assert_eq!(
            change_shortfall(&set(&[1, 2, 3]), &set(&[1, 2, 3, 4]), &set(&[1, 2, 4])),
            None
        );
        // 2 of 3 alive, the new one not answering: 2 of 4 is no majority.
        assert!(change_shortfall(&set(&[1, 2, 3]), &set(&[1, 2, 3, 4]), &set(&[1, 2])).is_some());
    }

    #[test]
    fn a_cluster_without_a_majority_changes_nothing() {
        let shortfall = change_shortfall(&set(&[1, 2, 3]), &set(&[1]), &set(&[1]));
        assert_eq!(shortfall.map(|s| s.voters), Some(set(&[1, 2, 3])));
    }
}
