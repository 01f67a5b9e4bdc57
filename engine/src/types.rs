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

/// A catalog node (Consul's `Node`).
///
/// Every record type here is also carried inside commands, so fields are
/// only ever added, with `#[serde(default)]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Node {
    /// The node's UUID, or `""` for externally registered nodes.
    pub id: String,
    /// The node name (matched case-insensitively).
    pub node: String,
    /// The node's address.
    pub address: String,
    /// The node's datacenter.
    pub datacenter: String,
    /// `lan`, `wan`, ... addresses.
    pub tagged_addresses: std::collections::BTreeMap<String, String>,
    /// Node metadata.
    pub meta: std::collections::BTreeMap<String, String>,
    /// Index of the write that created the node.
    pub create_index: u64,
    /// Index of the last write that changed the node.
    pub modify_index: u64,
}

/// An address and port (a service's tagged address).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ServiceAddress {
    /// The address.
    pub address: String,
    /// The port.
    pub port: u16,
}

/// DNS SRV weights of a service instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Weights {
    /// Weight while passing (≥ 1).
    pub passing: u32,
    /// Weight while warning.
    pub warning: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            passing: 1,
            warning: 1,
        }
    }
}

/// One service instance registered on a node (Consul's `NodeService`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Service {
    /// The node the instance runs on (as registered).
    pub node: String,
    /// The instance ID (unique per node).
    pub id: String,
    /// The service name.
    pub service: String,
    /// `""` for a typical service; mesh kinds otherwise.
    pub kind: String,
    /// Tags.
    pub tags: Vec<String>,
    /// The instance address (`""` = the node's).
    pub address: String,
    /// Tagged addresses (`lan`, `wan`, ...).
    pub tagged_addresses: std::collections::BTreeMap<String, ServiceAddress>,
    /// The port (0 = none).
    pub port: u16,
    /// Unix socket path, if any.
    pub socket_path: String,
    /// Metadata.
    pub meta: std::collections::BTreeMap<String, String>,
    /// SRV weights.
    pub weights: Weights,
    /// Let the catalog's tags win over the agent's (anti-entropy).
    pub enable_tag_override: bool,
    /// Index of the write that created the instance.
    pub create_index: u64,
    /// Index of the last write that changed the instance.
    pub modify_index: u64,
}

/// A health check status.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub enum Status {
    /// Healthy.
    Passing,
    /// Degraded: still in DNS answers unless `only_passing`.
    Warning,
    /// Failing: out of DNS and `?passing` answers. The default, as in Consul.
    #[default]
    Critical,
}

impl Status {
    /// Consul's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passing => "passing",
            Status::Warning => "warning",
            Status::Critical => "critical",
        }
    }

    /// Parse Consul's spelling.
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "passing" => Some(Status::Passing),
            "warning" => Some(Status::Warning),
            "critical" => Some(Status::Critical),
            _ => None,
        }
    }
}

/// A health check (Consul's `HealthCheck`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Check {
    /// The node the check belongs to.
    pub node: String,
    /// The check ID (unique per node).
    pub check_id: String,
    /// The check name.
    pub name: String,
    /// Current status.
    pub status: Status,
    /// Human notes.
    pub notes: String,
    /// Output of the last run.
    pub output: String,
    /// The service instance this check belongs to (`""` = node check).
    pub service_id: String,
    /// The service name (copied from the instance at registration).
    pub service_name: String,
    /// The service tags (copied from the instance at registration).
    pub service_tags: Vec<String>,
    /// `ttl`, `http`, `tcp`, `script`, ... or `""`.
    pub check_type: String,
    /// Run interval in nanoseconds (0 = none).
    pub interval_ns: u64,
    /// Timeout in nanoseconds (0 = none).
    pub timeout_ns: u64,
    /// The check definition as JSON text (opaque to the engine; `""` = `{}`).
    pub definition: String,
    /// Index of the write that created the check.
    pub create_index: u64,
    /// Index of the last write that changed the check.
    pub modify_index: u64,
}

/// A node with the service instances registered on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeServices {
    /// The node.
    pub node: Node,
    /// Its services, sorted by ID.
    pub services: Vec<Service>,
}

/// One entry of `/v1/health/service/:s`: an instance, its node, and the
/// node's checks plus the instance's checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceHealth {
    /// The node.
    pub node: Node,
    /// The instance.
    pub service: Service,
    /// Node-level checks then the instance's checks, each sorted by ID.
    pub checks: Vec<Check>,
}

/// A service instance with its node (`/v1/catalog/service/:s`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceNode {
    /// The node.
    pub node: Node,
    /// The instance.
    pub service: Service,
}

/// What invalidating a session does to the locks it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SessionBehavior {
    /// Clear `Session` on each key (`LockIndex` kept).
    #[default]
    Release,
    /// Delete each key.
    Delete,
}

impl SessionBehavior {
    /// Consul's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionBehavior::Release => "release",
            SessionBehavior::Delete => "delete",
        }
    }
}

/// A service check a session is linked to (`ServiceChecks` entries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ServiceCheckRef {
    /// The check ID.
    pub id: String,
    /// The namespace (always `""` here).
    pub namespace: String,
}

/// A session (Consul's `Session`). Immutable once created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Session {
    /// Random UUID, chosen by the proposer.
    pub id: String,
    /// Free text.
    pub name: String,
    /// The node the session belongs to.
    pub node: String,
    /// Lock-delay in nanoseconds (capped at 60 s by the proposer; 0 = none).
    pub lock_delay_ns: u64,
    /// What invalidation does to held locks.
    pub behavior: SessionBehavior,
    /// The TTL as given (`""` = none), e.g. `"30s"`; the leader expires the
    /// session after twice this without a renew.
    pub ttl: String,
    /// Node checks the session depends on (`None` shows as `null`).
    pub node_checks: Option<Vec<String>>,
    /// Service checks the session depends on (`None` shows as `null`).
    pub service_checks: Option<Vec<ServiceCheckRef>>,
    /// Index of the write that created the session.
    pub create_index: u64,
    /// Same as `create_index` (sessions never change).
    pub modify_index: u64,
}

impl Session {
    /// Every check ID the session is linked to, node checks first.
    pub fn linked_checks(&self) -> Vec<String> {
        let mut out: Vec<String> = self.node_checks.clone().unwrap_or_default();
        for c in self.service_checks.iter().flatten() {
            if !out.contains(&c.id) {
                out.push(c.id.clone());
            }
        }
        out
    }

    /// The TTL as a duration (`None` when there is none or it does not parse).
    pub fn ttl_duration(&self) -> Option<std::time::Duration> {
        if self.ttl.is_empty() {
            return None;
        }
        crate::duration::parse(&self.ttl)
            .ok()
            .filter(|d| !d.is_zero())
    }
}

/// An object the engine stores and replicates without interpreting its
/// body: a prepared query (`kind` "query"), the autopilot configuration
/// ("autopilot"). The API layer owns the body's shape (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct StoredObject {
    /// What it is ("query", "autopilot").
    pub kind: String,
    /// Its ID, unique within the kind.
    pub id: String,
    /// Its name (unique within the kind when the write asks so; may be
    /// empty).
    pub name: String,
    /// A session it lives with: the object is deleted when the session
    /// is invalidated (empty: none).
    pub session: String,
    /// The body (JSON).
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// Index of the write that created it.
    pub create_index: u64,
    /// Index of the last write.
    pub modify_index: u64,
}
