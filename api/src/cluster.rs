//! The cluster interface: what the membership and operator endpoints
//! (`/v1/agent/members|join|leave|force-leave`, `/v1/operator/raft/*`,
//! `/v1/operator/keyring`) need from the gossip pools and raft, as the
//! object-safe [`ClusterBackend`] trait plus the plain data it returns.
//!
//! The binary implements the trait over muster-gossip and openraft and puts
//! it in [`crate::ApiConfig::cluster`]; the handlers (`agent.rs`,
//! `operator.rs`) only translate HTTP to these calls and the results to
//! Consul's JSON. This module holds no state and does no I/O; it must not
//! depend on the gossip crate (api never reaches below the engine).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use crate::error::Error;
use crate::ApiConfig;

/// The 500 body of a cluster endpoint on an agent without a backend.
pub const NOT_AVAILABLE: &str =
    "Cluster operations are not available on this agent (no gossip or raft configured)";

/// A boxed, sendable future (the agent and cluster interfaces are
/// object-safe): the engine's one definition.
pub use muster_engine::BoxFuture;

/// A member's status as Consul's API reports it (serf's numeric
/// `MemberStatus`): `0` none, `1` alive, `2` leaving, `3` left, `4` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberStatusCode {
    /// `0`: unknown or not yet known.
    None,
    /// `1`: answering probes (alive or suspect).
    Alive,
    /// `2`: announced a graceful leave that has not completed.
    Leaving,
    /// `3`: left gracefully, or forced to leave.
    Left,
    /// `4`: stopped answering probes.
    Failed,
}

impl MemberStatusCode {
    /// The number on the wire.
    pub fn code(self) -> u8 {
        match self {
            MemberStatusCode::None => 0,
            MemberStatusCode::Alive => 1,
            MemberStatusCode::Leaving => 2,
            MemberStatusCode::Left => 3,
            MemberStatusCode::Failed => 4,
        }
    }

    /// The status for a wire number, if it is one of the five.
    pub fn from_code(code: u64) -> Option<MemberStatusCode> {
        Some(match code {
            0 => MemberStatusCode::None,
            1 => MemberStatusCode::Alive,
            2 => MemberStatusCode::Leaving,
            3 => MemberStatusCode::Left,
            4 => MemberStatusCode::Failed,
            _ => return None,
        })
    }

    /// Serf's name: `none`, `alive`, `leaving`, `left`, `failed` (what
    /// `consul members` prints).
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatusCode::None => "none",
            MemberStatusCode::Alive => "alive",
            MemberStatusCode::Leaving => "leaving",
            MemberStatusCode::Left => "left",
            MemberStatusCode::Failed => "failed",
        }
    }
}

impl Serialize for MemberStatusCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.code())
    }
}

/// One member of a gossip pool, as `/v1/agent/members` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Node name (`<node>.<dc>` in the WAN pool).
    pub name: String,
    /// Gossip IP address, without the port.
    pub addr: String,
    /// Gossip port (8301 LAN, 8302 WAN by default).
    pub port: u16,
    /// Serf tags: `role` (`consul` for servers, `node` for clients), `dc`,
    /// `id`, `port`, `build`, `vsn`, `segment`, ...
    pub tags: BTreeMap<String, String>,
    /// Current status.
    pub status: MemberStatusCode,
}

/// One server in the raft configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RaftServer {
    /// The raft server ID (the node ID, a UUID).
    #[serde(rename = "ID")]
    pub id: String,
    /// The node name.
    pub node: String,
    /// The server RPC address, `ip:port`.
    pub address: String,
    /// True for the current leader.
    pub leader: bool,
    /// The raft protocol version, always `"3"`.
    pub protocol_version: String,
    /// True for a voter (false for a learner).
    pub voter: bool,
    /// The last log index this server is known to hold (0 if unknown).
    pub last_index: u64,
}

impl RaftServer {
    /// A server speaking raft protocol 3, last index unknown.
    pub fn new(
        id: impl Into<String>,
        node: impl Into<String>,
        address: impl Into<String>,
        leader: bool,
        voter: bool,
    ) -> RaftServer {
        RaftServer {
            id: id.into(),
            node: node.into(),
            address: address.into(),
            leader,
            protocol_version: "3".to_string(),
            voter,
            last_index: 0,
        }
    }
}

/// The raft configuration (`GET /v1/operator/raft/configuration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RaftConfiguration {
    /// Every server in the configuration.
    pub servers: Vec<RaftServer>,
    /// The log index the configuration was committed at.
    pub index: u64,
}

/// Which server `DELETE /v1/operator/raft/peer` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerRef {
    /// By raft server ID (`?id=`).
    Id(String),
    /// By server RPC address, `ip:port` (`?address=`).
    Address(String),
}

/// A gossip keyring operation (`/v1/operator/keyring`). Keys are base64 of
/// 16, 24 or 32 bytes; validating them is the backend's job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyringOp {
    /// `GET`: list the installed keys.
    List,
    /// `POST`: install a key (not yet used for encryption).
    Install(String),
    /// `PUT`: make an installed key the primary (encrypting) key.
    Use(String),
    /// `DELETE`: remove a key that is not the primary.
    Remove(String),
}

/// The keyring state of one gossip pool, Consul's `KeyringResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyringReply {
    /// The WAN pool (servers of every datacenter) rather than the LAN one.
    pub wan: bool,
    /// Installed key → how many members hold it.
    pub keys: BTreeMap<String, usize>,
    /// Primary key → how many members use it as their primary.
    pub primary_keys: BTreeMap<String, usize>,
    /// Members that answered.
    pub num_nodes: usize,
    /// Member name → error or warning it reported (usually empty).
    pub messages: BTreeMap<String, String>,
}

impl KeyringReply {
    /// A reply describing only this agent's keyring: every key held by one
    /// member, `primary` its primary key.
    pub fn local(wan: bool, keys: &[String], primary: &str) -> KeyringReply {
        KeyringReply {
            wan,
            keys: keys.iter().map(|k| (k.clone(), 1)).collect(),
            primary_keys: BTreeMap::from([(primary.to_string(), 1)]),
            num_nodes: 1,
            messages: BTreeMap::new(),
        }
    }
}

/// The gossip pools and raft, as the HTTP API sees them.
///
/// Every error is a message the endpoint answers with status 500, as
/// Consul does (`Unexpected response code: 500 (<msg>)` in its client), so
/// it should read well on its own: `No node found with name 'x'`.
///
/// # Correctness
/// Futures run inside an HTTP request task: a dropped connection cancels
/// them, so an operation that must complete once started (a leave) should
/// be spawned by the implementation rather than run inline.
pub trait ClusterBackend: Send + Sync + 'static {
    /// The members of the LAN pool, or with `wan` of the WAN pool (empty
    /// on a client agent), including this agent; any order.
    fn members(&self, wan: bool) -> Vec<MemberInfo>;
    /// The datacenters known over the WAN pool (alive servers' `dc` tags);
    /// empty on a client agent or without a WAN pool.
    fn datacenters(&self) -> Vec<String> {
        Vec::new()
    }

    /// Send `req` to a server of datacenter `dc`, found over the WAN pool;
    /// `None` when no server of `dc` is known.
    fn forward_dc(
        &self,
        _dc: String,
        _req: hyper::Request<bytes::Bytes>,
    ) -> BoxFuture<'_, Option<Result<hyper::Response<bytes::Bytes>, String>>> {
        Box::pin(async { None })
    }

    /// Join the pool (WAN with `wan`) through each address (`host`,
    /// `host:port`; the pool's default port if none); `Ok(n)` with the
    /// number of addresses contacted, `Err` only if none could be.
    fn join(&self, addrs: Vec<String>, wan: bool) -> BoxFuture<'_, Result<usize, String>>;

    /// Leave every pool gracefully (broadcast the intent, wait for it to
    /// spread), then shut the agent down. The future resolves once the
    /// leave is done, *before* the shutdown: the HTTP server drains
    /// in-flight requests while stopping, so waiting for it would deadlock.
    fn leave(&self) -> BoxFuture<'_, Result<(), String>>;

    /// Mark a failed member as left (WAN pool with `wan`); with `prune`,
    /// forget it immediately instead of after the tombstone timeout.
    fn force_leave(
        &self,
        node: String,
        prune: bool,
        wan: bool,
    ) -> BoxFuture<'_, Result<(), String>>;

    /// The current raft configuration (servers, leader, voters).
    fn raft_configuration(&self) -> BoxFuture<'_, Result<RaftConfiguration, String>>;

    /// Remove a server from the raft configuration (for dead servers); an
    /// unknown ID or address is an error (`id "x" was not found in the Raft
    /// configuration`).
    fn remove_raft_peer(&self, by: PeerRef) -> BoxFuture<'_, Result<(), String>>;

    /// Run a keyring operation; the reply has one entry per pool it
    /// covered (WAN first on servers, then LAN). Install, use and remove
    /// may reply with an empty list.
    fn keyring(&self, op: KeyringOp) -> BoxFuture<'_, Result<Vec<KeyringReply>, String>>;

    // ---- Autopilot (`/v1/operator/autopilot/*`, `autopilot/`) ----------
    // Defaults: an agent without raft has no autopilot.

    /// This server's `autopilot` settings from its configuration files,
    /// with Consul's defaults for the rest: the configuration in force
    /// until an operator stores one. `None` on a client agent.
    fn autopilot_defaults(&self) -> Option<crate::autopilot::AutopilotConfiguration> {
        None
    }

    /// Every server of the raft configuration as autopilot sees it now:
    /// gossip status, raft progress (asked of each server, which may take
    /// up to a second), and health judged with `config` by
    /// [`crate::autopilot::health::judge`], with how long each has held it.
    fn autopilot_servers(
        &self,
        _config: crate::autopilot::AutopilotConfiguration,
    ) -> BoxFuture<'_, Result<Vec<crate::autopilot::AutopilotServer>, String>> {
        Box::pin(async { Err(NOT_AVAILABLE.to_string()) })
    }

    // ---- User events (`/v1/event/*`, `event.rs`) ------------------------
    // Defaults: an agent without gossip fires nothing and lists nothing.

    /// Fire a user event (name, payload and filters as given) into the LAN
    /// pool: every agent of the datacenter receives it, this one at once.
    /// The backend assigns its ID, version and Lamport time and returns it
    /// as fired; an error (too large, gossip stopped) is a 500's message.
    fn fire_user_event(
        &self,
        _event: crate::event::UserEvent,
    ) -> BoxFuture<'_, Result<crate::event::UserEvent, String>> {
        Box::pin(async { Err(NOT_AVAILABLE.to_string()) })
    }

    /// The last user events this agent received over gossip (or fired), at
    /// most 256, oldest first, whatever their filters: the endpoint
    /// applies them.
    fn user_events(&self) -> Vec<crate::event::UserEvent> {
        Vec::new()
    }

    /// Resolves when a user event arrives after this call: the
    /// subscription is taken at once, so an event that lands before the
    /// future is first polled still wakes it. Never resolves without
    /// gossip.
    fn next_user_event(&self) -> BoxFuture<'static, ()> {
        Box::pin(std::future::pending())
    }
}

/// The agent's cluster backend, or a 500 saying there is none.
pub(crate) fn require(cfg: &ApiConfig) -> crate::Result<&Arc<dyn ClusterBackend>> {
    cfg.cluster
        .as_ref()
        .ok_or_else(|| Error::Internal(NOT_AVAILABLE.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_status_codes_round_trip() -> Result<(), serde_json::Error> {
        for code in 0..5 {
            let s = MemberStatusCode::from_code(code);
            assert_eq!(s.map(|s| u64::from(s.code())), Some(code));
        }
        assert_eq!(MemberStatusCode::from_code(5), None);
        assert_eq!(serde_json::to_string(&MemberStatusCode::Failed)?, "4");
        assert_eq!(MemberStatusCode::Leaving.as_str(), "leaving");
        Ok(())
    }

    #[test]
    fn raft_configuration_has_consuls_shape() -> Result<(), serde_json::Error> {
        let cfg = RaftConfiguration {
            servers: vec![RaftServer::new("id1", "s1", "10.0.0.1:8300", true, true)],
            index: 42,
        };
        assert_eq!(
            serde_json::to_string(&cfg)?,
            r#"{"Servers":[{"ID":"id1","Node":"s1","Address":"10.0.0.1:8300","Leader":true,"ProtocolVersion":"3","Voter":true,"LastIndex":0}],"Index":42}"#
        );
        Ok(())
    }
}
