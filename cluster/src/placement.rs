//! Who should own which partition: pure decisions the coordinator turns into
//! `Assign` commands.

use std::collections::{BTreeMap, BTreeSet};

use crate::state::Ownership;
use crate::types::{Epoch, NodeId, PartitionId};

/// One change of owner, compare-and-set on the epoch it replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    pub partition: PartitionId,
    /// The owner it replaces (`None`: a partition nobody owned), for the log.
    pub from: Option<NodeId>,
    pub to: NodeId,
    pub expected_epoch: Epoch,
}

/// Gives every partition without a live owner to the live node owning the
/// fewest (ties: lowest id). With `rebalance`, then moves partitions from the
/// most loaded to the least loaded live node until counts differ by at most one.
pub fn place(ownership: &Ownership, live: &BTreeSet<NodeId>, rebalance: bool) -> Vec<Move> {
    if live.is_empty() {
        return Vec::new();
    }
    let mut owners: BTreeMap<PartitionId, (Option<NodeId>, Epoch)> = ownership.clone();
    let mut moves = Vec::new();
    let orphans: Vec<PartitionId> = owners
        .iter()
        .filter(|(_, (owner, _))| !owner.is_some_and(|o| live.contains(&o)))
        .map(|(p, _)| *p)
        .collect();
    for partition in orphans {
        let to = least_loaded(&owners, live);
        moves.push(assign(&mut owners, partition, to));
    }
    if rebalance {
        loop {
            let most = most_loaded(&owners, live);
            let least = least_loaded(&owners, live);
            if load(&owners, most) <= load(&owners, least) + 1 {
                break;
            }
            let partition = owners
                .iter()
                .find(|(_, (owner, _))| *owner == Some(most))
                .map(|(p, _)| *p)
                .expect("the most loaded node owns a partition");
            moves.push(assign(&mut owners, partition, least));
        }
    }
    // A partition moved twice in one round needs only its last move, made from
    // the epoch it has now.
    let mut last: BTreeMap<PartitionId, Move> = BTreeMap::new();
    for m in moves {
        last.insert(
            m.partition,
            Move {
                from: ownership[&m.partition].0,
                expected_epoch: ownership[&m.partition].1,
                ..m
            },
        );
    }
    last.into_values().collect()
}

/// Moves that put `partition` on `to` (none if it is there already).
pub fn move_to(ownership: &Ownership, partition: PartitionId, to: NodeId) -> Option<Move> {
    let (owner, epoch) = ownership.get(&partition)?;
    (*owner != Some(to)).then_some(Move {
        partition,
        from: *owner,
        to,
        expected_epoch: *epoch,
    })
}

fn assign(
    owners: &mut BTreeMap<PartitionId, (Option<NodeId>, Epoch)>,
    partition: PartitionId,
    to: NodeId,
) -> Move {
    let entry = owners.get_mut(&partition).expect("known partition");
    let (from, expected_epoch) = *entry;
    *entry = (Some(to), expected_epoch + 1);
    Move {
        partition,
        from,
        to,
        expected_epoch,
    }
}

fn load(owners: &BTreeMap<PartitionId, (Option<NodeId>, Epoch)>, node: NodeId) -> usize {
    owners.values().filter(|(o, _)| *o == Some(node)).count()
}

fn least_loaded(
    owners: &BTreeMap<PartitionId, (Option<NodeId>, Epoch)>,
    live: &BTreeSet<NodeId>,
) -> NodeId {
    *live
        .iter()
        .min_by_key(|n| (load(owners, **n), **n))
        .expect("live is not empty")
}

fn most_loaded(
    owners: &BTreeMap<PartitionId, (Option<NodeId>, Epoch)>,
    live: &BTreeSet<NodeId>,
) -> NodeId {
    *live
        .iter()
        .max_by_key(|n| (load(owners, **n), std::cmp::Reverse(**n)))
        .expect("live is not empty")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ownership(owners: &[Option<NodeId>]) -> Ownership {
        owners
            .iter()
            .enumerate()
            .map(|(p, o)| (p as PartitionId, (*o, 3)))
            .collect()
    }

    fn apply(ownership: &Ownership, moves: &[Move]) -> Ownership {
        let mut next = ownership.clone();
        for m in moves {
            let entry = next.get_mut(&m.partition).unwrap();
            assert_eq!(entry.1, m.expected_epoch, "moves replace the current epoch");
            *entry = (Some(m.to), entry.1 + 1);
        }
        next
    }

    #[test]
    fn new_partitions_spread_evenly() {
        let start = ownership(&[None; 4]);
        let moves = place(&start, &[1, 2, 3].into(), false);
        let owners: Vec<_> = moves.iter().map(|m| m.to).collect();
        assert_eq!(owners, [1, 2, 3, 1]);
    }

    #[test]
    fn a_dead_nodes_partitions_go_to_the_least_loaded_live_nodes() {
        let start = ownership(&[Some(1), Some(2), Some(3), Some(3)]);
        let moves = place(&start, &[1, 2].into(), false);
        assert_eq!(moves.len(), 2);
        assert!(
            moves
                .iter()
                .all(|m| m.partition >= 2 && m.expected_epoch == 3)
        );
        let after = apply(&start, &moves);
        assert_eq!(after.values().filter(|(o, _)| *o == Some(1)).count(), 2);
    }

    #[test]
    fn rebalance_moves_only_what_it_must() {
        let start = ownership(&[Some(1), Some(1), Some(1), Some(1)]);
        assert!(place(&start, &[1, 2].into(), false).is_empty());
        let moves = place(&start, &[1, 2].into(), true);
        assert_eq!(moves.len(), 2);
        assert!(place(&apply(&start, &moves), &[1, 2].into(), true).is_empty());
    }

    #[test]
    fn a_move_names_the_epoch_it_replaces() {
        let start = ownership(&[Some(1)]);
        assert_eq!(move_to(&start, 0, 1), None);
        assert_eq!(
            move_to(&start, 0, 2),
            Some(Move {
                partition: 0,
                from: Some(1),
                to: 2,
                expected_epoch: 3
            })
        );
        assert_eq!(move_to(&start, 5, 2), None);
    }

    proptest! {
        #[test]
        fn after_placement_every_partition_has_a_live_owner_and_loads_are_even(
            owners in proptest::collection::vec(proptest::option::of(1u64..6), 0..24),
            live in proptest::collection::btree_set(1u64..6, 1..5),
        ) {
            let start = ownership(&owners);
            let moves = place(&start, &live, true);
            let after = apply(&start, &moves);
            for (owner, _) in after.values() {
                prop_assert!(owner.is_some_and(|o| live.contains(&o)));
            }
            let loads: Vec<usize> = live.iter().map(|n| after.values().filter(|(o, _)| *o == Some(*n)).count()).collect();
            prop_assert!(loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1);
        }
    }
}
