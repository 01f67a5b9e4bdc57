//! The crate's one error type.
//!
//! `io::Error` stays inside [`Error::Io`] with a context string; it is turned
//! into openraft's `StorageError` only at the trait edge in `store.rs`.

use std::path::PathBuf;

/// Everything that can go wrong in the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, and on which file.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The log on disk is damaged somewhere other than a torn tail.
    /// Never repaired automatically: an operator has to look.
    #[error("corrupt log in {} at offset {offset}: {reason}", segment.display())]
    Corrupt {
        /// The segment (or meta) file.
        segment: PathBuf,
        /// Byte offset of the bad record in that file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An earlier fsync failed: what is on disk is unknown, so the store
    /// refuses every later operation.
    #[error("log store is poisoned by an earlier failed fsync")]
    Poisoned,
    /// A CRC-valid payload did not decode.
    #[error("decode: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    /// An entry or the metadata did not encode.
    #[error("encode: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// An append did not continue the log: raft logs have no holes.
    #[error("append out of order: expected index {expected}, got {got}")]
    NonContiguous {
        /// The index the next entry must carry.
        expected: u64,
        /// The index it carried.
        got: u64,
    },
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// True for damage found on disk (as opposed to an I/O failure).
    pub fn is_corrupt(&self) -> bool {
        matches!(self, Error::Corrupt { .. })
    }

    /// True once the store refuses all operations after a failed fsync.
    pub fn is_poisoned(&self) -> bool {
        matches!(self, Error::Poisoned)
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
