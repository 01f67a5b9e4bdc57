//! The crate's one error type.
//!
//! Packet-level rejections (bad frame, failed decryption, plaintext when
//! encryption is required) are variants here too: the transport counts and
//! logs them, [`crate::packet::open`] returns them, and the predicates
//! ([`Error::is_rejected_packet`]) tell them apart from local failures.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can go wrong in the gossip layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is unusable.
    #[error("invalid gossip config: {0}")]
    Config(String),
    /// A gossip encryption key is malformed.
    #[error("invalid gossip key: {0}")]
    InvalidKey(String),
    /// The keyring file could not be read or parsed.
    #[error("keyring file {}: {reason}", path.display())]
    KeyringFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A keyring operation named a key that is not installed.
    #[error("key is not installed in the keyring")]
    KeyNotInstalled,
    /// `remove_key` was asked to remove the primary key.
    #[error("removing the primary key is not allowed")]
    RemovePrimaryKey,
    /// A keyring operation was made while gossip encryption is off.
    #[error("gossip encryption is not enabled (no keyring)")]
    EncryptionDisabled,
    /// A packet is too short or its framing is wrong.
    #[error("malformed packet: {0}")]
    MalformedPacket(&'static str),
    /// A packet carries a frame version this build does not know.
    #[error("unsupported packet version {0}")]
    UnsupportedVersion(u8),
    /// A plaintext packet arrived while encryption is required.
    #[error("plaintext packet rejected: encryption is required")]
    PlaintextRejected,
    /// An encrypted packet arrived but this node has no keyring.
    #[error("encrypted packet but no keyring is configured")]
    NoKeyring,
    /// No installed key decrypts the packet (wrong key or tampering).
    #[error("no installed key decrypts the packet")]
    DecryptFailed,
    /// A payload (member state, tags) did not encode or decode.
    #[error("codec: {0}")]
    Codec(String),
    /// The encoded tags exceed what one gossip packet can carry.
    #[error("tags too large: {size} bytes encoded, at most {max}")]
    TagsTooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// `join` reached none of the given addresses.
    #[error("failed to join any node: {}", format_failures(.0))]
    JoinFailed(Vec<(SocketAddr, String)>),
    /// A member refused this node's join for a reason retrying cannot fix
    /// (another alive member already has this node's name).
    #[error("{peer} refused the join: {reason}")]
    JoinRefused {
        /// The member that refused.
        peer: SocketAddr,
        /// Its reason, with the fix.
        reason: String,
    },
    /// A push/pull exchange with a peer failed.
    #[error("state exchange with {peer} failed: {reason}")]
    Exchange {
        /// The peer's gossip address.
        peer: SocketAddr,
        /// Why.
        reason: String,
    },
    /// `force_leave` named a member this node does not know.
    #[error("unknown member {0:?}")]
    UnknownMember(String),
    /// `force_leave` named a member that is not failed.
    #[error("member {name:?} is {status}, only failed members can be forced to leave")]
    MemberNotFailed {
        /// The member.
        name: String,
        /// Its current status.
        status: crate::MemberStatus,
    },
    /// A user event cannot be fired as given (Consul's message).
    #[error("{0}")]
    UserEventInvalid(&'static str),
    /// A user event's ID, name, payload and filters exceed what one gossip
    /// packet carries (serf's message, then the size).
    #[error("user event exceeds configured limit of {max} bytes before encoding ({size} bytes: a 36-byte ID, name, payload and filters)")]
    UserEventTooLarge {
        /// The event's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Too many broadcasts are waiting to be gossiped to fire another user
    /// event.
    #[error("{queued} messages are waiting to be gossiped: fire fewer user events, or wait for these to spread")]
    UserEventBacklog {
        /// Broadcasts queued.
        queued: usize,
    },
    /// The operation needs a running gossip instance, but it has left the
    /// cluster or been shut down.
    #[error("gossip is shut down or has left the cluster")]
    Stopped,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// True for errors that mean "a packet from the network was refused":
    /// bad framing, unknown version, failed decryption, or plaintext while
    /// encryption is required. The transport drops such packets.
    pub fn is_rejected_packet(&self) -> bool {
        matches!(
            self,
            Error::MalformedPacket(_)
                | Error::UnsupportedVersion(_)
                | Error::PlaintextRejected
                | Error::NoKeyring
                | Error::DecryptFailed
                | Error::Codec(_)
        )
    }

    /// True when the packet was refused because of encryption (wrong key,
    /// tampering, plaintext when required, or no keyring).
    pub fn is_encryption_mismatch(&self) -> bool {
        matches!(
            self,
            Error::PlaintextRejected | Error::NoKeyring | Error::DecryptFailed
        )
    }
}

fn format_failures(failures: &[(SocketAddr, String)]) -> String {
    if failures.is_empty() {
        return "no addresses given".to_owned();
    }
    failures
        .iter()
        .map(|(addr, why)| format!("{addr}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}
