//! Autopilot on three real servers: `operator autopilot get-config` shows
//! the config-file values with Consul's defaults; `set-config` changes only
//! the flags given, is stored through the log (it survives kill -9 of the
//! leader) and steers the leader: with `CleanupDeadServers` false a killed
//! server stays in raft well past the stabilization time, set back to true
//! it goes. `?cas=` with a stale index changes nothing; bad bodies are
//! Consul's 400s. `/v1/operator/autopilot/health` (asked of a follower,
//! answered by the leader) lists three healthy voters and one leader with
//! failure tolerance 1, then the killed follower unhealthy and tolerance 0
//! with a 429; `operator autopilot state` prints the servers. A client
//! agent forwards all of it to a server.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::start_server;
use crate::harness::{muster, wait_until, Agent};

/// The server RPC address an agent advertises (what `/v1/status/leader`
/// names).
fn rpc_addr(a: &Agent) -> String {
    format!(
        "127.0.0.1:{}",
        a.flag("-server-port").expect("-server-port")
    )
}

/// Three servers `s1..s3` with `config`, once all three name one leader.
fn three_servers(config: &str) -> Vec<Agent> {
    let s1 = start_server("s1", None, config);
    let s2 = start_server("s2", Some(&s1), config);
    let s3 = start_server("s3", Some(&s1), config);
    let servers = vec![s1, s2, s3];
    wait_until(
        "a leader known to all three, three peers",
        Duration::from_secs(30),
        || {
            let leaders: Vec<Option<String>> = servers.iter().map(Agent::leader).collect();
            leaders[0].is_some()
                && leaders.iter().all(|l| *l == leaders[0])
                && servers[0]
                    .get("/v1/status/peers")
                    .json()
                    .as_array()
                    .map(Vec::len)
                    == Some(3)
        },
    );
    servers
}

/// The position of the leader among `servers`, as `asked` names it.
fn leader_of(servers: &[Agent], asked: &Agent) -> usize {
    let leader = asked.leader().expect("a leader");
    servers
        .iter()
        .position(|s| rpc_addr(s) == leader)
        .expect("the leader is one of ours")
}

/// `muster operator autopilot <args>` against `on`: (success, stdout,
/// stderr).
fn autopilot_cli(on: &Agent, args: &[&str]) -> (bool, String, String) {
    let out = muster()
        .args(["operator", "autopilot"])
        .args(args)
        .args(["-http-addr", &on.addr.to_string()])
        .output()
        .expect("run muster operator autopilot");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config_json(on: &Agent) -> Value {
    let r = on.get("/v1/operator/autopilot/configuration");
    assert_eq!(r.status, 200, "GET config: {}", r.text());
    r.json()
}

/// The raft configuration's node names, as `on` answers.
fn raft_nodes(on: &Agent) -> Vec<String> {
    let mut names: Vec<String> = on.get("/v1/operator/raft/configuration").json()["Servers"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|s| s["Node"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `/v1/operator/autopilot/health` as `on` answers: (status, body).
fn health(on: &Agent) -> (u16, Value) {
    let r = on.get("/v1/operator/autopilot/health");
    let body = if r.status == 200 || r.status == 429 {
        r.json()
    } else {
        Value::Null
    };
    (r.status, body)
}

/// The entry for node `name` in a health reply.
fn health_of<'a>(reply: &'a Value, name: &str) -> Option<&'a Value> {
    reply["Servers"]
        .as_array()?
        .iter()
        .find(|s| s["Name"] == name)
}

#[test]
fn autopilot_config_is_stored_through_the_log_and_steers_cleanup() {
    let config = r#"{"autopilot": {"server_stabilization_time": "1s"}}"#;
    let mut servers = three_servers(config);

    // Before anything is stored: the config-file values, Consul's defaults
    // for the rest, no indexes.
    let (ok, out, err) = autopilot_cli(&servers[1], &["get-config"]);
    assert!(ok, "get-config: {err}");
    assert_eq!(
        out,
        "CleanupDeadServers = true\nLastContactThreshold = 200ms\nMaxTrailingLogs = 250\n\
         MinQuorum = 0\nServerStabilizationTime = 1s\nRedundancyZoneTag = \"\"\n\
         DisableUpgradeMigration = false\nUpgradeVersionTag = \"\"\n"
    );
    let defaults = config_json(&servers[0]);
    assert_eq!(defaults["ModifyIndex"], 0, "{defaults}");

    // A CAS against an index that is not the stored one changes nothing.
    let r = servers[0].put(
        "/v1/operator/autopilot/configuration?cas=5",
        br#"{"CleanupDeadServers":false,"ServerStabilizationTime":"1s"}"#,
    );
    assert_eq!((r.status, r.text().as_str()), (200, "false"));
    assert_eq!(config_json(&servers[2]), defaults);

    // set-config through a server changes only the given fields.
    let (ok, out, err) = autopilot_cli(
        &servers[2],
        &[
            "set-config",
            "-cleanup-dead-servers=false",
            "-max-trailing-logs=99",
        ],
    );
    assert!(ok, "set-config: {out}{err}");
    assert_eq!(out, "Configuration updated!\n");
    let stored = config_json(&servers[0]);
    let mut expected = defaults.clone();
    expected["CleanupDeadServers"] = false.into();
    expected["MaxTrailingLogs"] = 99.into();
    let index = stored["ModifyIndex"].as_u64().expect("ModifyIndex");
    assert!(index > 0, "{stored}");
    expected["CreateIndex"] = index.into();
    expected["ModifyIndex"] = index.into();
    assert_eq!(stored, expected);

    // Stale CAS: false, nothing changes; the right index: true.
    let r = servers[1].put(
        &format!("/v1/operator/autopilot/configuration?cas={}", index - 1),
        br#"{"CleanupDeadServers":true,"MaxTrailingLogs":1}"#,
    );
    assert_eq!((r.status, r.text().as_str()), (200, "false"));
    assert_eq!(config_json(&servers[1]), stored);

    // Bad input: Consul's 400s, nothing stored.
    let bad = |body: &str| {
        let r = servers[0].put("/v1/operator/autopilot/configuration", body.as_bytes());
        (r.status, r.text())
    };
    assert_eq!(
        bad(r#"{"LastContactThreshold":"soon"}"#),
        (
            400,
            "Error parsing autopilot config: time: invalid duration \"soon\"".to_string()
        )
    );
    assert_eq!(
        bad(r#"{"CleanupDeadServers":"yes"}"#),
        (
            400,
            "Error parsing autopilot config: json: cannot unmarshal string into Go struct \
             field AutopilotConfiguration.CleanupDeadServers of type bool"
                .to_string()
        )
    );
    let r = servers[0].put("/v1/operator/autopilot/configuration?cas=x", b"{}");
    assert_eq!(
        (r.status, r.text().as_str()),
        (
            400,
            "Error parsing cas value: strconv.ParseUint: parsing \"x\": invalid syntax"
        )
    );
    let (ok, _, err) = autopilot_cli(&servers[0], &["set-config", "-min-quorum=many"]);
    assert!(!ok);
    assert!(
        err.contains("invalid value \"many\" for flag -min-quorum"),
        "{err}"
    );
    assert_eq!(config_json(&servers[0]), stored);

    // kill -9 the leader: another server answers the stored configuration.
    let li = leader_of(&servers, &servers[0]);
    let dead = format!("s{}", li + 1);
    servers[li].kill();
    let alive: Vec<usize> = (0..3).filter(|i| *i != li).collect();
    let old_leader = rpc_addr(&servers[li]);
    wait_until("a new leader", Duration::from_secs(20), || {
        alive
            .iter()
            .all(|i| servers[*i].leader().is_some_and(|l| l != old_leader))
    });
    let survivor = &servers[alive[0]];
    assert_eq!(config_json(survivor), stored);

    // CleanupDeadServers=false: once the new leader sees the dead server
    // failed, it stays in raft well past the 1 s stabilization time.
    wait_until(
        "the new leader sees the dead server failed",
        Duration::from_secs(30),
        || {
            let (_, reply) = health(survivor);
            health_of(&reply, &dead).is_some_and(|s| s["SerfStatus"] == "failed")
        },
    );
    let kept_from = Instant::now();
    while kept_from.elapsed() < Duration::from_secs(5) {
        let nodes = raft_nodes(survivor);
        assert!(
            nodes.contains(&dead),
            "{dead} pruned with CleanupDeadServers=false: {nodes:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // Set back to true: the dead server goes.
    let (ok, out, err) = autopilot_cli(survivor, &["set-config", "-cleanup-dead-servers=true"]);
    assert!(ok, "set-config: {out}{err}");
    wait_until(
        "the dead server pruned once cleanup is on",
        Duration::from_secs(20),
        || !raft_nodes(survivor).contains(&dead),
    );
    let (ok, out, _) = autopilot_cli(&servers[alive[1]], &["get-config"]);
    assert!(ok);
    assert!(
        out.starts_with("CleanupDeadServers = true\n") && out.contains("MaxTrailingLogs = 99\n"),
        "{out}"
    );
}

#[test]
fn autopilot_health_and_state_follow_a_killed_follower() {
    // No cleanup: the killed follower stays listed.
    let config = r#"{"autopilot": {"cleanup_dead_servers": false}}"#;
    let mut servers = three_servers(config);
    let li = leader_of(&servers, &servers[0]);
    let fi = (0..3).find(|i| *i != li).expect("a follower");
    let other = (0..3).find(|i| *i != li && *i != fi).expect("another");

    // Asked of a follower, answered by the leader: three healthy voters,
    // one leader, failure tolerance 1.
    wait_until("a healthy cluster", Duration::from_secs(30), || {
        health(&servers[fi]).0 == 200
    });
    let (_, reply) = health(&servers[fi]);
    assert_eq!(reply["Healthy"], true, "{reply}");
    assert_eq!(reply["FailureTolerance"], 1, "{reply}");
    let list = reply["Servers"].as_array().expect("Servers");
    assert_eq!(list.len(), 3, "{reply}");
    assert!(list
        .iter()
        .all(|s| s["Healthy"] == true && s["Voter"] == true && s["SerfStatus"] == "alive"));
    let leaders: Vec<&Value> = list.iter().filter(|s| s["Leader"] == true).collect();
    assert_eq!(leaders.len(), 1, "{reply}");
    assert_eq!(leaders[0]["Name"], format!("s{}", li + 1).as_str());
    assert_eq!(leaders[0]["Address"], rpc_addr(&servers[li]).as_str());
    assert!(list
        .iter()
        .all(|s| s["ID"].as_str().is_some_and(|id| id.len() == 36)));

    // A client agent forwards autopilot requests to the servers.
    let seed = format!(
        "127.0.0.1:{}",
        servers[0].flag("-serf-lan-port").expect("-serf-lan-port")
    );
    let client = Agent::start(&["-node", "c1", "-retry-join", &seed], true);
    wait_until(
        "the client reaches a server",
        Duration::from_secs(20),
        || health(&client).0 == 200,
    );
    assert_eq!(
        health(&client).1["Servers"].as_array().map(Vec::len),
        Some(3)
    );
    let (ok, out, err) = autopilot_cli(&client, &["get-config"]);
    assert!(
        ok && out.starts_with("CleanupDeadServers = false\n"),
        "{out}{err}"
    );
    drop(client);

    // `state` prints every server; -format=json is Consul's AutopilotState.
    let (ok, out, err) = autopilot_cli(&servers[other], &["state"]);
    assert!(ok, "state: {err}");
    assert!(
        out.starts_with("Healthy:                      true\n"),
        "{out}"
    );
    assert!(out.contains("Failure Tolerance:            1\n"), "{out}");
    for n in 1..=3 {
        assert!(
            out.contains(&format!("      Name:            s{n}\n")),
            "{out}"
        );
    }
    assert_eq!(out.matches("Status:          leader").count(), 1, "{out}");
    let (ok, out, err) = autopilot_cli(&servers[other], &["state", "-format=json"]);
    assert!(ok, "state -format=json: {err}");
    let state: Value = serde_json::from_str(&out).expect("state JSON");
    let voters = state["Voters"].as_array().expect("Voters");
    assert_eq!(voters.len(), 3, "{state}");
    assert_eq!(voters[0], state["Leader"], "the leader is listed first");
    let leader_id = state["Leader"].as_str().expect("Leader");
    assert_eq!(state["Servers"][leader_id]["Status"], "leader");
    assert_eq!(state["Servers"].as_object().map(|m| m.len()), Some(3));

    // kill -9 the follower: unhealthy, tolerance 0, 429.
    let dead = format!("s{}", fi + 1);
    servers[fi].kill();
    let killed = Instant::now();
    wait_until(
        "the killed follower unhealthy",
        Duration::from_secs(30),
        || {
            let (status, reply) = health(&servers[other]);
            status == 429
                && reply["Healthy"] == false
                && reply["FailureTolerance"] == 0
                && health_of(&reply, &dead).is_some_and(|s| s["Healthy"] == false)
        },
    );
    println!("follower unhealthy {:?} after kill -9", killed.elapsed());
    let (_, reply) = health(&servers[li]);
    let healthy: Vec<&str> = reply["Servers"]
        .as_array()
        .expect("Servers")
        .iter()
        .filter(|s| s["Healthy"] == true)
        .filter_map(|s| s["Name"].as_str())
        .collect();
    assert_eq!(healthy.len(), 2, "{reply}");
    assert!(!healthy.contains(&dead.as_str()), "{reply}");
    let (ok, out, _) = autopilot_cli(&servers[li], &["state"]);
    assert!(ok);
    assert!(
        out.starts_with("Healthy:                      false\n"),
        "{out}"
    );
    assert!(out.contains("Failure Tolerance:            0\n"), "{out}");
}
