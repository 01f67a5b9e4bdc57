//! The agent's lifecycle as a process: the readiness line, graceful exit on
//! SIGTERM/SIGINT (removing `-dev` data, keeping durable data), the
//! persisted node ID, and `/v1/status/*`.

use std::fs;
use std::time::Duration;

use crate::harness::Agent;

#[test]
fn agent_dev_prints_one_readiness_line_with_its_addresses() {
    let agent = Agent::dev();
    assert_eq!(agent.ready_field("datacenter"), "dc1");
    assert!(!agent.ready_field("node").is_empty());
    assert!(agent.ready_field("http").starts_with("127.0.0.1:"));
    assert_ne!(agent.addr.port(), 0, "the actual bound port is printed");
    assert!(agent.ready_field("dns").starts_with("127.0.0.1:"));
    assert!(fs::metadata(agent.ready_field("data_dir")).is_ok_and(|m| m.is_dir()));
}

#[test]
fn agent_dev_exits_cleanly_on_sigterm_and_removes_its_data() {
    let mut agent = Agent::dev();
    assert!(agent.kv_put("k", b"v"));
    let data_dir = agent.ready_field("data_dir").to_string();
    let status = agent.signal_and_wait("TERM", Duration::from_secs(30));
    assert!(status.success(), "exit status {status:?}");
    assert!(
        fs::metadata(&data_dir).is_err(),
        "-dev data dir {data_dir} still exists after exit"
    );
}

#[test]
fn agent_durable_exits_cleanly_on_sigint_and_keeps_its_data() {
    let mut agent = Agent::durable();
    assert!(agent.kv_put("kept", b"v"));
    let node_id = fs::read_to_string(agent.data_dir().join("node-id")).expect("node-id file");
    assert_eq!(node_id.trim().len(), 36, "a hyphenated UUID: {node_id:?}");

    let status = agent.signal_and_wait("INT", Duration::from_secs(30));
    assert!(status.success(), "exit status {status:?}");
    agent.restart();
    assert_eq!(agent.kv_get("kept").expect("durable").value, b"v");
    let again = fs::read_to_string(agent.data_dir().join("node-id")).expect("node-id file");
    assert_eq!(node_id, again, "the node ID is persisted");
}

#[test]
fn agent_status_names_itself_leader_and_only_peer() {
    let agent = Agent::dev();
    let leader = agent.get("/v1/status/leader");
    assert_eq!(leader.status, 200);
    let leader = leader.json();
    let leader = leader.as_str().expect("leader is a JSON string");
    assert!(!leader.is_empty(), "a one-node server knows its leader");
    let peers = agent.get("/v1/status/peers").json();
    assert_eq!(peers, serde_json::json!([leader]));
}
