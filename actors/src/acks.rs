//! The node's producer for `clean-events` and the dead-letter topic, with
//! acknowledgements counted per batch.
//!
//! A partition actor needs one fact per batch: did the broker acknowledge
//! every record it sent? A future per record (a boxed channel created, sent
//! and awaited for each message) cost the node more than the answer is worth.
//! Here each record carries its batch's [`BatchAcks`]; librdkafka's delivery
//! report decrements the batch's count, and the actor awaits the count
//! reaching zero once, before it commits.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::Message;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use tokio::sync::Notify;

use crate::error::ActorError;
use crate::kafka;

/// How long one call of the delivery-report thread waits for reports.
///
/// rdkafka's `ThreadedProducer` polls in windows of 100 ms and, as it rounds
/// the time left down to whole milliseconds, spins through the last one of
/// every window: 1% of a core, busy or idle. Under load that thread took a
/// tenth of the node's CPU, mostly reading the clock. A one-second window
/// spins a thousandth of the time; the thread notices a drop within it.
const DELIVERY_POLL_WINDOW: Duration = Duration::from_secs(1);

/// The producer partition actors share: librdkafka's producer and a thread
/// that serves its delivery reports. Clones share both; the thread ends
/// within [`DELIVERY_POLL_WINDOW`] of the last clone's drop.
#[derive(Clone)]
pub struct OutputProducer(Arc<PolledProducer>);

/// A record for the output producer, carrying its batch's acknowledgements.
pub type OutputRecord<'a, K, P> = BaseRecord<'a, K, P, Arc<BatchAcks>>;

struct PolledProducer {
    producer: Arc<BaseProducer<AckCounter>>,
    stop: Arc<AtomicBool>,
}

impl Drop for PolledProducer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl OutputProducer {
    /// Enqueues `record`; see rdkafka's `BaseProducer::send`.
    #[allow(clippy::result_large_err)]
    pub fn send<'a, K, P>(
        &self,
        record: OutputRecord<'a, K, P>,
    ) -> Result<(), (KafkaError, OutputRecord<'a, K, P>)>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        self.0.producer.send(record)
    }

    /// Whether both are clones of one producer.
    #[cfg(test)]
    pub fn is_same(&self, other: &OutputProducer) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Waits until every enqueued record was delivered or failed.
    pub fn flush(&self, timeout: Duration) -> KafkaResult<()> {
        self.0.producer.flush(timeout)
    }
}

/// The node's producer, with the settings of [`kafka::output_producer_config`].
pub fn output_producer(
    brokers: &str,
    limits: kafka::RecordLimits,
) -> Result<OutputProducer, ActorError> {
    let producer: Arc<BaseProducer<AckCounter>> =
        Arc::new(kafka::output_producer_config(brokers, limits).create_with_context(AckCounter)?);
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::Builder::new()
        .name("delivery-reports".to_string())
        .spawn({
            let producer = producer.clone();
            let stop = stop.clone();
            move || {
                while !stop.load(Ordering::Relaxed) {
                    producer.poll(DELIVERY_POLL_WINDOW);
                }
            }
        })
        .map_err(ActorError::DeliveryThread)?;
    Ok(OutputProducer(Arc::new(PolledProducer { producer, stop })))
}

/// The records of one batch not yet acknowledged, and the first failure.
#[derive(Default)]
pub struct BatchAcks {
    pending: AtomicU64,
    /// Set with `failure`, read before every send without taking the lock.
    failed: AtomicBool,
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
        mut record: OutputRecord<'_, K, P>,
    ) -> Result<(), ActorError>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        self.stop_if_failed().await?;
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

    /// A batch with a refused record will not commit, and its restart sends
    /// its records again: once a refusal is known, the batch sends no more and
    /// fails as soon as the records already sent are settled.
    async fn stop_if_failed(&self) -> Result<(), ActorError> {
        if self.failed.load(Ordering::Acquire) {
            self.settled().await?;
        }
        Ok(())
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
            self.failed.store(true, Ordering::Release);
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
                source: error.clone(),
            }),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::task::Poll;

    use super::*;

    #[tokio::test]
    async fn a_batch_settles_when_its_last_record_is_acknowledged() {
        let acks = Arc::new(BatchAcks::default());
        acks.pending.store(2, Ordering::Release);
        let mut settled = std::pin::pin!(acks.settled());
        acks.delivered(Ok(()));
        let once = std::future::poll_fn(|cx| Poll::Ready(settled.as_mut().poll(cx))).await;
        assert!(once.is_pending(), "one record is still in flight");
        acks.delivered(Ok(()));
        settled.await.expect("no failure");
    }

    #[tokio::test]
    async fn the_first_failure_is_reported_once_the_batch_settles() {
        let acks = Arc::new(BatchAcks::default());
        acks.pending.store(2, Ordering::Release);
        let failure = |code| ActorError::Delivery {
            topic: "clean-events".into(),
            source: KafkaError::MessageProduction(code),
        };
        acks.delivered(Err(failure(RDKafkaErrorCode::MessageTimedOut)));
        acks.delivered(Err(failure(RDKafkaErrorCode::MessageSizeTooLarge)));
        let error = acks.settled().await.expect_err("a record failed");
        assert!(
            matches!(
                error,
                ActorError::Delivery {
                    source: KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut),
                    ..
                }
            ),
            "the first failure: {error}"
        );
        // An empty batch settles at once.
        BatchAcks::default()
            .settled()
            .await
            .expect("nothing in flight");
    }

    #[tokio::test]
    async fn a_batch_with_a_refused_record_sends_no_more() {
        let acks = Arc::new(BatchAcks::default());
        acks.stop_if_failed().await.expect("nothing refused yet");
        acks.pending.store(2, Ordering::Release);
        acks.delivered(Err(ActorError::Delivery {
            topic: "streamreel-dlq".into(),
            source: KafkaError::MessageProduction(RDKafkaErrorCode::UnknownTopicOrPartition),
        }));
        let mut stopped = std::pin::pin!(acks.stop_if_failed());
        let once = std::future::poll_fn(|cx| Poll::Ready(stopped.as_mut().poll(cx))).await;
        assert!(once.is_pending(), "it waits for the record still in flight");
        acks.delivered(Ok(()));
        let error = stopped.await.expect_err("the refusal ends the batch");
        assert!(matches!(error, ActorError::Delivery { .. }), "{error}");
    }
}
