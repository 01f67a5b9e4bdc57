//! `/v1/health/*` handler tests.

use hyper::{Method, StatusCode};

use super::{call_on, col, json, seed, state, TestResult};

#[tokio::test]
async fn api_health_endpoints() -> TestResult {
    let (st, real) = state().await?;
    seed(&st).await?;
    let r = call_on(&st, Method::GET, "/v1/health/node/n1", b"").await?;
    let v = json(&r)?;
    assert_eq!(col(&v, "CheckID"), ["serfHealth", "service:web1"]);
    assert_eq!(
        v[0].to_string(),
        format!(
            r#"{{"CheckID":"serfHealth","CreateIndex":{0},"Definition":{{}},"ExposedPort":0,"Interval":"","ModifyIndex":{0},"Name":"Serf Health Status","Node":"n1","Notes":"","Output":"","ServiceID":"","ServiceName":"","ServiceTags":[],"Status":"passing","Timeout":"","Type":""}}"#,
            real.at(1)
        )
    );
    assert_eq!(v[1]["Status"], "critical");
    assert_eq!(v[1]["Type"], "http");
    assert_eq!(v[1]["Interval"], "10s");
    assert_eq!(v[1]["Timeout"], "5s");
    assert_eq!(v[1]["ServiceName"], "web");
    assert_eq!(v[1]["ServiceTags"], serde_json::json!(["v1", "primary"]));
    assert_eq!(
        v[1]["Definition"],
        serde_json::json!({"HTTP":"http://10.0.0.1/","Interval":"10s","Timeout":"5s"})
    );
    assert!(r.header("x-consul-index") != "<none>");
    let r = call_on(
        &st,
        Method::GET,
        "/v1/health/node/n1?filter=Status%20%3D%3D%20passing",
        b"",
    )
    .await?;
    assert_eq!(col(&json(&r)?, "CheckID"), ["serfHealth"]);

    let r = call_on(&st, Method::GET, "/v1/health/checks/web", b"").await?;
    assert_eq!(col(&json(&r)?, "CheckID"), ["service:web1"]);
    let r = call_on(
        &st,
        Method::GET,
        "/v1/health/checks/web?node-meta=env:dev",
        b"",
    )
    .await?;
    assert_eq!(r.body, "[]");

    let r = call_on(&st, Method::GET, "/v1/health/service/web", b"").await?;
    let v = json(&r)?;
    assert_eq!(v.as_array().map(Vec::len), Some(2));
    assert_eq!(v[0]["Node"]["Node"], "n1");
    assert_eq!(v[0]["Service"]["ID"], "web1");
    assert_eq!(v[0]["Service"]["Port"], 80);
    assert_eq!(
        col(&v[0]["Checks"], "CheckID"),
        ["serfHealth", "service:web1"]
    );
    assert_eq!(col(&v[1]["Checks"], "CheckID"), ["n2 alive"]);
    for q in ["passing", "passing=1", "passing=true", "passing=T"] {
        let r = call_on(
            &st,
            Method::GET,
            &format!("/v1/health/service/web?{q}"),
            b"",
        )
        .await?;
        let v = json(&r)?;
        assert_eq!(v.as_array().map(Vec::len), Some(1), "{q}");
        assert_eq!(v[0]["Service"]["ID"], "web2", "{q}");
    }
    let r = call_on(
        &st,
        Method::GET,
        "/v1/health/service/web?passing=false",
        b"",
    )
    .await?;
    assert_eq!(json(&r)?.as_array().map(Vec::len), Some(2));
    let r = call_on(&st, Method::GET, "/v1/health/service/web?passing=yes", b"").await?;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (400, "Invalid value for ?passing")
    );
    let r = call_on(
        &st,
        Method::GET,
        "/v1/health/service/web?tag=v1&tag=primary",
        b"",
    )
    .await?;
    let v = json(&r)?;
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    assert_eq!(v[0]["Service"]["ID"], "web1");
    let r = call_on(
        &st,
        Method::GET,
        "/v1/health/service/web?node-meta=env:prod",
        b"",
    )
    .await?;
    assert_eq!(json(&r)?[0]["Service"]["ID"], "web1");
    let r = call_on(
        &st,
        Method::GET,
        "/v1/health/service/web?filter=Checks.Status%20%3D%3D%20critical",
        b"",
    )
    .await?;
    let v = json(&r)?;
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    assert_eq!(v[0]["Service"]["ID"], "web1");
    let r = call_on(&st, Method::GET, "/v1/health/service/web?filter=(((", b"").await?;
    assert_eq!(r.status.as_u16(), 400);
    assert!(
        r.body
            .starts_with("Failed to create boolean expression evaluator: "),
        "{}",
        r.body
    );
    let r = call_on(&st, Method::GET, "/v1/health/service/nope", b"").await?;
    assert_eq!(r.body, "[]");
    let r = call_on(&st, Method::GET, "/v1/health/service/", b"").await?;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (400, "Missing service name")
    );

    let r = call_on(&st, Method::GET, "/v1/health/state/any", b"").await?;
    assert_eq!(json(&r)?.as_array().map(Vec::len), Some(3));
    let r = call_on(&st, Method::GET, "/v1/health/state/critical", b"").await?;
    assert_eq!(col(&json(&r)?, "CheckID"), ["service:web1"]);
    let r = call_on(
        &st,
        Method::GET,
        "/v1/health/state/passing?node-meta=env:dev",
        b"",
    )
    .await?;
    assert_eq!(col(&json(&r)?, "CheckID"), ["n2 alive"]);
    let r = call_on(
        &st,
        Method::GET,
        "/v1/health/state/any?filter=Node%20%3D%3D%20n1",
        b"",
    )
    .await?;
    assert_eq!(col(&json(&r)?, "CheckID"), ["serfHealth", "service:web1"]);
    let r = call_on(&st, Method::GET, "/v1/health/state/bogus", b"").await?;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "[]"));
    let r = call_on(&st, Method::GET, "/v1/health/state/", b"").await?;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (400, "Missing check state")
    );
    for uri in ["/v1/health/connect/web", "/v1/health/ingress/web"] {
        let r = call_on(&st, Method::GET, uri, b"").await?;
        assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "[]"), "{uri}");
    }
    Ok(())
}
