//! What a Consul user meets on day one (issue 15): Consul's wire details
//! (header case, compact JSON, `/v1/agent/self`), what the agent logs, and
//! where it refuses loudly instead of limping on.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::harness::Agent;

/// One request, the response's raw head (status line and headers, exactly
/// as sent) and its body.
fn raw_get(agent: &Agent, path: &str) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(agent.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    (head, raw[split + 4..].to_vec())
}

#[test]
fn headers_are_in_gos_canonical_case_and_json_is_compact() {
    let agent = Agent::dev();
    assert!(agent.kv_put("a/b", b"v"));
    let (head, body) = raw_get(&agent, "/v1/kv/a/b");
    for name in [
        "X-Consul-Index: ",
        "X-Consul-Knownleader: true",
        "X-Consul-Lastcontact: ",
        "X-Consul-Effective-Consistency: leader",
        "X-Consul-Default-Acl-Policy: allow",
        "Content-Type: application/json",
    ] {
        assert!(
            head.lines().any(|l| l.starts_with(name)),
            "no {name:?} line in:\n{head}"
        );
    }
    // Compact unless `?pretty`, in `-dev` too.
    let text = String::from_utf8_lossy(&body);
    assert!(text.starts_with("[{\"") && !text.contains('\n'), "{text}");
    let (_, pretty) = raw_get(&agent, "/v1/kv/a/b?pretty");
    assert!(
        String::from_utf8_lossy(&pretty).contains("\n    "),
        "pretty"
    );
}

#[test]
fn agent_self_reports_a_consul_version_and_the_real_member() {
    let agent = Agent::dev();
    let me = agent.get("/v1/agent/self").json();
    let version = me["Config"]["Version"].as_str().unwrap_or_default();
    let parts: Vec<u64> = version.split('.').filter_map(|p| p.parse().ok()).collect();
    assert!(
        parts.len() == 3 && parts[0] == 1 && parts[1] >= 13,
        "a Consul-compatible version, not {version:?}"
    );
    assert_eq!(me["Config"]["MusterVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(me["Config"]["SessionTTLMin"], 10_000_000_000_u64);
    assert_eq!(me["DebugConfig"]["ServerMode"], true);
    assert_eq!(me["DebugConfig"]["Datacenter"], "dc1");
    let build = me["Member"]["Tags"]["build"].as_str().unwrap_or_default();
    assert!(build.starts_with(&format!("{version}:")), "{build}");
    // The member is the pool's own entry: the same port `members` shows.
    let members = agent.get("/v1/agent/members").json();
    let listed = members
        .as_array()
        .and_then(|m| m.iter().find(|m| m["Name"] == me["Member"]["Name"]))
        .cloned()
        .unwrap_or_default();
    assert_eq!(me["Member"]["Port"], listed["Port"], "{members}");
    assert_eq!(me["Member"]["Addr"], listed["Addr"], "{members}");
}
