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
    /// The voters among them (of either set, during a change of voters).
    pub voters: BTreeSet<NodeId>,
}

/// The log index of the membership that removed `me`, if it is removed: it
/// was a member of a membership it applied (`was_member`), and now its own
/// applied membership leaves it out, or another member applied a later one
/// that does. A member being added, which replays memberships from before
/// its addition, was never a member yet. Only committed memberships are
/// compared, so an uncommitted change cannot mislead it.
///
/// `known` is the removal found before. It holds when the others fall
/// silent later, so that a removed member never takes its partitions again;
/// it ends only when `me`'s own applied membership lists it at a later index:
/// it was added back, and a member replaying the log on its way back passes
/// its old removal before its new addition.
pub fn removed_at(
    me: NodeId,
    was_member: bool,
    own: &MembershipSeen,
    others: &[MembershipSeen],
    known: Option<u64>,
) -> Option<u64> {
    let own_index = own.index.unwrap_or(0);
    let listed = own.members.contains(&me);
    let known = known.filter(|at| !(listed && own_index > *at));
    if !was_member {
        return known;
    }
    let seen = if listed {
        others
            .iter()
            .filter(|other| other.index > own.index && !other.members.contains(&me))
            .map(|other| other.index.unwrap_or(0))
            .max()
    } else {
        Some(own_index)
    };
    known.max(seen)
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
            voters: members.iter().copied().collect(),
        }
    }

    fn is_removed(
        me: NodeId,
        was_member: bool,
        own: &MembershipSeen,
        others: &[MembershipSeen],
    ) -> bool {
        removed_at(me, was_member, own, others, None).is_some()
    }

    #[test]
    fn a_member_is_removed_by_its_own_or_a_later_membership_only() {
        let own = seen(Some(10), &[1, 2, 3]);
        assert!(!is_removed(3, true, &own, &[]));
        assert!(!is_removed(3, true, &own, &[seen(Some(10), &[1, 2, 3])]));
        // A lagging member's older view removes nobody.
        assert!(!is_removed(3, true, &own, &[seen(Some(4), &[1, 2])]));
        assert_eq!(
            removed_at(3, true, &own, &[seen(Some(12), &[1, 2])], None),
            Some(12)
        );
        assert!(!is_removed(1, true, &own, &[seen(Some(12), &[1, 2])]));
        // The leader that removed itself applied the membership without it.
        assert_eq!(
            removed_at(1, true, &seen(Some(12), &[2]), &[], None),
            Some(12)
        );
    }

    #[test]
    fn a_member_being_added_is_not_removed_while_it_replays_older_memberships() {
        let others = [seen(Some(12), &[1, 2])];
        assert!(!is_removed(4, false, &MembershipSeen::default(), &others));
        assert!(!is_removed(4, false, &seen(Some(1), &[1, 2]), &others));
    }

    #[test]
    fn a_removal_holds_when_the_others_fall_silent_until_the_member_is_added_back() {
        let own = seen(Some(10), &[1, 2, 3]);
        let known = removed_at(3, true, &own, &[seen(Some(12), &[1, 2])], None);
        assert_eq!(known, Some(12));
        // The others no longer answer; its own replica still lists it.
        assert_eq!(removed_at(3, true, &own, &[], known), Some(12));
        // Added back with an empty data dir, it replays the log: the
        // original membership, its removal at 12, its addition at 20.
        let mut known = None;
        for (own, was_member) in [
            (seen(Some(1), &[1, 2, 3]), true),
            (seen(Some(12), &[1, 2]), true),
            (seen(Some(20), &[1, 2, 3]), true),
        ] {
            known = removed_at(3, was_member, &own, &[seen(Some(20), &[1, 2, 3])], known);
        }
        assert_eq!(known, None, "added back");
        // Removed again later.
        let again = removed_at(
            3,
            true,
            &seen(Some(20), &[1, 2, 3]),
            &[seen(Some(30), &[1, 2])],
            known,
        );
        assert_eq!(again, Some(30));
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
