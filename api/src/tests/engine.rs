//! Handlers over the real engine: a one-server cluster on a temp dir
//! (it opens in milliseconds) behind [`Handler`], the path a server uses
//! for requests client agents forward. These check what only the real
//! read path shows: identical blocking reads share one registration and
//! one answer, and a forwarded request that is dropped stops its query.

use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, Request, StatusCode};
use muster_agent::{Agent, AgentConfig};
use muster_engine::{Check, Command, Engine, EngineConfig, Node, Service, Status, WatchKey};

use crate::client::Handler;
use crate::ApiConfig;

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn server(dir: &std::path::Path) -> Result<(Engine, Handler), Box<dyn std::error::Error>> {
    let mut cfg = EngineConfig::new(dir, "n1");
    cfg.heartbeat = Duration::from_millis(50);
    cfg.election_timeout = Duration::from_millis(150);
    let engine = Engine::open(cfg).await?;
    let id = "00000000-0000-4000-8000-000000000001";
    let agent = Agent::start(
        engine.clone(),
        AgentConfig::new("n1", id, "dc1"),
        Vec::new(),
        Vec::new(),
    )
    .await?;
    let handler = Handler::new(engine.clone(), agent, ApiConfig::new("dc1", "n1", id));
    Ok((engine, handler))
}

fn get(uri: &str) -> Request<Bytes> {
    Request::builder()
        .method(Method::GET)
        .uri(uri)
        .body(Bytes::new())
        .unwrap_or_default()
}

fn register(node: &str, status: Status) -> Command {
    Command::CatalogRegister {
        node: Node {
            node: node.into(),
            address: "10.0.0.1".into(),
            ..Node::default()
        },
        skip_node_update: false,
        service: Some(Service {
            id: "web".into(),
            service: "web".into(),
            port: 80,
            ..Service::default()
        }),
        checks: vec![Check {
            node: node.into(),
            check_id: "alive".into(),
            name: "alive".into(),
            status,
            service_id: "web".into(),
            ..Check::default()
        }],
    }
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) -> TestResult {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !f() {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn index_of(resp: &hyper::Response<Bytes>) -> u64 {
    resp.headers()
        .get("x-consul-index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// 50 identical blocking health reads hold one watch registration between
/// them (not 50), and one check flip answers all of them with one body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_blocking_reads_share_one_registration() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (engine, handler) = server(dir.path()).await?;
    for n in ["a", "b", "c"] {
        engine.propose(register(n, Status::Passing)).await?;
    }
    let first = handler.handle(get("/v1/health/service/web")).await;
    assert_eq!(first.status(), StatusCode::OK);
    let index = index_of(&first);
    let web = WatchKey::Service("web".into());
    assert_eq!(engine.watch().registrations_on(&web), 0);
    let uri = format!("/v1/health/service/web?index={index}&wait=20s");
    let waiters: Vec<_> = (0..50)
        .map(|_| {
            let (h, uri) = (handler.clone(), uri.clone());
            tokio::spawn(async move { h.handle(get(&uri)).await })
        })
        .collect();
    // Every waiter has parked once the shared result exists; give them all
    // time to reach it, then count what the hub holds.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        engine.watch().registrations_on(&web),
        1,
        "50 waiters of one result hold one registration"
    );
    engine.propose(register("b", Status::Critical)).await?;
    let mut bodies = Vec::new();
    for w in waiters {
        let resp = tokio::time::timeout(Duration::from_secs(5), w).await??;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(index_of(&resp) > index);
        bodies.push(resp.into_body());
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "one answer for all"
    );
    let v: serde_json::Value = serde_json::from_slice(&bodies[0])?;
    let b = v
        .as_array()
        .and_then(|l| l.iter().find(|e| e["Node"]["Node"] == "b"))
        .ok_or("b is in the answer")?;
    assert_eq!(b["Checks"][0]["Status"], "critical");
    engine.shutdown().await?;
    Ok(())
}

/// A forwarded blocking read whose caller goes away stops at once: its
/// registration is gone, nothing keeps running on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_forwarded_read_stops_its_query() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (engine, handler) = server(dir.path()).await?;
    let set = engine
        .propose(Command::KvSet {
            key: "k".into(),
            value: b"v".to_vec(),
            flags: 0,
        })
        .await?;
    let k = WatchKey::KvKey("k".into());
    let uri = format!("/v1/kv/k?index={}&wait=60s", set.index);
    let call = {
        let h = handler.clone();
        tokio::spawn(async move { h.handle(get(&uri)).await })
    };
    let watch = engine.watch().clone();
    wait_for("the read to park", || watch.registrations_on(&k) == 1).await?;
    call.abort();
    wait_for("the read to stop", || watch.registrations_on(&k) == 0).await?;
    engine.shutdown().await?;
    Ok(())
}

/// Many blocking readers of one key share results while a writer keeps
/// changing it: every answer is newer than the index its reader sent, its
/// body is the entry at the index it reports, and every reader sees the
/// last write promptly (a result left stale in the shared slot would hold
/// its readers until their `wait` ran out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_results_never_go_stale_under_writes() -> TestResult {
    const WRITES: u64 = 150;
    const READERS: usize = 20;
    let dir = tempfile::tempdir()?;
    let (engine, handler) = server(dir.path()).await?;
    let set = |v: u64| Command::KvSet {
        key: "hot".into(),
        value: v.to_string().into_bytes(),
        flags: 0,
    };
    let first = engine.propose(set(0)).await?.index;
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let h = handler.clone();
            tokio::spawn(async move {
                let mut index = first;
                let mut seen = 0u64;
                while seen < WRITES {
                    let resp = h
                        .handle(get(&format!("/v1/kv/hot?index={index}&wait=3s")))
                        .await;
                    let got = index_of(&resp);
                    if got <= index {
                        return Err(format!("answer at {got} for index {index}: a wait ran out"));
                    }
                    let v: serde_json::Value =
                        serde_json::from_slice(resp.body()).map_err(|e| e.to_string())?;
                    if v[0]["ModifyIndex"].as_u64() != Some(got) {
                        return Err(format!("body {v} under X-Consul-Index {got}"));
                    }
                    let value = v[0]["Value"].as_str().unwrap_or_default();
                    seen =
                        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, value)
                            .ok()
                            .and_then(|b| String::from_utf8(b).ok())
                            .and_then(|s| s.parse().ok())
                            .ok_or(format!("value {value:?}"))?;
                    index = got;
                }
                Ok(index)
            })
        })
        .collect();
    let mut last = first;
    for v in 1..=WRITES {
        last = engine.propose(set(v)).await?.index;
    }
    for r in readers {
        let index = tokio::time::timeout(Duration::from_secs(10), r).await???;
        assert_eq!(index, last);
    }
    engine.shutdown().await?;
    Ok(())
}
