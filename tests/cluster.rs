//! A three-server cluster of real processes on loopback: formed with
//! `-bootstrap-expect 3` over LAN gossip, every member in the catalog with
//! a passing `serfHealth`, writes through any server, kill -9 of the leader
//! → a new leader, writes continue, the dead server's `serfHealth` goes
//! critical, and after a restart it has every acknowledged write; a
//! graceful leave shows `left` and takes the server out of raft and the
//! catalog. Gossip with a wrong or missing `-encrypt` key is dropped and
//! logged; the right key joins.

use std::time::{Duration, Instant};

use crate::harness::{muster, Agent};

fn wait_until<F: FnMut() -> bool>(what: &str, within: Duration, mut f: F) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// The server RPC address an agent advertises (what `/v1/status/leader`
/// names).
fn rpc_addr(a: &Agent) -> String {
    format!(
        "127.0.0.1:{}",
        a.flag("-server-port").expect("-server-port")
    )
}

fn leader_of(a: &Agent) -> Option<String> {
    let r = a.get("/v1/status/leader");
    if r.status != 200 {
        return None;
    }
    r.json()
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
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
    let server = |name: &str, join: Option<&Agent>| {
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
        Agent::start(&args, true)
    };
    let s1 = server("s1", None);
    let s2 = server("s2", Some(&s1));
    let s3 = server("s3", Some(&s1));
    let mut servers = vec![s1, s2, s3];

    let formed = wait_until(
        "a leader known to all three",
        Duration::from_secs(30),
        || {
            let leaders: Vec<Option<String>> = servers.iter().map(leader_of).collect();
            leaders[0].is_some() && leaders.iter().all(|l| *l == leaders[0])
        },
    );
    println!("cluster formed {formed:?} after the third server started");
    let peers = servers[0].get("/v1/status/peers").json();
    assert_eq!(peers.as_array().map(Vec::len), Some(3), "peers: {peers}");

    // Every member is a catalog node with a passing serfHealth.
    wait_until(
        "serfHealth passing for all",
        Duration::from_secs(20),
        || {
            ["s1", "s2", "s3"]
                .iter()
                .all(|n| serf_status(&servers[0], n).as_deref() == Some("passing"))
        },
    );

    // Writes through every server; reads from every server see them.
    let mut acked = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        for j in 0..10 {
            let key = format!("c/{i}/{j}");
            assert!(put(s, &key, "v"), "write {key} through server {i}");
            acked.push(key);
        }
    }
    for s in &servers {
        for key in &acked {
            assert!(s.kv_get(key).is_some(), "{key} missing on {}", s.addr);
        }
    }

    // Sessions and locks through a follower: create, renew (the TTL
    // timers live on the leader) and acquire are all forwarded.
    let leader_now = leader_of(&servers[0]).expect("leader");
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
    let leader = leader_of(&servers[0]).expect("leader");
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
            .all(|i| leader_of(&servers[*i]).is_some_and(|l| l != leader))
    });
    println!("new leader {elected:?} after kill -9 of the old one");
    for i in &alive {
        for j in 0..10 {
            let key = format!("after/{i}/{j}");
            assert!(put(&servers[*i], &key, "w"), "write {key} after failover");
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

    // Restart it: it catches up and has every acknowledged write.
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
    for s in &servers {
        for key in &acked {
            assert!(s.kv_get(key).is_some(), "{key} missing on {}", s.addr);
        }
    }

    // A stale read on a follower says how long ago it heard from the leader.
    let leader = leader_of(&servers[0]).expect("leader");
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

    // `muster members` lists all three alive, as servers.
    let out = muster()
        .args(["members", "-http-addr", &servers[0].addr.to_string()])
        .output()
        .expect("run muster members");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "members failed: {table}");
    for n in ["s1", "s2", "s3"] {
        let row = table
            .lines()
            .find(|l| l.starts_with(n))
            .unwrap_or_else(|| panic!("{n} missing from:\n{table}"));
        assert!(row.contains("alive") && row.contains("server"), "{row}");
    }

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
    let members = |a: &Agent| -> Vec<String> {
        a.get("/v1/agent/members")
            .json()
            .as_array()
            .map(|ms| {
                ms.iter()
                    .filter(|m| m["Status"] == 1)
                    .filter_map(|m| m["Name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
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
    let log = a.log();
    assert!(
        log.contains("gossip: dropped packet"),
        "the rejected packets are logged:\n{log}"
    );
}
