//! Kafka client configuration and topic administration.
//!
//! Settings stay within what every Kafka-compatible broker offers: plain
//! (non-idempotent, non-transactional) producers, manual partition assignment.

use std::collections::VecDeque;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::ToBytes;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::error::ActorError;

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// A producer for `clean-events` and the dead-letter topic.
pub fn producer(brokers: &str) -> Result<FutureProducer, ActorError> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "false")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()?)
}

/// A consumer reading exactly one partition from `start`. It never joins a
/// group or commits offsets: progress lives in the bronze table.
pub fn partition_consumer(
    brokers: &str,
    group: &str,
    topic: &str,
    partition: i32,
    start: Offset,
) -> Result<StreamConsumer, ActorError> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        // librdkafka needs a group id to assign partitions; the group is never joined.
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "50")
        .set("queued.min.messages", "20000")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, start)?;
    consumer.assign(&assignment)?;
    Ok(consumer)
}

/// Creates the topics that do not exist yet; existing ones are left alone.
pub async fn ensure_topics(
    brokers: &str,
    topics: &[&str],
    partitions: i32,
) -> Result<(), ActorError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|topic| NewTopic::new(topic, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT));
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(ActorError::Topic {
                    topic,
                    reason: format!("cannot create: {code}"),
                });
            }
        }
    }
    Ok(())
}

/// The partition ids of `topic`, as the broker reports them. Blocking: call it
/// from a blocking thread.
pub fn partition_ids(brokers: &str, topic: &str) -> Result<Vec<i32>, ActorError> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let metadata = client.fetch_metadata(Some(topic), METADATA_TIMEOUT)?;
    let found = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| ActorError::Topic {
            topic: topic.to_string(),
            reason: "missing from the broker's metadata".into(),
        })?;
    if let Some(error) = found.error() {
        return Err(ActorError::Topic {
            topic: topic.to_string(),
            reason: format!("{:?}", RDKafkaErrorCode::from(error)),
        });
    }
    let mut ids: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    if ids.is_empty() {
        return Err(ActorError::Topic {
            topic: topic.to_string(),
            reason: "has no partitions".into(),
        });
    }
    Ok(ids)
}

/// The (low, high) watermarks of one partition. Blocking.
pub fn watermarks(brokers: &str, topic: &str, partition: i32) -> Result<(i64, i64), ActorError> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    Ok(client.fetch_watermarks(topic, partition, METADATA_TIMEOUT)?)
}

/// The high watermark of each of `partitions`, over one client. Blocking; a
/// partition the broker does not answer for is left out.
pub fn high_watermarks(
    brokers: &str,
    topic: &str,
    partitions: &[i32],
) -> Result<Vec<(i32, i64)>, ActorError> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    Ok(partitions
        .iter()
        .filter_map(|p| {
            client
                .fetch_watermarks(topic, *p, Duration::from_secs(2))
                .ok()
                .map(|(_, high)| (*p, high))
        })
        .collect())
}

/// Deliveries not yet acknowledged by the broker, oldest first.
pub type InFlight = VecDeque<DeliveryFuture>;

/// Enqueues a record. When librdkafka's queue is full it waits for the oldest
/// delivery and tries again, so nothing is ever dropped.
pub async fn send_record<K, P>(
    producer: &FutureProducer,
    in_flight: &mut InFlight,
    mut record: FutureRecord<'_, K, P>,
) -> Result<(), ActorError>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    loop {
        match producer.send_result(record) {
            Ok(delivery) => {
                in_flight.push_back(delivery);
                return Ok(());
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                record = returned;
                match in_flight.pop_front() {
                    Some(oldest) => await_delivery(oldest).await?,
                    None => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
            Err((error, _)) => return Err(error.into()),
        }
    }
}

/// Waits until the broker acknowledged one record.
pub async fn await_delivery(delivery: DeliveryFuture) -> Result<(), ActorError> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((error, message))) => Err(ActorError::Delivery {
            topic: message.topic().to_string(),
            reason: error.to_string(),
        }),
        Err(_) => Err(ActorError::Delivery {
            topic: "?".into(),
            reason: "producer shut down before delivery".into(),
        }),
    }
}

/// Waits until the broker acknowledged every record in flight.
pub async fn await_all(in_flight: &mut InFlight) -> Result<(), ActorError> {
    while let Some(delivery) = in_flight.pop_front() {
        await_delivery(delivery).await?;
    }
    Ok(())
}
