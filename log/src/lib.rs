//! muster-log: muster's durable raft log.
//!
//! # Layout
//!
//! - [`record`]: the `[len][crc32][payload]` frame.
//! - [`segment`]: segment files and their in-memory entry index.
//! - `recovery`: validation on open; torn tails are cut, corruption is an error.
//! - `meta`: vote, committed and last purged ids, replaced atomically.
//! - [`store`]: [`LogStore`], openraft's `RaftLogStorage` with group commit.
//! - [`error`]: the crate's [`Error`].
//!
//! The crate knows nothing of what entries carry: it stores openraft
//! `Entry<C>` values as named-field msgpack.

pub mod error;
mod meta;
pub mod record;
mod recovery;
pub mod segment;
pub mod store;

pub use error::{Error, Result};
pub use segment::LogOptions;
pub use store::{LogReader, LogStats, LogStore};

#[cfg(test)]
mod tests;
