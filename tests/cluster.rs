//! A cluster of real processes on loopback: three servers formed with
//! `-bootstrap-expect 3` over LAN gossip and two client agents (no log:
//! they forward to the servers). Every member is in the catalog with a
//! passing `serfHealth` and `members` lists all five; a service registered
//! on a client is visible from every server and through the other client's
//! DNS; writes go through every node. kill -9 of the leader → a new
//! leader, writes continue through every survivor, the dead server's
//! `serfHealth` goes critical, and after a restart it catches up through a
//! snapshot install (its log is behind the purge point) and every node has
//! every acknowledged write. Graceful leaves show `left` and take the
//! member out of the catalog (and a server out of raft). Gossip with a
//! wrong or missing `-encrypt` key is dropped and logged; the right key
//! joins; `muster keyring` rotates the whole pool to a new key.

use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::dns::{a_addrs, dns_addr, udp};
use crate::harness::{muster, wait_until, Agent};

/// Servers snapshot every 32 entries and keep 8 behind: a server that
/// misses ~100 writes comes back behind the leader's purge point. A server
/// failed for 1 s is removed from raft by the leader (autopilot).
const SERVER_CONFIG: &str = r#"{"raft_snapshot_threshold": 32, "raft_trailing_logs": 8,
    "autopilot": {"server_stabilization_time": "1s"}}"#;

/// A durable server `name` of a three-server cluster (`-bootstrap-expect
/// 3`) with `config`, retrying to join `join`'s LAN pool.
pub(crate) fn start_server(name: &str, join: Option<&Agent>, config: &str) -> Agent {
    let mut args = vec!["-server", "-bootstrap-expect", "3", "-node", name];
    let join_addr = join.map(|j| {
        format!(
            "127.0.0.1:{}",
            j.flag("-serf-lan-port").expect("-serf-lan-port")
        )
    });
    if let Some(addr) = &join_addr {
        args.push("-retry-join");
        args.push(addr);
    }
    Agent::start_with_config(&args, true, config)
}

fn peer_count(a: &Agent) -> Option<usize> {
    a.get("/v1/status/peers").json().as_array().map(Vec::len)
}

/// The names of the members `a` sees alive in its LAN pool.
fn alive_members(a: &Agent) -> Vec<String> {
    a.alive_members_at("/v1/agent/members")
}

/// Every agent in `nodes` reads every key in `keys`.
fn every_node_has<'a>(nodes: impl Iterator<Item = &'a Agent>, keys: &[String]) {
    for a in nodes {
        for key in keys {
            assert!(a.kv_get(key).is_some(), "{key} missing on {}", a.addr);
        }
    }
}

/// `muster members [extra]` through `on` lists each `(name, type)` alive.
fn members_table_shows(on: &Agent, extra: &[&str], rows: &[(&str, &str)]) {
    let out = muster()
        .arg("members")
        .args(extra)
        .args(["-http-addr", &on.addr.to_string()])
        .output()
        .expect("run muster members");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "members {extra:?} failed: {table}");
    for (name, kind) in rows {
        let row = table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing from:\n{table}"));
        assert!(row.contains("alive") && row.contains(kind), "{row}");
    }
}

/// The nodes `?passing` instances of `service` run on, as `a` answers.
fn passing_nodes(a: &Agent, service: &str) -> Vec<String> {
    a.get(&format!("/v1/health/service/{service}?passing"))
        .json()
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|e| e["Node"]["Node"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The server RPC address an agent advertises (what `/v1/status/leader`
/// names).
fn rpc_addr(a: &Agent) -> String {
    format!(
        "127.0.0.1:{}",
        a.flag("-server-port").expect("-server-port")
    )
}

fn serf_status(a: &Agent, node: &str) -> Option<String> {
    let r = a.get(&format!("/v1/health/node/{node}"));
    if r.status != 200 {
        return None;
    }
    r.json().as_array()?.iter().find_map(|c| {
        (c["CheckID"] == "serfHealth").then(|| c["Status"].as_str().unwrap_or("").to_string())
    })
}

fn put(a: &Agent, key: &str, value: &str) -> bool {
    let r = a.put(&format!("/v1/kv/{key}"), value.as_bytes());
    r.status == 200 && r.bool()
}

#[test]
fn cluster_forms_replicates_and_fails_over() {
    let server = |name: &str, join: Option<&Agent>| start_server(name, join, SERVER_CONFIG);
    let s1 = server("s1", None);
    let s2 = server("s2", Some(&s1));
    let s3 = server("s3", Some(&s1));
    let mut servers = [s1, s2, s3];

    let formed = wait_until(
        "a leader known to all three",
        Duration::from_secs(30),
        || {
            let leaders: Vec<Option<String>> = servers.iter().map(Agent::leader).collect();
            leaders[0].is_some() && leaders.iter().all(|l| *l == leaders[0])
        },
    );
    println!("cluster formed {formed:?} after the third server started");
    let peers = servers[0].get("/v1/status/peers").json();
    assert_eq!(peers.as_array().map(Vec::len), Some(3), "peers: {peers}");

    // Two client agents join through s1.
    let seed = format!(
        "127.0.0.1:{}",
        servers[0].flag("-serf-lan-port").expect("-serf-lan-port")
    );
    let client = |name: &str| Agent::start(&["-node", name, "-retry-join", &seed], true);
    let mut clients = vec![client("c1"), client("c2")];
    let all_five: Vec<String> = ["c1", "c2", "s1", "s2", "s3"]
        .iter()
        .map(|n| n.to_string())
        .collect();
    wait_until("all five alive everywhere", Duration::from_secs(20), || {
        servers
            .iter()
            .chain(&clients)
            .all(|a| alive_members(a) == all_five)
    });

    // Every member is a catalog node with a passing serfHealth.
    wait_until(
        "serfHealth passing for all",
        Duration::from_secs(20),
        || {
            all_five
                .iter()
                .all(|n| serf_status(&servers[0], n).as_deref() == Some("passing"))
        },
    );
    let roles: Vec<(&str, &str)> = all_five
        .iter()
        .map(|n| {
            (
                n.as_str(),
                if n.starts_with('s') {
                    "server"
                } else {
                    "client"
                },
            )
        })
        .collect();
    members_table_shows(&clients[1], &[], &roles);

    // A service registered on a client agent: visible from every server,
    // and through the other client's DNS.
    let r = clients[0].put(
        "/v1/agent/service/register",
        br#"{"Name":"web","Port":8080,"Check":{"TTL":"120s","Status":"passing"}}"#,
    );
    assert_eq!(r.status, 200, "register on c1: {}", r.text());
    wait_until(
        "web on c1 visible from every server",
        Duration::from_secs(20),
        || {
            servers
                .iter()
                .all(|s| passing_nodes(s, "web") == vec!["c1".to_string()])
        },
    );
    let (_, answer) = udp(dns_addr(&clients[1]), "web.service.consul", RecordType::A);
    assert_eq!(
        a_addrs(&answer.answers).len(),
        1,
        "A answer through c2's DNS: {answer:?}"
    );

    // Writes through every node; reads from every node see them.
    let mut acked = Vec::new();
    for (i, a) in servers.iter().chain(&clients).enumerate() {
        for j in 0..10 {
            let key = format!("c/{i}/{j}");
            assert!(put(a, &key, "v"), "write {key} through node {i}");
            acked.push(key);
        }
    }
    every_node_has(servers.iter().chain(&clients), &acked);

    // Sessions and locks through a follower: create, renew (the TTL
    // timers live on the leader) and acquire are all forwarded.
    let leader_now = servers[0].leader().expect("leader");
    let f = servers
        .iter()
        .find(|s| rpc_addr(s) != leader_now)
        .expect("a follower");
    let r = f.put(
        "/v1/session/create",
        br#"{"TTL":"30s","Name":"via-follower"}"#,
    );
    assert_eq!(r.status, 200, "create via follower: {}", r.text());
    let sid = r.json()["ID"].as_str().expect("ID").to_string();
    let r = f.put(&format!("/v1/session/renew/{sid}"), b"");
    assert_eq!(r.status, 200, "renew via follower: {}", r.text());
    assert_eq!(r.json()[0]["ID"], sid.as_str());
    let r = f.put(&format!("/v1/kv/lock/leader?acquire={sid}"), b"me");
    assert!(
        r.status == 200 && r.bool(),
        "acquire via follower: {}",
        r.text()
    );

    // kill -9 the leader.
    let leader = servers[0].leader().expect("leader");
    let li = servers
        .iter()
        .position(|s| rpc_addr(s) == leader)
        .expect("the leader is one of ours");
    let dead_name = format!("s{}", li + 1);
    servers[li].kill();
    let killed_at = Instant::now();
    let alive: Vec<usize> = (0..3).filter(|i| *i != li).collect();
    let elected = wait_until("a new leader", Duration::from_secs(10), || {
        alive
            .iter()
            .all(|i| servers[*i].leader().is_some_and(|l| l != leader))
    });
    println!("new leader {elected:?} after kill -9 of the old one");
    // The survivors say what happened, in Consul's words.
    let new_leader = servers[alive[0]].leader().expect("new leader");
    let ni = servers
        .iter()
        .position(|s| rpc_addr(s) == new_leader)
        .expect("the new leader is one of ours");
    let other = alive
        .iter()
        .copied()
        .find(|i| *i != ni)
        .expect("a follower");
    wait_until("leadership changes logged", Duration::from_secs(10), || {
        servers[ni].log().contains("cluster leadership acquired")
            && servers[other]
                .log()
                .contains(&format!("New leader elected: payload=s{}", ni + 1))
    });
    // Enough writes through every survivor (servers and clients) for the
    // leader to snapshot and purge past the dead server's log.
    let survivors: Vec<&Agent> = alive.iter().map(|i| &servers[*i]).chain(&clients).collect();
    for (i, a) in survivors.iter().enumerate() {
        for j in 0..30 {
            let key = format!("after/{i}/{j}");
            assert!(put(a, &key, "w"), "write {key} after failover");
            acked.push(key);
        }
    }
    let detected = wait_until(
        "dead server's serfHealth critical",
        Duration::from_secs(30),
        || serf_status(&servers[alive[0]], &dead_name).as_deref() == Some("critical"),
    );
    println!(
        "killed server marked critical {:?} after the kill",
        killed_at.elapsed().max(detected)
    );
    // Autopilot: failed for longer than the stabilization time, the dead
    // server leaves the raft configuration.
    wait_until(
        "dead server pruned from raft",
        Duration::from_secs(20),
        || peer_count(&servers[alive[0]]) == Some(2),
    );
    println!(
        "autopilot removed the dead server {:?} after the kill",
        killed_at.elapsed()
    );

    // Restart it: it catches up through a snapshot install and has every
    // acknowledged write.
    let log_before = servers[li].log().len();
    servers[li].restart();
    wait_until(
        "restarted server caught up",
        Duration::from_secs(30),
        || {
            acked.iter().all(|k| {
                let r = servers[li].get(&format!("/v1/kv/{k}?stale"));
                r.status == 200
            })
        },
    );
    wait_until(
        "restarted server passing again",
        Duration::from_secs(30),
        || serf_status(&servers[alive[0]], &dead_name).as_deref() == Some("passing"),
    );
    // ... and autopilot added it back as a voter.
    wait_until(
        "restarted server back in raft",
        Duration::from_secs(30),
        || servers.iter().all(|s| peer_count(s) == Some(3)),
    );
    let log = servers[li].log();
    assert!(
        log.get(log_before..)
            .is_some_and(|l| l.contains("snapshot installed")),
        "the restarted server caught up without a snapshot install:\n{}",
        log.get(log_before..).unwrap_or_default()
    );
    every_node_has(servers.iter().chain(&clients), &acked);

    // A stale read on a follower says how long ago it heard from the leader.
    let leader = servers[0].leader().expect("leader");
    let follower = servers
        .iter()
        .find(|s| rpc_addr(s) != leader)
        .expect("a follower");
    let r = follower.get("/v1/kv/c/0/0?stale");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Consul-KnownLeader"), Some("true"));
    let contact: u64 = r
        .header("X-Consul-LastContact")
        .and_then(|v| v.parse().ok())
        .expect("X-Consul-LastContact");
    assert!(contact < 2_000, "follower last contact {contact} ms");

    // A client's graceful leave: `left` on the servers, out of the catalog.
    let r = clients[1].put("/v1/agent/leave", b"");
    assert_eq!(r.status, 200, "client leave: {}", r.text());
    wait_until("c2 left and deregistered", Duration::from_secs(20), || {
        let members = servers[0].get("/v1/agent/members").json();
        let left = members
            .as_array()
            .is_some_and(|ms| ms.iter().any(|m| m["Name"] == "c2" && m["Status"] == 3));
        left && servers[0].get("/v1/catalog/node/c2").json().is_null()
    });
    clients[1].kill();

    // A graceful leave of a follower: `left` on the others, out of raft
    // and out of the catalog.
    let fi = servers
        .iter()
        .position(|s| rpc_addr(s) != leader)
        .expect("a follower");
    let leaving = format!("s{}", fi + 1);
    let r = servers[fi].put("/v1/agent/leave", b"");
    assert_eq!(r.status, 200, "leave: {}", r.text());
    let other = (0..3).find(|i| *i != fi).expect("another server");
    wait_until("left on the others", Duration::from_secs(20), || {
        let members = servers[other].get("/v1/agent/members").json();
        members.as_array().is_some_and(|ms| {
            ms.iter()
                .any(|m| m["Name"] == leaving.as_str() && m["Status"] == 3)
        })
    });
    wait_until(
        "out of raft and the catalog",
        Duration::from_secs(20),
        || {
            let peers = servers[other].get("/v1/status/peers").json();
            let node = servers[other].get(&format!("/v1/catalog/node/{leaving}"));
            peers.as_array().map(Vec::len) == Some(2) && node.json().is_null()
        },
    );
}

#[test]
fn cluster_gossip_needs_the_right_key() {
    const KEY: &str = "jTlRj9aqxL6Qve0RdY5KJLWw/DbRfSgvvSbPSOvis+4=";
    const OTHER: &str = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";
    let members = alive_members;
    let a = Agent::start(
        &["-server", "-bootstrap", "-node", "ka", "-encrypt", KEY],
        true,
    );
    let seed = format!("127.0.0.1:{}", a.flag("-serf-lan-port").expect("port"));
    let b = Agent::start(
        &[
            "-server",
            "-node",
            "kb",
            "-encrypt",
            KEY,
            "-retry-join",
            &seed,
        ],
        true,
    );
    wait_until("the right key joins", Duration::from_secs(20), || {
        members(&a).len() == 2 && members(&b).len() == 2
    });
    let wrong = Agent::start(
        &[
            "-server",
            "-node",
            "kw",
            "-encrypt",
            OTHER,
            "-retry-join",
            &seed,
        ],
        true,
    );
    let none = Agent::start(&["-server", "-node", "kn", "-retry-join", &seed], true);
    // Give the bad ones several join attempts and probe rounds.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        members(&a).len(),
        2,
        "a wrong or missing key got in: {:?}",
        members(&a)
    );
    assert_eq!(members(&wrong), vec!["kw".to_string()]);
    assert_eq!(members(&none), vec!["kn".to_string()]);
    // The joining side says why (retry_join keeps trying: keys may be
    // rotating).
    let log = wrong.log();
    assert!(
        log.contains("Join cluster failed, will retry")
            && log.contains("the gossip encryption key (encrypt) is probably wrong"),
        "{log}"
    );
    let log = none.log();
    assert!(log.contains("refuses plaintext: set encrypt"), "{log}");
    let log = a.log();
    assert!(
        log.contains("gossip: dropped packet"),
        "the rejected packets are logged:\n{log}"
    );

    // Rotate the pool's key with the keyring command on one member: install
    // the new key everywhere, make it primary everywhere, remove the old.
    let keyring = |on: &Agent, args: &[&str]| {
        let out = muster()
            .arg("keyring")
            .args(args)
            .args(["-http-addr", &on.addr.to_string()])
            .output()
            .expect("run muster keyring");
        assert!(
            out.status.success(),
            "keyring {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // (pool keys, key → holders, key → members using it as primary)
    let ring = |on: &Agent| {
        let r = on.get("/v1/operator/keyring");
        assert_eq!(r.status, 200, "{}", r.text());
        let pool = r.json()[0].clone();
        (
            pool["NumNodes"].as_u64(),
            pool["Keys"].clone(),
            pool["PrimaryKeys"].clone(),
        )
    };
    keyring(&a, &["-install", OTHER]);
    let (n, keys, primary) = ring(&b);
    assert_eq!(n, Some(2));
    assert_eq!(
        (keys[KEY].as_u64(), keys[OTHER].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(primary[KEY].as_u64(), Some(2));
    keyring(&b, &["-use", OTHER]);
    keyring(&a, &["-remove", KEY]);
    let (n, keys, primary) = ring(&a);
    assert_eq!(n, Some(2));
    assert!(keys.get(KEY).is_none(), "old key still held: {keys}");
    assert_eq!(primary[OTHER].as_u64(), Some(2), "{primary}");
    // The pool now speaks the new key: the member started with it joins,
    // and the old members still see each other.
    let r = wrong.put(&format!("/v1/agent/join/{seed}"), b"");
    assert_eq!(r.status, 200, "join with the new key: {}", r.text());
    wait_until("rotated pool of three", Duration::from_secs(20), || {
        members(&a).len() == 3 && members(&b).len() == 3 && members(&wrong).len() == 3
    });
    // Removing the primary is refused, with the member's reason.
    let r = a.request(
        "DELETE",
        "/v1/operator/keyring",
        format!(r#"{{"Key":"{OTHER}"}}"#).as_bytes(),
    );
    assert_eq!(r.status, 500, "{}", r.text());
}

/// Two datacenters federated over WAN gossip: each server's WAN pool lists
/// both servers as `<node>.<dc>`, `/v1/catalog/datacenters` names both
/// (its own first), `muster members -wan` shows them, the LAN pools stay
/// apart, and `?dc=` reads and writes reach the other datacenter.
#[test]
fn wan_pool_federates_two_datacenters() {
    let a = Agent::start(
        &["-server", "-bootstrap", "-node", "wa", "-datacenter", "dc1"],
        true,
    );
    let seed = format!(
        "127.0.0.1:{}",
        a.flag("-serf-wan-port").expect("-serf-wan-port")
    );
    let b = Agent::start(
        &[
            "-server",
            "-bootstrap",
            "-node",
            "wb",
            "-datacenter",
            "dc2",
            "-retry-join-wan",
            &seed,
        ],
        true,
    );
    let wan = |x: &Agent| x.alive_members_at("/v1/agent/members?wan=1");
    let both = vec!["wa.dc1".to_string(), "wb.dc2".to_string()];
    wait_until(
        "both servers in both WAN views",
        Duration::from_secs(20),
        || wan(&a) == both && wan(&b) == both,
    );
    assert_eq!(
        a.get("/v1/catalog/datacenters").json(),
        serde_json::json!(["dc1", "dc2"])
    );
    assert_eq!(
        b.get("/v1/catalog/datacenters").json(),
        serde_json::json!(["dc2", "dc1"])
    );
    assert_eq!(
        alive_members(&a),
        vec!["wa".to_string()],
        "LAN pools stay apart"
    );
    members_table_shows(&a, &["-wan"], &[("wa.dc1", "server"), ("wb.dc2", "server")]);
}

/// Regression (issue 14): a leader killed with -9 and restarted after the
/// other two elected a new leader must not answer default-mode reads from
/// its old state. It comes back believing it still leads its old term; it
/// may refuse (500) until it has caught up, but every 200 it gives carries
/// the value the new leader acknowledged before the restart.
#[test]
fn issue_14_restarted_leader_serves_no_stale_default_reads() {
    // Autopilot must not remove the dead server while it is down: the
    // point is a returning voter that still thinks it leads.
    const CONFIG: &str = r#"{"autopilot": {"server_stabilization_time": "120s"}}"#;
    let server = |name: &str, join: Option<&Agent>| start_server(name, join, CONFIG);
    let s1 = server("s1", None);
    let s2 = server("s2", Some(&s1));
    let s3 = server("s3", Some(&s1));
    let mut servers = [s1, s2, s3];
    let leader_index = |servers: &[Agent]| -> Option<usize> {
        let leader = servers.iter().find_map(Agent::leader)?;
        servers.iter().position(|s| rpc_addr(s) == leader)
    };
    wait_until("a leader", Duration::from_secs(30), || {
        let leaders: Vec<Option<String>> = servers.iter().map(Agent::leader).collect();
        leaders[0].is_some() && leaders.iter().all(|l| *l == leaders[0])
    });
    let old = leader_index(&servers).expect("a leader");
    assert!(put(&servers[old], "stale/k", "v1"), "v1 through the leader");
    // Every server has applied v1 before the leader dies.
    wait_until("v1 everywhere", Duration::from_secs(10), || {
        servers
            .iter()
            .all(|s| s.kv_get("stale/k").is_some_and(|p| p.value == b"v1"))
    });

    servers[old].kill();
    let others: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    wait_until("a new leader", Duration::from_secs(30), || {
        let l = servers[others[0]].leader();
        l.is_some() && l != Some(rpc_addr(&servers[old])) && l == servers[others[1]].leader()
    });
    let new = others
        .iter()
        .copied()
        .find(|i| servers[*i].leader() == Some(rpc_addr(&servers[*i])))
        .expect("the new leader is one of the two");
    wait_until("v2 acknowledged", Duration::from_secs(10), || {
        put(&servers[new], "stale/k", "v2")
    });

    servers[old].restart();
    let (mut fresh, mut refused, mut stale) = (0, 0, Vec::new());
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        let r = servers[old].get("/v1/kv/stale/k");
        match r.status {
            200 => {
                let pairs = r.kv_pairs();
                if pairs.first().map(|p| p.value.as_slice()) == Some(b"v2") {
                    fresh += 1;
                } else {
                    stale.push((started.elapsed(), r.text()));
                }
            }
            _ => refused += 1,
        }
    }
    println!(
        "restarted old leader: {fresh} fresh reads, {refused} refused, {} stale",
        stale.len()
    );
    assert!(stale.is_empty(), "stale default reads: {stale:?}");
    assert!(
        fresh > 0,
        "the restarted server never answered ({refused} refused)"
    );
}
