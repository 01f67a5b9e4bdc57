//! Prepared queries (`/v1/query`) as a Consul user drives them: create,
//! list, read, update, delete through the log (and surviving a restart),
//! Consul's errors; execute with `OnlyPassing`, `Tags` and `!tag`,
//! `NodeMeta`, `limit`; templates (`name_prefix_match`, `${name.suffix}`,
//! `${match(N)}`) over HTTP, `explain` and DNS (`<name>.query.consul`,
//! `DNS.TTL`); and failover: with every instance in dc1 critical,
//! `web.query.consul` answers dc2's instances, and dc1's again when they
//! recover.

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::{json, Value};

use crate::dns::{a_addrs, dns_addr, udp};
use crate::federation::register_web;
use crate::harness::{wait_until, Agent};

fn create(a: &Agent, body: &Value) -> String {
    let r = a.request("POST", "/v1/query", body.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["ID"].as_str().expect("ID").to_string()
}

fn execute(a: &Agent, name: &str) -> Value {
    let r = a.get(&format!("/v1/query/{name}/execute"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.index() > 0, "X-Consul-Index");
    r.json()
}

/// The `Service.ID`s of an execute answer, sorted.
fn ids(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v["Nodes"]
        .as_array()
        .map(|n| {
            n.iter()
                .filter_map(|e| e["Service"]["ID"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// dc1's one instance `web-a1` on node `web-a1` (127.0.0.36), its check
/// in `status`.
fn set_check(a: &Agent, status: &str) {
    register_web(a, "web-a1", "127.0.0.36", "web-a1", status);
}

#[test]
fn prepared_queries_crud_execute_templates_and_dns() {
    let mut a = Agent::durable();
    register_web(&a, "n1", "127.0.0.31", "web-1", "passing");
    register_web(&a, "n2", "127.0.0.32", "web-2", "warning");
    register_web(&a, "n3", "127.0.0.33", "web-3", "critical");
    let r = a.put(
        "/v1/catalog/register",
        json!({"Node": "n2", "Address": "127.0.0.32",
               "Service": {"ID": "web-2", "Service": "web", "Port": 8080, "Tags": ["v2"]}})
        .to_string()
        .as_bytes(),
    );
    assert_eq!(r.status, 200);

    // Errors in Consul's codes and words.
    let r = a.request("POST", "/v1/query", b"{nope");
    assert_eq!(r.status, 400, "{}", r.text());
    let r = a.request("POST", "/v1/query", br#"{"Name":"x"}"#);
    assert_eq!(
        (r.status, r.text()),
        (500, "Must provide a Service name to query".into())
    );
    assert_eq!(a.get("/v1/query/nope").status, 404);
    assert_eq!(a.get("/v1/query/nope/execute").status, 404);

    let web = create(
        &a,
        &json!({"Name": "web", "Service": {"Service": "web"},
                                 "DNS": {"TTL": "7s"}}),
    );
    let r = a.request(
        "POST",
        "/v1/query",
        br#"{"Name":"web","Service":{"Service":"web"}}"#,
    );
    assert_eq!(r.status, 500);
    assert!(
        r.text().contains("aliases an existing query name"),
        "{}",
        r.text()
    );
    let listed = a.get("/v1/query").json();
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    let read = a.get(&format!("/v1/query/{web}")).json();
    assert_eq!(read[0]["Name"], "web");
    assert_eq!(read[0]["Service"]["Service"], "web");
    assert!(read[0]["CreateIndex"].as_u64() > Some(0));

    // Critical never; warning unless OnlyPassing; by ID or by name.
    assert_eq!(ids(&execute(&a, "web")), ["web-1", "web-2"]);
    assert_eq!(ids(&execute(&a, &web)), ["web-1", "web-2"]);
    let out = execute(&a, "web");
    assert_eq!(
        (out["Service"].clone(), out["Datacenter"].clone()),
        (json!("web"), json!("dc1"))
    );
    assert_eq!(out["DNS"]["TTL"], "7s");
    assert_eq!(out["Failovers"], 0);
    let upd = json!({"Name": "web", "Service": {"Service": "web", "OnlyPassing": true}});
    assert_eq!(
        a.put(&format!("/v1/query/{web}"), upd.to_string().as_bytes())
            .status,
        200
    );
    assert_eq!(ids(&execute(&a, "web")), ["web-1"]);
    assert_eq!(
        a.get("/v1/query/web/execute?limit=1").json()["Nodes"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // Tags with exclusions, node meta.
    create(
        &a,
        &json!({"Name": "not-v2", "Service": {"Service": "web", "Tags": ["!v2"]}}),
    );
    assert_eq!(ids(&execute(&a, "not-v2")), ["web-1"]);
    create(
        &a,
        &json!({"Name": "v2", "Service": {"Service": "web", "Tags": ["v2"]}}),
    );
    assert_eq!(ids(&execute(&a, "v2")), ["web-2"]);

    // A template: any name under "svc-" asks for the service after it.
    create(
        &a,
        &json!({"Name": "svc-", "Template": {"Type": "name_prefix_match"},
                       "Service": {"Service": "${name.suffix}"}}),
    );
    create(
        &a,
        &json!({"Name": "re-", "Template": {"Type": "name_prefix_match",
                       "Regexp": "^re-(.+)-v(\\d)$"},
                       "Service": {"Service": "${match(1)}", "Tags": ["v${match(2)}"]}}),
    );
    assert_eq!(ids(&execute(&a, "svc-web")), ["web-1", "web-2"]);
    assert_eq!(ids(&execute(&a, "re-web-v2")), ["web-2"]);
    let explained = a.get("/v1/query/re-web-v2/explain").json();
    assert_eq!(explained["Query"]["Service"]["Service"], "web");
    assert_eq!(explained["Query"]["Service"]["Tags"], json!(["v2"]));
    assert_eq!(
        a.get("/v1/query/svc-nothing/execute").json()["Nodes"],
        json!([])
    );

    // DNS: names run the query; its TTL applies.
    let dns = dns_addr(&a);
    let (_, m) = udp(dns, "svc-web.query.consul", RecordType::A);
    let both = ["127.0.0.31", "127.0.0.32"]
        .iter()
        .map(|s| s.parse().expect("ip"))
        .collect();
    assert_eq!(a_addrs(&m.answers), both);
    create(
        &a,
        &json!({"Name": "ttl", "Service": {"Service": "web"}, "DNS": {"TTL": "7s"}}),
    );
    let (_, m) = udp(dns, "ttl.query.consul", RecordType::A);
    assert!(
        !m.answers.is_empty() && m.answers.iter().all(|r| r.ttl == 7),
        "{:?}",
        m.answers
    );
    let (_, m) = udp(dns, "missing.query.consul", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

    // A query with a session goes when the session does; an unknown
    // session is refused.
    let r = a.request(
        "POST",
        "/v1/query",
        br#"{"Name":"s","Session":"nope","Service":{"Service":"web"}}"#,
    );
    assert_eq!(
        (r.status, r.text()),
        (500, r#"invalid session "nope""#.into())
    );
    let session = a.session_create(&json!({"Name": "q", "TTL": "0s"}));
    let linked = create(
        &a,
        &json!({"Name": "linked", "Session": session, "Service": {"Service": "web"}}),
    );
    assert_eq!(a.get(&format!("/v1/query/{linked}")).status, 200);
    assert_eq!(
        a.put(&format!("/v1/session/destroy/{session}"), b"").status,
        200
    );
    assert_eq!(a.get(&format!("/v1/query/{linked}")).status, 404);

    // Stored through the log: there after kill -9; delete.
    a.kill();
    a.restart();
    assert_eq!(ids(&execute(&a, "web")), ["web-1"]);
    assert_eq!(a.delete(&format!("/v1/query/{web}")).status, 200);
    assert_eq!(a.get(&format!("/v1/query/{web}")).status, 404);
    assert_eq!(a.get("/v1/query").json().as_array().map(Vec::len), Some(5));
}

#[test]
fn prepared_query_fails_over_to_the_other_datacenter_and_back() {
    let a = Agent::start(
        &["-server", "-bootstrap", "-node", "fa", "-datacenter", "dc1"],
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
            "fb",
            "-datacenter",
            "dc2",
            "-retry-join-wan",
            &seed,
        ],
        true,
    );
    wait_until("both datacenters known", Duration::from_secs(20), || {
        a.get("/v1/catalog/datacenters").json() == json!(["dc1", "dc2"])
    });
    set_check(&a, "passing");
    register_web(&b, "web-b1", "127.0.0.41", "web-b1", "passing");
    create(
        &a,
        &json!({"Name": "web", "Service": {"Service": "web",
                       "Failover": {"NearestN": 1, "Datacenters": ["dc2"]}}}),
    );
    let dns = dns_addr(&a);
    let out = execute(&a, "web");
    assert_eq!(
        (ids(&out), out["Datacenter"].clone()),
        (vec!["web-a1".to_string()], json!("dc1"))
    );

    // Every dc1 instance critical: dc2 answers, over HTTP and DNS.
    set_check(&a, "critical");
    let out = execute(&a, "web");
    assert_eq!(ids(&out), ["web-b1"]);
    assert_eq!(
        (out["Datacenter"].clone(), out["Failovers"].clone()),
        (json!("dc2"), json!(1))
    );
    let (_, m) = udp(dns, "web.query.consul", RecordType::A);
    assert_eq!(
        a_addrs(&m.answers),
        ["127.0.0.41".parse().expect("ip")].into()
    );
    let (_, m) = udp(dns, "web.query.consul", RecordType::SRV);
    let targets: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            hickory_proto::rr::RData::SRV(s) => Some(s.target.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(targets, ["web-b1.node.dc2.consul."], "targets name dc2");

    // dc1 recovers: answered at home again.
    set_check(&a, "passing");
    let out = execute(&a, "web");
    assert_eq!(
        (ids(&out), out["Datacenter"].clone()),
        (vec!["web-a1".to_string()], json!("dc1"))
    );
    let (_, m) = udp(dns, "web.query.consul", RecordType::A);
    assert_eq!(
        a_addrs(&m.answers),
        ["127.0.0.36".parse().expect("ip")].into()
    );
}
