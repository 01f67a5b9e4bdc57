//! Segment files: `<first_index as 20 zero-padded digits>.seg` in the log
//! directory, each a run of CRC-framed records with contiguous indexes.
//!
//! A [`Segment`] owns one file handle and an in-memory index of where each of
//! its entries sits, so reads go straight to the bytes. It does not know the
//! raft types, does not fsync on its own for appends (group commit is the
//! store's job), and never decides what is corrupt (that is `recovery.rs`).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};

/// Extension of segment files.
const SEGMENT_EXT: &str = "seg";

/// Tunables of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogOptions {
    /// A new segment is started once the current one reaches this many bytes.
    pub segment_size: u64,
}

impl LogOptions {
    /// The defaults, with another segment size (tests use tiny ones).
    pub fn with_segment_size(segment_size: u64) -> Self {
        LogOptions { segment_size }
    }
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_size: 64 * 1024 * 1024,
        }
    }
}

/// Where one entry's frame is in its segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    /// Byte offset of the frame header.
    pub offset: u64,
    /// Length of the whole frame, header included.
    pub len: u32,
}

/// One segment file and the index of its entries.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Path of the file.
    pub path: PathBuf,
    /// Index of its first entry (also encoded in the file name).
    pub first_index: u64,
    /// Opened for reading and appending; shared with the flusher thread.
    pub file: Arc<File>,
    /// Bytes of valid records. Invariant: equals the file length.
    pub size: u64,
    /// `slots[i]` is the frame of entry `first_index + i`. Invariant: the
    /// frames are back to back from offset 0 to `size`.
    pub slots: Vec<Slot>,
}

/// The file name of the segment starting at `first_index`.
pub(crate) fn file_name(first_index: u64) -> String {
    format!("{first_index:020}.{SEGMENT_EXT}")
}

/// The first index encoded in a segment file name, if `name` is one.
fn parse_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".seg")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// The segment files in `dir`, sorted by first index.
pub(crate) fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let ctx = || format!("list {}", dir.display());
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(ctx(), e))? {
        let entry = entry.map_err(|e| Error::io(ctx(), e))?;
        let name = entry.file_name();
        if let Some(first) = name.to_str().and_then(parse_name) {
            out.push((first, entry.path()));
        }
    }
    out.sort_unstable_by_key(|(first, _)| *first);
    Ok(out)
}

/// Fsyncs a directory, so that file creations, renames and deletions in it
/// are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("fsync directory {}", dir.display()), e))
}

fn open_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).append(true);
    o
}

impl Segment {
    /// Creates the empty segment file for entries starting at `first_index`.
    /// The caller fsyncs the directory.
    pub fn create(dir: &Path, first_index: u64) -> Result<Segment> {
        let path = dir.join(file_name(first_index));
        let file = open_options()
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
        Ok(Segment {
            path,
            first_index,
            file: Arc::new(file),
            size: 0,
            slots: Vec::new(),
        })
    }

    /// Opens an existing, already validated segment.
    pub fn open(path: PathBuf, first_index: u64, size: u64, slots: Vec<Slot>) -> Result<Segment> {
        let file = open_options()
            .open(&path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        Ok(Segment {
            path,
            first_index,
            file: Arc::new(file),
            size,
            slots,
        })
    }

    /// Index of the last entry, if any.
    pub fn last_index(&self) -> Option<u64> {
        let n = u64::try_from(self.slots.len()).ok()?;
        n.checked_sub(1).map(|k| self.first_index + k)
    }

    /// Index the next entry appended here must carry.
    pub fn next_index(&self) -> u64 {
        self.first_index + self.slots.len() as u64
    }

    /// Where entry `index` is, if this segment holds it.
    pub fn slot(&self, index: u64) -> Option<Slot> {
        let k = usize::try_from(index.checked_sub(self.first_index)?).ok()?;
        self.slots.get(k).copied()
    }

    /// Appends already framed bytes (`frame_lens` gives each frame's length)
    /// with one `write_all`: readable at once, durable only after a sync.
    pub fn append(&mut self, buf: &[u8], frame_lens: &[u32]) -> Result<()> {
        (&*self.file)
            .write_all(buf)
            .map_err(|e| Error::io(format!("write {}", self.path.display()), e))?;
        let mut offset = self.size;
        for &len in frame_lens {
            self.slots.push(Slot { offset, len });
            offset += u64::from(len);
        }
        self.size = offset;
        Ok(())
    }

    /// Fsyncs the file data.
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io(format!("fsync {}", self.path.display()), e))
    }

    /// Drops entries with index >= `index` and durably shortens the file.
    pub fn truncate_from(&mut self, index: u64) -> Result<()> {
        let keep = usize::try_from(index.saturating_sub(self.first_index))
            .unwrap_or(usize::MAX)
            .min(self.slots.len());
        let new_size = self.slots.get(keep).map_or(self.size, |s| s.offset);
        self.slots.truncate(keep);
        self.file
            .set_len(new_size)
            .and_then(|()| self.file.sync_all())
            .map_err(|e| Error::io(format!("truncate {}", self.path.display()), e))?;
        self.size = new_size;
        Ok(())
    }

    /// Reads `len` bytes at `offset`.
    pub fn read_at(file: &File, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0; len];
        file.read_exact_at(&mut buf, offset)
            .map_err(|e| Error::io(format!("read {} at {offset}", path.display()), e))?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(file_name(42), "00000000000000000042.seg");
        assert_eq!(parse_name(&file_name(42)), Some(42));
        assert_eq!(parse_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_name("42.seg"), None);
        assert_eq!(parse_name("meta"), None);
        assert_eq!(parse_name("0000000000000000004x.seg"), None);
    }
}
