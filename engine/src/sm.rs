//! The raft state machine: applies committed entries to the views, builds
//! and installs snapshots.
//!
//! # Correctness
//! - Each entry is applied in one fjall batch that also records
//!   `last_applied`, so the views are never ahead of or torn against what was
//!   applied; after a crash openraft re-applies the committed log after
//!   `last_applied`.
//! - A snapshot is fsynced (and the views persisted) before openraft learns
//!   of it, so the log is never purged past what the views can recover.
//! - Watches fire only after the batch is committed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{
    LogId, OptionalSend, RaftTypeConfig, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};

use crate::apply::apply_entry;
use crate::command::{Command, Response};
use crate::raft::{RaftNode, TypeConfig};
use crate::snapshot;
use crate::views::Views;
use crate::watch::Watch;

type StorageResult<T> = Result<T, StorageError<u64>>;

/// State shared by the state machine, its snapshot builders and the engine.
pub(crate) struct Shared {
    /// The views.
    pub views: Views,
    /// The watch hub fired after each apply.
    pub watch: Arc<Watch>,
    /// Where snapshot files live.
    pub snap_dir: PathBuf,
    /// Index of the last applied entry (for status and `?consistent`).
    pub applied: AtomicU64,
    /// Counter for unique snapshot ids and incoming file names.
    pub seq: AtomicU64,
    /// Commands applied since the last snapshot trigger: a batch entry
    /// carries up to 1,024, so raft's own entry count alone would let the
    /// log grow for millions of writes (see `engine::snapshot_trigger`).
    pub commands_since_snapshot: AtomicU64,
    /// Keys in a lock-delay window (a session holding them was invalidated)
    /// and when it ends, on this server's clock. Not replicated state: like
    /// Consul, the window is measured where the invalidation is applied and
    /// checked by the leader before it proposes an acquire.
    pub lock_delays: Mutex<HashMap<String, Instant>>,
    /// What recent entries changed (`/v1/event-stream`).
    pub feed: crate::feed::Feed,
}

impl Shared {
    /// Start lock-delay windows.
    fn start_lock_delays(&self, delays: &[(String, u64)]) {
        if delays.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut map = self
            .lock_delays
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|_, until| *until > now);
        for (key, ns) in delays {
            let until = now + Duration::from_nanos(*ns);
            let e = map.entry(key.clone()).or_insert(until);
            *e = (*e).max(until);
        }
    }

    /// The time left in `key`'s lock-delay window, if any.
    pub fn lock_delay_left(&self, key: &str) -> Option<Duration> {
        let map = self
            .lock_delays
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let left = map.get(key)?.checked_duration_since(Instant::now())?;
        (!left.is_zero()).then_some(left)
    }
}

/// The state machine handed to openraft.
pub(crate) struct StateMachine {
    shared: Arc<Shared>,
    /// The file being received from the leader, if any.
    receiving: Option<PathBuf>,
}

impl StateMachine {
    pub fn new(shared: Arc<Shared>) -> StateMachine {
        StateMachine {
            shared,
            receiving: None,
        }
    }
}

fn write_err(e: &crate::Error) -> StorageError<u64> {
    StorageIOError::write_state_machine(e).into()
}

fn snap_err(e: &crate::Error) -> StorageError<u64> {
    StorageIOError::read_snapshot(None, e).into()
}

/// Builds snapshots from a consistent fjall snapshot.
pub(crate) struct SnapshotBuilder {
    shared: Arc<Shared>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let shared = self.shared.clone();
        let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
        let built = tokio::task::spawn_blocking(move || -> crate::Result<_> {
            // Persist the views first: once openraft has this snapshot it may
            // purge the log up to it, and replay must never need those entries.
            shared.views.db.persist(fjall::PersistMode::SyncAll)?;
            snapshot::build(&shared.views, &shared.snap_dir, seq)
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let (meta, path) = built.map_err(|e| write_err(&e))?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<u64>>, StoredMembership<u64, RaftNode>)> {
        self.shared
            .views
            .applied_state()
            .map_err(|e| StorageIOError::read_state_machine(&e).into())
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Response>>
    where
        I: IntoIterator<Item = <TypeConfig as RaftTypeConfig>::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        for entry in entries {
            if let openraft::EntryPayload::Normal(Command::RestoreCommit {
                id,
                chunks,
                records,
                max_index,
            }) = &entry.payload
            {
                // Many batches of file I/O: off the async runtime.
                let shared = self.shared.clone();
                let (log_id, id, chunks, records, max_index) =
                    (entry.log_id, id.clone(), *chunks, *records, *max_index);
                let (response, replaced) = tokio::task::spawn_blocking(move || {
                    crate::backup::restore::commit(
                        &shared.views,
                        log_id,
                        &id,
                        chunks,
                        records,
                        max_index,
                    )
                })
                .await
                .map_err(|e| StorageIOError::write_state_machine(&e))?
                .map_err(|e| write_err(&e))?;
                self.shared
                    .applied
                    .store(entry.log_id.index, Ordering::Release);
                if replaced {
                    self.shared.watch.fire_all();
                    let index = self.shared.views.index_of(entry.log_id.index);
                    self.shared.feed.push(index, Vec::new(), true);
                }
                out.push(response);
                continue;
            }
            let span = tracing::trace_span!("apply", index = entry.log_id.index);
            let _enter = span.enter();
            let started = std::time::Instant::now();
            let (response, effects) =
                apply_entry(&self.shared.views, &entry).map_err(|e| write_err(&e))?;
            // muster's `muster.fsm.apply`: one entry into the views (ms).
            muster_metrics::timing!("muster.fsm.apply", muster_metrics::ms(started.elapsed()));
            let commands = match &entry.payload {
                openraft::EntryPayload::Normal(Command::Batch { commands }) => commands.len(),
                openraft::EntryPayload::Normal(_) => 1,
                _ => 0,
            };
            self.shared
                .commands_since_snapshot
                .fetch_add(commands as u64, Ordering::Relaxed);
            self.shared
                .applied
                .store(entry.log_id.index, Ordering::Release);
            self.shared.start_lock_delays(&effects.lock_delays);
            self.shared.watch.fire(&effects.keys);
            self.shared.feed.push(effects.index, effects.changes, false);
            out.push(response);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            shared: self.shared.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<tokio::fs::File>> {
        let seq = self.shared.seq.fetch_add(1, Ordering::Relaxed);
        tokio::fs::create_dir_all(&self.shared.snap_dir)
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let path = self.shared.snap_dir.join(format!("incoming-{seq}.tmp"));
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        self.receiving = Some(path);
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, RaftNode>,
        snapshot: Box<tokio::fs::File>,
    ) -> StorageResult<()> {
        let mut file = snapshot.into_std().await;
        let shared = self.shared.clone();
        let incoming = self.receiving.take();
        let final_name = format!(
            "{:020}-{}.snap",
            meta.last_log_id.map(|l| l.index).unwrap_or(0),
            meta.snapshot_id
        );
        let installed = tokio::task::spawn_blocking(move || -> crate::Result<_> {
            file.sync_all()
                .map_err(|e| crate::Error::io("fsync received snapshot", e))?;
            let meta = snapshot::install(&shared.views, &mut file)?;
            if let Some(path) = incoming {
                let dest = shared.snap_dir.join(final_name);
                std::fs::rename(&path, &dest)
                    .map_err(|e| crate::Error::io("keep received snapshot", e))?;
                snapshot::sync_dir(&shared.snap_dir)?;
            }
            Ok(meta)
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let installed = installed.map_err(|e| write_err(&e))?;
        let installed_at = installed.last_log_id.map(|l| l.index).unwrap_or(0);
        self.shared.applied.store(installed_at, Ordering::Release);
        self.shared.watch.fire_all();
        let index = self.shared.views.index_of(installed_at);
        self.shared.feed.push(index, Vec::new(), true);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let Some(path) = snapshot::latest(&self.shared.snap_dir).map_err(|e| snap_err(&e))? else {
            return Ok(None);
        };
        let meta = snapshot::read_meta(&path).map_err(|e| snap_err(&e))?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(file),
        }))
    }
}
