//! Apply one log entry to the views: dispatch the command to its table
//! helper, then commit rows, table indexes and `last_applied` in one fjall
//! batch. Deterministic: no clock, randomness or I/O beyond the views.

use std::collections::HashSet;

use openraft::{EntryPayload, LogId, StoredMembership};

use crate::command::{Command, Response};
use crate::error::Result;
use crate::raft::TypeConfig;
use crate::tables::kv;
use crate::views::{encode, index_key, Views, META_LAST_APPLIED, META_MEMBERSHIP};
use crate::watch::{Table, WatchKey};

/// What an entry changed: the tables whose index moves to the entry's index
/// and the watch keys to fire after commit.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    tables: Vec<Table>,
    keys: HashSet<WatchKey>,
}

impl Touched {
    /// Mark a table changed.
    pub fn table(&mut self, t: Table) {
        if !self.tables.contains(&t) {
            self.tables.push(t);
            self.keys.insert(WatchKey::Table(t));
        }
    }

    /// Mark a watch key changed.
    pub fn key(&mut self, k: WatchKey) {
        self.keys.insert(k);
    }

    /// The watch keys to fire.
    pub fn into_keys(self) -> Vec<WatchKey> {
        self.keys.into_iter().collect()
    }
}

/// Apply one entry and commit it. Returns the response and the watch keys to
/// fire (the caller fires them after this returns, i.e. after commit).
pub(crate) fn apply_entry(
    views: &Views,
    entry: &openraft::Entry<TypeConfig>,
) -> Result<(Response, Vec<WatchKey>)> {
    let index = entry.log_id.index;
    let mut batch = views.db.batch();
    let mut touched = Touched::default();
    let response = match &entry.payload {
        EntryPayload::Blank => Response::None,
        EntryPayload::Normal(cmd) => apply_command(views, &mut batch, &mut touched, index, cmd)?,
        EntryPayload::Membership(m) => {
            let stored = StoredMembership::new(Some(entry.log_id), m.clone());
            batch.insert(&views.meta, META_MEMBERSHIP, encode(&stored, "membership")?);
            Response::None
        }
    };
    for t in &touched.tables {
        batch.insert(&views.meta, index_key(*t), index.to_be_bytes().to_vec());
    }
    let applied: Option<LogId<u64>> = Some(entry.log_id);
    batch.insert(
        &views.meta,
        META_LAST_APPLIED,
        encode(&applied, "last_applied")?,
    );
    batch.commit()?;
    Ok((response, touched.into_keys()))
}

/// Dispatch a command to its table helper.
pub(crate) fn apply_command(
    views: &Views,
    batch: &mut fjall::OwnedWriteBatch,
    touched: &mut Touched,
    index: u64,
    cmd: &Command,
) -> Result<Response> {
    match cmd {
        Command::Noop {} => Ok(Response::None),
        Command::KvSet { key, value, flags } => {
            kv::set(views, batch, touched, index, key, value, *flags)
        }
        Command::KvCas {
            key,
            value,
            flags,
            index: expected,
        } => kv::cas(views, batch, touched, index, key, value, *flags, *expected),
        Command::KvDelete { key } => kv::delete(views, batch, touched, index, key),
        Command::KvDeleteCas {
            key,
            index: expected,
        } => kv::delete_cas(views, batch, touched, index, key, *expected),
        Command::KvDeleteTree { prefix } => kv::delete_tree(views, batch, touched, index, prefix),
        Command::CatalogRegister { .. } | Command::CatalogDeregister { .. } => {
            Ok(Response::Rejected("catalog not implemented yet".into()))
        }
    }
}
