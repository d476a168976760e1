//! The StreamReel node and the `streamreel` command line.
//!
//! # Layout
//! - [`cli`]: command-line parsing (clap).
//! - [`config`]: the node's TOML config, validated.
//! - [`data_dir_lock`]: one node process per data dir.
//! - [`voter_record`]: a voter whose Raft state was lost does not vote again.
//! - [`node`]: runs a cluster member: Raft, HTTP, ingest supervisor, coordinator while leader, shutdown.
//! - [`leadership`]: the coordinator runs on the leader only (pure decisions, and the follower).
//! - [`job_runtime`]: the threads lakehouse jobs run on, apart from ingest and at a lower priority.
//! - [`http`]: the node's HTTP address: Raft RPCs, admin API, live aggregates, metrics; [`admin`]: the admin client.
//! - [`metrics`]: what `/metrics` exposes, rendered from a snapshot (pure).
//! - [`broker_health`]: whether the Kafka brokers answer, checked every 2 s.
//! - [`models`]: `streamreel models run | test`.
//! - [`inspect`]: `streamreel inspect`.
//! - [`export`]: `streamreel export`, a table to CSV or Parquet.
//! - [`progress`]: progress of long commands, on a terminal or in a log.
//! - [`simulate`]: the event simulator.
//! - [`error`]: the crate's error type.

pub mod admin;
pub mod broker_health;
pub mod cli;
pub mod config;
pub mod data_dir_identity;
pub mod data_dir_lock;
pub mod error;
pub mod export;
pub mod http;
pub mod inspect;
pub mod job_runtime;
pub mod leadership;
pub mod metrics;
pub mod models;
pub mod node;
pub mod partition_discovery;
pub mod progress;
pub mod simulate;
pub mod voter_record;

pub use error::NodeError;
