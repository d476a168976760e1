//! Which output producer a partition actor takes at its start.
//!
//! The output topics' record limit (`max.message.bytes`) can change while the
//! node runs. Under a lowered limit the broker refuses every record, and every
//! batch of librdkafka's, above it; an actor holding a producer built for the
//! old limit would send the same refused records again at each restart and
//! never get past them. So each start reads the limit again and takes a
//! producer built for it: an event above the new limit is dead-lettered as
//! too large, and librdkafka's batches stay under it.

use std::sync::{Arc, Mutex};

use tracing::warn;

use crate::acks::{OutputProducer, output_producer};
use crate::error::ActorError;
use crate::kafka::RecordLimits;

/// A producer and the record limits it was built for.
#[derive(Clone)]
pub struct Output {
    pub producer: OutputProducer,
    /// The output topics' record limits when `producer` was built.
    pub limits: RecordLimits,
}

/// The node's newest [`Output`], shared by its partition actors.
#[derive(Clone)]
pub struct SharedOutput {
    brokers: Arc<str>,
    newest: Arc<Mutex<Output>>,
}

impl SharedOutput {
    pub fn new(brokers: &str, limits: RecordLimits) -> Result<SharedOutput, ActorError> {
        Ok(SharedOutput {
            brokers: brokers.into(),
            newest: Arc::new(Mutex::new(Output {
                producer: output_producer(brokers, limits)?,
                limits,
            })),
        })
    }

    /// The newest output, for a start that could not read the limit.
    pub fn newest(&self) -> Output {
        self.newest.lock().expect("output lock").clone()
    }

    /// The output for `limits`, the limits the broker reports now: the
    /// newest one if it was built for them, otherwise a new producer,
    /// which later starts take too. Actors holding the previous producer keep
    /// it until they restart: under a raised limit it is merely stricter;
    /// under a lowered one the broker refuses what exceeds the new limit and
    /// the actor restarts into the new producer.
    pub fn for_limits(&self, limits: RecordLimits) -> Result<Output, ActorError> {
        let mut newest = self.newest.lock().expect("output lock");
        if newest.limits != limits {
            warn!(
                from = ?newest.limits,
                to = ?limits,
                "the output topics' record limits changed; partitions starting from now use a producer for the new limits"
            );
            *newest = Output {
                producer: output_producer(&self.brokers, limits)?,
                limits,
            };
        }
        Ok(newest.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Nothing listens there; a producer connects only when it sends.
    const NO_BROKER: &str = "127.0.0.1:9";

    fn both(limit: usize) -> RecordLimits {
        RecordLimits {
            clean: limit,
            dead_letter: limit,
        }
    }

    #[test]
    fn a_start_under_the_same_limit_shares_the_producer() {
        let shared = SharedOutput::new(NO_BROKER, both(1_000_000)).unwrap();
        let first = shared.for_limits(both(1_000_000)).unwrap();
        let second = shared.for_limits(both(1_000_000)).unwrap();
        assert!(first.producer.is_same(&second.producer));
        assert!(first.producer.is_same(&shared.newest().producer));
    }

    #[test]
    fn a_changed_limit_gets_a_producer_of_its_own_which_later_starts_share() {
        let shared = SharedOutput::new(NO_BROKER, both(1_000_000)).unwrap();
        let before = shared.newest();
        let lowered = shared.for_limits(both(100_000)).unwrap();
        assert_eq!(lowered.limits, both(100_000));
        assert!(!lowered.producer.is_same(&before.producer));
        assert_eq!(
            before.limits,
            both(1_000_000),
            "a held output keeps its limit"
        );
        let later = shared.for_limits(both(100_000)).unwrap();
        assert!(later.producer.is_same(&lowered.producer));
        let raised = shared.for_limits(both(2_000_000)).unwrap();
        assert_eq!(shared.newest().limits, both(2_000_000));
        assert!(!raised.producer.is_same(&lowered.producer));
        let dead_letters_only = RecordLimits {
            clean: 2_000_000,
            dead_letter: 10_000_000,
        };
        let wider = shared.for_limits(dead_letters_only).unwrap();
        assert!(!wider.producer.is_same(&raised.producer));
    }

    /// Kafka takes topic limits up to 2^31 - 1 and down to 0; librdkafka's
    /// producer only 1000 to 10^9, and a producer that cannot be built would
    /// stop ingest.
    #[test]
    fn a_producer_is_built_for_limits_librdkafka_does_not_take() {
        for limit in [0, 500, 2_000_000_000, i32::MAX as usize] {
            SharedOutput::new(NO_BROKER, both(limit)).unwrap();
        }
    }
}
