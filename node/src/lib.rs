//! The StreamReel node and the `streamreel` command line.
//!
//! # Layout
//! - [`cli`]: command-line parsing (clap).
//! - [`config`]: the node's TOML config, validated.
//! - [`data_dir_lock`]: one node process per data dir.
//! - [`node`]: runs a cluster member: Raft, HTTP, ingest supervisor, coordinator while leader, shutdown.
//! - [`http`]: the node's HTTP address: Raft RPCs, admin API, live aggregates; [`admin`]: the admin client.
//! - [`models`]: `streamreel models run | test`.
//! - [`inspect`]: `streamreel inspect`.
//! - [`simulate`]: the event simulator.
//! - [`error`]: the crate's error type.

pub mod admin;
pub mod cli;
pub mod config;
pub mod data_dir_lock;
pub mod error;
pub mod http;
pub mod inspect;
pub mod models;
pub mod node;
pub mod simulate;

pub use error::NodeError;
