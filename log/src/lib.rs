//! muster-log: placeholder until the log store lands.

/// The log's error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
