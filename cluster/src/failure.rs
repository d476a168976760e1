//! Which members are silent, and which cannot ingest: a pure failure detector
//! fed with the times each member last answered, and whether it then reached
//! the Kafka brokers. Times are milliseconds on any monotonic clock.

use std::collections::{BTreeMap, BTreeSet};

use crate::types::NodeId;

/// How long a member may answer pings while failing to reach the brokers
/// before its partitions are moved: five failover times, and at least 10 s, so
/// that a broker check that fails once (a check takes up to 2 s, every 2 s)
/// moves nothing.
pub fn cut_off_after_ms(failover_after_ms: u64) -> u64 {
    failover_after_ms.saturating_mul(5).max(10_000)
}

#[derive(Debug, Clone)]
pub struct FailureDetector {
    failover_after_ms: u64,
    cut_off_after_ms: u64,
    /// When the detector started: a member not heard from yet counts as alive
    /// for `failover_after_ms` after that, so a new leader gives everyone a chance.
    started_ms: u64,
    last_heard_ms: BTreeMap<NodeId, u64>,
    /// When each member last answered that it reached the brokers.
    last_reached_ms: BTreeMap<NodeId, u64>,
    /// Since when each member has answered, without a break, that it reaches
    /// the brokers.
    reaching_since_ms: BTreeMap<NodeId, u64>,
    /// What each member's latest answer said about the brokers.
    reaches_brokers: BTreeMap<NodeId, bool>,
}

impl FailureDetector {
    pub fn new(failover_after_ms: u64, now_ms: u64) -> FailureDetector {
        FailureDetector {
            failover_after_ms,
            cut_off_after_ms: cut_off_after_ms(failover_after_ms),
            started_ms: now_ms,
            last_heard_ms: BTreeMap::new(),
            last_reached_ms: BTreeMap::new(),
            reaching_since_ms: BTreeMap::new(),
            reaches_brokers: BTreeMap::new(),
        }
    }

    /// `node` answered at `now_ms`, saying whether it reaches the brokers.
    pub fn heard_from(&mut self, node: NodeId, now_ms: u64, reaches_brokers: bool) {
        let last = self.last_heard_ms.entry(node).or_insert(now_ms);
        if now_ms < *last {
            return; // a late answer says nothing newer
        }
        // A member silent for as long as it takes to cut one off (dead,
        // restarted, frozen) says nothing of the brokers meanwhile: its
        // unbroken run of reaching them starts again. Otherwise a member back
        // during a broker outage for everyone, answering from before its
        // first check, would count as the one steady member and draw every
        // partition to itself. (A member silent for less than that since it
        // last reached them did so after the others stopped: it is steady.)
        // Not the failover time: probe rounds may lie that far apart in a
        // tight configuration, and no run would ever last.
        let was_silent = now_ms - *last >= self.cut_off_after_ms;
        *last = now_ms;
        if was_silent {
            self.reaching_since_ms.remove(&node);
        }
        self.reaches_brokers.insert(node, reaches_brokers);
        if reaches_brokers {
            self.last_reached_ms.insert(node, now_ms);
            self.reaching_since_ms.entry(node).or_insert(now_ms);
        } else {
            self.reaching_since_ms.remove(&node);
        }
    }

    /// Members heard from within `failover_after_ms` (or not yet due).
    pub fn alive(&self, members: &BTreeSet<NodeId>, now_ms: u64) -> BTreeSet<NodeId> {
        self.heard_within(members, now_ms, Some(self.started_ms))
    }

    /// Members that answered within `failover_after_ms`; unlike [`alive`],
    /// a member not heard from since this one started does not count. A
    /// change of voters is checked against these: the grace that keeps a
    /// restarted leader from moving partitions would otherwise let it count
    /// dead voters as alive.
    ///
    /// [`alive`]: FailureDetector::alive
    pub fn answering(&self, members: &BTreeSet<NodeId>, now_ms: u64) -> BTreeSet<NodeId> {
        self.heard_within(members, now_ms, None)
    }

    fn heard_within(
        &self,
        members: &BTreeSet<NodeId>,
        now_ms: u64,
        never_heard: Option<u64>,
    ) -> BTreeSet<NodeId> {
        members
            .iter()
            .copied()
            .filter(|node| {
                self.last_heard_ms
                    .get(node)
                    .copied()
                    .or(never_heard)
                    .is_some_and(|last| now_ms.saturating_sub(last) < self.failover_after_ms)
            })
            .collect()
    }

    /// The alive members that can own partitions: all but those that have
    /// not reached the brokers for `cut_off_after_ms` while another alive
    /// member has reached them without a break for as long. So a broker
    /// outage for everyone moves nothing, nor does its end (members reach the
    /// brokers again a few seconds apart).
    pub fn can_ingest(&self, members: &BTreeSet<NodeId>, now_ms: u64) -> BTreeSet<NodeId> {
        let alive = self.alive(members, now_ms);
        let steady = |node: &NodeId| {
            self.reaching_since_ms
                .get(node)
                .is_some_and(|since| now_ms.saturating_sub(*since) >= self.cut_off_after_ms)
        };
        let cut_off = |node: &NodeId| {
            let last = self
                .last_reached_ms
                .get(node)
                .copied()
                .unwrap_or(self.started_ms);
            now_ms.saturating_sub(last) >= self.cut_off_after_ms
                && alive.iter().any(|other| other != node && steady(other))
        };
        alive
            .iter()
            .copied()
            .filter(|node| !cut_off(node))
            .collect()
    }

    /// What `node`'s latest answer said about the brokers, if it answered.
    pub fn reaches_brokers(&self, node: NodeId) -> Option<bool> {
        self.reaches_brokers.get(&node).copied()
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
        assert!(detector.answering(&members, 11_999).is_empty(), "no grace");
        detector.heard_from(1, 11_000, true);
        detector.heard_from(2, 12_500, true);
        assert_eq!(detector.alive(&members, 12_999), [1, 2].into());
        assert_eq!(detector.alive(&members, 13_000), [2].into());
        detector.heard_from(1, 13_100, true);
        assert_eq!(detector.alive(&members, 13_200), [1, 2].into());
        assert_eq!(detector.answering(&members, 13_200), [1, 2].into());
        assert_eq!(detector.silent_for_ms(2, 13_200), Some(700));
        assert_eq!(detector.silent_for_ms(3, 13_200), None);
    }

    #[test]
    fn late_answers_never_move_time_back() {
        let mut detector = FailureDetector::new(1_000, 0);
        detector.heard_from(1, 5_000, true);
        detector.heard_from(1, 4_000, false);
        assert_eq!(detector.silent_for_ms(1, 5_500), Some(500));
        assert_eq!(detector.reaches_brokers(1), Some(true));
    }

    #[test]
    fn a_member_cut_off_from_the_brokers_stops_counting_while_others_reach_them() {
        let members: BTreeSet<NodeId> = [1, 2, 3].into();
        let mut detector = FailureDetector::new(2_000, 0);
        let cut_off = cut_off_after_ms(2_000);
        assert_eq!(cut_off, 10_000);
        // Member 3 answers every second but last reached the brokers at 1 s.
        for now in (1_000..=12_000).step_by(1_000) {
            detector.heard_from(1, now, true);
            detector.heard_from(2, now, true);
            detector.heard_from(3, now, now <= 1_000);
        }
        assert_eq!(detector.alive(&members, 10_900), members);
        assert_eq!(detector.can_ingest(&members, 10_900), members, "not yet");
        assert_eq!(detector.can_ingest(&members, 11_000), [1, 2].into());
        assert_eq!(detector.reaches_brokers(3), Some(false));
        // Once it reaches them again it counts at once.
        detector.heard_from(3, 12_500, true);
        assert_eq!(detector.can_ingest(&members, 12_600), members);
    }

    #[test]
    fn when_no_member_reaches_the_brokers_none_is_cut_off() {
        let members: BTreeSet<NodeId> = [1, 2].into();
        let mut detector = FailureDetector::new(2_000, 0);
        for now in (1_000..=20_000).step_by(1_000) {
            detector.heard_from(1, now, false);
            detector.heard_from(2, now, false);
        }
        assert_eq!(detector.can_ingest(&members, 20_500), members);
        // A member that is silent as well is still down.
        detector.heard_from(1, 21_000, false);
        assert_eq!(detector.can_ingest(&members, 22_500), [1].into());
    }

    #[test]
    fn a_member_back_during_a_broker_outage_is_not_the_steady_one() {
        let members: BTreeSet<NodeId> = [1, 2, 3].into();
        let mut detector = FailureDetector::new(2_000, 0);
        // All reach the brokers until 20 s; member 3 then goes silent, and
        // from 21 s no member reaches them.
        for now in (1_000..=40_000).step_by(1_000) {
            detector.heard_from(1, now, now <= 20_000);
            detector.heard_from(2, now, now <= 20_000);
            if now <= 20_000 {
                detector.heard_from(3, now, true);
            }
        }
        // Member 3 restarts and answers before its first broker check.
        detector.heard_from(3, 40_500, true);
        assert_eq!(detector.can_ingest(&members, 40_600), members);
        // Its answers count as reaching only from 40.5 s on.
        for now in (41_000..=50_000).step_by(1_000) {
            detector.heard_from(1, now, false);
            detector.heard_from(2, now, false);
            detector.heard_from(3, now, true);
            assert_eq!(detector.can_ingest(&members, now), members, "at {now}");
        }
        detector.heard_from(1, 50_500, false);
        detector.heard_from(2, 50_500, false);
        detector.heard_from(3, 50_500, true);
        assert_eq!(detector.can_ingest(&members, 50_600), [3].into());
    }

    #[test]
    fn the_end_of_a_broker_outage_moves_nothing() {
        let members: BTreeSet<NodeId> = [1, 2].into();
        let mut detector = FailureDetector::new(2_000, 0);
        // Down for everyone until 20 s; member 1 reaches the brokers again at
        // 21 s, member 2 only at 24 s.
        for now in (1_000..=40_000).step_by(1_000) {
            detector.heard_from(1, now, now > 20_000);
            detector.heard_from(2, now, now > 23_000);
            assert_eq!(detector.can_ingest(&members, now), members, "at {now}");
        }
    }
}
