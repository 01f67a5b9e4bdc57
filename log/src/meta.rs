//! The small metadata file `meta`: vote, committed log id, last purged log id.
//!
//! It is replaced atomically (write `meta.tmp`, fsync, rename over `meta`,
//! fsync the directory), so a crash leaves either the old or the new
//! version, never a mix. The content is one CRC-framed msgpack record; a bad
//! CRC on load is [`Error::Corrupt`], never a silent reset to defaults.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use openraft::{LogId, NodeId, Vote};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::record::{self, Decoded};
use crate::segment::sync_dir;

/// File name of the metadata file inside the log directory.
pub const META_FILE: &str = "meta";
/// File name of the temporary file the next version is written to.
const META_TMP: &str = "meta.tmp";

/// What the metadata file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Meta<NID: NodeId> {
    /// The last vote saved by raft.
    pub vote: Option<Vote<NID>>,
    /// The last committed log id saved by raft.
    pub committed: Option<LogId<NID>>,
    /// Entries up to and including this id are purged. Written before any
    /// segment is deleted, so it always covers what is missing on disk.
    pub last_purged: Option<LogId<NID>>,
}

impl<NID: NodeId> Default for Meta<NID> {
    fn default() -> Self {
        Meta {
            vote: None,
            committed: None,
            last_purged: None,
        }
    }
}

/// Loads the metadata of the log in `dir`, or the defaults if there is none yet.
pub fn load<NID: NodeId>(dir: &Path) -> Result<Meta<NID>> {
    let path = dir.join(META_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Meta::default()),
        Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
    };
    let corrupt = |reason: String| Error::Corrupt {
        segment: path.clone(),
        offset: 0,
        reason,
    };
    match record::decode(&bytes) {
        Ok(Decoded::Record { payload, frame_len }) if frame_len == bytes.len() => {
            Ok(rmp_serde::from_slice(payload)?)
        }
        Ok(Decoded::Record { frame_len, .. }) => Err(corrupt(format!(
            "{} trailing bytes after the record",
            bytes.len() - frame_len
        ))),
        Ok(Decoded::BadCrc {
            expected, actual, ..
        }) => Err(corrupt(format!(
            "bad crc: expected {expected:#010x}, got {actual:#010x}"
        ))),
        Ok(other) => Err(corrupt(format!("no complete record: {other:?}"))),
        Err(e) => Err(corrupt(e.to_string())),
    }
}

/// File of the committed-index hint (written without fsync).
pub const COMMITTED_HINT_FILE: &str = "committed";

/// Bytes the committed hint occupies: its frame, then zeros. Every write
/// is this long, so the file never changes size after the first one.
const COMMITTED_HINT_LEN: usize = 128;

/// The committed-index hint file, kept open. Each store overwrites the same
/// bytes in place (one `pwrite`, no fsync, no truncation): truncating and
/// rewriting the file on every commit cost an open, a truncate and a close
/// per write, and ext4 flushes a file replaced by truncation on close.
#[derive(Debug, Default)]
pub struct CommittedHint {
    /// Opened on first use.
    file: Option<File>,
}

impl CommittedHint {
    /// Overwrite the hint in `dir` without fsync. Failures are ignored: the
    /// hint only saves re-applying entries at the next start.
    pub fn store<NID: NodeId>(&mut self, dir: &Path, committed: Option<&LogId<NID>>) {
        let Ok(payload) = rmp_serde::to_vec_named(&committed) else {
            return;
        };
        let mut buf = Vec::with_capacity(COMMITTED_HINT_LEN);
        record::encode_into(&payload, &mut buf);
        if buf.len() < COMMITTED_HINT_LEN {
            buf.resize(COMMITTED_HINT_LEN, 0);
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                let path = dir.join(COMMITTED_HINT_FILE);
                let opened = fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path);
                match opened {
                    Ok(f) => self.file.insert(f),
                    Err(e) => {
                        tracing::debug!(error = %e, "could not open the committed hint");
                        return;
                    }
                }
            }
        };
        if let Err(e) = file.write_all_at(&buf, 0) {
            tracing::debug!(error = %e, "could not write the committed hint");
        }
    }
}

/// Read the committed-index hint; `None` if absent, torn or unreadable.
/// Bytes after its frame (zeros, or a longer earlier write) are ignored.
pub fn load_committed_hint<NID: NodeId>(dir: &Path) -> Option<LogId<NID>> {
    let bytes = fs::read(dir.join(COMMITTED_HINT_FILE)).ok()?;
    match record::decode(&bytes) {
        Ok(Decoded::Record { payload, .. }) => rmp_serde::from_slice::<Option<LogId<NID>>>(payload)
            .ok()
            .flatten(),
        _ => None,
    }
}

/// Durably replaces the metadata of the log in `dir` with `meta`.
pub fn store<NID: NodeId>(dir: &Path, meta: &Meta<NID>) -> Result<()> {
    let payload = rmp_serde::to_vec_named(meta)?;
    let mut buf = Vec::with_capacity(record::frame_len(payload.len()));
    record::encode_into(&payload, &mut buf);
    let tmp: PathBuf = dir.join(META_TMP);
    let path = dir.join(META_FILE);
    let mut file =
        File::create(&tmp).map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
    file.write_all(&buf)
        .map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
    file.sync_all()
        .map_err(|e| Error::io(format!("fsync {}", tmp.display()), e))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(|e| Error::io(format!("rename {}", tmp.display()), e))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    #[test]
    fn meta_round_trip_is_atomic() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        assert_eq!(load::<u64>(dir.path())?, Meta::default());
        let meta = Meta::<u64> {
            vote: Some(Vote::new(3, 7)),
            committed: Some(LogId::new(CommittedLeaderId::new(3, 7), 42)),
            last_purged: Some(LogId::new(CommittedLeaderId::new(2, 1), 10)),
        };
        store(dir.path(), &meta)?;
        assert_eq!(load::<u64>(dir.path())?, meta);
        assert!(!dir.path().join(META_TMP).exists());

        // A leftover temp file from a crash mid-write does not matter.
        fs::write(dir.path().join(META_TMP), b"garbage")?;
        assert_eq!(load::<u64>(dir.path())?, meta);
        let next = Meta {
            vote: Some(Vote::new(4, 7)),
            ..meta.clone()
        };
        store(dir.path(), &next)?;
        assert_eq!(load::<u64>(dir.path())?, next);

        // A flipped byte is reported, never silently reset.
        let path = dir.path().join(META_FILE);
        let mut bytes = fs::read(&path)?;
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        fs::write(&path, &bytes)?;
        assert!(load::<u64>(dir.path())
            .err()
            .is_some_and(|e| e.is_corrupt()));
        Ok(())
    }

    #[test]
    fn committed_hint_is_overwritten_in_place() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        assert_eq!(load_committed_hint::<u64>(dir.path()), None);
        let mut hint = CommittedHint::default();
        let big = LogId::new(CommittedLeaderId::new(u64::MAX, u64::MAX), u64::MAX);
        let small = LogId::new(CommittedLeaderId::new(1, 1), 2);
        hint.store(dir.path(), Some(&big));
        assert_eq!(load_committed_hint::<u64>(dir.path()), Some(big));
        // A shorter frame over a longer one: the old bytes after it are
        // zeros, and are ignored either way.
        hint.store(dir.path(), Some(&small));
        assert_eq!(load_committed_hint::<u64>(dir.path()), Some(small));
        let path = dir.path().join(COMMITTED_HINT_FILE);
        assert_eq!(fs::metadata(&path)?.len(), COMMITTED_HINT_LEN as u64);
        // A torn write reads as no hint, never as a wrong one.
        let mut bytes = fs::read(&path)?;
        bytes[10] ^= 0xff;
        fs::write(&path, &bytes)?;
        assert_eq!(load_committed_hint::<u64>(dir.path()), None);
        Ok(())
    }
}
