//! `PUT /v1/txn` handler tests: write and read-only transactions, rollback,
//! result shapes (KV values, catalog records), session deletes, limits and
//! decode errors.

use hyper::{Method, StatusCode};
use serde_json::Value;

use super::{call_on, call_with, json, leaderless, seed, state, Reply, TestResult, TestState};

fn status_body(r: &Reply) -> (u16, &str) {
    (r.status.as_u16(), r.body.as_str())
}

async fn txn(st: &TestState, body: &'static str) -> Result<Reply, Box<dyn std::error::Error>> {
    call_on(st, Method::PUT, "/v1/txn", body.as_bytes()).await
}

#[tokio::test]
async fn api_txn_write_read_and_rollback() -> TestResult {
    let (st, real) = state().await?;
    let r = txn(
        &st,
        r#"[{"KV":{"Verb":"set","Key":"a","Value":"aGk=","Flags":7}},
            {"KV":{"Verb":"get","Key":"a"}},
            {"KV":{"Verb":"delete","Key":"zz"}},
            {"kv":{"verb":"cas","key":"b","value":"eA==","index":0}}]"#,
    )
    .await?;
    assert_eq!(
        status_body(&r),
        (
            200,
            format!(
                r#"{{"Results":[{{"KV":{{"LockIndex":0,"Key":"a","Flags":7,"Value":null,"CreateIndex":{0},"ModifyIndex":{0}}}}},{{"KV":{{"LockIndex":0,"Key":"a","Flags":7,"Value":"aGk=","CreateIndex":{0},"ModifyIndex":{0}}}}},{{"KV":{{"LockIndex":0,"Key":"b","Flags":0,"Value":null,"CreateIndex":{0},"ModifyIndex":{0}}}}}],"Errors":null}}"#,
                real.at(1)
            )
            .as_str()
        )
    );
    assert_eq!(r.header("x-consul-index"), "<none>");
    // Read-only: not proposed, no index header, leader headers set.
    let before = real.next_index();
    let r = txn(
        &st,
        r#"[{"KV":{"Verb":"get-tree","Key":""}},{"KV":{"Verb":"check-not-exists","Key":"c"}}]"#,
    )
    .await?;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(real.next_index(), before, "a read-only txn was proposed");
    let v = json(&r)?;
    assert_eq!(v["Results"][0]["KV"]["Value"], "aGk=");
    assert_eq!(v["Results"][1]["KV"]["Key"], "b");
    assert_eq!(v["Results"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        (
            r.header("x-consul-index"),
            r.header("x-consul-knownleader"),
            r.header("x-consul-lastcontact")
        ),
        ("<none>", "true", "0")
    );

    // Any failure rolls the whole transaction back: 409, nothing applied.
    let r = txn(
        &st,
        r#"[{"KV":{"Verb":"set","Key":"c","Value":"eA=="}},{"KV":{"Verb":"cas","Key":"a","Index":999}}]"#,
    )
    .await?;
    assert_eq!(
        status_body(&r),
        (
            409,
            r#"{"Results":null,"Errors":[{"OpIndex":1,"What":"failed to set key \"a\", index is stale"}]}"#
        )
    );
    let r = call_on(&st, Method::GET, "/v1/kv/c", b"").await?;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = txn(&st, r#"[{"KV":{"Verb":"get","Key":"nope"}}]"#).await?;
    assert_eq!(
        status_body(&r),
        (
            409,
            r#"{"Results":null,"Errors":[{"OpIndex":0,"What":"key \"nope\" doesn't exist"}]}"#
        )
    );
    // Only deletes: no results.
    let r = txn(&st, r#"[{"KV":{"Verb":"delete-tree","Key":""}}]"#).await?;
    assert_eq!(status_body(&r), (200, r#"{"Results":[],"Errors":null}"#));

    // Without a leader: default reads and writes fail, stale reads work.
    let (st, _real) = leaderless().await?;
    let read = r#"[{"KV":{"Verb":"get-or-empty","Key":"a"}}]"#;
    assert_eq!(
        status_body(&txn(&st, read).await?),
        (500, "No cluster leader")
    );
    let r = call_on(&st, Method::PUT, "/v1/txn?consistent", read.as_bytes()).await?;
    assert_eq!(status_body(&r), (500, "No cluster leader"));
    let r = call_on(&st, Method::PUT, "/v1/txn?stale", read.as_bytes()).await?;
    assert_eq!(status_body(&r), (200, r#"{"Results":[],"Errors":null}"#));
    assert_eq!(r.header("x-consul-knownleader"), "false");
    // Never in contact with a leader: 0.
    assert_eq!(r.header("x-consul-lastcontact"), "0");
    let r = txn(&st, r#"[{"KV":{"Verb":"set","Key":"a"}}]"#).await?;
    assert_eq!(status_body(&r), (500, "No cluster leader"));
    Ok(())
}

#[tokio::test]
async fn api_txn_limits_and_decode_errors() -> TestResult {
    let (st, _real) = state().await?;
    let op = r#"{"KV":{"Verb":"set","Key":"k","Value":"eA=="}}"#;
    let many = |n: usize| format!("[{}]", vec![op; n].join(","));
    let r = call_with(&st, Method::PUT, "/v1/txn", many(129)).await?;
    assert_eq!(
        status_body(&r),
        (413, "Transaction contains too many operations (129 > 128)")
    );
    let r = call_with(&st, Method::PUT, "/v1/txn", many(128)).await?;
    assert_eq!(r.status, StatusCode::OK);
    // 600 KiB of whitespace-padded JSON.
    let big = format!("[{op}{}]", " ".repeat(600 * 1024));
    let len = big.len();
    let r = call_with(&st, Method::PUT, "/v1/txn", big).await?;
    assert_eq!(
        (r.status.as_u16(), r.body),
        (
            413,
            format!(
                "Request body({len} bytes) too large, max size: 524288 bytes. See \
                 https://developer.hashicorp.com/consul/docs/agent/config/config-files#txn_max_req_len."
            )
        )
    );
    let cases: &[(&str, u16, &str)] = &[
        // 17 bytes against the tests' 16-byte kv_max_value_size.
        (
            r#"[{"KV":{"Verb":"set","Key":"k","Value":"MDEyMzQ1Njc4OWFiY2RlZmc="}}]"#,
            413,
            r#"Value for key "k" is too large (17 > 16 bytes)"#,
        ),
        ("", 400, "Failed to parse body: EOF"),
        (
            "{}",
            400,
            "Failed to parse body: json: cannot unmarshal object into Go value of type api.TxnOps",
        ),
        (
            r#"[{"KV":{"Verb":"nope","Key":"a"}}]"#,
            400,
            r#"Failed to parse body: unknown KV verb "nope""#,
        ),
        (
            r#"[{"Node":{"Verb":"frob","Node":{"Node":"x"}}}]"#,
            400,
            r#"Failed to parse body: unknown Node verb "frob""#,
        ),
        (
            r#"[{"Session":{"Verb":"renew","Session":{"ID":"x"}}}]"#,
            400,
            r#"Failed to parse body: unknown Session verb "renew""#,
        ),
        (
            r#"[{"KV":{"Verb":"get","Key":"a","Bogus":1}}]"#,
            400,
            r#"Failed to parse body: json: unknown field "Bogus""#,
        ),
        (
            "[{}]",
            400,
            "Failed to parse body: operation 0 must have exactly one of KV, Node, Service, Check or Session",
        ),
        (
            r#"[{"KV":{"Verb":"get","Key":"a"}},{"KV":{"Verb":"get","Key":"a"},"Node":{"Verb":"get","Node":{"Node":"n1"}}}]"#,
            400,
            "Failed to parse body: operation 1 must have exactly one of KV, Node, Service, Check or Session",
        ),
        (
            r#"[{"Service":{"Verb":"set","Node":"n1","Service":{"Service":"w","Weights":{"Passing":0}}}}]"#,
            409,
            r#"{"Results":null,"Errors":[{"OpIndex":0,"What":"Invalid Weights: Passing must be greater than 0"}]}"#,
        ),
        (
            r#"[{"Check":{"Verb":"set","Check":{"Node":"n1","CheckID":"c","Status":"bad"}}}]"#,
            409,
            r#"{"Results":null,"Errors":[{"OpIndex":0,"What":"Invalid check status: 'bad'"}]}"#,
        ),
    ];
    for (body, status, want) in cases {
        let r = call_on(&st, Method::PUT, "/v1/txn", body.as_bytes()).await?;
        assert_eq!(status_body(&r), (*status, *want), "{body}");
    }
    for bad in [
        "[",
        r#"[{"KV":{"Verb":"set","Key":"a","Value":"!!"}}]"#,
        "[1]",
    ] {
        let r = call_on(&st, Method::PUT, "/v1/txn", bad.as_bytes()).await?;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            r.body.starts_with("Failed to parse body: "),
            "{bad}: {}",
            r.body
        );
    }
    let r = call_on(&st, Method::GET, "/v1/txn", b"").await?;
    assert_eq!(status_body(&r), (405, "method GET not allowed"));
    assert_eq!(r.header("allow"), "OPTIONS,PUT");
    let r = call_on(&st, Method::PUT, "/v1/txn?dc=dc2", op.as_bytes()).await?;
    assert_eq!(status_body(&r), (500, "No path to datacenter"));
    Ok(())
}

/// The one element of a catalog endpoint's JSON at `path` (a JSON pointer).
async fn catalog_json(
    st: &TestState,
    uri: &str,
    path: &str,
) -> Result<Value, Box<dyn std::error::Error>> {
    let r = call_on(st, Method::GET, uri, b"").await?;
    json(&r)?
        .pointer(path)
        .cloned()
        .ok_or_else(|| format!("{uri}: no {path} in {}", r.body).into())
}

#[tokio::test]
async fn api_txn_catalog_and_session_ops() -> TestResult {
    let (st, _real) = state().await?;
    seed(&st).await?;
    let r = txn(
        &st,
        r#"[{"Node":{"Verb":"set","Node":{"Node":"n3","Address":"10.0.0.3","Meta":{"k":"v"}}}},
            {"Service":{"Verb":"set","Node":"n3","Service":{"ID":"api1","Service":"api","Port":8080,"Tags":["x"]}}},
            {"Check":{"Verb":"set","Check":{"Node":"n3","CheckID":"api-alive","Name":"api alive","Status":"passing","ServiceID":"api1"}}},
            {"node":{"verb":"get","node":{"node":"n1"}}},
            {"Check":{"Verb":"delete","Check":{"Node":"n2","CheckID":"n2 alive"}}}]"#,
    )
    .await?;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = json(&r)?;
    let results = v["Results"].as_array().cloned().unwrap_or_default();
    assert_eq!(results.len(), 4, "{}", r.body);
    // Each record is rendered as the catalog endpoints render it.
    let node = catalog_json(&st, "/v1/catalog/node/n3", "/Node").await?;
    assert_eq!(node["Datacenter"], "dc1");
    assert_eq!(results.first().map(|x| &x["Node"]), Some(&node));
    let svc = catalog_json(&st, "/v1/catalog/node/n3", "/Services/api1").await?;
    assert_eq!(results.get(1).map(|x| &x["Service"]), Some(&svc));
    let check = catalog_json(&st, "/v1/health/node/n3", "/0").await?;
    assert_eq!(check["ServiceName"], "api");
    assert_eq!(results.get(2).map(|x| &x["Check"]), Some(&check));
    let n1 = catalog_json(&st, "/v1/catalog/node/n1", "/Node").await?;
    assert_eq!(results.get(3).map(|x| &x["Node"]), Some(&n1));
    let r = call_on(&st, Method::GET, "/v1/health/node/n2", b"").await?;
    assert_eq!(r.body, "[]");

    // A session delete invalidates the session like a destroy.
    let r = call_on(&st, Method::PUT, "/v1/session/create", b"").await?;
    let id = json(&r)?["ID"].as_str().unwrap_or_default().to_string();
    let r = call_with(
        &st,
        Method::PUT,
        format!("/v1/kv/l?acquire={id}").as_str(),
        "x",
    )
    .await?;
    assert_eq!(r.body, "true");
    let body = format!(r#"[{{"Session":{{"Verb":"delete","Session":{{"ID":"{id}"}}}}}}]"#);
    let r = call_with(&st, Method::PUT, "/v1/txn", body).await?;
    assert_eq!(status_body(&r), (200, r#"{"Results":[],"Errors":null}"#));
    let r = call_on(&st, Method::GET, &format!("/v1/session/info/{id}"), b"").await?;
    assert_eq!(r.body, "[]");
    let r = call_on(&st, Method::GET, "/v1/kv/l", b"").await?;
    assert!(!r.body.contains("Session"), "{}", r.body);
    Ok(())
}
