//! `/v1/catalog/*` handler tests: register/deregister, reads, filters,
//! errors and blocking on registration.

use std::time::Duration;

use hyper::{Method, StatusCode};

use super::{call_on, col, json, leaderless, register, seed, state, TestResult};

#[tokio::test]
async fn api_catalog_nodes_services_and_node() -> TestResult {
    let (st, real) = state().await?;
    let r = call_on(&st, Method::GET, "/v1/catalog/services", b"").await?;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "{}"));
    assert_eq!(r.header("x-consul-index"), "1");
    let r = call_on(&st, Method::GET, "/v1/catalog/nodes", b"").await?;
    assert_eq!(r.body, "[]");
    seed(&st).await?;

    let r = call_on(&st, Method::GET, "/v1/catalog/datacenters", b"").await?;
    assert_eq!(r.body, r#"["dc1"]"#);

    let r = call_on(&st, Method::GET, "/v1/catalog/nodes", b"").await?;
    // The third write (SkipNodeUpdate) leaves the nodes table alone.
    assert_eq!(r.header("x-consul-index"), real.at(2));
    assert_eq!(r.header("x-consul-knownleader"), "true");
    assert_eq!(r.header("x-consul-effective-consistency"), "leader");
    let v = json(&r)?;
    assert_eq!(col(&v, "Node"), ["n1", "n2"]);
    assert_eq!(
        v[0].to_string(),
        format!(
            r#"{{"Address":"10.0.0.1","CreateIndex":{0},"Datacenter":"dc1","ID":"","Meta":{{"env":"prod"}},"ModifyIndex":{0},"Node":"n1","TaggedAddresses":{{"lan":"10.0.0.1"}}}}"#,
            real.at(1)
        )
    );
    assert_eq!(v[1]["TaggedAddresses"], serde_json::Value::Null);
    let r = call_on(&st, Method::GET, "/v1/catalog/nodes?node-meta=env:dev", b"").await?;
    assert_eq!(col(&json(&r)?, "Node"), ["n2"]);
    let r = call_on(
        &st,
        Method::GET,
        "/v1/catalog/nodes?node-meta=env:dev&node-meta=x:y",
        b"",
    )
    .await?;
    assert_eq!(r.body, "[]");
    let r = call_on(
        &st,
        Method::GET,
        "/v1/catalog/nodes?filter=Meta.env%20%3D%3D%20prod",
        b"",
    )
    .await?;
    assert_eq!(col(&json(&r)?, "Node"), ["n1"]);

    let r = call_on(&st, Method::GET, "/v1/catalog/services", b"").await?;
    assert_eq!(r.body, r#"{"db":[],"web":["primary","v1"]}"#);
    let r = call_on(
        &st,
        Method::GET,
        "/v1/catalog/services?node-meta=env:dev",
        b"",
    )
    .await?;
    assert_eq!(r.body, r#"{"db":[],"web":["v1"]}"#);
    let r = call_on(
        &st,
        Method::GET,
        "/v1/catalog/services?filter=ServicePort%20%3D%3D%205432",
        b"",
    )
    .await?;
    assert_eq!(r.body, r#"{"db":[]}"#);

    let r = call_on(&st, Method::GET, "/v1/catalog/service/web", b"").await?;
    let v = json(&r)?;
    assert_eq!(col(&v, "ServiceID"), ["web1", "web2"]);
    assert_eq!(v[1]["ServiceEnableTagOverride"], true);
    assert_eq!(
        v[0]["ServiceProxy"],
        serde_json::json!({"Mode":"","MeshGateway":{},"Expose":{}})
    );
    assert_eq!(v[0]["NodeMeta"], serde_json::json!({"env":"prod"}));
    assert!(v[0].get("ServiceTaggedAddresses").is_none());
    let r = call_on(
        &st,
        Method::GET,
        "/v1/catalog/service/web?tag=v1&tag=PRIMARY",
        b"",
    )
    .await?;
    assert_eq!(col(&json(&r)?, "ServiceID"), ["web1"]);
    let r = call_on(
        &st,
        Method::GET,
        "/v1/catalog/service/web?tag=v1&node-meta=env:dev",
        b"",
    )
    .await?;
    assert_eq!(col(&json(&r)?, "ServiceID"), ["web2"]);
    let r = call_on(
        &st,
        Method::GET,
        "/v1/catalog/service/web?filter=%22primary%22%20in%20ServiceTags",
        b"",
    )
    .await?;
    assert_eq!(col(&json(&r)?, "ServiceID"), ["web1"]);
    let r = call_on(&st, Method::GET, "/v1/catalog/service/nope", b"").await?;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "[]"));
    assert!(r.header("x-consul-index") != "<none>");

    let r = call_on(&st, Method::GET, "/v1/catalog/node/N2", b"").await?;
    let v = json(&r)?;
    assert_eq!(v["Node"]["Node"], "n2");
    assert_eq!(v["Services"]["db1"]["Port"], 5432);
    assert_eq!(
        v["Services"]["db1"]["Meta"],
        serde_json::json!({"role":"primary"})
    );
    assert!(v["Services"]["web2"].get("Port").is_none());
    assert_eq!(v["Services"]["web2"]["Tags"], serde_json::json!(["v1"]));
    let r = call_on(
        &st,
        Method::GET,
        "/v1/catalog/node/n2?filter=Service%20%3D%3D%20db",
        b"",
    )
    .await?;
    let v = json(&r)?;
    assert_eq!(v["Services"].as_object().map(|m| m.len()), Some(1));
    let r = call_on(&st, Method::GET, "/v1/catalog/node-services/n2", b"").await?;
    assert_eq!(col(&json(&r)?["Services"], "ID"), ["db1", "web2"]);
    for uri in ["/v1/catalog/node/zz", "/v1/catalog/node-services/zz"] {
        let r = call_on(&st, Method::GET, uri, b"").await?;
        assert_eq!(
            (r.status, r.body.as_str()),
            (StatusCode::OK, "null"),
            "{uri}"
        );
        assert!(r.header("x-consul-index") != "<none>");
    }
    for uri in ["/v1/catalog/connect/web", "/v1/catalog/gateway-services/gw"] {
        let r = call_on(&st, Method::GET, uri, b"").await?;
        assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "[]"), "{uri}");
    }

    // Deregister a check, a service, then a node.
    let r = call_on(
        &st,
        Method::PUT,
        "/v1/catalog/deregister",
        br#"{"Node":"n1","CheckID":"service:web1"}"#,
    )
    .await?;
    assert_eq!(r.body, "true");
    let r = call_on(&st, Method::GET, "/v1/health/node/n1", b"").await?;
    assert_eq!(col(&json(&r)?, "CheckID"), ["serfHealth"]);
    let r = call_on(
        &st,
        Method::PUT,
        "/v1/catalog/deregister",
        br#"{"node":"n2","service_id":"db1"}"#,
    )
    .await?;
    assert_eq!(r.body, "true");
    let r = call_on(
        &st,
        Method::PUT,
        "/v1/catalog/deregister",
        br#"{"Node":"n1"}"#,
    )
    .await?;
    assert_eq!(r.body, "true");
    let r = call_on(&st, Method::GET, "/v1/catalog/services", b"").await?;
    assert_eq!(r.body, r#"{"web":["v1"]}"#);
    // Absent things are a no-op.
    let r = call_on(
        &st,
        Method::PUT,
        "/v1/catalog/deregister",
        br#"{"Node":"ghost"}"#,
    )
    .await?;
    assert_eq!(r.body, "true");
    let r = call_on(&st, Method::GET, "/v1/catalog/nodes", b"").await?;
    assert_eq!(json(&r)?.as_array().map(Vec::len), Some(1), "{}", r.body);
    Ok(())
}

#[tokio::test]
async fn api_catalog_register_errors() -> TestResult {
    let (st, real) = state().await?;
    let cases: &[(Method, &str, &[u8], u16, &str)] = &[
        (
            Method::PUT,
            "/v1/catalog/register",
            b"",
            400,
            "Request decode failed: EOF",
        ),
        (
            Method::PUT,
            "/v1/catalog/register",
            b"{",
            400,
            "Request decode failed: EOF while parsing an object at line 1 column 1",
        ),
        (
            Method::PUT,
            "/v1/catalog/register",
            br#"{"Node":"n","Address":"a","Nope":1}"#,
            400,
            "Request decode failed: json: unknown field \"Nope\"",
        ),
        (
            Method::PUT,
            "/v1/catalog/register",
            br#"{"Node":["n"]}"#,
            400,
            "Request decode failed: invalid type: sequence, expected a string",
        ),
        (
            Method::PUT,
            "/v1/catalog/register",
            br#"{"Node":"n","Address":"a","Check":{"Name":"c","Interval":"5"}}"#,
            400,
            "Request decode failed: time: missing unit in duration \"5\"",
        ),
        (
            Method::PUT,
            "/v1/catalog/register",
            br#"{"Address":"a"}"#,
            500,
            "Must provide node",
        ),
        (
            Method::PUT,
            "/v1/catalog/register",
            br#"{"Node":"n"}"#,
            500,
            "Must provide address if SkipNodeUpdate is not set",
        ),
        (
            Method::PUT,
            "/v1/catalog/register",
            br#"{"Node":"n","Address":"a","Service":{"Service":"s","Address":"0.0.0.0"}}"#,
            500,
            "Invalid service address",
        ),
        (
            Method::PUT,
            "/v1/catalog/register",
            br#"{"Node":"n","Address":"a","Check":{"Name":"c","ServiceID":"nope"}}"#,
            500,
            "Missing service registration",
        ),
        (
            Method::PUT,
            "/v1/catalog/register?dc=dc2",
            br#"{"Node":"n","Address":"a"}"#,
            500,
            "No path to datacenter",
        ),
        (
            Method::PUT,
            "/v1/catalog/deregister",
            br#"{"ServiceID":"x"}"#,
            500,
            "Must provide node",
        ),
        (
            Method::PUT,
            "/v1/catalog/deregister",
            br#"{"Node":"n","Service":"x"}"#,
            400,
            "Request decode failed: json: unknown field \"Service\"",
        ),
        (
            Method::GET,
            "/v1/catalog/register",
            b"",
            405,
            "method GET not allowed",
        ),
        (
            Method::PUT,
            "/v1/catalog/nodes",
            b"",
            405,
            "method PUT not allowed",
        ),
        (
            Method::GET,
            "/v1/catalog/service/",
            b"",
            400,
            "Missing service name",
        ),
        (
            Method::GET,
            "/v1/catalog/node/",
            b"",
            400,
            "Missing node name",
        ),
        (
            Method::GET,
            "/v1/catalog/nodes?filter=Node%20%3D%3D",
            b"",
            400,
            "Failed to create boolean expression evaluator: ",
        ),
        (
            Method::GET,
            "/v1/catalog/nodes?index=x",
            b"",
            400,
            "Invalid index",
        ),
        (
            Method::GET,
            "/v1/catalog/nodes?dc=dc2",
            b"",
            500,
            "No path to datacenter",
        ),
    ];
    for (method, uri, body, status, want) in cases {
        let r = call_on(&st, method.clone(), uri, body).await?;
        assert!(
            r.status.as_u16() == *status && r.body.starts_with(want),
            "{method} {uri} {}: got {} {:?}",
            String::from_utf8_lossy(body),
            r.status,
            r.body
        );
    }
    // The state machine's rejection is a 500 with its message.
    let r = call_on(
        &st,
        Method::PUT,
        "/v1/catalog/register",
        br#"{"Node":"n","Address":"a","Check":{"Name":"c","ServiceID":"nope"}}"#,
    )
    .await?;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (500, "Missing service registration")
    );
    drop((st, real));
    let (st, _real) = leaderless().await?;
    let r = call_on(
        &st,
        Method::PUT,
        "/v1/catalog/register",
        br#"{"Node":"n","Address":"a"}"#,
    )
    .await?;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (500, "No cluster leader")
    );
    let r = call_on(&st, Method::GET, "/v1/catalog/nodes", b"").await?;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (500, "No cluster leader")
    );
    let r = call_on(&st, Method::GET, "/v1/catalog/nodes?stale", b"").await?;
    assert_eq!(
        (r.status.as_u16(), r.header("x-consul-knownleader")),
        (200, "false")
    );
    Ok(())
}

#[tokio::test]
async fn api_catalog_blocking_wakes_on_register() -> TestResult {
    let (st, real) = state().await?;
    seed(&st).await?;
    let r = call_on(&st, Method::GET, "/v1/health/service/web", b"").await?;
    let index: u64 = r.header("x-consul-index").parse()?;
    let st2 = st.clone();
    let waiter = tokio::spawn(async move {
        call_on(
            &st2,
            Method::GET,
            &format!("/v1/health/service/web?index={index}&wait=10s"),
            b"",
        )
        .await
        .map_err(|e| e.to_string())
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Another service does not answer the query.
    register(
        &st,
        r#"{"Node":"n3","Address":"10.0.0.3","Service":{"Service":"other"}}"#,
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished());
    register(
        &st,
        r#"{"Node":"n3","Address":"10.0.0.3","Service":{"Service":"web","ID":"web3"}}"#,
    )
    .await?;
    let r = tokio::time::timeout(Duration::from_secs(5), waiter).await???;
    assert_eq!(r.header("x-consul-index"), real.at(5));
    assert_eq!(json(&r)?.as_array().map(Vec::len), Some(3));
    Ok(())
}
