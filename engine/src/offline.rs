//! Offline access to a data directory without raft, for the log tools
//! (`muster log inspect|dump|verify|replay`) and benchmarks of the apply
//! path: decode stored entries, check and install raft snapshot files,
//! apply entries to views directly, read them, and compare two sets of
//! views row by row. Never use it on the views of a running engine (fjall
//! allows one process per directory, and raft must be the only writer).

use std::path::{Path, PathBuf};

use fjall::Readable;

use crate::apply::apply_entry;
use crate::command::{Command, Response};
use crate::error::{Error, Result};
use crate::raft::TypeConfig;
use crate::tables::{catalog, kv};
use crate::types::{KvEntry, Node, ServiceHealth};
use crate::views::{Views, KEYSPACES};

/// A stored log entry.
pub type Entry = openraft::Entry<TypeConfig>;

/// Decode a log record's payload (a stored entry).
pub fn decode_entry(payload: &[u8]) -> Result<Entry> {
    rmp_serde::from_slice(payload).map_err(|e| Error::Decode {
        what: "log entry",
        msg: e.to_string(),
    })
}

/// What a raft snapshot file holds, once checked whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    /// The file.
    pub path: PathBuf,
    /// The last log index it covers (0: none).
    pub index: u64,
    /// That entry's term.
    pub term: u64,
    /// Rows in it.
    pub rows: u64,
    /// Bytes.
    pub bytes: u64,
}

/// The newest raft snapshot file in `dir` (a data directory's
/// `snapshots/`), checked whole: magic, every row and the CRC.
pub fn newest_snapshot(dir: &Path) -> Result<Option<SnapshotFile>> {
    let Some(path) = crate::snapshot::latest(dir)? else {
        return Ok(None);
    };
    let mut file =
        std::fs::File::open(&path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut rows = 0u64;
    let meta = crate::snapshot::read(&mut file, |_, _, _| {
        rows += 1;
        Ok(())
    })
    .map_err(|e| match e {
        Error::Decode { what, msg } => Error::Decode {
            what,
            msg: format!("{}: {msg}", path.display()),
        },
        other => other,
    })?;
    Ok(Some(SnapshotFile {
        index: meta.last_log_id.map_or(0, |l| l.index),
        term: meta.last_log_id.map_or(0, |l| l.leader_id.term),
        path,
        rows,
        bytes,
    }))
}

/// Views opened without raft.
pub struct OfflineViews {
    views: Views,
}

impl OfflineViews {
    /// Open (or create) the views in `dir`.
    pub fn open(dir: &Path) -> Result<OfflineViews> {
        Ok(OfflineViews {
            views: Views::open(dir)?,
        })
    }

    /// Apply one entry exactly as the state machine does.
    pub fn apply(&self, entry: &openraft::Entry<TypeConfig>) -> Result<Response> {
        if let openraft::EntryPayload::Normal(Command::RestoreCommit {
            id,
            chunks,
            records,
            max_index,
        }) = &entry.payload
        {
            let (response, _) = crate::backup::restore::commit(
                &self.views,
                entry.log_id,
                id,
                *chunks,
                *records,
                *max_index,
            )?;
            return Ok(response);
        }
        Ok(apply_entry(&self.views, entry)?.0)
    }

    /// Replace these views with a raft snapshot file (checked first).
    pub fn install_snapshot(&self, path: &Path) -> Result<()> {
        let mut file = std::fs::File::open(path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        crate::snapshot::install(&self.views, &mut file)?;
        Ok(())
    }

    /// Every KV entry under `prefix`.
    pub fn kv_list(&self, prefix: &str) -> Result<Vec<KvEntry>> {
        kv::list(&self.views, prefix)
    }

    /// Every node.
    pub fn nodes(&self) -> Result<Vec<Node>> {
        catalog::all_nodes(&self.views)
    }

    /// The instances of a service with their nodes and checks.
    pub fn service(&self, name: &str) -> Result<Vec<ServiceHealth>> {
        catalog::service_health(&self.views, name, true)
    }

    /// Compare every row of every keyspace with `other`'s; one line per
    /// difference (up to `limit`), naming the keyspace and key and what
    /// each side holds.
    pub fn differences(&self, other: &OfflineViews, limit: usize) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let (a, b) = (&self.views, &other.views);
        let (sa, sb) = (a.db.snapshot(), b.db.snapshot());
        let show = |k: &[u8]| String::from_utf8_lossy(k).escape_debug().to_string();
        for (ks, name, _) in KEYSPACES {
            let mut left = sa.iter(a.ks(ks)).map(|g| g.into_inner());
            let mut right = sb.iter(b.ks(ks)).map(|g| g.into_inner());
            let mut l = left.next().transpose()?;
            let mut r = right.next().transpose()?;
            while out.len() < limit {
                match (&l, &r) {
                    (None, None) => break,
                    (Some((lk, lv)), Some((rk, rv))) if lk == rk => {
                        if lv != rv {
                            out.push(format!("{name} {:?}: the rows differ", show(lk)));
                        }
                        l = left.next().transpose()?;
                        r = right.next().transpose()?;
                    }
                    (Some((lk, _)), Some((rk, _))) if lk < rk => {
                        out.push(format!("{name} {:?}: only in the first", show(lk)));
                        l = left.next().transpose()?;
                    }
                    (_, Some((rk, _))) => {
                        out.push(format!("{name} {:?}: only in the second", show(rk)));
                        r = right.next().transpose()?;
                    }
                    (Some((lk, _)), None) => {
                        out.push(format!("{name} {:?}: only in the first", show(lk)));
                        l = left.next().transpose()?;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Read one KV entry.
    pub fn kv_get(&self, key: &str) -> Result<Option<KvEntry>> {
        kv::get(&self.views, key)
    }

    /// Index of the last applied entry (0 if none).
    pub fn applied_index(&self) -> Result<u64> {
        Ok(self.views.applied_state()?.0.map(|l| l.index).unwrap_or(0))
    }
}
