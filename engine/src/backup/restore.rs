//! Restoring a snapshot into a running cluster, through the log: the
//! records go in as [`Command::RestoreChunk`]s (about 1 MiB each) that every
//! server stages in its `restore_staging` keyspace, then one
//! [`Command::RestoreCommit`] replaces the whole state with them on every
//! server. Raft orders and replicates it like any write; a server that
//! catches up later replays the same entries (or installs a raft snapshot
//! that has the staging or the result in it).
//!
//! # Correctness
//! - Readers never see half a restore: the commit holds the views' gate
//!   (no read view opens while the state is replaced) and the staged
//!   records are out of every query's sight until then.
//! - Memory stays bounded: chunks are proposed one at a time from a
//!   stream, and the commit moves rows in batches of [`BATCH`].
//! - A crash in the middle of the commit leaves `installing` set: at open
//!   the views are rebuilt from the newest raft snapshot (or from nothing)
//!   and the log, which replays the chunks and the commit.
//! - Indexes never go backwards: the commit's index is raised past the
//!   archive's (by raising the index base, so later writes follow it), every
//!   table and finer index is set to it, and no read answers below it
//!   (`restored_at`).

use std::sync::mpsc;

use serde_bytes::ByteBuf;

use super::state::{decode_record, Record, StateReader};
use crate::command::{Command, Response};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::stage::{Ks, Read, Stage};
use crate::tables::{catalog, session};
use crate::views::{
    decode, encode, index_key, Views, META_INDEX_BASE, META_INSTALLING, META_LAST_APPLIED,
    META_RESTORE, META_RESTORED_AT, NODE_INDEX_PREFIX, SERVICE_INDEX_PREFIX,
};
use crate::watch::Table;

/// Rows per fjall batch while committing.
const BATCH: usize = 8192;
/// Encoded bytes of records per chunk (about).
const CHUNK_BYTES: usize = 1 << 20;

/// The staged restore: `(id, next seq, records staged)`.
type Staged = (String, u32, u64);

fn staged(r: &(impl Read + ?Sized)) -> Result<Option<Staged>> {
    match r.get(Ks::Meta, META_RESTORE)? {
        Some(v) => Ok(Some(decode(&v, "restore")?)),
        None => Ok(None),
    }
}

fn staging_key(seq: u32, n: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(8);
    k.extend_from_slice(&seq.to_be_bytes());
    k.extend_from_slice(&n.to_be_bytes());
    k
}

/// Apply a [`Command::RestoreChunk`]: stage its records. Piece 0 drops
/// whatever an earlier, unfinished restore staged; a piece out of order is
/// refused (the restore must start again).
pub(crate) fn stage_chunk(
    st: &mut Stage,
    id: &str,
    seq: u32,
    records: &[ByteBuf],
) -> Result<Response> {
    let mut count = 0u64;
    if seq == 0 {
        let mut old = Vec::new();
        st.scan(Ks::Staging, b"", &mut |k, _| {
            old.push(k.to_vec());
            Ok(true)
        })?;
        for k in old {
            st.remove(Ks::Staging, k);
        }
    } else {
        match staged(st)? {
            Some((staged_id, next, n)) if staged_id == id && next == seq => count = n,
            _ => {
                return Ok(Response::Rejected(format!(
                    "restore {id}: piece {seq} is out of order; start the restore again"
                )))
            }
        }
    }
    for (n, record) in records.iter().enumerate() {
        let n = u32::try_from(n).map_err(|_| Error::Restore("restore piece too large".into()))?;
        st.insert(Ks::Staging, staging_key(seq, n), record.to_vec());
    }
    count += records.len() as u64;
    st.insert(
        Ks::Meta,
        META_RESTORE,
        encode(&(id.to_string(), seq + 1, count), "restore")?,
    );
    Ok(Response::None)
}

/// A batch that commits itself every [`BATCH`] writes.
struct Writer<'v> {
    views: &'v Views,
    batch: fjall::OwnedWriteBatch,
}

impl<'v> Writer<'v> {
    fn new(views: &'v Views) -> Writer<'v> {
        Writer {
            views,
            batch: views.db.batch(),
        }
    }

    fn insert(&mut self, ks: Ks, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Result<()> {
        self.batch
            .insert(self.views.ks(ks), key.into(), value.into());
        self.flush_if_full()
    }

    fn remove(&mut self, ks: Ks, key: impl Into<Vec<u8>>) -> Result<()> {
        self.batch.remove(self.views.ks(ks), key.into());
        self.flush_if_full()
    }

    fn flush_if_full(&mut self) -> Result<()> {
        if self.batch.len() >= BATCH {
            std::mem::replace(&mut self.batch, self.views.db.batch()).commit()?;
            self.views.pace_bulk_write();
        }
        Ok(())
    }

    fn finish(self) -> fjall::OwnedWriteBatch {
        self.batch
    }
}

/// Remove every key of `ks` under `prefix` (read live: the gate is held),
/// [`BATCH`] at a time, never holding more keys than that.
fn wipe(views: &Views, ks: Ks, prefix: &[u8]) -> Result<()> {
    loop {
        let mut batch = views.db.batch();
        for item in views.ks(ks).prefix(prefix).take(BATCH) {
            batch.remove(views.ks(ks), item.key()?);
        }
        if batch.is_empty() {
            return Ok(());
        }
        batch.commit()?;
        views.pace_bulk_write();
    }
}

/// The rows one record becomes, with the lookups derived from it.
fn write_record(w: &mut Writer<'_>, record: Record, finer: &mut Vec<String>) -> Result<()> {
    match record {
        Record::Node(n) => {
            let lower = n.node.to_lowercase();
            w.insert(Ks::Nodes, lower, encode(&n, "node")?)
        }
        Record::Service(s) => {
            let lower = s.node.to_lowercase();
            w.insert(
                Ks::ServiceNames,
                catalog::name_key(&s.service, &lower, &s.id),
                Vec::new(),
            )?;
            w.insert(
                Ks::Services,
                catalog::pair_key(&lower, &s.id),
                encode(&s, "service")?,
            )
        }
        Record::Check(c) => {
            let lower = c.node.to_lowercase();
            w.insert(
                Ks::Checks,
                catalog::pair_key(&lower, &c.check_id),
                encode(&c, "check")?,
            )
        }
        Record::Kv(e) => {
            if let Some(holder) = &e.session {
                w.insert(
                    Ks::SessionIndex,
                    session::lock_key(holder, &e.key),
                    Vec::new(),
                )?;
            }
            w.insert(Ks::Kv, e.key.clone(), encode(&e, "kv entry")?)
        }
        Record::Tombstone(t) => w.insert(Ks::Tombstones, t.key, t.index.to_be_bytes().to_vec()),
        Record::Session(s) => {
            for (key, value) in session::lookups(&s) {
                w.insert(Ks::SessionIndex, key, value)?;
            }
            w.insert(Ks::Sessions, s.id.clone(), encode(&s, "session")?)
        }
        Record::Object(o) => {
            if let Some(lookup) = crate::tables::objects::session_lookup(&o) {
                w.insert(Ks::SessionIndex, lookup, Vec::new())?;
            }
            let mut key = o.kind.as_bytes().to_vec();
            key.push(0);
            key.extend_from_slice(o.id.as_bytes());
            w.insert(Ks::Objects, key, encode(&o, "stored object")?)
        }
        Record::Index(i) => {
            if i.name.starts_with(SERVICE_INDEX_PREFIX) || i.name.starts_with(NODE_INDEX_PREFIX) {
                finer.push(i.name);
            }
            Ok(())
        }
    }
}

/// Apply a [`Command::RestoreCommit`] at `log_id` (see the module docs);
/// `Ok(true)` when the state was replaced (every watcher must wake).
pub(crate) fn commit(
    views: &Views,
    log_id: openraft::LogId<u64>,
    id: &str,
    chunks: u32,
    records: u64,
    max_index: u64,
) -> Result<(Response, bool)> {
    let applied = encode(&Some(log_id), "last_applied")?;
    let ready = staged(&crate::view::ReadView::new(views))?;
    if ready != Some((id.to_string(), chunks, records)) {
        let mut batch = views.db.batch();
        batch.insert(views.ks(Ks::Meta), META_LAST_APPLIED, applied);
        batch.commit()?;
        return Ok((
            Response::Rejected(format!(
                "restore {id}: not all of it was staged ({ready:?}); start the restore again"
            )),
            false,
        ));
    }
    let _gate = views.replace_gate();
    let mut mark = views.db.batch();
    mark.insert(views.ks(Ks::Meta), META_INSTALLING, Vec::new());
    mark.commit()?;
    // Out with the old state (raft's own meta and the staging stay).
    for ks in [
        Ks::Kv,
        Ks::Tombstones,
        Ks::Nodes,
        Ks::Services,
        Ks::ServiceNames,
        Ks::Checks,
        Ks::Sessions,
        Ks::SessionIndex,
        Ks::Objects,
    ] {
        wipe(views, ks, b"")?;
    }
    for prefix in [
        &b"index/"[..],
        SERVICE_INDEX_PREFIX.as_bytes(),
        NODE_INDEX_PREFIX.as_bytes(),
    ] {
        wipe(views, Ks::Meta, prefix)?;
    }
    let mut w = Writer::new(views);
    // The restore's index: past every index before it and in the archive.
    let before = views.index_of(log_id.index);
    let index = before.max(max_index + 1);
    let base = index - log_id.index;
    // In with the staged records, in order.
    // A fresh iterator per [`BATCH`] records: a long-lived one would keep
    // every memtable it started on in memory until the end.
    let mut finer = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let staging = views.ks(Ks::Staging);
        let range = match &after {
            None => staging.range::<Vec<u8>, _>(..),
            Some(k) => staging.range((
                std::ops::Bound::Excluded(k.clone()),
                std::ops::Bound::Unbounded,
            )),
        };
        let mut n = 0;
        for item in range.take(BATCH) {
            let (k, v) = item.into_inner()?;
            write_record(&mut w, decode_record(&v)?, &mut finer)?;
            w.remove(Ks::Staging, k.to_vec())?;
            after = Some(k.to_vec());
            n += 1;
        }
        if n == 0 {
            break;
        }
    }
    let mut last = w.finish();
    let meta = views.ks(Ks::Meta);
    for t in [
        Table::Kv,
        Table::Nodes,
        Table::Services,
        Table::Checks,
        Table::Sessions,
        Table::Objects,
    ] {
        last.insert(meta, index_key(t), index.to_be_bytes().to_vec());
    }
    for name in finer {
        last.insert(meta, name.into_bytes(), index.to_be_bytes().to_vec());
    }
    last.insert(meta, META_INDEX_BASE, base.to_be_bytes().to_vec());
    last.insert(meta, META_RESTORED_AT, index.to_be_bytes().to_vec());
    last.remove(meta, META_RESTORE);
    last.insert(meta, META_LAST_APPLIED, applied);
    last.remove(meta, META_INSTALLING);
    last.commit()?;
    views.db.persist(fjall::PersistMode::SyncAll)?;
    views.reload_index_base()?;
    tracing::info!(
        restore = %id,
        records,
        index,
        "snapshot restored"
    );
    Ok((Response::None, true))
}

/// Progress of a restore, for the caller to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreProgress {
    /// Records proposed so far.
    pub records: u64,
    /// Encoded bytes proposed so far.
    pub bytes: u64,
}

impl Engine {
    /// Restore the state stream `reader` (already checked whole by the
    /// caller, e.g. against the archive's SHA-256) into the cluster through
    /// the log; `id` names this restore. Reading runs on a blocking thread
    /// and hands over one chunk at a time, so memory stays about two
    /// chunks. Returns the records restored.
    pub async fn restore_state<R>(
        &self,
        reader: StateReader<R>,
        id: String,
        mut progress: impl FnMut(RestoreProgress) + Send,
    ) -> Result<u64>
    where
        R: std::io::Read + Send + 'static,
    {
        let max_index = reader.header().index;
        let (tx, rx) = mpsc::sync_channel::<Result<Vec<ByteBuf>>>(1);
        let reading = tokio::task::spawn_blocking(move || {
            let mut reader = reader;
            let mut chunk = Vec::new();
            let mut size = 0;
            loop {
                match reader.next_raw() {
                    Ok(Some(raw)) => {
                        size += raw.len();
                        chunk.push(ByteBuf::from(raw.to_vec()));
                        if size >= CHUNK_BYTES {
                            size = 0;
                            if tx.send(Ok(std::mem::take(&mut chunk))).is_err() {
                                return;
                            }
                        }
                    }
                    Ok(None) => {
                        let _ = tx.send(Ok(chunk));
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        let next = || {
            let rx = rx.clone();
            tokio::task::spawn_blocking(move || {
                rx.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .recv()
                    .ok()
            })
        };
        let mut seq = 0u32;
        let mut done = RestoreProgress {
            records: 0,
            bytes: 0,
        };
        loop {
            let chunk = next()
                .await
                .map_err(|e| Error::Restore(format!("restore reader: {e}")))?;
            let Some(chunk) = chunk else { break };
            let chunk = chunk?;
            // Full pieces come at CHUNK_BYTES and over; the one at the end
            // of the stream is smaller (maybe empty).
            let last = chunk.iter().map(|r| r.len()).sum::<usize>() < CHUNK_BYTES;
            done.records += chunk.len() as u64;
            done.bytes += chunk.iter().map(|r| r.len() as u64).sum::<u64>();
            let applied = self
                .propose(Command::RestoreChunk {
                    id: id.clone(),
                    seq,
                    records: chunk,
                })
                .await?;
            if let Response::Rejected(why) = applied.response {
                return Err(Error::Restore(why));
            }
            progress(done);
            seq += 1;
            if last {
                break;
            }
        }
        reading
            .await
            .map_err(|e| Error::Restore(format!("restore reader: {e}")))?;
        let applied = self
            .propose(Command::RestoreCommit {
                id,
                chunks: seq,
                records: done.records,
                max_index,
            })
            .await?;
        match applied.response {
            Response::Rejected(why) => Err(Error::Restore(why)),
            _ => Ok(done.records),
        }
    }
}
