//! The KV table: apply of set/cas/delete/lock/unlock commands and the reads
//! behind `/v1/kv`. Deletes leave tombstones so prefix indexes never go
//! backwards. Locks are recorded in the session index (`l\0session\0key`)
//! so invalidating a session finds its keys without a scan.

use crate::command::Response;
use crate::error::Result;
use crate::stage::{Ks, Read, Stage};
use crate::tables::session;
use crate::types::KvEntry;
use crate::views::{be_u64, decode, encode};
use crate::watch::{Table, WatchKey};

/// Read one entry.
pub(crate) fn get(r: &(impl Read + ?Sized), key: &str) -> Result<Option<KvEntry>> {
    match r.get(Ks::Kv, key.as_bytes())? {
        Some(v) => Ok(Some(decode(&v, "kv entry")?)),
        None => Ok(None),
    }
}

/// Every entry under `prefix`, sorted by key.
pub(crate) fn list(r: &(impl Read + ?Sized), prefix: &str) -> Result<Vec<KvEntry>> {
    let mut out = Vec::new();
    r.scan(Ks::Kv, prefix.as_bytes(), &mut |_, v| {
        out.push(decode(v, "kv entry")?);
        Ok(true)
    })?;
    Ok(out)
}

/// Max delete index of tombstones under `prefix` (0 if none).
pub(crate) fn tombstone_index(r: &(impl Read + ?Sized), prefix: &str) -> Result<u64> {
    let mut max = 0;
    r.scan(Ks::Tombstones, prefix.as_bytes(), &mut |_, v| {
        max = max.max(be_u64(v));
        Ok(true)
    })?;
    Ok(max)
}

/// Stage a write of `entry` (which is new or changed), keeping the session
/// index's lock rows in step with `entry.session`.
pub(crate) fn put(st: &mut Stage, entry: &KvEntry, previous_holder: Option<&str>) -> Result<()> {
    st.insert(Ks::Kv, entry.key.as_bytes(), encode(entry, "kv entry")?);
    // A live key's own ModifyIndex covers it in prefix indexes, so its
    // tombstone (if any) is no longer needed.
    st.remove(Ks::Tombstones, entry.key.as_bytes());
    if previous_holder != entry.session.as_deref() {
        if let Some(old) = previous_holder {
            st.remove(Ks::SessionIndex, session::lock_key(old, &entry.key));
        }
        if let Some(new) = &entry.session {
            st.insert(Ks::SessionIndex, session::lock_key(new, &entry.key), []);
        }
    }
    st.touched.table(Table::Kv);
    st.touched.key(WatchKey::KvKey(entry.key.clone()));
    Ok(())
}

/// Stage a delete of `existing` at `index`, leaving a tombstone.
pub(crate) fn remove(st: &mut Stage, existing: &KvEntry, index: u64) {
    st.remove(Ks::Kv, existing.key.as_bytes());
    st.insert(
        Ks::Tombstones,
        existing.key.as_bytes(),
        index.to_be_bytes().to_vec(),
    );
    if let Some(holder) = &existing.session {
        st.remove(Ks::SessionIndex, session::lock_key(holder, &existing.key));
    }
    st.touched.table(Table::Kv);
    st.touched.key(WatchKey::KvKey(existing.key.clone()));
}

/// Set `key` unconditionally (keeps an existing lock holder). Returns
/// `Bool(true)`; an identical write changes nothing.
pub(crate) fn set(
    st: &mut Stage,
    index: u64,
    key: &str,
    value: &[u8],
    flags: u64,
) -> Result<Response> {
    let existing = get(st, key)?;
    write(st, index, key, value, flags, existing)?;
    Ok(Response::Bool(true))
}

/// Write value and flags over `existing` (or a new entry), keeping its lock
/// fields.
fn write(
    st: &mut Stage,
    index: u64,
    key: &str,
    value: &[u8],
    flags: u64,
    existing: Option<KvEntry>,
) -> Result<()> {
    let entry = match existing {
        Some(e) if e.value == value && e.flags == flags => return Ok(()),
        Some(e) => KvEntry {
            value: value.to_vec(),
            flags,
            modify_index: index,
            ..e
        },
        None => new_entry(index, key, value, flags),
    };
    let holder = entry.session.clone();
    put(st, &entry, holder.as_deref())
}

fn new_entry(index: u64, key: &str, value: &[u8], flags: u64) -> KvEntry {
    KvEntry {
        key: key.to_string(),
        value: value.to_vec(),
        flags,
        create_index: index,
        modify_index: index,
        lock_index: 0,
        session: None,
    }
}

/// Check-and-set.
pub(crate) fn cas(
    st: &mut Stage,
    index: u64,
    key: &str,
    value: &[u8],
    flags: u64,
    expected: u64,
) -> Result<Response> {
    let existing = get(st, key)?;
    let ok = match &existing {
        None => expected == 0,
        Some(e) => expected != 0 && e.modify_index == expected,
    };
    if ok {
        write(st, index, key, value, flags, existing)?;
    }
    Ok(Response::Bool(ok))
}

/// Acquire `key` for `session` and write value and flags (§8.3): an unlocked
/// or absent key is taken (`LockIndex` + 1); the holder re-acquiring only
/// writes; another holder → `false`. An unknown session is rejected with
/// Consul's `invalid session` message. (The lock-delay window is checked by
/// the leader before proposing: it is measured on the leader's clock.)
pub(crate) fn lock(
    st: &mut Stage,
    index: u64,
    key: &str,
    value: &[u8],
    flags: u64,
    session_id: &str,
) -> Result<Response> {
    if session_id.is_empty() {
        return Ok(Response::Rejected("missing session".into()));
    }
    if session::get(st, session_id)?.is_none() {
        return Ok(Response::Rejected(format!(
            "invalid session \"{session_id}\""
        )));
    }
    let existing = get(st, key)?;
    let (entry, previous) = match existing {
        Some(e) if e.session.as_deref() == Some(session_id) => {
            if e.value == value && e.flags == flags {
                return Ok(Response::Bool(true));
            }
            let previous = e.session.clone();
            (
                KvEntry {
                    value: value.to_vec(),
                    flags,
                    modify_index: index,
                    ..e
                },
                previous,
            )
        }
        Some(e) if e.session.is_some() => return Ok(Response::Bool(false)),
        Some(e) => (
            KvEntry {
                value: value.to_vec(),
                flags,
                modify_index: index,
                lock_index: e.lock_index + 1,
                session: Some(session_id.to_string()),
                ..e
            },
            None,
        ),
        None => (
            KvEntry {
                lock_index: 1,
                session: Some(session_id.to_string()),
                ..new_entry(index, key, value, flags)
            },
            None,
        ),
    };
    put(st, &entry, previous.as_deref())?;
    Ok(Response::Bool(true))
}

/// Release `key` held by `session` and write value and flags: `LockIndex`
/// kept, no lock-delay. Not held by `session` → `false`.
pub(crate) fn unlock(
    st: &mut Stage,
    index: u64,
    key: &str,
    value: &[u8],
    flags: u64,
    session_id: &str,
) -> Result<Response> {
    match get(st, key)? {
        Some(e) if e.session.as_deref() == Some(session_id) && !session_id.is_empty() => {
            let entry = KvEntry {
                value: value.to_vec(),
                flags,
                modify_index: index,
                session: None,
                ..e
            };
            put(st, &entry, Some(session_id))?;
            Ok(Response::Bool(true))
        }
        _ => Ok(Response::Bool(false)),
    }
}

/// Delete one key (absent is a successful no-op).
pub(crate) fn delete(st: &mut Stage, index: u64, key: &str) -> Result<Response> {
    if let Some(e) = get(st, key)? {
        remove(st, &e, index);
    }
    Ok(Response::Bool(true))
}

/// Delete one key if its `ModifyIndex` equals `expected` (absent → true).
pub(crate) fn delete_cas(st: &mut Stage, index: u64, key: &str, expected: u64) -> Result<Response> {
    match get(st, key)? {
        None => Ok(Response::Bool(true)),
        Some(e) if e.modify_index == expected => {
            remove(st, &e, index);
            Ok(Response::Bool(true))
        }
        Some(_) => Ok(Response::Bool(false)),
    }
}

/// Delete every key under `prefix`.
pub(crate) fn delete_tree(st: &mut Stage, index: u64, prefix: &str) -> Result<Response> {
    for e in list(st, prefix)? {
        remove(st, &e, index);
    }
    Ok(Response::Bool(true))
}
