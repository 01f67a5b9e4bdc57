//! The stored-objects table: things the engine replicates without
//! interpreting them (prepared queries, the autopilot configuration), each
//! a [`StoredObject`] under `kind\0id`, with create/modify indexes, CAS
//! and per-kind unique names. An object with a session is deleted when the
//! session is invalidated; the session index finds it
//! (`o\0session\0kind\0id`).

use crate::command::Response;
use crate::error::Result;
use crate::stage::{Ks, Read, Stage};
use crate::types::StoredObject;
use crate::views::{decode, encode};
use crate::watch::Table;

fn row_key(kind: &str, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(kind.len() + id.len() + 1);
    k.extend_from_slice(kind.as_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

/// The session-index row linking `o` to its session, if it has one.
pub(crate) fn session_lookup(o: &StoredObject) -> Option<Vec<u8>> {
    if o.session.is_empty() {
        return None;
    }
    let mut k = b"o\0".to_vec();
    k.extend_from_slice(o.session.as_bytes());
    k.push(0);
    k.extend_from_slice(&row_key(&o.kind, &o.id));
    Some(k)
}

/// Delete every object living with session `id` (it was invalidated).
pub(crate) fn delete_for_session(st: &mut Stage, id: &str) -> Result<()> {
    let mut prefix = b"o\0".to_vec();
    prefix.extend_from_slice(id.as_bytes());
    prefix.push(0);
    let mut rows = Vec::new();
    st.scan(Ks::SessionIndex, &prefix, &mut |k, _| {
        rows.push(k.get(prefix.len()..).unwrap_or_default().to_vec());
        Ok(true)
    })?;
    for row in rows {
        let text = String::from_utf8_lossy(&row).into_owned();
        if let Some((kind, oid)) = text.split_once('\0') {
            delete(st, kind, oid)?;
        }
    }
    Ok(())
}

/// One object.
pub(crate) fn get(r: &(impl Read + ?Sized), kind: &str, id: &str) -> Result<Option<StoredObject>> {
    match r.get(Ks::Objects, &row_key(kind, id))? {
        Some(v) => Ok(Some(decode(&v, "stored object")?)),
        None => Ok(None),
    }
}

/// Every object of `kind`, sorted by ID.
pub(crate) fn list(r: &(impl Read + ?Sized), kind: &str) -> Result<Vec<StoredObject>> {
    let mut prefix = kind.as_bytes().to_vec();
    prefix.push(0);
    let mut out = Vec::new();
    r.scan(Ks::Objects, &prefix, &mut |_, v| {
        out.push(decode(v, "stored object")?);
        Ok(true)
    })?;
    Ok(out)
}

/// Apply [`crate::Command::ObjectSet`] at `index`.
pub(crate) fn set(
    st: &mut Stage,
    index: u64,
    object: &StoredObject,
    cas: Option<u64>,
    unique_name: bool,
) -> Result<Response> {
    let existing = get(st, &object.kind, &object.id)?;
    if let Some(expected) = cas {
        let current = existing.as_ref().map_or(0, |o| o.modify_index);
        if current != expected {
            return Ok(Response::Bool(false));
        }
    }
    if unique_name && !object.name.is_empty() {
        let clash = list(st, &object.kind)?
            .into_iter()
            .find(|o| o.id != object.id && o.name == object.name);
        if clash.is_some() {
            return Ok(Response::Rejected(format!(
                "name {:?} aliases an existing {} name",
                object.name, object.kind
            )));
        }
    }
    let stored = StoredObject {
        create_index: existing.as_ref().map_or(index, |o| o.create_index),
        modify_index: index,
        ..object.clone()
    };
    if let Some(old) = existing.as_ref().and_then(session_lookup) {
        st.remove(Ks::SessionIndex, old);
    }
    if let Some(new) = session_lookup(&stored) {
        st.insert(Ks::SessionIndex, new, []);
    }
    st.insert(
        Ks::Objects,
        row_key(&object.kind, &object.id),
        encode(&stored, "stored object")?,
    );
    st.touched.table(Table::Objects);
    Ok(Response::Bool(true))
}

/// Apply [`crate::Command::ObjectDelete`].
pub(crate) fn delete(st: &mut Stage, kind: &str, id: &str) -> Result<Response> {
    if let Some(existing) = get(st, kind, id)? {
        if let Some(lookup) = session_lookup(&existing) {
            st.remove(Ks::SessionIndex, lookup);
        }
        st.remove(Ks::Objects, row_key(kind, id));
        st.touched.table(Table::Objects);
    }
    Ok(Response::Bool(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::apply_entry;
    use crate::command::Command;
    use crate::sm_tests::entry;
    use crate::view::ReadView;
    use crate::views::Views;

    fn query(id: &str, name: &str, body: &str) -> StoredObject {
        StoredObject {
            kind: "query".into(),
            id: id.into(),
            name: name.into(),
            body: body.as_bytes().to_vec(),
            ..StoredObject::default()
        }
    }

    fn set(views: &Views, index: u64, o: StoredObject, cas: Option<u64>) -> Response {
        let cmd = Command::ObjectSet {
            object: o,
            cas,
            unique_name: true,
        };
        apply_entry(views, &entry(index, cmd)).expect("apply").0
    }

    #[test]
    fn set_cas_unique_names_and_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let views = Views::open(dir.path()).expect("open");
        assert_eq!(
            set(&views, 2, query("a", "web", "{}"), None),
            Response::Bool(true)
        );
        assert!(matches!(
            set(&views, 3, query("b", "web", "{}"), None),
            Response::Rejected(m) if m.contains("aliases")
        ));
        assert_eq!(
            set(&views, 4, query("b", "db", "{}"), Some(0)),
            Response::Bool(true)
        );
        // CAS against a stale index fails; against the current one works and
        // keeps the create index.
        assert_eq!(
            set(&views, 5, query("a", "web", "{1}"), Some(3)),
            Response::Bool(false)
        );
        assert_eq!(
            set(&views, 6, query("a", "web2", "{2}"), Some(2)),
            Response::Bool(true)
        );
        let v = ReadView::new(&views);
        let a = get(&v, "query", "a").expect("get").expect("a");
        assert_eq!(
            (a.create_index, a.modify_index, a.body),
            (2, 6, b"{2}".to_vec())
        );
        assert_eq!(list(&v, "query").expect("list").len(), 2);
        assert!(list(&v, "autopilot").expect("list").is_empty());
        drop(v);
        let cmd = Command::ObjectDelete {
            kind: "query".into(),
            id: "a".into(),
        };
        apply_entry(&views, &entry(7, cmd)).expect("apply");
        let v = ReadView::new(&views);
        assert!(get(&v, "query", "a").expect("get").is_none());
        assert_eq!(
            crate::view::table_index(&v, Table::Objects).expect("index"),
            7
        );
    }
}
