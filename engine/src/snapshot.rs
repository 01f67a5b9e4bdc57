//! Snapshot files: a consistent copy of every view, streamed row by row.
//!
//! Format: `MUSTSNP1`, a length-prefixed msgpack header (the raft
//! `SnapshotMeta`), then rows `[len u32 LE][msgpack (table, key, value)]`,
//! then an end marker `u32::MAX`, the row count (u64 LE) and a CRC32 of every
//! byte before it. Building and installing never hold more than one row in
//! memory. Installing first verifies the whole file, then marks the views
//! `installing` so an interrupted install is redone from the file at open.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fjall::Readable;
use openraft::{SnapshotMeta, StoredMembership};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::raft::RaftNode;
use crate::views::{
    decode, encode, ks_by_snapshot_id, Ks, Views, KEYSPACES, META_INSTALLING, META_LAST_APPLIED,
    META_MEMBERSHIP,
};

const MAGIC: &[u8; 8] = b"MUSTSNP1";
const END: u32 = u32::MAX;
/// Rows per fjall batch while installing.
const INSTALL_BATCH: usize = 8192;
/// How often a snapshot install logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Largest row frame accepted (a KV value is at most 512 KiB).
const MAX_FRAME: u32 = 64 << 20;

/// The raft snapshot metadata as stored in files.
pub(crate) type Meta = SnapshotMeta<u64, RaftNode>;

#[derive(Serialize, Deserialize)]
struct Header {
    meta: Meta,
}

/// A writer that CRCs everything written through it.
pub(crate) struct CrcWriter<W: Write> {
    inner: W,
    hasher: crc32fast::Hasher,
}

impl<W: Write> CrcWriter<W> {
    /// CRC everything written to `inner`.
    pub(crate) fn new(inner: W) -> CrcWriter<W> {
        CrcWriter {
            inner,
            hasher: crc32fast::Hasher::new(),
        }
    }

    /// The CRC so far, and the writer (to write the CRC itself unhashed).
    pub(crate) fn finish(self) -> (u32, W) {
        (self.hasher.finalize(), self.inner)
    }
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that CRCs everything read through it.
pub(crate) struct CrcReader<R: Read> {
    inner: R,
    hasher: crc32fast::Hasher,
}

impl<R: Read> CrcReader<R> {
    /// CRC everything read from `inner`.
    pub(crate) fn new(inner: R) -> CrcReader<R> {
        CrcReader {
            inner,
            hasher: crc32fast::Hasher::new(),
        }
    }

    /// The CRC so far, and the reader (to read the CRC itself unhashed).
    pub(crate) fn parts(&mut self) -> (u32, &mut R) {
        (self.hasher.clone().finalize(), &mut self.inner)
    }
}

impl<R: Read> Read for CrcReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

fn io_err(context: &str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    let context = format!("{context} {}", path.display());
    move |e| Error::io(context, e)
}

/// Write a snapshot of the views into `dir`; returns its metadata and path.
/// The file is fsynced and renamed into place before this returns.
pub(crate) fn build(views: &Views, dir: &Path, snapshot_id_suffix: u64) -> Result<(Meta, PathBuf)> {
    fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let snap = {
        let _gate = views
            .gate
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        views.db.snapshot()
    };
    let (last_log_id, last_membership) = views.applied_state_at(&snap)?;
    let (term, index) = last_log_id
        .map(|l| (l.leader_id.term, l.index))
        .unwrap_or((0, 0));
    let meta = Meta {
        last_log_id,
        last_membership,
        snapshot_id: format!("{term}-{index}-{snapshot_id_suffix}"),
    };
    let final_path = dir.join(format!("{:020}-{}.snap", index, meta.snapshot_id));
    let tmp_path = final_path.with_extension("tmp");
    let file = File::create(&tmp_path).map_err(io_err("create", &tmp_path))?;
    let mut w = CrcWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: crc32fast::Hasher::new(),
    };
    let werr = io_err("write", &tmp_path);
    let result = (|| -> io::Result<u64> {
        w.write_all(MAGIC)?;
        let header =
            encode(&Header { meta: meta.clone() }, "snapshot header").map_err(io::Error::other)?;
        write_frame(&mut w, &header)?;
        let mut rows = 0u64;
        let mut buf = Vec::new();
        for (which, _, id) in KEYSPACES {
            for item in snap.iter(views.ks(which)) {
                let (k, v) = item.into_inner().map_err(io::Error::other)?;
                buf.clear();
                rmp_serde::encode::write(
                    &mut buf,
                    &(id, serde_bytes::Bytes::new(&k), serde_bytes::Bytes::new(&v)),
                )
                .map_err(io::Error::other)?;
                write_frame(&mut w, &buf)?;
                rows += 1;
            }
        }
        w.write_all(&END.to_le_bytes())?;
        w.write_all(&rows.to_le_bytes())?;
        let crc = w.hasher.clone().finalize();
        w.inner.write_all(&crc.to_le_bytes())?;
        w.inner.flush()?;
        w.inner.get_ref().sync_all()?;
        Ok(rows)
    })();
    let rows = result.map_err(werr)?;
    fs::rename(&tmp_path, &final_path).map_err(io_err("rename", &tmp_path))?;
    sync_dir(dir)?;
    tracing::info!(index, rows, path = %final_path.display(), "snapshot built");
    prune(dir, &final_path);
    Ok((meta, final_path))
}

pub(crate) fn write_frame<W: Write>(w: &mut W, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| io::Error::other("row too large"))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(payload)
}

pub(crate) fn read_u32<R: Read>(r: &mut R) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

pub(crate) fn read_frame<R: Read>(r: &mut R, len: u32, buf: &mut Vec<u8>) -> io::Result<()> {
    if len > MAX_FRAME {
        return Err(io::Error::other(format!(
            "row frame of {len} bytes is too large"
        )));
    }
    buf.resize(len as usize, 0);
    r.read_exact(buf)
}

/// Walk a snapshot file: check magic, header, every row and the CRC trailer,
/// calling `row` for each `(table, key, value)`. Returns the header meta.
pub(crate) fn read(
    file: &mut File,
    mut row: impl FnMut(u8, &[u8], &[u8]) -> Result<()>,
) -> Result<Meta> {
    let bad = |msg: String| Error::Decode {
        what: "snapshot",
        msg,
    };
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io("seek snapshot", e))?;
    let mut r = CrcReader {
        inner: BufReader::with_capacity(1 << 20, &mut *file),
        hasher: crc32fast::Hasher::new(),
    };
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)
        .map_err(|e| bad(format!("header: {e}")))?;
    if &magic != MAGIC {
        return Err(bad("not a muster snapshot (bad magic)".into()));
    }
    let mut buf = Vec::new();
    let len = read_u32(&mut r).map_err(|e| bad(format!("header: {e}")))?;
    read_frame(&mut r, len, &mut buf).map_err(|e| bad(format!("header: {e}")))?;
    let header: Header = decode(&buf, "snapshot header")?;
    let mut rows = 0u64;
    loop {
        let len = read_u32(&mut r).map_err(|e| bad(format!("row {rows}: {e}")))?;
        if len == END {
            break;
        }
        read_frame(&mut r, len, &mut buf).map_err(|e| bad(format!("row {rows}: {e}")))?;
        let (table, key, value): (u8, serde_bytes::ByteBuf, serde_bytes::ByteBuf) =
            decode(&buf, "snapshot row")?;
        row(table, &key, &value)?;
        rows += 1;
    }
    let mut count = [0u8; 8];
    r.read_exact(&mut count)
        .map_err(|e| bad(format!("trailer: {e}")))?;
    let expected_crc = r.hasher.clone().finalize();
    let mut crc = [0u8; 4];
    r.inner
        .read_exact(&mut crc)
        .map_err(|e| bad(format!("trailer: {e}")))?;
    if u64::from_le_bytes(count) != rows {
        return Err(bad(format!(
            "trailer says {} rows, found {rows}",
            u64::from_le_bytes(count)
        )));
    }
    if u32::from_le_bytes(crc) != expected_crc {
        return Err(bad(format!(
            "CRC mismatch: trailer {:08x}, computed {expected_crc:08x}",
            u32::from_le_bytes(crc)
        )));
    }
    Ok(header.meta)
}

/// Replace every view with the snapshot in `file` (verified first).
pub(crate) fn install(views: &Views, file: &mut File) -> Result<Meta> {
    let started = Instant::now();
    let mut total = 0u64;
    let meta = read(file, |_, _, _| {
        total += 1;
        Ok(())
    })?;
    tracing::info!(
        rows = total,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "snapshot verified, installing"
    );
    let _gate = views.replace_gate();
    let mut batch = views.db.batch();
    batch.insert(views.ks(Ks::Meta), META_INSTALLING, Vec::new());
    batch.commit()?;
    for (which, _, _) in KEYSPACES {
        let ks = views.ks(which);
        let mut batch = views.db.batch();
        for item in ks.iter() {
            let k = item.key()?;
            if which == Ks::Meta && &*k == META_INSTALLING {
                continue;
            }
            batch.remove(ks, k);
            if batch.len() >= INSTALL_BATCH {
                std::mem::replace(&mut batch, views.db.batch()).commit()?;
            }
        }
        batch.commit()?;
    }
    let mut batch = views.db.batch();
    let mut loaded = 0u64;
    let mut last_report = Instant::now();
    read(file, |table, key, value| {
        if let Some(which) = ks_by_snapshot_id(table) {
            if !(which == Ks::Meta && key == META_INSTALLING) {
                batch.insert(views.ks(which), key.to_vec(), value.to_vec());
            }
        }
        loaded += 1;
        if batch.len() >= INSTALL_BATCH {
            std::mem::replace(&mut batch, views.db.batch()).commit()?;
            views.pace_bulk_write();
            if last_report.elapsed() >= PROGRESS_EVERY {
                last_report = Instant::now();
                tracing::info!(rows = loaded, of = total, "installing snapshot");
            }
        }
        Ok(())
    })?;
    batch.insert(
        views.ks(Ks::Meta),
        META_LAST_APPLIED,
        encode(&meta.last_log_id, "last_applied")?,
    );
    let membership: StoredMembership<u64, RaftNode> = meta.last_membership.clone();
    batch.insert(
        views.ks(Ks::Meta),
        META_MEMBERSHIP,
        encode(&membership, "membership")?,
    );
    batch.remove(views.ks(Ks::Meta), META_INSTALLING);
    batch.commit()?;
    views.db.persist(fjall::PersistMode::SyncAll)?;
    views.reload_index_base()?;
    tracing::info!(
        rows = loaded,
        last = ?meta.last_log_id,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "snapshot installed"
    );
    Ok(meta)
}

/// The newest complete snapshot file in `dir`, if any.
pub(crate) fn latest(dir: &Path) -> Result<Option<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("read {}", dir.display()), e)),
    };
    let mut best: Option<PathBuf> = None;
    for entry in entries {
        let path = entry.map_err(|e| Error::io("read snapshot dir", e))?.path();
        if path.extension().is_some_and(|e| e == "snap") && best.as_ref().is_none_or(|b| path > *b)
        {
            best = Some(path);
        }
    }
    Ok(best)
}

/// Read only the header meta of a snapshot file.
pub(crate) fn read_meta(path: &Path) -> Result<Meta> {
    let mut file = File::open(path).map_err(io_err("open", path))?;
    let bad = |msg: String| Error::Decode {
        what: "snapshot",
        msg,
    };
    let mut magic = [0u8; 8];
    file.read_exact(&mut magic)
        .map_err(|e| bad(e.to_string()))?;
    if &magic != MAGIC {
        return Err(bad("not a muster snapshot (bad magic)".into()));
    }
    let len = read_u32(&mut file).map_err(|e| bad(e.to_string()))?;
    let mut buf = Vec::new();
    read_frame(&mut file, len, &mut buf).map_err(|e| bad(e.to_string()))?;
    let header: Header = decode(&buf, "snapshot header")?;
    Ok(header.meta)
}

/// Keep the newest two snapshot files; remove older ones and stale temps.
fn prune(dir: &Path, keep: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut snaps: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "snap") && p != keep)
        .collect();
    snaps.sort();
    while snaps.len() > 1 {
        let old = snaps.remove(0);
        if let Err(e) = fs::remove_file(&old) {
            tracing::warn!(path = %old.display(), error = %e, "could not remove old snapshot");
        }
    }
}

/// fsync a directory so renames and creations in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync dir", dir))
}
