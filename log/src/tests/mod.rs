//! Tests of the whole store: openraft's suite, model-based proptests,
//! recovery after cuts and corruption, group commit and rotation.
//! Shared helpers live here; each file is one concern.

mod props;
mod scenarios;
mod suite;

use std::io::Cursor;
use std::sync::mpsc;

use openraft::{CommittedLeaderId, EntryPayload, LogId};

use crate::{LogStore, Result};

openraft::declare_raft_types!(
    /// The test type config: `String` requests and responses.
    pub TestConfig
);

/// An entry type for the test config.
pub type TestEntry = openraft::Entry<TestConfig>;

// `declare_raft_types!` needs `Cursor` in scope for its default snapshot type.
const _: Option<Cursor<Vec<u8>>> = None;

/// A normal entry at `index` in `term`, with a payload that names it.
pub fn entry(term: u64, index: u64) -> TestEntry {
    TestEntry {
        log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
        payload: EntryPayload::Normal(format!("entry {index} of term {term}")),
    }
}

/// Appends and waits for the fsync acknowledgement.
pub fn append_sync(store: &mut LogStore<TestConfig>, entries: Vec<TestEntry>) -> Result<()> {
    let (tx, rx) = mpsc::channel();
    store.append_with(entries, move |r| {
        let _ = tx.send(r);
    })?;
    let ack = rx
        .recv()
        .map_err(|e| crate::Error::io("ack", std::io::Error::other(e)))?;
    ack.map_err(|e| crate::Error::io("flush", e))
}

/// The last segment file of the log in `dir` and its first index.
pub fn last_segment(dir: &std::path::Path) -> crate::Result<(u64, std::path::PathBuf)> {
    crate::segment::list(dir)?
        .pop()
        .ok_or_else(|| crate::Error::io("no segment", std::io::ErrorKind::NotFound.into()))
}
