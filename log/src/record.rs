//! The on-disk record frame: `[len u32 LE][crc32 u32 LE of payload][payload]`.
//!
//! This module owns only the framing: it knows nothing of raft entries,
//! segments or files. [`decode`] must never panic, whatever the input (it is
//! fuzzed by `fuzz/fuzz_targets/log_record.rs`).

/// Size of the frame header: length then CRC32, both little-endian `u32`.
pub const HEADER_LEN: usize = 8;

/// Largest payload accepted. A header claiming more is a corrupt header,
/// not a record waiting for more bytes.
pub const MAX_PAYLOAD_LEN: u32 = 64 * 1024 * 1024;

/// What [`decode`] found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A complete record whose CRC matches.
    Record {
        /// The payload bytes (without the header).
        payload: &'a [u8],
        /// Length of the whole frame, header included.
        frame_len: usize,
    },
    /// The header or the payload is cut short by the end of the buffer.
    Incomplete,
    /// A complete frame whose payload does not match its CRC.
    BadCrc {
        /// The CRC stored in the header.
        expected: u32,
        /// The CRC computed over the payload.
        actual: u32,
        /// Length of the whole frame, header included, as the header claims.
        frame_len: usize,
    },
    /// A zero length: the end of the data (or preallocated zeros).
    End,
}

/// A header that cannot be the start of any valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The header claims a payload larger than [`MAX_PAYLOAD_LEN`].
    #[error("record length {len} exceeds the maximum of {MAX_PAYLOAD_LEN}")]
    TooLarge {
        /// The length read from the header.
        len: u32,
    },
}

/// Appends one frame holding `payload` to `out`.
///
/// # Panics
///
/// Never in practice: a payload over 4 GiB cannot be framed and is a caller
/// bug (entries are bounded far below [`MAX_PAYLOAD_LEN`]).
pub fn encode_into(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).expect("payload larger than 4 GiB cannot be framed");
    out.reserve(HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Length of the frame [`encode_into`] writes for a payload of `payload_len` bytes.
pub fn frame_len(payload_len: usize) -> usize {
    HEADER_LEN + payload_len
}

/// Decodes the frame at the start of `buf`.
pub fn decode(buf: &[u8]) -> Result<Decoded<'_>, RecordError> {
    let Some((header, rest)) = buf.split_first_chunk::<HEADER_LEN>() else {
        // A short header is a torn write, unless it is all zeros (end of data).
        if buf.iter().all(|b| *b == 0) && buf.len() >= 4 {
            return Ok(Decoded::End);
        }
        return Ok(if buf.is_empty() {
            Decoded::End
        } else {
            Decoded::Incomplete
        });
    };
    let (len_bytes, crc_bytes) = header.split_at(4);
    let len = u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
    let expected = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    if len == 0 {
        return Ok(Decoded::End);
    }
    if len > MAX_PAYLOAD_LEN {
        return Err(RecordError::TooLarge { len });
    }
    // `len <= MAX_PAYLOAD_LEN` fits in usize on every supported target.
    let len = len as usize;
    let Some(payload) = rest.get(..len) else {
        return Ok(Decoded::Incomplete);
    };
    let actual = crc32fast::hash(payload);
    let frame_len = HEADER_LEN + len;
    if actual != expected {
        return Ok(Decoded::BadCrc {
            expected,
            actual,
            frame_len,
        });
    }
    Ok(Decoded::Record { payload, frame_len })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() -> Result<(), RecordError> {
        let mut buf = Vec::new();
        encode_into(b"hello", &mut buf);
        encode_into(b"world!", &mut buf);
        let Decoded::Record { payload, frame_len } = decode(&buf)? else {
            panic!("expected a record");
        };
        assert_eq!(payload, b"hello");
        assert_eq!(frame_len, 13);
        let Decoded::Record { payload, .. } = decode(&buf[frame_len..])? else {
            panic!("expected a record");
        };
        assert_eq!(payload, b"world!");
        Ok(())
    }

    #[test]
    fn short_and_bad() -> Result<(), RecordError> {
        let mut buf = Vec::new();
        encode_into(b"hello", &mut buf);
        for cut in 1..buf.len() {
            assert_eq!(decode(&buf[..cut])?, Decoded::Incomplete, "cut at {cut}");
        }
        assert_eq!(decode(&[])?, Decoded::End);
        assert_eq!(decode(&[0; 16])?, Decoded::End);
        buf[10] ^= 0xff;
        assert!(matches!(
            decode(&buf)?,
            Decoded::BadCrc { frame_len: 13, .. }
        ));
        let huge = [0xff; 8];
        assert_eq!(decode(&huge), Err(RecordError::TooLarge { len: u32::MAX }));
        Ok(())
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn encode_decode(payload in proptest::collection::vec(any::<u8>(), 1..256)) {
            let mut buf = Vec::new();
            encode_into(&payload, &mut buf);
            prop_assert_eq!(
                decode(&buf),
                Ok(Decoded::Record { payload: &payload, frame_len: buf.len() })
            );
        }
    }
}
