//! A network partition of real server processes, each in a network
//! namespace the test creates (and removes) and joined to the others by
//! veth pairs on a bridge: cutting the leader's link leaves it alone in a
//! minority that stops taking writes while its stale reads report a growing
//! `X-Consul-LastContact` and no known leader; the majority elects a new
//! leader and takes writes; after healing, every server has every
//! acknowledged write and the write the minority refused is nowhere.
//!
//! Needs root and `ip` (iproute2); without them it prints why and passes
//! without running.

use std::time::{Duration, Instant};

use crate::harness::{request, wait_until, Agent, Response};
use crate::netns::ip;

/// Three namespaces on a bridge, removed on drop.
struct Net {
    bridge: String,
    namespaces: Vec<String>,
    /// The root-side end of each namespace's veth pair.
    links: Vec<String>,
    /// `10.213.<k>.`: the subnet prefix.
    prefix: String,
}

impl Net {
    fn create(n: usize) -> Option<Net> {
        let tag = std::process::id() % 100_000;
        let k = tag % 200 + 20;
        let mut net = Net {
            bridge: format!("mbr{tag}"),
            namespaces: Vec::new(),
            links: Vec::new(),
            prefix: format!("10.213.{k}."),
        };
        if !ip(&["link", "add", &net.bridge, "type", "bridge"]) {
            return None;
        }
        let bridge_ip = format!("{}1/24", net.prefix);
        let ok = ip(&["addr", "add", &bridge_ip, "dev", &net.bridge])
            && ip(&["link", "set", &net.bridge, "up"]);
        if !ok {
            return None;
        }
        for i in 1..=n {
            let ns = format!("mns{tag}-{i}");
            let outer = format!("mv{tag}-{i}");
            let inner = format!("mi{tag}-{i}");
            let addr = format!("{}{}/24", net.prefix, 10 + i);
            net.namespaces.push(ns.clone());
            net.links.push(outer.clone());
            let ok = ip(&["netns", "add", &ns])
                && ip(&[
                    "link", "add", &outer, "type", "veth", "peer", "name", &inner,
                ])
                && ip(&["link", "set", &inner, "netns", &ns])
                && ip(&["link", "set", &outer, "master", &net.bridge])
                && ip(&["link", "set", &outer, "up"])
                && ip(&["-n", &ns, "addr", "add", &addr, "dev", &inner])
                && ip(&["-n", &ns, "link", "set", &inner, "up"])
                && ip(&["-n", &ns, "link", "set", "lo", "up"]);
            if !ok {
                return None;
            }
        }
        Some(net)
    }

    /// The address of namespace `i` (0-based).
    fn addr(&self, i: usize) -> String {
        format!("{}{}", self.prefix, 11 + i)
    }

    fn cut(&self, i: usize) {
        assert!(ip(&["link", "set", &self.links[i], "down"]), "cut link {i}");
    }

    fn heal(&self, i: usize) {
        assert!(ip(&["link", "set", &self.links[i], "up"]), "heal link {i}");
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth end and so the pair.
        for ns in &self.namespaces {
            ip(&["netns", "del", ns]);
        }
        ip(&["link", "del", &self.bridge]);
    }
}

/// One HTTP request to `agent` from inside namespace `ns`.
fn request_in(ns: &str, agent: &Agent, method: &str, path: &str, body: &[u8]) -> Option<Response> {
    crate::netns::request_in(ns, agent.addr, method, path, body)
}

#[test]
fn partition_isolates_the_leader_and_heals_without_losing_writes() {
    let Some(net) = Net::create(3) else {
        eprintln!("partition test skipped: creating network namespaces needs root and iproute2");
        return;
    };
    let mut servers = Vec::new();
    for i in 0..3 {
        let me = net.addr(i);
        let mut args: Vec<String> = vec![
            "-server".into(),
            "-bootstrap-expect".into(),
            "3".into(),
            "-node".into(),
            format!("p{}", i + 1),
            "-bind".into(),
            me.clone(),
            "-client".into(),
            me.clone(),
        ];
        for j in (0..3).filter(|j| *j != i) {
            args.push("-retry-join".into());
            args.push(net.addr(j));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // The cut lasts about 12 s: autopilot must not prune the isolated
        // leader meanwhile (this test is about the partition; pruning and
        // re-adding a returning server is `cluster.rs`'s).
        servers.push(Agent::start_in_netns(
            &net.namespaces[i],
            &args,
            Some(r#"{"autopilot": {"server_stabilization_time": "5m"}}"#),
        ));
    }
    wait_until("a leader known to all", Duration::from_secs(30), || {
        let l: Vec<Option<String>> = servers.iter().map(Agent::leader).collect();
        l[0].is_some() && l.iter().all(|x| *x == l[0])
    });
    let mut acked = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        let key = format!("before/{i}");
        assert!(s.kv_put(&key, b"v"), "write {key}");
        acked.push(key);
    }

    // Cut the leader off.
    let old = servers[0].leader().expect("leader");
    let li = (0..3)
        .find(|i| old.starts_with(&format!("{}:", net.addr(*i))))
        .expect("the leader is one of ours");
    let ns = &net.namespaces[li];
    net.cut(li);
    let cut_at = Instant::now();

    // The majority elects a new leader and takes writes.
    let majority: Vec<usize> = (0..3).filter(|i| *i != li).collect();
    let elected = wait_until("a majority leader", Duration::from_secs(20), || {
        majority
            .iter()
            .all(|i| servers[*i].leader().is_some_and(|l| l != old))
    });
    println!("majority elected a new leader {elected:?} after the cut");
    for i in &majority {
        let key = format!("during/{i}");
        assert!(servers[*i].kv_put(&key, b"w"), "majority write {key}");
        acked.push(key);
    }

    // The minority: no write is acknowledged, stale reads answer with a
    // growing LastContact and no known leader.
    let refused = request_in(ns, &servers[li], "PUT", "/v1/kv/minority/write", b"x");
    assert!(
        refused.as_ref().is_none_or(|r| r.status != 200),
        "the isolated leader acknowledged a write: {:?}",
        refused.map(|r| r.text())
    );
    let stale = |path: &str| {
        let r = request_in(ns, &servers[li], "GET", path, b"").expect("stale read inside");
        assert_eq!(r.status, 200, "stale read: {}", r.text());
        let contact: u64 = r
            .header("X-Consul-LastContact")
            .and_then(|v| v.parse().ok())
            .expect("X-Consul-LastContact");
        (
            contact,
            r.header("X-Consul-KnownLeader").map(str::to_string),
        )
    };
    let (first, known) = stale("/v1/kv/before/0?stale");
    std::thread::sleep(Duration::from_secs(1));
    let (second, _) = stale("/v1/kv/before/0?stale");
    println!(
        "isolated leader: LastContact {first} ms, then {second} ms, {:?} after the cut",
        cut_at.elapsed()
    );
    assert!(second > first, "LastContact grows: {first} then {second}");
    assert_eq!(
        known.as_deref(),
        Some("false"),
        "the isolated server knows no leader"
    );

    // Heal: everything converges, no acknowledged write lost, the refused
    // write nowhere.
    net.heal(li);
    let healed = Instant::now();
    wait_until("converged after healing", Duration::from_secs(30), || {
        servers.iter().all(|s| {
            acked.iter().all(|k| {
                request(s.addr, "GET", &format!("/v1/kv/{k}?stale"), b"")
                    .is_ok_and(|r| r.status == 200)
            })
        })
    });
    println!("converged {:?} after healing", healed.elapsed());
    wait_until("one leader again", Duration::from_secs(20), || {
        let l: Vec<Option<String>> = servers.iter().map(Agent::leader).collect();
        l[0].is_some() && l.iter().all(|x| *x == l[0])
    });
    // The old leader says it lost leadership, in Consul's words.
    let log = servers[li].log();
    assert!(log.contains("cluster leadership lost"), "{log}");
    for s in &servers {
        assert!(
            s.kv_get("minority/write").is_none(),
            "refused write applied on {}",
            s.addr
        );
    }
}
