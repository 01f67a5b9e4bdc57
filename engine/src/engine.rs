//! The `Engine` handle: what the API, DNS and CLI layers hold. It proposes
//! commands through raft and answers typed reads from the views.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::command::{Command, Response};
use crate::error::Result;
use crate::types::{Indexed, KvEntry};
use crate::watch::Watch;

/// How to open an engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Directory for the log, views and snapshots.
    pub data_dir: PathBuf,
    /// This agent's node name.
    pub node_name: String,
    /// This server's raft id (persisted by the caller).
    pub node_id: u64,
    /// `ip:port` of this server's RPC listener, as peers should reach it.
    pub rpc_addr: String,
    /// Initialise a one-member cluster if the log is empty.
    pub bootstrap: bool,
    /// Raft heartbeat interval.
    pub heartbeat: Duration,
    /// Raft election timeout lower bound (upper bound is twice this).
    pub election_timeout: Duration,
    /// Build a snapshot after this many entries since the last one.
    pub snapshot_threshold: u64,
    /// Entries kept in the log behind a snapshot (for slow followers).
    pub trailing_logs: u64,
}

impl EngineConfig {
    /// Defaults for a single server in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>, node_name: impl Into<String>) -> EngineConfig {
        EngineConfig {
            data_dir: data_dir.into(),
            node_name: node_name.into(),
            node_id: 1,
            rpc_addr: "127.0.0.1:8300".to_string(),
            bootstrap: true,
            heartbeat: Duration::from_millis(250),
            election_timeout: Duration::from_millis(1000),
            snapshot_threshold: 16_384,
            trailing_logs: 10_240,
        }
    }
}

/// The result of a proposed command once applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The log index of the entry (its `ModifyIndex`).
    pub index: u64,
    /// What the state machine answered.
    pub response: Response,
}

/// What the raft layer knows about the cluster, for the read headers and
/// `/v1/status/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    /// RPC address of the current leader, if known.
    pub leader: Option<String>,
    /// True if this server is the leader.
    pub is_leader: bool,
    /// RPC addresses of the raft voters.
    pub peers: Vec<String>,
    /// Milliseconds since this server last heard from the leader (0 on the
    /// leader).
    pub last_contact_ms: u64,
    /// Last log index applied to the views.
    pub applied_index: u64,
}

/// A handle to the running engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    watch: Arc<Watch>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl Engine {
    /// Open (or create) the data directory, recover the log and views, start
    /// raft and, with `bootstrap`, initialise a one-member cluster.
    pub async fn open(_cfg: EngineConfig) -> Result<Engine> {
        todo!("engine open")
    }

    /// Propose a command; resolves once it is committed and applied.
    pub async fn propose(&self, _cmd: Command) -> Result<Applied> {
        todo!("propose")
    }

    /// The watch hub, for blocking reads.
    pub fn watch(&self) -> &Arc<Watch> {
        &self.inner.watch
    }

    /// Cluster status for headers and `/v1/status/*`.
    pub fn status(&self) -> ClusterStatus {
        todo!("status")
    }

    /// Default-consistency read gate: `Err(NoLeader)` unless this server is
    /// the leader.
    pub fn check_leader(&self) -> Result<()> {
        todo!("check_leader")
    }

    /// `?consistent` read gate: confirm leadership with a quorum and wait
    /// until the views have applied the read index.
    pub async fn linearizable(&self) -> Result<()> {
        todo!("linearizable")
    }

    /// One KV key. Index: the key's `ModifyIndex` when found, else the KV
    /// table index (≥ 1).
    pub fn kv_get(&self, _key: &str) -> Result<Indexed<Option<KvEntry>>> {
        todo!("kv_get")
    }

    /// Every KV entry whose key starts with `prefix`, sorted by key. Index:
    /// max `ModifyIndex` of the entries and of tombstones under the prefix; the
    /// KV table index if nothing matches or the prefix is empty (≥ 1).
    pub fn kv_list(&self, _prefix: &str) -> Result<Indexed<Vec<KvEntry>>> {
        todo!("kv_list")
    }

    /// Key names under `prefix`, cut after the first `separator` past the
    /// prefix and deduplicated (when a separator is given), sorted. Index as
    /// for [`Engine::kv_list`].
    pub fn kv_keys(&self, _prefix: &str, _separator: Option<&str>) -> Result<Indexed<Vec<String>>> {
        todo!("kv_keys")
    }

    /// The KV table index, tombstones included (≥ 1).
    pub fn kv_table_index(&self) -> Result<u64> {
        todo!("kv_table_index")
    }

    /// This agent's node name.
    pub fn node_name(&self) -> String {
        todo!("node_name")
    }

    /// Stop raft and flush; pending proposals fail with `Shutdown`.
    pub async fn shutdown(&self) -> Result<()> {
        todo!("shutdown")
    }
}
