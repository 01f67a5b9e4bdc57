//! Segment files: `<first_index as 20 zero-padded digits>.seg` in the log
//! directory, each a run of CRC-framed records with contiguous indexes.
//!
//! A [`Segment`] owns one file handle and an in-memory index of where each of
//! its entries sits, so reads go straight to the bytes. It does not know the
//! raft types, does not fsync on its own for appends (group commit is the
//! store's job), and never decides what is corrupt (that is `recovery.rs`).
//!
//! The file is zero-filled ahead of the records, [`PREALLOC_CHUNK`] at a
//! time, and records are written over the zeros. An `fdatasync` then
//! flushes data only: the file's size and block map do not change, so ext4
//! need not commit its journal, and the sync does not wait for other files'
//! data (fjall's) ordered behind that commit. Measured on this machine's
//! disk with another file being written: fdatasync of a 300-byte write
//! p50 0.18 ms and p99 0.34 ms over zeros, against 0.27 ms and 0.5-2.3 ms
//! when appending. Recovery reads a zero length as the end of the data.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};

/// Extension of segment files.
const SEGMENT_EXT: &str = "seg";

/// Bytes of zeros written ahead of the records at a time.
pub(crate) const PREALLOC_CHUNK: u64 = 4 << 20;

/// Zeros written in one `write` while preallocating.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

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
    /// Bytes of valid records. Invariant: at most the file length.
    pub size: u64,
    /// The file length. Invariant: the bytes from `size` to here are zeros.
    pub allocated: u64,
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
    // Not O_APPEND: records are written at their offset, over zeros.
    let mut o = OpenOptions::new();
    o.read(true).write(true);
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
        let mut seg = Segment {
            path,
            first_index,
            file: Arc::new(file),
            size: 0,
            allocated: 0,
            slots: Vec::new(),
        };
        seg.preallocate(PREALLOC_CHUNK)?;
        Ok(seg)
    }

    /// Opens an existing, already validated segment: `size` bytes of
    /// records followed by `allocated - size` bytes of zeros.
    pub fn open(
        path: PathBuf,
        first_index: u64,
        size: u64,
        allocated: u64,
        slots: Vec<Slot>,
    ) -> Result<Segment> {
        let file = open_options()
            .open(&path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        Ok(Segment {
            path,
            first_index,
            file: Arc::new(file),
            size,
            allocated: allocated.max(size),
            slots,
        })
    }

    /// Extends the file with zeros up to `len` bytes (no sync: the next
    /// group commit's sync carries them).
    fn preallocate(&mut self, len: u64) -> Result<()> {
        while self.allocated < len {
            let n = (len - self.allocated).min(ZEROS.len() as u64) as usize;
            self.file
                .write_all_at(&ZEROS[..n], self.allocated)
                .map_err(|e| Error::io(format!("preallocate {}", self.path.display()), e))?;
            self.allocated += n as u64;
        }
        Ok(())
    }

    /// Cuts the zeros after the records (when the segment is sealed).
    pub fn trim(&mut self) -> Result<()> {
        if self.allocated > self.size {
            self.file
                .set_len(self.size)
                .map_err(|e| Error::io(format!("trim {}", self.path.display()), e))?;
            self.allocated = self.size;
        }
        Ok(())
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
    /// with one write over the zeros (extending them first when needed):
    /// readable at once, durable only after a sync.
    pub fn append(&mut self, buf: &[u8], frame_lens: &[u32]) -> Result<()> {
        let end = self.size + buf.len() as u64;
        if end > self.allocated {
            self.preallocate(end + PREALLOC_CHUNK)?;
        }
        self.file
            .write_all_at(buf, self.size)
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
        // The cut bytes (records and zeros) go: stale records must never
        // follow the new ones. Zeros are written again on the next append.
        self.file
            .set_len(new_size)
            .and_then(|()| self.file.sync_all())
            .map_err(|e| Error::io(format!("truncate {}", self.path.display()), e))?;
        self.size = new_size;
        self.allocated = new_size;
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
