//! `/v1/catalog/*` against a real agent (consul-compat.md §2, §3): register
//! and deregister (node, service, checks, `SkipNodeUpdate`, validation,
//! request decoding), the read endpoints with their parameters and shapes,
//! the index rules (§1.1 point 7, §1.2) and a restart. The `muster catalog`
//! commands (§11.3) are in `catalog_cli.rs`, which reuses the helpers here.
//!
//! Other tests may register the agent's own node (and a `consul` service)
//! one day, so assertions look only at the nodes and services a test
//! registered itself, or narrow the listing with `node-meta`.

use serde_json::{json, Value};

use crate::harness::{Agent, Response};

/// A node ID in the shape Consul generates.
pub const ALPHA_ID: &str = "40e4a748-2192-161a-0510-9bf59fe950b5";

/// `PUT /v1/catalog/register` with `body`.
pub fn register(agent: &Agent, body: &Value) -> Response {
    agent.put("/v1/catalog/register", body.to_string().as_bytes())
}

/// Register `body`, expecting 200 `true`.
pub fn register_ok(agent: &Agent, body: &Value) {
    let resp = register(agent, body);
    assert_eq!(resp.status, 200, "register {body}: {}", resp.text());
    assert!(resp.bool(), "register {body} returned false");
}

/// Deregister `body`, expecting 200 `true`.
pub fn deregister_ok(agent: &Agent, body: &Value) {
    let resp = agent.put("/v1/catalog/deregister", body.to_string().as_bytes());
    assert_eq!(resp.status, 200, "deregister {body}: {}", resp.text());
    assert!(resp.bool(), "deregister {body} returned false");
}

/// The registration of service instance `id` of `name` on `node` (address
/// `addr`) with `tags` and one service check `service:<id>` in `status`.
pub fn instance(
    node: &str,
    addr: &str,
    name: &str,
    id: &str,
    tags: &[&str],
    status: &str,
) -> Value {
    json!({
        "Node": node,
        "Address": addr,
        "Service": {"ID": id, "Service": name, "Tags": tags, "Port": 8080},
        "Check": {
            "CheckID": format!("service:{id}"),
            "Name": format!("Service '{name}' check"),
            "Status": status,
            "ServiceID": id,
            "Output": "ok",
        },
    })
}

/// `GET path`, expecting 200 with the read headers of §0.5.
pub fn get_ok(agent: &Agent, path: &str) -> Response {
    let resp = agent.get(path);
    assert_eq!(resp.status, 200, "GET {path}: {}", resp.text());
    assert_read_headers(&resp, path);
    resp
}

/// `X-Consul-Index` ≥ 1, a numeric `X-Consul-LastContact`, a boolean
/// `X-Consul-KnownLeader`, and a JSON content type.
pub fn assert_read_headers(resp: &Response, what: &str) {
    assert!(resp.index() >= 1, "{what}: X-Consul-Index is never 0");
    let contact = resp.header("X-Consul-LastContact");
    assert!(
        contact.is_some_and(|v| v.parse::<u64>().is_ok()),
        "{what}: X-Consul-LastContact {contact:?}"
    );
    let leader = resp.header("X-Consul-KnownLeader");
    assert!(
        matches!(leader, Some("true" | "false")),
        "{what}: X-Consul-KnownLeader {leader:?}"
    );
    assert!(
        resp.header("Content-Type")
            .is_some_and(|v| v.starts_with("application/json")),
        "{what}: Content-Type {:?}",
        resp.header("Content-Type")
    );
}

/// The JSON body as a list.
pub fn list(resp: &Response) -> Vec<Value> {
    match resp.json() {
        Value::Array(items) => items,
        other => panic!("expected a list, got {other}"),
    }
}

/// The string field `field` of each element, in order.
pub fn strings_of(items: &[Value], field: &str) -> Vec<String> {
    items
        .iter()
        .map(|v| {
            v[field]
                .as_str()
                .unwrap_or_else(|| panic!("{field} is not a string in {v}"))
                .to_string()
        })
        .collect()
}

/// `values` without those not in `wanted` (so nodes or
/// services a test did not register are ignored).
pub fn only(values: Vec<String>, wanted: &[&str]) -> Vec<String> {
    values
        .into_iter()
        .filter(|v| wanted.contains(&v.as_str()))
        .collect()
}

/// Two instances of `web` (on alpha and beta), one `db` (on beta), with
/// node metadata, tagged addresses and a node check on alpha.
fn seed(agent: &Agent) {
    register_ok(
        agent,
        &json!({
            "ID": ALPHA_ID,
            "Node": "alpha",
            "Address": "10.0.0.1",
            "Datacenter": "dc1",
            "TaggedAddresses": {"lan": "10.0.0.1", "wan": "198.51.100.1"},
            "NodeMeta": {"rack": "r1", "group": "cat"},
            "Service": {
                "ID": "web1",
                "Service": "web",
                "Tags": ["v1", "primary"],
                "Port": 8080,
                "Meta": {"env": "prod"},
            },
            "Checks": [
                {"CheckID": "mem", "Name": "Memory", "Status": "passing"},
                {"CheckID": "service:web1", "Name": "web1 http", "Status": "passing",
                 "ServiceID": "web1"},
            ],
        }),
    );
    register_ok(
        agent,
        &json!({
            "Node": "beta",
            "Address": "10.0.0.2",
            "NodeMeta": {"rack": "r2", "group": "cat"},
            "Service": {"ID": "web2", "Service": "web", "Tags": ["v2"], "Port": 8081,
                        "Address": "10.0.1.2", "Meta": {"env": "staging"}},
        }),
    );
    register_ok(
        agent,
        &json!({
            "Node": "beta",
            "Address": "10.0.0.2",
            "NodeMeta": {"rack": "r2", "group": "cat"},
            "Service": {"ID": "db1", "Service": "db", "Port": 5432},
        }),
    );
}

#[test]
fn catalog_register_and_read_back_consul_shapes() {
    let agent = Agent::dev();
    seed(&agent);

    let resp = get_ok(&agent, "/v1/catalog/service/web");
    let items = list(&resp);
    assert_eq!(
        strings_of(&items, "ServiceID"),
        ["web1", "web2"],
        "{items:?}"
    );
    let web1 = &items[0];
    assert_eq!(web1["ID"], ALPHA_ID);
    assert_eq!(web1["Node"], "alpha");
    assert_eq!(web1["Address"], "10.0.0.1");
    assert_eq!(web1["Datacenter"], "dc1");
    assert_eq!(web1["TaggedAddresses"]["wan"], "198.51.100.1");
    assert_eq!(web1["NodeMeta"], json!({"rack": "r1", "group": "cat"}));
    assert_eq!(web1["ServiceKind"], "");
    assert_eq!(web1["ServiceName"], "web");
    assert_eq!(web1["ServiceTags"], json!(["v1", "primary"]));
    assert_eq!(web1["ServiceAddress"], "", "empty = use the node's");
    assert_eq!(web1["ServicePort"], 8080);
    assert_eq!(web1["ServiceMeta"], json!({"env": "prod"}));
    assert_eq!(web1["ServiceWeights"], json!({"Passing": 1, "Warning": 1}));
    assert_eq!(web1["ServiceEnableTagOverride"], false);
    let create = web1["CreateIndex"].as_u64().expect("CreateIndex");
    let modify = web1["ModifyIndex"].as_u64().expect("ModifyIndex");
    assert!(create >= 1 && modify >= create, "{web1}");
    assert!(
        resp.index() >= modify,
        "the service index covers its instances"
    );
    assert_eq!(items[1]["ServiceAddress"], "10.0.1.2");
    assert_eq!(items[1]["Address"], "10.0.0.2");

    // A service without tags has `ServiceTags: []`, not null.
    let db = list(&get_ok(&agent, "/v1/catalog/service/db"));
    assert_eq!(db.len(), 1);
    assert_eq!(db[0]["ServiceTags"], json!([]));
    assert_eq!(db[0]["ID"], "", "an externally registered node has no ID");

    // Unknown service: an empty list, not 404.
    assert_eq!(
        list(&get_ok(&agent, "/v1/catalog/service/nope")),
        Vec::<Value>::new()
    );
}

#[test]
fn catalog_node_and_node_services() {
    let agent = Agent::dev();
    seed(&agent);

    let node = get_ok(&agent, "/v1/catalog/node/alpha").json();
    let n = &node["Node"];
    assert_eq!(n["ID"], ALPHA_ID);
    assert_eq!(n["Node"], "alpha");
    assert_eq!(n["Address"], "10.0.0.1");
    assert_eq!(n["Datacenter"], "dc1");
    assert_eq!(
        n["TaggedAddresses"],
        json!({"lan": "10.0.0.1", "wan": "198.51.100.1"})
    );
    assert_eq!(n["Meta"], json!({"rack": "r1", "group": "cat"}));
    assert!(n["CreateIndex"].as_u64().is_some_and(|i| i >= 1));
    let services = node["Services"]
        .as_object()
        .expect("Services is a map by ID");
    assert_eq!(services.keys().collect::<Vec<_>>(), ["web1"]);
    let web1 = &services["web1"];
    assert_eq!(web1["ID"], "web1");
    assert_eq!(web1["Service"], "web");
    assert_eq!(web1["Tags"], json!(["v1", "primary"]));
    assert_eq!(web1["Port"], 8080);
    assert_eq!(web1["Weights"], json!({"Passing": 1, "Warning": 1}));
    assert_eq!(web1["Meta"], json!({"env": "prod"}));
    assert_eq!(web1["EnableTagOverride"], false);
    assert!(
        web1.get("Kind").is_none(),
        "Kind is omitted when empty: {web1}"
    );

    // Node names match case-insensitively.
    let upper = get_ok(&agent, "/v1/catalog/node/ALPHA").json();
    assert_eq!(upper["Node"]["Node"], "alpha");

    // Unknown node: 200 with a `null` body.
    let unknown = get_ok(&agent, "/v1/catalog/node/nowhere");
    assert_eq!(unknown.json(), Value::Null, "{}", unknown.text());

    // node-services: the same node, services as a list.
    let ns = get_ok(&agent, "/v1/catalog/node-services/beta").json();
    assert_eq!(ns["Node"]["Node"], "beta");
    let list = ns["Services"].as_array().expect("Services is a list");
    let mut ids = strings_of(list, "ID");
    ids.sort();
    assert_eq!(ids, ["db1", "web2"]);
    let db1 = list.iter().find(|s| s["ID"] == "db1").expect("db1");
    assert_eq!(db1["Tags"], json!([]));

    // filter on node/:n applies to each service.
    let filtered = get_ok(
        &agent,
        "/v1/catalog/node-services/beta?filter=Port%20%3D%3D%205432",
    )
    .json();
    assert_eq!(
        strings_of(filtered["Services"].as_array().expect("list"), "ID"),
        ["db1"]
    );
}

#[test]
fn catalog_datacenters_nodes_and_services() {
    let agent = Agent::dev();
    seed(&agent);

    let dcs = agent.get("/v1/catalog/datacenters");
    assert_eq!(dcs.status, 200);
    assert_eq!(dcs.json(), json!(["dc1"]));

    let nodes = get_ok(&agent, "/v1/catalog/nodes");
    let all = list(&nodes);
    assert_eq!(
        only(strings_of(&all, "Node"), &["alpha", "beta"]),
        ["alpha", "beta"]
    );
    let alpha = all.iter().find(|n| n["Node"] == "alpha").expect("alpha");
    assert_eq!(alpha["ID"], ALPHA_ID);
    assert_eq!(alpha["Meta"]["rack"], "r1");
    let modify = alpha["ModifyIndex"].as_u64().expect("ModifyIndex");
    assert!(nodes.index() >= modify);

    // node-meta (repeatable, all must match) and filter.
    let r2 = list(&get_ok(&agent, "/v1/catalog/nodes?node-meta=rack:r2"));
    assert_eq!(strings_of(&r2, "Node"), ["beta"]);
    let both = list(&get_ok(
        &agent,
        "/v1/catalog/nodes?node-meta=group:cat&node-meta=rack:r1",
    ));
    assert_eq!(strings_of(&both, "Node"), ["alpha"]);
    let none = list(&get_ok(
        &agent,
        "/v1/catalog/nodes?node-meta=group:cat&node-meta=rack:r9",
    ));
    assert!(none.is_empty(), "{none:?}");
    let filtered = list(&get_ok(
        &agent,
        "/v1/catalog/nodes?filter=Meta.rack%20%3D%3D%20r1%20or%20Address%20%3D%3D%20%2210.0.0.2%22",
    ));
    assert_eq!(
        only(strings_of(&filtered, "Node"), &["alpha", "beta"]),
        ["alpha", "beta"]
    );
    let filtered = list(&get_ok(
        &agent,
        "/v1/catalog/nodes?filter=Node%20matches%20%22%5Eal%22",
    ));
    assert_eq!(strings_of(&filtered, "Node"), ["alpha"]);

    // services: name → deduplicated union of tags; `[]` for none.
    let services = get_ok(&agent, "/v1/catalog/services").json();
    let mut web_tags: Vec<String> = services["web"]
        .as_array()
        .expect("web's tags")
        .iter()
        .map(|t| t.as_str().expect("tag").to_string())
        .collect();
    web_tags.sort();
    assert_eq!(web_tags, ["primary", "v1", "v2"]);
    assert_eq!(services["db"], json!([]));
    let r2 = get_ok(&agent, "/v1/catalog/services?node-meta=rack:r2").json();
    assert!(r2.get("db").is_some() && r2.get("web").is_some(), "{r2}");
    let r1 = get_ok(&agent, "/v1/catalog/services?node-meta=rack:r1").json();
    assert_eq!(r1.as_object().map(|o| o.len()), Some(1), "{r1}");
    assert!(r1.get("web").is_some(), "{r1}");
    // Nothing matches: `{}`, never `null` or `[]`.
    let empty = get_ok(&agent, "/v1/catalog/services?node-meta=rack:nowhere");
    assert_eq!(empty.json(), json!({}), "{}", empty.text());
}

#[test]
fn catalog_service_tags_node_meta_and_filter() {
    let agent = Agent::dev();
    seed(&agent);
    register_ok(
        &agent,
        &instance(
            "gamma",
            "10.0.0.3",
            "web",
            "web3",
            &["v1", "canary"],
            "passing",
        ),
    );

    let ids = |path: &str| strings_of(&list(&get_ok(&agent, path)), "ServiceID");
    assert_eq!(ids("/v1/catalog/service/web?tag=v1"), ["web1", "web3"]);
    // Repeated `tag`: the instance must carry all of them.
    assert_eq!(ids("/v1/catalog/service/web?tag=v1&tag=canary"), ["web3"]);
    assert!(ids("/v1/catalog/service/web?tag=v1&tag=v2").is_empty());
    assert_eq!(ids("/v1/catalog/service/web?node-meta=rack:r2"), ["web2"]);
    assert_eq!(
        ids("/v1/catalog/service/web?filter=ServiceMeta.env%20%3D%3D%20prod"),
        ["web1"]
    );
    assert_eq!(
        ids("/v1/catalog/service/web?filter=%22canary%22%20in%20ServiceTags"),
        ["web3"]
    );
    // filter combines with tag (AND).
    assert_eq!(
        ids("/v1/catalog/service/web?tag=v1&filter=Node%20%21%3D%20alpha"),
        ["web3"]
    );
}

#[test]
fn catalog_register_checks_and_skip_node_update() {
    let agent = Agent::dev();
    register_ok(
        &agent,
        &json!({
            "Node": "n1",
            "Address": "10.1.0.1",
            "NodeMeta": {"k": "v"},
            "Service": {"Service": "api", "Tags": ["t"]},
            "Checks": [
                {"Name": "disk"},
                {"Name": "api-alive", "ServiceID": "api", "Status": "passing"},
            ],
        }),
    );
    let checks = list(&get_ok(&agent, "/v1/health/node/n1"));
    assert_eq!(
        strings_of(&checks, "CheckID"),
        ["api-alive", "disk"],
        "CheckID defaults to Name"
    );
    let disk = &checks[1];
    assert_eq!(disk["Status"], "critical", "Status defaults to critical");
    assert_eq!(disk["Node"], "n1");
    assert_eq!(disk["ServiceID"], "");
    assert_eq!(disk["ServiceTags"], json!([]));
    let alive = &checks[0];
    assert_eq!(alive["ServiceName"], "api", "copied from the instance");
    assert_eq!(alive["ServiceTags"], json!(["t"]));
    // The service ID defaulted to its name.
    let api = list(&get_ok(&agent, "/v1/catalog/service/api"));
    assert_eq!(strings_of(&api, "ServiceID"), ["api"]);

    // SkipNodeUpdate: the node keeps its fields, the service is added.
    let node_before = get_ok(&agent, "/v1/catalog/node/n1").json()["Node"].clone();
    register_ok(
        &agent,
        &json!({
            "Node": "n1",
            "Address": "10.9.9.9",
            "NodeMeta": {"other": "x"},
            "SkipNodeUpdate": true,
            "Service": {"ID": "extra", "Service": "extra"},
        }),
    );
    let after = get_ok(&agent, "/v1/catalog/node/n1").json();
    assert_eq!(
        after["Node"], node_before,
        "SkipNodeUpdate leaves the node alone"
    );
    assert!(after["Services"].get("extra").is_some(), "{after}");
    // Without an address, too; and a missing node is still created.
    register_ok(
        &agent,
        &json!({"Node": "n1", "SkipNodeUpdate": true, "Service": {"Service": "more"}}),
    );
    assert!(get_ok(&agent, "/v1/catalog/node/n1").json()["Services"]
        .get("more")
        .is_some());
    register_ok(
        &agent,
        &json!({"Node": "fresh", "Address": "10.1.0.2", "SkipNodeUpdate": true}),
    );
    let fresh = get_ok(&agent, "/v1/catalog/node/fresh").json();
    assert_eq!(fresh["Node"]["Address"], "10.1.0.2", "{fresh}");
}

#[test]
fn catalog_deregister_check_service_and_node() {
    let agent = Agent::dev();
    seed(&agent);
    register_ok(
        &agent,
        &json!({"Node": "beta", "Address": "10.0.0.2", "NodeMeta": {"rack": "r2", "group": "cat"},
        "Checks": [
            {"CheckID": "service:db1", "Name": "db", "ServiceID": "db1", "Status": "passing"},
            {"CheckID": "db-extra", "Name": "db extra", "ServiceID": "db1", "Status": "passing"},
            {"CheckID": "beta-node", "Name": "node", "Status": "passing"},
        ]}),
    );
    let check_ids = |node: &str| {
        strings_of(
            &list(&get_ok(&agent, &format!("/v1/health/node/{node}"))),
            "CheckID",
        )
    };
    assert_eq!(check_ids("beta"), ["beta-node", "db-extra", "service:db1"]);

    // A check only.
    deregister_ok(&agent, &json!({"Node": "beta", "CheckID": "db-extra"}));
    assert_eq!(check_ids("beta"), ["beta-node", "service:db1"]);
    assert_eq!(
        list(&get_ok(&agent, "/v1/catalog/service/db")).len(),
        1,
        "the service stays"
    );

    // A service and all its checks.
    deregister_ok(&agent, &json!({"Node": "beta", "ServiceID": "db1"}));
    assert!(list(&get_ok(&agent, "/v1/catalog/service/db")).is_empty());
    assert_eq!(check_ids("beta"), ["beta-node"]);
    assert!(get_ok(&agent, "/v1/catalog/services")
        .json()
        .get("db")
        .is_none());
    let beta = get_ok(&agent, "/v1/catalog/node/beta").json();
    assert_eq!(
        beta["Services"].as_object().map(|s| s.len()),
        Some(1),
        "web2 stays: {beta}"
    );

    // Absent things: a successful no-op.
    deregister_ok(&agent, &json!({"Node": "beta", "ServiceID": "db1"}));
    deregister_ok(&agent, &json!({"Node": "beta", "CheckID": "nope"}));
    deregister_ok(&agent, &json!({"Node": "nowhere"}));

    // The whole node: its services and checks go too.
    deregister_ok(&agent, &json!({"Node": "beta"}));
    assert_eq!(get_ok(&agent, "/v1/catalog/node/beta").json(), Value::Null);
    assert!(list(&get_ok(&agent, "/v1/health/node/beta")).is_empty());
    assert_eq!(
        strings_of(&list(&get_ok(&agent, "/v1/catalog/service/web")), "Node"),
        ["alpha"]
    );
    let nodes = strings_of(&list(&get_ok(&agent, "/v1/catalog/nodes")), "Node");
    assert_eq!(only(nodes, &["alpha", "beta"]), ["alpha"]);
}

#[test]
fn catalog_register_decodes_lowercase_and_snake_case_fields() {
    let agent = Agent::dev();
    // python-consul style: every field name lowercase.
    register_ok(
        &agent,
        &json!({
            "node": "py",
            "address": "10.2.0.1",
            "nodemeta": {"client": "python"},
            "service": {"id": "py1", "service": "pysvc", "tags": ["a"], "port": 9000,
                        "enabletagoverride": true},
            "check": {"checkid": "py-check", "name": "py check", "status": "passing",
                      "serviceid": "py1"},
        }),
    );
    let svc = list(&get_ok(&agent, "/v1/catalog/service/pysvc"));
    assert_eq!(svc.len(), 1, "{svc:?}");
    assert_eq!(svc[0]["ServiceID"], "py1");
    assert_eq!(svc[0]["ServicePort"], 9000);
    assert_eq!(svc[0]["ServiceEnableTagOverride"], true);
    assert_eq!(svc[0]["NodeMeta"], json!({"client": "python"}));
    let checks = list(&get_ok(&agent, "/v1/health/checks/pysvc"));
    assert_eq!(strings_of(&checks, "CheckID"), ["py-check"]);
    assert_eq!(checks[0]["Status"], "passing");

    // snake_case aliases inside service and check definitions.
    register_ok(
        &agent,
        &json!({
            "Node": "snake",
            "Address": "10.2.0.2",
            "Service": {"ID": "s1", "Service": "snakesvc", "enable_tag_override": true,
                        "tagged_addresses": {"lan": {"Address": "10.2.0.20", "Port": 1}}},
            "Check": {"CheckID": "s1-check", "Name": "c", "service_id": "s1", "Status": "warning"},
        }),
    );
    let svc = list(&get_ok(&agent, "/v1/catalog/service/snakesvc"));
    assert_eq!(svc[0]["ServiceEnableTagOverride"], true);
    assert_eq!(
        svc[0]["ServiceTaggedAddresses"]["lan"],
        json!({"Address": "10.2.0.20", "Port": 1})
    );
    let checks = list(&get_ok(&agent, "/v1/health/checks/snakesvc"));
    assert_eq!(strings_of(&checks, "ServiceID"), ["s1"]);

    // PascalCase wins over its snake_case alias.
    register_ok(
        &agent,
        &json!({
            "Node": "snake",
            "Address": "10.2.0.2",
            "Service": {"ID": "s2", "Service": "both", "enable_tag_override": false,
                        "EnableTagOverride": true},
        }),
    );
    let svc = list(&get_ok(&agent, "/v1/catalog/service/both"));
    assert_eq!(svc[0]["ServiceEnableTagOverride"], true);
}

#[test]
fn catalog_register_rejects_bad_bodies() {
    let agent = Agent::dev();
    // Unknown field, at the top and nested: 400 `Request decode failed`.
    for body in [
        json!({"Node": "x", "Address": "10.0.0.1", "Bogus": 1}),
        json!({"Node": "x", "Address": "10.0.0.1", "Service": {"Service": "s", "Bogus": 1}}),
        json!({"Node": "x", "Address": "10.0.0.1", "Check": {"Name": "c", "Bogus": 1}}),
    ] {
        let resp = register(&agent, &body);
        assert_eq!(resp.status, 400, "{body}: {}", resp.text());
        assert!(
            resp.text().contains("Request decode failed"),
            "{}",
            resp.text()
        );
        assert!(
            resp.text().contains("Bogus"),
            "names the field: {}",
            resp.text()
        );
    }
    let broken = agent.put("/v1/catalog/register", b"{\"Node\":");
    assert_eq!(broken.status, 400, "{}", broken.text());
    assert!(
        broken.text().contains("Request decode failed"),
        "{}",
        broken.text()
    );

    // Validation: 500 with Consul's message.
    let resp = register(&agent, &json!({"Address": "10.0.0.1"}));
    assert_eq!(resp.status, 500, "{}", resp.text());
    assert!(resp.text().contains("Must provide node"), "{}", resp.text());
    let resp = register(&agent, &json!({"Node": "x"}));
    assert_eq!(resp.status, 500, "{}", resp.text());
    assert!(
        resp.text()
            .contains("Must provide address if SkipNodeUpdate is not set"),
        "{}",
        resp.text()
    );
    let resp = register(
        &agent,
        &json!({"Node": "x", "Address": "10.0.0.1",
                "Check": {"Name": "orphan", "ServiceID": "not-here"}}),
    );
    assert_eq!(resp.status, 500, "{}", resp.text());
    assert!(
        resp.text().contains("Missing service registration"),
        "{}",
        resp.text()
    );
    for (body, message) in [
        (
            json!({"Node": "x", "Address": "10.0.0.1",
                   "Service": {"Service": "s", "Address": "0.0.0.0"}}),
            "Invalid service address",
        ),
        (
            json!({"ID": "not-a-uuid", "Node": "x", "Address": "10.0.0.1"}),
            "Bad node ID",
        ),
        (
            json!({"Node": "x", "Address": "10.0.0.1", "Service": {"ID": "s"}}),
            "",
        ),
    ] {
        let resp = register(&agent, &body);
        assert_eq!(resp.status, 500, "{body}: {}", resp.text());
        assert!(resp.text().contains(message), "{body}: {}", resp.text());
    }
    // Nothing of a rejected registration was applied.
    assert!(list(&get_ok(&agent, "/v1/health/node/x")).is_empty());

    // Reads: a bad filter is a 400 with the parser's message.
    for path in [
        "/v1/catalog/nodes?filter=Node%20%3D%3D",
        "/v1/catalog/service/web?filter=%28Node",
        "/v1/catalog/services?filter=Node%20~%20x",
    ] {
        let resp = agent.get(path);
        assert_eq!(resp.status, 400, "{path}: {}", resp.text());
        assert!(!resp.text().trim().is_empty(), "{path}: a message");
    }
    // Missing path parameters.
    let resp = agent.get("/v1/catalog/service/");
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert!(
        resp.text().contains("Missing service name"),
        "{}",
        resp.text()
    );
    let resp = agent.get("/v1/catalog/node/");
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert!(resp.text().contains("Missing node name"), "{}", resp.text());
}

#[test]
fn catalog_identical_registration_does_not_advance_indexes() {
    let agent = Agent::dev();
    let body = instance("n1", "10.3.0.1", "web", "web1", &["v1"], "passing");
    register_ok(&agent, &body);
    let service = get_ok(&agent, "/v1/catalog/service/web");
    let nodes = get_ok(&agent, "/v1/catalog/nodes").index();
    let services = get_ok(&agent, "/v1/catalog/services").index();
    let health = get_ok(&agent, "/v1/health/service/web").index();

    register_ok(&agent, &body);
    let again = get_ok(&agent, "/v1/catalog/service/web");
    assert_eq!(
        again.index(),
        service.index(),
        "an identical registration changes nothing"
    );
    assert_eq!(again.json(), service.json(), "not even ModifyIndex");
    assert_eq!(get_ok(&agent, "/v1/catalog/nodes").index(), nodes);
    assert_eq!(get_ok(&agent, "/v1/catalog/services").index(), services);
    assert_eq!(get_ok(&agent, "/v1/health/service/web").index(), health);

    // A real change does advance it.
    register_ok(
        &agent,
        &instance("n1", "10.3.0.1", "web", "web1", &["v2"], "passing"),
    );
    assert!(get_ok(&agent, "/v1/catalog/service/web").index() > service.index());
}

#[test]
fn catalog_survives_a_restart_with_indexes_intact() {
    let mut agent = Agent::durable();
    seed(&agent);
    deregister_ok(&agent, &json!({"Node": "beta", "ServiceID": "db1"}));
    let paths = [
        "/v1/catalog/service/web",
        "/v1/catalog/service/db",
        "/v1/catalog/node/alpha",
        "/v1/catalog/node/beta",
        "/v1/health/service/web",
        "/v1/health/node/alpha",
        "/v1/catalog/nodes",
        "/v1/catalog/services",
        "/v1/health/state/any",
    ];
    let before: Vec<Response> = paths.iter().map(|p| get_ok(&agent, p)).collect();

    agent.restart();

    for (path, old) in paths.iter().zip(&before) {
        let new = get_ok(&agent, path);
        assert!(
            new.index() >= old.index(),
            "{path}: index went backwards across a restart: {} < {}",
            new.index(),
            old.index()
        );
    }
    // The views of what this test registered are identical.
    for (path, old) in paths.iter().zip(&before).take(6) {
        assert_eq!(get_ok(&agent, path).json(), old.json(), "{path}");
    }
    let db_index = before[1].index();
    register_ok(
        &agent,
        &instance("gamma", "10.0.0.3", "web", "web3", &[], "passing"),
    );
    assert!(get_ok(&agent, "/v1/catalog/service/web").index() > db_index);
    assert!(list(&get_ok(&agent, "/v1/catalog/service/db")).is_empty());
}
