//! [`EmbeddedStore`]: the redb database, how it is opened, and how transactions run off the
//! async runtime.

use std::path::Path;
use std::sync::Arc;

use outpost_core::StoreError;
use redb::backends::InMemoryBackend;
use redb::{Database, ReadTransaction, ReadableDatabase as _, ReadableTable as _, WriteTransaction};

use crate::error::{TxError, from_join_error};
use crate::group_commit::GroupCommitter;
use crate::tables::{DEVICE_COUNTS, DEVICES, HUBS, META, MODULES, SCHEMA_VERSION, SCHEMA_VERSION_KEY};

/// Outpost's storage on one embedded redb database: hubs, devices, modules and their twins.
///
/// Cheap to clone (the database is shared). Every committed write is durable
/// (redb's `Durability::Immediate`). Calls run on tokio's blocking pool, so they need a tokio
/// runtime.
///
/// # Cancel safety
/// Dropping a call's future does not stop its transaction: a cancelled write may still commit.
#[derive(Clone, Debug)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    committer: Arc<GroupCommitter>,
}

impl EmbeddedStore {
    /// Opens the database file at `path`, creating it (and its tables) when missing.
    ///
    /// Blocks on file I/O: call it at startup or from a blocking task.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the file cannot be opened or another process has it
    /// open, [`StoreError::Corrupt`] when it is not a valid database, [`StoreError::Backend`]
    /// when it was written by an incompatible version.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(TxError::from)?;
        Self::prepare(db)
    }

    /// Returns a fresh store that lives in memory only (tests, ephemeral hubs).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when redb cannot initialize the database.
    pub fn in_memory() -> Result<Self, StoreError> {
        let db = Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .map_err(TxError::from)?;
        Self::prepare(db)
    }

    /// Creates the tables and checks the layout version, so that read transactions always find
    /// every table.
    fn prepare(db: Database) -> Result<Self, StoreError> {
        let tx = db.begin_write().map_err(TxError::from)?;
        let prepared = (|| -> Result<(), TxError> {
            let mut meta = tx.open_table(META)?;
            let version = meta.get(SCHEMA_VERSION_KEY)?.map(|guard| guard.value());
            match version {
                None => {
                    meta.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION)?;
                }
                Some(SCHEMA_VERSION) => {}
                Some(other) => {
                    return Err(StoreError::Backend(format!(
                        "the database has layout version {other}; this build reads version {SCHEMA_VERSION}"
                    ))
                    .into());
                }
            }
            tx.open_table(HUBS)?;
            tx.open_table(DEVICES)?;
            tx.open_table(MODULES)?;
            tx.open_table(DEVICE_COUNTS)?;
            Ok(())
        })();
        finish(tx, prepared)?;
        let db = Arc::new(db);
        let committer = Arc::new(GroupCommitter::start(Arc::clone(&db))?);
        Ok(Self { db, committer })
    }

    /// Runs `work` in a read transaction (a consistent snapshot) on the blocking pool.
    pub(crate) async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> Result<T, TxError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        let task = tokio::task::spawn_blocking(move || {
            let tx = db.begin_read()?;
            work(&tx)
        });
        Ok(task.await.map_err(|error| from_join_error(&error))??)
    }

    /// Runs `work` in a write transaction on the writer thread, group-committed with the writes
    /// queued beside it (`group_commit`); resolves once durable. All or nothing: when `work`
    /// fails, nothing it wrote remains. `work` may run more than once (a batch that fails is
    /// replayed call by call), so it must not consume what it captures.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&WriteTransaction) -> Result<T, TxError> + Send + 'static,
    {
        self.committer.write(work).await
    }

    /// Returns the database, for tests that tamper with stored bytes.
    #[cfg(test)]
    pub(crate) fn database(&self) -> &Database {
        &self.db
    }
}

/// Commits `tx` when `outcome` is a success, aborts it otherwise.
fn finish<T>(tx: WriteTransaction, outcome: Result<T, TxError>) -> Result<T, TxError> {
    match outcome {
        Ok(value) => {
            tx.commit()?;
            Ok(value)
        }
        Err(error) => {
            if let Err(abort) = tx.abort() {
                // The original error is what the caller needs; the abort failure is only logged.
                tracing::warn!(error = %abort, "failed to abort a storage transaction");
            }
            Err(error)
        }
    }
}
