//! Whether this member was removed from the cluster (pure).
//!
//! Raft does not tell a removed member: the leader stops replicating to it as
//! soon as it appends the configuration that leaves it out. Left alone, such a
//! member would keep running the partitions its stale replica says it owns,
//! its writes fenced and its checkpoints refused. It learns of its removal
//! instead from the membership it applies (a leader that removed itself) or
//! from a newer committed membership another member's ping answer shows.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::state::Ownership;
use crate::types::NodeId;

/// A committed membership as one member applied it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipSeen {
    /// Log index of the entry that set it; `None` before any.
    pub index: Option<u64>,
    /// Every member it lists, voters and learners.
    pub members: BTreeSet<NodeId>,
}

/// Whether `me` has been removed: it was a member of a membership it applied
/// (`was_member`), and now its own applied membership leaves it out, or
/// another member applied a later one that does. A member being added, which
/// replays memberships from before its addition, was never a member yet.
/// Only committed memberships are compared, so an uncommitted change cannot
/// mislead it.
pub fn is_removed(
    me: NodeId,
    was_member: bool,
    own: &MembershipSeen,
    others: &[MembershipSeen],
) -> bool {
    was_member
        && (!own.members.contains(&me)
            || others
                .iter()
                .any(|other| other.index > own.index && !other.members.contains(&me)))
}

/// The ownership a removed member acts on: none of the partitions is its own.
pub fn released(ownership: &Ownership, me: NodeId) -> Ownership {
    ownership
        .iter()
        .map(|(partition, (owner, epoch))| {
            let owner = owner.filter(|owner| *owner != me);
            (*partition, (owner, *epoch))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(index: Option<u64>, members: &[NodeId]) -> MembershipSeen {
        MembershipSeen {
            index,
            members: members.iter().copied().collect(),
        }
    }

    #[test]
    fn a_member_is_removed_by_its_own_or_a_later_membership_only() {
        let own = seen(Some(10), &[1, 2, 3]);
        assert!(!is_removed(3, true, &own, &[]));
        assert!(!is_removed(3, true, &own, &[seen(Some(10), &[1, 2, 3])]));
        // A lagging member's older view removes nobody.
        assert!(!is_removed(3, true, &own, &[seen(Some(4), &[1, 2])]));
        assert!(is_removed(3, true, &own, &[seen(Some(12), &[1, 2])]));
        assert!(!is_removed(1, true, &own, &[seen(Some(12), &[1, 2])]));
        // The leader that removed itself applied the membership without it.
        assert!(is_removed(1, true, &seen(Some(12), &[2]), &[]));
    }

    #[test]
    fn a_member_being_added_is_not_removed_while_it_replays_older_memberships() {
        let others = [seen(Some(12), &[1, 2])];
        assert!(!is_removed(4, false, &MembershipSeen::default(), &others));
        assert!(!is_removed(4, false, &seen(Some(1), &[1, 2]), &others));
    }

    #[test]
    fn a_removed_member_owns_nothing_and_other_owners_and_epochs_stay() {
        let ownership: Ownership = [(0, (Some(1), 3)), (1, (Some(2), 5)), (2, (None, 1))]
            .into_iter()
            .collect();
        let expected: Ownership = [(0, (None, 3)), (1, (Some(2), 5)), (2, (None, 1))]
            .into_iter()
            .collect();
        assert_eq!(released(&ownership, 1), expected);
        assert_eq!(released(&ownership, 7), ownership);
    }
}
