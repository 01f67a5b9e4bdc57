//! Router and server tests: routing, methods and path canonicalisation,
//! `/v1/status/*` and `/v1/agent/self`, and serving over TCP.

use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, StatusCode};

use super::{agent, call_on, open, state, TestResult};
use crate::router;
use crate::ApiConfig;

#[tokio::test]
async fn api_routing_methods_and_paths() -> TestResult {
    let (st, _real) = state().await?;
    let r = call_on(&st, Method::GET, "/", b"").await?;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, crate::ui::UI_DISABLED);
    let r = call_on(&st, Method::GET, "/v1/nope", b"").await?;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::NOT_FOUND, router::UNKNOWN_ENDPOINT)
    );
    let r = call_on(&st, Method::POST, "/v1/kv/a", b"").await?;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "method POST not allowed")
    );
    assert_eq!(r.header("allow"), "OPTIONS,GET,PUT,DELETE");
    let r = call_on(&st, Method::DELETE, "/v1/status/leader", b"").await?;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "method DELETE not allowed")
    );
    assert_eq!(r.header("allow"), "OPTIONS,GET");
    let r = call_on(&st, Method::OPTIONS, "/v1/kv/a", b"").await?;
    assert_eq!(
        (r.status, r.header("allow")),
        (StatusCode::OK, "OPTIONS,GET,PUT,DELETE")
    );
    for bad in [
        "/v1/kv//a",
        "/v1/kv/a/../b",
        "/v1/kv/a/./b",
        "/v1/kv/%2e%2e/x",
        "/v1/kv/a%2F%2Fb",
        "/v1/kv/%zz",
    ] {
        let r = call_on(&st, Method::GET, bad, b"").await?;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    Ok(())
}

#[tokio::test]
async fn api_status_and_agent_self() -> TestResult {
    let (st, _real) = state().await?;
    let r = call_on(&st, Method::GET, "/v1/status/leader", b"").await?;
    assert_eq!(r.body, "\"127.0.0.1:8300\"");
    let r = call_on(&st, Method::GET, "/v1/status/peers", b"").await?;
    assert_eq!(r.body, "[\"127.0.0.1:8300\"]");
    let r = call_on(&st, Method::GET, "/v1/status/peers?dc=other", b"").await?;
    assert_eq!(r.status.as_u16(), 500);
    let r = call_on(&st, Method::GET, "/v1/agent/self", b"").await?;
    let v: serde_json::Value = serde_json::from_str(&r.body)?;
    assert_eq!(v["Config"]["Datacenter"], "dc1");
    assert_eq!(v["Member"]["Status"], 1);
    assert_eq!(r.header("content-type"), "application/json");
    Ok(())
}

#[tokio::test]
async fn api_serve_over_tcp_and_shut_down() -> TestResult {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let real = open(true).await?;
    let cfg = ApiConfig::new("dc1", "n1", "id");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let agent = Arc::new(agent::FakeAgent::default());
    let server = tokio::spawn(crate::server::serve(
        listener,
        router::Serving::Server(real.engine.clone()),
        agent,
        cfg,
        async move {
            let _ = rx.await;
        },
    ));
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    conn.write_all(b"PUT /v1/kv/a%2Fb HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        .await?;
    conn.write_all(b"GET /v1/kv/a/b?raw HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_string(&mut out)).await??;
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("\r\n\r\ntrue"), "{out}");
    assert!(out.ends_with("\r\n\r\nhi"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains(&format!("x-consul-index: {}\r\n", real.at(1))),
        "{out}"
    );
    let _ = tx.send(());
    tokio::time::timeout(Duration::from_secs(10), server).await???;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    Ok(())
}
