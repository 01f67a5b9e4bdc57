//! Recovery: on open, validate every record of every segment and rebuild the
//! in-memory indexes.
//!
//! Zeros after the records are preallocated space, not damage. A short or
//! bad record at the very end of the last segment is a torn write
//! (the crash came before its fsync, so raft was never told it was durable):
//! the file is cut there, with a warning. Anything else — a bad record in an
//! earlier segment, a bad CRC followed by a valid record, a hole or a gap in
//! the indexes — is [`Error::Corrupt`], reported and never dropped silently.
//! Recovery also finishes a purge interrupted by a crash (segments wholly
//! covered by `last_purged` are deleted).

use std::fs;
use std::path::Path;

use openraft::{LogId, NodeId};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::record::{self, Decoded};
use crate::segment::{self, Segment, Slot};

/// The part of a stored entry recovery needs: its log id. Other fields of
/// the msgpack map are skipped.
#[derive(Deserialize)]
#[serde(bound = "")]
struct EntryHead<NID: NodeId> {
    /// The entry's log id.
    log_id: LogId<NID>,
}

/// What recovery hands back to the store.
pub(crate) struct Recovered<NID: NodeId> {
    /// The live segments, in order, with contiguous indexes.
    pub segments: Vec<Segment>,
    /// Id of the last entry on disk, if any.
    pub last_log_id: Option<LogId<NID>>,
}

/// Scans and repairs the segments in `dir`. `last_purged` comes from the
/// metadata file.
pub(crate) fn recover<NID: NodeId>(
    dir: &Path,
    last_purged: Option<&LogId<NID>>,
) -> Result<Recovered<NID>> {
    let listed = segment::list(dir)?;
    let count = listed.len();
    // (segment, id of its last entry)
    let mut scanned: Vec<(Segment, Option<LogId<NID>>)> = Vec::with_capacity(count);
    let mut dir_changed = false;

    for (i, (first_index, path)) in listed.into_iter().enumerate() {
        let is_last = i + 1 == count;
        let bytes =
            fs::read(&path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        let corrupt = |offset: usize, reason: String| Error::Corrupt {
            segment: path.clone(),
            offset: offset as u64,
            reason,
        };

        if let Some((prev, _)) = scanned.last() {
            // A hole right after a wholly purged segment is harmless: that
            // segment is deleted below.
            let prev_purged = last_purged
                .zip(prev.last_index())
                .is_some_and(|(p, last)| last <= p.index);
            if prev.next_index() != first_index && !prev_purged {
                return Err(corrupt(
                    0,
                    format!(
                        "segment starts at index {first_index}, previous one ends before {}",
                        prev.next_index()
                    ),
                ));
            }
        }

        let mut slots = Vec::new();
        let mut last_id: Option<LogId<NID>> = None;
        let mut offset = 0usize;
        let mut torn: Option<String> = None;
        while let Some(rest) = bytes.get(offset..).filter(|r| !r.is_empty()) {
            let bad = match record::decode(rest) {
                Ok(Decoded::Record { payload, frame_len }) => {
                    let head: EntryHead<NID> = rmp_serde::from_slice(payload).map_err(|e| {
                        corrupt(offset, format!("valid crc but undecodable entry: {e}"))
                    })?;
                    let expected = first_index + slots.len() as u64;
                    if head.log_id.index != expected {
                        return Err(corrupt(
                            offset,
                            format!(
                                "entry index {} where {expected} was expected",
                                head.log_id.index
                            ),
                        ));
                    }
                    let len = u32::try_from(frame_len)
                        .map_err(|_| corrupt(offset, "frame too long".into()))?;
                    slots.push(Slot {
                        offset: offset as u64,
                        len,
                    });
                    last_id = Some(head.log_id);
                    offset += frame_len;
                    continue;
                }
                // Zeros to the end of the file: preallocated space, the
                // clean end of the records.
                Ok(Decoded::End) if rest.iter().all(|b| *b == 0) => break,
                Ok(Decoded::End) => "zero length header followed by data".to_string(),
                Ok(Decoded::Incomplete) => "incomplete record".to_string(),
                Ok(Decoded::BadCrc {
                    expected,
                    actual,
                    frame_len,
                }) => {
                    let next = offset.saturating_add(frame_len);
                    let followed = bytes
                        .get(next..)
                        .is_some_and(|r| matches!(record::decode(r), Ok(Decoded::Record { .. })));
                    let reason = format!("bad crc: expected {expected:#010x}, got {actual:#010x}");
                    if followed {
                        return Err(corrupt(
                            offset,
                            format!("{reason}, followed by a valid record"),
                        ));
                    }
                    reason
                }
                Err(e) => e.to_string(),
            };
            if !is_last {
                return Err(corrupt(offset, format!("{bad} in a sealed segment")));
            }
            torn = Some(bad);
            break;
        }

        let cut = torn.is_some();
        if let Some(reason) = torn {
            tracing::warn!(
                segment = %path.display(),
                offset,
                dropped_bytes = bytes.len() - offset,
                %reason,
                "truncating torn tail of the log"
            );
            let file = fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
            file.set_len(offset as u64)
                .and_then(|()| file.sync_all())
                .map_err(|e| Error::io(format!("truncate {}", path.display()), e))?;
        }

        if slots.is_empty() {
            if !is_last {
                return Err(corrupt(0, "empty sealed segment".into()));
            }
            // Created by a rotation that crashed before its first write.
            fs::remove_file(&path)
                .map_err(|e| Error::io(format!("remove {}", path.display()), e))?;
            dir_changed = true;
            continue;
        }
        let allocated = if cut {
            offset as u64
        } else {
            bytes.len() as u64
        };
        let seg = Segment::open(path, first_index, offset as u64, allocated, slots)?;
        scanned.push((seg, last_id));
    }

    // Finish a purge that a crash interrupted: its meta was written first.
    if let Some(purged) = last_purged {
        while let Some((seg, _)) = scanned.first() {
            if seg.last_index().is_some_and(|last| last <= purged.index) {
                fs::remove_file(&seg.path)
                    .map_err(|e| Error::io(format!("remove {}", seg.path.display()), e))?;
                dir_changed = true;
                scanned.remove(0);
            } else {
                break;
            }
        }
        if let Some((seg, _)) = scanned.first() {
            if seg.first_index > purged.index + 1 {
                return Err(Error::Corrupt {
                    segment: seg.path.clone(),
                    offset: 0,
                    reason: format!(
                        "log starts at {} but only entries up to {} were purged",
                        seg.first_index, purged.index
                    ),
                });
            }
        }
    }
    if dir_changed {
        segment::sync_dir(dir)?;
    }

    let last_log_id = scanned.last().and_then(|(_, id)| id.clone());
    Ok(Recovered {
        segments: scanned.into_iter().map(|(s, _)| s).collect(),
        last_log_id,
    })
}
