//! `Command`: the payload of every log entry, and `Response`: what applying
//! one returns to the proposer.
//!
//! Variants are append-only: never remove or reorder them, old logs must
//! always decode. Fields are named (msgpack maps), so adding an optional
//! field with `#[serde(default)]` is also safe.

use serde::{Deserialize, Serialize};

use crate::txn::{TxnError, TxnOp, TxnResult};
use crate::types::{Check, Node, Service, Session, StoredObject};

/// A change of state. Apply is deterministic: everything time- or
/// randomness-dependent is filled in by the proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[expect(
    clippy::large_enum_variant,
    reason = "a command is built once per request and moved into the log; boxing would add an allocation"
)]
pub enum Command {
    /// Does nothing; used to commit an index (e.g. a barrier).
    Noop {},
    /// Set a key (plain PUT). Keeps an existing lock holder.
    KvSet {
        /// The key.
        key: String,
        /// The value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// Client flags (a PUT without `flags` sends 0).
        flags: u64,
    },
    /// Check-and-set: `index == 0` writes only if absent; otherwise only if
    /// the key's `ModifyIndex` equals `index`.
    KvCas {
        /// The key.
        key: String,
        /// The value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// Client flags.
        flags: u64,
        /// Expected `ModifyIndex` (0 = must not exist).
        index: u64,
    },
    /// Delete one key (absent is a successful no-op).
    KvDelete {
        /// The key.
        key: String,
    },
    /// Delete one key if its `ModifyIndex` equals `index` (absent → true).
    KvDeleteCas {
        /// The key.
        key: String,
        /// Expected `ModifyIndex`.
        index: u64,
    },
    /// Delete every key with this prefix (empty prefix = everything).
    KvDeleteTree {
        /// The prefix.
        prefix: String,
    },
    /// Upsert a node and, optionally, a service instance and checks on it
    /// (`/v1/catalog/register`). Indexes inside the records are ignored.
    CatalogRegister {
        /// The node (name, address, ...).
        node: Node,
        /// Leave an existing node's fields as they are.
        skip_node_update: bool,
        /// A service instance to upsert on the node.
        service: Option<Service>,
        /// Checks to upsert on the node.
        checks: Vec<Check>,
    },
    /// Remove a check, a service instance (and its checks), or a whole node
    /// (`/v1/catalog/deregister`). Absent things are a successful no-op.
    CatalogDeregister {
        /// The node name.
        node: String,
        /// Remove only this service instance (and its checks).
        service_id: Option<String>,
        /// Remove only this check.
        check_id: Option<String>,
    },
    /// Several independent commands proposed together as one log entry (the
    /// engine batches concurrent proposals so one fsync covers them all).
    /// Each is applied atomically on its own, in order, as if it were its
    /// own entry at this entry's index.
    Batch {
        /// The commands, in order. Never contains another `Batch`.
        commands: Vec<Command>,
    },
    /// Create a session (ID and defaults filled in by the proposer). Its
    /// node and linked checks must exist, the checks not critical.
    SessionCreate {
        /// The session.
        session: Session,
    },
    /// Destroy (invalidate) a session: explicit destroy or TTL expiry.
    /// Unknown is a successful no-op.
    SessionDestroy {
        /// The session ID.
        id: String,
    },
    /// Acquire a key for a session and write it (`?acquire=`).
    KvLock {
        /// The key.
        key: String,
        /// The value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// Client flags.
        flags: u64,
        /// The session.
        session: String,
    },
    /// Release a key held by a session and write it (`?release=`).
    KvUnlock {
        /// The key.
        key: String,
        /// The value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// Client flags.
        flags: u64,
        /// The session.
        session: String,
    },
    /// A transaction: all operations or none, in one entry.
    Txn {
        /// The operations, in order (at most `MAX_TXN_OPS`).
        ops: Vec<TxnOp>,
    },
    /// One piece of a snapshot being restored (`PUT /v1/snapshot`): its
    /// encoded records (`backup::state`), staged until
    /// [`Command::RestoreCommit`]; `seq` 0 starts a new restore and drops
    /// anything staged before.
    RestoreChunk {
        /// The restore (the archive's SHA-256), so pieces of two restores
        /// never mix.
        id: String,
        /// Its place among the pieces, from 0.
        seq: u32,
        /// Encoded records.
        records: Vec<serde_bytes::ByteBuf>,
    },
    /// Replace the whole state with the staged records, at once for
    /// readers; indexes never go backwards (the entry's index is raised
    /// past every restored one). Applied alone, never in a `Batch`.
    RestoreCommit {
        /// The restore.
        id: String,
        /// How many pieces it has.
        chunks: u32,
        /// How many records.
        records: u64,
        /// The highest index the records carry (the archive's index).
        max_index: u64,
    },
    /// Create or replace a stored object (indexes in it are ignored).
    /// With `cas`, only if its `ModifyIndex` equals it (0: must not
    /// exist), else `Bool(false)`; with `unique_name`, rejected when
    /// another object of the kind has the same non-empty name.
    ObjectSet {
        /// The object.
        object: StoredObject,
        /// Expected `ModifyIndex`.
        cas: Option<u64>,
        /// Refuse a name another object of the kind has.
        unique_name: bool,
    },
    /// Delete a stored object (absent is a successful no-op).
    ObjectDelete {
        /// Its kind.
        kind: String,
        /// Its ID.
        id: String,
    },
}

/// The outcome of applying one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Response {
    /// Nothing to report (membership entries, blanks, `Noop`).
    #[default]
    None,
    /// A boolean result: `true` = applied, `false` = CAS/lock condition failed.
    Bool(bool),
    /// The command was rejected by a rule that depends on state (e.g.
    /// `Missing service registration`); nothing was changed. The message is
    /// Consul's, served as a 500.
    Rejected(String),
    /// The responses of a `Batch`, in order.
    Batch(Vec<Response>),
    /// A transaction's outcome: results if `errors` is empty, else nothing
    /// was applied.
    Txn {
        /// Results of the operations, in order (empty on rollback).
        results: Vec<TxnResult>,
        /// Why it rolled back (empty on success).
        errors: Vec<TxnError>,
    },
}

impl Command {
    /// Encode as MessagePack (named fields).
    pub fn encode(&self) -> Vec<u8> {
        // Serializing this enum into a Vec cannot fail: every field is a
        // plain string, integer or byte buffer.
        rmp_serde::to_vec_named(self).unwrap_or_default()
    }

    /// A rough size in bytes of the command in the log, for bounding batches.
    pub fn approx_size(&self) -> usize {
        match self {
            Command::KvSet { key, value, .. }
            | Command::KvCas { key, value, .. }
            | Command::KvLock { key, value, .. }
            | Command::KvUnlock { key, value, .. } => 32 + key.len() + value.len(),
            Command::Txn { ops } => ops.iter().map(TxnOp::approx_size).sum(),
            Command::Batch { commands } => commands.iter().map(Command::approx_size).sum(),
            Command::RestoreChunk { records, .. } => records.iter().map(|r| r.len() + 4).sum(),
            _ => 512,
        }
    }

    /// Restore commands are proposed alone: a `RestoreCommit` is applied
    /// outside the one-batch-per-entry rule, and chunks are large.
    pub fn alone(&self) -> bool {
        matches!(
            self,
            Command::RestoreChunk { .. } | Command::RestoreCommit { .. }
        )
    }

    /// Decode from MessagePack; never panics on bad input.
    pub fn decode(bytes: &[u8]) -> crate::Result<Command> {
        rmp_serde::from_slice(bytes).map_err(|e| crate::Error::Decode {
            what: "command",
            msg: e.to_string(),
        })
    }
}
