//! `/v1/health/*` against a real agent (consul-compat.md §2.5, §4): shapes,
//! `passing` and the aggregate rules, `tag`, `node-meta`, `filter`, the
//! check states, and blocking on `/v1/health/service/:s?passing` (§1.1,
//! §1.2): woken by a check change of that service, not by other writes, and
//! never answering with a smaller index after a deregistration.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::catalog::{
    deregister_ok, get_ok, instance, list, only, register, register_ok, strings_of, ALPHA_ID,
};
use crate::harness::{request, Agent};

/// `web` on four nodes: alpha (node check `mem` passing, service check
/// passing), beta (no checks at all), gamma (service check warning), delta
/// (node check critical, service check passing); and `db` on beta.
fn seed(agent: &Agent) {
    register_ok(
        agent,
        &json!({
            "ID": ALPHA_ID, "Node": "alpha", "Address": "10.0.0.1",
            "NodeMeta": {"rack": "r1"},
            "Service": {"ID": "web1", "Service": "web", "Tags": ["v1", "primary"], "Port": 8080,
                        "Meta": {"env": "prod"}},
            "Checks": [
                {"CheckID": "mem", "Name": "Memory", "Status": "passing", "Output": "fine"},
                {"CheckID": "service:web1", "Name": "Service 'web' check", "Status": "passing",
                 "ServiceID": "web1", "Notes": "http probe", "Output": "200 OK"},
            ],
        }),
    );
    register_ok(
        agent,
        &json!({"Node": "beta", "Address": "10.0.0.2", "NodeMeta": {"rack": "r2"},
                "Service": {"ID": "web2", "Service": "web", "Tags": ["v2"], "Port": 8081}}),
    );
    register_ok(
        agent,
        &json!({"Node": "beta", "Address": "10.0.0.2", "NodeMeta": {"rack": "r2"},
                "Service": {"ID": "db1", "Service": "db", "Port": 5432},
                "Check": {"CheckID": "service:db1", "Name": "db", "ServiceID": "db1",
                          "Status": "critical"}}),
    );
    register_ok(
        agent,
        &instance("gamma", "10.0.0.3", "web", "web3", &["v1"], "warning"),
    );
    register_ok(
        agent,
        &json!({"Node": "delta", "Address": "10.0.0.4",
        "Service": {"ID": "web4", "Service": "web", "Tags": ["v1"], "Port": 8080},
        "Checks": [
            {"CheckID": "_node_maintenance", "Name": "Node Maintenance Mode",
             "Status": "critical", "Notes": "down for repairs"},
            {"CheckID": "service:web4", "Name": "Service 'web' check",
             "Status": "passing", "ServiceID": "web4"},
        ]}),
    );
}

/// The `Node.Node` of each entry of a `/v1/health/service` reply.
fn entry_nodes(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            e["Node"]["Node"]
                .as_str()
                .unwrap_or_else(|| panic!("no Node.Node in {e}"))
                .to_string()
        })
        .collect()
}

/// `GET path` → the node names of the `/v1/health/service` entries.
fn nodes_of(agent: &Agent, path: &str) -> Vec<String> {
    entry_nodes(&list(&get_ok(agent, path)))
}

#[test]
fn health_service_entries_have_node_service_and_all_checks() {
    let agent = Agent::dev();
    seed(&agent);

    let resp = get_ok(&agent, "/v1/health/service/web");
    let entries = list(&resp);
    assert_eq!(entry_nodes(&entries), ["alpha", "beta", "delta", "gamma"]);

    let alpha = &entries[0];
    let node = &alpha["Node"];
    assert_eq!(node["ID"], ALPHA_ID);
    assert_eq!(node["Address"], "10.0.0.1");
    assert_eq!(node["Datacenter"], "dc1");
    assert_eq!(node["Meta"], json!({"rack": "r1"}));
    let service = &alpha["Service"];
    assert_eq!(service["ID"], "web1");
    assert_eq!(service["Service"], "web");
    assert_eq!(service["Tags"], json!(["v1", "primary"]));
    assert_eq!(service["Port"], 8080);
    assert_eq!(service["Address"], "");
    assert_eq!(service["Meta"], json!({"env": "prod"}));
    assert_eq!(service["Weights"], json!({"Passing": 1, "Warning": 1}));
    assert_eq!(service["EnableTagOverride"], false);
    let modify = service["ModifyIndex"].as_u64().expect("ModifyIndex");
    assert!(resp.index() >= modify);

    // Checks: the node's checks, then the instance's.
    let checks = alpha["Checks"].as_array().expect("Checks is a list");
    assert_eq!(strings_of(checks, "CheckID"), ["mem", "service:web1"]);
    let svc_check = &checks[1];
    assert_eq!(svc_check["Node"], "alpha");
    assert_eq!(svc_check["Name"], "Service 'web' check");
    assert_eq!(svc_check["Status"], "passing");
    assert_eq!(svc_check["Notes"], "http probe");
    assert_eq!(svc_check["Output"], "200 OK");
    assert_eq!(svc_check["ServiceID"], "web1");
    assert_eq!(svc_check["ServiceName"], "web");
    assert_eq!(svc_check["ServiceTags"], json!(["v1", "primary"]));
    for field in ["Type", "Definition", "CreateIndex", "ModifyIndex"] {
        assert!(
            svc_check.get(field).is_some(),
            "HealthCheck lacks {field}: {svc_check}"
        );
    }
    assert_eq!(checks[0]["ServiceID"], "");
    assert_eq!(checks[0]["ServiceTags"], json!([]));

    // An instance without any check: `Checks: []`, never null.
    assert_eq!(entries[1]["Checks"], json!([]), "{}", entries[1]);
    // The node check shows on delta's entry.
    let delta = entries[2]["Checks"].as_array().expect("list");
    assert_eq!(
        strings_of(delta, "CheckID"),
        ["_node_maintenance", "service:web4"]
    );

    // Unknown service: `[]`, not 404.
    assert!(list(&get_ok(&agent, "/v1/health/service/nope")).is_empty());
}

#[test]
fn health_service_passing_drops_any_non_passing_check() {
    let agent = Agent::dev();
    seed(&agent);

    // gamma has a warning service check, delta a critical node check; beta
    // has no checks at all, which counts as passing.
    for q in ["passing", "passing=1", "passing=true", "passing="] {
        assert_eq!(
            nodes_of(&agent, &format!("/v1/health/service/web?{q}")),
            ["alpha", "beta"],
            "?{q}"
        );
    }
    assert_eq!(
        nodes_of(&agent, "/v1/health/service/web?passing=false").len(),
        4
    );
    assert!(nodes_of(&agent, "/v1/health/service/db?passing").is_empty());

    let resp = agent.get("/v1/health/service/web?passing=maybe");
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert!(
        resp.text().contains("Invalid value for ?passing"),
        "{}",
        resp.text()
    );

    // Turning gamma's check passing brings it back; failing alpha's node
    // check drops alpha although its service check passes.
    register_ok(
        &agent,
        &instance("gamma", "10.0.0.3", "web", "web3", &["v1"], "passing"),
    );
    register_ok(
        &agent,
        &json!({"ID": ALPHA_ID, "Node": "alpha", "Address": "10.0.0.1", "NodeMeta": {"rack": "r1"},
                "Check": {"CheckID": "mem", "Name": "Memory", "Status": "warning"}}),
    );
    assert_eq!(
        nodes_of(&agent, "/v1/health/service/web?passing"),
        ["beta", "gamma"]
    );
}

#[test]
fn health_service_tag_node_meta_and_filter() {
    let agent = Agent::dev();
    seed(&agent);
    assert_eq!(
        nodes_of(&agent, "/v1/health/service/web?tag=v1"),
        ["alpha", "delta", "gamma"]
    );
    assert_eq!(
        nodes_of(&agent, "/v1/health/service/web?tag=v1&tag=primary"),
        ["alpha"]
    );
    assert_eq!(
        nodes_of(&agent, "/v1/health/service/web?tag=v1&passing"),
        ["alpha"]
    );
    assert_eq!(
        nodes_of(&agent, "/v1/health/service/web?node-meta=rack:r2"),
        ["beta"]
    );
    assert_eq!(
        nodes_of(
            &agent,
            "/v1/health/service/web?filter=Service.Meta.env%20%3D%3D%20prod"
        ),
        ["alpha"]
    );
    assert_eq!(
        nodes_of(
            &agent,
            "/v1/health/service/web?filter=Checks.Status%20%3D%3D%20warning"
        ),
        ["gamma"]
    );
    assert_eq!(
        nodes_of(
            &agent,
            "/v1/health/service/web?filter=Node.Node%20%21%3D%20alpha&tag=v1"
        ),
        ["delta", "gamma"]
    );
    assert_eq!(
        nodes_of(
            &agent,
            "/v1/health/service/web?filter=Service.Port%20%3D%3D%208081"
        ),
        ["beta"]
    );
    let resp = agent.get("/v1/health/service/web?filter=Service.Port%20%3D%3D");
    assert_eq!(resp.status, 400, "{}", resp.text());
}

#[test]
fn health_checks_of_a_service_and_of_a_node() {
    let agent = Agent::dev();
    seed(&agent);

    // checks/:service: the instances' own checks, no node checks.
    let checks = list(&get_ok(&agent, "/v1/health/checks/web"));
    let mut ids = strings_of(&checks, "CheckID");
    ids.sort();
    assert_eq!(ids, ["service:web1", "service:web3", "service:web4"]);
    let warning = list(&get_ok(
        &agent,
        "/v1/health/checks/web?filter=Status%20%3D%3D%20warning",
    ));
    assert_eq!(strings_of(&warning, "Node"), ["gamma"]);
    let r1 = list(&get_ok(&agent, "/v1/health/checks/web?node-meta=rack:r1"));
    assert_eq!(strings_of(&r1, "CheckID"), ["service:web1"]);
    assert!(list(&get_ok(&agent, "/v1/health/checks/nope")).is_empty());

    // node/:node: node and service checks of that node.
    let alpha = list(&get_ok(&agent, "/v1/health/node/alpha"));
    assert_eq!(strings_of(&alpha, "CheckID"), ["mem", "service:web1"]);
    assert_eq!(alpha[0]["Output"], "fine");
    let beta = list(&get_ok(&agent, "/v1/health/node/beta"));
    assert_eq!(strings_of(&beta, "CheckID"), ["service:db1"]);
    let filtered = list(&get_ok(
        &agent,
        "/v1/health/node/alpha?filter=ServiceID%20%3D%3D%20%22%22",
    ));
    assert_eq!(strings_of(&filtered, "CheckID"), ["mem"]);
    assert!(list(&get_ok(&agent, "/v1/health/node/nowhere")).is_empty());

    let resp = agent.get("/v1/health/checks/web?filter=%29");
    assert_eq!(resp.status, 400, "{}", resp.text());
    let resp = agent.get("/v1/health/service/");
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert!(
        resp.text().contains("Missing service name"),
        "{}",
        resp.text()
    );
}

#[test]
fn health_state_lists_checks_by_status() {
    let agent = Agent::dev();
    seed(&agent);
    let mine = [
        "mem",
        "service:web1",
        "service:db1",
        "service:web3",
        "_node_maintenance",
        "service:web4",
    ];
    let ids = |path: &str| {
        let mut ids = only(strings_of(&list(&get_ok(&agent, path)), "CheckID"), &mine);
        ids.sort();
        ids
    };
    assert_eq!(
        ids("/v1/health/state/any"),
        [
            "_node_maintenance",
            "mem",
            "service:db1",
            "service:web1",
            "service:web3",
            "service:web4"
        ]
    );
    assert_eq!(
        ids("/v1/health/state/passing"),
        ["mem", "service:web1", "service:web4"]
    );
    assert_eq!(ids("/v1/health/state/warning"), ["service:web3"]);
    assert_eq!(
        ids("/v1/health/state/critical"),
        ["_node_maintenance", "service:db1"]
    );
    // Every listed check really has that status.
    for state in ["passing", "warning", "critical"] {
        let checks = list(&get_ok(&agent, &format!("/v1/health/state/{state}")));
        assert!(
            checks.iter().all(|c| c["Status"] == state),
            "{state}: {checks:?}"
        );
    }
    // An unknown state is an empty list.
    let unknown = get_ok(&agent, "/v1/health/state/bogus");
    assert_eq!(unknown.json(), json!([]));
    assert_eq!(
        ids("/v1/health/state/any?filter=ServiceName%20%3D%3D%20web%20and%20Status%20%21%3D%20passing"),
        ["service:web3"]
    );
    let resp = agent.get("/v1/health/state/any?filter=Status%20%3D%3D%20%22x");
    assert_eq!(resp.status, 400, "{}", resp.text());
}

#[test]
fn health_check_definition_fields_and_durations_decode() {
    let agent = Agent::dev();
    let resp = register(
        &agent,
        &json!({
            "Node": "def", "Address": "10.5.0.1",
            "Service": {"ID": "api1", "Service": "api", "Port": 80},
            "Check": {
                "CheckID": "api-http", "Name": "api http", "ServiceID": "api1",
                "Status": "passing", "Type": "http",
                "Definition": {"HTTP": "http://10.5.0.1/health", "Interval": "1.5s",
                               "Timeout": 5_000_000_000u64},
            },
        }),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let checks = list(&get_ok(&agent, "/v1/health/checks/api"));
    assert_eq!(checks.len(), 1);
    let check = &checks[0];
    assert_eq!(check["Type"], "http", "{check}");
    assert_eq!(
        check["Definition"]["HTTP"], "http://10.5.0.1/health",
        "{check}"
    );
    assert_eq!(check["Definition"]["Interval"], "1.5s", "{check}");
    assert_eq!(check["Definition"]["Timeout"], "5s", "{check}");
}

/// `PUT /v1/catalog/register` with `body` from another thread after `delay`.
fn register_later(agent: &Agent, body: Value, delay: Duration) -> thread::JoinHandle<()> {
    let addr = agent.addr;
    thread::spawn(move || {
        thread::sleep(delay);
        let resp = request(
            addr,
            "PUT",
            "/v1/catalog/register",
            body.to_string().as_bytes(),
        )
        .expect("delayed register");
        assert_eq!(resp.status, 200, "delayed register: {}", resp.text());
    })
}

#[test]
fn health_blocking_passing_wakes_on_a_check_change() {
    let agent = Agent::dev();
    register_ok(
        &agent,
        &instance("alpha", "10.0.0.1", "web", "web1", &["v1"], "passing"),
    );
    let first = get_ok(&agent, "/v1/health/service/web?passing");
    assert_eq!(entry_nodes(&list(&first)), ["alpha"]);
    let index = first.index();

    let writer = register_later(
        &agent,
        instance("alpha", "10.0.0.1", "web", "web1", &["v1"], "warning"),
        Duration::from_millis(500),
    );
    let start = Instant::now();
    let resp = get_ok(
        &agent,
        &format!("/v1/health/service/web?passing&index={index}&wait=30s"),
    );
    let took = start.elapsed();
    writer.join().expect("writer");
    assert!(
        took < Duration::from_secs(3),
        "woken {took:?} after the query started; the check changed at 500 ms"
    );
    assert!(resp.index() > index, "{} > {index}", resp.index());
    assert!(
        list(&resp).is_empty(),
        "warning drops it from ?passing: {}",
        resp.text()
    );

    // And back to passing wakes it again.
    let index = resp.index();
    let writer = register_later(
        &agent,
        instance("alpha", "10.0.0.1", "web", "web1", &["v1"], "passing"),
        Duration::from_millis(300),
    );
    let start = Instant::now();
    let resp = get_ok(
        &agent,
        &format!("/v1/health/service/web?passing&index={index}&wait=30s"),
    );
    writer.join().expect("writer");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "woken after {:?}",
        start.elapsed()
    );
    assert_eq!(entry_nodes(&list(&resp)), ["alpha"]);
}

#[test]
fn health_blocking_passing_ignores_other_services() {
    let agent = Agent::dev();
    register_ok(
        &agent,
        &instance("alpha", "10.0.0.1", "web", "web1", &[], "passing"),
    );
    register_ok(
        &agent,
        &instance("beta", "10.0.0.2", "db", "db1", &[], "passing"),
    );
    let index = get_ok(&agent, "/v1/health/service/web?passing").index();

    // Writes to db (same status change as a web write would be), a new node
    // with another service, and a KV key: none concerns web.
    let addr = agent.addr;
    let writer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        for body in [
            instance("beta", "10.0.0.2", "db", "db1", &[], "critical"),
            instance("gamma", "10.0.0.3", "cache", "cache1", &[], "passing"),
        ] {
            let resp = request(
                addr,
                "PUT",
                "/v1/catalog/register",
                body.to_string().as_bytes(),
            )
            .expect("register");
            assert_eq!(resp.status, 200, "{}", resp.text());
        }
        let resp = request(addr, "PUT", "/v1/kv/unrelated", b"x").expect("kv put");
        assert_eq!(resp.status, 200);
    });
    let start = Instant::now();
    let resp = get_ok(
        &agent,
        &format!("/v1/health/service/web?passing&index={index}&wait=2s"),
    );
    let took = start.elapsed();
    writer.join().expect("writer");
    assert!(
        took >= Duration::from_secs(2),
        "a write to another service ended the wait after {took:?}"
    );
    assert!(took < Duration::from_secs(5), "returned after {took:?}");
    assert_eq!(resp.index(), index, "web's index did not move");
    assert_eq!(entry_nodes(&list(&resp)), ["alpha"]);
}

#[test]
fn health_index_never_goes_backwards_after_the_last_instance_leaves() {
    let agent = Agent::dev();
    register_ok(
        &agent,
        &instance("alpha", "10.0.0.1", "web", "web1", &[], "passing"),
    );
    let index = get_ok(&agent, "/v1/health/service/web?passing").index();

    deregister_ok(&agent, &json!({"Node": "alpha", "ServiceID": "web1"}));
    let after = get_ok(&agent, "/v1/health/service/web?passing");
    assert!(list(&after).is_empty());
    assert!(
        after.index() >= index,
        "non-blocking: {} < {index}",
        after.index()
    );
    for path in [
        "/v1/health/service/web",
        "/v1/catalog/service/web",
        "/v1/health/checks/web",
    ] {
        let i = get_ok(&agent, path).index();
        assert!(i >= index, "{path}: {i} < {index}");
    }

    let start = Instant::now();
    let blocked = get_ok(
        &agent,
        &format!("/v1/health/service/web?passing&index={index}&wait=2s"),
    );
    assert!(
        blocked.index() >= index,
        "blocking: {} < {index}",
        blocked.index()
    );
    assert!(list(&blocked).is_empty());
    assert!(start.elapsed() < Duration::from_secs(4));

    // The empty service's index is stable: unrelated writes do not move it
    // below what the client holds, and a blocking query with it times out.
    let held = blocked.index();
    register_ok(
        &agent,
        &instance("beta", "10.0.0.2", "db", "db1", &[], "passing"),
    );
    let start = Instant::now();
    let again = get_ok(
        &agent,
        &format!("/v1/health/service/web?passing&index={held}&wait=1s"),
    );
    assert!(again.index() >= held, "{} < {held}", again.index());
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "an unrelated write woke it"
    );

    // Same when the whole node goes.
    register_ok(
        &agent,
        &instance("gamma", "10.0.0.3", "web", "web3", &[], "passing"),
    );
    let index = get_ok(&agent, "/v1/health/service/web").index();
    assert!(index >= held);
    deregister_ok(&agent, &json!({"Node": "gamma"}));
    let after = get_ok(
        &agent,
        &format!("/v1/health/service/web?index={index}&wait=2s"),
    );
    assert!(after.index() >= index, "{} < {index}", after.index());
    assert!(list(&after).is_empty());
}

#[test]
fn every_catalog_and_health_read_blocks_until_it_changes() {
    let agent = Agent::dev();
    seed(&agent);
    // Each read, and a write that changes its result.
    let cases: [(&str, Value); 10] = [
        (
            "/v1/catalog/nodes",
            json!({"Node": "new1", "Address": "10.9.0.1"}),
        ),
        (
            "/v1/catalog/services",
            instance("new2", "10.9.0.2", "fresh", "fresh1", &[], "passing"),
        ),
        (
            "/v1/catalog/service/web",
            instance("new3", "10.9.0.3", "web", "web9", &[], "passing"),
        ),
        (
            "/v1/catalog/node/alpha",
            json!({"ID": ALPHA_ID, "Node": "alpha", "Address": "10.0.0.1", "NodeMeta": {"rack": "r1"},
                   "Service": {"ID": "extra", "Service": "extra"}}),
        ),
        (
            "/v1/catalog/node-services/beta",
            json!({"Node": "beta", "Address": "10.0.0.2", "NodeMeta": {"rack": "r2"},
                   "Service": {"ID": "extra", "Service": "extra"}}),
        ),
        (
            "/v1/health/node/gamma",
            instance("gamma", "10.0.0.3", "web", "web3", &["v1"], "critical"),
        ),
        (
            "/v1/health/checks/db",
            json!({"Node": "beta", "Address": "10.0.0.2", "NodeMeta": {"rack": "r2"},
                   "Check": {"CheckID": "service:db1", "Name": "db", "ServiceID": "db1",
                             "Status": "passing"}}),
        ),
        (
            "/v1/health/service/web",
            instance("gamma", "10.0.0.3", "web", "web3", &["v1"], "passing"),
        ),
        (
            "/v1/health/state/warning",
            instance("new4", "10.9.0.4", "other", "other1", &[], "warning"),
        ),
        (
            "/v1/health/state/any",
            instance("new5", "10.9.0.5", "other", "other2", &[], "critical"),
        ),
    ];
    for (path, write) in cases {
        let before = get_ok(&agent, path);
        let index = before.index();
        let writer = register_later(&agent, write, Duration::from_millis(200));
        let start = Instant::now();
        let resp = get_ok(&agent, &format!("{path}?index={index}&wait=20s"));
        let took = start.elapsed();
        writer.join().expect("writer");
        assert!(
            took < Duration::from_secs(3),
            "{path}: woken after {took:?}"
        );
        assert!(resp.index() > index, "{path}: {} > {index}", resp.index());
        assert_ne!(resp.json(), before.json(), "{path}: the result changed");
    }
}

#[test]
fn health_and_catalog_reads_take_the_common_parameters() {
    let agent = Agent::dev();
    seed(&agent);
    // `near`, `stale`, `consistent` and this datacenter are accepted.
    for q in [
        "near=_agent",
        "stale",
        "consistent",
        "dc=dc1",
        "stale=1&cached",
    ] {
        for path in [
            "/v1/health/service/web",
            "/v1/catalog/service/web",
            "/v1/catalog/nodes",
        ] {
            let resp = agent.get(&format!("{path}?{q}"));
            assert_eq!(resp.status, 200, "{path}?{q}: {}", resp.text());
        }
    }
    // Another datacenter: 500 `No path to datacenter`.
    let resp = agent.get("/v1/health/service/web?dc=elsewhere");
    assert_eq!(resp.status, 500, "{}", resp.text());
    assert!(
        resp.text().contains("No path to datacenter"),
        "{}",
        resp.text()
    );
    // Wrong method on a read and on a write.
    assert_eq!(agent.delete("/v1/health/service/web").status, 405);
    let resp = agent.get("/v1/catalog/register");
    assert_eq!(resp.status, 405, "{}", resp.text());
    assert!(resp.header("Allow").is_some_and(|a| a.contains("PUT")));
    // Missing state.
    let resp = agent.get("/v1/health/state/");
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert!(
        resp.text().contains("Missing check state"),
        "{}",
        resp.text()
    );
    // Mesh variants answer `[]`.
    for path in [
        "/v1/health/connect/web",
        "/v1/health/ingress/web",
        "/v1/catalog/connect/web",
    ] {
        assert_eq!(get_ok(&agent, path).json(), json!([]), "{path}");
    }
    // NodeService omits `Port` when 0 and `TaggedAddresses` when empty.
    register_ok(
        &agent,
        &json!({"Node": "beta", "Address": "10.0.0.2", "NodeMeta": {"rack": "r2"},
                "Service": {"ID": "noport", "Service": "noport"}}),
    );
    let entries = list(&get_ok(&agent, "/v1/health/service/noport"));
    let service = &entries[0]["Service"];
    assert!(service.get("Port").is_none(), "{service}");
    assert!(service.get("TaggedAddresses").is_none(), "{service}");
}
