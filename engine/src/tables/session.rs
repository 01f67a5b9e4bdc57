//! The sessions table: apply of session create/destroy, invalidation (on
//! destroy, TTL expiry, a linked check going critical or away, or the
//! session's node going away) with its effect on held locks, and the reads
//! behind `/v1/session/*`.
//!
//! Rows: `sessions` id → `Session`. Lookups in `session_index` (values
//! empty): `n\0node\0id` for a node's sessions, `c\0node\0check\0id` for the
//! sessions linked to a check, `l\0id\0key` for the locks a session holds
//! (kept by the KV table's writes).

use crate::command::Response;
use crate::error::Result;
use crate::stage::{Ks, Read, Stage};
use crate::tables::{catalog, kv};
use crate::types::{KvEntry, Session, SessionBehavior, Status};
use crate::views::{decode, encode};
use crate::watch::Table;

const SEP: u8 = 0;

fn join(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(SEP);
        }
        k.extend_from_slice(p);
    }
    k
}

/// The lock row of `key` held by `session`.
pub(crate) fn lock_key(session: &str, key: &str) -> Vec<u8> {
    join(&[b"l", session.as_bytes(), key.as_bytes()])
}

fn node_key(lower: &str, id: &str) -> Vec<u8> {
    join(&[b"n", lower.as_bytes(), id.as_bytes()])
}

fn check_key(lower: &str, check: &str, id: &str) -> Vec<u8> {
    join(&[b"c", lower.as_bytes(), check.as_bytes(), id.as_bytes()])
}

/// The lookups a stored session has (its node's, one per linked check),
/// for rebuilding them from the session alone (a restore).
pub(crate) fn lookups(s: &Session) -> Vec<(Vec<u8>, Vec<u8>)> {
    let lower = s.node.to_lowercase();
    let mut out = vec![(node_key(&lower, &s.id), Vec::new())];
    for check_id in s.linked_checks() {
        out.push((check_key(&lower, &check_id, &s.id), Vec::new()));
    }
    out
}

/// The last `\0`-separated part of a lookup key (the session ID or KV key).
fn tail(key: &[u8], prefix_len: usize) -> String {
    String::from_utf8_lossy(key.get(prefix_len..).unwrap_or_default()).into_owned()
}

/// One session.
pub(crate) fn get(r: &(impl Read + ?Sized), id: &str) -> Result<Option<Session>> {
    match r.get(Ks::Sessions, id.as_bytes())? {
        Some(v) => Ok(Some(decode(&v, "session")?)),
        None => Ok(None),
    }
}

/// Every session, sorted by ID.
pub(crate) fn list(r: &(impl Read + ?Sized)) -> Result<Vec<Session>> {
    let mut out = Vec::new();
    r.scan(Ks::Sessions, b"", &mut |_, v| {
        out.push(decode(v, "session")?);
        Ok(true)
    })?;
    Ok(out)
}

/// IDs of the sessions found under a lookup prefix.
fn ids_under(r: &(impl Read + ?Sized), prefix: &[u8]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    r.scan(Ks::SessionIndex, prefix, &mut |k, _| {
        out.push(tail(k, prefix.len()));
        Ok(true)
    })?;
    Ok(out)
}

/// The sessions of a node (`lower` = lowercase name), sorted by ID.
pub(crate) fn of_node(r: &(impl Read + ?Sized), lower: &str) -> Result<Vec<Session>> {
    let mut out = Vec::new();
    for id in ids_under(r, &node_key(lower, ""))? {
        if let Some(s) = get(r, &id)? {
            out.push(s);
        }
    }
    Ok(out)
}

/// The keys a session holds locks on, sorted.
pub(crate) fn held_keys(r: &(impl Read + ?Sized), id: &str) -> Result<Vec<String>> {
    ids_under(r, &lock_key(id, ""))
}

/// Create a session after checking, against the current state, that its
/// node exists and every linked check exists there and is not critical.
pub(crate) fn create(st: &mut Stage, index: u64, session: &Session) -> Result<Response> {
    if session.id.is_empty() {
        return Ok(Response::Rejected("Missing session ID".into()));
    }
    if get(st, &session.id)?.is_some() {
        return Ok(Response::Rejected(format!(
            "Session '{}' already exists",
            session.id
        )));
    }
    let Some(node) = catalog::get_node(st, &session.node)? else {
        return Ok(Response::Rejected("Missing node registration".into()));
    };
    let lower = node.node.to_lowercase();
    let linked = session.linked_checks();
    for check_id in &linked {
        match catalog::get_check(st, &lower, check_id)? {
            None => {
                return Ok(Response::Rejected(format!(
                    "Missing check '{check_id}' registration"
                )))
            }
            Some(c) if c.status == Status::Critical => {
                return Ok(Response::Rejected(format!(
                    "Check '{check_id}' is in critical state"
                )))
            }
            Some(_) => {}
        }
    }
    let stored = Session {
        node: node.node.clone(),
        create_index: index,
        modify_index: index,
        ..session.clone()
    };
    st.insert(
        Ks::Sessions,
        stored.id.as_bytes(),
        encode(&stored, "session")?,
    );
    st.insert(Ks::SessionIndex, node_key(&lower, &stored.id), []);
    for check_id in &linked {
        st.insert(
            Ks::SessionIndex,
            check_key(&lower, check_id, &stored.id),
            [],
        );
    }
    st.touched.table(Table::Sessions);
    Ok(Response::Bool(true))
}

/// Destroy a session (unknown is a successful no-op).
pub(crate) fn destroy(st: &mut Stage, index: u64, id: &str) -> Result<Response> {
    invalidate(st, index, id)?;
    Ok(Response::Bool(true))
}

/// Remove a session and apply its behaviour to every key it holds: release
/// (clear `Session`, keep `LockIndex`) or delete. Each such key gets the
/// session's lock-delay, recorded for the leader's acquire check.
pub(crate) fn invalidate(st: &mut Stage, index: u64, id: &str) -> Result<()> {
    let Some(session) = get(st, id)? else {
        return Ok(());
    };
    let lower = session.node.to_lowercase();
    st.remove(Ks::Sessions, id.as_bytes());
    st.remove(Ks::SessionIndex, node_key(&lower, id));
    for check_id in session.linked_checks() {
        st.remove(Ks::SessionIndex, check_key(&lower, &check_id, id));
    }
    st.touched.table(Table::Sessions);
    crate::tables::objects::delete_for_session(st, id)?;
    for key in held_keys(st, id)? {
        let Some(entry) = kv::get(st, &key)? else {
            st.remove(Ks::SessionIndex, lock_key(id, &key));
            continue;
        };
        if entry.session.as_deref() != Some(id) {
            st.remove(Ks::SessionIndex, lock_key(id, &key));
            continue;
        }
        match session.behavior {
            SessionBehavior::Delete => kv::remove(st, &entry, index),
            SessionBehavior::Release => {
                let released = KvEntry {
                    session: None,
                    modify_index: index,
                    ..entry
                };
                kv::put(st, &released, Some(id))?;
            }
        }
        if session.lock_delay_ns > 0 {
            st.touched.lock_delay(&key, session.lock_delay_ns);
        }
    }
    Ok(())
}

/// Invalidate every session linked to a check (it went critical or away).
pub(crate) fn invalidate_linked(
    st: &mut Stage,
    index: u64,
    lower: &str,
    check_id: &str,
) -> Result<()> {
    let prefix = check_key(lower, check_id, "");
    for id in ids_under(st, &prefix)? {
        invalidate(st, index, &id)?;
    }
    Ok(())
}

/// Invalidate every session of a node (it is being deregistered).
pub(crate) fn invalidate_node(st: &mut Stage, index: u64, lower: &str) -> Result<()> {
    for id in ids_under(st, &node_key(lower, ""))? {
        invalidate(st, index, &id)?;
    }
    Ok(())
}
