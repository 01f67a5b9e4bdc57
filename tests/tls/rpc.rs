//! TLS on the server RPC port: servers and client agents with the
//! cluster's CA join; others are refused.

use std::time::Duration;

use super::{tls, Pki};
use crate::harness::{wait_until, Agent};

/// TLS on the server RPC port with `verify_incoming`, `verify_outgoing`
/// and `verify_server_hostname`: a server and a client agent with
/// certificates from the cluster's CA join and forward writes; a server
/// whose certificate another CA signed, one speaking plain RPC, and one
/// with a client agent's certificate are refused and never vote or get
/// data.
#[test]
fn rpc_tls_keeps_out_servers_the_ca_did_not_sign() {
    let pki = Pki::new();
    tls(pki.dir.path(), &["cert", "create", "-server"]);
    tls(pki.dir.path(), &["cert", "create", "-client"]);
    let other = Pki::new();
    let rpc = |pki: &Pki, cert: &str| {
        serde_json::json!({
            "tls": {
                "defaults": {
                    "ca_file": pki.ca(),
                    "cert_file": pki.s(&format!("{cert}.pem")),
                    "key_file": pki.s(&format!("{cert}-key.pem")),
                    "verify_incoming": true,
                    "verify_outgoing": true,
                },
                "internal_rpc": {"verify_server_hostname": true},
            },
        })
        .to_string()
    };
    let peers = |a: &Agent| a.get("/v1/status/peers").strings();
    let s1 = Agent::start_with_config(
        &["-server", "-bootstrap", "-node", "s1"],
        true,
        &rpc(&pki, "dc1-server-consul-0"),
    );
    let seed = format!("127.0.0.1:{}", s1.flag("-serf-lan-port").expect("port"));
    let s2 = Agent::start_with_config(
        &["-server", "-node", "s2", "-retry-join", &seed],
        true,
        &rpc(&pki, "dc1-server-consul-1"),
    );
    wait_until("s2 joins raft over TLS", Duration::from_secs(30), || {
        peers(&s1).len() == 2
    });
    let client = Agent::start_with_config(
        &["-node", "c1", "-retry-join", &seed],
        true,
        &rpc(&pki, "dc1-client-consul-0"),
    );
    assert!(
        client.kv_put("tls/rpc", b"over-tls"),
        "a client agent's write"
    );
    assert!(s2.kv_put("tls/rpc2", b"forwarded"), "a follower's write");
    wait_until("writes reach every server", Duration::from_secs(10), || {
        s1.kv_get("tls/rpc").is_some() && s2.kv_get("tls/rpc2").is_some()
    });

    let intruder = Agent::start_with_config(
        &["-server", "-node", "s3", "-retry-join", &seed],
        true,
        &rpc(&other, "dc1-server-consul-0"),
    );
    let plain = Agent::start(&["-server", "-node", "s4", "-retry-join", &seed], true);
    // A client agent's certificate (the right CA, but client.dc1.consul)
    // cannot pass for a server's: verify_server_hostname.
    let imposter = Agent::start_with_config(
        &["-server", "-node", "s5", "-retry-join", &seed],
        true,
        &rpc(&pki, "dc1-client-consul-0"),
    );
    wait_until(
        "the servers refuse the other CA's certificate and plain RPC",
        Duration::from_secs(30),
        || {
            let logs = format!("{}{}", s1.log(), s2.log());
            logs.contains("refused an RPC connection: TLS handshake failed")
                && logs.contains("refused a plain RPC connection")
        },
    );
    // The leader may list them as non-voters (it sees them in gossip, as
    // Consul's autopilot does), but they never catch up or vote.
    let voters: Vec<String> = s1.get("/v1/operator/raft/configuration").json()["Servers"]
        .as_array()
        .expect("Servers")
        .iter()
        .filter(|s| s["Voter"] == true)
        .filter_map(|s| s["Node"].as_str().map(str::to_string))
        .collect();
    assert_eq!(voters.len(), 2, "{voters:?}");
    assert!(voters.contains(&"s1".to_string()) && voters.contains(&"s2".to_string()));
    for outsider in [&intruder, &plain, &imposter] {
        let read = outsider.get("/v1/kv/tls/rpc");
        assert_ne!(
            read.status,
            200,
            "an outsider got the data: {}",
            read.text()
        );
    }
    assert!(peers(&s1).len() >= 2);
}
