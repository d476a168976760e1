//! When the supervisor restarts a failed partition actor.

use std::time::Duration;

use crate::settings::RestartPolicy;

/// A child that ran this long before failing starts its backoff afresh.
pub const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Consecutive failures of one partition, and the backoff they earn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestartTracker {
    consecutive_failures: u32,
}

impl RestartTracker {
    /// Records a failure after the child ran for `ran_for`; returns the delay
    /// before the next start (doubling from the minimum, capped at the maximum).
    pub fn on_failure(&mut self, policy: &RestartPolicy, ran_for: Duration) -> Duration {
        if ran_for >= HEALTHY_RUN {
            self.consecutive_failures = 0;
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let exponent = (self.consecutive_failures - 1).min(20);
        policy
            .min_backoff
            .saturating_mul(1u32 << exponent)
            .min(policy.max_backoff)
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RestartPolicy = RestartPolicy {
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(2),
    };

    #[test]
    fn doubles_up_to_the_cap_and_resets_after_a_healthy_run() {
        let mut tracker = RestartTracker::default();
        let quick = Duration::from_millis(10);
        let delays: Vec<_> = (0..7).map(|_| tracker.on_failure(&POLICY, quick)).collect();
        assert_eq!(
            delays.iter().map(Duration::as_millis).collect::<Vec<_>>(),
            [100, 200, 400, 800, 1600, 2000, 2000]
        );
        assert_eq!(
            tracker.on_failure(&POLICY, HEALTHY_RUN),
            Duration::from_millis(100)
        );
        assert_eq!(tracker.consecutive_failures(), 1);
    }
}
