//! One actor per owned partition of the input topic.
//!
//! It resumes after the offset recorded in bronze, rebuilds its de-duplication
//! window from bronze, then loops: consume a batch, send accepted rows to
//! `clean-events` and rejects to the dead-letter topic, wait for the broker's
//! acknowledgements, and commit the batch to bronze with the partition's
//! progress marker. A failure anywhere ends the actor; the supervisor starts a
//! fresh one, which resumes from the last commit, so nothing is lost or doubled
//! in bronze (Kafka outputs of an uncommitted batch may be sent again).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rdkafka::Message;
use rdkafka::Offset;
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use tracing::{debug, info};

use streamreel_lake::{BronzeBatchBuilder, BronzeTable};
use streamreel_protocol::time::now_micros;
use streamreel_protocol::{PartitionCheckpoint, event_id_hash};

use crate::context::IngestContext;
use crate::dedup::DedupWindow;
use crate::error::ActorError;
use crate::fault;
use crate::kafka::{self, InFlight};
use crate::partition_core::{Outcome, PartitionCore};
use crate::stats::PartitionStats;

pub enum PartitionMsg {
    /// Consume and, when due, commit one batch; then poll again.
    Poll,
    Status(RpcReplyPort<PartitionStatus>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionStatus {
    pub partition: i32,
    pub last_committed: Option<PartitionCheckpoint>,
    pub pending_events: usize,
    pub dedup_ids: usize,
}

pub struct PartitionArgs {
    pub partition: i32,
    pub context: Arc<IngestContext>,
}

/// The actor holds only configuration; everything it builds lives in the state.
pub struct PartitionActor;

pub struct PartitionState {
    context: Arc<IngestContext>,
    core: PartitionCore,
    consumer: StreamConsumer,
    bronze: BronzeTable,
    stats: Arc<PartitionStats>,
    batch: PendingBatch,
    /// Reused for every `clean-events` value (the producer copies it).
    json: Vec<u8>,
    last_committed: Option<PartitionCheckpoint>,
}

/// Records consumed since the last bronze commit.
#[derive(Default)]
struct PendingBatch {
    rows: BronzeBatchBuilder,
    last_offset: Option<i64>,
    started: Option<Instant>,
    deliveries: InFlight,
    duplicates: u64,
    rejected: u64,
}

impl Actor for PartitionActor {
    type Msg = PartitionMsg;
    type State = PartitionState;
    type Arguments = PartitionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<PartitionMsg>,
        args: PartitionArgs,
    ) -> Result<PartitionState, ActorProcessingErr> {
        let PartitionArgs { partition, context } = args;
        let mut bronze = BronzeTable::open_or_create(&context.lake_dir).await?;
        let committed = bronze.committed_offset(partition).await?;
        let mut dedup = DedupWindow::new(context.ingest.dedup);
        for event in bronze
            .recent_events(partition, context.ingest.dedup.max_ids)
            .await?
        {
            dedup.insert(event_id_hash(&event.event_id), event.ingested_at_us);
        }
        let start = committed.map_or(Offset::Beginning, |last| Offset::Offset(last + 1));
        let consumer = kafka::partition_consumer(
            &context.kafka.brokers,
            &context.kafka.consumer_group,
            &context.kafka.input_topic,
            partition,
            start,
        )?;
        let stats = context.stats.partition(partition);
        stats
            .committed_offset
            .store(committed.unwrap_or(-1), Ordering::Relaxed);
        info!(
            partition,
            start = ?start,
            dedup_ids = dedup.len(),
            "partition actor started"
        );
        let core = PartitionCore::new(partition, context.keyer.clone(), dedup);
        myself.cast(PartitionMsg::Poll)?;
        Ok(PartitionState {
            last_committed: committed.map(|last_offset| PartitionCheckpoint {
                partition,
                last_offset,
                delta_version: bronze.version().unwrap_or_default() as i64,
            }),
            context,
            core,
            consumer,
            bronze,
            stats,
            batch: PendingBatch::default(),
            json: Vec::with_capacity(1024),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<PartitionMsg>,
        message: PartitionMsg,
        state: &mut PartitionState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            PartitionMsg::Poll => {
                state.consume_batch().await?;
                if state.commit_due() {
                    state.commit().await?;
                }
                myself.cast(PartitionMsg::Poll)?;
            }
            PartitionMsg::Status(reply) => {
                let _ = reply.send(PartitionStatus {
                    partition: state.core.partition(),
                    last_committed: state.last_committed,
                    pending_events: state.batch.rows.len(),
                    dedup_ids: state.core.dedup_len(),
                });
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<PartitionMsg>,
        state: &mut PartitionState,
    ) -> Result<(), ActorProcessingErr> {
        // A graceful stop commits what was consumed, so a restart repeats nothing.
        if state.batch.last_offset.is_some() {
            state.commit().await?;
        }
        info!(
            partition = state.core.partition(),
            "partition actor stopped"
        );
        Ok(())
    }
}

impl PartitionState {
    /// Consumes until the batch is full or its commit interval has passed.
    async fn consume_batch(&mut self) -> Result<(), ActorError> {
        let settings = self.context.ingest;
        let deadline = self.batch.started.unwrap_or_else(Instant::now) + settings.commit_interval;
        while self.batch.rows.len() < settings.commit_max_events {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let message = match tokio::time::timeout(deadline - now, self.consumer.recv()).await {
                Ok(message) => message?,
                Err(_elapsed) => break,
            };
            if self.batch.started.is_none() {
                self.batch.started = Some(Instant::now());
            }
            let offset = message.offset();
            let payload = message.payload().unwrap_or_default();
            match self.core.process(offset, payload, now_micros()) {
                Outcome::Accepted(clean) => {
                    let row = clean.view();
                    self.json.clear();
                    row.write_json(&mut self.json);
                    let record = FutureRecord::to(&self.context.kafka.clean_topic)
                        .key(row.user_key)
                        .payload(&self.json);
                    kafka::send_record(&self.context.producer, &mut self.batch.deliveries, record)
                        .await?;
                    self.batch.rows.append(&row);
                }
                Outcome::Duplicate => self.batch.duplicates += 1,
                Outcome::Rejected(rejection) => {
                    debug!(partition = self.core.partition(), offset, reason = %rejection, "rejected event");
                    let reason = rejection.to_string();
                    let partition = self.core.partition().to_string();
                    let offset_text = offset.to_string();
                    let headers = OwnedHeaders::new()
                        .insert(Header {
                            key: "error",
                            value: Some(reason.as_str()),
                        })
                        .insert(Header {
                            key: "source-partition",
                            value: Some(partition.as_str()),
                        })
                        .insert(Header {
                            key: "source-offset",
                            value: Some(offset_text.as_str()),
                        });
                    let mut record = FutureRecord::to(&self.context.kafka.dlq_topic)
                        .payload(payload)
                        .headers(headers);
                    if let Some(key) = message.key() {
                        record = record.key(key);
                    }
                    kafka::send_record(&self.context.producer, &mut self.batch.deliveries, record)
                        .await?;
                    self.batch.rejected += 1;
                }
            }
            self.batch.last_offset = Some(offset);
        }
        Ok(())
    }

    fn commit_due(&self) -> bool {
        let settings = self.context.ingest;
        self.batch.last_offset.is_some()
            && (self.batch.rows.len() >= settings.commit_max_events
                || self
                    .batch
                    .started
                    .is_some_and(|started| started.elapsed() >= settings.commit_interval))
    }

    /// Waits for the broker to hold every output of the batch, then commits the
    /// rows and the partition's progress to bronze in one Delta commit.
    async fn commit(&mut self) -> Result<(), ActorError> {
        let Some(last_offset) = self.batch.last_offset else {
            return Ok(());
        };
        let partition = self.core.partition();
        kafka::await_all(&mut self.batch.deliveries).await?;
        fault::maybe_panic_before_commit(partition);
        let rows = self.batch.rows.finish()?;
        let rows_len = rows.num_rows();
        // The finished builder is already sized for a batch like this one.
        let next_rows = std::mem::take(&mut self.batch.rows);
        let batch = std::mem::replace(
            &mut self.batch,
            PendingBatch {
                rows: next_rows,
                ..PendingBatch::default()
            },
        );
        let started = Instant::now();
        let checkpoint = self.bronze.append(rows, partition, last_offset).await?;
        let stats = &self.stats;
        stats.accepted.fetch_add(rows_len as u64, Ordering::Relaxed);
        stats
            .duplicates
            .fetch_add(batch.duplicates, Ordering::Relaxed);
        stats.rejected.fetch_add(batch.rejected, Ordering::Relaxed);
        stats.commits.fetch_add(1, Ordering::Relaxed);
        stats.committed_offset.store(last_offset, Ordering::Relaxed);
        self.last_committed = Some(checkpoint);
        debug!(
            partition,
            last_offset,
            rows = rows_len,
            duplicates = batch.duplicates,
            rejected = batch.rejected,
            delta_version = checkpoint.delta_version,
            commit_ms = started.elapsed().as_millis() as u64,
            "bronze commit"
        );
        Ok(())
    }
}
