//! ACLs on client agents: a client agent checks the endpoints it answers
//! itself with what a server says the token may do, forwards the rest with
//! the token, syncs its catalog entries with its agent token (a server
//! refuses an agent token it does not know; a new one set with `muster acl
//! set-agent-token` is used and persisted), and while no server answers
//! keeps using earlier answers (`down_policy = "extend-cache"`) past a
//! short `token_ttl`, refusing tokens it never saw.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{muster, request_with_headers, wait_until, Agent, Response};

const ROOT: &str = "99999999-8888-7777-6666-555555555555";
const AGENT_SECRET: &str = "c1-agent-secret";

fn call(a: &Agent, method: &str, path: &str, token: &str, body: &[u8]) -> Response {
    let headers: &[(&str, &str)] = if token.is_empty() {
        &[]
    } else {
        &[("X-Consul-Token", token)]
    };
    request_with_headers(a.addr, method, path, headers, body).expect("request")
}

fn client_config(agent_token: &str) -> String {
    json!({"acl": {"enabled": true, "default_policy": "deny",
        "down_policy": "extend-cache", "token_ttl": "1s",
        "enable_token_persistence": true,
        "tokens": {"agent": agent_token}},
        "services": [{"name": "cache", "port": 6379}]})
    .to_string()
}

#[test]
fn acl_client_agents_enforce_with_the_servers_rules() {
    let config = json!({"acl": {"enabled": true, "default_policy": "deny",
        "tokens": {"initial_management": ROOT}}})
    .to_string();
    let mut s1 = Agent::start_with_config(&["-server", "-bootstrap", "-node", "s1"], true, &config);
    s1.put_as(ROOT, "/v1/acl/policy", &json!({"Name": "c1-agent",
               "Rules": "node \"c1\" { policy = \"write\" }\nservice_prefix \"\" { policy = \"write\" }"}),
    );
    s1.put_as(
        ROOT,
        "/v1/acl/token",
        &json!({"SecretID": AGENT_SECRET, "Policies": [{"Name": "c1-agent"}]}),
    );
    s1.put_as(ROOT, "/v1/acl/policy", &json!({"Name": "web",
               "Rules": "service \"web\" { policy = \"write\" }\nkey_prefix \"app/\" { policy = \"read\" }\n\
                         node_prefix \"\" { policy = \"read\" }"}),
    );
    let web = s1.put_as(
        ROOT,
        "/v1/acl/token",
        &json!({"Policies": [{"Name": "web"}]}),
    )["SecretID"]
        .as_str()
        .expect("SecretID")
        .to_string();
    assert_eq!(call(&s1, "PUT", "/v1/kv/app/x", ROOT, b"1").status, 200);
    assert_eq!(call(&s1, "PUT", "/v1/kv/other/x", ROOT, b"1").status, 200);

    let seed = format!("127.0.0.1:{}", s1.flag("-serf-lan-port").expect("port"));
    let c1 = Agent::start_with_config(
        &["-node", "c1", "-retry-join", &seed],
        true,
        &client_config(AGENT_SECRET),
    );
    // Anti-entropy with the agent token puts c1 in the catalog.
    wait_until("c1 syncs its node", Duration::from_secs(20), || {
        call(&s1, "GET", "/v1/catalog/node/c1", ROOT, b"").json() != Value::Null
    });

    // Its own endpoints, checked on the client with the server's rules.
    let r = call(&c1, "GET", "/v1/agent/self", "", b"");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("'agent:read' on \"c1\""), "{}", r.text());
    assert_eq!(call(&c1, "GET", "/v1/agent/self", ROOT, b"").status, 200);
    let svc = |name: &str| json!({"Name": name, "Port": 80}).to_string();
    let r = call(
        &c1,
        "PUT",
        "/v1/agent/service/register",
        &web,
        svc("web").as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = call(
        &c1,
        "PUT",
        "/v1/agent/service/register",
        &web,
        svc("api").as_bytes(),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.text().contains("'service:write' on \"api\""),
        "{}",
        r.text()
    );
    let r = call(&c1, "GET", "/v1/agent/self", "no-such-token", b"");
    assert_eq!((r.status, r.text()), (403, "ACL not found".to_string()));
    wait_until("web synced from c1", Duration::from_secs(20), || {
        call(&s1, "GET", "/v1/catalog/service/web", ROOT, b"")
            .json()
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["Node"] == "c1"))
    });

    // Forwarded requests carry the token; the server decides.
    assert_eq!(call(&c1, "GET", "/v1/kv/app/x", &web, b"").status, 200);
    let r = call(&c1, "GET", "/v1/kv/other/x", &web, b"");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(call(&c1, "GET", "/v1/kv/app/x", "", b"").status, 403);

    // An agent token the servers do not know: its sync is refused (the
    // leader still lists the node itself, a gossip member, as Consul's
    // does; its services stay out).
    let mut c2 = Agent::start_with_config(
        &["-node", "c2", "-retry-join", &seed],
        true,
        &client_config("bogus-agent-token"),
    );
    wait_until(
        "c2's sync refused for its token",
        Duration::from_secs(20),
        || c2.log().contains("anti-entropy sync failed") && c2.log().contains("ACL not found"),
    );
    let cache = call(&s1, "GET", "/v1/catalog/service/cache", ROOT, b"").json();
    let nodes: Vec<&str> = cache
        .as_array()
        .expect("instances")
        .iter()
        .filter_map(|e| e["Node"].as_str())
        .collect();
    assert_eq!(nodes, ["c1"], "c1's cache synced, c2's refused");

    // A new agent token through the CLI (acl:write, here the servers'
    // management token): c2's sync goes through, and the token, persisted
    // (enable_token_persistence), is the one it syncs with after kill -9.
    s1.put_as(
        ROOT,
        "/v1/acl/token",
        &json!({"SecretID": "c2-agent-secret", "NodeIdentities":
               [{"NodeName": "c2", "Datacenter": "dc1"}],
               "ServiceIdentities": [{"ServiceName": "cache"}]}),
    );
    let out = muster()
        .args(["acl", "set-agent-token", "agent", "c2-agent-secret"])
        .args(["-http-addr", &c2.addr.to_string(), "-token", ROOT])
        .output()
        .expect("muster acl set-agent-token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ACL token \"agent\" set successfully"
    );
    let cache_nodes = || -> Vec<String> {
        call(&s1, "GET", "/v1/catalog/service/cache", ROOT, b"")
            .json()
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["Node"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_until(
        "c2's cache synced with the new token",
        Duration::from_secs(60),
        || cache_nodes().contains(&"c2".to_string()),
    );
    let persisted = c2.data_dir().join("acl-tokens.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&persisted)
            .expect("acl-tokens.json")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    c2.kill();
    let r = call(
        &s1,
        "PUT",
        "/v1/catalog/deregister",
        ROOT,
        br#"{"Node": "c2", "ServiceID": "cache"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!cache_nodes().contains(&"c2".to_string()));
    c2.restart();
    wait_until(
        "c2 syncs again with the persisted token",
        Duration::from_secs(30),
        || cache_nodes().contains(&"c2".to_string()),
    );

    // No server: earlier answers stand (extend-cache) past token_ttl; a
    // token never seen is refused.
    assert_eq!(
        call(&c1, "GET", "/v1/agent/services", &web, b"").status,
        200
    );
    s1.kill();
    std::thread::sleep(Duration::from_millis(1500));
    let r = call(&c1, "GET", "/v1/agent/services", &web, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json().get("web").is_some(), "{}", r.text());
    let r = call(
        &c1,
        "PUT",
        "/v1/agent/service/register",
        &web,
        svc("api").as_bytes(),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let r = call(&c1, "GET", "/v1/agent/services", "never-seen", b"");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("no server could resolve"), "{}", r.text());
}
