//! Several datacenters as a user runs them: three servers in dc1 and one in
//! dc2 that joined dc1's first server over WAN gossip. Every server's WAN
//! pool lists all four (Consul's flood join brings dc1's other servers in),
//! also after a dc1 server is killed with -9 and restarted; DNS names of
//! dc2 (`web.service.dc2.consul`, RFC 2782, `.node.dc2`) answer through any
//! dc1 server, follow changes in dc2, and a datacenter no one knows is
//! NXDOMAIN with the SOA.

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use crate::cluster::start_server;
use crate::dns::{a_addrs, dns_addr, udp};
use crate::harness::{wait_until, Agent};

/// Three dc1 servers (`-bootstrap-expect 3`) and one dc2 server joined
/// over WAN to the first.
pub(crate) struct Federation {
    pub dc1: Vec<Agent>,
    pub dc2: Agent,
}

impl Federation {
    pub(crate) fn start() -> Federation {
        let s1 = start_server("s1", None, "{}");
        let s2 = start_server("s2", Some(&s1), "{}");
        let s3 = start_server("s3", Some(&s1), "{}");
        let seed = format!(
            "127.0.0.1:{}",
            s1.flag("-serf-wan-port").expect("-serf-wan-port")
        );
        let dc2 = Agent::start(
            &[
                "-server",
                "-bootstrap",
                "-node",
                "d1",
                "-datacenter",
                "dc2",
                "-retry-join-wan",
                &seed,
            ],
            true,
        );
        let dc1 = vec![s1, s2, s3];
        wait_until("dc1 elects a leader", Duration::from_secs(30), || {
            dc1.iter().all(|s| s.leader().is_some())
        });
        wait_until("dc2 elects a leader", Duration::from_secs(30), || {
            dc2.leader().is_some()
        });
        Federation { dc1, dc2 }
    }

    pub(crate) fn servers(&self) -> impl Iterator<Item = &Agent> {
        self.dc1.iter().chain(std::iter::once(&self.dc2))
    }

    /// Every server's WAN pool lists the four servers alive.
    pub(crate) fn wan_is_whole(&self) -> bool {
        let all = ["d1.dc2", "s1.dc1", "s2.dc1", "s3.dc1"];
        self.servers()
            .all(|s| s.alive_members_at("/v1/agent/members?wan=1") == all)
    }
}

/// Register `id` of service `web` on node `node` (address `addr`) through
/// `on`'s catalog, with a check in `status`.
pub(crate) fn register_web(on: &Agent, node: &str, addr: &str, id: &str, status: &str) {
    let body = serde_json::json!({
        "Node": node,
        "Address": addr,
        "Service": {"ID": id, "Service": "web", "Port": 8080, "Tags": ["v1"]},
        "Check": {"CheckID": format!("check-{id}"), "Name": "web alive", "Status": status,
                  "ServiceID": id},
    });
    let r = on.put("/v1/catalog/register", body.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn wan_pool_floods_rejoins_and_dns_reaches_the_other_datacenter() {
    let mut fed = Federation::start();
    // dc2 joined only s1; s2 and s3 come in through flood join.
    wait_until(
        "every server's WAN pool lists all four",
        Duration::from_secs(20),
        || fed.wan_is_whole(),
    );
    assert_eq!(
        fed.dc1[1].get("/v1/catalog/datacenters").json(),
        serde_json::json!(["dc1", "dc2"])
    );
    assert_eq!(
        fed.dc2.get("/v1/catalog/datacenters").json(),
        serde_json::json!(["dc2", "dc1"])
    );

    register_web(&fed.dc2, "web-a", "127.0.0.21", "web-a", "passing");
    let through = dns_addr(&fed.dc1[1]);
    let web_a = ["127.0.0.21".parse().expect("ip")].into();
    let (_, m) = udp(through, "web.service.dc2.consul", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_addrs(&m.answers), web_a);
    let (_, m) = udp(through, "v1.web.service.dc2.consul", RecordType::A);
    assert_eq!(a_addrs(&m.answers), web_a, "tag form");
    let (_, m) = udp(through, "_web._tcp.service.dc2.consul", RecordType::SRV);
    let targets: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(srv) => Some(srv.target.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(targets, vec!["web-a.node.dc2.consul.".to_string()]);
    let (_, m) = udp(through, "web-a.node.dc2.consul", RecordType::A);
    assert_eq!(a_addrs(&m.answers), web_a, "node form");
    let (_, m) = udp(through, "web.service.dc9.consul", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(
        m.authorities
            .iter()
            .any(|r| r.record_type() == RecordType::SOA),
        "NXDOMAIN for an unknown datacenter carries the SOA"
    );

    // The answer is cached in dc1 and follows changes in dc2.
    register_web(&fed.dc2, "web-b", "127.0.0.22", "web-b", "passing");
    let both = ["127.0.0.21", "127.0.0.22"]
        .iter()
        .map(|a| a.parse().expect("ip"))
        .collect();
    wait_until(
        "a new instance in dc2 shows through dc1's DNS",
        Duration::from_secs(10),
        || {
            a_addrs(
                &udp(through, "web.service.dc2.consul", RecordType::A)
                    .1
                    .answers,
            ) == both
        },
    );

    // A dc1 server killed and restarted starts with a WAN pool of one and
    // finds its way back (through its LAN peers and the WAN members it
    // saved): every server lists all four again.
    fed.dc1[2].kill();
    fed.dc1[2].restart();
    wait_until(
        "every WAN pool whole again after the restart",
        Duration::from_secs(10),
        || fed.wan_is_whole(),
    );
    let (_, m) = udp(
        dns_addr(&fed.dc1[2]),
        "web.service.dc2.consul",
        RecordType::A,
    );
    assert_eq!(a_addrs(&m.answers), both, "through the restarted server");
}
