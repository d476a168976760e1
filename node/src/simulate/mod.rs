//! `streamreel simulate`: realistic viewing sessions produced to `video-events`.
//!
//! - [`generator`]: the deterministic message stream (pure, seeded).
//! - [`session`]: one viewer watching one video, as a small state machine.
//! - [`malformed`]: the ways a client breaks the contract.
//! - [`run`]: produces the stream to Kafka with a progress bar and a summary.

pub mod generator;
pub mod malformed;
pub mod run;
pub mod session;

pub use generator::{
    MessageKind, SimulatedMessage, SimulationSettings, SimulationSummary, Simulator,
};
