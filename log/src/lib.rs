//! muster-log: muster's durable raft log.
//!
//! # Layout
//!
//! - [`record`]: the `[len][crc32][payload]` frame.
//! - [`segment`]: segment files and their in-memory entry index.
//! - `recovery`: validation on open; torn tails are cut, corruption is an error.
//! - `meta`: vote, committed and last purged ids, replaced atomically.
//! - [`scan`]: a read-only walk of every record, for the offline tools.
//! - [`store`]: [`LogStore`], the segments, metadata and group-commit
//!   flusher; `storage.rs`: openraft's `RaftLogReader` and `RaftLogStorage`
//!   over it.
//! - [`error`]: the crate's [`Error`].
//!
//! The crate knows nothing of what entries carry: it stores openraft
//! `Entry<C>` values as named-field msgpack.

pub mod error;
mod meta;
pub mod record;
mod recovery;
pub mod scan;
pub mod segment;
mod storage;
pub mod store;

pub use error::{Error, Result};
pub use segment::LogOptions;
pub use store::{LogReader, LogStats, LogStore};

#[cfg(test)]
mod tests;
