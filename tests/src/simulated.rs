//! The simulator's stream regenerated in-process: the oracle tests compare with.

use streamreel_lake::{VideoMetadata, read_metadata_file};
use streamreel_node::simulate::{SimulatedMessage, SimulationSettings, Simulator};

use crate::repo_root;

/// 2026-11-24T00:00:00Z, a fixed start so streams are reproducible.
pub const START_US: i64 = 1_795_478_400_000_000;

pub fn catalogue() -> anyhow::Result<Vec<VideoMetadata>> {
    Ok(read_metadata_file(
        &repo_root().join("metadata/video_metadata.csv"),
    )?)
}

pub fn settings(events: u64, seed: u64) -> SimulationSettings {
    SimulationSettings {
        events,
        seed,
        start_us: START_US,
        malformed_share: 0.005,
        duplicate_share: 0.01,
        users: None,
    }
}

pub fn messages(events: u64, seed: u64) -> anyhow::Result<Vec<SimulatedMessage>> {
    let catalogue = catalogue()?;
    Ok(Simulator::new(settings(events, seed), &catalogue).collect())
}
