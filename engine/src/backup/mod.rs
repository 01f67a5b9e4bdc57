//! Backups: the whole state as a logical record stream (`state.rs`, the
//! `state.bin` of a snapshot archive), written from one consistent read of
//! the views, and restored into a running cluster through the log
//! (`restore.rs`). The archive around it (tar, gzip, `meta.json`,
//! `SHA256SUMS`) is the API's: this crate has no JSON.

pub mod restore;
pub mod state;

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use fjall::Readable;

use crate::engine::Engine;
use crate::error::Result;
use crate::views::{be_u64, decode, Ks, META_INDEX_BASE, NODE_INDEX_PREFIX, SERVICE_INDEX_PREFIX};
use state::{IndexEntry, Record, StateHeader, StateWriter, Tombstone};

/// What a state stream holds, by record type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateCounts {
    /// `(type, records, encoded bytes)`, in the order types first appear.
    pub by_kind: Vec<(&'static str, u64, u64)>,
}

impl StateCounts {
    /// Count one record.
    pub fn add(&mut self, kind: &'static str, bytes: usize) {
        match self.by_kind.iter_mut().find(|(k, _, _)| *k == kind) {
            Some((_, n, b)) => {
                *n += 1;
                *b += bytes as u64;
            }
            None => self.by_kind.push((kind, 1, bytes as u64)),
        }
    }

    /// Records in all.
    pub fn total(&self) -> u64 {
        self.by_kind.iter().map(|(_, n, _)| n).sum()
    }
}

impl Engine {
    /// True if anything was ever written to the state (a KV entry, a node,
    /// a session, or a tombstone of one): a server to seed from a snapshot
    /// must not have any.
    pub fn has_state(&self) -> Result<bool> {
        let v = self.read_view();
        for ks in [Ks::Kv, Ks::Tombstones, Ks::Nodes, Ks::Sessions] {
            let mut any = false;
            crate::stage::Read::scan(&v, ks, b"", &mut |_, _| {
                any = true;
                Ok(false)
            })?;
            if any {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Write the whole state as a state stream into `w`, from one
    /// consistent read of the views; `progress` is called with the records
    /// written so far every 65,536 records. Blocking: run it off the async
    /// runtime. Returns the header, what was written, and `w`.
    pub fn write_state<W: Write>(
        &self,
        w: W,
        mut progress: impl FnMut(u64),
    ) -> Result<(StateHeader, StateCounts, W)> {
        let views = self.views();
        let snap = {
            let _gate = views
                .gate
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            views.db.snapshot()
        };
        let (applied, _) = views.applied_state_at(&snap)?;
        let base = snap
            .get(views.ks(Ks::Meta), META_INDEX_BASE)?
            .map_or(0, |v| be_u64(&v));
        let header = StateHeader {
            index: applied.map_or(0, |l| l.index + base),
            term: applied.map_or(0, |l| l.leader_id.term),
            muster_version: env!("CARGO_PKG_VERSION").to_string(),
            created_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            ..StateHeader::default()
        };
        let mut out = StateWriter::new(w, &header)?;
        let mut counts = StateCounts::default();
        let mut emit = |record: Record, out: &mut StateWriter<W>| -> Result<()> {
            let kind = record.kind();
            let bytes = out.write(&record)?;
            counts.add(kind, bytes);
            if counts.total() % 65_536 == 0 {
                progress(counts.total());
            }
            Ok(())
        };
        for (ks, what) in [
            (Ks::Nodes, "node"),
            (Ks::Services, "service"),
            (Ks::Checks, "check"),
            (Ks::Kv, "kv entry"),
            (Ks::Sessions, "session"),
            (Ks::Objects, "stored object"),
        ] {
            for item in snap.iter(views.ks(ks)) {
                let (_, v) = item.into_inner()?;
                let record = match ks {
                    Ks::Nodes => Record::Node(decode(&v, what)?),
                    Ks::Services => Record::Service(decode(&v, what)?),
                    Ks::Checks => Record::Check(decode(&v, what)?),
                    Ks::Kv => Record::Kv(decode(&v, what)?),
                    Ks::Objects => Record::Object(decode(&v, what)?),
                    _ => Record::Session(decode(&v, what)?),
                };
                emit(record, &mut out)?;
            }
        }
        for item in snap.iter(views.ks(Ks::Tombstones)) {
            let (k, v) = item.into_inner()?;
            let tombstone = Tombstone {
                key: String::from_utf8_lossy(&k).into_owned(),
                index: be_u64(&v),
            };
            emit(Record::Tombstone(tombstone), &mut out)?;
        }
        for item in snap.iter(views.ks(Ks::Meta)) {
            let (k, v) = item.into_inner()?;
            let name = String::from_utf8_lossy(&k);
            let name = match name.strip_prefix("index/") {
                Some(table) => table.to_string(),
                None if name.starts_with(SERVICE_INDEX_PREFIX)
                    || name.starts_with(NODE_INDEX_PREFIX) =>
                {
                    name.into_owned()
                }
                None => continue,
            };
            let entry = IndexEntry {
                name,
                index: be_u64(&v),
            };
            emit(Record::Index(entry), &mut out)?;
        }
        let w = out.finish()?;
        Ok((header, counts, w))
    }
}
