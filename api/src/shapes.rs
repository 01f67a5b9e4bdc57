//! The catalog, health and session JSON objects of consul-compat.md
//! §2.1–§2.5 and §2.7, built
//! by borrowing the engine's records. Field order and the empty-value rules
//! (`null`, `[]`, `{}`, omitted) are Consul's; nothing here decides what a
//! response contains.

use std::collections::BTreeMap;
use std::time::Duration;

use muster_engine::{duration, Check, Node, Service, ServiceAddress, Session, Weights};
use serde::Serialize;
use serde_json::{Map, Value};

/// `Node` (§2.1).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeJson<'a> {
    /// Node UUID (may be `""`).
    #[serde(rename = "ID")]
    pub id: &'a str,
    /// Node name.
    pub node: &'a str,
    /// Node address.
    pub address: &'a str,
    /// Datacenter.
    pub datacenter: &'a str,
    /// `null` when empty.
    pub tagged_addresses: Option<&'a BTreeMap<String, String>>,
    /// `{}` when empty.
    pub meta: &'a BTreeMap<String, String>,
    /// Creating write.
    pub create_index: u64,
    /// Last changing write.
    pub modify_index: u64,
}

impl<'a> From<&'a Node> for NodeJson<'a> {
    fn from(n: &'a Node) -> Self {
        NodeJson {
            id: &n.id,
            node: &n.node,
            address: &n.address,
            datacenter: &n.datacenter,
            tagged_addresses: non_empty(&n.tagged_addresses),
            meta: &n.meta,
            create_index: n.create_index,
            modify_index: n.modify_index,
        }
    }
}

fn non_empty<K, V>(m: &BTreeMap<K, V>) -> Option<&BTreeMap<K, V>> {
    (!m.is_empty()).then_some(m)
}

/// A service's tagged address (`{"Address","Port"}`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddressJson<'a> {
    /// Address.
    pub address: &'a str,
    /// Port.
    pub port: u16,
}

impl<'a> From<&'a ServiceAddress> for AddressJson<'a> {
    fn from(a: &'a ServiceAddress) -> Self {
        AddressJson {
            address: &a.address,
            port: a.port,
        }
    }
}

fn addresses(m: &BTreeMap<String, ServiceAddress>) -> BTreeMap<&str, AddressJson<'_>> {
    m.iter()
        .map(|(k, v)| (k.as_str(), AddressJson::from(v)))
        .collect()
}

/// `Weights` (`{"Passing","Warning"}`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct WeightsJson {
    /// Weight while passing.
    pub passing: u32,
    /// Weight while warning.
    pub warning: u32,
}

impl From<&Weights> for WeightsJson {
    fn from(w: &Weights) -> Self {
        WeightsJson {
            passing: w.passing,
            warning: w.warning,
        }
    }
}

/// The empty `Proxy` of a typical service.
fn empty_proxy() -> Value {
    let mut m = Map::new();
    m.insert("Mode".into(), Value::String(String::new()));
    m.insert("MeshGateway".into(), Value::Object(Map::new()));
    m.insert("Expose".into(), Value::Object(Map::new()));
    Value::Object(m)
}

/// `CatalogService` / `ServiceNode` (§2.2).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CatalogServiceJson<'a> {
    /// Node UUID.
    #[serde(rename = "ID")]
    pub id: &'a str,
    /// Node name.
    pub node: &'a str,
    /// Node address.
    pub address: &'a str,
    /// Datacenter.
    pub datacenter: &'a str,
    /// Node tagged addresses (`null` when empty).
    pub tagged_addresses: Option<&'a BTreeMap<String, String>>,
    /// Node meta.
    pub node_meta: &'a BTreeMap<String, String>,
    /// `""` for a typical service.
    pub service_kind: &'a str,
    /// Instance ID.
    #[serde(rename = "ServiceID")]
    pub service_id: &'a str,
    /// Service name.
    pub service_name: &'a str,
    /// Tags (`[]` when none).
    pub service_tags: &'a [String],
    /// Instance address (`""` = node's).
    pub service_address: &'a str,
    /// Omitted when empty.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub service_tagged_addresses: BTreeMap<&'a str, AddressJson<'a>>,
    /// SRV weights.
    pub service_weights: WeightsJson,
    /// Service meta.
    pub service_meta: &'a BTreeMap<String, String>,
    /// Port.
    pub service_port: u16,
    /// Unix socket path.
    pub service_socket_path: &'a str,
    /// Tag override flag.
    pub service_enable_tag_override: bool,
    /// Mesh proxy settings (empty).
    pub service_proxy: Value,
    /// Mesh connect settings (`{}`).
    pub service_connect: Map<String, Value>,
    /// Always `null`.
    pub service_locality: Option<()>,
    /// Instance creating write.
    pub create_index: u64,
    /// Instance last changing write.
    pub modify_index: u64,
}

impl<'a> CatalogServiceJson<'a> {
    /// The instance `s` on node `n`.
    pub fn new(n: &'a Node, s: &'a Service) -> Self {
        CatalogServiceJson {
            id: &n.id,
            node: &n.node,
            address: &n.address,
            datacenter: &n.datacenter,
            tagged_addresses: non_empty(&n.tagged_addresses),
            node_meta: &n.meta,
            service_kind: &s.kind,
            service_id: &s.id,
            service_name: &s.service,
            service_tags: &s.tags,
            service_address: &s.address,
            service_tagged_addresses: addresses(&s.tagged_addresses),
            service_weights: WeightsJson::from(&s.weights),
            service_meta: &s.meta,
            service_port: s.port,
            service_socket_path: &s.socket_path,
            service_enable_tag_override: s.enable_tag_override,
            service_proxy: empty_proxy(),
            service_connect: Map::new(),
            service_locality: None,
            create_index: s.create_index,
            modify_index: s.modify_index,
        }
    }
}

/// `NodeService` (§2.3).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeServiceJson<'a> {
    /// Omitted when `""`.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub kind: &'a str,
    /// Instance ID.
    #[serde(rename = "ID")]
    pub id: &'a str,
    /// Service name.
    pub service: &'a str,
    /// Tags (`[]` when none).
    pub tags: &'a [String],
    /// Instance address.
    pub address: &'a str,
    /// Omitted when empty.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tagged_addresses: BTreeMap<&'a str, AddressJson<'a>>,
    /// Meta (`{}` when none).
    pub meta: &'a BTreeMap<String, String>,
    /// Omitted when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub port: u16,
    /// Omitted when empty.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub socket_path: &'a str,
    /// SRV weights.
    pub weights: WeightsJson,
    /// Tag override flag.
    pub enable_tag_override: bool,
    /// Mesh proxy settings (empty).
    pub proxy: Value,
    /// Mesh connect settings (`{}`).
    pub connect: Map<String, Value>,
    /// Creating write.
    pub create_index: u64,
    /// Last changing write.
    pub modify_index: u64,
}

fn is_zero(p: &u16) -> bool {
    *p == 0
}

impl<'a> From<&'a Service> for NodeServiceJson<'a> {
    fn from(s: &'a Service) -> Self {
        NodeServiceJson {
            kind: &s.kind,
            id: &s.id,
            service: &s.service,
            tags: &s.tags,
            address: &s.address,
            tagged_addresses: addresses(&s.tagged_addresses),
            meta: &s.meta,
            port: s.port,
            socket_path: &s.socket_path,
            weights: WeightsJson::from(&s.weights),
            enable_tag_override: s.enable_tag_override,
            proxy: empty_proxy(),
            connect: Map::new(),
            create_index: s.create_index,
            modify_index: s.modify_index,
        }
    }
}

/// `AgentService` (§2.4): `/v1/agent/services` values, `/v1/agent/service/:id`
/// (with `ContentHash`), the `Service` of local service health.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentServiceJson<'a> {
    /// Omitted when `""`.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub kind: &'a str,
    /// Instance ID.
    #[serde(rename = "ID")]
    pub id: &'a str,
    /// Service name.
    pub service: &'a str,
    /// Tags (`[]` when none).
    pub tags: &'a [String],
    /// Meta (`{}` when none).
    pub meta: &'a BTreeMap<String, String>,
    /// Port (always present).
    pub port: u16,
    /// Instance address.
    pub address: &'a str,
    /// Omitted when empty.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub socket_path: &'a str,
    /// Omitted when empty.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tagged_addresses: BTreeMap<&'a str, AddressJson<'a>>,
    /// SRV weights.
    pub weights: WeightsJson,
    /// Tag override flag.
    pub enable_tag_override: bool,
    /// Omitted when 0.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub create_index: u64,
    /// Omitted when 0.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub modify_index: u64,
    /// Only in the single-service GET.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    /// The agent's datacenter.
    pub datacenter: &'a str,
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

impl<'a> AgentServiceJson<'a> {
    /// The local instance `s` on an agent in datacenter `dc`.
    pub fn new(s: &'a Service, dc: &'a str) -> Self {
        AgentServiceJson {
            kind: &s.kind,
            id: &s.id,
            service: &s.service,
            tags: &s.tags,
            meta: &s.meta,
            port: s.port,
            address: &s.address,
            socket_path: &s.socket_path,
            tagged_addresses: addresses(&s.tagged_addresses),
            weights: WeightsJson::from(&s.weights),
            enable_tag_override: s.enable_tag_override,
            create_index: s.create_index,
            modify_index: s.modify_index,
            content_hash: None,
            datacenter: dc,
        }
    }

    /// Set `ContentHash`: 16 hex digits of a 64-bit FNV-1a hash of the
    /// object's JSON (any change of a field changes it), and return it.
    pub fn with_content_hash(mut self) -> (Self, String) {
        self.content_hash = None;
        let bytes = serde_json::to_vec(&self).unwrap_or_default();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let hash = format!("{h:016x}");
        self.content_hash = Some(hash.clone());
        (self, hash)
    }
}

/// `HealthCheck` (§2.5).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthCheckJson<'a> {
    /// Node name.
    pub node: &'a str,
    /// Check ID.
    #[serde(rename = "CheckID")]
    pub check_id: &'a str,
    /// Check name.
    pub name: &'a str,
    /// `passing|warning|critical`.
    pub status: &'static str,
    /// Notes.
    pub notes: &'a str,
    /// Last output.
    pub output: &'a str,
    /// Instance ID (`""` for node checks).
    #[serde(rename = "ServiceID")]
    pub service_id: &'a str,
    /// Service name.
    pub service_name: &'a str,
    /// Service tags (`[]` for node checks).
    pub service_tags: &'a [String],
    /// Check type.
    pub r#type: &'a str,
    /// Go duration, `""` when 0.
    pub interval: String,
    /// Go duration, `""` when 0.
    pub timeout: String,
    /// Always 0.
    pub exposed_port: u16,
    /// The definition JSON, `{}` when none.
    pub definition: Value,
    /// Creating write.
    pub create_index: u64,
    /// Last changing write.
    pub modify_index: u64,
}

fn go_duration(ns: u64) -> String {
    if ns == 0 {
        String::new()
    } else {
        duration::format(Duration::from_nanos(ns))
    }
}

impl<'a> From<&'a Check> for HealthCheckJson<'a> {
    fn from(c: &'a Check) -> Self {
        let definition = serde_json::from_str::<Value>(&c.definition)
            .ok()
            .filter(Value::is_object)
            .unwrap_or_else(|| Value::Object(Map::new()));
        HealthCheckJson {
            node: &c.node,
            check_id: &c.check_id,
            name: &c.name,
            status: c.status.as_str(),
            notes: &c.notes,
            output: &c.output,
            service_id: &c.service_id,
            service_name: &c.service_name,
            service_tags: &c.service_tags,
            r#type: &c.check_type,
            interval: go_duration(c.interval_ns),
            timeout: go_duration(c.timeout_ns),
            exposed_port: 0,
            definition,
            create_index: c.create_index,
            modify_index: c.modify_index,
        }
    }
}

/// A session's linked service check (`{"ID","Namespace"}`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceCheckJson<'a> {
    /// Check ID.
    #[serde(rename = "ID")]
    pub id: &'a str,
    /// Namespace (`""`).
    pub namespace: &'a str,
}

/// `Session` (§2.7). The deprecated `Checks` is never shown: the engine
/// keeps one list of node checks (see `session.rs`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SessionJson<'a> {
    /// Session UUID.
    #[serde(rename = "ID")]
    pub id: &'a str,
    /// Free text.
    pub name: &'a str,
    /// Node name.
    pub node: &'a str,
    /// Nanoseconds (an integer, not a duration string).
    pub lock_delay: u64,
    /// `release` or `delete`.
    pub behavior: &'static str,
    /// As given (`""` = none).
    #[serde(rename = "TTL")]
    pub ttl: &'a str,
    /// `null` when unset.
    pub node_checks: Option<&'a [String]>,
    /// `null` when unset.
    pub service_checks: Option<Vec<ServiceCheckJson<'a>>>,
    /// Creating write.
    pub create_index: u64,
    /// Same as `CreateIndex` (sessions never change).
    pub modify_index: u64,
}

impl<'a> From<&'a Session> for SessionJson<'a> {
    fn from(s: &'a Session) -> Self {
        SessionJson {
            id: &s.id,
            name: &s.name,
            node: &s.node,
            lock_delay: s.lock_delay_ns,
            behavior: s.behavior.as_str(),
            ttl: &s.ttl,
            node_checks: s.node_checks.as_deref(),
            service_checks: s.service_checks.as_ref().map(|list| {
                list.iter()
                    .map(|c| ServiceCheckJson {
                        id: &c.id,
                        namespace: &c.namespace,
                    })
                    .collect()
            }),
            create_index: s.create_index,
            modify_index: s.modify_index,
        }
    }
}

#[cfg(test)]
mod tests;
