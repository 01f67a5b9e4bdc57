//! This agent as a gossip member: its `Member` entry (§5) as `members`
//! lists it when there is no cluster backend, and the `/v1/agent/self`
//! document.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;
use serde_json::{json, Value};

use crate::cluster::{MemberInfo, MemberStatusCode};
use crate::ApiConfig;

/// Default WAN gossip port (Consul's `serf_wan`).
pub(super) const SERF_WAN_PORT: u16 = 8302;
/// Default LAN gossip port (Consul's `serf_lan`).
const SERF_LAN_PORT: u16 = 8301;
/// Default server RPC port.
const SERVER_PORT: u16 = 8300;

/// The agent's own member (§5), alive, as gossip would show it.
pub fn local_member(cfg: &ApiConfig, addr: Option<IpAddr>) -> MemberInfo {
    let addr = match addr {
        Some(ip) if !ip.is_unspecified() => ip,
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    let role = if cfg.server { "consul" } else { "node" };
    let tags = [
        ("role", role.to_string()),
        ("dc", cfg.datacenter.clone()),
        ("id", cfg.node_id.clone()),
        ("port", SERVER_PORT.to_string()),
        ("build", muster_engine::build_tag()),
        ("vsn", "2".into()),
        ("vsn_min", "2".into()),
        ("vsn_max", "3".into()),
        ("segment", String::new()),
    ];
    MemberInfo {
        name: cfg.node_name.clone(),
        addr: addr.to_string(),
        port: SERF_LAN_PORT,
        tags: tags.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        status: MemberStatusCode::Alive,
    }
}

/// Consul's `Member` object (`api.AgentMember`): the member plus serf's
/// fixed protocol ranges.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct MemberJson<'a> {
    name: &'a str,
    addr: &'a str,
    port: u16,
    tags: &'a BTreeMap<String, String>,
    status: MemberStatusCode,
    protocol_min: u8,
    protocol_max: u8,
    protocol_cur: u8,
    delegate_min: u8,
    delegate_max: u8,
    delegate_cur: u8,
}

impl<'a> From<&'a MemberInfo> for MemberJson<'a> {
    fn from(m: &'a MemberInfo) -> Self {
        MemberJson {
            name: &m.name,
            addr: &m.addr,
            port: m.port,
            tags: &m.tags,
            status: m.status,
            protocol_min: 1,
            protocol_max: 5,
            protocol_cur: 2,
            delegate_min: 2,
            delegate_max: 5,
            delegate_cur: 4,
        }
    }
}

/// The `/v1/agent/self` document, with `me` as its `Member` (the gossip
/// pool's entry for this agent, or [`local_member`] without a pool).
/// `Config.Version` is the Consul version muster answers as
/// ([`muster_engine::CONSUL_VERSION`]), `Config.MusterVersion` muster's own;
/// `SessionTTLMin` (nanoseconds) is what Patroni reads after a TTL is
/// refused.
pub fn self_document(cfg: &ApiConfig, me: &MemberInfo) -> Value {
    let ttl_min = u64::try_from(cfg.session_ttl_min.as_nanos()).unwrap_or(u64::MAX);
    json!({
        "Config": {
            "Datacenter": cfg.datacenter,
            "PrimaryDatacenter": cfg.datacenter,
            "NodeName": cfg.node_name,
            "NodeID": cfg.node_id,
            "Revision": "",
            "Server": cfg.server,
            "Version": muster_engine::CONSUL_VERSION,
            "MusterVersion": cfg.version,
            "BuildDate": "",
            "SessionTTLMin": ttl_min,
        },
        "DebugConfig": {
            "Datacenter": cfg.datacenter,
            "PrimaryDatacenter": cfg.datacenter,
            "NodeName": cfg.node_name,
            "NodeID": cfg.node_id,
            "ServerMode": cfg.server,
            "SessionTTLMin": ttl_min,
            "Version": muster_engine::CONSUL_VERSION,
        },
        "Coord": null,
        "Member": MemberJson::from(me),
        "Stats": {},
        "Meta": {},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_self_shape() {
        let cfg = ApiConfig::new("dc1", "n1", "6f8a2c1e-0000-4000-8000-000000000001");
        let me = local_member(&cfg, Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5))));
        let doc = self_document(&cfg, &me);
        assert_eq!(doc["Config"]["Datacenter"], "dc1");
        assert_eq!(doc["Config"]["PrimaryDatacenter"], "dc1");
        assert_eq!(doc["Config"]["NodeName"], "n1");
        assert_eq!(doc["Config"]["Server"], true);
        assert_eq!(doc["Config"]["Version"], muster_engine::CONSUL_VERSION);
        assert_eq!(doc["Config"]["MusterVersion"], cfg.version);
        assert_eq!(doc["Config"]["SessionTTLMin"], 10_000_000_000_u64);
        assert_eq!(doc["DebugConfig"]["ServerMode"], true);
        assert_eq!(doc["DebugConfig"]["NodeName"], "n1");
        assert!(doc["Config"]["Revision"].is_string() && doc["Config"]["BuildDate"].is_string());
        assert_eq!(doc["Coord"], Value::Null);
        assert_eq!(doc["Meta"], json!({}));
        assert_eq!(doc["Member"]["Status"], 1);
        assert_eq!(doc["Member"]["Addr"], "10.0.0.5");
        assert_eq!(doc["Member"]["Tags"]["role"], "consul");
        assert_eq!(doc["Member"]["Tags"]["dc"], "dc1");
        for k in [
            "Name",
            "Port",
            "ProtocolMin",
            "ProtocolMax",
            "ProtocolCur",
            "DelegateMin",
            "DelegateMax",
            "DelegateCur",
        ] {
            assert!(!doc["Member"][k].is_null(), "{k}");
        }
        assert!(doc["Member"]["Tags"]["build"]
            .as_str()
            .is_some_and(|b| b.starts_with("1.20.0:muster-")));
        let unspecified = local_member(&cfg, Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
        assert_eq!(unspecified.addr, "127.0.0.1");
    }
}
