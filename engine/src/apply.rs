//! Apply one log entry to the views: dispatch the command to its table
//! helper, then commit rows, table indexes and `last_applied` in one fjall
//! batch. Deterministic: no clock, randomness or I/O beyond the views.

use std::collections::{BTreeSet, HashSet};

use openraft::{EntryPayload, LogId, StoredMembership};

use crate::command::{Command, Response};
use crate::error::Result;
use crate::raft::TypeConfig;
use crate::stage::Stage;
use crate::tables::{catalog, kv, objects, session};
use crate::txn;
use crate::views::{
    encode, index_key, Ks, Views, META_LAST_APPLIED, META_MEMBERSHIP, META_PARTIAL,
    NODE_INDEX_PREFIX, SERVICE_INDEX_PREFIX,
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
    /// Keys released or deleted by a session invalidation, with the
    /// session's lock-delay in nanoseconds.
    lock_delays: Vec<(String, u64)>,
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

    /// Record a lock-delay for `key` (a session holding it was invalidated).
    pub fn lock_delay(&mut self, key: &str, ns: u64) {
        self.lock_delays.push((key.to_string(), ns));
    }

    /// Add what a later command of the same entry touched.
    pub fn merge(&mut self, later: Touched) {
        for t in later.tables {
            if !self.tables.contains(&t) {
                self.tables.push(t);
            }
        }
        self.keys.extend(later.keys);
        self.services.extend(later.services);
        self.nodes.extend(later.nodes);
        self.lock_delays.extend(later.lock_delays);
    }
}

/// What applying an entry changed, for the state machine to act on after
/// commit: watch keys to fire and lock-delays to start.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Watch keys to fire.
    pub keys: Vec<WatchKey>,
    /// `(key, lock-delay ns)` to record on this server's clock.
    pub lock_delays: Vec<(String, u64)>,
    /// The entry's index (log index plus the index base).
    pub index: u64,
    /// Its rows, for the change feed.
    pub changes: Vec<crate::feed::Change>,
}

/// Stage the index bumps of what `touched` changed at `index`.
fn stage_indexes(views: &Views, batch: &mut fjall::OwnedWriteBatch, touched: &Touched, index: u64) {
    for t in &touched.tables {
        batch.insert(
            views.ks(Ks::Meta),
            index_key(*t),
            index.to_be_bytes().to_vec(),
        );
    }
    for name in &touched.services {
        batch.insert(
            views.ks(Ks::Meta),
            format!("{SERVICE_INDEX_PREFIX}{name}").into_bytes(),
            index.to_be_bytes().to_vec(),
        );
    }
    for lower in &touched.nodes {
        batch.insert(
            views.ks(Ks::Meta),
            format!("{NODE_INDEX_PREFIX}{lower}").into_bytes(),
            index.to_be_bytes().to_vec(),
        );
    }
}

/// Apply one command into `st` between a checkpoint and its keep, or its
/// rollback when it is rejected (or a transaction rolled back): a rejected
/// command stages nothing.
fn stage_command(st: &mut Stage, index: u64, cmd: &Command) -> Result<Response> {
    let cp = st.checkpoint();
    let response = apply_command(st, index, cmd)?;
    let changes_nothing = match &response {
        Response::Rejected(_) => true,
        Response::Txn { errors, .. } => !errors.is_empty(),
        _ => false,
    };
    if changes_nothing {
        st.rollback(cp);
    } else {
        st.keep(cp);
    }
    Ok(response)
}

/// Apply one entry and commit it. Returns the response and the watch keys to
/// fire (the caller fires them after this returns, i.e. after commit).
///
/// The whole entry, every command of a `Batch` included, is one fjall
/// batch with its index bumps and `last_applied`: readers see all of it or
/// none of it (no reader can see half a batch at the entry's index and
/// then the rest at the same index), and a crash replays it whole. A
/// `partial` marker left by an older build (one fjall batch per command)
/// is honoured: the commands it counts as done are skipped.
pub(crate) fn apply_entry(
    views: &Views,
    entry: &openraft::Entry<TypeConfig>,
) -> Result<(Response, Effects)> {
    apply_entry_until(views, entry, usize::MAX)
}

/// [`apply_entry`], stopping a `Batch` after `stop` of its commands as a
/// crash would: nothing of the entry is committed then.
pub(crate) fn apply_entry_until(
    views: &Views,
    entry: &openraft::Entry<TypeConfig>,
    stop: usize,
) -> Result<(Response, Effects)> {
    // Indexes are the log index plus the base a restore may have raised.
    let index = views.index_of(entry.log_id.index);
    let applied: Option<LogId<u64>> = Some(entry.log_id);
    let applied = encode(&applied, "last_applied")?;
    let mut st = Stage::new(views);
    let mut membership = None;
    let response = match &entry.payload {
        EntryPayload::Normal(Command::Batch { commands }) => {
            let done = views.partial(entry.log_id.index)?;
            let mut responses = Vec::with_capacity(commands.len());
            for (i, cmd) in commands.iter().enumerate() {
                if i == stop {
                    return Ok((Response::Batch(responses), Effects::default()));
                }
                if i < done {
                    responses.push(Response::None);
                    continue;
                }
                responses.push(stage_command(&mut st, index, cmd)?);
            }
            Response::Batch(responses)
        }
        EntryPayload::Normal(cmd) => stage_command(&mut st, index, cmd)?,
        EntryPayload::Membership(m) => {
            membership = Some(StoredMembership::new(Some(entry.log_id), m.clone()));
            Response::None
        }
        EntryPayload::Blank => Response::None,
    };
    let (mut batch, touched, changes) = st.into_parts();
    stage_indexes(views, &mut batch, &touched, index);
    if let Some(stored) = membership {
        batch.insert(
            views.ks(Ks::Meta),
            META_MEMBERSHIP,
            encode(&stored, "membership")?,
        );
    }
    batch.insert(views.ks(Ks::Meta), META_LAST_APPLIED, applied);
    batch.remove(views.ks(Ks::Meta), META_PARTIAL);
    batch.commit()?;
    let effects = Effects {
        keys: touched.keys.into_iter().collect(),
        lock_delays: touched.lock_delays,
        index,
        changes,
    };
    Ok((response, effects))
}

/// Dispatch a command to its table helper.
pub(crate) fn apply_command(st: &mut Stage, index: u64, cmd: &Command) -> Result<Response> {
    match cmd {
        Command::Noop {} => Ok(Response::None),
        Command::KvSet { key, value, flags } => kv::set(st, index, key, value, *flags),
        Command::KvCas {
            key,
            value,
            flags,
            index: expected,
        } => kv::cas(st, index, key, value, *flags, *expected),
        Command::KvDelete { key } => kv::delete(st, index, key),
        Command::KvDeleteCas {
            key,
            index: expected,
        } => kv::delete_cas(st, index, key, *expected),
        Command::KvDeleteTree { prefix } => kv::delete_tree(st, index, prefix),
        Command::CatalogRegister {
            node,
            skip_node_update,
            service,
            checks,
        } => catalog::register(st, index, node, *skip_node_update, service.as_ref(), checks),
        Command::CatalogDeregister {
            node,
            service_id,
            check_id,
        } => catalog::deregister(st, index, node, service_id.as_deref(), check_id.as_deref()),
        Command::SessionCreate { session: s } => session::create(st, index, s),
        Command::SessionDestroy { id } => session::destroy(st, index, id),
        Command::KvLock {
            key,
            value,
            flags,
            session: s,
        } => kv::lock(st, index, key, value, *flags, s),
        Command::KvUnlock {
            key,
            value,
            flags,
            session: s,
        } => kv::unlock(st, index, key, value, *flags, s),
        Command::Txn { ops } => txn::run(st, index, ops),
        Command::Batch { .. } => Ok(Response::Rejected("nested batch".into())),
        Command::RestoreChunk { id, seq, records } => {
            crate::backup::restore::stage_chunk(st, id, *seq, records)
        }
        // Applied by the state machine outside the stage (many batches); one
        // reaching here was batched with others, which never happens.
        Command::RestoreCommit { .. } => Ok(Response::Rejected(
            "a restore commit must be its own entry".into(),
        )),
        Command::ObjectSet {
            object,
            cas,
            unique_name,
        } => objects::set(st, index, object, *cas, *unique_name),
        Command::ObjectDelete { kind, id } => objects::delete(st, kind, id),
    }
}
