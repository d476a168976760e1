//! Kafka client configuration and topic administration.
//!
//! Settings stay within what every Kafka-compatible broker offers: plain
//! (non-idempotent, non-transactional) producers, manual partition assignment.

use std::collections::{HashSet, VecDeque};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::ToBytes;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::error::ActorError;

/// How long a metadata question waits for the brokers.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Kafka's default `max.message.bytes`, used when a broker does not say.
pub const DEFAULT_RECORD_LIMIT: usize = 1_048_588;

/// The range librdkafka takes for `message.max.bytes`: a producer for a
/// topic limit outside it could not be built at all, where Kafka lets a
/// topic's limit be set anywhere up to 2^31 - 1.
const PRODUCER_RECORD_LIMITS: std::ops::RangeInclusive<usize> = 1_000..=1_000_000_000;

/// The record limits of the node's output topics (`max.message.bytes`, at
/// most what librdkafka can send): an accepted event's clean record must fit
/// the first, a dead letter is cut to fit the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLimits {
    pub clean: usize,
    pub dead_letter: usize,
}

impl RecordLimits {
    /// Kafka's default for both.
    pub const DEFAULT: RecordLimits = RecordLimits {
        clean: DEFAULT_RECORD_LIMIT,
        dead_letter: DEFAULT_RECORD_LIMIT,
    };

    /// The record limit a producer for both topics needs.
    pub fn largest(&self) -> usize {
        self.clean.max(self.dead_letter)
    }

    pub fn smallest(&self) -> usize {
        self.clean.min(self.dead_letter)
    }
}

/// librdkafka's default `batch.size`.
const DEFAULT_BATCH_BYTES: usize = 1_000_000;

/// The settings of the producer for both output topics: it takes a record
/// up to the larger limit (each record is checked against its own topic's
/// before it is sent), and fills batches only up to the smaller one, as a
/// broker checks a topic's limit against each batch. librdkafka sends a
/// record larger than `batch.size` in a batch of its own.
pub fn output_producer_config(brokers: &str, limits: RecordLimits) -> ClientConfig {
    let mut config = producer_config(brokers, limits.largest());
    config.set(
        "batch.size",
        limits.smallest().clamp(1, DEFAULT_BATCH_BYTES).to_string(),
    );
    config
}

/// A producer's settings, refusing locally any record above `record_limit`
/// bytes (the topics' own limit, within what librdkafka takes).
pub fn producer_config(brokers: &str, record_limit: usize) -> ClientConfig {
    let record_limit = record_limit.clamp(
        *PRODUCER_RECORD_LIMITS.start(),
        *PRODUCER_RECORD_LIMITS.end(),
    );
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("message.max.bytes", record_limit.to_string())
        .set("enable.idempotence", "false")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000");
    config
}

/// A producer with a future per record, for the simulator and the
/// benchmark's baselines; the node's actors use [`crate::acks`].
pub fn producer(brokers: &str, record_limit: usize) -> Result<FutureProducer, ActorError> {
    Ok(producer_config(brokers, record_limit).create()?)
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
        // A resume offset the broker no longer has is an error for the actor
        // to report, never a silent jump (see `start_position`).
        .set("auto.offset.reset", "error")
        .set("fetch.wait.max.ms", "50")
        .set("queued.min.messages", "20000")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, start)?;
    consumer.assign(&assignment)?;
    Ok(consumer)
}

/// The value of the record at `offset`, read by a consumer of its own; `None`
/// when the first record there is a later one (the offset compacted away).
pub async fn record_at(
    brokers: &str,
    group: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<Option<Vec<u8>>, ActorError> {
    let consumer = partition_consumer(brokers, group, topic, partition, Offset::Offset(offset))?;
    let message = tokio::time::timeout(METADATA_TIMEOUT, consumer.recv())
        .await
        .map_err(|_| ActorError::Topic {
            topic: topic.to_string(),
            reason: format!(
                "no record of partition {partition} at offset {offset} within {METADATA_TIMEOUT:?}"
            ),
        })??;
    Ok((message.offset() == offset).then(|| message.payload().unwrap_or_default().to_vec()))
}

/// Whether a consumer error is one librdkafka recovers from by itself: a lost
/// connection, every broker down, a name that did not resolve, a leader
/// moving. The consumer keeps its position and fetches again once it can, so
/// the actor keeps its batch and polls on; ending it would send the batch's
/// outputs again for nothing. Any other error (offsets the broker no longer
/// has under `auto.offset.reset = error`, a topic or partition gone, a fatal
/// client error) ends the actor, whose successor decides afresh from bronze
/// and the broker's offsets.
pub fn consumer_error_is_transient(error: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        error,
        KafkaError::MessageConsumption(
            BrokerTransportFailure
                | AllBrokersDown
                | Resolve
                | OperationTimedOut
                | RequestTimedOut
                | NetworkException
                | BrokerNotAvailable
                | LeaderNotAvailable
                | NotLeaderForPartition
        )
    )
}

/// A topic the node creates when it is missing, with its topic configs.
#[derive(Debug, Clone)]
pub struct TopicSpec<'a> {
    pub name: &'a str,
    pub configs: Vec<(&'static str, String)>,
}

impl<'a> TopicSpec<'a> {
    /// A topic with the broker's default configs.
    pub fn plain(name: &'a str) -> TopicSpec<'a> {
        TopicSpec {
            name,
            configs: Vec::new(),
        }
    }
}

/// Creates the topics that do not exist yet; existing ones are left alone.
pub async fn ensure_topics(
    brokers: &str,
    topics: &[TopicSpec<'_>],
    partitions: i32,
    replication_factor: i32,
) -> Result<(), ActorError> {
    // Only what is missing is created: a broker with ACLs refuses a create
    // without the right to create (TopicAuthorizationFailed, not
    // TopicAlreadyExists), even for a topic an operator created beforehand.
    let existing = listed_topics(brokers).await?;
    let missing: Vec<&TopicSpec<'_>> = topics
        .iter()
        .filter(|topic| !existing.contains(topic.name))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let new_topics: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|topic| {
            topic.configs.iter().fold(
                NewTopic::new(
                    topic.name,
                    partitions,
                    TopicReplication::Fixed(replication_factor),
                ),
                |new, (key, value)| new.set(key, value),
            )
        })
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

/// The topics the brokers list, read on a blocking thread. All topics are
/// listed, not the ones wanted by name: asking for a missing topic by name
/// makes a broker with `auto.create.topics.enable` create it with its defaults.
async fn listed_topics(brokers: &str) -> Result<HashSet<String>, ActorError> {
    let brokers = brokers.to_string();
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()?;
        let metadata = client.fetch_metadata(None, METADATA_TIMEOUT)?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|topic| topic.error().is_none() && !topic.partitions().is_empty())
            .map(|topic| topic.name().to_string())
            .collect())
    })
    .await
    .map_err(ActorError::Task)?
}

/// The output topics' record limits as the broker reports them, or Kafka's
/// default for a topic whose limit the broker does not report, nor any when
/// it does not describe topic configs at all.
pub async fn record_limits(brokers: &str, clean_topic: &str, dlq_topic: &str) -> RecordLimits {
    match reported_record_limits(brokers, clean_topic, dlq_topic).await {
        Ok(limits) => limits,
        Err(error) => {
            tracing::info!(%error, limit = DEFAULT_RECORD_LIMIT, "topic record limit unknown; using Kafka's default");
            RecordLimits::DEFAULT
        }
    }
}

/// The output topics' `max.message.bytes`, Kafka's default for a topic whose
/// limit the broker does not report; an error when the broker did not
/// answer the question.
pub async fn reported_record_limits(
    brokers: &str,
    clean_topic: &str,
    dlq_topic: &str,
) -> Result<RecordLimits, ActorError> {
    let limits: Vec<usize> = topic_config(brokers, &[clean_topic, dlq_topic], "max.message.bytes")
        .await?
        .into_iter()
        .map(record_limit_of)
        .collect();
    Ok(RecordLimits {
        clean: limits.first().copied().unwrap_or(DEFAULT_RECORD_LIMIT),
        dead_letter: limits.get(1).copied().unwrap_or(DEFAULT_RECORD_LIMIT),
    })
}

/// A topic's record limit from its `max.message.bytes` as described, at most
/// what a producer can send.
fn record_limit_of(described: Option<String>) -> usize {
    described
        .and_then(|value| value.parse::<usize>().ok())
        .unwrap_or(DEFAULT_RECORD_LIMIT)
        .min(*PRODUCER_RECORD_LIMITS.end())
}

/// `key` of each of `topics` as the broker describes it (`None`: not reported).
pub async fn topic_config(
    brokers: &str,
    topics: &[&str],
    key: &str,
) -> Result<Vec<Option<String>>, ActorError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let resources: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let options = AdminOptions::new().request_timeout(Some(METADATA_TIMEOUT));
    Ok(admin
        .describe_configs(&resources, &options)
        .await?
        .into_iter()
        .map(|result| {
            result
                .ok()
                .and_then(|resource| resource.get(key)?.value.clone())
        })
        .collect())
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

/// How many partitions `topic` has, read from the broker on a blocking thread.
pub async fn partition_count(brokers: &str, topic: &str) -> Result<NonZeroU32, ActorError> {
    let (brokers, topic) = (brokers.to_string(), topic.to_string());
    let ids = tokio::task::spawn_blocking(move || partition_ids(&brokers, &topic))
        .await
        .map_err(ActorError::Task)??;
    Ok(NonZeroU32::new(ids.len() as u32).expect("partition_ids answers at least one partition"))
}

/// Whether the brokers answer a metadata request within `timeout`. Blocking.
pub fn probe(brokers: &str, timeout: Duration) -> Result<(), ActorError> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    client.fetch_metadata(None, timeout)?;
    Ok(())
}

/// The (low, high) watermarks of one partition. Blocking.
pub fn watermarks(brokers: &str, topic: &str, partition: i32) -> Result<(i64, i64), ActorError> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    Ok(client.fetch_watermarks(topic, partition, METADATA_TIMEOUT)?)
}

/// The id of the cluster `brokers` belong to; `None` when they do not answer
/// within `timeout` or name none. Blocking.
pub fn cluster_id(brokers: &str, timeout: Duration) -> Result<Option<String>, ActorError> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    Ok(client.client().fetch_cluster_id(timeout))
}

/// A partition's offsets on the broker: records `low..high` are there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionWatermarks {
    pub partition: i32,
    /// The earliest offset still held; `None` when the broker did not say.
    pub low: Option<i64>,
    /// The offset the next record will get.
    pub high: i64,
}

impl PartitionWatermarks {
    /// Records on the broker past `committed` (the last offset ingested, -1
    /// for none). Records deleted by retention before they were ingested are
    /// not counted: nothing can read them any more.
    pub fn lag_after(&self, committed: i64) -> i64 {
        let next = committed
            .saturating_add(1)
            .max(self.low.unwrap_or(i64::MIN));
        (self.high - next).max(0)
    }
}

/// The watermarks of a topic's partitions, for lag, asked over one client
/// kept for the life of the reader and in one `ListOffsets` request per
/// leader and end (Kafka's "latest" timestamp, -1, and "earliest", -2). A
/// client per question paid a connection and a metadata round trip, and a
/// question per partition a round trip each: on a loaded broker a status
/// answer took seconds.
///
/// An answer is reused for [`WATERMARKS_FRESH_FOR`], and questions asked
/// while one is under way wait for it: metrics scrapes and status requests,
/// however many, cost the broker a pair of requests a second at most.
pub struct Watermarks {
    brokers: String,
    topic: String,
    client: Mutex<Option<Arc<BaseConsumer>>>,
    last: Mutex<Option<Answer>>,
    fresh_for: Duration,
}

/// The broker's last answer about some partitions.
struct Answer {
    at: Instant,
    asked: Vec<i32>,
    /// The partitions it gave watermarks for; none when it failed.
    marks: Vec<PartitionWatermarks>,
}

impl Answer {
    fn for_partitions(&self, partitions: &[i32]) -> Vec<PartitionWatermarks> {
        self.marks
            .iter()
            .filter(|m| partitions.contains(&m.partition))
            .copied()
            .collect()
    }
}

/// How long fetched watermarks answer further questions.
pub const WATERMARKS_FRESH_FOR: Duration = Duration::from_secs(1);

impl Watermarks {
    /// Connects on first use.
    pub fn new(brokers: &str, topic: &str) -> Watermarks {
        Watermarks {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            client: Mutex::new(None),
            last: Mutex::new(None),
            fresh_for: WATERMARKS_FRESH_FOR,
        }
    }

    /// The watermarks of each of `partitions`, waiting at most `timeout` in
    /// all. Blocking; a partition the broker gives no high watermark for is
    /// left out.
    pub fn fetch(
        &self,
        partitions: &[i32],
        timeout: Duration,
    ) -> Result<Vec<PartitionWatermarks>, ActorError> {
        // Held through the broker's answer: questions asked meanwhile take
        // that answer instead of asking again.
        let mut last = self.last.lock().expect("watermarks lock");
        if let Some(answer) = last.as_ref()
            && answer.at.elapsed() < self.fresh_for
            && partitions.iter().all(|p| answer.asked.contains(p))
        {
            return Ok(answer.for_partitions(partitions));
        }
        // The union, so that questions about different partitions (metrics
        // about owned ones, status about all) share one answer.
        let mut asked: Vec<i32> = partitions.to_vec();
        if let Some(answer) = last.as_ref() {
            asked.extend(&answer.asked);
        }
        asked.sort_unstable();
        asked.dedup();
        let fetched = self.fetch_from_broker(&asked, timeout);
        // A failure is kept too, so that a broker that does not answer is
        // asked once a second, not once per question.
        let answer = Answer {
            at: Instant::now(),
            marks: fetched.as_ref().map(Vec::clone).unwrap_or_default(),
            asked,
        };
        let found = answer.for_partitions(partitions);
        *last = Some(answer);
        fetched.map(|_| found)
    }

    fn fetch_from_broker(
        &self,
        partitions: &[i32],
        timeout: Duration,
    ) -> Result<Vec<PartitionWatermarks>, ActorError> {
        let deadline = Instant::now() + timeout;
        let highs = self.offsets(partitions, Offset::End, timeout)?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        // The high watermarks alone still give a lag, counting deleted records.
        let lows = self
            .offsets(partitions, Offset::Beginning, remaining)
            .unwrap_or_default();
        Ok(highs
            .into_iter()
            .map(|(partition, high)| PartitionWatermarks {
                partition,
                low: lows
                    .iter()
                    .find(|(p, _)| *p == partition)
                    .map(|(_, low)| *low),
                high,
            })
            .collect())
    }

    /// The offset at `end` (`Offset::End` or `Offset::Beginning`) of each
    /// partition that answers.
    fn offsets(
        &self,
        partitions: &[i32],
        end: Offset,
        timeout: Duration,
    ) -> Result<Vec<(i32, i64)>, ActorError> {
        let mut asked = TopicPartitionList::new();
        for partition in partitions {
            asked.add_partition_offset(&self.topic, *partition, end)?;
        }
        let found = self.client()?.offsets_for_times(asked, timeout)?;
        Ok(found
            .elements()
            .iter()
            .filter(|e| e.error().is_ok())
            .filter_map(|e| match e.offset() {
                Offset::Offset(offset) => Some((e.partition(), offset)),
                _ => None,
            })
            .collect())
    }

    fn client(&self) -> Result<Arc<BaseConsumer>, ActorError> {
        let mut client = self.client.lock().expect("watermark client lock");
        if let Some(client) = client.as_ref() {
            return Ok(client.clone());
        }
        let created: Arc<BaseConsumer> = Arc::new(
            ClientConfig::new()
                .set("bootstrap.servers", &self.brokers)
                .create()?,
        );
        *client = Some(created.clone());
        Ok(created)
    }
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
            source: error,
        }),
        Err(_) => Err(ActorError::ProducerGone),
    }
}

/// Waits until the broker acknowledged every record in flight.
pub async fn await_all(in_flight: &mut InFlight) -> Result<(), ActorError> {
    while let Some(delivery) = in_flight.pop_front() {
        await_delivery(delivery).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_batches_fit_the_smaller_topic_limit() {
        let config = output_producer_config(
            "127.0.0.1:9",
            RecordLimits {
                clean: 300_000,
                dead_letter: 5_000_000,
            },
        );
        assert_eq!(config.get("message.max.bytes"), Some("5000000"));
        assert_eq!(config.get("batch.size"), Some("300000"));
        let defaults = output_producer_config("127.0.0.1:9", RecordLimits::DEFAULT);
        assert_eq!(defaults.get("batch.size"), Some("1000000"));
        let huge = output_producer_config(
            "127.0.0.1:9",
            RecordLimits {
                clean: 2_000_000_000,
                dead_letter: 0,
            },
        );
        assert_eq!(huge.get("message.max.bytes"), Some("1000000000"));
        assert_eq!(huge.get("batch.size"), Some("1"));
    }

    #[test]
    fn a_broker_that_does_not_answer_is_asked_once_per_freshness_period() {
        let mut watermarks = Watermarks::new("127.0.0.1:1", "video-events");
        watermarks.fresh_for = Duration::from_secs(600);
        let timeout = Duration::from_millis(200);
        assert!(watermarks.fetch(&[0], timeout).is_err());
        // Kept: no second question, no watermark.
        assert_eq!(watermarks.fetch(&[0], timeout).unwrap(), []);
        // Another partition is asked together with the earlier one.
        assert!(watermarks.fetch(&[1], timeout).is_err());
        let last = watermarks.last.lock().unwrap();
        assert_eq!(last.as_ref().map(|a| a.asked.clone()), Some(vec![0, 1]));
    }

    #[test]
    fn lag_counts_only_records_still_on_the_broker() {
        let marks = |low| PartitionWatermarks {
            partition: 0,
            low,
            high: 100,
        };
        assert_eq!(marks(Some(0)).lag_after(-1), 100);
        assert_eq!(marks(Some(0)).lag_after(89), 10);
        assert_eq!(marks(Some(0)).lag_after(99), 0);
        // Records 50..60 were deleted before they were ingested.
        assert_eq!(marks(Some(60)).lag_after(49), 40);
        assert_eq!(marks(None).lag_after(49), 50);
        // A log recreated shorter than what was ingested is no negative lag.
        assert_eq!(marks(Some(0)).lag_after(150), 0);
    }

    #[test]
    fn only_errors_librdkafka_recovers_from_keep_the_actor_polling() {
        let consumption = KafkaError::MessageConsumption;
        for transient in [
            consumption(RDKafkaErrorCode::BrokerTransportFailure),
            consumption(RDKafkaErrorCode::AllBrokersDown),
            consumption(RDKafkaErrorCode::NotLeaderForPartition),
        ] {
            assert!(consumer_error_is_transient(&transient), "{transient}");
        }
        for fatal in [
            consumption(RDKafkaErrorCode::AutoOffsetReset),
            consumption(RDKafkaErrorCode::OffsetOutOfRange),
            consumption(RDKafkaErrorCode::UnknownTopicOrPartition),
            consumption(RDKafkaErrorCode::TopicAuthorizationFailed),
            KafkaError::MessageConsumptionFatal(RDKafkaErrorCode::BrokerTransportFailure),
        ] {
            assert!(!consumer_error_is_transient(&fatal), "{fatal}");
        }
    }
}
