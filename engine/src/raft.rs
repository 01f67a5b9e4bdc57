//! The openraft type configuration and a server's raft identity.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::command::{Command, Response};

/// A raft member: its node name and the address of its server RPC port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftNode {
    /// The agent's node name.
    pub name: String,
    /// `ip:port` of the server RPC listener (what `/v1/status/peers` shows).
    pub addr: String,
}

impl fmt::Display for RaftNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.addr)
    }
}

openraft::declare_raft_types!(
    /// muster's raft types: commands in, responses out, snapshots as files.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = u64,
        Node = RaftNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
);

/// Silence the unused-import lint for `Cursor`, which the macro's defaults
/// mention.
#[allow(dead_code)]
type Unused = Cursor<Vec<u8>>;
