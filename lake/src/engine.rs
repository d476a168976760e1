//! How hard a lakehouse run may push the machine: DataFusion's memory pool and
//! the size of silver's chunks. Every query of a run goes through the
//! [`LakeSettings::context`] it returns, so the limit holds for all of them.

use std::sync::Arc;

use deltalake::datafusion::execution::memory_pool::FairSpillPool;
use deltalake::datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
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
        Ok(Self::context_in(self.runtime()?))
    }

    /// The memory pool of one run. A run that needs several sessions makes
    /// each with [`LakeSettings::context_in`] from this one, so that together
    /// they hold at most `memory_limit_bytes`, as the setting promises, not
    /// that much each.
    pub fn runtime(&self) -> Result<Arc<RuntimeEnv>, LakeError> {
        Ok(RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(self.memory_limit_bytes)))
            .build_arc()?)
    }

    /// A DataFusion session drawing on `runtime`'s memory pool.
    pub fn context_in(runtime: Arc<RuntimeEnv>) -> SessionContext {
        let mut config = SessionConfig::new();
        // Plain strings, as the tables store them: view types would be cast
        // back, row by row, on every Delta write.
        config
            .options_mut()
            .execution
            .parquet
            .schema_force_view_types = false;
        SessionContext::new_with_config_rt(config, runtime)
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
    use deltalake::datafusion::execution::memory_pool::{MemoryConsumer, MemoryLimit};

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

    #[test]
    fn sessions_of_one_run_draw_on_one_pool() {
        let settings = LakeSettings {
            memory_limit_bytes: 64 << 20,
            ..LakeSettings::default()
        };
        let runtime = settings.runtime().expect("runtime");
        let first = LakeSettings::context_in(runtime.clone());
        let second = LakeSettings::context_in(runtime);
        let reservation = MemoryConsumer::new("first").register(&first.runtime_env().memory_pool);
        reservation.try_grow(48 << 20).expect("within the limit");
        let other = MemoryConsumer::new("second").register(&second.runtime_env().memory_pool);
        assert!(
            other.try_grow(32 << 20).is_err(),
            "a second session of the run got memory the first one holds"
        );
        other.try_grow(8 << 20).expect("what is left of the limit");
        // Separate runs have their own pools.
        let elsewhere = settings.context().expect("context");
        let own = MemoryConsumer::new("elsewhere").register(&elsewhere.runtime_env().memory_pool);
        own.try_grow(48 << 20).expect("another run's pool");
    }
}
