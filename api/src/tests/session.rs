//! `/v1/session/*` handler tests (create defaults and rules, destroy,
//! renew, the blocking reads) and the KV `acquire`/`release` flags with
//! lock-delays.

use std::time::Duration;

use hyper::{Method, StatusCode};
use muster_engine::{Session, SessionBehavior, WatchSet};

use super::{
    call_on, call_with, json, leaderless, seed, state, Real, Reply, TestResult, TestState,
};

/// Create a session from `body` and return its ID.
async fn create(st: &TestState, body: &'static str) -> Result<String, Box<dyn std::error::Error>> {
    let r = call_on(st, Method::PUT, "/v1/session/create", body.as_bytes()).await?;
    assert_eq!(r.status, StatusCode::OK, "{body}: {}", r.body);
    let id = json(&r)?["ID"].as_str().unwrap_or_default().to_string();
    assert_eq!(id.len(), 36, "{}", r.body);
    Ok(id)
}

/// The session `id` as the state machine stored it.
fn stored(real: &Real, id: &str) -> Option<Session> {
    real.engine
        .session_get(id, &mut WatchSet::new())
        .ok()
        .and_then(|r| r.value)
}

fn status_body(r: &Reply) -> (u16, &str) {
    (r.status.as_u16(), r.body.as_str())
}

#[tokio::test]
async fn api_session_create_defaults_and_reads() -> TestResult {
    let (st, real) = state().await?;
    seed(&st).await?;
    let id = create(&st, "").await?;
    let s = stored(&real, &id).ok_or("no session stored")?;
    assert_eq!(
        (s.node.as_str(), s.lock_delay_ns, s.behavior, s.ttl.as_str()),
        ("n1", 15_000_000_000, SessionBehavior::Release, "")
    );
    assert_eq!(s.node_checks, Some(vec!["serfHealth".to_string()]));
    assert_eq!(s.service_checks, None);

    let r = call_on(&st, Method::GET, &format!("/v1/session/info/{id}"), b"").await?;
    assert_eq!(
        r.body,
        format!(
            r#"[{{"ID":"{id}","Name":"","Node":"n1","LockDelay":15000000000,"Behavior":"release","TTL":"","NodeChecks":["serfHealth"],"ServiceChecks":null,"CreateIndex":{at},"ModifyIndex":{at}}}]"#,
            at = real.at(4)
        )
    );
    assert_eq!(r.header("x-consul-index"), real.at(4));
    assert_eq!(r.header("x-consul-knownleader"), "true");
    assert_eq!(r.header("x-consul-lastcontact"), "0");
    let r = call_on(&st, Method::GET, "/v1/session/info/nope", b"").await?;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "[]"));
    assert_eq!(r.header("x-consul-index"), real.at(4));

    // Patroni's body: lowercase names, `checks: []`, a string lock-delay.
    let patroni = create(
        &st,
        r#"{"name":"batman-pg0","checks":[],"lockdelay":"0.001s","behavior":"delete","ttl":"15s"}"#,
    )
    .await?;
    let s = stored(&real, &patroni).ok_or("no session stored")?;
    assert_eq!(s.id, patroni);
    assert_eq!(
        (s.name.as_str(), s.lock_delay_ns, s.behavior, s.ttl.as_str()),
        ("batman-pg0", 1_000_000, SessionBehavior::Delete, "15s")
    );
    assert_eq!(s.node_checks, Some(Vec::new()));
    // The Go client's body.
    create(
        &st,
        r#"{"Name":"x","Node":"n2","NodeChecks":["n2 alive"],"LockDelay":"15s","TTL":"10s"}"#,
    )
    .await?;
    let r = call_on(&st, Method::GET, "/v1/session/list", b"").await?;
    assert_eq!(json(&r)?.as_array().map(Vec::len), Some(3));
    let r = call_on(&st, Method::GET, "/v1/session/node/N2", b"").await?;
    let v = json(&r)?;
    assert_eq!(v[0]["Node"], "n2");
    assert_eq!(v[0]["NodeChecks"], serde_json::json!(["n2 alive"]));
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    let r = call_on(&st, Method::GET, "/v1/session/node/n9", b"").await?;
    assert_eq!(r.body, "[]");

    // LockDelay numbers: below 1000 = seconds, else nanoseconds; capped.
    for (body, want) in [
        (r#"{"LockDelay":5}"#, 5_000_000_000),
        (r#"{"LockDelay":2000000000}"#, 2_000_000_000),
        (r#"{"LockDelay":"90s"}"#, 60_000_000_000),
        (r#"{"LockDelay":0}"#, 0),
    ] {
        let id = create(&st, body).await?;
        let s = stored(&real, &id).ok_or("no session stored")?;
        assert_eq!(s.lock_delay_ns, want, "{body}");
    }
    create(
        &st,
        r#"{"NodeChecks":[],"ServiceChecks":[{"ID":"n2 alive"}],"Node":"n2"}"#,
    )
    .await?;
    let r = call_on(&st, Method::GET, "/v1/session/list", b"").await?;
    assert!(
        r.body
            .contains(r#""NodeChecks":[],"ServiceChecks":[{"ID":"n2 alive","Namespace":""}]"#),
        "{}",
        r.body
    );
    Ok(())
}

#[tokio::test]
async fn api_session_errors() -> TestResult {
    let (st, _real) = state().await?;
    seed(&st).await?;
    let cases: &[(Method, &str, &str, u16, &str)] = &[
        (
            Method::PUT,
            "/v1/session/create",
            r#"{"Behavior":"x"}"#,
            500,
            "Invalid Behavior setting 'x'",
        ),
        (
            Method::PUT,
            "/v1/session/create",
            r#"{"TTL":"5s"}"#,
            500,
            "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]",
        ),
        (
            Method::PUT,
            "/v1/session/create",
            r#"{"ttl":"25h"}"#,
            500,
            "Invalid Session TTL '90000000000000', must be between [10s=24h0m0s]",
        ),
        (
            Method::PUT,
            "/v1/session/create",
            r#"{"TTL":"x"}"#,
            500,
            "Session TTL 'x' invalid: time: invalid duration \"x\"",
        ),
        (
            Method::PUT,
            "/v1/session/create",
            r#"{"Node":"nope"}"#,
            500,
            "Missing node registration",
        ),
        (
            Method::PUT,
            "/v1/session/create",
            r#"{"Node":""}"#,
            500,
            "Must provide Node",
        ),
        (
            Method::PUT,
            "/v1/session/create",
            r#"{"NodeChecks":["nope"]}"#,
            500,
            "Missing check 'nope' registration",
        ),
        (
            Method::PUT,
            "/v1/session/create",
            r#"{"Checks":["service:web1"]}"#,
            500,
            "Check 'service:web1' is in critical state",
        ),
        (
            Method::PUT,
            "/v1/session/create",
            r#"{"Bogus":1}"#,
            400,
            "Request decode failed: json: unknown field \"Bogus\"",
        ),
        (
            Method::PUT,
            "/v1/session/create",
            r#"{"TTL":30}"#,
            400,
            "Request decode failed: invalid type: integer `30`, expected a string",
        ),
        (
            Method::PUT,
            "/v1/session/create?dc=dc2",
            "",
            500,
            "No path to datacenter",
        ),
        (
            Method::GET,
            "/v1/session/create",
            "",
            405,
            "method GET not allowed",
        ),
        (
            Method::PUT,
            "/v1/session/list",
            "",
            405,
            "method PUT not allowed",
        ),
        (
            Method::DELETE,
            "/v1/session/destroy/x",
            "",
            405,
            "method DELETE not allowed",
        ),
        (
            Method::PUT,
            "/v1/session/destroy/",
            "",
            400,
            "Missing session",
        ),
        (
            Method::PUT,
            "/v1/session/renew/",
            "",
            400,
            "Missing session",
        ),
        (Method::GET, "/v1/session/info/", "", 400, "Missing session"),
        (
            Method::GET,
            "/v1/session/node/",
            "",
            400,
            "Missing node name",
        ),
        (
            Method::PUT,
            "/v1/session/renew/nope",
            "",
            404,
            "Session id 'nope' not found",
        ),
        (
            Method::GET,
            "/v1/session/list?index=x",
            "",
            400,
            "Invalid index",
        ),
    ];
    for (method, uri, body, status, want) in cases {
        let r = call_on(&st, method.clone(), uri, body.as_bytes()).await?;
        assert_eq!(status_body(&r), (*status, *want), "{method} {uri} {body}");
    }
    let r = call_on(&st, Method::GET, "/v1/session/create", b"").await?;
    assert_eq!(r.header("allow"), "OPTIONS,PUT");
    let r = call_on(&st, Method::PUT, "/v1/session/create", b"{").await?;
    assert!(r.body.starts_with("Request decode failed: "), "{}", r.body);
    Ok(())
}

#[tokio::test]
async fn api_session_leaderless() -> TestResult {
    let (st, _real) = leaderless().await?;
    let id = "adf4238a-882b-9ddc-4a9d-5b6758e4159e";
    for (method, uri) in [
        (Method::PUT, "/v1/session/create".to_string()),
        (Method::PUT, format!("/v1/session/renew/{id}")),
        (Method::PUT, format!("/v1/session/destroy/{id}")),
        (Method::GET, "/v1/session/list".to_string()),
    ] {
        let r = call_on(&st, method.clone(), &uri, b"").await?;
        assert_eq!(
            status_body(&r),
            (500, "No cluster leader"),
            "{method} {uri}"
        );
    }
    let r = call_on(&st, Method::GET, "/v1/session/list?stale", b"").await?;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-consul-knownleader"), "false");
    assert_eq!(r.header("x-consul-effective-consistency"), "stale");
    Ok(())
}

#[tokio::test]
async fn api_session_renew_and_destroy() -> TestResult {
    let (st, _real) = state().await?;
    seed(&st).await?;
    let id = create(&st, r#"{"Name":"s","TTL":"30s"}"#).await?;
    let r = call_on(&st, Method::PUT, &format!("/v1/session/renew/{id}"), b"").await?;
    assert_eq!(r.status, StatusCode::OK);
    let v = json(&r)?;
    assert_eq!(
        (v[0]["ID"].as_str(), v[0]["TTL"].as_str()),
        (Some(id.as_str()), Some("30s"))
    );
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    for _ in 0..2 {
        let r = call_on(&st, Method::PUT, &format!("/v1/session/destroy/{id}"), b"").await?;
        assert_eq!(status_body(&r), (200, "true"));
    }
    let r = call_on(&st, Method::PUT, &format!("/v1/session/renew/{id}"), b"").await?;
    assert_eq!(
        status_body(&r),
        (404, format!("Session id '{id}' not found").as_str())
    );
    let r = call_on(&st, Method::GET, &format!("/v1/session/info/{id}"), b"").await?;
    assert_eq!(r.body, "[]");
    Ok(())
}

#[tokio::test]
async fn api_session_list_blocks_until_a_change() -> TestResult {
    let (st, real) = state().await?;
    seed(&st).await?;
    create(&st, "").await?;
    let st2 = st.clone();
    let uri = format!("/v1/session/list?index={}&wait=10s", real.at(4));
    let waiter = tokio::spawn(async move {
        call_on(&st2, Method::GET, &uri, b"")
            .await
            .map_err(|e| e.to_string())
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished());
    create(&st, r#"{"Name":"second"}"#).await?;
    let r = tokio::time::timeout(Duration::from_secs(5), waiter).await???;
    assert_eq!(r.header("x-consul-index"), real.at(5));
    assert!(r.body.contains(r#""Name":"second""#), "{}", r.body);
    Ok(())
}

#[tokio::test]
async fn api_kv_acquire_release_and_lock_delay() -> TestResult {
    let (st, real) = state().await?;
    seed(&st).await?;
    let a = create(&st, "").await?;
    let b = create(&st, "").await?;
    let put = |uri: String, body: &'static [u8]| {
        let st = st.clone();
        async move { call_with(&st, Method::PUT, &uri, body).await }
    };
    let get_leader = || async {
        let r = call_on(&st, Method::GET, "/v1/kv/service/b/leader", b"").await?;
        json(&r)
            .map(|v| v[0].clone())
            .map_err(Box::<dyn std::error::Error>::from)
    };
    let leader = "/v1/kv/service/b/leader";
    assert_eq!(
        put(format!("{leader}?acquire={a}"), b"pg0").await?.body,
        "true"
    );
    let v = get_leader().await?;
    assert_eq!(
        (v["Session"].as_str(), v["LockIndex"].as_u64()),
        (Some(a.as_str()), Some(1))
    );
    assert_eq!(
        put(format!("{leader}?acquire={b}"), b"pg1").await?.body,
        "false"
    );
    assert_eq!(
        put(format!("{leader}?release={b}"), b"pg1").await?.body,
        "false"
    );
    // The holder re-acquiring only writes; a plain PUT keeps the holder.
    assert_eq!(
        put(format!("{leader}?acquire={a}&flags=3"), b"pg0b")
            .await?
            .body,
        "true"
    );
    assert_eq!(put(leader.to_string(), b"pg0c").await?.body, "true");
    let v = get_leader().await?;
    assert_eq!(
        (v["Session"].as_str(), v["LockIndex"].as_u64()),
        (Some(a.as_str()), Some(1))
    );
    assert_eq!(
        put(format!("{leader}?release={a}"), b"x").await?.body,
        "true"
    );
    let r = call_on(&st, Method::GET, leader, b"").await?;
    assert!(!r.body.contains("Session"), "{}", r.body);
    assert!(r.body.contains(r#""LockIndex":1,"#), "{}", r.body);

    // B takes it, B is destroyed: the lock is released and a 15 s
    // lock-delay starts, during which an acquire is refused unproposed.
    assert_eq!(
        put(format!("{leader}?acquire={b}"), b"pg1").await?.body,
        "true"
    );
    assert_eq!(get_leader().await?["LockIndex"].as_u64(), Some(2));
    let r = call_on(&st, Method::PUT, &format!("/v1/session/destroy/{b}"), b"").await?;
    assert_eq!(r.body, "true");
    assert!(get_leader().await?.get("Session").is_none());
    let before = real.next_index();
    let r = put(format!("{leader}?acquire={a}"), b"pg0").await?;
    assert_eq!(status_body(&r), (200, "false"));
    assert_eq!(
        real.next_index(),
        before,
        "the refused acquire was proposed"
    );
    // Plain writes are not blocked by the lock-delay.
    assert_eq!(put(leader.to_string(), b"free").await?.body, "true");
    // A session with no lock-delay leaves none behind.
    let c = create(&st, r#"{"LockDelay":0}"#).await?;
    assert_eq!(
        put(format!("/v1/kv/other?acquire={c}"), b"").await?.body,
        "true"
    );
    call_on(&st, Method::PUT, &format!("/v1/session/destroy/{c}"), b"").await?;
    assert_eq!(
        put(format!("/v1/kv/other?acquire={a}"), b"").await?.body,
        "true"
    );
    Ok(())
}
