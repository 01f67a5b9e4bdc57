//! ACL rules endpoint by endpoint, under default deny with an initial
//! management token: catalog writes (service, check and node writes),
//! the agent's own services and checks, node and health reads filtered by
//! node and service, operator and keyring, prepared queries, and a
//! blocking health read that a change to an instance the token may not see
//! does not wake; and a token travelling with `?dc=` to the datacenter
//! that knows it.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{request_with_headers, Agent, Response};

const ROOT: &str = "11111111-2222-3333-4444-555555555555";

fn call(a: &Agent, method: &str, path: &str, token: &str, body: &[u8]) -> Response {
    request_with_headers(a.addr, method, path, &[("X-Consul-Token", token)], body).expect("request")
}

/// A token holding one policy with `rules`.
fn token_with(a: &Agent, name: &str, rules: &str) -> String {
    let p = call(
        a,
        "PUT",
        "/v1/acl/policy",
        ROOT,
        json!({"Name": name, "Rules": rules}).to_string().as_bytes(),
    );
    assert_eq!(p.status, 200, "{}", p.text());
    let t = call(
        a,
        "PUT",
        "/v1/acl/token",
        ROOT,
        json!({"Policies": [{"Name": name}]}).to_string().as_bytes(),
    );
    assert_eq!(t.status, 200, "{}", t.text());
    t.json()["SecretID"].as_str().expect("SecretID").to_string()
}

/// `status` and that the body names `permission`.
fn denied(r: &Response, permission: &str) {
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains(permission), "{}", r.text());
}

fn ok(r: &Response) {
    assert_eq!(r.status, 200, "{}", r.text());
}

fn register(a: &Agent, token: &str, body: &Value) -> Response {
    call(
        a,
        "PUT",
        "/v1/catalog/register",
        token,
        body.to_string().as_bytes(),
    )
}

#[test]
fn acl_rules_on_catalog_agent_operator_and_query_endpoints() {
    let config = json!({"acl": {"enabled": true, "default_policy": "deny",
        "tokens": {"initial_management": ROOT}}})
    .to_string();
    let a = Agent::start_with_config(&["-server", "-bootstrap", "-node", "n1"], true, &config);
    // An external node (the agent's own would be reconciled with its
    // local state by anti-entropy).
    let app1 = "127.0.0.80";
    ok(&register(
        &a,
        ROOT,
        &json!({"Node": "app1", "Address": app1, "Service": {"Service": "db"}}),
    ));

    // Catalog writes: service:write for the service, node:write only when
    // the node is new or changes.
    let web = token_with(
        &a,
        "web-writer",
        r#"service_prefix "web" { policy = "write" }
           node_prefix "" { policy = "read" }
           node "n1" { policy = "read" }"#,
    );
    ok(&register(
        &a,
        &web,
        &json!({"Node": "app1", "Address": app1, "Service": {"Service": "web", "Port": 80}}),
    ));
    denied(
        &register(
            &a,
            &web,
            &json!({"Node": "app1", "Address": app1, "Service": {"Service": "api"}}),
        ),
        "'service:write' on \"api\"",
    );
    denied(
        &register(
            &a,
            &web,
            &json!({"Node": "new-node", "Address": "127.0.0.9", "Service": {"Service": "web"}}),
        ),
        "'node:write' on \"new-node\"",
    );
    denied(
        &register(
            &a,
            &web,
            &json!({"Node": "app1", "Address": app1,
                    "Check": {"CheckID": "node-check", "Name": "node check"}}),
        ),
        "'node:write' on \"app1\"",
    );
    ok(&register(
        &a,
        &web,
        &json!({"Node": "app1", "Address": app1,
                "Check": {"CheckID": "web-check", "Name": "web", "ServiceID": "web",
                          "Status": "passing"}}),
    ));
    // Instances the token may not see, registered by the root token.
    for (node, addr) in [("hidden", "127.0.0.78"), ("other", "127.0.0.79")] {
        ok(&register(
            &a,
            ROOT,
            &json!({"Node": node, "Address": addr, "Service": {"Service": "web"},
                    "Check": {"CheckID": "web-check", "Name": "web", "ServiceID": "web",
                              "Status": "passing"}}),
        ));
    }
    let dereg = br#"{"Node": "app1", "ServiceID": "db"}"#;
    denied(
        &call(&a, "PUT", "/v1/catalog/deregister", &web, dereg),
        "'service:write' on \"db\"",
    );

    // Transactions: catalog operations by their node and service.
    let txn = |ops: Value| call(&a, "PUT", "/v1/txn", &web, ops.to_string().as_bytes());
    ok(&txn(json!([{"Service": {"Verb": "set", "Node": "app1",
        "Service": {"ID": "web-tx", "Service": "web", "Port": 81}}}])));
    denied(
        &txn(json!([{"Node": {"Verb": "set",
            "Node": {"Node": "app1", "Address": "127.0.0.99"}}}])),
        "'node:write' on \"app1\" (transaction operation 0)",
    );
    denied(
        &txn(json!([{"Service": {"Verb": "delete", "Node": "app1",
            "Service": {"ID": "db"}}}])),
        "'service:write' on \"db\"",
    );
    ok(&txn(json!([{"Service": {"Verb": "delete", "Node": "app1",
        "Service": {"ID": "web-tx"}}}])));

    // Reads by node and by state are filtered by node and service.
    let reader = token_with(
        &a,
        "reader",
        r#"service "web" { policy = "read" }
           node "app1" { policy = "read" }
           node "other" { policy = "read" }"#,
    );
    let node = call(&a, "GET", "/v1/catalog/node/app1", &reader, b"");
    ok(&node);
    let services = node.json()["Services"].as_object().map(|m| m.len());
    assert_eq!(services, Some(1), "db is hidden: {}", node.text());
    assert_eq!(node.json()["Services"]["web"]["Service"], "web");
    let hidden = call(&a, "GET", "/v1/catalog/node/hidden", &reader, b"");
    assert_eq!((hidden.status, hidden.json()), (200, Value::Null));
    assert_eq!(
        hidden.header("X-Consul-Results-Filtered-By-ACLs"),
        Some("true")
    );
    let state = call(&a, "GET", "/v1/health/state/any", &reader, b"");
    ok(&state);
    let mut seen: Vec<String> = state
        .json()
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| format!("{}/{}", c["Node"].as_str().unwrap_or(""), c["CheckID"]))
        .collect();
    seen.sort();
    assert!(
        seen.iter().all(|c| !c.starts_with("hidden/")),
        "a hidden node's check: {seen:?}"
    );
    assert!(
        seen.contains(&"other/\"web-check\"".to_string()),
        "{seen:?}"
    );
    let checks = call(&a, "GET", "/v1/health/checks/web", &reader, b"").json();
    assert_eq!(checks.as_array().map(Vec::len), Some(2), "{checks}");
    let hidden_checks = call(&a, "GET", "/v1/health/node/hidden", &reader, b"");
    assert_eq!(hidden_checks.json(), json!([]));
    let ui = call(&a, "GET", "/v1/internal/ui/nodes", &reader, b"").json();
    let mut ui_nodes: Vec<&str> = ui
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["Node"].as_str())
        .collect();
    ui_nodes.sort_unstable();
    assert_eq!(ui_nodes, ["app1", "other"]);

    // A blocking read of web's health is not woken by a change on a node
    // the token may not read, and is by one on a node it may.
    let index = call(&a, "GET", "/v1/health/service/web", &reader, b"").index();
    let flip = |node: &str, status: &str| {
        ok(&register(
            &a,
            ROOT,
            &json!({"Node": node, "Address": "127.0.0.78", "SkipNodeUpdate": true,
                    "Check": {"CheckID": "web-check", "Name": "web", "ServiceID": "web",
                              "Status": status}}),
        ));
    };
    let wait_for = |addr, tok: String, index: u64| {
        std::thread::spawn(move || {
            let start = Instant::now();
            let r = request_with_headers(
                addr,
                "GET",
                &format!("/v1/health/service/web?index={index}&wait=3s"),
                &[("X-Consul-Token", &tok)],
                b"",
            )
            .expect("request");
            (start.elapsed(), r)
        })
    };
    let waiter = wait_for(a.addr, reader.clone(), index);
    std::thread::sleep(Duration::from_millis(300));
    flip("hidden", "critical");
    let (took, r) = waiter.join().expect("waiter");
    assert!(
        took >= Duration::from_millis(2500),
        "woken by a hidden change after {took:?}"
    );
    assert!(!r.text().contains("hidden"), "{}", r.text());
    let waiter = wait_for(a.addr, reader.clone(), r.index());
    std::thread::sleep(Duration::from_millis(300));
    flip("other", "critical");
    let (took, r) = waiter.join().expect("waiter");
    assert!(
        took < Duration::from_millis(2500),
        "not woken by a change it may see ({took:?})"
    );
    assert!(r.text().contains("critical"), "{}", r.text());

    // The agent's own services and checks.
    let svc = |name: &str| json!({"Name": name, "ID": name, "Port": 1}).to_string();
    ok(&call(
        &a,
        "PUT",
        "/v1/agent/service/register",
        &web,
        svc("web-2").as_bytes(),
    ));
    denied(
        &call(
            &a,
            "PUT",
            "/v1/agent/service/register",
            &web,
            svc("api").as_bytes(),
        ),
        "'service:write' on \"api\"",
    );
    let ttl = json!({"ID": "web-ttl", "Name": "ttl", "TTL": "30s", "ServiceID": "web-2"});
    ok(&call(
        &a,
        "PUT",
        "/v1/agent/check/register",
        &web,
        ttl.to_string().as_bytes(),
    ));
    ok(&call(&a, "PUT", "/v1/agent/check/pass/web-ttl", &web, b""));
    let node_ttl = json!({"ID": "node-ttl", "Name": "ttl", "TTL": "30s"});
    denied(
        &call(
            &a,
            "PUT",
            "/v1/agent/check/register",
            &web,
            node_ttl.to_string().as_bytes(),
        ),
        "'node:write' on \"n1\"",
    );
    ok(&call(
        &a,
        "PUT",
        "/v1/agent/service/register",
        ROOT,
        svc("api").as_bytes(),
    ));
    denied(
        &call(&a, "PUT", "/v1/agent/service/deregister/api", &web, b""),
        "'service:write' on \"api\"",
    );
    denied(
        &call(&a, "GET", "/v1/agent/service/api", &web, b""),
        "'service:read' on \"api\"",
    );
    ok(&call(&a, "GET", "/v1/agent/service/web-2", &web, b""));
    denied(
        &call(&a, "PUT", "/v1/agent/maintenance?enable=true", &web, b""),
        "'node:write' on \"n1\"",
    );
    denied(
        &call(&a, "PUT", "/v1/agent/reload", &web, b""),
        "'agent:write'",
    );

    // Operator and keyring: their global permissions.
    let op = token_with(&a, "operator-read", r#"operator = "read""#);
    ok(&call(
        &a,
        "GET",
        "/v1/operator/raft/configuration",
        &op,
        b"",
    ));
    ok(&call(
        &a,
        "GET",
        "/v1/operator/autopilot/configuration",
        &op,
        b"",
    ));
    denied(
        &call(
            &a,
            "PUT",
            "/v1/operator/autopilot/configuration",
            &op,
            b"{}",
        ),
        "'operator:write'",
    );
    denied(
        &call(&a, "GET", "/v1/operator/raft/configuration", &web, b""),
        "'operator:read'",
    );
    denied(
        &call(&a, "GET", "/v1/operator/keyring", &op, b""),
        "'keyring:read'",
    );

    // Prepared queries: write on the name to create, listings filtered,
    // results filtered by the caller's reads.
    let q = token_with(
        &a,
        "queries",
        r#"query_prefix "web-" { policy = "write" }
           service "web" { policy = "read" }
           node "app1" { policy = "read" }"#,
    );
    let def = |name: &str| json!({"Name": name, "Service": {"Service": "web"}}).to_string();
    let created = call(&a, "POST", "/v1/query", &q, def("web-q").as_bytes());
    ok(&created);
    denied(
        &call(&a, "POST", "/v1/query", &q, def("db-q").as_bytes()),
        "'query:write' on \"db-q\"",
    );
    ok(&call(&a, "POST", "/v1/query", ROOT, def("db-q").as_bytes()));
    let listed = call(&a, "GET", "/v1/query", &q, b"");
    let names: Vec<&str> = listed
        .json()
        .as_array()
        .expect("queries")
        .iter()
        .filter_map(|q| q["Name"].as_str())
        .map(|n| if n == "web-q" { "web-q" } else { "other" })
        .collect();
    assert_eq!(names, ["web-q"]);
    assert_eq!(
        listed.header("X-Consul-Results-Filtered-By-ACLs"),
        Some("true")
    );
    let run = call(&a, "GET", "/v1/query/web-q/execute", &q, b"");
    ok(&run);
    let nodes: Vec<String> = run.json()["Nodes"]
        .as_array()
        .expect("Nodes")
        .iter()
        .map(|e| e["Node"]["Node"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(nodes, ["app1"], "only the instance on a node it may read");

    // Still management only: snapshots.
    denied(&call(&a, "GET", "/v1/snapshot", &op, b""), "'management'");
}

/// `?dc=` forwarding: the token travels with the request and the other
/// datacenter's servers decide with their own tokens and rules.
#[test]
fn acl_token_travels_with_a_request_for_another_datacenter() {
    let config = json!({"acl": {"enabled": true, "default_policy": "deny",
        "tokens": {"initial_management": ROOT}}})
    .to_string();
    let a = Agent::start_with_config(
        &["-server", "-bootstrap", "-node", "fa", "-datacenter", "dc1"],
        true,
        &config,
    );
    let seed = format!("127.0.0.1:{}", a.flag("-serf-wan-port").expect("port"));
    let b = Agent::start_with_config(
        &[
            "-server",
            "-bootstrap",
            "-node",
            "fb",
            "-datacenter",
            "dc2",
            "-retry-join-wan",
            &seed,
        ],
        true,
        &config,
    );
    crate::harness::wait_until("both datacenters known", Duration::from_secs(20), || {
        a.get("/v1/catalog/datacenters").json() == json!(["dc1", "dc2"])
    });
    for key in ["app/x", "other/x"] {
        ok(&call(&b, "PUT", &format!("/v1/kv/{key}"), ROOT, b"dc2"));
    }
    // A token only dc2 knows.
    let in_dc2 = token_with(&b, "app-read", r#"key_prefix "app/" { policy = "read" }"#);
    let through_dc1 =
        |key: &str, token: &str| call(&a, "GET", &format!("/v1/kv/{key}?dc=dc2"), token, b"");
    let r = through_dc1("app/x", &in_dc2);
    ok(&r);
    assert_eq!(r.kv_pairs()[0].value, b"dc2");
    denied(
        &through_dc1("other/x", &in_dc2),
        "'key:read' on \"other/x\"",
    );
    denied(&through_dc1("app/x", ""), "'key:read' on \"app/x\"");
    // dc1 itself does not know the token.
    let r = call(&a, "GET", "/v1/kv/app/x", &in_dc2, b"");
    assert_eq!((r.status, r.text()), (403, "ACL not found".to_string()));
}
