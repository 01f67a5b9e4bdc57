//! Handler tests: the real router and handlers over the real engine, a
//! one-server cluster on a temp dir that opens and elects itself in
//! milliseconds (the binary is tested end to end in `tests/`). This file
//! owns that server ([`Real`]) and the request helpers; the tests live in
//! one file per domain: `kv.rs`, `catalog.rs`, `health.rs`, `agent.rs`,
//! `session.rs`, `txn.rs`, `cluster.rs` (membership and operator
//! endpoints), `client.rs` (client-agent forwarding), `engine.rs` (shared
//! results and forwarded requests), and `server.rs` (routing, status and
//! serving over TCP). The agent endpoints run over a recording fake of the
//! agent (`agent.rs`), and the membership endpoints over a fake of gossip
//! (`cluster.rs`): those seams are the agent's and gossip's, not the
//! state machine's.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode};
use muster_engine::{Applied, Command, Engine, EngineConfig};

use crate::response::Body;
use crate::router::{self, Serving, State};
use crate::ApiConfig;

mod agent;
mod catalog;
mod client;
mod cluster;
mod engine;
mod health;
mod kv;
mod server;
mod session;
mod txn;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The server state over the real engine.
type TestState = Arc<State>;

/// A one-server engine on a temp dir (removed on drop).
struct Real {
    engine: Engine,
    /// The last index applied when it opened: a test's own n-th write
    /// gets index `base + n` (see [`Real::at`]).
    base: u64,
    /// The data directory.
    _dir: tempfile::TempDir,
}

impl Real {
    /// Propose `cmd` and wait until it is applied.
    async fn apply(&self, cmd: Command) -> Result<Applied, muster_engine::Error> {
        self.engine.propose(cmd).await
    }

    /// The index the next write will get at the earliest (the last
    /// applied + 1): tests state indexes relative to it.
    fn next_index(&self) -> u64 {
        self.engine.status().applied_index + 1
    }

    /// The index of this test's `n`-th log entry, as text.
    fn at(&self, n: u64) -> String {
        (self.base + n).to_string()
    }
}

/// Open an engine; with `bootstrap` false it never forms a cluster, so it
/// never has a leader (writes fail after a short hold).
async fn open(bootstrap: bool) -> Result<Real, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut cfg = EngineConfig::new(dir.path(), "n1");
    cfg.heartbeat = Duration::from_millis(50);
    cfg.election_timeout = Duration::from_millis(150);
    cfg.rpc_hold_timeout = Duration::from_millis(200);
    cfg.bootstrap = bootstrap;
    let engine = Engine::open(cfg).await?;
    let base = engine.status().applied_index;
    Ok(Real {
        engine,
        base,
        _dir: dir,
    })
}

fn state_over(real: &Real) -> TestState {
    let mut cfg = ApiConfig::new("dc1", "n1", "00000000-0000-4000-8000-000000000001");
    cfg.kv_max_value_size = 16;
    Arc::new(State {
        serving: Serving::Server(real.engine.clone()),
        agent: Arc::new(agent::FakeAgent::default()),
        cfg,
        local_addr: None,
        shared: Default::default(),
    })
}

/// A leading one-server engine and the router over it.
async fn state() -> Result<(TestState, Real), Box<dyn std::error::Error>> {
    let real = open(true).await?;
    Ok((state_over(&real), real))
}

/// A server that never formed a cluster: no leader, ever.
async fn leaderless() -> Result<(TestState, Real), Box<dyn std::error::Error>> {
    let real = open(false).await?;
    Ok((state_over(&real), real))
}

struct Reply {
    status: StatusCode,
    headers: hyper::HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("<none>")
    }
}

async fn call_on(
    st: &TestState,
    method: Method,
    uri: &str,
    body: &'static [u8],
) -> Result<Reply, Box<dyn std::error::Error>> {
    call_with(st, method, uri, Bytes::from_static(body)).await
}

async fn call_with(
    st: &TestState,
    method: Method,
    uri: &str,
    body: impl Into<Bytes>,
) -> Result<Reply, Box<dyn std::error::Error>> {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(body.into()))?;
    let resp: Response<Body> = router::handle(st.clone(), req).await;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// PUT `body` to `/v1/catalog/register` and expect `true`.
async fn register(st: &TestState, body: &'static str) -> TestResult {
    let r = call_on(st, Method::PUT, "/v1/catalog/register", body.as_bytes()).await?;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::OK, "true"),
        "{body}"
    );
    Ok(())
}

/// Two nodes: n1 (meta env=prod) runs web1 (tags v1, primary) with a
/// passing node check and a critical service check; n2 (env=dev) runs web2
/// (tag v1) and db1, all passing.
async fn seed(st: &TestState) -> TestResult {
    register(
        st,
        r#"{"Node":"n1","Address":"10.0.0.1","NodeMeta":{"env":"prod"},
            "TaggedAddresses":{"lan":"10.0.0.1"},
            "Service":{"ID":"web1","Service":"web","Tags":["v1","primary"],"Port":80},
            "Checks":[{"CheckID":"serfHealth","Name":"Serf Health Status","Status":"passing"},
                      {"CheckID":"service:web1","Name":"web check","ServiceID":"web1",
                       "Definition":{"HTTP":"http://10.0.0.1/","Interval":"10s","Timeout":"5s"}}]}"#,
    )
    .await?;
    // python-consul spelling: lowercase and snake_case keys.
    register(
        st,
        r#"{"node":"n2","address":"10.0.0.2","node_meta":{"env":"dev"},
            "service":{"id":"web2","service":"web","tags":["v1"],"enable_tag_override":true},
            "check":{"name":"n2 alive","status":"passing"}}"#,
    )
    .await?;
    register(
        st,
        r#"{"Node":"n2","Address":"10.0.0.2","SkipNodeUpdate":true,
            "Service":{"Service":"db","ID":"db1","Port":5432,"Meta":{"role":"primary"}}}"#,
    )
    .await?;
    Ok(())
}

fn json(r: &Reply) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::from_str(&r.body)
}

/// `field` of every element of a JSON list, as strings.
fn col(v: &serde_json::Value, field: &str) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|e| match &e[field] {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}
