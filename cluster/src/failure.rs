//! Which members are silent: a pure failure detector fed with the times each
//! member last answered. Times are milliseconds on any monotonic clock.

use std::collections::{BTreeMap, BTreeSet};

use crate::types::NodeId;

#[derive(Debug, Clone)]
pub struct FailureDetector {
    failover_after_ms: u64,
    /// When the detector started: a member not heard from yet counts as alive
    /// for `failover_after_ms` after that, so a new leader gives everyone a chance.
    started_ms: u64,
    last_heard_ms: BTreeMap<NodeId, u64>,
}

impl FailureDetector {
    pub fn new(failover_after_ms: u64, now_ms: u64) -> FailureDetector {
        FailureDetector {
            failover_after_ms,
            started_ms: now_ms,
            last_heard_ms: BTreeMap::new(),
        }
    }

    pub fn heard_from(&mut self, node: NodeId, now_ms: u64) {
        let last = self.last_heard_ms.entry(node).or_insert(now_ms);
        *last = (*last).max(now_ms);
    }

    /// Members heard from within `failover_after_ms` (or not yet due).
    pub fn alive(&self, members: &BTreeSet<NodeId>, now_ms: u64) -> BTreeSet<NodeId> {
        members
            .iter()
            .copied()
            .filter(|node| {
                let last = self
                    .last_heard_ms
                    .get(node)
                    .copied()
                    .unwrap_or(self.started_ms);
                now_ms.saturating_sub(last) < self.failover_after_ms
            })
            .collect()
    }

    /// How long ago `node` answered, if ever.
    pub fn silent_for_ms(&self, node: NodeId, now_ms: u64) -> Option<u64> {
        self.last_heard_ms
            .get(&node)
            .map(|last| now_ms.saturating_sub(*last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_is_alive_until_silent_for_the_failover_time() {
        let members: BTreeSet<NodeId> = [1, 2, 3].into();
        let mut detector = FailureDetector::new(2_000, 10_000);
        assert_eq!(detector.alive(&members, 11_999), members, "grace at start");
        detector.heard_from(1, 11_000);
        detector.heard_from(2, 12_500);
        assert_eq!(detector.alive(&members, 12_999), [1, 2].into());
        assert_eq!(detector.alive(&members, 13_000), [2].into());
        detector.heard_from(1, 13_100);
        assert_eq!(detector.alive(&members, 13_200), [1, 2].into());
        assert_eq!(detector.silent_for_ms(2, 13_200), Some(700));
        assert_eq!(detector.silent_for_ms(3, 13_200), None);
    }

    #[test]
    fn late_answers_never_move_time_back() {
        let mut detector = FailureDetector::new(1_000, 0);
        detector.heard_from(1, 5_000);
        detector.heard_from(1, 4_000);
        assert_eq!(detector.silent_for_ms(1, 5_500), Some(500));
    }
}
