//! openraft's storage traits (`RaftLogReader`, `RaftLogStorage`,
//! storage-v2) over [`LogStore`]: range conversion and error mapping at
//! the trait boundary, everything else delegated to the store. The
//! durability rules they rely on are `store.rs`'s ("# Correctness").

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, LogState, OptionalSend, RaftLogReader, RaftTypeConfig, StorageError,
    StorageIOError, Vote,
};

use crate::error::Error;
use crate::store::{LogReader, LogStore};

/// Converts a range of any bound kind to `[start, end)`.
fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e.saturating_add(1),
        Bound::Excluded(e) => *e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

fn read_err<NID: openraft::NodeId>(e: Error) -> StorageError<NID> {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_err<NID: openraft::NodeId>(e: Error) -> StorageError<NID> {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

impl<C> RaftLogReader<C> for LogReader<C>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        let (start, end) = bounds(&range);
        self.inner.read(start, end).map_err(read_err)
    }
}

impl<C> RaftLogReader<C> for LogStore<C>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        let (start, end) = bounds(&range);
        self.inner.read(start, end).map_err(read_err)
    }
}

/// # Correctness
///
/// See the module docs: callbacks complete only after the fsync covering
/// their entries; vote, committed and truncate are durable before they
/// return; purge persists `last_purged` before deleting anything.
impl<C> RaftLogStorage<C> for LogStore<C>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
{
    type LogReader = LogReader<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<C::NodeId>> {
        self.log_state().map_err(read_err)
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            inner: Arc::clone(&self.inner),
        }
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let vote = vote.clone();
        self.inner
            .save_meta(|m| m.vote = Some(vote))
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        self.vote()
            .map_err(|e| StorageIOError::read_vote(AnyError::new(&e)).into())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<C::NodeId>>,
    ) -> Result<(), StorageError<C::NodeId>> {
        // The committed index is a hint (openraft re-applies up to it at
        // start; the leader re-establishes it anyway), so it is not worth an
        // fsync and a rename per commit: keep it in memory, carry it in the
        // next durable meta write, and leave an unsynced hint file that a
        // torn write can only make unreadable, never wrong.
        let mut state = self.inner.lock().map_err(write_err)?;
        if committed > state.meta.committed {
            state.hint.store(&self.inner.dir, committed.as_ref());
        }
        state.meta.committed = committed;
        Ok(())
    }

    async fn read_committed(
        &mut self,
    ) -> Result<Option<LogId<C::NodeId>>, StorageError<C::NodeId>> {
        let state = self.inner.lock().map_err(read_err)?;
        Ok(state.meta.committed.clone())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> Result<(), StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<C>> = entries.into_iter().collect();
        self.inner
            .append(entries, Box::new(move |r| callback.log_io_completed(r)))
            .map_err(write_err)
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        self.inner.truncate(log_id.index).map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        self.inner.purge(log_id).map_err(write_err)
    }
}
