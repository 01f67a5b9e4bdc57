//! A read-only walk of a log directory, for the offline tools (`muster log
//! inspect|dump|verify|replay`): every record of every segment in order,
//! with its file and offset, and a report of what is damaged and where.
//! Unlike recovery it never changes anything: a torn tail is reported (as
//! harmless: the crash came before its fsync), not cut.
//!
//! The scan knows records, not entries: the caller decodes each payload
//! (and checks that the indexes follow each other).

use std::fs;
use std::path::{Path, PathBuf};

use openraft::{LogId, NodeId};

use crate::error::{Error, Result};
use crate::meta;
use crate::record::{self, Decoded};
use crate::segment;

/// One segment as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The file.
    pub path: PathBuf,
    /// The index its name says it starts at.
    pub first_index: u64,
    /// Valid records in it.
    pub records: u64,
    /// Bytes of valid records.
    pub bytes: u64,
    /// Bytes of the file (records, then preallocated zeros).
    pub file_bytes: u64,
}

/// Damage found by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The file.
    pub path: PathBuf,
    /// Where in it.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
    /// A torn write at the very end of the last segment: an append the
    /// crash interrupted before its fsync (never acknowledged), cut at the
    /// next open. Everything else is corruption.
    pub torn_tail: bool,
}

/// What a scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// The segments, in order.
    pub segments: Vec<SegmentInfo>,
    /// Damage, in order (a scan stops reading a segment at its first).
    pub damage: Vec<Damage>,
    /// Entries up to this index were purged (they are in a snapshot).
    pub last_purged: Option<u64>,
    /// The committed index the log last recorded.
    pub committed: Option<u64>,
}

impl ScanReport {
    /// True if nothing but a torn tail was found.
    pub fn sound(&self) -> bool {
        self.damage.iter().all(|d| d.torn_tail)
    }
}

/// The index entries were purged up to (they are in a snapshot), from the
/// metadata alone.
pub fn last_purged(dir: &Path) -> Result<Option<u64>> {
    let meta: meta::Meta<u64> = meta::load(dir)?;
    Ok(meta.last_purged.map(|l| l.index))
}

/// Walk the log in `dir`, calling `visit(path, offset, payload)` for each
/// valid record in order (an error from `visit` stops the walk). Damage is
/// reported, not returned as an error; only failing to read is.
pub fn scan(
    dir: &Path,
    mut visit: impl FnMut(&Path, u64, &[u8]) -> Result<()>,
) -> Result<ScanReport> {
    let meta: meta::Meta<u64> = meta::load(dir)?;
    let mut report = ScanReport {
        last_purged: meta.last_purged.map(|l: LogId<u64>| l.index),
        committed: meta
            .committed
            .max(meta::load_committed_hint(dir))
            .map(|l: LogId<u64>| l.index),
        ..ScanReport::default()
    };
    let listed = segment::list(dir)?;
    let count = listed.len();
    for (i, (first_index, path)) in listed.into_iter().enumerate() {
        let is_last = i + 1 == count;
        let bytes =
            fs::read(&path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        let mut info = SegmentInfo {
            path: path.clone(),
            first_index,
            records: 0,
            bytes: 0,
            file_bytes: bytes.len() as u64,
        };
        let mut offset = 0usize;
        while let Some(rest) = bytes.get(offset..).filter(|r| !r.is_empty()) {
            let problem = match record::decode(rest) {
                Ok(Decoded::Record { payload, frame_len }) => {
                    visit(&path, offset as u64, payload)?;
                    info.records += 1;
                    info.bytes += frame_len as u64;
                    offset += frame_len;
                    continue;
                }
                Ok(Decoded::End) if rest.iter().all(|b| *b == 0) => None,
                Ok(Decoded::End) => Some("a zero length header followed by data".to_string()),
                Ok(Decoded::Incomplete) => Some("an incomplete record".to_string()),
                Ok(Decoded::BadCrc {
                    expected,
                    actual,
                    frame_len,
                }) => {
                    let next = offset.saturating_add(frame_len);
                    let followed = bytes
                        .get(next..)
                        .is_some_and(|r| matches!(record::decode(r), Ok(Decoded::Record { .. })));
                    let why = format!("bad CRC (stored {expected:#010x}, computed {actual:#010x})");
                    Some(if followed {
                        format!("{why}, followed by a valid record")
                    } else {
                        why
                    })
                }
                Err(e) => Some(e.to_string()),
            };
            if let Some(reason) = problem {
                let followed = reason.contains("followed by a valid record");
                report.damage.push(Damage {
                    path: path.clone(),
                    offset: offset as u64,
                    torn_tail: is_last && !followed,
                    reason,
                });
            }
            break;
        }
        report.segments.push(info);
    }
    Ok(report)
}

/// Read the entry ids out of payloads: a helper for callers that only need
/// the index and term (`payload` is a stored entry, named-field msgpack).
pub fn entry_id<NID: NodeId>(payload: &[u8]) -> Result<LogId<NID>> {
    #[derive(serde::Deserialize)]
    #[serde(bound = "")]
    struct Head<NID: NodeId> {
        log_id: LogId<NID>,
    }
    let head: Head<NID> = rmp_serde::from_slice(payload).map_err(|e| Error::Corrupt {
        segment: PathBuf::new(),
        offset: 0,
        reason: format!("valid CRC but undecodable entry: {e}"),
    })?;
    Ok(head.log_id)
}
