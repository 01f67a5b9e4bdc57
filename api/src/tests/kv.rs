//! `/v1/kv/*` handler tests: values, listings, errors, consistency modes,
//! leaderless reads and blocking queries.

use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use muster_engine::Command;

use super::{call_on, leaderless, state, TestResult};

#[tokio::test]
async fn api_kv_put_get_delete() -> TestResult {
    let (st, real) = state().await?;
    let r = call_on(&st, Method::GET, "/v1/kv/service%2Fb%2Fleader", b"").await?;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::NOT_FOUND, ""));
    assert_eq!(r.header("x-consul-index"), "1");
    assert_eq!(r.header("x-consul-knownleader"), "true");
    assert_eq!(r.header("x-consul-lastcontact"), "0");
    assert_eq!(r.header("x-consul-effective-consistency"), "leader");

    let r = call_on(&st, Method::PUT, "/v1/kv/service/b/leader?flags=42", b"pg1").await?;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "true"));
    assert_eq!(r.header("content-type"), "application/json");
    let r = call_on(&st, Method::GET, "/v1/kv/service%2Fb%2Fleader", b"").await?;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body,
        format!(
            r#"[{{"LockIndex":0,"Key":"service/b/leader","Flags":42,"Value":"cGcx","CreateIndex":{0},"ModifyIndex":{0}}}]"#,
            real.at(1)
        )
    );
    assert_eq!(r.header("x-consul-index"), real.at(1));
    let r = call_on(&st, Method::GET, "/v1/kv/service/b/leader?raw", b"").await?;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "pg1"));
    assert_eq!(r.header("content-type"), "text/plain");
    assert_eq!(r.header("x-content-type-options"), "nosniff");
    assert_eq!(r.header("x-consul-index"), real.at(1));

    // PUT without flags resets them; cas semantics come from the engine.
    assert_eq!(
        call_on(&st, Method::PUT, "/v1/kv/service/b/leader", b"")
            .await?
            .body,
        "true"
    );
    let r = call_on(&st, Method::GET, "/v1/kv/service/b/leader?pretty", b"").await?;
    assert!(
        r.body.contains("\n    {\n        \"LockIndex\": 0,") && r.body.ends_with("]\n"),
        "{}",
        r.body
    );
    assert!(r.body.contains("\"Value\": null") && r.body.contains("\"Flags\": 0"));
    assert_eq!(
        call_on(&st, Method::PUT, "/v1/kv/service/b/leader?cas=0", b"x")
            .await?
            .body,
        "false"
    );
    assert_eq!(
        call_on(
            &st,
            Method::PUT,
            &format!("/v1/kv/service/b/leader?cas={}", real.at(2)),
            b"x"
        )
        .await?
        .body,
        "true"
    );
    assert_eq!(
        call_on(
            &st,
            Method::DELETE,
            &format!("/v1/kv/service/b/leader?cas={}", real.at(2)),
            b""
        )
        .await?
        .body,
        "false"
    );
    // (every proposal takes a log index, failed CAS included)
    assert_eq!(
        call_on(
            &st,
            Method::DELETE,
            &format!("/v1/kv/service/b/leader?cas={}", real.at(4)),
            b""
        )
        .await?
        .body,
        "true"
    );
    assert_eq!(
        call_on(&st, Method::DELETE, "/v1/kv/service/b/leader", b"")
            .await?
            .body,
        "true"
    );
    let r = call_on(&st, Method::GET, "/v1/kv/service/b/leader", b"").await?;
    assert_eq!(
        (r.status, r.header("x-consul-index")),
        (StatusCode::NOT_FOUND, real.at(6).as_str())
    );
    Ok(())
}

#[tokio::test]
async fn api_kv_recurse_and_keys() -> TestResult {
    let (st, real) = state().await?;
    for k in ["a/c", "a/b/x", "a/b/y", "b"] {
        assert_eq!(
            call_on(&st, Method::PUT, &format!("/v1/kv/{k}"), b"v")
                .await?
                .body,
            "true"
        );
    }
    let r = call_on(&st, Method::GET, "/v1/kv/a/?recurse", b"").await?;
    let keys: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(&r.body)?
        .iter()
        .map(|v| v["Key"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(keys, ["a/b/x", "a/b/y", "a/c"]);
    assert_eq!(r.header("x-consul-index"), real.at(3));
    let r = call_on(&st, Method::GET, "/v1/kv/?recurse=true", b"").await?;
    assert_eq!(r.status, StatusCode::OK);
    let r = call_on(&st, Method::GET, "/v1/kv/zzz?recurse", b"").await?;
    assert_eq!(
        (r.status, r.body.as_str(), r.header("x-consul-index")),
        (StatusCode::NOT_FOUND, "", real.at(4).as_str())
    );
    let r = call_on(&st, Method::GET, "/v1/kv/a/?keys&separator=/", b"").await?;
    assert_eq!(r.body, r#"["a/b/","a/c"]"#);
    let r = call_on(&st, Method::GET, "/v1/kv/a/?keys&seperator=%2F", b"").await?;
    assert_eq!(r.body, r#"["a/b/","a/c"]"#);
    let r = call_on(&st, Method::GET, "/v1/kv/?keys", b"").await?;
    assert_eq!(r.body, r#"["a/b/x","a/b/y","a/c","b"]"#);
    let r = call_on(&st, Method::GET, "/v1/kv/nope?keys", b"").await?;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        call_on(&st, Method::DELETE, "/v1/kv/a/?recurse", b"")
            .await?
            .body,
        "true"
    );
    let r = call_on(&st, Method::GET, "/v1/kv/?keys", b"").await?;
    assert_eq!(r.body, r#"["b"]"#);
    assert_eq!(
        call_on(&st, Method::DELETE, "/v1/kv/?recurse", b"")
            .await?
            .body,
        "true"
    );
    let r = call_on(&st, Method::GET, "/v1/kv/?keys", b"").await?;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "[]"));
    Ok(())
}

#[tokio::test]
async fn api_kv_errors() -> TestResult {
    let (st, _real) = state().await?;
    let cases: &[(Method, &str, &[u8], u16, &str)] = &[
        (Method::GET, "/v1/kv/", b"", 400, "Missing key name"),
        (Method::PUT, "/v1/kv/", b"", 400, "Missing key name"),
        (Method::DELETE, "/v1/kv/", b"", 400, "Missing key name"),
        (Method::GET, "/v1/kv/a?index=x", b"", 400, "Invalid index"),
        (Method::GET, "/v1/kv/a?index=1&wait=5", b"", 400, "Invalid wait time"),
        (
            Method::GET,
            "/v1/kv/a?stale&consistent",
            b"",
            400,
            "Cannot specify ?stale with ?consistent, conflicting semantics.",
        ),
        (Method::GET, "/v1/kv/a?dc=dc2", b"", 500, "No path to datacenter"),
        (Method::PUT, "/v1/kv/a?flags=x", b"", 400, "strconv.ParseUint: parsing \"x\": invalid syntax"),
        (Method::PUT, "/v1/kv/a?cas=-1", b"", 400, "strconv.ParseUint: parsing \"-1\": invalid syntax"),
        (Method::PUT, "/v1/kv/a?cas=1&acquire=s", b"", 400, "Conflicting flags: acquire=s&cas=1"),
        (Method::PUT, "/v1/kv/a?acquire=s&release=s", b"", 400, "Conflicting flags: acquire=s&release=s"),
        (Method::PUT, "/v1/kv/a?acquire=s", b"", 500, "invalid session \"s\""),
        (Method::PUT, "/v1/kv/a?acquire=", b"", 500, "missing session"),
        (Method::PUT, "/v1/kv/a?release=s", b"", 200, "false"),
        (Method::PUT, "/v1/kv/a?acquire=s", b"0123456789abcdefg", 413, "Request body(17 bytes) too large, max size: 16 bytes. See \
             https://developer.hashicorp.com/consul/docs/agent/config/config-files#kv_max_value_size."),
        (Method::DELETE, "/v1/kv/a?recurse&cas=1", b"", 400, "Conflicting flags: cas=1&recurse="),
        (
            Method::PUT,
            "/v1/kv/a",
            b"0123456789abcdefg",
            413,
            "Request body(17 bytes) too large, max size: 16 bytes. See \
             https://developer.hashicorp.com/consul/docs/agent/config/config-files#kv_max_value_size.",
        ),
        (Method::PUT, "/v1/kv/%20a", b"", 400, "Invalid key name \" a\": leading or trailing spaces are not allowed"),
        (Method::PUT, "/v1/kv/a..", b"", 400, "Invalid key name \"a..\": path traversal is not allowed"),
    ];
    for (method, uri, body, status, want) in cases {
        let r = call_on(&st, method.clone(), uri, body).await?;
        assert_eq!(
            (r.status.as_u16(), r.body.as_str()),
            (*status, *want),
            "{method} {uri}"
        );
    }
    // A value of exactly the limit is accepted.
    let r = call_on(&st, Method::PUT, "/v1/kv/a", b"0123456789abcdef").await?;
    assert_eq!(r.body, "true");
    Ok(())
}

#[tokio::test]
async fn api_consistency_and_leaderless_reads() -> TestResult {
    let (st, _real) = leaderless().await?;
    let r = call_on(&st, Method::GET, "/v1/kv/a", b"").await?;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (500, "No cluster leader")
    );
    let r = call_on(&st, Method::GET, "/v1/kv/a?consistent", b"").await?;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (500, "No cluster leader")
    );
    let r = call_on(&st, Method::PUT, "/v1/kv/a", b"x").await?;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (500, "No cluster leader")
    );
    let r = call_on(&st, Method::GET, "/v1/kv/a?stale=", b"").await?;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.header("x-consul-knownleader"), "false");
    assert_eq!(r.header("x-consul-effective-consistency"), "stale");
    assert_eq!(r.header("x-consul-index"), "1");
    let r = call_on(&st, Method::GET, "/v1/status/leader", b"").await?;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "\"\""));
    let (st, _real) = state().await?;
    let r = call_on(&st, Method::GET, "/v1/kv/a?consistent=1", b"").await?;
    assert_eq!(r.header("x-consul-effective-consistency"), "consistent");
    Ok(())
}

#[tokio::test]
async fn api_blocking_get_wakes_on_write() -> TestResult {
    let (st, real) = state().await?;
    let first = real.apply(set("k", b"1")).await?.index;
    let st2 = st.clone();
    let waiter = tokio::spawn(async move {
        call_on(
            &st2,
            Method::GET,
            &format!("/v1/kv/k?index={first}&wait=10s"),
            b"",
        )
        .await
        .map_err(|e| e.to_string())
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A write to another key does not answer the query.
    real.apply(set("other", b"1")).await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished());
    let second = real.apply(set("k", b"2")).await?.index;
    let r = tokio::time::timeout(Duration::from_secs(5), waiter).await???;
    assert_eq!(
        (r.status, r.header("x-consul-index")),
        (StatusCode::OK, second.to_string().as_str())
    );
    assert!(r.body.contains("\"Value\":\"Mg==\""));
    Ok(())
}

fn set(key: &str, value: &[u8]) -> Command {
    Command::KvSet {
        key: key.into(),
        value: value.to_vec(),
        flags: 0,
    }
}

#[tokio::test]
async fn api_blocking_missing_key_rule() -> TestResult {
    let (st, real) = state().await?;
    let x = real.apply(set("x", b"1")).await?.index;
    // First pass: the KV table index is past index=x, so the 404 comes at
    // once.
    let y = real.apply(set("y", b"1")).await?.index;
    let start = Instant::now();
    let r = call_on(
        &st,
        Method::GET,
        &format!("/v1/kv/missing?index={x}&wait=5s"),
        b"",
    )
    .await?;
    assert_eq!(
        (r.status, r.header("x-consul-index")),
        (StatusCode::NOT_FOUND, y.to_string().as_str())
    );
    assert!(start.elapsed() < Duration::from_secs(1));

    // After a wake-up a still-missing key keeps blocking until the deadline:
    // a transaction writes and deletes it (the key fires, the table index
    // moves, the key is still missing).
    let start = Instant::now();
    let st2 = st.clone();
    let waiter = tokio::spawn(async move {
        call_on(
            &st2,
            Method::GET,
            &format!("/v1/kv/missing?index={y}&wait=300ms"),
            b"",
        )
        .await
        .map_err(|e| e.to_string())
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let touch = br#"[{"KV":{"Verb":"set","Key":"missing","Value":"eA=="}},
                     {"KV":{"Verb":"delete","Key":"missing"}}]"#;
    let t = call_on(&st, Method::PUT, "/v1/txn", touch).await?;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    // (a write's reply has no index; nothing else writes meanwhile)
    let touched = real.next_index() - 1;
    let r = tokio::time::timeout(Duration::from_secs(5), waiter).await???;
    assert_eq!(
        (r.status, r.header("x-consul-index")),
        (StatusCode::NOT_FOUND, touched.to_string().as_str())
    );
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );

    // ...and answers as soon as it appears.
    let st2 = st.clone();
    let waiter = tokio::spawn(async move {
        call_on(
            &st2,
            Method::GET,
            &format!("/v1/kv/missing?index={touched}&wait=10s"),
            b"",
        )
        .await
        .map_err(|e| e.to_string())
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = call_on(&st, Method::PUT, "/v1/txn", touch).await?;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished());
    let here = real.apply(set("missing", b"here")).await?.index;
    let r = tokio::time::timeout(Duration::from_secs(5), waiter).await???;
    assert_eq!(
        (r.status, r.header("x-consul-index")),
        (StatusCode::OK, here.to_string().as_str())
    );
    Ok(())
}
