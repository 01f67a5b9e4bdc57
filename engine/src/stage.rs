//! `Stage`: the writes of one log entry, staged over the views and
//! readable before they are committed (read-your-writes), so commands with
//! several steps (transactions, session invalidation releasing locks) see
//! their own earlier steps, and the commands of a batch entry see the ones
//! before them. Each command runs between a [`Checkpoint`] and either
//! [`Stage::keep`] or [`Stage::rollback`] (a rejected command leaves no
//! trace); the whole entry then becomes one fjall batch, which readers see
//! all at once. `Read` is the read interface shared by the committed views
//! (the query path) and a stage (the apply path), so each table's read
//! helpers are written once.

use std::collections::BTreeMap;
use std::mem;
use std::ops::Bound;

use fjall::{OwnedWriteBatch, Slice};

use crate::apply::Touched;
use crate::error::Result;
use crate::feed::{Change, Topic};
use crate::view::ReadView;
pub(crate) use crate::views::Ks;
use crate::views::Views;

/// A scan's visitor: gets each row, returns `false` to stop.
pub(crate) type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'a;

/// Point reads and ordered prefix scans over rows.
pub(crate) trait Read {
    /// One row.
    fn get(&self, ks: Ks, key: &[u8]) -> Result<Option<Slice>>;
    /// Every row whose key starts with `prefix`, in key order, until `f`
    /// returns `false`.
    fn scan(&self, ks: Ks, prefix: &[u8], f: &mut Visit<'_>) -> Result<()>;
}

impl Read for Views {
    fn get(&self, ks: Ks, key: &[u8]) -> Result<Option<Slice>> {
        Ok(self.ks(ks).get(key)?)
    }

    fn scan(&self, ks: Ks, prefix: &[u8], f: &mut Visit<'_>) -> Result<()> {
        for item in self.ks(ks).prefix(prefix) {
            let (k, v) = item.into_inner()?;
            if !f(&k, &v)? {
                break;
            }
        }
        Ok(())
    }
}

/// A staged row: `Some` = written, `None` = removed.
type Row = Option<Slice>;

/// A row's staged value before the current command wrote it (`None`: it
/// was not staged).
type Undo = ((Ks, Vec<u8>), Option<Row>);

/// The staged writes of one entry.
pub(crate) struct Stage<'v> {
    /// The committed views underneath (for the batch).
    pub views: &'v Views,
    /// One consistent read of them: what the stage reads below its own
    /// writes (on the apply path nothing else writes meanwhile; a read-only
    /// transaction must not see an apply land halfway through).
    base: ReadView<'v>,
    /// Staged rows: `Some` = written, `None` = removed.
    overlay: BTreeMap<(Ks, Vec<u8>), Row>,
    /// What the current command changed (indexes to bump, watches to fire).
    pub touched: Touched,
    /// What the current command overwrote in `overlay` (`None`: the row
    /// was not staged), newest last, to undo it on rollback.
    undo: Vec<Undo>,
}

/// Where a command began: what the entry's earlier commands touched.
#[must_use]
pub(crate) struct Checkpoint {
    touched: Touched,
}

impl<'v> Stage<'v> {
    /// An empty stage over `views`.
    pub fn new(views: &'v Views) -> Stage<'v> {
        Stage {
            views,
            base: ReadView::new(views),
            overlay: BTreeMap::new(),
            touched: Touched::default(),
            undo: Vec::new(),
        }
    }

    /// Begin a command.
    pub fn checkpoint(&mut self) -> Checkpoint {
        self.undo.clear();
        Checkpoint {
            touched: mem::take(&mut self.touched),
        }
    }

    /// Keep the command begun at `cp`.
    pub fn keep(&mut self, cp: Checkpoint) {
        self.undo.clear();
        let mine = mem::replace(&mut self.touched, cp.touched);
        self.touched.merge(mine);
    }

    /// Undo the command begun at `cp`: its rows and what it touched.
    pub fn rollback(&mut self, cp: Checkpoint) {
        while let Some((key, before)) = self.undo.pop() {
            match before {
                Some(row) => {
                    self.overlay.insert(key, row);
                }
                None => {
                    self.overlay.remove(&key);
                }
            }
        }
        self.touched = cp.touched;
    }

    fn stage(&mut self, ks: Ks, key: Vec<u8>, row: Row) {
        let before = self.overlay.insert((ks, key.clone()), row);
        self.undo.push(((ks, key), before));
    }

    /// Stage a row write.
    pub fn insert(&mut self, ks: Ks, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.stage(ks, key.into(), Some(Slice::from(value.into())));
    }

    /// Stage a row removal.
    pub fn remove(&mut self, ks: Ks, key: impl Into<Vec<u8>>) {
        self.stage(ks, key.into(), None);
    }

    /// True if the row exists (staged or committed).
    pub fn contains(&self, ks: Ks, key: &[u8]) -> Result<bool> {
        Ok(self.get(ks, key)?.is_some())
    }

    /// The entry's rows as one fjall batch, what its kept commands
    /// touched, and its rows for the change feed, for the caller to commit.
    pub fn into_parts(self) -> (OwnedWriteBatch, Touched, Vec<Change>) {
        let mut batch = self.views.db.batch();
        let mut changes = Vec::new();
        for ((ks, key), row) in self.overlay {
            if let Some(topic) = Topic::of(ks) {
                changes.push(Change {
                    topic,
                    key: key.clone(),
                    value: row.clone(),
                });
            }
            let handle = self.views.ks(ks);
            match row {
                Some(value) => batch.insert(handle, key, value),
                None => batch.remove(handle, key),
            }
        }
        (batch, self.touched, changes)
    }
}

impl Read for Stage<'_> {
    fn get(&self, ks: Ks, key: &[u8]) -> Result<Option<Slice>> {
        // Most single commands read before they write: skip the owned-key
        // lookup while nothing is staged.
        if self.overlay.is_empty() {
            return self.base.get(ks, key);
        }
        // A borrowed lookup would need a custom key type; staged sets are
        // small, so the allocation is cheap next to the fjall read it saves.
        match self.overlay.get(&(ks, key.to_vec())) {
            Some(staged) => Ok(staged.clone()),
            None => self.base.get(ks, key),
        }
    }

    fn scan(&self, ks: Ks, prefix: &[u8], f: &mut Visit<'_>) -> Result<()> {
        let staged: Vec<(&Vec<u8>, &Option<Slice>)> = self
            .overlay
            .range((Bound::Included((ks, prefix.to_vec())), Bound::Unbounded))
            .take_while(|((k, key), _)| *k == ks && key.starts_with(prefix))
            .map(|((_, key), v)| (key, v))
            .collect();
        if staged.is_empty() {
            return self.base.scan(ks, prefix, f);
        }
        let mut merged: BTreeMap<Vec<u8>, Slice> = BTreeMap::new();
        self.base.scan(ks, prefix, &mut |k, v| {
            merged.insert(k.to_vec(), Slice::from(v));
            Ok(true)
        })?;
        for (key, v) in staged {
            match v {
                Some(v) => {
                    merged.insert(key.clone(), v.clone());
                }
                None => {
                    merged.remove(key);
                }
            }
        }
        for (k, v) in &merged {
            if !f(k, v)? {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_reads_its_own_writes_and_hides_its_removals() {
        let dir = tempfile::tempdir().expect("test");
        let views = Views::open(dir.path()).expect("test");
        let mut b = views.db.batch();
        b.insert(views.ks(Ks::Kv), "a/1", "one");
        b.insert(views.ks(Ks::Kv), "a/2", "two");
        b.insert(views.ks(Ks::Kv), "b", "bee");
        b.commit().expect("test");

        let mut st = Stage::new(&views);
        st.insert(Ks::Kv, "a/3", "three");
        st.remove(Ks::Kv, "a/1");
        st.insert(Ks::Kv, "a/2", "deux");
        assert!(st.get(Ks::Kv, b"a/1").expect("test").is_none());
        assert_eq!(
            &*st.get(Ks::Kv, b"a/2").expect("test").expect("test"),
            b"deux"
        );
        let mut seen = Vec::new();
        st.scan(Ks::Kv, b"a/", &mut |k, v| {
            seen.push((k.to_vec(), v.to_vec()));
            Ok(true)
        })
        .expect("test");
        assert_eq!(
            seen,
            vec![
                (b"a/2".to_vec(), b"deux".to_vec()),
                (b"a/3".to_vec(), b"three".to_vec())
            ]
        );
        // Nothing is visible in the views until the batch commits.
        assert_eq!(
            &*views.ks(Ks::Kv).get("a/2").expect("test").expect("test"),
            b"two"
        );
        let (batch, _, _) = st.into_parts();
        batch.commit().expect("test");
        assert_eq!(
            &*views.ks(Ks::Kv).get("a/2").expect("test").expect("test"),
            b"deux"
        );
        assert!(views.ks(Ks::Kv).get("a/1").expect("test").is_none());
    }
}
