//! Group commit for the redb database: one writer thread runs the write transactions that
//! arrive together in one redb transaction and commits them with one fsync.
//!
//! redb runs one write transaction at a time and a durable commit costs an fsync (≈ 0.3 ms on
//! the development VM, ≈ 4 ms on a busy disk), so one transaction per call capped durable twin
//! patches at ≈ 3–4 k/s whatever the number of devices. Taking everything queued while the
//! previous commit synced lets batches grow with load (docs/benchmarks/results.md).
//!
//! Each call's closure keeps its all-or-nothing meaning: when one fails, the shared transaction
//! is aborted and every closure of the batch runs again in a transaction of its own, in the
//! same order, so the outcome equals running them one by one.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use outpost_core::StoreError;
use redb::{Database, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use crate::error::{TxError, translate};

/// Most write calls sharing one transaction.
const MAX_BATCH: usize = 512;
/// Write calls waiting for the writer before callers wait to queue.
const QUEUE_DEPTH: usize = 4096;
/// Most times the writer yields while writes keep arriving before it takes a batch.
const MAX_GATHER_YIELDS: usize = 4;

/// One queued write call, type-erased.
trait Job: Send {
    /// Runs the call's closure in `tx`; `false` when it failed (or panicked).
    fn run(&mut self, tx: &WriteTransaction) -> bool;
    /// Answers the caller; `commit` is the outcome of committing the transaction it ran in.
    fn complete(self: Box<Self>, commit: Result<(), StoreError>);
}

struct TypedJob<T, F> {
    work: F,
    outcome: Option<Result<T, TxError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for TypedJob<T, F>
where
    T: Send,
    F: FnMut(&WriteTransaction) -> Result<T, TxError> + Send,
{
    fn run(&mut self, tx: &WriteTransaction) -> bool {
        let work = &mut self.work;
        match std::panic::catch_unwind(AssertUnwindSafe(|| work(tx))) {
            Ok(outcome) => {
                let ok = outcome.is_ok();
                self.outcome = Some(outcome);
                ok
            }
            Err(_) => {
                // The payload is not logged: it could quote whatever the closure was handling.
                let panicked = StoreError::Backend("the storage task panicked".into());
                self.outcome = Some(Err(panicked.into()));
                false
            }
        }
    }

    fn complete(self: Box<Self>, commit: Result<(), StoreError>) {
        let answer = match (self.outcome, commit) {
            (Some(Err(error)), _) => Err(error.into()),
            (Some(Ok(_)), Err(error)) => Err(error),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (None, Err(error)) => Err(error),
            (None, Ok(())) => Err(StoreError::Backend("a write was never run".into())),
        };
        // The caller may have stopped waiting; the write still happened (see `EmbeddedStore`).
        let _ = self.reply.send(answer);
    }
}

/// The handle to the writer thread; dropping the last one stops the thread and waits for it,
/// so the database file is closed when the store is gone.
pub(crate) struct GroupCommitter {
    sender: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for GroupCommitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommitter").finish_non_exhaustive()
    }
}

impl GroupCommitter {
    /// Starts the writer thread of `db`.
    pub(crate) fn start(db: Arc<Database>) -> Result<Self, StoreError> {
        let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("outpost-store-writer".into())
            .spawn(move || writer(&db, receiver))
            .map_err(|error| StoreError::Unavailable(format!("start the storage writer: {error}")))?;
        Ok(Self {
            sender: Some(sender),
            thread: Some(thread),
        })
    }

    /// Queues `work` and waits for the commit of the transaction it ran in.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&WriteTransaction) -> Result<T, TxError> + Send + 'static,
    {
        let stopped = || StoreError::Unavailable("the storage writer has stopped".into());
        let sender = self.sender.as_ref().ok_or_else(stopped)?;
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(TypedJob {
            work,
            outcome: None,
            reply,
        });
        sender.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl Drop for GroupCommitter {
    fn drop(&mut self) {
        self.sender.take();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the storage writer thread panicked");
        }
    }
}

fn writer(db: &Database, mut receiver: mpsc::Receiver<Box<dyn Job>>) {
    while let Some(first) = receiver.blocking_recv() {
        gather(&receiver);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if batch.len() == 1 {
            batch.into_iter().for_each(|job| run_alone(db, job));
        } else {
            run_together(db, batch);
        }
    }
}

/// Gives the threads that are about to queue writes a chance before the batch is taken: woken
/// by the first job, the writer would otherwise take just it (on a busy core the scheduler runs
/// a freshly woken thread at once), commit, and take only what queued during that one sync —
/// durable twin patches from 100 devices went out ≈ 3 to a commit, and each commit's fsync and
/// page writes cost more CPU than the patches in it. `sched_yield` lets runnable threads on this
/// core go first; it returns at once when none is waiting (an idle core, a lone write), and the
/// gather ends as soon as a yield brings nothing new.
fn gather(receiver: &mpsc::Receiver<Box<dyn Job>>) {
    let mut queued = receiver.len();
    for _ in 0..MAX_GATHER_YIELDS {
        std::thread::yield_now();
        let now = receiver.len();
        if now == queued {
            break;
        }
        queued = now;
    }
}

/// Runs `batch` in one transaction; on any failure, runs each job again on its own.
fn run_together(db: &Database, mut batch: Vec<Box<dyn Job>>) {
    let tx = match db.begin_write() {
        Ok(tx) => tx,
        Err(error) => return fail_all(batch, &error.into()),
    };
    if batch.iter_mut().all(|job| job.run(&tx)) {
        match tx.commit() {
            Ok(()) => batch.into_iter().for_each(|job| job.complete(Ok(()))),
            Err(error) => fail_all(batch, &error.into()),
        }
        return;
    }
    if let Err(error) = tx.abort() {
        tracing::warn!(error = %error, "failed to abort a storage transaction");
    }
    for job in batch {
        run_alone(db, job);
    }
}

/// Runs one job in a transaction of its own: committed when it succeeds, aborted otherwise.
fn run_alone(db: &Database, mut job: Box<dyn Job>) {
    let tx = match db.begin_write() {
        Ok(tx) => tx,
        Err(error) => return job.complete(Err(StoreError::from(TxError::from(error)))),
    };
    if job.run(&tx) {
        job.complete(
            tx.commit()
                .map_err(|error| StoreError::from(TxError::from(error))),
        );
    } else {
        if let Err(error) = tx.abort() {
            tracing::warn!(error = %error, "failed to abort a storage transaction");
        }
        job.complete(Ok(()));
    }
}

fn fail_all(batch: Vec<Box<dyn Job>>, error: &redb::Error) {
    for job in batch {
        job.complete(Err(translate(error)));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use redb::{ReadableDatabase as _, TableDefinition};

    use crate::EmbeddedStore;
    use outpost_core::StoreError;

    const NUMBERS: TableDefinition<u64, u64> = TableDefinition::new("group_commit_test");

    fn stored(store: &EmbeddedStore, key: u64) -> Option<u64> {
        let tx = store.database().begin_read().unwrap();
        let Ok(table) = tx.open_table(NUMBERS) else {
            return None;
        };
        table.get(key).unwrap().map(|v| v.value())
    }

    /// Concurrent calls share transactions, yet a failing call leaves nothing behind and the
    /// others commit, as if each ran alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn failures_leave_nothing_and_do_not_affect_neighbours() {
        let store = EmbeddedStore::in_memory().unwrap();
        let calls = (0..400u64).map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .write(move |tx| {
                        tx.open_table(NUMBERS)?.insert(i, i * 10)?;
                        if i.is_multiple_of(3) {
                            return Err(StoreError::Conflict.into());
                        }
                        Ok(i)
                    })
                    .await
            })
        });
        let outcomes = futures_join(calls).await;
        for (i, outcome) in outcomes.into_iter().enumerate() {
            let i = i as u64;
            if i.is_multiple_of(3) {
                assert!(
                    matches!(outcome, Err(StoreError::Conflict)),
                    "call {i}: {outcome:?}"
                );
                assert_eq!(stored(&store, i), None, "failed call {i} left a write");
            } else {
                assert_eq!(outcome.unwrap(), i);
                assert_eq!(stored(&store, i), Some(i * 10));
            }
        }
    }

    /// A panicking closure fails its own call only.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_fails_only_its_call() {
        let store = EmbeddedStore::in_memory().unwrap();
        let calls = (0..50u64).map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .write(move |tx| {
                        assert!(i != 7, "closure 7 panics on purpose");
                        tx.open_table(NUMBERS)?.insert(i, i)?;
                        Ok(())
                    })
                    .await
            })
        });
        let outcomes = futures_join(calls).await;
        for (i, outcome) in outcomes.into_iter().enumerate() {
            if i == 7 {
                assert!(matches!(outcome, Err(StoreError::Backend(_))), "{outcome:?}");
            } else {
                outcome.unwrap();
            }
        }
        // The writer survived.
        store
            .write(|tx| Ok(tx.open_table(NUMBERS)?.insert(1000, 1).map(|_| ())?))
            .await
            .unwrap();
        assert_eq!(stored(&store, 1000), Some(1));
    }

    /// Dropping the store stops the writer and closes the file, so it can be opened again at once.
    #[tokio::test]
    async fn dropping_the_store_closes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outpost.redb");
        let store = EmbeddedStore::open(&path).unwrap();
        store
            .write(|tx| Ok(tx.open_table(NUMBERS)?.insert(1, 2).map(|_| ())?))
            .await
            .unwrap();
        drop(store);
        let reopened = EmbeddedStore::open(&path).unwrap();
        assert_eq!(stored(&reopened, 1), Some(2));
    }

    async fn futures_join<T: std::fmt::Debug>(
        tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for task in tasks.collect::<Vec<_>>() {
            out.push(task.await.unwrap());
        }
        out
    }
}
