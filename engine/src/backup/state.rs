//! `state.bin`, the body of a snapshot archive: muster's own record stream
//! of the whole state, logical rather than a copy of the views, so a newer
//! muster (with other view layouts) reads an older snapshot.
//!
//! ```text
//! "MUSTSTAT"  [format u32 LE]
//! [len u32 LE][msgpack StateHeader]
//! [len u32 LE][msgpack Record] ...           one frame per record
//! [u32::MAX][record count u64 LE][CRC32 u32 LE of every byte before it]
//! ```
//!
//! A record is a MessagePack map naming its type and fields
//! (`{"Kv": {"key": .., "value": .., ..}}`): types and fields are only
//! ever added. Reading checks the framing, every record and the CRC, and
//! names the record where it stops; nothing is buffered beyond one record.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::snapshot::{read_frame, read_u32, write_frame, CrcReader, CrcWriter};
use crate::types::{Check, KvEntry, Node, Service, Session, StoredObject};
use crate::views::{decode, encode};

const MAGIC: &[u8; 8] = b"MUSTSTAT";
/// The format this build writes; it reads this and every older one.
pub const FORMAT: u32 = 1;
const END: u32 = u32::MAX;

/// What a state stream says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StateHeader {
    /// The format of the records.
    pub format: u32,
    /// The index of the state (the highest index any record carries).
    pub index: u64,
    /// The raft term of the entry at that index.
    pub term: u64,
    /// The muster version that wrote it.
    pub muster_version: String,
    /// When it was written (Unix milliseconds).
    pub created_unix_ms: u64,
}

impl Default for StateHeader {
    fn default() -> StateHeader {
        StateHeader {
            format: FORMAT,
            index: 0,
            term: 0,
            muster_version: String::new(),
            created_unix_ms: 0,
        }
    }
}

/// A KV tombstone: a deleted key and the index of its delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Tombstone {
    /// The deleted key.
    pub key: String,
    /// The index of the delete.
    pub index: u64,
}

/// A table's or a finer index (`kv`, `services`, `svcidx/web`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct IndexEntry {
    /// What it indexes.
    pub name: String,
    /// The index.
    pub index: u64,
}

/// One record of the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A catalog node.
    Node(Node),
    /// A service instance.
    Service(Service),
    /// A health check.
    Check(Check),
    /// A KV entry.
    Kv(KvEntry),
    /// A KV tombstone.
    Tombstone(Tombstone),
    /// A session.
    Session(Session),
    /// An index.
    Index(IndexEntry),
    /// A stored object (prepared query, autopilot configuration).
    Object(StoredObject),
}

impl Record {
    /// The type's name as `snapshot inspect` shows it (Consul's where it
    /// has one).
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Node(_) => "Node",
            Record::Service(_) => "Service",
            Record::Check(_) => "Check",
            Record::Kv(_) => "KVS",
            Record::Tombstone(_) => "Tombstone",
            Record::Session(_) => "Session",
            Record::Index(_) => "Index",
            Record::Object(o) if o.kind == "query" => "PreparedQuery",
            Record::Object(o) if o.kind == "autopilot" => "Autopilot",
            Record::Object(_) => "Object",
        }
    }
}

fn bad(msg: impl Into<String>) -> Error {
    Error::Decode {
        what: "snapshot state",
        msg: msg.into(),
    }
}

/// Writes a state stream record by record.
pub struct StateWriter<W: Write> {
    w: CrcWriter<W>,
    records: u64,
    buf: Vec<u8>,
}

impl<W: Write> StateWriter<W> {
    /// Start a stream with `header`.
    pub fn new(inner: W, header: &StateHeader) -> Result<StateWriter<W>> {
        let mut w = CrcWriter::new(inner);
        let io = |e: io::Error| Error::io("write snapshot state", e);
        w.write_all(MAGIC).map_err(io)?;
        w.write_all(&FORMAT.to_le_bytes()).map_err(io)?;
        write_frame(&mut w, &encode(header, "state header")?).map_err(io)?;
        Ok(StateWriter {
            w,
            records: 0,
            buf: Vec::new(),
        })
    }

    /// Append one record; returns its encoded size.
    pub fn write(&mut self, record: &Record) -> Result<usize> {
        self.buf.clear();
        rmp_serde::encode::write_named(&mut self.buf, record).map_err(|e| bad(e.to_string()))?;
        write_frame(&mut self.w, &self.buf).map_err(|e| Error::io("write snapshot state", e))?;
        self.records += 1;
        Ok(self.buf.len())
    }

    /// Append an already encoded record (from [`StateReader::next_raw`]).
    pub fn write_raw(&mut self, encoded: &[u8]) -> Result<()> {
        write_frame(&mut self.w, encoded).map_err(|e| Error::io("write snapshot state", e))?;
        self.records += 1;
        Ok(())
    }

    /// End the stream (count and CRC); returns the inner writer.
    pub fn finish(mut self) -> Result<W> {
        let io = |e: io::Error| Error::io("write snapshot state", e);
        self.w.write_all(&END.to_le_bytes()).map_err(io)?;
        self.w.write_all(&self.records.to_le_bytes()).map_err(io)?;
        let (crc, mut inner) = self.w.finish();
        inner.write_all(&crc.to_le_bytes()).map_err(io)?;
        inner.flush().map_err(io)?;
        Ok(inner)
    }
}

/// Reads a state stream, checking it as it goes.
pub struct StateReader<R: Read> {
    r: CrcReader<R>,
    header: StateHeader,
    records: u64,
    buf: Vec<u8>,
    done: bool,
}

impl<R: Read> StateReader<R> {
    /// Open a stream: magic, format and header.
    pub fn new(inner: R) -> Result<StateReader<R>> {
        let mut r = CrcReader::new(inner);
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)
            .map_err(|e| bad(format!("not a muster state stream: {e}")))?;
        if &magic != MAGIC {
            return Err(bad("not a muster state stream (bad magic)"));
        }
        let mut format = [0u8; 4];
        r.read_exact(&mut format)
            .map_err(|e| bad(format!("header: {e}")))?;
        let format = u32::from_le_bytes(format);
        if format > FORMAT {
            return Err(bad(format!(
                "format {format} was written by a newer muster (this one reads up to {FORMAT}): \
                 upgrade muster to read it"
            )));
        }
        let mut buf = Vec::new();
        let len = read_u32(&mut r).map_err(|e| bad(format!("header: {e}")))?;
        read_frame(&mut r, len, &mut buf).map_err(|e| bad(format!("header: {e}")))?;
        let header: StateHeader = decode(&buf, "state header")?;
        Ok(StateReader {
            r,
            header,
            records: 0,
            buf,
            done: false,
        })
    }

    /// The stream's header.
    pub fn header(&self) -> &StateHeader {
        &self.header
    }

    /// The next record's encoded bytes, or `None` after the last one (the
    /// trailer checked). Valid until the next call.
    pub fn next_raw(&mut self) -> Result<Option<&[u8]>> {
        if self.done {
            return Ok(None);
        }
        let at = self.records;
        let len = read_u32(&mut self.r).map_err(|e| bad(format!("record {at}: {e}")))?;
        if len == END {
            self.trailer()?;
            self.done = true;
            return Ok(None);
        }
        read_frame(&mut self.r, len, &mut self.buf)
            .map_err(|e| bad(format!("record {at}: {e}")))?;
        self.records += 1;
        Ok(Some(&self.buf))
    }

    /// The next record, or `None` after the last one (the trailer checked).
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        let at = self.records;
        match self.next_raw()? {
            None => Ok(None),
            Some(raw) => decode_record(raw)
                .map(Some)
                .map_err(|e| bad(format!("record {at}: {e}"))),
        }
    }

    fn trailer(&mut self) -> Result<()> {
        let mut count = [0u8; 8];
        self.r
            .read_exact(&mut count)
            .map_err(|e| bad(format!("trailer: {e}")))?;
        let (expected, inner) = self.r.parts();
        let mut crc = [0u8; 4];
        inner
            .read_exact(&mut crc)
            .map_err(|e| bad(format!("trailer: {e}")))?;
        let count = u64::from_le_bytes(count);
        if count != self.records {
            return Err(bad(format!(
                "trailer says {count} records, found {}",
                self.records
            )));
        }
        if u32::from_le_bytes(crc) != expected {
            return Err(bad(format!(
                "CRC mismatch: trailer {:08x}, computed {expected:08x}",
                u32::from_le_bytes(crc)
            )));
        }
        Ok(())
    }

    /// Records read so far.
    pub fn records(&self) -> u64 {
        self.records
    }
}

/// One encoded record.
pub fn decode_record(raw: &[u8]) -> Result<Record> {
    rmp_serde::from_slice(raw).map_err(|e| {
        bad(format!(
            "{e} (a record type this muster does not know was probably written by a newer one)"
        ))
    })
}

/// Read a whole stream into nothing but its checks: for fuzzing the
/// decoder (never panics, whatever the bytes).
pub fn check_stream(bytes: &[u8]) -> Result<u64> {
    let mut r = StateReader::new(bytes)?;
    while r.next_record()?.is_some() {}
    Ok(r.records())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Record> {
        vec![
            Record::Node(Node {
                node: "n1".into(),
                address: "10.0.0.1".into(),
                ..Node::default()
            }),
            Record::Kv(KvEntry {
                key: "a/b".into(),
                value: vec![0, 255, 7],
                flags: 3,
                create_index: 4,
                modify_index: 9,
                lock_index: 1,
                session: Some("s".into()),
            }),
            Record::Tombstone(Tombstone {
                key: "gone".into(),
                index: 8,
            }),
            Record::Index(IndexEntry {
                name: "kv".into(),
                index: 9,
            }),
        ]
    }

    fn stream(records: &[Record]) -> Result<Vec<u8>> {
        let header = StateHeader {
            index: 9,
            term: 2,
            ..StateHeader::default()
        };
        let mut w = StateWriter::new(Vec::new(), &header)?;
        for r in records {
            w.write(r)?;
        }
        w.finish()
    }

    #[test]
    fn records_round_trip_and_damage_is_refused() -> Result<()> {
        let records = sample();
        let bytes = stream(&records)?;
        let mut r = StateReader::new(&bytes[..])?;
        assert_eq!(r.header().index, 9);
        let mut back = Vec::new();
        while let Some(rec) = r.next_record()? {
            back.push(rec);
        }
        assert_eq!(back, records);
        // Every truncation and every single flipped byte is refused.
        for cut in 0..bytes.len() {
            assert!(check_stream(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            if let Some(b) = bad.get_mut(i) {
                *b ^= 0x40;
            }
            assert!(check_stream(&bad).is_err(), "flip at {i}");
        }
        Ok(())
    }

    #[test]
    fn a_newer_format_is_refused_with_the_fix() -> Result<()> {
        let mut bytes = stream(&sample())?;
        if let Some(f) = bytes.get_mut(8) {
            *f = 99;
        }
        let msg = StateReader::new(&bytes[..]).err().map(|e| e.to_string());
        assert!(msg.is_some_and(|m| m.contains("newer muster")));
        Ok(())
    }
}
