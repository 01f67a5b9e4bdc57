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

/// Bound on fjall's journals: memtables whose data sits in older journals
/// are flushed to disk tables once the journals pass this. Opening replays
/// at most this much journal, so it bounds restart time (fjall's default,
/// 512 MiB, took 4.7 s to replay with 1M keys; its minimum is 64 MiB).
const MAX_JOURNALING_SIZE: u64 = 64 << 20;
/// Bound on one keyspace's memtable (fjall's default is 64 MiB): with nine
/// keyspaces this bounds the memory held in memtables.
const MAX_MEMTABLE_SIZE: u64 = 16 << 20;
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
    }
}

/// Snapshot table ids: the order and ids of keyspaces in a snapshot file.
/// Append-only, like commands.
pub(crate) const SNAPSHOT_TABLES: &[(u8, &str)] = &[
    (1, "kv"),
    (2, "tombstones"),
    (3, "meta"),
    (4, "nodes"),
    (5, "services"),
    (6, "service_names"),
    (7, "checks"),
    (8, "sessions"),
    (9, "session_index"),
];

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
    /// KV entries: key → msgpack `KvEntry`.
    pub kv: Keyspace,
    /// KV tombstones: key → u64 BE index of the delete.
    pub tombstones: Keyspace,
    /// Metadata: applied log id, membership, table and finer indexes.
    pub meta: Keyspace,
    /// Catalog nodes: lowercase name → msgpack `Node`.
    pub nodes: Keyspace,
    /// Service instances: `node\0id` → msgpack `Service`.
    pub services: Keyspace,
    /// Service name index: `name\0node\0id` → empty.
    pub service_names: Keyspace,
    /// Checks: `node\0check_id` → msgpack `Check`.
    pub checks: Keyspace,
    /// Sessions: id → msgpack `Session`.
    pub sessions: Keyspace,
    /// Session lookups (all values empty): `n\0node\0id` (sessions of a
    /// node), `c\0node\0check\0id` (sessions linked to a check), `l\0id\0key`
    /// (locks a session holds).
    pub session_index: Keyspace,
}

impl Views {
    /// Open (or create) the views under `dir`.
    pub fn open(dir: &Path) -> Result<Views> {
        let db = Database::builder(dir)
            .max_journaling_size(MAX_JOURNALING_SIZE)
            .cache_size(BLOCK_CACHE_SIZE)
            .open()?;
        let open = |name: &str| {
            db.keyspace(name, || {
                KeyspaceCreateOptions::default().max_memtable_size(MAX_MEMTABLE_SIZE)
            })
        };
        let kv = open("kv")?;
        let tombstones = open("tombstones")?;
        let meta = open("meta")?;
        let nodes = open("nodes")?;
        let services = open("services")?;
        let service_names = open("service_names")?;
        let checks = open("checks")?;
        let sessions = open("sessions")?;
        let session_index = open("session_index")?;
        Ok(Views {
            db,
            kv,
            tombstones,
            meta,
            nodes,
            services,
            service_names,
            checks,
            sessions,
            session_index,
        })
    }

    /// The keyspace with a snapshot table id.
    pub fn keyspace_by_id(&self, id: u8) -> Option<&Keyspace> {
        match id {
            1 => Some(&self.kv),
            2 => Some(&self.tombstones),
            3 => Some(&self.meta),
            4 => Some(&self.nodes),
            5 => Some(&self.services),
            6 => Some(&self.service_names),
            7 => Some(&self.checks),
            8 => Some(&self.sessions),
            9 => Some(&self.session_index),
            _ => None,
        }
    }

    /// The last applied log id and membership.
    pub fn applied_state(&self) -> Result<AppliedState> {
        let applied = match self.meta.get(META_LAST_APPLIED)? {
            Some(v) => decode(&v, "last_applied")?,
            None => None,
        };
        let membership = match self.meta.get(META_MEMBERSHIP)? {
            Some(v) => decode(&v, "membership")?,
            None => StoredMembership::default(),
        };
        Ok((applied, membership))
    }

    /// Same as [`Views::applied_state`] but from a consistent snapshot.
    pub fn applied_state_at(&self, snap: &fjall::Snapshot) -> Result<AppliedState> {
        let applied = match snap.get(&self.meta, META_LAST_APPLIED)? {
            Some(v) => decode(&v, "last_applied")?,
            None => None,
        };
        let membership = match snap.get(&self.meta, META_MEMBERSHIP)? {
            Some(v) => decode(&v, "membership")?,
            None => StoredMembership::default(),
        };
        Ok((applied, membership))
    }

    /// How many commands of the `Batch` entry at `index` are already applied
    /// (0 unless a crash interrupted that entry).
    pub fn partial(&self, index: u64) -> Result<usize> {
        match self.meta.get(META_PARTIAL)? {
            Some(v) => {
                let (at, done): (u64, usize) = decode(&v, "partial")?;
                Ok(if at == index { done } else { 0 })
            }
            None => Ok(0),
        }
    }

    /// True if a snapshot install was interrupted.
    pub fn install_interrupted(&self) -> Result<bool> {
        Ok(self.meta.get(META_INSTALLING)?.is_some())
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
