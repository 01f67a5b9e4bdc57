//! `ReadView`: one consistent read of the views. Every query runs on one
//! (a fjall snapshot taken when the query starts), so a response never
//! mixes two applied states: an apply batch is published to readers all at
//! once, and a view sees either all of it or none. The table and finer
//! indexes are read through the same view as the rows they describe.

use fjall::{Readable, Slice};

use crate::error::Result;
use crate::stage::{Ks, Read, Visit};
use crate::views::{be_u64, index_key, Views};
use crate::watch::Table;

/// A consistent read of the views; cheap to open, meant to live for one
/// query (an open view keeps the versions it sees from being compacted).
pub(crate) struct ReadView<'v> {
    /// The keyspace handles.
    views: &'v Views,
    /// The point in the views' history this view reads.
    snap: fjall::Snapshot,
}

impl<'v> ReadView<'v> {
    /// A view of everything committed so far.
    pub fn new(views: &'v Views) -> ReadView<'v> {
        // Never a view of half a wholesale replacement (see `Views::gate`).
        let _gate = views
            .gate
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ReadView {
            views,
            snap: views.db.snapshot(),
        }
    }
}

impl Read for ReadView<'_> {
    fn get(&self, ks: Ks, key: &[u8]) -> Result<Option<Slice>> {
        Ok(self.snap.get(self.views.ks(ks), key)?)
    }

    fn scan(&self, ks: Ks, prefix: &[u8], f: &mut Visit<'_>) -> Result<()> {
        for item in self.snap.prefix(self.views.ks(ks), prefix) {
            let (k, v) = item.into_inner()?;
            if !f(&k, &v)? {
                break;
            }
        }
        Ok(())
    }
}

/// A table's max index as `r` sees it (0 if never written).
pub(crate) fn table_index(r: &(impl Read + ?Sized), table: Table) -> Result<u64> {
    Ok(r.get(Ks::Meta, index_key(table))?
        .map(|v| be_u64(&v))
        .unwrap_or(0))
}

/// A finer index stored in `meta` under `key`, as `r` sees it (0 if never
/// written).
pub(crate) fn meta_index(r: &(impl Read + ?Sized), key: &str) -> Result<u64> {
    Ok(r.get(Ks::Meta, key.as_bytes())?
        .map(|v| be_u64(&v))
        .unwrap_or(0))
}
