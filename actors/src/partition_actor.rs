//! One actor per owned partition of the input topic, at the ownership epoch
//! the replicated state gave this node.
//!
//! Resuming: it reads the partition's marks in bronze (offset and epoch), takes
//! the checkpoint and de-duplication window from its replica of the Raft state
//! (no bronze scan), replays only the bronze rows past the checkpoint (left when
//! the previous owner died between its bronze commit and its checkpoint), and
//! writes a fence commit carrying its epoch before consuming (unless bronze
//! already holds a commit of that epoch).
//!
//! Then it loops: consume a batch, send accepted rows to `clean-events` and
//! rejects to the dead-letter topic, wait for the broker's acknowledgements,
//! commit the batch to bronze with the partition's offset and epoch
//! (compare-and-set), and checkpoint the increment through Raft. A failure
//! anywhere, but for a consumer error librdkafka recovers from, ends the
//! actor; the supervisor starts a fresh one while this node still owns the
//! partition, which resumes from bronze and the checkpoint, so nothing is
//! lost or doubled in bronze (Kafka outputs of an uncommitted batch may be
//! sent again). A fenced writer adds nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rdkafka::Message;
use rdkafka::Offset;
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use tracing::{debug, error, info, warn};

use streamreel_cluster::live::LiveBatch;
use streamreel_cluster::{CheckpointIncrement, Epoch};
use streamreel_lake::{BronzeBatchBuilder, BronzeTable, PartitionMarks, RecordBatch};
use streamreel_protocol::PartitionCheckpoint;
use streamreel_protocol::time::now_micros;

use crate::acks::BatchAcks;
use crate::checkpoint::propose_checkpoint;
use crate::commit_retry::{Commit, CommitTarget, RetryPlan, commit_with_retries, is_fenced};
use crate::context::IngestContext;
use crate::dead_letter::{Source, dead_letter};
use crate::error::ActorError;
use crate::fault;
use crate::kafka;
use crate::output::Output;
use crate::partition_core::{Outcome, PartitionCore};
use crate::partition_resume::resume;
use crate::repeated_error::RepeatedError;
use crate::stats::PartitionStats;

pub enum PartitionMsg {
    /// Consume and, when due, commit one batch; then poll again.
    Poll,
    Status(RpcReplyPort<PartitionStatus>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionStatus {
    pub partition: i32,
    pub epoch: Epoch,
    pub last_committed: Option<PartitionCheckpoint>,
    pub pending_events: usize,
    pub dedup_ids: usize,
}

pub struct PartitionArgs {
    pub partition: i32,
    pub epoch: Epoch,
    pub context: Arc<IngestContext>,
}

/// Bronze commit attempts before a batch is given up (and the actor restarts),
/// with exponential backoff between them: about 6 s in all.
const COMMIT_RETRIES: RetryPlan = RetryPlan {
    attempts: 6,
    backoff_min: Duration::from_millis(200),
    backoff_max: Duration::from_secs(5),
};

/// A batch closes once its live counts would add about this much to its
/// checkpoint: one count per (minute, video), so input with a new video id per
/// event would otherwise make Raft entries too large to replicate within a
/// heartbeat. Ordinary streams stay far below it (hundreds of ids a minute).
const LIVE_COUNTS_MAX_BYTES: usize = 4 << 20;

/// Room between an input record's size and the output topics' record limit:
/// a clean record is the input's fields re-encoded with a fixed set of added
/// ones, so it exceeds the input by far less than this.
const CLEAN_RECORD_HEADROOM: usize = 4_096;

/// The longest one `Poll` message reads before the actor looks at its mailbox.
const POLL_SLICE: Duration = Duration::from_millis(200);

/// The actor holds only configuration; everything it builds lives in the state.
pub struct PartitionActor;

pub struct PartitionState {
    context: Arc<IngestContext>,
    epoch: Epoch,
    /// The offset of this partition's last checkpoint in Raft (-1: none).
    checkpointed: i64,
    core: PartitionCore,
    consumer: StreamConsumer,
    bronze: BronzeTable,
    stats: Arc<PartitionStats>,
    batch: PendingBatch,
    /// The producer and record limit taken at the start, kept for the
    /// actor's life (see [`crate::output`]).
    output: Output,
    /// Reused for every `clean-events` value (the producer copies it).
    json: Vec<u8>,
    last_committed: Option<PartitionCheckpoint>,
    /// librdkafka reports a consumer error per reconnect attempt; forgotten
    /// when the next batch starts (records flow again).
    consumer_error: RepeatedError,
}

/// Records consumed since the last bronze commit.
#[derive(Default)]
struct PendingBatch {
    rows: BronzeBatchBuilder,
    last_offset: Option<i64>,
    started: Option<Instant>,
    /// Outputs of this batch not yet acknowledged by the broker.
    acks: Arc<BatchAcks>,
    /// Input bytes consumed into this batch.
    bytes: usize,
    duplicates: u64,
    rejected: u64,
    rejected_by_kind: BTreeMap<&'static str, u64>,
    /// Accepted ids (hashes) with when they were accepted, for the checkpoint.
    new_ids: Vec<u128>,
    /// When the newest accepted event was accepted.
    accepted_at_us: i64,
    live: LiveBatch,
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
        let PartitionArgs {
            partition,
            epoch,
            context,
        } = args;
        // Read at every start, so that a restart after failed deliveries (the
        // topic recreated with fewer partitions) or a move picks up the count.
        // Read before resuming: a start that fails here (the topic deleted)
        // then adds no bronze version and no Raft entry at each restart.
        let clean_partitions =
            kafka::partition_count(&context.kafka.brokers, &context.kafka.clean_topic).await?;
        let output = output_for_now(&context).await?;
        let resumed = resume(partition, epoch, &context).await?;
        let stats = context.stats.partition(partition);
        let (start, range) = (resumed.start, resumed.range);
        if start.skipped > 0 && stats.count_skipped(start.offset - start.skipped, start.offset) > 0
        {
            warn!(
                partition,
                expected = resumed.marks_offset.unwrap_or(-1) + 1,
                low = range.0,
                high = range.1,
                skipped = start.skipped,
                "offsets missing from the broker were skipped (kafka.on-missing-offsets)"
            );
        }
        let consumer = kafka::partition_consumer(
            &context.kafka.brokers,
            &context.kafka.consumer_group,
            &context.kafka.input_topic,
            partition,
            Offset::Offset(start.offset),
        )?;
        stats
            .committed_offset
            .store(resumed.marks_offset.unwrap_or(-1), Ordering::Relaxed);
        stats
            .consumed_offset
            .store(resumed.marks_offset.unwrap_or(-1), Ordering::Relaxed);
        // A batch taken for lost (its commit answered an error, and its marks
        // could not be read) that bronze holds after all is not lost.
        if let Some(marks) = resumed.marks_offset {
            stats.uncommitted.committed_through(marks);
        }
        info!(
            partition,
            epoch,
            start = start.offset,
            clean_partitions = clean_partitions.get(),
            replayed = resumed.replayed,
            dedup_ids = resumed.dedup.len(),
            "partition actor resumed"
        );
        let core = PartitionCore::new(
            partition,
            context.keyer.clone(),
            resumed.dedup,
            clean_partitions,
        )
        .with_max_event_bytes(output.limits.clean.saturating_sub(CLEAN_RECORD_HEADROOM));
        myself.cast(PartitionMsg::Poll)?;
        Ok(PartitionState {
            last_committed: resumed.marks_offset.map(|last_offset| PartitionCheckpoint {
                partition,
                last_offset,
                delta_version: resumed.delta_version,
            }),
            context,
            epoch,
            checkpointed: resumed.marks_offset.unwrap_or(-1),
            core,
            consumer,
            output,
            bronze: resumed.bronze,
            stats,
            batch: PendingBatch::default(),
            json: Vec::with_capacity(1024),
            consumer_error: RepeatedError::default(),
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
                if let Err(error) = state.poll().await {
                    // ractor skips `post_stop` after a failed handler, so a
                    // stop that came during this commit would not learn the
                    // batch was lost; it counts until a later commit of the
                    // partition reaches its last offset, or the partition
                    // moves to another owner.
                    if let Some(last_offset) = state.batch.last_offset {
                        state.stats.uncommitted.lost_through(last_offset);
                    }
                    return Err(error.into());
                }
                myself.cast(PartitionMsg::Poll)?;
            }
            PartitionMsg::Status(reply) => {
                let _ = reply.send(PartitionStatus {
                    partition: state.core.partition(),
                    epoch: state.epoch,
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
        if state.batch.last_offset.is_some()
            && let Err(error) = state.commit().await
        {
            // Still pending, the batch never reached bronze (`commit` flags
            // a failed bronze commit itself); gone, only its Raft checkpoint
            // failed and bronze holds it.
            if let Some(last_offset) = state.batch.last_offset {
                state.stats.uncommitted.lost_through(last_offset);
            }
            error!(partition = state.core.partition(), %error, "the batch consumed before the stop was not committed");
            return Err(error.into());
        }
        info!(
            partition = state.core.partition(),
            "partition actor stopped"
        );
        Ok(())
    }
}

impl PartitionState {
    /// One round: consume, then commit if the batch is due.
    async fn poll(&mut self) -> Result<(), ActorError> {
        self.consume_batch().await?;
        if self.commit_due() {
            self.commit().await?;
        }
        Ok(())
    }

    /// Consumes until the batch is full or its commit interval has passed.
    async fn consume_batch(&mut self) -> Result<(), ActorError> {
        let settings = self.context.ingest;
        // A round ends at the batch's deadline or after a slice, whichever is
        // first, so that a stop or a status request never waits for a long
        // commit interval; the batch carries over to the next round.
        let deadline = (self.batch.started.unwrap_or_else(Instant::now) + settings.commit_interval)
            .min(Instant::now() + POLL_SLICE);
        // One timer for the whole round: a timer per message costs more than
        // deciding the message.
        let round_end = tokio::time::sleep_until(deadline.into());
        tokio::pin!(round_end);
        // One stream for the round: `recv` registers and drops a waker slot
        // (two lock round trips) for every message.
        let mut messages = self.consumer.stream();
        while self.batch.rows.len() < settings.commit_max_events
            && self.batch.bytes < settings.commit_max_bytes
            && self.batch.live.bytes() < LIVE_COUNTS_MAX_BYTES
        {
            let message = tokio::select! {
                biased;
                _ = &mut round_end => break,
                message = messages.next() => message.expect("kafka streams never end"),
            };
            let message = match message {
                Ok(message) => message,
                Err(error) if kafka::consumer_error_is_transient(&error) => {
                    self.stats.consumer_errors.fetch_add(1, Ordering::Relaxed);
                    // Shown until the next commit, so a stall that never
                    // clears (a leader this node cannot reach) is visible.
                    let text = format!("consumer (retrying): {error}");
                    if self.consumer_error.is_new(&text) {
                        warn!(partition = self.core.partition(), %error, "consumer error; librdkafka retries, the batch is kept");
                    } else {
                        debug!(partition = self.core.partition(), %error, "consumer error again; librdkafka retries");
                    }
                    *self.stats.last_error.lock().expect("stats lock") = Some(text);
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            if self.batch.started.is_none() {
                self.batch.started = Some(Instant::now());
                self.consumer_error.clear();
            }
            let offset = message.offset();
            let payload = message.payload().unwrap_or_default();
            self.batch.bytes += payload.len();
            self.stats.consumed.fetch_add(1, Ordering::Relaxed);
            self.stats.consumed_offset.store(offset, Ordering::Relaxed);
            let now = now_micros();
            match self.core.process(offset, payload, now) {
                Outcome::Accepted {
                    clean,
                    id_hash,
                    output_partition,
                } => {
                    let row = clean.view();
                    self.batch.new_ids.push(id_hash);
                    self.batch.accepted_at_us = now;
                    self.batch
                        .live
                        .add(row.video_id, row.event_time_us, row.event_type);
                    self.json.clear();
                    row.write_json(&mut self.json);
                    let record = BaseRecord::with_opaque_to(
                        &self.context.kafka.clean_topic,
                        self.batch.acks.clone(),
                    )
                    .key(row.user_key)
                    .partition(output_partition)
                    .payload(&self.json)
                    // The record's time is its `ingested_at`; given, it
                    // spares librdkafka a clock read per record.
                    .timestamp(now / 1000);
                    self.batch.acks.send(&self.output.producer, record).await?;
                    self.batch.rows.append(&row);
                }
                Outcome::Duplicate => self.batch.duplicates += 1,
                Outcome::Rejected(rejection) => {
                    // The reason never quotes the input, so it may be logged.
                    debug!(partition = self.core.partition(), offset, reason = %rejection, "rejected event");
                    let letter = dead_letter(
                        &self.context.keyer,
                        Source {
                            key: message.key(),
                            payload: message.payload(),
                            partition: self.core.partition(),
                            offset,
                        },
                        &rejection,
                        self.output.limits.dead_letter,
                    );
                    let headers =
                        letter
                            .headers
                            .iter()
                            .fold(OwnedHeaders::new(), |headers, (key, value)| {
                                headers.insert(Header {
                                    key,
                                    value: Some(value.as_str()),
                                })
                            });
                    let mut record = BaseRecord::<str, [u8], _>::with_opaque_to(
                        &self.context.kafka.dlq_topic,
                        self.batch.acks.clone(),
                    )
                    .headers(headers);
                    if let Some(value) = letter.payload {
                        record = record.payload(value);
                    }
                    if let Some(key) = &letter.key {
                        record = record.key(key.as_str());
                    }
                    // The batch's bytes bound what a crash sends again, and a
                    // dead letter's headers are sent too: a flood of empty
                    // records (tombstones) would otherwise never fill a batch.
                    self.batch.bytes += letter.size().saturating_sub(payload.len());
                    self.batch.acks.send(&self.output.producer, record).await?;
                    self.batch.rejected += 1;
                    *self
                        .batch
                        .rejected_by_kind
                        .entry(rejection.kind())
                        .or_default() += 1;
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
                || self.batch.bytes >= settings.commit_max_bytes
                || self.batch.live.bytes() >= LIVE_COUNTS_MAX_BYTES
                || self
                    .batch
                    .started
                    .is_some_and(|started| started.elapsed() >= settings.commit_interval))
    }

    /// Waits for the broker to hold every output of the batch, commits the rows
    /// and the partition's progress to bronze in one fenced Delta commit, then
    /// checkpoints the increment through Raft.
    async fn commit(&mut self) -> Result<(), ActorError> {
        let Some(last_offset) = self.batch.last_offset else {
            return Ok(());
        };
        let partition = self.core.partition();
        self.batch.acks.settled().await?;
        fault::maybe_panic_before_commit(partition);
        let rows = self.batch.rows.finish()?;
        let rows_len = rows.num_rows();
        // The finished builder is already sized for a batch like this one.
        let next_rows = std::mem::take(&mut self.batch.rows);
        let mut batch = std::mem::replace(
            &mut self.batch,
            PendingBatch {
                rows: next_rows,
                ..PendingBatch::default()
            },
        );
        let started = Instant::now();
        let checkpoint = match self.append_with_retries(rows, last_offset).await {
            Ok(checkpoint) => checkpoint,
            Err(error) => {
                // The batch has left `self.batch`, where `handle` and
                // `post_stop` look for one a stop would lose. A fenced batch
                // is the new owner's to read, not lost.
                if !is_fenced(&error) {
                    warn!(partition, last_offset, %error, "bronze commit failed for good; the batch is read again when the partition resumes");
                    self.stats.uncommitted.lost_through(last_offset);
                }
                return Err(error);
            }
        };
        fault::maybe_panic_after_commit(partition);
        let commit_time = started.elapsed();
        // Counted once bronze holds the batch: a failed checkpoint below
        // restarts the actor from bronze's marks, which never reads it again.
        let stats = &self.stats;
        stats.accepted.fetch_add(rows_len as u64, Ordering::Relaxed);
        stats
            .duplicates
            .fetch_add(batch.duplicates, Ordering::Relaxed);
        stats.rejected.fetch_add(batch.rejected, Ordering::Relaxed);
        stats.add_rejections(&batch.rejected_by_kind);
        stats.commits.fetch_add(1, Ordering::Relaxed);
        stats.commit_seconds.observe(commit_time.as_secs_f64());
        stats.committed_offset.store(last_offset, Ordering::Relaxed);
        // This actor resumed from bronze's marks: a batch an earlier actor
        // of the partition lost is in bronze once it has committed that far.
        stats.uncommitted.committed_through(last_offset);
        propose_checkpoint(
            &self.context,
            CheckpointIncrement {
                partition,
                epoch: self.epoch,
                after_offset: self.checkpointed,
                last_offset,
                delta_version: checkpoint.delta_version,
                new_ids: batch.new_ids,
                accepted_at_us: batch.accepted_at_us,
                live: batch.live.take(),
                at_ms: now_micros() / 1_000,
            },
        )
        .await?;
        self.checkpointed = last_offset;
        self.last_committed = Some(checkpoint);
        *stats.last_error.lock().expect("stats lock") = None;
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

impl PartitionState {
    /// Commits `rows` to bronze, trying again with backoff when the lake fails:
    /// the batch's Kafka outputs are already acknowledged, and giving up the
    /// batch would send them all again. Before a retry the partition's marks
    /// are read afresh: a commit that landed after all is taken as done, and
    /// marks moved by another writer end the batch as fenced.
    async fn append_with_retries(
        &mut self,
        rows: RecordBatch,
        last_offset: i64,
    ) -> Result<PartitionCheckpoint, ActorError> {
        let commit = Commit {
            partition: self.core.partition(),
            before: self.last_committed.map(|c| c.last_offset),
            last_offset,
            epoch: self.epoch,
        };
        let mut target = BronzeCommit {
            bronze: &mut self.bronze,
            rows,
            commit,
        };
        let retries = &self.stats.commit_retries;
        commit_with_retries(&mut target, COMMIT_RETRIES, commit, || {
            retries.fetch_add(1, Ordering::Relaxed);
        })
        .await
    }
}

/// A batch's commit to the partition's bronze handle.
struct BronzeCommit<'a> {
    bronze: &'a mut BronzeTable,
    rows: RecordBatch,
    commit: Commit,
}

impl CommitTarget for BronzeCommit<'_> {
    async fn append(&mut self) -> Result<PartitionCheckpoint, ActorError> {
        if fault::bronze_commit_should_fail() {
            return Err(ActorError::InjectedFault("bronze commit failure"));
        }
        let Commit {
            partition,
            last_offset,
            epoch,
            ..
        } = self.commit;
        Ok(self
            .bronze
            .append_fenced(self.rows.clone(), partition, Some(last_offset), epoch)
            .await?)
    }

    async fn marks(&mut self) -> Result<PartitionMarks, ActorError> {
        Ok(self.bronze.marks(self.commit.partition).await?)
    }

    fn version(&self) -> Option<u64> {
        self.bronze.version()
    }
}

/// The output producer for the topics' record limit as the broker reports it
/// now; the newest one when the broker does not answer (the start then
/// proceeds, as a failure to learn the limit must not stop ingest).
async fn output_for_now(context: &IngestContext) -> Result<Output, ActorError> {
    let kafka = &context.kafka;
    match kafka::reported_record_limits(&kafka.brokers, &kafka.clean_topic, &kafka.dlq_topic).await
    {
        Ok(limits) => context.output.for_limits(limits),
        Err(error) => {
            debug!(%error, "record limit not read at this start; keeping the newest producer");
            Ok(context.output.newest())
        }
    }
}
