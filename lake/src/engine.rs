//! How hard a lakehouse run may push the machine: DataFusion's memory pool and
//! the size of silver's chunks. Every query of a run goes through the
//! [`LakeSettings::context`] it returns, so the limit holds for all of them.

use std::sync::Arc;

use deltalake::datafusion::execution::memory_pool::FairSpillPool;
use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};

use crate::error::LakeError;

/// Limits of one lakehouse run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LakeSettings {
    /// Bytes DataFusion's operators (joins, aggregations, sorts) may hold
    /// before they spill to disk or, where they cannot spill, fail the query.
    pub memory_limit_bytes: usize,
    /// Bronze events silver reads, enriches and sessionises at once. A larger
    /// backlog is processed in chunks of this many events, each committed on
    /// its own; a run holds about 1 KiB per event of its chunk.
    pub chunk_events: u64,
}

impl LakeSettings {
    pub const DEFAULT_MEMORY_LIMIT_BYTES: usize = 1 << 30;
    pub const DEFAULT_CHUNK_EVENTS: u64 = 1_000_000;

    /// A DataFusion session bounded by `memory_limit_bytes` (shared fairly
    /// between the operators that can spill).
    pub fn context(&self) -> Result<SessionContext, LakeError> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(self.memory_limit_bytes)))
            .build_arc()?;
        let mut config = SessionConfig::new();
        // Plain strings, as the tables store them: view types would be cast
        // back, row by row, on every Delta write.
        config
            .options_mut()
            .execution
            .parquet
            .schema_force_view_types = false;
        Ok(SessionContext::new_with_config_rt(config, runtime))
    }
}

impl Default for LakeSettings {
    fn default() -> Self {
        LakeSettings {
            memory_limit_bytes: Self::DEFAULT_MEMORY_LIMIT_BYTES,
            chunk_events: Self::DEFAULT_CHUNK_EVENTS,
        }
    }
}

#[cfg(test)]
mod tests {
    use deltalake::datafusion::execution::memory_pool::MemoryLimit;

    use super::*;

    #[test]
    fn every_query_of_a_run_shares_the_configured_pool() {
        let settings = LakeSettings {
            memory_limit_bytes: 64 << 20,
            ..LakeSettings::default()
        };
        let ctx = settings.context().expect("context");
        match ctx.runtime_env().memory_pool.memory_limit() {
            MemoryLimit::Finite(bytes) => assert_eq!(bytes, 64 << 20),
            _ => panic!("the pool is unbounded"),
        }
    }
}
