//! Offline access to a views directory without raft: apply entries
//! directly and read the results. For tools that rebuild or compare views
//! (`muster log replay`) and for benchmarks of the apply path. Never use it
//! on the views of a running engine (fjall allows one process per
//! directory, and raft must be the only writer).

use std::path::Path;

use crate::apply::apply_entry;
use crate::command::Response;
use crate::error::Result;
use crate::raft::TypeConfig;
use crate::tables::kv;
use crate::types::KvEntry;
use crate::views::Views;

/// Views opened without raft.
pub struct OfflineViews {
    views: Views,
}

impl OfflineViews {
    /// Open (or create) the views in `dir`.
    pub fn open(dir: &Path) -> Result<OfflineViews> {
        Ok(OfflineViews {
            views: Views::open(dir)?,
        })
    }

    /// Apply one entry exactly as the state machine does (one batch).
    pub fn apply(&self, entry: &openraft::Entry<TypeConfig>) -> Result<Response> {
        Ok(apply_entry(&self.views, entry)?.0)
    }

    /// Read one KV entry.
    pub fn kv_get(&self, key: &str) -> Result<Option<KvEntry>> {
        kv::get(&self.views, key)
    }

    /// Index of the last applied entry (0 if none).
    pub fn applied_index(&self) -> Result<u64> {
        Ok(self.views.applied_state()?.0.map(|l| l.index).unwrap_or(0))
    }
}
