//! The snapshot archive, in Consul's shape: a gzip'd tar of `meta.json`
//! (`ID`, `Size`, `Index`, `Term`, `Version`), `state.bin` (muster's record
//! stream, `muster_engine::backup::state`) and `SHA256SUMS` (one line per
//! file, `sha256sum`'s format). Written and read as streams: the state is
//! never held in memory, only copied through a small buffer.
//!
//! Reading checks everything before anything uses it: the three files are
//! there, each hashes to what `SHA256SUMS` says, and (the caller's part)
//! the state stream's own framing and CRC.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `meta.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ArchiveMeta {
    /// `term-index-unixms`, as Consul names snapshots.
    #[serde(rename = "ID")]
    pub id: String,
    /// Bytes of `state.bin`.
    pub size: u64,
    /// The index of the state.
    pub index: u64,
    /// The raft term at that index.
    pub term: u64,
    /// The archive version (1).
    pub version: u32,
}

/// The archive version written.
pub const VERSION: u32 = 1;

const META: &str = "meta.json";
const STATE: &str = "state.bin";
const SUMS: &str = "SHA256SUMS";

/// A writer that hashes what goes through it.
pub struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashWriter<W> {
    /// Hash everything written to `inner`.
    pub fn new(inner: W) -> HashWriter<W> {
        HashWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// The SHA-256 (hex), the bytes written and the writer.
    pub fn finish(self) -> (String, u64, W) {
        (hex(&self.hasher.finalize()), self.written, self.inner)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let done = buf.get(..n).unwrap_or_default();
        self.hasher.update(done);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn entry_header(path: &str, size: u64) -> io::Result<tar::Header> {
    let mut h = tar::Header::new_gnu();
    h.set_path(path)?;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    Ok(h)
}

/// Write an archive into `out`: `meta`, then `state` (`state_len` bytes
/// whose SHA-256 is `state_sha256`), then the sums.
pub fn write_archive(
    out: impl Write,
    meta: &ArchiveMeta,
    state: impl Read,
    state_len: u64,
    state_sha256: &str,
) -> io::Result<()> {
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let meta_json = serde_json::to_vec(meta).map_err(io::Error::other)?;
    tar.append(&entry_header(META, meta_json.len() as u64)?, &meta_json[..])?;
    tar.append(&entry_header(STATE, state_len)?, state)?;
    let sums = format!("{}  {META}\n{state_sha256}  {STATE}\n", sha256(&meta_json));
    tar.append(&entry_header(SUMS, sums.len() as u64)?, sums.as_bytes())?;
    tar.into_inner()?.finish()?.flush()
}

/// Read an archive from `input`, copying `state.bin` into `state_out`;
/// returns `meta.json` and the state's SHA-256. Every failure is one line
/// saying what is wrong, before the caller has changed anything.
pub fn read_archive(
    input: impl Read,
    state_out: impl Write,
) -> Result<(ArchiveMeta, String), String> {
    let gz = flate2::read::GzDecoder::new(input);
    let mut tar = tar::Archive::new(gz);
    let mut meta: Option<(ArchiveMeta, String)> = None;
    let mut state: Option<(String, u64)> = None;
    let mut sums: Option<String> = None;
    let mut state_out = Some(state_out);
    let entries = tar
        .entries()
        .map_err(|e| format!("not a snapshot archive (gzip'd tar): {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("damaged archive: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("damaged archive: {e}"))?
            .to_string_lossy()
            .into_owned();
        match path.as_str() {
            META => {
                let mut bytes = Vec::new();
                entry
                    .by_ref()
                    .take(1 << 20)
                    .read_to_end(&mut bytes)
                    .map_err(|e| format!("damaged archive: {META}: {e}"))?;
                let parsed: ArchiveMeta = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("{META} is not valid: {e}"))?;
                meta = Some((parsed, sha256(&bytes)));
            }
            STATE => {
                let Some(out) = state_out.take() else {
                    return Err(format!("the archive holds {STATE} twice"));
                };
                let mut w = HashWriter::new(out);
                io::copy(&mut entry, &mut w)
                    .map_err(|e| format!("damaged archive: {STATE}: {e}"))?;
                let (hash, len, mut out) = w.finish();
                out.flush()
                    .map_err(|e| format!("cannot keep {STATE}: {e}"))?;
                state = Some((hash, len));
            }
            SUMS => {
                let mut text = String::new();
                entry
                    .by_ref()
                    .take(1 << 16)
                    .read_to_string(&mut text)
                    .map_err(|e| format!("damaged archive: {SUMS}: {e}"))?;
                sums = Some(text);
            }
            other => return Err(format!("unexpected file {other:?} in the archive")),
        }
    }
    // The rest of the gzip stream, for its own CRC and length check.
    io::copy(&mut tar.into_inner(), &mut io::sink())
        .map_err(|e| format!("damaged archive: {e}"))?;
    let (meta, meta_hash) = meta.ok_or_else(|| format!("the archive has no {META}"))?;
    let (state_hash, state_len) = state.ok_or_else(|| format!("the archive has no {STATE}"))?;
    let sums = sums.ok_or_else(|| format!("the archive has no {SUMS}"))?;
    for (name, actual) in [(META, &meta_hash), (STATE, &state_hash)] {
        let listed = sums
            .lines()
            .find_map(|l| l.strip_suffix(name).map(str::trim_end))
            .ok_or_else(|| format!("{SUMS} has no line for {name}"))?;
        if listed != actual {
            return Err(format!(
                "{name} does not match {SUMS} (SHA-256 {actual}, expected {listed}): the archive is damaged"
            ));
        }
    }
    if meta.size != state_len {
        return Err(format!(
            "{STATE} is {state_len} bytes, {META} says {}",
            meta.size
        ));
    }
    if meta.version > VERSION {
        return Err(format!(
            "archive version {} was written by a newer muster; upgrade muster to read it",
            meta.version
        ));
    }
    Ok((meta, state_hash))
}

/// Read a whole archive and check every part of it (container, sums, and
/// every record of the state stream), leaving `state.bin` in a temporary
/// file, rewound: what restoring needs, with nothing changed yet.
pub fn unpack_checked(input: impl Read) -> Result<(ArchiveMeta, String, std::fs::File), String> {
    use std::io::Seek;
    let tmp = |e: io::Error| format!("cannot keep {STATE} in a temporary file: {e}");
    let state = tempfile::tempfile().map_err(tmp)?;
    let mut state_w = io::BufWriter::new(state);
    let (meta, hash) = read_archive(input, &mut state_w)?;
    let mut state = state_w.into_inner().map_err(|e| tmp(e.into_error()))?;
    state.rewind().map_err(tmp)?;
    let mut reader = muster_engine::backup::state::StateReader::new(io::BufReader::new(&state))
        .map_err(|e| e.to_string())?;
    while reader.next_raw().map_err(|e| e.to_string())?.is_some() {}
    state.rewind().map_err(tmp)?;
    Ok((meta, hash, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(state: &[u8]) -> Vec<u8> {
        let meta = ArchiveMeta {
            id: "2-10-1".into(),
            size: state.len() as u64,
            index: 10,
            term: 2,
            version: VERSION,
        };
        let mut out = Vec::new();
        let hash = sha256(state);
        write_archive(&mut out, &meta, state, state.len() as u64, &hash).expect("write");
        out
    }

    #[test]
    fn archives_round_trip_and_damage_is_named() {
        let state = b"some state bytes".repeat(100);
        let bytes = archive(&state);
        let mut copy = Vec::new();
        let (meta, hash) = read_archive(&bytes[..], &mut copy).expect("read");
        assert_eq!((meta.index, meta.term, meta.id.as_str()), (10, 2, "2-10-1"));
        assert_eq!(copy, state);
        assert_eq!(hash, sha256(&state));
        // Truncated anywhere: refused.
        for cut in [0, 10, bytes.len() / 2, bytes.len() - 5] {
            let got = read_archive(&bytes[..cut], &mut Vec::new());
            assert!(got.is_err(), "cut at {cut}");
        }
        // A flipped byte in the compressed data or in gzip's trailer (its
        // CRC and length): refused (gzip's check, a tar header, or the
        // sums). (The last few bits of deflate data can be padding a
        // decoder never reads, so no position there is asserted.)
        for at in [
            20,
            bytes.len() / 3,
            bytes.len() / 2,
            bytes.len() - 6,
            bytes.len() - 2,
        ] {
            let mut bad = bytes.clone();
            if let Some(b) = bad.get_mut(at) {
                *b ^= 0x01;
            }
            assert!(
                read_archive(&bad[..], &mut Vec::new()).is_err(),
                "flip at {at}"
            );
        }
        let not = read_archive(&b"plain text"[..], &mut Vec::new())
            .err()
            .unwrap_or_default();
        assert!(
            not.contains("not a snapshot archive") || not.contains("damaged"),
            "{not}"
        );
    }
}
