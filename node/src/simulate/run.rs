//! Produces the simulated stream to Kafka, keyed by raw `user_id`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rdkafka::producer::{FutureRecord, Producer};
use tokio_util::sync::CancellationToken;
use tracing::info;

use streamreel_actors::kafka::{self, InFlight};
use streamreel_lake::{VideoMetadata, read_metadata_file};
use streamreel_protocol::MAX_POSITION_S;

use crate::error::NodeError;
use crate::progress::Progress;
use crate::simulate::generator::{SimulationSettings, SimulationSummary, Simulator};

#[derive(Debug, Clone)]
pub struct SimulateOptions {
    pub brokers: String,
    pub topic: String,
    /// Partition count if the topic has to be created.
    pub partitions: i32,
    /// Replication factor if the topic has to be created.
    pub replication_factor: i32,
    pub metadata: PathBuf,
    /// Messages per second; `None` sends as fast as the broker takes them.
    pub rate: Option<f64>,
    pub settings: SimulationSettings,
}

/// Deliveries awaited at most this far behind the newest send.
const IN_FLIGHT: usize = 50_000;

/// The catalogue allows any positive duration, but the simulator plays
/// videos only up to the largest position an event may carry: beyond it
/// every event would be dead-lettered as `bad_number`, yet counted as valid,
/// and event times would overflow.
fn playable(catalogue: &[VideoMetadata]) -> Result<(), NodeError> {
    match catalogue.iter().find(|v| v.duration_s > MAX_POSITION_S) {
        Some(video) => Err(NodeError::Argument {
            name: "--metadata",
            reason: format!(
                "video {:?} lasts {} s; the simulator plays videos of at most {MAX_POSITION_S} s \
                 (the largest position an event may carry)",
                video.video_id, video.duration_s
            ),
        }),
        None => Ok(()),
    }
}

pub async fn run_simulation(
    options: SimulateOptions,
    shutdown: CancellationToken,
) -> Result<SimulationSummary, NodeError> {
    let catalogue = read_metadata_file(&options.metadata)?;
    playable(&catalogue)?;
    kafka::ensure_topics(
        &options.brokers,
        &[kafka::TopicSpec::plain(&options.topic)],
        options.partitions,
        options.replication_factor,
    )
    .await?;
    let producer = kafka::producer(&options.brokers, kafka::DEFAULT_RECORD_LIMIT)?;
    let mut progress = Progress::new("events", Some(options.settings.events));
    info!(
        topic = %options.topic,
        events = options.settings.events,
        seed = options.settings.seed,
        videos = catalogue.len(),
        "simulating"
    );
    let started = Instant::now();
    let mut simulator = Simulator::new(options.settings.clone(), &catalogue);
    let mut in_flight = InFlight::with_capacity(IN_FLIGHT);
    let mut sent: u64 = 0;
    // Paced in steps of a hundredth of a second's messages (1 to 1000): a
    // slow rate sends one message at a time, not a burst of a thousand.
    let pace_every = options
        .rate
        .map_or(1000, |rate| ((rate / 100.0) as u64).clamp(1, 1000));
    // Cancellation is checked before a message is taken: the summary counts
    // every message taken, and must count only the ones sent.
    while !shutdown.is_cancelled() {
        let Some(message) = simulator.next() else {
            break;
        };
        let record = FutureRecord::to(&options.topic)
            .key(message.key.as_str())
            .payload(&message.payload);
        kafka::send_record(&producer, &mut in_flight, record).await?;
        if in_flight.len() >= IN_FLIGHT {
            let oldest = in_flight.pop_front().expect("non-empty");
            kafka::await_delivery(oldest).await?;
        }
        sent += 1;
        progress.advance(1);
        if let Some(rate) = options.rate
            && sent.is_multiple_of(pace_every)
        {
            let due = Duration::from_secs_f64(sent as f64 / rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    kafka::await_all(&mut in_flight).await?;
    let flush = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(30)));
    flush.await??;
    progress.finish();
    let summary = simulator.summary();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "sent {} events to {} in {:.1} s ({:.0}/s): valid {}, malformed {}, duplicates {} (seed {})",
        summary.total(),
        options.topic,
        seconds,
        summary.total() as f64 / seconds.max(1e-9),
        summary.valid,
        summary.malformed,
        summary.duplicates,
        options.settings.seed
    );
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    fn video(id: &str, duration_s: f64) -> VideoMetadata {
        VideoMetadata {
            video_id: id.into(),
            title: "t".into(),
            genre: "g".into(),
            creator: "c".into(),
            duration_s,
            release_date: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
        }
    }

    #[test]
    fn videos_longer_than_an_event_position_may_be_are_refused_by_name() {
        assert!(playable(&[video("v1", 600.0), video("v2", MAX_POSITION_S)]).is_ok());
        let error = playable(&[video("v1", 600.0), video("long", 1e15)])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--metadata")
                && error.contains("\"long\"")
                && error.contains("1000000000"),
            "{error}"
        );
    }
}
