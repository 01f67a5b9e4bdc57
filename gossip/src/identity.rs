//! The identity foca gossips about: who a member is on the SWIM layer.
//!
//! Kept small because it rides in every SWIM header and membership update:
//! name, gossip address and a "life" number. Tags and the node ID travel
//! separately (`wire.rs`) so they don't cost bytes on every ping.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A member's identity on the SWIM layer.
///
/// Invariant: two identities with the same `addr` are two lives of the same
/// process slot; the one with the larger `life` wins (a restart or an
/// automatic rejoin after being declared down).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct NodeIdent {
    /// The member's node name (unique in the pool).
    pub(crate) name: String,
    /// Where its gossip UDP/TCP socket is reached.
    pub(crate) addr: SocketAddr,
    /// Milliseconds since the epoch at start, plus one per automatic rejoin.
    pub(crate) life: u64,
}

impl std::fmt::Debug for NodeIdent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}#{}", self.name, self.addr, self.life)
    }
}

impl foca::Identity for NodeIdent {
    type Addr = SocketAddr;

    /// Opting in to foca's automatic rejoin: when the cluster declares this
    /// node down while it is in fact alive (a pause, a partition), it comes
    /// back under a newer life instead of staying defunct.
    fn renew(&self) -> Option<Self> {
        Some(NodeIdent {
            name: self.name.clone(),
            addr: self.addr,
            life: self.life.wrapping_add(1),
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.life > adversary.life
    }
}

/// Milliseconds since the Unix epoch, the first `life` of a process.
pub(crate) fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}
