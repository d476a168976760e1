//! Fixtures shared by the integration tests and the benchmark: a real tansu
//! broker on a free port, real `streamreel` node processes, and readers for the
//! Delta tables and Kafka topics they produce.
//!
//! # Layout
//! - [`broker`]: starts and stops a tansu broker.
//! - [`cluster`]: a cluster of node processes sharing one lake.
//! - [`cpu`]: CPU time used by a process, for the benchmark.
//! - [`node_process`]: starts, SIGKILLs and stops `streamreel node`.
//! - [`topic_reader`]: reads a whole topic back.
//! - [`bronze_reader`]: reads the bronze table back.
//! - [`wait`]: polling a condition with a deadline (no sleeps as synchronisation).
//! - [`simulated`]: the simulator's stream, regenerated in-process as the oracle.

pub mod broker;
pub mod bronze_fixture;
pub mod bronze_reader;
pub mod cluster;
pub mod cpu;
pub mod node_process;
pub mod simulated;
pub mod topic_reader;
pub mod wait;

use std::path::PathBuf;

/// The repository root (for `cluster-config/` and `metadata/`).
///
/// Read at run time: a build shared by two clones (one target dir) must not
/// point every test at the clone that built it first. Cargo names the
/// package's directory; a binary run by hand (the bench) takes the repository
/// it is run from, and only outside one the clone that built it.
pub fn repo_root() -> PathBuf {
    if let Some(manifest_dir) = std::env::var_os("CARGO_MANIFEST_DIR") {
        return root_above(PathBuf::from(manifest_dir));
    }
    if let Ok(current) = std::env::current_dir()
        && current.join("metadata/video_metadata.csv").is_file()
        && current.join("cluster-config").is_dir()
    {
        return current;
    }
    root_above(PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

fn root_above(manifest_dir: PathBuf) -> PathBuf {
    manifest_dir
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

/// The secret test nodes pseudonymise with.
pub const TEST_SECRET: &str = "integration-test-secret-0123456789";
