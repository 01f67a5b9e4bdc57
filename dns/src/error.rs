//! Errors of the DNS server.

/// What can stop [`crate::serve`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A socket operation failed.
    #[error("dns: {0}")]
    Io(#[from] std::io::Error),
}
