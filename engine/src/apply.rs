//! Apply one log entry to the views: dispatch the command to its table
//! helper, then commit rows, table indexes and `last_applied` in one fjall
//! batch. Deterministic: no clock, randomness or I/O beyond the views.

use std::collections::{BTreeSet, HashSet};

use openraft::{EntryPayload, LogId, StoredMembership};

use crate::command::{Command, Response};
use crate::error::Result;
use crate::raft::TypeConfig;
use crate::tables::{catalog, kv};
use crate::views::{
    encode, index_key, Views, META_LAST_APPLIED, META_MEMBERSHIP, NODE_INDEX_PREFIX,
    SERVICE_INDEX_PREFIX,
};
use crate::watch::{Table, WatchKey};

/// What an entry changed: the tables whose index moves to the entry's index
/// and the watch keys to fire after commit.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    tables: Vec<Table>,
    keys: HashSet<WatchKey>,
    /// Service names whose per-service index moves.
    services: BTreeSet<String>,
    /// Lowercase node names whose per-node index moves.
    nodes: BTreeSet<String>,
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

    /// Mark a service name changed (its per-service index and watchers).
    pub fn service(&mut self, name: &str) {
        if self.services.insert(name.to_string()) {
            self.keys.insert(WatchKey::Service(name.to_string()));
        }
    }

    /// Mark a node changed (`lower` is its lowercase name).
    pub fn node(&mut self, lower: &str) {
        if self.nodes.insert(lower.to_string()) {
            self.keys.insert(WatchKey::Node(lower.to_string()));
        }
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
        EntryPayload::Normal(cmd) => {
            let response = apply_command(views, &mut batch, &mut touched, index, cmd)?;
            if matches!(response, Response::Rejected(_)) {
                // A rejected command changes nothing but `last_applied`.
                batch = views.db.batch();
                touched = Touched::default();
            }
            response
        }
        EntryPayload::Membership(m) => {
            let stored = StoredMembership::new(Some(entry.log_id), m.clone());
            batch.insert(&views.meta, META_MEMBERSHIP, encode(&stored, "membership")?);
            Response::None
        }
    };
    for t in &touched.tables {
        batch.insert(&views.meta, index_key(*t), index.to_be_bytes().to_vec());
    }
    for name in &touched.services {
        batch.insert(
            &views.meta,
            format!("{SERVICE_INDEX_PREFIX}{name}").into_bytes(),
            index.to_be_bytes().to_vec(),
        );
    }
    for lower in &touched.nodes {
        batch.insert(
            &views.meta,
            format!("{NODE_INDEX_PREFIX}{lower}").into_bytes(),
            index.to_be_bytes().to_vec(),
        );
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
        Command::CatalogRegister {
            node,
            skip_node_update,
            service,
            checks,
        } => catalog::register(
            views,
            batch,
            touched,
            index,
            node,
            *skip_node_update,
            service.as_ref(),
            checks,
        ),
        Command::CatalogDeregister {
            node,
            service_id,
            check_id,
        } => catalog::deregister(
            views,
            batch,
            touched,
            index,
            node,
            service_id.as_deref(),
            check_id.as_deref(),
        ),
    }
}
