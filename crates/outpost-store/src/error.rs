//! The error of a closure running inside a transaction, and its translation into the port's
//! [`StoreError`]. redb errors stop here: callers only ever see `StoreError`.

use outpost_core::StoreError;

/// A failure inside a transaction: a redb error not yet translated, or a port error (a failed
/// expectation, a corrupt record).
#[derive(Debug)]
pub(crate) enum TxError {
    /// The engine failed.
    Redb(redb::Error),
    /// A port-level outcome, passed through unchanged.
    Store(StoreError),
}

impl From<StoreError> for TxError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

macro_rules! from_redb {
    ($($error:ty),+ $(,)?) => {
        $(
            impl From<$error> for TxError {
                fn from(error: $error) -> Self {
                    Self::Redb(error.into())
                }
            }
        )+
    };
}

from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
);

impl From<TxError> for StoreError {
    fn from(error: TxError) -> Self {
        match error {
            TxError::Store(error) => error,
            TxError::Redb(error) => translate(&error),
        }
    }
}

/// Classifies a redb error. Its message names tables and sizes, never record contents.
pub(crate) fn translate(error: &redb::Error) -> StoreError {
    use redb::Error;
    let message = error.to_string();
    match error {
        Error::Io(_) | Error::PreviousIo | Error::DatabaseClosed | Error::DatabaseAlreadyOpen => {
            StoreError::Unavailable(message)
        }
        Error::Corrupted(_) => StoreError::Corrupt(message),
        _ => StoreError::Backend(message),
    }
}

/// Translates the failure of a blocking task (a panic, or the runtime shutting down).
pub(crate) fn from_join_error(error: &tokio::task::JoinError) -> StoreError {
    if error.is_cancelled() {
        StoreError::Unavailable("the storage task was cancelled (runtime shutting down)".into())
    } else {
        // The panic payload is not included: it could quote whatever the task was handling.
        StoreError::Backend("the storage task panicked".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_unavailable_and_corruption_is_corrupt() {
        let io = TxError::from(redb::StorageError::Io(std::io::Error::other("disk gone")));
        assert!(
            matches!(StoreError::from(io), StoreError::Unavailable(message) if message.contains("disk gone"))
        );
        let corrupt = TxError::from(redb::StorageError::Corrupted("bad page".into()));
        assert!(matches!(StoreError::from(corrupt), StoreError::Corrupt(_)));
        let missing = TxError::from(redb::TableError::TableDoesNotExist("devices".into()));
        assert!(
            matches!(StoreError::from(missing), StoreError::Backend(message) if message.contains("devices"))
        );
    }

    #[test]
    fn port_errors_pass_through() {
        assert!(matches!(
            StoreError::from(TxError::from(StoreError::Conflict)),
            StoreError::Conflict
        ));
    }
}
