//! TLS on the server RPC port: servers and client agents with the
//! cluster's CA join; others are refused; a TLS-only cluster of three
//! replicates and fails over.

use std::time::Duration;

use super::{tls, Pki};
use crate::harness::{wait_until, Agent};

/// A config with TLS on the RPC port, verified both ways and by server
/// name, with `pki`'s CA and its certificate `cert` (`<cert>.pem`,
/// `<cert>-key.pem`).
fn rpc(pki: &Pki, cert: &str) -> String {
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
}

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

/// Three servers speaking only TLS RPC (`verify_incoming`,
/// `verify_outgoing`, `verify_server_hostname`) form one cluster,
/// replicate, lose their leader to kill -9 and elect another, keep
/// taking writes, and take the old leader back.
#[test]
fn rpc_tls_cluster_replicates_and_fails_over() {
    let pki = Pki::new();
    tls(pki.dir.path(), &["cert", "create", "-server"]);
    tls(pki.dir.path(), &["cert", "create", "-server"]);
    let config = |n: usize| rpc(&pki, &format!("dc1-server-consul-{n}"));
    let rpc_addr = |a: &Agent| format!("127.0.0.1:{}", a.flag("-server-port").expect("port"));
    let s1 = Agent::start_with_config(&["-server", "-bootstrap", "-node", "s1"], true, &config(0));
    let seed = format!("127.0.0.1:{}", s1.flag("-serf-lan-port").expect("port"));
    let s2 = Agent::start_with_config(
        &["-server", "-node", "s2", "-retry-join", &seed],
        true,
        &config(1),
    );
    let s3 = Agent::start_with_config(
        &["-server", "-node", "s3", "-retry-join", &seed],
        true,
        &config(2),
    );
    let mut servers = [s1, s2, s3];
    wait_until(
        "three voters and one leader",
        Duration::from_secs(30),
        || {
            let leaders: Vec<Option<String>> = servers.iter().map(Agent::leader).collect();
            leaders[0].is_some()
                && leaders.iter().all(|l| *l == leaders[0])
                && servers[0].get("/v1/status/peers").strings().len() == 3
        },
    );
    assert!(servers[1].kv_put("tls/before", b"1"));
    wait_until("the write on every server", Duration::from_secs(10), || {
        servers
            .iter()
            .all(|s| s.get("/v1/kv/tls/before?stale").status == 200)
    });

    let leader = servers[0].leader().expect("leader");
    let dead = servers
        .iter()
        .position(|s| rpc_addr(s) == leader)
        .expect("the leader is one of ours");
    servers[dead].kill();
    let alive: Vec<usize> = (0..3).filter(|i| *i != dead).collect();
    wait_until("a new leader over TLS", Duration::from_secs(30), || {
        alive.iter().all(|i| {
            servers[*i]
                .leader()
                .is_some_and(|l| l != leader && alive.iter().any(|j| rpc_addr(&servers[*j]) == l))
        })
    });
    assert!(
        servers[alive[0]].kv_put("tls/after", b"2"),
        "a write after failover"
    );
    servers[dead].restart();
    wait_until("the old leader catches up", Duration::from_secs(30), || {
        servers[dead].get("/v1/kv/tls/after?stale").status == 200
    });
}
