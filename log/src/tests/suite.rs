//! openraft's own storage test suite, run on [`LogStore`] with a minimal
//! in-memory state machine.
#![expect(
    clippy::result_large_err,
    reason = "openraft's StorageError is the error type of the traits under test"
)]

use std::io::Cursor;
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    AnyError, BasicNode, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use tempfile::TempDir;

use super::{TestConfig, TestEntry};
use crate::{LogOptions, LogStore};

type SErr = StorageError<u64>;

/// State of the in-memory state machine.
#[derive(Default)]
struct SmState {
    /// Last applied log id.
    last_applied: Option<LogId<u64>>,
    /// Last applied membership.
    membership: StoredMembership<u64, BasicNode>,
    /// Applied requests, in order.
    data: Vec<String>,
    /// The current snapshot: meta and bytes.
    snapshot: Option<(SnapshotMeta<u64, BasicNode>, Vec<u8>)>,
    /// Counter for snapshot ids.
    snapshots_built: u64,
}

/// A minimal state machine: a list of applied requests.
#[derive(Clone, Default)]
pub struct MemSm {
    /// Shared with its snapshot builders.
    state: Arc<Mutex<SmState>>,
}

fn sm_err(e: impl std::fmt::Display) -> SErr {
    StorageIOError::write_state_machine(AnyError::error(e.to_string())).into()
}

impl MemSm {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, SmState>, SErr> {
        self.state.lock().map_err(sm_err)
    }
}

impl RaftSnapshotBuilder<TestConfig> for MemSm {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TestConfig>, SErr> {
        let mut st = self.lock()?;
        let bytes = rmp_serde::to_vec_named(&st.data).map_err(sm_err)?;
        st.snapshots_built += 1;
        let meta = SnapshotMeta {
            last_log_id: st.last_applied,
            last_membership: st.membership.clone(),
            snapshot_id: format!("snap-{}", st.snapshots_built),
        };
        st.snapshot = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TestConfig> for MemSm {
    type SnapshotBuilder = MemSm;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), SErr> {
        let st = self.lock()?;
        Ok((st.last_applied, st.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<String>, SErr>
    where
        I: IntoIterator<Item = TestEntry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut st = self.lock()?;
        let mut replies = Vec::new();
        for e in entries {
            st.last_applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(req) => st.data.push(req),
                EntryPayload::Membership(m) => {
                    st.membership = StoredMembership::new(Some(e.log_id), m);
                }
            }
            replies.push(String::new());
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, SErr> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), SErr> {
        let bytes = snapshot.into_inner();
        let data: Vec<String> = rmp_serde::from_slice(&bytes).map_err(sm_err)?;
        let mut st = self.lock()?;
        st.data = data;
        st.last_applied = meta.last_log_id;
        st.membership = meta.last_membership.clone();
        st.snapshot = Some((meta.clone(), bytes));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TestConfig>>, SErr> {
        let st = self.lock()?;
        Ok(st.snapshot.as_ref().map(|(meta, bytes)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(bytes.clone())),
        }))
    }
}

/// Builds a store in a fresh tempdir (kept alive as the guard).
struct Builder {
    /// Options for every store built.
    options: LogOptions,
}

impl StoreBuilder<TestConfig, LogStore<TestConfig>, MemSm, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore<TestConfig>, MemSm), SErr> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        let store = LogStore::open_with(dir.path().join("log"), self.options)
            .map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        Ok((dir, store, MemSm::default()))
    }
}

#[test]
fn openraft_suite_default_options() -> Result<(), SErr> {
    Suite::test_all(Builder {
        options: LogOptions::default(),
    })
}

#[test]
fn openraft_suite_tiny_segments() -> Result<(), SErr> {
    // Every entry in its own segment: rotation, purge and truncate across files.
    Suite::test_all(Builder {
        options: LogOptions::with_segment_size(1),
    })
}
