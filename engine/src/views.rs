//! The fjall views: one keyspace per table plus `meta` (applied log id,
//! membership, per-table indexes). Only the state machine writes here; the
//! engine's read methods read here. Nothing outside this crate opens fjall.

use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, Readable};
use openraft::{LogId, StoredMembership};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::raft::RaftNode;
use crate::watch::Table;

/// Meta key of the last applied log id.
pub(crate) const META_LAST_APPLIED: &[u8] = b"last_applied";
/// Meta key of the last applied membership.
pub(crate) const META_MEMBERSHIP: &[u8] = b"membership";
/// Meta key of a partly applied `Batch` entry: `(index, commands done)`.
pub(crate) const META_PARTIAL: &[u8] = b"partial";
/// Meta key set while a snapshot is being installed: if present at open, the
/// views are half-written and must be rebuilt from the snapshot file.
pub(crate) const META_INSTALLING: &[u8] = b"installing";
/// Meta key of the restore being staged: msgpack `(id, next seq, records)`.
pub(crate) const META_RESTORE: &[u8] = b"restore";
/// Meta key of the index base: an entry's index is its log index plus this
/// (a restore raises it past every restored index; u64 BE).
pub(crate) const META_INDEX_BASE: &[u8] = b"index_base";
/// Meta key of the index of the last restore (u64 BE): no read answers
/// with an index below it, so indexes never go backwards across one.
pub(crate) const META_RESTORED_AT: &[u8] = b"restored_at";

/// Bound on fjall's journals: memtables whose data sits in older journals
/// are flushed to disk tables once the journals pass this. Opening replays
/// at most this much journal, so it bounds restart time (fjall's default,
/// 512 MiB, took 4.7 s to replay with 1M keys; its minimum is 64 MiB).
const MAX_JOURNALING_SIZE: u64 = 64 << 20;
/// Bound on one keyspace's memtable (fjall's default is 64 MiB): with nine
/// keyspaces this bounds the memory held in memtables.
const MAX_MEMTABLE_SIZE: u64 = 16 << 20;
/// How much unflushed memtable data a bulk writer (a restore, a snapshot
/// install) lets pile up before it waits for fjall's flushes: writing a
/// million rows faster than they flush would otherwise hold them all in
/// memory.
const BULK_WRITE_BUFFER: u64 = 96 << 20;
/// fjall's block cache (its default).
const BLOCK_CACHE_SIZE: u64 = 32 << 20;

/// The table index key in `meta` for a table.
pub(crate) fn index_key(table: Table) -> &'static [u8] {
    match table {
        Table::Kv => b"index/kv",
        Table::Nodes => b"index/nodes",
        Table::Services => b"index/services",
        Table::Checks => b"index/checks",
        Table::Sessions => b"index/sessions",
        Table::Objects => b"index/objects",
    }
}

/// A keyspace of the views. Its discriminant is its place in
/// [`KEYSPACES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Ks {
    /// KV entries: key → msgpack `KvEntry`.
    Kv,
    /// KV tombstones: key → u64 BE index of the delete.
    Tombstones,
    /// Metadata: applied log id, membership, table and finer indexes.
    Meta,
    /// Catalog nodes: lowercase name → msgpack `Node`.
    Nodes,
    /// Service instances: `node\0id` → msgpack `Service`.
    Services,
    /// Service name index: `name\0node\0id` → empty.
    ServiceNames,
    /// Checks: `node\0check_id` → msgpack `Check`.
    Checks,
    /// Sessions: id → msgpack `Session`.
    Sessions,
    /// Session lookups (all values empty): `n\0node\0id` (sessions of a
    /// node), `c\0node\0check\0id` (sessions linked to a check),
    /// `l\0id\0key` (locks a session holds).
    SessionIndex,
    /// The records of a restore being staged: `seq u32 BE, n u32 BE` →
    /// encoded record.
    Staging,
    /// Stored objects: `kind\0id` → msgpack `StoredObject`.
    Objects,
}

/// The one declaration of every keyspace: which it is, its name on disk,
/// and its id in snapshot files (append-only, like commands: an id is
/// never reused, and a snapshot's rows come in this order). Opening,
/// [`Views::ks`], snapshotting and installing all go through this list.
pub(crate) const KEYSPACES: [(Ks, &str, u8); 11] = [
    (Ks::Kv, "kv", 1),
    (Ks::Tombstones, "tombstones", 2),
    (Ks::Meta, "meta", 3),
    (Ks::Nodes, "nodes", 4),
    (Ks::Services, "services", 5),
    (Ks::ServiceNames, "service_names", 6),
    (Ks::Checks, "checks", 7),
    (Ks::Sessions, "sessions", 8),
    (Ks::SessionIndex, "session_index", 9),
    (Ks::Staging, "restore_staging", 10),
    (Ks::Objects, "objects", 11),
];

/// The keyspace with snapshot id `id`, if any.
pub(crate) fn ks_by_snapshot_id(id: u8) -> Option<Ks> {
    KEYSPACES
        .iter()
        .find(|(_, _, i)| *i == id)
        .map(|(ks, _, _)| *ks)
}

/// Meta key prefix of per-service indexes (`svcidx/<name>` → u64 BE).
pub(crate) const SERVICE_INDEX_PREFIX: &str = "svcidx/";
/// Meta key prefix of per-node indexes (`nodeidx/<lowercase name>` → u64 BE).
pub(crate) const NODE_INDEX_PREFIX: &str = "nodeidx/";

/// The last applied log id and the membership as of it.
pub(crate) type AppliedState = (Option<LogId<u64>>, StoredMembership<u64, RaftNode>);

/// Handles to the view keyspaces.
pub(crate) struct Views {
    /// The database (for batches and snapshots).
    pub db: Database,
    /// One handle per [`KEYSPACES`] entry, in its order.
    keyspaces: Vec<Keyspace>,
    /// Held (write) while the views are replaced wholesale (a snapshot
    /// install, a restore), taken (read) to open a read view: no reader
    /// ever sees half a replacement.
    pub(crate) gate: std::sync::RwLock<()>,
    /// The index base ([`META_INDEX_BASE`]), as applied so far.
    index_base: std::sync::atomic::AtomicU64,
}

impl Views {
    /// Open (or create) the views under `dir`.
    pub fn open(dir: &Path) -> Result<Views> {
        let db = Database::builder(dir)
            .max_journaling_size(MAX_JOURNALING_SIZE)
            .cache_size(BLOCK_CACHE_SIZE)
            .open()?;
        let keyspaces = KEYSPACES
            .iter()
            .map(|(_, name, _)| {
                db.keyspace(name, || {
                    KeyspaceCreateOptions::default().max_memtable_size(MAX_MEMTABLE_SIZE)
                })
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let views = Views {
            db,
            keyspaces,
            gate: std::sync::RwLock::new(()),
            index_base: std::sync::atomic::AtomicU64::new(0),
        };
        views.reload_index_base()?;
        Ok(views)
    }

    /// An entry's index: its log index plus the index base.
    pub fn index_of(&self, log_index: u64) -> u64 {
        log_index + self.index_base.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Read the index base again (after a snapshot install or a restore).
    pub fn reload_index_base(&self) -> Result<()> {
        let base = self
            .ks(Ks::Meta)
            .get(META_INDEX_BASE)?
            .map_or(0, |v| be_u64(&v));
        self.index_base
            .store(base, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// For bulk writers, between batches: wait (up to 30 s) while more than
    /// [`BULK_WRITE_BUFFER`] bytes of memtables wait to be flushed, so a
    /// bulk write is paced by the disk, not by memory.
    pub fn pace_bulk_write(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.db.write_buffer_size() > BULK_WRITE_BUFFER
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Shut out readers while the views are replaced wholesale.
    pub fn replace_gate(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.gate
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The keyspace handle of `ks`.
    pub fn ks(&self, ks: Ks) -> &Keyspace {
        #[expect(
            clippy::indexing_slicing,
            reason = "open() makes one handle per KEYSPACES entry, and a Ks is its index there (a test checks the order)"
        )]
        &self.keyspaces[ks as usize]
    }

    /// The last applied log id and membership.
    pub fn applied_state(&self) -> Result<AppliedState> {
        let applied = match self.ks(Ks::Meta).get(META_LAST_APPLIED)? {
            Some(v) => decode(&v, "last_applied")?,
            None => None,
        };
        let membership = match self.ks(Ks::Meta).get(META_MEMBERSHIP)? {
            Some(v) => decode(&v, "membership")?,
            None => StoredMembership::default(),
        };
        Ok((applied, membership))
    }

    /// Same as [`Views::applied_state`] but from a consistent snapshot.
    pub fn applied_state_at(&self, snap: &fjall::Snapshot) -> Result<AppliedState> {
        let applied = match snap.get(self.ks(Ks::Meta), META_LAST_APPLIED)? {
            Some(v) => decode(&v, "last_applied")?,
            None => None,
        };
        let membership = match snap.get(self.ks(Ks::Meta), META_MEMBERSHIP)? {
            Some(v) => decode(&v, "membership")?,
            None => StoredMembership::default(),
        };
        Ok((applied, membership))
    }

    /// How many commands of the `Batch` entry at `index` are already applied
    /// (0 unless a crash interrupted that entry).
    pub fn partial(&self, index: u64) -> Result<usize> {
        match self.ks(Ks::Meta).get(META_PARTIAL)? {
            Some(v) => {
                let (at, done): (u64, usize) = decode(&v, "partial")?;
                Ok(if at == index { done } else { 0 })
            }
            None => Ok(0),
        }
    }

    /// Empty every keyspace (to rebuild the views from the whole log).
    pub fn clear(&self) -> Result<()> {
        for (ks, _, _) in KEYSPACES {
            let ks = self.ks(ks);
            let mut batch = self.db.batch();
            for item in ks.iter() {
                batch.remove(ks, item.key()?);
                if batch.len() >= 8192 {
                    std::mem::replace(&mut batch, self.db.batch()).commit()?;
                }
            }
            batch.commit()?;
        }
        self.db.persist(fjall::PersistMode::SyncAll)?;
        self.reload_index_base()
    }

    /// True if a snapshot install was interrupted.
    pub fn install_interrupted(&self) -> Result<bool> {
        Ok(self.ks(Ks::Meta).get(META_INSTALLING)?.is_some())
    }
}

/// Decode a big-endian u64 (short input reads as 0).
pub(crate) fn be_u64(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    if let Some(src) = bytes.get(..8) {
        buf.copy_from_slice(src);
    }
    u64::from_be_bytes(buf)
}

/// Encode a row as msgpack with named fields.
pub(crate) fn encode<T: Serialize>(value: &T, what: &'static str) -> Result<Vec<u8>> {
    rmp_serde::to_vec_named(value).map_err(|e| Error::Decode {
        what,
        msg: e.to_string(),
    })
}

/// Decode a msgpack row.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T> {
    rmp_serde::from_slice(bytes).map_err(|e| Error::Decode {
        what,
        msg: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspaces_are_declared_in_ks_order_with_unique_names_and_ids() {
        for (i, (ks, _, _)) in KEYSPACES.iter().enumerate() {
            assert_eq!(*ks as usize, i);
        }
        let mut names: Vec<&str> = KEYSPACES.iter().map(|(_, n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KEYSPACES.len());
        for (ks, _, id) in KEYSPACES {
            assert_eq!(ks_by_snapshot_id(id), Some(ks));
        }
        assert_eq!(ks_by_snapshot_id(0), None);
    }
}
