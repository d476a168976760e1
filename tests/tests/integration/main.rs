//! Integration and chaos tests against real components: a tansu broker started
//! per test on a free port, real `streamreel` processes, real Delta tables.
//!
//! Build the workspace first (`cargo build --workspace`): tests start the
//! `streamreel` binary as a separate process so that SIGKILL is real.

mod cluster;
mod crash;
mod dashboard;
mod docs;
mod hardening;
mod ingest;
mod lakehouse;
mod reference;
mod support;
