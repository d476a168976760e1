//! A log store that checks each commit entry just before it is written and
//! passes everything else to the store it wraps. The lake's checks
//! ([`crate::present_files`], [`crate::compaction_guard`]) only say what they
//! refuse.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use deltalake::datafusion::execution::object_store::ObjectStoreUrl;
use deltalake::kernel::Version;
use deltalake::kernel::transaction::TransactionError;
use deltalake::logstore::object_store::ObjectStoreExt;
use deltalake::logstore::{CommitOrBytes, LogStore, LogStoreConfig, LogStoreRef};
use deltalake::{DeltaResult, DeltaTable, ObjectStore, Path};
use url::Url;
use uuid::Uuid;

/// What a commit entry must pass before it is written.
#[async_trait]
pub(crate) trait CommitCheck: Send + Sync + 'static {
    /// Refuses `entry`, about to be written as `version` through `inner`,
    /// with the error the commit fails with; or lets it pass.
    async fn check(
        &self,
        inner: &LogStoreRef,
        version: Version,
        entry: &[u8],
    ) -> Result<(), TransactionError>;
}

/// `table` with its log store wrapped so that `check` runs before every
/// commit entry is written; the loaded state is kept, not read again.
pub(crate) fn with_check(table: DeltaTable, check: impl CommitCheck) -> DeltaTable {
    let store: LogStoreRef = Arc::new(CheckedLogStore {
        inner: table.log_store(),
        check: Box::new(check),
    });
    let mut checked = DeltaTable::new(store);
    checked.state = table.state;
    checked
}

struct CheckedLogStore {
    inner: LogStoreRef,
    check: Box<dyn CommitCheck>,
}

#[async_trait]
impl LogStore for CheckedLogStore {
    fn name(&self) -> String {
        self.inner.name()
    }

    async fn refresh(&self) -> DeltaResult<()> {
        self.inner.refresh().await
    }

    async fn read_commit_entry(&self, version: Version) -> DeltaResult<Option<Bytes>> {
        self.inner.read_commit_entry(version).await
    }

    async fn write_commit_entry(
        &self,
        version: Version,
        commit_or_bytes: CommitOrBytes,
        operation_id: Uuid,
    ) -> Result<(), TransactionError> {
        match &commit_or_bytes {
            CommitOrBytes::LogBytes(bytes) => {
                self.check.check(&self.inner, version, bytes).await?;
            }
            // Stores without put-if-absent stage the entry as a temporary
            // file first: it is read back, so that no commit goes unchecked.
            CommitOrBytes::TmpCommit(staged) => {
                let bytes = self
                    .inner
                    .object_store(Some(operation_id))
                    .get(staged)
                    .await
                    .map_err(TransactionError::from)?
                    .bytes()
                    .await
                    .map_err(TransactionError::from)?;
                self.check.check(&self.inner, version, &bytes).await?;
            }
        }
        self.inner
            .write_commit_entry(version, commit_or_bytes, operation_id)
            .await
    }

    async fn abort_commit_entry(
        &self,
        version: Version,
        commit_or_bytes: CommitOrBytes,
        operation_id: Uuid,
    ) -> Result<(), TransactionError> {
        self.inner
            .abort_commit_entry(version, commit_or_bytes, operation_id)
            .await
    }

    async fn get_latest_version(&self, start_version: Version) -> DeltaResult<Version> {
        self.inner.get_latest_version(start_version).await
    }

    fn object_store(&self, operation_id: Option<Uuid>) -> Arc<dyn ObjectStore> {
        self.inner.object_store(operation_id)
    }

    fn root_object_store(&self, operation_id: Option<Uuid>) -> Arc<dyn ObjectStore> {
        self.inner.root_object_store(operation_id)
    }

    fn to_uri(&self, location: &Path) -> String {
        self.inner.to_uri(location)
    }

    fn root_url(&self) -> &Url {
        self.inner.root_url()
    }

    fn log_path(&self) -> &Path {
        self.inner.log_path()
    }

    fn transaction_url(&self, operation_id: Option<Uuid>) -> DeltaResult<Url> {
        self.inner.transaction_url(operation_id)
    }

    async fn is_delta_table_location(&self) -> DeltaResult<bool> {
        self.inner.is_delta_table_location().await
    }

    fn config(&self) -> &LogStoreConfig {
        self.inner.config()
    }

    fn object_store_url(&self) -> ObjectStoreUrl {
        self.inner.object_store_url()
    }
}
