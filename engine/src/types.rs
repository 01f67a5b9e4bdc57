//! View records as the engine stores and returns them, and `Indexed<T>`,
//! the `(index, value)` pair every read returns.

use serde::{Deserialize, Serialize};

/// A read result and the index that goes into `X-Consul-Index`.
///
/// Invariant: `index >= 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indexed<T> {
    /// The raft index of the last write that affected `value` (never 0).
    pub index: u64,
    /// The result.
    pub value: T,
}

/// One KV entry (Consul's `KVPair` without the base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    /// The key.
    pub key: String,
    /// The raw value bytes.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Opaque client flags.
    pub flags: u64,
    /// Index of the write that created the key.
    pub create_index: u64,
    /// Index of the last write that changed the key.
    pub modify_index: u64,
    /// Number of times the key was acquired as a lock.
    pub lock_index: u64,
    /// The session holding the lock, if any.
    pub session: Option<String>,
}
