//! The engine's error type. Outcomes that used an index (CAS mismatch, lock
//! not acquired) are [`crate::Response`] values, not errors.

use std::io;

/// Result alias for the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong inside the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// There is no raft leader (or this server is not it and cannot forward).
    #[error("No cluster leader")]
    NoLeader,
    /// This server stopped leading before the proposal was committed (raft
    /// refused it, or truncated it as uncommitted): it was not applied, so
    /// it may be routed again.
    #[error("No cluster leader")]
    LeaderChanged,
    /// The engine is shutting down; the request was not applied.
    #[error("server is shutting down")]
    Shutdown,
    /// The view store (fjall) failed.
    #[error("view store: {0}")]
    Store(#[from] fjall::Error),
    /// The log failed.
    #[error("log: {0}")]
    Log(#[from] muster_log::Error),
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A stored row or snapshot could not be decoded.
    #[error("decode {what}: {msg}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// The decoder's message.
        msg: String,
    },
    /// Raft refused or failed the operation.
    #[error("raft: {0}")]
    Raft(String),
    /// A request that the state machine validates was invalid; the message is
    /// Consul's (served as a 500 with this body).
    #[error("{0}")]
    Invalid(String),
    /// A restore could not finish (its reason; nothing was replaced).
    #[error("restore failed: {0}")]
    Restore(String),
}

impl Error {
    /// True when the caller should report `No cluster leader`.
    pub fn is_no_leader(&self) -> bool {
        matches!(self, Error::NoLeader | Error::LeaderChanged)
    }

    /// Build an I/O error with context.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
