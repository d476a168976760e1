//! How a partition actor resumes a partition at its ownership epoch; see
//! [`crate::partition_actor`] for the whole protocol.

use streamreel_cluster::live::LiveBatch;
use streamreel_cluster::{CheckpointIncrement, Epoch};
use streamreel_lake::{BronzeTable, rows_to_batch};
use streamreel_protocol::id_hash;
use streamreel_protocol::time::now_micros;

use crate::checkpoint::propose_checkpoint;
use crate::context::IngestContext;
use crate::dedup::DedupWindow;
use crate::error::ActorError;
use crate::kafka;
use crate::start_position::{Start, same_record, start_position};

/// How many offsets before bronze's last one [`check_same_log`] looks back
/// for an accepted event to compare: nearly every record is one.
const SAME_LOG_LOOKBACK: i64 = 1_000;

/// What resuming a partition found and built.
pub struct Resumed {
    pub bronze: BronzeTable,
    pub start: Start,
    /// The partition's (low, high) watermarks when it resumed.
    pub range: (i64, i64),
    pub marks_offset: Option<i64>,
    pub delta_version: i64,
    pub dedup: DedupWindow,
    pub replayed: usize,
}

/// Resumes `partition` at `epoch`: its start offset from bronze's marks and
/// the broker's watermarks, checkpoint and dedup window from the replica, the
/// bronze gap past the checkpoint replayed, a fence commit (unless bronze
/// holds one of this epoch already), and a first checkpoint at this epoch (which tells `move` the partition resumed).
pub async fn resume(
    partition: i32,
    epoch: Epoch,
    context: &IngestContext,
) -> Result<Resumed, ActorError> {
    let mut bronze = BronzeTable::open_or_create(&context.lake_dir).await?;
    // The node checks at its start only if the brokers answered then. Done
    // before the marks are read: checking refreshes `bronze`, and the fence
    // commit below must be built on the version the marks come from, or a
    // commit the previous owner made in between would not fence this one
    // (and its batch would be ingested again).
    let cluster_id = {
        let brokers = context.kafka.brokers.clone();
        tokio::task::spawn_blocking(move || kafka::cluster_id(&brokers, kafka::METADATA_TIMEOUT))
            .await
            .map_err(ActorError::Task)??
    };
    match &cluster_id {
        Some(cluster_id) => bronze.ensure_kafka_cluster(cluster_id).await?,
        // Brokers that do not say which cluster they are could be another
        // cluster's, with other records at the same offsets: once bronze
        // knows its cluster, a partition does not resume unchecked.
        None => {
            if let Some(recorded) = bronze.recorded_kafka_cluster().await? {
                return Err(ActorError::KafkaClusterUnknown {
                    partition,
                    recorded,
                });
            }
        }
    }
    let marks = bronze.marks(partition).await?;
    if let Some(found) = marks.epoch
        && found > epoch
    {
        return Err(ActorError::Fenced {
            partition,
            epoch,
            found,
        });
    }
    // Where to start is decided before the fence: a partition that cannot
    // resume (offsets gone under `on-missing-offsets = "fail"`) then adds no
    // bronze version and no Raft entry at each of its restarts.
    // After the marks: the broker's log then ends at or past every offset
    // they can hold.
    let range = {
        let (brokers, topic) = (
            context.kafka.brokers.clone(),
            context.kafka.input_topic.clone(),
        );
        tokio::task::spawn_blocking(move || kafka::watermarks(&brokers, &topic, partition))
            .await
            .map_err(ActorError::Task)??
    };
    let start = start_position(
        partition,
        marks.last_offset,
        range,
        context.kafka.on_missing_offsets,
    )?;
    if let Some(last_offset) = marks.last_offset {
        check_same_log(partition, last_offset, range, &mut bronze, context).await?;
    }
    // The ids are copied out under the replica's lock and the window built
    // after it: a full window (millions of ids) takes a fraction of a second
    // to hash, and Raft cannot apply entries on this member meanwhile.
    let (checkpoint_offset, dedup_settings, dedup_entries) = {
        let applied = context.cluster.view.read();
        let Some(state) = applied.state.partition(partition) else {
            return Err(ActorError::NotOwner { partition, epoch });
        };
        if state.epoch != epoch || state.owner != Some(context.cluster.id) {
            return Err(ActorError::NotOwner { partition, epoch });
        }
        (
            state.checkpoint.map(|c| c.last_offset),
            state.dedup.settings(),
            state.dedup.entries().collect::<Vec<_>>(),
        )
    };
    let mut dedup = tokio::task::spawn_blocking(move || {
        DedupWindow::from_entries(dedup_settings, dedup_entries)
    })
    .await
    .map_err(ActorError::Task)?;
    // Bronze may be ahead: the previous owner died between its bronze commit
    // and its checkpoint. Replay exactly that gap.
    let mut new_ids = Vec::new();
    let mut accepted_at_us = 0;
    let mut live = LiveBatch::default();
    let gap_from = checkpoint_offset.unwrap_or(-1);
    if marks.last_offset.unwrap_or(-1) > gap_from {
        for event in bronze.events_after(partition, gap_from).await? {
            let id = id_hash(&event.event_id);
            dedup.insert(id, event.ingested_at_us);
            new_ids.push(id);
            accepted_at_us = accepted_at_us.max(event.ingested_at_us);
            live.add(&event.video_id, event.event_time_us, &event.event_type);
        }
    }
    let replayed = new_ids.len();
    // A commit of this epoch in bronze already refuses every older writer
    // (an earlier start at this epoch fenced, or a batch landed): a restart
    // that cannot resume (no quorum for its checkpoint) then adds no bronze
    // version each time it tries.
    let delta_version = if marks.epoch == Some(epoch) {
        bronze.version().unwrap_or_default() as i64
    } else {
        bronze
            .append_fenced(rows_to_batch(&[])?, partition, marks.last_offset, epoch)
            .await?
            .delta_version
    };
    propose_checkpoint(
        context,
        CheckpointIncrement {
            partition,
            epoch,
            after_offset: gap_from,
            last_offset: marks.last_offset.unwrap_or(-1),
            delta_version,
            new_ids,
            accepted_at_us,
            live: live.take(),
            at_ms: now_micros() / 1_000,
        },
    )
    .await?;
    Ok(Resumed {
        bronze,
        start,
        range,
        marks_offset: marks.last_offset,
        delta_version,
        dedup,
        replayed,
    })
}

/// Compares bronze's newest event still on the broker with the broker's
/// record at its offset, so that a recreated input topic whose log has grown
/// past bronze's offset stops the partition instead of being read from there.
/// Nothing to compare (no accepted event near the end, or its record deleted
/// or compacted away) passes.
async fn check_same_log(
    partition: i32,
    last_offset: i64,
    (low, _): (i64, i64),
    bronze: &mut BronzeTable,
    context: &IngestContext,
) -> Result<(), ActorError> {
    let recent = bronze
        .events_after(partition, last_offset - SAME_LOG_LOOKBACK)
        .await?;
    let Some(newest) = recent
        .iter()
        .rev()
        .find(|event| (low..=last_offset).contains(&event.kafka_offset))
    else {
        return Ok(());
    };
    let record = kafka::record_at(
        &context.kafka.brokers,
        &context.kafka.consumer_group,
        &context.kafka.input_topic,
        partition,
        newest.kafka_offset,
    )
    .await?;
    if let Some(record) = record {
        same_record(partition, newest.kafka_offset, &newest.event_id, &record)?;
    }
    Ok(())
}
