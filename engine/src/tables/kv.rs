//! The KV table: apply of set/cas/delete commands and the reads behind
//! `/v1/kv`. Deletes leave tombstones so prefix indexes never go backwards.

use fjall::OwnedWriteBatch;

use crate::apply::Touched;
use crate::command::Response;
use crate::error::Result;
use crate::types::KvEntry;
use crate::views::{be_u64, decode, encode, Views};
use crate::watch::{Table, WatchKey};

/// Read one entry.
pub(crate) fn get(views: &Views, key: &str) -> Result<Option<KvEntry>> {
    match views.kv.get(key.as_bytes())? {
        Some(v) => Ok(Some(decode(&v, "kv entry")?)),
        None => Ok(None),
    }
}

/// Every entry under `prefix`, sorted by key.
pub(crate) fn list(views: &Views, prefix: &str) -> Result<Vec<KvEntry>> {
    let mut out = Vec::new();
    for item in views.kv.prefix(prefix.as_bytes()) {
        let (_, v) = item.into_inner()?;
        out.push(decode(&v, "kv entry")?);
    }
    Ok(out)
}

/// Max delete index of tombstones under `prefix` (0 if none).
pub(crate) fn tombstone_index(views: &Views, prefix: &str) -> Result<u64> {
    let mut max = 0;
    for item in views.tombstones.prefix(prefix.as_bytes()) {
        let (_, v) = item.into_inner()?;
        max = max.max(be_u64(&v));
    }
    Ok(max)
}

/// Stage a write of `entry` (which is new or changed).
fn put(
    views: &Views,
    batch: &mut OwnedWriteBatch,
    touched: &mut Touched,
    entry: &KvEntry,
) -> Result<()> {
    batch.insert(&views.kv, entry.key.as_bytes(), encode(entry, "kv entry")?);
    // A live key's own ModifyIndex covers it in prefix indexes, so its
    // tombstone (if any) is no longer needed.
    batch.remove(&views.tombstones, entry.key.as_bytes());
    touched.table(Table::Kv);
    touched.key(WatchKey::KvKey(entry.key.clone()));
    Ok(())
}

/// Stage a delete of `key` at `index`, leaving a tombstone.
fn remove(
    views: &Views,
    batch: &mut OwnedWriteBatch,
    touched: &mut Touched,
    key: &str,
    index: u64,
) {
    batch.remove(&views.kv, key.as_bytes());
    batch.insert(
        &views.tombstones,
        key.as_bytes(),
        index.to_be_bytes().to_vec(),
    );
    touched.table(Table::Kv);
    touched.key(WatchKey::KvKey(key.to_string()));
}

/// Set `key` unconditionally (keeps an existing lock holder). Returns
/// `Bool(true)`; an identical write changes nothing.
pub(crate) fn set(
    views: &Views,
    batch: &mut OwnedWriteBatch,
    touched: &mut Touched,
    index: u64,
    key: &str,
    value: &[u8],
    flags: u64,
) -> Result<Response> {
    let existing = get(views, key)?;
    write(views, batch, touched, index, key, value, flags, existing)?;
    Ok(Response::Bool(true))
}

#[allow(clippy::too_many_arguments)]
fn write(
    views: &Views,
    batch: &mut OwnedWriteBatch,
    touched: &mut Touched,
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
        None => KvEntry {
            key: key.to_string(),
            value: value.to_vec(),
            flags,
            create_index: index,
            modify_index: index,
            lock_index: 0,
            session: None,
        },
    };
    put(views, batch, touched, &entry)
}

/// Check-and-set.
#[allow(clippy::too_many_arguments)]
pub(crate) fn cas(
    views: &Views,
    batch: &mut OwnedWriteBatch,
    touched: &mut Touched,
    index: u64,
    key: &str,
    value: &[u8],
    flags: u64,
    expected: u64,
) -> Result<Response> {
    let existing = get(views, key)?;
    let ok = match &existing {
        None => expected == 0,
        Some(e) => expected != 0 && e.modify_index == expected,
    };
    if ok {
        write(views, batch, touched, index, key, value, flags, existing)?;
    }
    Ok(Response::Bool(ok))
}

/// Delete one key (absent is a successful no-op).
pub(crate) fn delete(
    views: &Views,
    batch: &mut OwnedWriteBatch,
    touched: &mut Touched,
    index: u64,
    key: &str,
) -> Result<Response> {
    if views.kv.contains_key(key.as_bytes())? {
        remove(views, batch, touched, key, index);
    }
    Ok(Response::Bool(true))
}

/// Delete one key if its `ModifyIndex` equals `expected` (absent → true).
pub(crate) fn delete_cas(
    views: &Views,
    batch: &mut OwnedWriteBatch,
    touched: &mut Touched,
    index: u64,
    key: &str,
    expected: u64,
) -> Result<Response> {
    match get(views, key)? {
        None => Ok(Response::Bool(true)),
        Some(e) if e.modify_index == expected => {
            remove(views, batch, touched, key, index);
            Ok(Response::Bool(true))
        }
        Some(_) => Ok(Response::Bool(false)),
    }
}

/// Delete every key under `prefix`.
pub(crate) fn delete_tree(
    views: &Views,
    batch: &mut OwnedWriteBatch,
    touched: &mut Touched,
    index: u64,
    prefix: &str,
) -> Result<Response> {
    for item in views.kv.prefix(prefix.as_bytes()) {
        let key = item.key()?;
        let key = String::from_utf8_lossy(&key).into_owned();
        remove(views, batch, touched, &key, index);
    }
    Ok(Response::Bool(true))
}
