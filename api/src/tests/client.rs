//! Client-agent mode: `/v1/agent/*` answered from the client's own agent,
//! every other request forwarded whole to a server (here the real router
//! over the real engine), the client's node named in the forwarded request,
//! and a 500 with Consul's message when no server can be reached.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode};

use super::{agent::FakeAgent, state, Real, TestResult, TestState};
use crate::client::{Upstream, X_AGENT_NODE};
use crate::cluster::BoxFuture;
use crate::router::{self, Serving, State};
use crate::ApiConfig;

/// A server behind the client: records each forwarded request's path and
/// agent-node header, then answers it with the server router (or fails
/// when `down`).
struct FakeServer {
    server: TestState,
    seen: Mutex<Vec<(String, Option<String>)>>,
    down: bool,
}

impl Upstream for FakeServer {
    fn forward(&self, req: Request<Bytes>) -> BoxFuture<'_, Result<Response<Bytes>, String>> {
        Box::pin(async move {
            let node = req
                .headers()
                .get(X_AGENT_NODE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let path = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default();
            self.seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((path, node));
            if self.down {
                return Err("No known Consul servers".to_string());
            }
            let resp = router::handle(self.server.clone(), req.map(Full::new)).await;
            let (parts, body) = resp.into_parts();
            let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok(Response::from_parts(parts, bytes))
        })
    }
}

async fn client(
    down: bool,
) -> Result<(Arc<State>, Arc<FakeServer>, Real), Box<dyn std::error::Error>> {
    let (server, real) = state().await?;
    let upstream = Arc::new(FakeServer {
        server,
        seen: Mutex::new(Vec::new()),
        down,
    });
    let mut cfg = ApiConfig::new("dc1", "c1", "00000000-0000-4000-8000-0000000000c1");
    cfg.server = false;
    let st = Arc::new(State {
        serving: Serving::Client(upstream.clone()),
        agent: Arc::new(FakeAgent::default()),
        cfg,
        local_addr: None,
        shared: Default::default(),
    });
    Ok((st, upstream, real))
}

async fn call(
    st: &Arc<State>,
    method: Method,
    uri: &str,
    body: &'static [u8],
) -> Result<(StatusCode, hyper::HeaderMap, String), Box<dyn std::error::Error>> {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::from_static(body)))?;
    let resp = router::handle(st.clone(), req).await;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok((
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

#[tokio::test]
async fn client_forwards_all_but_the_agent_endpoints() -> TestResult {
    let (st, server, _real) = client(false).await?;

    // Agent endpoints stay local: nothing reaches the server.
    let (status, _, body) = call(
        &st,
        Method::PUT,
        "/v1/agent/service/register",
        br#"{"Name":"web","Port":80}"#,
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = call(&st, Method::GET, "/v1/agent/services", b"").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("\"web\""), "{body}");
    let (_, _, body) = call(&st, Method::GET, "/v1/agent/self", b"").await?;
    assert!(body.contains("\"Server\":false"), "{body}");
    assert!(server.seen.lock().map(|s| s.is_empty()).unwrap_or(false));

    // KV goes to the server, query string and body intact, and comes back
    // with the server's read headers.
    let (status, _, body) = call(&st, Method::PUT, "/v1/kv/a/b?flags=7", b"hello").await?;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "true"));
    let (status, headers, body) = call(&st, Method::GET, "/v1/kv/a/b?raw", b"").await?;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hello"));
    assert!(headers.contains_key("x-consul-index"), "{headers:?}");

    // A session created through the client defaults to the client's node.
    let (status, _, body) = call(
        &st,
        Method::PUT,
        "/v1/catalog/register",
        br#"{"Node":"c1","Address":"10.0.0.9","Check":{"CheckID":"serfHealth","Name":"Serf Health Status","Status":"passing"}}"#,
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = call(&st, Method::PUT, "/v1/session/create", b"{}").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, _, body) = call(&st, Method::GET, "/v1/session/list", b"").await?;
    assert!(body.contains("\"Node\":\"c1\""), "{body}");

    let seen = server.seen.lock().map(|s| s.clone()).unwrap_or_default();
    let paths: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/v1/kv/a/b?flags=7",
            "/v1/kv/a/b?raw",
            "/v1/catalog/register",
            "/v1/session/create",
            "/v1/session/list"
        ]
    );
    assert!(seen.iter().all(|(_, n)| n.as_deref() == Some("c1")));

    // Routing errors are answered locally, as a server answers them.
    let (status, _, _) = call(&st, Method::POST, "/v1/kv/x", b"").await?;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(server.seen.lock().map(|s| s.len()).unwrap_or(0), 5);
    Ok(())
}

#[tokio::test]
async fn client_without_servers_answers_500() -> TestResult {
    let (st, _, _real) = client(true).await?;
    let (status, _, body) = call(&st, Method::GET, "/v1/catalog/nodes", b"").await?;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("No known Consul servers"), "{body}");
    // The agent's own endpoints still work.
    let (status, _, _) = call(&st, Method::GET, "/v1/agent/checks", b"").await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}
