//! The node's producer for `clean-events` and the dead-letter topic, with
//! acknowledgements counted per batch.
//!
//! A partition actor needs one fact per batch: did the broker acknowledge
//! every record it sent? A future per record (a boxed channel created, sent
//! and awaited for each message) cost the node more than the answer is worth.
//! Here each record carries its batch's [`BatchAcks`]; librdkafka's delivery
//! report decrements the batch's count, and the actor awaits the count
//! reaching zero once, before it commits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::Message;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use tokio::sync::Notify;

use crate::error::ActorError;
use crate::kafka;

/// The producer partition actors share.
pub type OutputProducer = ThreadedProducer<AckCounter>;

/// The node's producer, with the settings of [`kafka::producer_config`].
pub fn output_producer(brokers: &str, record_limit: usize) -> Result<OutputProducer, ActorError> {
    Ok(kafka::producer_config(brokers, record_limit).create_with_context(AckCounter)?)
}

/// The records of one batch not yet acknowledged, and the first failure.
#[derive(Default)]
pub struct BatchAcks {
    pending: AtomicU64,
    failure: Mutex<Option<ActorError>>,
    settled: Notify,
}

impl BatchAcks {
    /// Enqueues a record for this batch. When librdkafka's queue is full it
    /// waits for the batch's records sent so far and tries again, so nothing
    /// is ever dropped.
    pub async fn send<K, P>(
        self: &Arc<Self>,
        producer: &OutputProducer,
        mut record: BaseRecord<'_, K, P, Arc<BatchAcks>>,
    ) -> Result<(), ActorError>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        loop {
            self.pending.fetch_add(1, Ordering::AcqRel);
            match producer.send(record) {
                Ok(()) => return Ok(()),
                Err((error, returned)) => {
                    self.pending.fetch_sub(1, Ordering::AcqRel);
                    if !matches!(
                        error,
                        KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
                    ) {
                        return Err(error.into());
                    }
                    record = returned;
                    // The queue may be full of other partitions' records.
                    self.settled().await?;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    /// Waits until the broker acknowledged every record sent for this batch;
    /// fails with the first record that could not be delivered.
    pub async fn settled(&self) -> Result<(), ActorError> {
        loop {
            // Registered before the check, so a report between the two wakes us.
            let notified = self.settled.notified();
            if self.pending.load(Ordering::Acquire) == 0 {
                break;
            }
            notified.await;
        }
        match self.failure.lock().expect("failure lock").take() {
            Some(failure) => Err(failure),
            None => Ok(()),
        }
    }

    fn delivered(&self, result: Result<(), ActorError>) {
        if let Err(error) = result {
            self.failure
                .lock()
                .expect("failure lock")
                .get_or_insert(error);
        }
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.settled.notify_one();
        }
    }
}

/// Counts each delivery report against the batch its record carries.
pub struct AckCounter;

impl ClientContext for AckCounter {}

impl ProducerContext for AckCounter {
    type DeliveryOpaque = Arc<BatchAcks>;

    fn delivery(&self, result: &DeliveryResult<'_>, acks: Arc<BatchAcks>) {
        acks.delivered(match result {
            Ok(_) => Ok(()),
            Err((error, message)) => Err(ActorError::Delivery {
                topic: message.topic().to_string(),
                reason: error.to_string(),
            }),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_settles_when_its_last_record_is_acknowledged() {
        let acks = Arc::new(BatchAcks::default());
        acks.pending.store(2, Ordering::Release);
        let waiter = tokio::spawn({
            let acks = acks.clone();
            async move { acks.settled().await }
        });
        acks.delivered(Ok(()));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "one record is still in flight");
        acks.delivered(Ok(()));
        waiter.await.expect("join").expect("no failure");
    }

    #[tokio::test]
    async fn the_first_failure_is_reported_once_the_batch_settles() {
        let acks = Arc::new(BatchAcks::default());
        acks.pending.store(2, Ordering::Release);
        acks.delivered(Err(ActorError::Delivery {
            topic: "clean-events".into(),
            reason: "first".into(),
        }));
        acks.delivered(Err(ActorError::Delivery {
            topic: "clean-events".into(),
            reason: "second".into(),
        }));
        let error = acks.settled().await.expect_err("a record failed");
        assert!(error.to_string().contains("first"), "{error}");
        // An empty batch settles at once.
        BatchAcks::default()
            .settled()
            .await
            .expect("nothing in flight");
    }
}
