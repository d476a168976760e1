//! Reads a whole topic back, every partition from the beginning to its high
//! watermark at the time of the call.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// Whether the record has no value at all (a tombstone), not an empty one.
    pub null_value: bool,
    /// The record's Kafka timestamp in milliseconds, when it has one.
    pub timestamp_ms: Option<i64>,
    pub headers: HashMap<String, String>,
}

/// Blocking: call from a blocking thread or a plain test.
pub fn read_topic(brokers: &str, topic: &str) -> anyhow::Result<Vec<Record>> {
    let partitions = streamreel_actors::kafka::partition_ids(brokers, topic)?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "streamreel-test-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    let mut remaining = HashMap::new();
    for partition in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, *partition, Duration::from_secs(10))?;
        if high > low {
            assignment.add_partition_offset(topic, *partition, Offset::Beginning)?;
            remaining.insert(*partition, high);
        }
    }
    let mut records = Vec::new();
    if remaining.is_empty() {
        return Ok(records);
    }
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !remaining.is_empty() {
        anyhow::ensure!(Instant::now() < deadline, "reading {topic} timed out");
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message?;
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        records.push(Record {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().unwrap_or_default().to_vec(),
            null_value: message.payload().is_none(),
            timestamp_ms: message.timestamp().to_millis(),
            headers,
        });
        if let Some(high) = remaining.get(&message.partition())
            && message.offset() + 1 >= *high
        {
            remaining.remove(&message.partition());
        }
    }
    Ok(records)
}

/// The high watermark (next offset) of every partition of `topic`.
pub fn high_watermarks(brokers: &str, topic: &str) -> anyhow::Result<HashMap<i32, i64>> {
    let mut marks = HashMap::new();
    for partition in streamreel_actors::kafka::partition_ids(brokers, topic)? {
        let (_, high) = streamreel_actors::kafka::watermarks(brokers, topic, partition)?;
        marks.insert(partition, high);
    }
    Ok(marks)
}
