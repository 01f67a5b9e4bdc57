//! [`LogStore`]: the raft log on disk, implementing openraft's
//! `RaftLogStorage` and `RaftLogReader` (storage-v2).
//!
//! It owns the list of live segments, the metadata and the group-commit
//! flusher thread. It knows nothing of what entries mean (no catalog types)
//! and never applies anything: that is the state machine's job.
//!
//! # Correctness
//!
//! - `append` writes frames with one `write_all` (readable at once) and hands
//!   the flush callback to the flusher thread, which drains every waiting
//!   callback, issues one `sync_data` for all of them and only then completes
//!   them: openraft learns an entry is durable only after its fsync.
//! - A rotation fsyncs the old segment and the directory before the first
//!   entry of the new segment is written, so acks always cover whole prefixes.
//! - After a failed fsync (or a failed write) the store is poisoned: the state
//!   of the file is unknown, so every later operation fails.
//! - `truncate` deletes later segments (newest first), shortens the file and
//!   fsyncs both before returning; `purge` persists `last_purged` before any
//!   segment is deleted, so a crash in between is finished by recovery.

use std::fmt::Debug;
use std::fs::{self, File};
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use openraft::{Entry, LogId, LogState, RaftTypeConfig, Vote};

use crate::error::{Error, Result};
use crate::meta::{self, Meta};
use crate::record::{self, Decoded};
use crate::recovery;
use crate::segment::{self, LogOptions, Segment};

/// A completion handed to the flusher: called once the entries are durable.
type Done = Box<dyn FnOnce(io::Result<()>) + Send>;

/// One append waiting for its fsync.
struct FlushJob {
    /// The segment the append wrote to; `None` for an empty append.
    file: Option<Arc<File>>,
    /// Completes the append.
    done: Done,
}

/// State shared with the flusher thread (which must not hold the store).
#[derive(Debug, Default)]
pub(crate) struct FlushShared {
    /// Set after a failed fsync or write; never cleared.
    pub(crate) poisoned: AtomicBool,
    /// Number of `sync_data` calls made by the flusher.
    fsyncs: AtomicU64,
    /// Number of appends handed to the flusher.
    flush_requests: AtomicU64,
    /// Held by tests to stall the flusher after it picked up its first job,
    /// so that a known set of appends waits for one fsync.
    #[cfg(test)]
    pub(crate) gate: Mutex<()>,
}

/// Counters, for tests and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LogStats {
    /// `sync_data` calls issued by the group-commit flusher.
    pub fsyncs: u64,
    /// Appends handed to the flusher. `flush_requests / fsyncs` is the
    /// average group-commit batch.
    pub flush_requests: u64,
}

/// The mutable part of the store, under one mutex.
pub(crate) struct State<C: RaftTypeConfig> {
    /// Live segments in index order. Invariant: contiguous indexes; only the
    /// last one is appended to.
    segments: Vec<Segment>,
    /// Id of the last entry in `segments`, if any.
    last_log_id: Option<LogId<C::NodeId>>,
    /// The durable metadata, as last written.
    pub(crate) meta: Meta<C::NodeId>,
    /// The committed-index hint file.
    pub(crate) hint: meta::CommittedHint,
}

/// Everything the store and its readers share.
pub(crate) struct Inner<C: RaftTypeConfig> {
    /// The log directory.
    pub(crate) dir: PathBuf,
    /// Tunables.
    options: LogOptions,
    /// Segments and metadata.
    state: Mutex<State<C>>,
    /// Poison flag and counters, shared with the flusher.
    pub(crate) flush: Arc<FlushShared>,
    /// Queue to the flusher; `None` only while dropping.
    tx: Option<mpsc::Sender<FlushJob>>,
    /// The flusher thread, joined on drop so no callback is lost.
    flusher: Option<JoinHandle<()>>,
}

/// The durable raft log. See the module docs for the guarantees.
pub struct LogStore<C: RaftTypeConfig> {
    /// Shared with every [`LogReader`].
    pub(crate) inner: Arc<Inner<C>>,
}

/// A cheap read handle on a [`LogStore`], for openraft's replication tasks.
pub struct LogReader<C: RaftTypeConfig> {
    /// Shared with the store.
    pub(crate) inner: Arc<Inner<C>>,
}

impl<C: RaftTypeConfig> Clone for LogReader<C> {
    fn clone(&self) -> Self {
        LogReader {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C: RaftTypeConfig> Debug for LogStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

/// Runs the group-commit loop until the store is dropped.
fn flusher_loop(rx: mpsc::Receiver<FlushJob>, shared: Arc<FlushShared>) {
    while let Ok(first) = rx.recv() {
        #[cfg(test)]
        let _gate = shared.gate.lock();
        let mut jobs = vec![first];
        jobs.extend(rx.try_iter());
        let mut result: io::Result<()> = Ok(());
        if shared.poisoned.load(Ordering::Acquire) {
            result = Err(io::Error::other(Error::Poisoned));
        } else {
            let mut files: Vec<&Arc<File>> = Vec::new();
            for file in jobs.iter().filter_map(|j| j.file.as_ref()) {
                if !files.iter().any(|f| Arc::ptr_eq(f, file)) {
                    files.push(file);
                }
            }
            // muster's `muster.log.fsync` (milliseconds) and how many appends
            // one fsync covered (`muster.log.group_size`).
            muster_metrics::timing!("muster.log.group_size", muster_metrics::size(jobs.len()));
            for file in files {
                shared.fsyncs.fetch_add(1, Ordering::Relaxed);
                let started = std::time::Instant::now();
                let synced = file.sync_data();
                muster_metrics::timing!("muster.log.fsync", muster_metrics::ms(started.elapsed()));
                if let Err(e) = synced {
                    tracing::error!(error = %e, "log fsync failed; poisoning the log store");
                    shared.poisoned.store(true, Ordering::Release);
                    result = Err(e);
                    break;
                }
            }
        }
        for job in jobs {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            };
            (job.done)(r);
        }
    }
}

impl<C> LogStore<C>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
{
    /// Opens (creating if missing) the log in `dir` with default options,
    /// running recovery.
    pub fn open(dir: impl AsRef<Path>) -> Result<LogStore<C>> {
        Self::open_with(dir, LogOptions::default())
    }

    /// Opens (creating if missing) the log in `dir`, running recovery.
    pub fn open_with(dir: impl AsRef<Path>, options: LogOptions) -> Result<LogStore<C>> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let mut meta = meta::load::<C::NodeId>(&dir)?;
        let recovered = recovery::recover::<C::NodeId>(&dir, meta.last_purged.as_ref())?;
        // Use the committed hint only if it names an entry the log still
        // has: a committed entry is never truncated, but an unsynced hint
        // must not claim more than recovery kept.
        if let Some(hint) = meta::load_committed_hint::<C::NodeId>(&dir) {
            let within = recovered
                .last_log_id
                .as_ref()
                .is_some_and(|last| hint.index <= last.index);
            if within && Some(&hint) > meta.committed.as_ref() {
                meta.committed = Some(hint);
            }
        }
        let flush = Arc::new(FlushShared::default());
        let (tx, rx) = mpsc::channel();
        let shared = Arc::clone(&flush);
        let flusher = std::thread::Builder::new()
            .name("muster-log-flush".into())
            .spawn(move || flusher_loop(rx, shared))
            .map_err(|e| Error::io("spawn the log flusher thread", e))?;
        Ok(LogStore {
            inner: Arc::new(Inner {
                dir,
                options,
                state: Mutex::new(State {
                    segments: recovered.segments,
                    last_log_id: recovered.last_log_id,
                    meta,
                    hint: meta::CommittedHint::default(),
                }),
                flush,
                tx: Some(tx),
                flusher: Some(flusher),
            }),
        })
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Index of the last entry, or of the last purged one if the log is
    /// empty after a purge; `None` for a log that never had an entry.
    pub fn last_index(&self) -> Option<u64> {
        let state = self.inner.lock().ok()?;
        state.log_state().last_log_id.map(|id| id.index)
    }

    /// The entries with indexes in `range` that are present (not purged,
    /// not past the end), in order. For offline tools and tests.
    pub fn read_range(&self, range: Range<u64>) -> Result<Vec<Entry<C>>> {
        self.inner.read(range.start, range.end)
    }

    /// Purged and last log ids, as openraft's `get_log_state` reports them.
    pub fn log_state(&self) -> Result<LogState<C>> {
        Ok(self.inner.lock()?.log_state())
    }

    /// The vote last saved.
    pub fn vote(&self) -> Result<Option<Vote<C::NodeId>>> {
        Ok(self.inner.lock()?.meta.vote.clone())
    }

    /// Group-commit counters.
    pub fn stats(&self) -> LogStats {
        LogStats {
            fsyncs: self.inner.flush.fsyncs.load(Ordering::Relaxed),
            flush_requests: self.inner.flush.flush_requests.load(Ordering::Relaxed),
        }
    }

    /// Appends `entries` and calls `done` from the flusher thread once they
    /// are durable (or with the error). The entries are readable as soon as
    /// this returns. This is `RaftLogStorage::append` without openraft's
    /// callback type, which only openraft can construct.
    pub fn append_with<I, F>(&mut self, entries: I, done: F) -> Result<()>
    where
        I: IntoIterator<Item = Entry<C>>,
        F: FnOnce(io::Result<()>) + Send + 'static,
    {
        let entries: Vec<Entry<C>> = entries.into_iter().collect();
        self.inner.append(entries, Box::new(done))
    }

    /// Removes every entry with index >= `index`, durably.
    pub fn truncate_from(&mut self, index: u64) -> Result<()> {
        self.inner.truncate(index)
    }

    /// Marks every entry up to `log_id` purged (durably) and deletes the
    /// segments that hold nothing else.
    pub fn purge_upto(&mut self, log_id: LogId<C::NodeId>) -> Result<()> {
        self.inner.purge(log_id)
    }
}

impl<C: RaftTypeConfig> State<C> {
    /// openraft's view: the last id is the last entry's, or the last purged
    /// one if there is no entry past it.
    fn log_state(&self) -> LogState<C> {
        let purged = self.meta.last_purged.clone();
        let last = match (&self.last_log_id, &purged) {
            (Some(last), Some(p)) if last.index <= p.index => purged.clone(),
            (Some(last), _) => Some(last.clone()),
            (None, _) => purged.clone(),
        };
        LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        }
    }

    /// First index readable: past the purged prefix.
    fn first_readable(&self) -> u64 {
        self.meta.last_purged.as_ref().map_or(0, |p| p.index + 1)
    }
}

/// One contiguous read within a segment, planned under the lock.
struct ReadPlan {
    /// The segment file.
    file: Arc<File>,
    /// Its path, for errors.
    path: PathBuf,
    /// Offset of the first frame.
    offset: u64,
    /// Bytes to read: the frames back to back.
    len: u64,
    /// Index of the first entry.
    first_index: u64,
    /// Number of entries.
    count: u64,
}

impl<C> Inner<C>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
{
    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, State<C>>> {
        if self.flush.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        self.state.lock().map_err(|_| Error::Poisoned)
    }

    /// Poisons the store if `r` is an I/O failure in a mutation: the files
    /// may no longer match the in-memory index.
    fn poison_on_io<T>(&self, r: Result<T>) -> Result<T> {
        if let Err(Error::Io { .. }) = &r {
            tracing::error!("log write failed; poisoning the log store");
            self.flush.poisoned.store(true, Ordering::Release);
        }
        r
    }

    fn plan(state: &State<C>, start: u64, end: u64) -> Vec<ReadPlan> {
        let start = start.max(state.first_readable());
        let mut plans = Vec::new();
        if start >= end {
            return plans;
        }
        for seg in &state.segments {
            let Some(last) = seg.last_index() else {
                continue;
            };
            let lo = start.max(seg.first_index);
            let hi = end.min(last + 1);
            if lo >= hi {
                continue;
            }
            let (Some(a), Some(b)) = (seg.slot(lo), seg.slot(hi - 1)) else {
                continue;
            };
            plans.push(ReadPlan {
                file: Arc::clone(&seg.file),
                path: seg.path.clone(),
                offset: a.offset,
                len: b.offset + u64::from(b.len) - a.offset,
                first_index: lo,
                count: hi - lo,
            });
        }
        plans
    }

    fn execute(plans: Vec<ReadPlan>) -> Result<Vec<Entry<C>>> {
        let mut out = Vec::new();
        for plan in plans {
            let len = usize::try_from(plan.len).map_err(|_| Error::Corrupt {
                segment: plan.path.clone(),
                offset: plan.offset,
                reason: "read larger than memory".into(),
            })?;
            let buf = Segment::read_at(&plan.file, &plan.path, plan.offset, len)?;
            let mut pos = 0usize;
            for k in 0..plan.count {
                let corrupt = |reason: String| Error::Corrupt {
                    segment: plan.path.clone(),
                    offset: plan.offset + pos as u64,
                    reason,
                };
                let rest = buf.get(pos..).unwrap_or_default();
                let (payload, frame_len) = match record::decode(rest) {
                    Ok(Decoded::Record { payload, frame_len }) => (payload, frame_len),
                    Ok(other) => {
                        return Err(corrupt(format!("expected a record, found {other:?}")))
                    }
                    Err(e) => return Err(corrupt(e.to_string())),
                };
                let entry: Entry<C> = rmp_serde::from_slice(payload)?;
                let expected = plan.first_index + k;
                if entry.log_id.index != expected {
                    return Err(corrupt(format!(
                        "entry index {} where {expected} was expected",
                        entry.log_id.index
                    )));
                }
                out.push(entry);
                pos += frame_len;
            }
        }
        Ok(out)
    }

    pub(crate) fn read(&self, start: u64, end: u64) -> Result<Vec<Entry<C>>> {
        let plans = Self::plan(&*self.lock()?, start, end);
        Self::execute(plans)
    }

    pub(crate) fn append(&self, entries: Vec<Entry<C>>, done: Done) -> Result<()> {
        let mut state = self.lock()?;
        // Only the last segment's entries can be overwritten by mistake: an
        // append must start past them (openraft truncates first).
        let last_written = state.segments.last().and_then(Segment::last_index);
        if let (Some(last), Some(first)) = (last_written, entries.first()) {
            let got = first.log_id.index;
            if got <= last {
                return Err(Error::NonContiguous {
                    expected: last + 1,
                    got,
                });
            }
            if got > last + 1 {
                // Raft never leaves holes, but openraft's storage suite
                // appends past the end of the log. Such an entry starts a
                // new segment; recovery reports a hole as corruption.
                tracing::warn!(expected = last + 1, got, "append leaves a hole in the log");
            }
        }
        for pair in entries.windows(2) {
            if let [a, b] = pair {
                if b.log_id.index != a.log_id.index + 1 {
                    return Err(Error::NonContiguous {
                        expected: a.log_id.index + 1,
                        got: b.log_id.index,
                    });
                }
            }
        }
        let r = self.write_entries(&mut state, &entries);
        self.poison_on_io(r)?;
        if let Some(last) = entries.last() {
            state.last_log_id = Some(last.log_id.clone());
        }
        let file = state.segments.last().map(|s| Arc::clone(&s.file));
        drop(state);
        self.flush.flush_requests.fetch_add(1, Ordering::Relaxed);
        let job = FlushJob { file, done };
        match &self.tx {
            Some(tx) => tx.send(job).map_err(|mpsc::SendError(job)| {
                (job.done)(Err(io::Error::other("log flusher stopped")));
                Error::Poisoned
            }),
            None => Err(Error::Poisoned),
        }
    }

    /// Frames and writes `entries` (already checked contiguous), rotating
    /// segments as they fill.
    fn write_entries(&self, state: &mut State<C>, entries: &[Entry<C>]) -> Result<()> {
        let mut buf = Vec::new();
        let mut lens: Vec<u32> = Vec::new();
        for entry in entries {
            let payload = rmp_serde::to_vec_named(entry)?;
            let full = state
                .segments
                .last()
                .is_none_or(|s| s.size + buf.len() as u64 >= self.options.segment_size);
            let empty = state
                .segments
                .last()
                .is_none_or(|s| s.size == 0 && buf.is_empty());
            let hole = state
                .segments
                .last()
                .is_some_and(|s| buf.is_empty() && s.next_index() != entry.log_id.index);
            if state.segments.is_empty() || (full && !empty) || hole {
                if let Some(seg) = state.segments.last_mut() {
                    seg.append(&buf, &lens)?;
                    buf.clear();
                    lens.clear();
                    // Seal: everything before the new segment is durable
                    // before anything in it can be acknowledged. A sealed
                    // segment keeps no zeros after its records.
                    seg.trim()?;
                    seg.sync()?;
                }
                let seg = Segment::create(&self.dir, entry.log_id.index)?;
                segment::sync_dir(&self.dir)?;
                state.segments.push(seg);
            }
            let before = buf.len();
            record::encode_into(&payload, &mut buf);
            let len = u32::try_from(buf.len() - before).map_err(|_| Error::Corrupt {
                segment: self.dir.clone(),
                offset: 0,
                reason: "entry larger than 4 GiB".into(),
            })?;
            lens.push(len);
        }
        if let Some(seg) = state.segments.last_mut() {
            if !buf.is_empty() {
                seg.append(&buf, &lens)?;
            }
        }
        Ok(())
    }

    pub(crate) fn truncate(&self, index: u64) -> Result<()> {
        let mut state = self.lock()?;
        let r = self.truncate_locked(&mut state, index);
        self.poison_on_io(r)
    }

    fn truncate_locked(&self, state: &mut State<C>, index: u64) -> Result<()> {
        let mut removed = false;
        while let Some(seg) = state.segments.last() {
            if seg.first_index < index {
                break;
            }
            fs::remove_file(&seg.path)
                .map_err(|e| Error::io(format!("remove {}", seg.path.display()), e))?;
            state.segments.pop();
            removed = true;
        }
        if removed {
            segment::sync_dir(&self.dir)?;
        }
        if let Some(seg) = state.segments.last_mut() {
            if seg.next_index() > index {
                seg.truncate_from(index)?;
            }
        }
        state.last_log_id = match state.segments.last().and_then(Segment::last_index) {
            Some(last) => {
                let plans = Self::plan(state, last, last + 1);
                Self::execute(plans)?.pop().map(|e| e.log_id)
            }
            None => None,
        };
        Ok(())
    }

    pub(crate) fn purge(&self, log_id: LogId<C::NodeId>) -> Result<()> {
        let mut state = self.lock()?;
        if state
            .meta
            .last_purged
            .as_ref()
            .is_some_and(|p| p.index >= log_id.index)
        {
            return Ok(());
        }
        let r = self.purge_locked(&mut state, log_id);
        self.poison_on_io(r)
    }

    fn purge_locked(&self, state: &mut State<C>, log_id: LogId<C::NodeId>) -> Result<()> {
        let mut meta = state.meta.clone();
        let index = log_id.index;
        meta.last_purged = Some(log_id);
        meta::store(&self.dir, &meta)?;
        state.meta = meta;
        let mut removed = false;
        while let Some(seg) = state.segments.first() {
            // A segment is deleted only when every entry in it is purged.
            if seg.last_index().is_none_or(|last| last > index) {
                break;
            }
            fs::remove_file(&seg.path)
                .map_err(|e| Error::io(format!("remove {}", seg.path.display()), e))?;
            state.segments.remove(0);
            removed = true;
        }
        if removed {
            segment::sync_dir(&self.dir)?;
        }
        if state.segments.is_empty() {
            state.last_log_id = None;
        }
        Ok(())
    }

    pub(crate) fn save_meta(&self, update: impl FnOnce(&mut Meta<C::NodeId>)) -> Result<()> {
        let mut state = self.lock()?;
        let mut meta = state.meta.clone();
        update(&mut meta);
        let r = meta::store(&self.dir, &meta);
        self.poison_on_io(r)?;
        state.meta = meta;
        Ok(())
    }
}

impl<C: RaftTypeConfig> Drop for Inner<C> {
    fn drop(&mut self) {
        // Closing the queue stops the flusher once it has completed every
        // waiting callback.
        self.tx = None;
        if let Some(handle) = self.flusher.take() {
            if handle.join().is_err() {
                tracing::error!("log flusher thread panicked");
            }
        }
    }
}
