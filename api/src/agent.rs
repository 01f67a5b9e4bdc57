//! `/v1/agent/*` (consul-compat.md §5). For now only `GET /v1/agent/self`:
//! the agent's configuration summary and its own gossip `Member`. Agent
//! endpoints act on this agent only: no `dc`, no consistency gate.

use std::net::{IpAddr, Ipv4Addr};

use hyper::Response;
use serde_json::{json, Value};

use crate::backend::Backend;
use crate::error::Result;
use crate::response::Body;
use crate::router::Ctx;
use crate::ApiConfig;

/// Default LAN gossip port (Consul's `serf_lan`).
const SERF_LAN_PORT: u16 = 8301;
/// Default server RPC port.
const SERVER_PORT: u16 = 8300;

/// The agent's own `Member` (§5), alive.
pub fn member(cfg: &ApiConfig, addr: Option<IpAddr>) -> Value {
    let addr = match addr {
        Some(ip) if !ip.is_unspecified() => ip,
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    let role = if cfg.server { "consul" } else { "node" };
    json!({
        "Name": cfg.node_name,
        "Addr": addr.to_string(),
        "Port": SERF_LAN_PORT,
        "Tags": {
            "role": role,
            "dc": cfg.datacenter,
            "id": cfg.node_id,
            "port": SERVER_PORT.to_string(),
            "build": format!("{}:", cfg.version),
            "vsn": "2",
            "vsn_min": "2",
            "vsn_max": "3",
            "segment": "",
        },
        "Status": 1,
        "ProtocolMin": 1,
        "ProtocolMax": 5,
        "ProtocolCur": 2,
        "DelegateMin": 2,
        "DelegateMax": 5,
        "DelegateCur": 4,
    })
}

/// The `/v1/agent/self` document.
pub fn self_document(cfg: &ApiConfig, addr: Option<IpAddr>) -> Value {
    json!({
        "Config": {
            "Datacenter": cfg.datacenter,
            "PrimaryDatacenter": cfg.datacenter,
            "NodeName": cfg.node_name,
            "NodeID": cfg.node_id,
            "Revision": "",
            "Server": cfg.server,
            "Version": cfg.version,
            "BuildDate": "",
        },
        "DebugConfig": {},
        "Coord": null,
        "Member": member(cfg, addr),
        "Stats": {},
        "Meta": {},
    })
}

/// `GET /v1/agent/self`.
pub(crate) fn self_<E: Backend>(ctx: &Ctx<'_, E>) -> Result<Response<Body>> {
    let addr = ctx.st.local_addr.map(|a| a.ip());
    ctx.json(&self_document(&ctx.st.cfg, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_self_shape() {
        let cfg = ApiConfig::new("dc1", "n1", "6f8a2c1e-0000-4000-8000-000000000001");
        let doc = self_document(&cfg, Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5))));
        assert_eq!(doc["Config"]["Datacenter"], "dc1");
        assert_eq!(doc["Config"]["PrimaryDatacenter"], "dc1");
        assert_eq!(doc["Config"]["NodeName"], "n1");
        assert_eq!(doc["Config"]["Server"], true);
        assert!(doc["Config"]["Version"].is_string());
        assert!(doc["Config"]["Revision"].is_string() && doc["Config"]["BuildDate"].is_string());
        assert_eq!(doc["Coord"], Value::Null);
        assert_eq!(doc["DebugConfig"], json!({}));
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
        let unspecified = member(&cfg, Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
        assert_eq!(unspecified["Addr"], "127.0.0.1");
    }
}
