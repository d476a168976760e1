//! The StreamReel node and the `streamreel` command line.
//!
//! # Layout
//! - [`cli`]: command-line parsing (clap).
//! - [`config`]: the node's TOML config, validated.
//! - [`node`]: runs a node: topics, bronze table, ingest supervisor, coordinator, shutdown.
//! - [`http`]: the admin HTTP API; [`admin`]: its command-line client.
//! - [`models`]: `streamreel models run | test`.
//! - [`inspect`]: `streamreel inspect`.
//! - [`simulate`]: the event simulator.
//! - [`error`]: the crate's error type.

pub mod admin;
pub mod cli;
pub mod config;
pub mod error;
pub mod http;
pub mod inspect;
pub mod models;
pub mod node;
pub mod simulate;

pub use error::NodeError;
