//! Handler tests: the real router and handlers over an in-memory fake of
//! the engine interface (the real engine is tested in its own crate and the
//! binary end to end in `tests/`).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode};
use muster_engine::watch::{Table, Watch};
use muster_engine::{Applied, ClusterStatus, Command, Indexed, KvEntry, WatchKey};

use crate::backend::Backend;
use crate::response::Body;
use crate::router::{self, State};
use crate::ApiConfig;

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Default)]
struct FakeState {
    kv: BTreeMap<String, KvEntry>,
    /// Last raft index.
    index: u64,
    /// KV table index (tombstones included).
    kv_index: u64,
    no_leader: bool,
}

/// An in-memory engine with Consul's KV semantics (minus sessions).
#[derive(Default)]
struct Fake {
    state: Mutex<FakeState>,
    watch: Arc<Watch>,
}

impl Fake {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn apply(&self, cmd: Command) -> Applied {
        let mut s = self.lock();
        s.index += 1;
        let index = s.index;
        let mut touched = Vec::new();
        let ok = match cmd {
            Command::KvSet { key, value, flags } => {
                set(&mut s, &key, value, flags, index);
                touched.push(key);
                true
            }
            Command::KvCas {
                key,
                value,
                flags,
                index: want,
            } => {
                let current = s.kv.get(&key).map(|e| e.modify_index);
                let ok = match (want, current) {
                    (0, None) => true,
                    (w, Some(m)) => w == m,
                    _ => false,
                };
                if ok {
                    set(&mut s, &key, value, flags, index);
                    touched.push(key);
                }
                ok
            }
            Command::KvDelete { key } => {
                if s.kv.remove(&key).is_some() {
                    s.kv_index = index;
                    touched.push(key);
                }
                true
            }
            Command::KvDeleteCas { key, index: want } => {
                match s.kv.get(&key).map(|e| e.modify_index) {
                    None => true,
                    Some(m) if m == want => {
                        s.kv.remove(&key);
                        s.kv_index = index;
                        touched.push(key);
                        true
                    }
                    Some(_) => false,
                }
            }
            Command::KvDeleteTree { prefix } => {
                let keys: Vec<String> =
                    s.kv.keys()
                        .filter(|k| k.starts_with(&prefix))
                        .cloned()
                        .collect();
                for k in keys {
                    s.kv.remove(&k);
                    s.kv_index = index;
                    touched.push(k);
                }
                true
            }
            Command::Noop {} => true,
        };
        drop(s);
        let mut keys: Vec<WatchKey> = touched.into_iter().map(WatchKey::KvKey).collect();
        keys.push(WatchKey::Table(Table::Kv));
        self.watch.fire(&keys);
        Applied {
            index,
            response: muster_engine::Response::Bool(ok),
        }
    }
}

fn set(s: &mut FakeState, key: &str, value: Vec<u8>, flags: u64, index: u64) {
    let entry = s.kv.entry(key.to_string()).or_insert_with(|| KvEntry {
        key: key.to_string(),
        value: Vec::new(),
        flags: 0,
        create_index: index,
        modify_index: index,
        lock_index: 0,
        session: None,
    });
    entry.value = value;
    entry.flags = flags;
    entry.modify_index = index;
    s.kv_index = index;
}

impl Backend for Arc<Fake> {
    fn status(&self) -> ClusterStatus {
        let s = self.lock();
        ClusterStatus {
            leader: (!s.no_leader).then(|| "127.0.0.1:8300".to_string()),
            is_leader: !s.no_leader,
            peers: vec!["127.0.0.1:8300".into()],
            last_contact_ms: if s.no_leader { 1500 } else { 0 },
            applied_index: s.index,
        }
    }
    fn check_leader(&self) -> muster_engine::Result<()> {
        if self.lock().no_leader {
            Err(muster_engine::Error::NoLeader)
        } else {
            Ok(())
        }
    }
    fn linearizable(&self) -> impl Future<Output = muster_engine::Result<()>> + Send {
        let r = self.check_leader();
        async move { r }
    }
    fn propose(&self, cmd: Command) -> impl Future<Output = muster_engine::Result<Applied>> + Send {
        let r = self.check_leader().map(|()| self.apply(cmd));
        async move { r }
    }
    fn watch(&self) -> &Arc<Watch> {
        &self.watch
    }
    fn kv_get(&self, key: &str) -> muster_engine::Result<Indexed<Option<KvEntry>>> {
        let s = self.lock();
        let value = s.kv.get(key).cloned();
        let index = value.as_ref().map_or(s.kv_index, |e| e.modify_index).max(1);
        Ok(Indexed { index, value })
    }
    fn kv_list(&self, prefix: &str) -> muster_engine::Result<Indexed<Vec<KvEntry>>> {
        let s = self.lock();
        let value: Vec<KvEntry> =
            s.kv.values()
                .filter(|e| e.key.starts_with(prefix))
                .cloned()
                .collect();
        let index = value
            .iter()
            .map(|e| e.modify_index)
            .max()
            .unwrap_or(s.kv_index)
            .max(1);
        Ok(Indexed { index, value })
    }
    fn kv_keys(
        &self,
        prefix: &str,
        separator: Option<&str>,
    ) -> muster_engine::Result<Indexed<Vec<String>>> {
        let list = self.kv_list(prefix)?;
        let mut keys: Vec<String> = list
            .value
            .iter()
            .map(|e| {
                let rest = e.key.get(prefix.len()..).unwrap_or_default();
                match separator.and_then(|sep| rest.find(sep).map(|i| i + sep.len())) {
                    Some(end) => format!("{prefix}{}", rest.get(..end).unwrap_or_default()),
                    None => e.key.clone(),
                }
            })
            .collect();
        keys.dedup();
        Ok(Indexed {
            index: list.index,
            value: keys,
        })
    }
}

fn state() -> (Arc<State<Arc<Fake>>>, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let mut cfg = ApiConfig::new("dc1", "n1", "00000000-0000-4000-8000-000000000001");
    cfg.kv_max_value_size = 16;
    let st = Arc::new(State {
        engine: fake.clone(),
        cfg,
        local_addr: None,
    });
    (st, fake)
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
    st: &Arc<State<Arc<Fake>>>,
    method: Method,
    uri: &str,
    body: &'static [u8],
) -> Result<Reply, Box<dyn std::error::Error>> {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::from_static(body)))?;
    let resp: Response<Body> = router::handle(st.clone(), req).await;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

#[tokio::test]
async fn api_routing_methods_and_paths() -> TestResult {
    let (st, _) = state();
    let r = call_on(&st, Method::GET, "/", b"").await?;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, router::ROOT_TEXT);
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
async fn api_kv_put_get_delete() -> TestResult {
    let (st, _) = state();
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
        r#"[{"LockIndex":0,"Key":"service/b/leader","Flags":42,"Value":"cGcx","CreateIndex":1,"ModifyIndex":1}]"#
    );
    assert_eq!(r.header("x-consul-index"), "1");
    let r = call_on(&st, Method::GET, "/v1/kv/service/b/leader?raw", b"").await?;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "pg1"));
    assert_eq!(r.header("content-type"), "text/plain");
    assert_eq!(r.header("x-content-type-options"), "nosniff");
    assert_eq!(r.header("x-consul-index"), "1");

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
        call_on(&st, Method::PUT, "/v1/kv/service/b/leader?cas=2", b"x")
            .await?
            .body,
        "true"
    );
    assert_eq!(
        call_on(&st, Method::DELETE, "/v1/kv/service/b/leader?cas=2", b"")
            .await?
            .body,
        "false"
    );
    // (every proposal takes a log index, failed CAS included)
    assert_eq!(
        call_on(&st, Method::DELETE, "/v1/kv/service/b/leader?cas=4", b"")
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
        (StatusCode::NOT_FOUND, "6")
    );
    Ok(())
}

#[tokio::test]
async fn api_kv_recurse_and_keys() -> TestResult {
    let (st, _) = state();
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
    assert_eq!(r.header("x-consul-index"), "3");
    let r = call_on(&st, Method::GET, "/v1/kv/?recurse=true", b"").await?;
    assert_eq!(r.status, StatusCode::OK);
    let r = call_on(&st, Method::GET, "/v1/kv/zzz?recurse", b"").await?;
    assert_eq!(
        (r.status, r.body.as_str(), r.header("x-consul-index")),
        (StatusCode::NOT_FOUND, "", "4")
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
    let (st, _) = state();
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
        (Method::PUT, "/v1/kv/a?acquire=s", b"", 500, "session support not implemented"),
        (Method::PUT, "/v1/kv/a?release=s", b"", 500, "session support not implemented"),
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
    let (st, fake) = state();
    fake.lock().no_leader = true;
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
    assert_eq!(r.header("x-consul-lastcontact"), "1500");
    assert_eq!(r.header("x-consul-effective-consistency"), "stale");
    assert_eq!(r.header("x-consul-index"), "1");
    let r = call_on(&st, Method::GET, "/v1/status/leader", b"").await?;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "\"\""));
    fake.lock().no_leader = false;
    let r = call_on(&st, Method::GET, "/v1/kv/a?consistent=1", b"").await?;
    assert_eq!(r.header("x-consul-effective-consistency"), "consistent");
    Ok(())
}

#[tokio::test]
async fn api_status_and_agent_self() -> TestResult {
    let (st, _) = state();
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
async fn api_blocking_get_wakes_on_write() -> TestResult {
    let (st, fake) = state();
    fake.apply(Command::KvSet {
        key: "k".into(),
        value: b"1".to_vec(),
        flags: 0,
    });
    let st2 = st.clone();
    let waiter = tokio::spawn(async move {
        call_on(&st2, Method::GET, "/v1/kv/k?index=1&wait=10s", b"")
            .await
            .map_err(|e| e.to_string())
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A write to another key does not answer the query.
    fake.apply(Command::KvSet {
        key: "other".into(),
        value: b"1".to_vec(),
        flags: 0,
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished());
    fake.apply(Command::KvSet {
        key: "k".into(),
        value: b"2".to_vec(),
        flags: 0,
    });
    let r = tokio::time::timeout(Duration::from_secs(5), waiter).await???;
    assert_eq!(
        (r.status, r.header("x-consul-index")),
        (StatusCode::OK, "3")
    );
    assert!(r.body.contains("\"Value\":\"Mg==\""));
    Ok(())
}

#[tokio::test]
async fn api_blocking_missing_key_rule() -> TestResult {
    let (st, fake) = state();
    fake.apply(Command::KvSet {
        key: "x".into(),
        value: b"1".to_vec(),
        flags: 0,
    });
    // First pass: the KV table index (2) is past index=1, so the 404 comes
    // at once.
    fake.apply(Command::KvSet {
        key: "y".into(),
        value: b"1".to_vec(),
        flags: 0,
    });
    let start = Instant::now();
    let r = call_on(&st, Method::GET, "/v1/kv/missing?index=1&wait=5s", b"").await?;
    assert_eq!(
        (r.status, r.header("x-consul-index")),
        (StatusCode::NOT_FOUND, "2")
    );
    assert!(start.elapsed() < Duration::from_secs(1));

    // After a wake-up a still-missing key keeps blocking until the deadline.
    let start = Instant::now();
    let st2 = st.clone();
    let waiter = tokio::spawn(async move {
        call_on(&st2, Method::GET, "/v1/kv/missing?index=2&wait=300ms", b"")
            .await
            .map_err(|e| e.to_string())
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    {
        let mut s = fake.lock();
        s.index = 9;
        s.kv_index = 9;
    }
    fake.watch.fire(&[WatchKey::KvKey("missing".into())]);
    let r = tokio::time::timeout(Duration::from_secs(5), waiter).await???;
    assert_eq!(
        (r.status, r.header("x-consul-index")),
        (StatusCode::NOT_FOUND, "9")
    );
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );

    // ...and answers as soon as it appears.
    let st2 = st.clone();
    let waiter = tokio::spawn(async move {
        call_on(&st2, Method::GET, "/v1/kv/missing?index=9&wait=10s", b"")
            .await
            .map_err(|e| e.to_string())
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    fake.watch.fire(&[WatchKey::KvKey("missing".into())]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished());
    fake.apply(Command::KvSet {
        key: "missing".into(),
        value: b"here".to_vec(),
        flags: 0,
    });
    let r = tokio::time::timeout(Duration::from_secs(5), waiter).await???;
    assert_eq!(
        (r.status, r.header("x-consul-index")),
        (StatusCode::OK, "10")
    );
    Ok(())
}

#[tokio::test]
async fn api_serve_over_tcp_and_shut_down() -> TestResult {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let fake = Arc::new(Fake::default());
    let cfg = ApiConfig::new("dc1", "n1", "id");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::server::serve(listener, fake, cfg, async move {
        let _ = rx.await;
    }));
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
        out.to_ascii_lowercase().contains("x-consul-index: 1\r\n"),
        "{out}"
    );
    let _ = tx.send(());
    tokio::time::timeout(Duration::from_secs(10), server).await???;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    Ok(())
}
