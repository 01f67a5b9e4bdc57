//! Server RPC: raft's vote, append-entries and install-snapshot between
//! servers, what followers ask of the leader (forwarded proposals, read
//! indexes, joins), and what client agents ask of any server (their
//! writes, node reads, relayed DNS questions and forwarded HTTP API
//! requests), as MessagePack over HTTP/2 without TLS (h2c) with hyper; one
//! pooled connection per peer.
//!
//! Every `/raft/*` and `/rpc/*` endpoint is `POST <path>` with a msgpack
//! body and answers 200 with a msgpack `Result<T, E>`: transport failures
//! are the client's, raft and leadership errors travel as values. `/v1/*`
//! is the HTTP API itself, answered as the server's HTTP port would.
//! `transport.rs` is where the binary's TLS wraps the connections.

pub(crate) mod client;
pub mod server;
pub mod transport;

use serde::{Deserialize, Serialize};

use openraft::raft::InstallSnapshotRequest;

use crate::command::Response;
use crate::raft::{RaftNode, TypeConfig};

/// openraft's append-entries.
pub(crate) const PATH_APPEND: &str = "/raft/append";
/// openraft's vote.
pub(crate) const PATH_VOTE: &str = "/raft/vote";
/// One chunk of openraft's install-snapshot.
pub(crate) const PATH_SNAPSHOT: &str = "/raft/snapshot";
/// A proposal forwarded to the leader.
pub(crate) const PATH_PROPOSE: &str = "/rpc/propose";
/// A read index from the leader (follower reads).
pub(crate) const PATH_READ_INDEX: &str = "/rpc/read-index";
/// A server asking the leader to add it to the cluster.
pub(crate) const PATH_JOIN: &str = "/rpc/join";
/// A server's identity and view of the cluster.
pub(crate) const PATH_INFO: &str = "/rpc/info";
/// A session renew forwarded to the leader (its TTL timers live there).
pub(crate) const PATH_RENEW: &str = "/rpc/renew";
/// A client agent's writes (anti-entropy): proposed by the server asked,
/// which forwards them to the leader.
pub(crate) const PATH_APPLY: &str = "/rpc/apply";
/// A client agent's read of one node's entry (anti-entropy, alias checks).
pub(crate) const PATH_NODE_VIEW: &str = "/rpc/node-view";
/// A DNS question a client agent relays to a server.
pub(crate) const PATH_DNS: &str = "/rpc/dns";
/// A DNS question from a server of another datacenter, answered once the
/// catalog's index passes the asker's (its cache of the answer is kept
/// fresh with these, one blocking call per cached name).
pub(crate) const PATH_DNS_WATCH: &str = "/rpc/dns-watch";
/// Prefix of the HTTP API requests a client agent forwards: the server
/// answers them with its own API handlers.
pub(crate) const PREFIX_API: &str = "/v1/";

/// Largest RPC body accepted (snapshot chunks are 1 MiB; a batch entry of
/// proposals is at most about 4 MiB, and appends carry several).
pub(crate) const MAX_BODY: usize = 64 << 20;

/// Why the leader-side RPCs failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RpcFailure {
    /// The server asked is not the leader (and may know who is).
    #[error("not the leader")]
    NotLeader {
        /// The leader's RPC address, if known.
        leader: Option<String>,
    },
    /// Anything else, with its message.
    #[error("{0}")]
    Failed(String),
}

/// A client agent's writes ([`PATH_APPLY`]) with its ACL token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ApplyRequest {
    pub token: String,
    pub commands: Vec<crate::command::Command>,
}

/// A client agent's read of one node ([`PATH_NODE_VIEW`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NodeViewRequest {
    /// The agent's ACL token.
    #[serde(default)]
    pub token: String,
    pub node: String,
    pub min_index: u64,
    pub wait_ms: u64,
}

/// A relayed DNS question ([`PATH_DNS`]) and the largest answer wanted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DnsRequest {
    #[serde(with = "serde_bytes")]
    pub packet: Vec<u8>,
    pub max_size: u32,
}

/// A DNS question from another datacenter ([`PATH_DNS_WATCH`]): answered
/// when the catalog index passes `min_index` (0: at once), or after
/// `wait_ms`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DnsWatchRequest {
    #[serde(with = "serde_bytes")]
    pub packet: Vec<u8>,
    pub max_size: u32,
    pub min_index: u64,
    pub wait_ms: u64,
}

/// The answer to a [`DnsWatchRequest`] and the catalog index it was
/// answered at (or after).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DnsWatchAnswer {
    #[serde(with = "serde_bytes")]
    pub packet: Vec<u8>,
    pub index: u64,
}

/// A relayed DNS answer (empty: send nothing).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DnsAnswer(#[serde(with = "serde_bytes")] pub Vec<u8>);

/// A forwarded proposal's outcome: the entry index and the response.
pub(crate) type ProposeResult = Result<(u64, Response), RpcFailure>;

/// One install-snapshot chunk on the wire: openraft's request with the data
/// as a msgpack binary (its own `Vec<u8>` would encode as an array of
/// integers, up to twice the size).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SnapshotChunk {
    pub vote: openraft::Vote<u64>,
    pub meta: openraft::SnapshotMeta<u64, RaftNode>,
    pub offset: u64,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    pub done: bool,
}

impl From<InstallSnapshotRequest<TypeConfig>> for SnapshotChunk {
    fn from(r: InstallSnapshotRequest<TypeConfig>) -> Self {
        SnapshotChunk {
            vote: r.vote,
            meta: r.meta,
            offset: r.offset,
            data: r.data,
            done: r.done,
        }
    }
}

impl From<SnapshotChunk> for InstallSnapshotRequest<TypeConfig> {
    fn from(c: SnapshotChunk) -> Self {
        InstallSnapshotRequest {
            vote: c.vote,
            meta: c.meta,
            offset: c.offset,
            data: c.data,
            done: c.done,
        }
    }
}

/// A server asking to join: its raft id and identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The joining server's raft id.
    pub id: u64,
    /// Its name and RPC address.
    pub node: RaftNode,
}

/// A server's identity and view of the cluster (`/rpc/info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// The server's raft id.
    pub id: u64,
    /// Its name and RPC address.
    pub node: RaftNode,
    /// True once it belongs to an initialised cluster.
    pub initialized: bool,
    /// The leader's RPC address, if known.
    pub leader: Option<String>,
}
