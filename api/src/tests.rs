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
use muster_engine::{
    Applied, Check, ClusterStatus, Command, Indexed, KvEntry, Node, NodeServices, Service,
    ServiceHealth, ServiceNode, WatchKey,
};

use crate::backend::Backend;
use crate::response::Body;
use crate::router::{self, State};
use crate::ApiConfig;

mod agent;

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Default)]
struct FakeState {
    kv: BTreeMap<String, KvEntry>,
    /// Last raft index.
    index: u64,
    /// KV table index (tombstones included).
    kv_index: u64,
    no_leader: bool,
    /// The catalog (see `catalog.rs` below).
    cat: FakeCatalog,
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
            Command::Noop {} | Command::Batch { .. } => true,
            cmd @ (Command::CatalogRegister { .. } | Command::CatalogDeregister { .. }) => {
                let r = s.cat.apply(cmd, index);
                drop(s);
                return match r {
                    Ok(keys) => {
                        self.watch.fire(&keys);
                        Applied {
                            index,
                            response: muster_engine::Response::Bool(true),
                        }
                    }
                    Err(msg) => Applied {
                        index,
                        response: muster_engine::Response::Rejected(msg),
                    },
                };
            }
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

    fn catalog_nodes(&self) -> muster_engine::Result<Indexed<Vec<Node>>> {
        let s = self.lock();
        Ok(Indexed {
            index: s.cat.nodes_index.max(1),
            value: s.cat.nodes.values().cloned().collect(),
        })
    }
    fn catalog_services(&self) -> muster_engine::Result<Indexed<Vec<ServiceNode>>> {
        let s = self.lock();
        let mut value = s.cat.service_nodes(|_| true);
        value.sort_by(|a, b| {
            (&a.service.service, &a.node.node, &a.service.id).cmp(&(
                &b.service.service,
                &b.node.node,
                &b.service.id,
            ))
        });
        Ok(Indexed {
            index: s.cat.services_index.max(1),
            value,
        })
    }
    fn catalog_service(&self, name: &str) -> muster_engine::Result<Indexed<Vec<ServiceNode>>> {
        let s = self.lock();
        Ok(Indexed {
            index: s.cat.service_idx(name),
            value: s.cat.service_nodes(|svc| svc.service == name),
        })
    }
    fn catalog_node(&self, node: &str) -> muster_engine::Result<Indexed<Option<NodeServices>>> {
        let s = self.lock();
        let lc = node.to_lowercase();
        let value = s.cat.nodes.get(&lc).map(|n| NodeServices {
            node: n.clone(),
            services: s
                .cat
                .services
                .iter()
                .filter(|((sn, _), _)| *sn == lc)
                .map(|(_, svc)| svc.clone())
                .collect(),
        });
        Ok(Indexed {
            index: s.cat.node_idx(&lc),
            value,
        })
    }
    fn health_node(&self, node: &str) -> muster_engine::Result<Indexed<Vec<Check>>> {
        let s = self.lock();
        let lc = node.to_lowercase();
        Ok(Indexed {
            index: s.cat.node_idx(&lc),
            value: s.cat.checks_of(&lc, None),
        })
    }
    fn health_service(&self, name: &str) -> muster_engine::Result<Indexed<Vec<ServiceHealth>>> {
        let s = self.lock();
        let value = s
            .cat
            .service_nodes(|svc| svc.service == name)
            .into_iter()
            .map(|sn| {
                let lc = sn.node.node.to_lowercase();
                let mut checks = s.cat.checks_of(&lc, Some(""));
                checks.extend(s.cat.checks_of(&lc, Some(&sn.service.id)));
                ServiceHealth {
                    node: sn.node,
                    service: sn.service,
                    checks,
                }
            })
            .collect();
        Ok(Indexed {
            index: s.cat.service_idx(name),
            value,
        })
    }
    fn health_checks_all(&self) -> muster_engine::Result<Indexed<Vec<Check>>> {
        let s = self.lock();
        Ok(Indexed {
            index: s.cat.checks_index.max(1),
            value: s.cat.checks.values().cloned().collect(),
        })
    }
}

/// The fake's catalog: Consul's register/deregister semantics minus
/// change detection and sessions. Node keys are lowercased names.
#[derive(Default)]
struct FakeCatalog {
    nodes: BTreeMap<String, Node>,
    /// (node, service ID) → instance.
    services: BTreeMap<(String, String), Service>,
    /// (node, check ID) → check.
    checks: BTreeMap<(String, String), Check>,
    nodes_index: u64,
    services_index: u64,
    checks_index: u64,
    per_service: BTreeMap<String, u64>,
    per_node: BTreeMap<String, u64>,
    /// Answer the next register with `Rejected(msg)`.
    reject: Option<String>,
}

impl FakeCatalog {
    fn max_index(&self) -> u64 {
        self.nodes_index
            .max(self.services_index)
            .max(self.checks_index)
            .max(1)
    }

    fn service_idx(&self, name: &str) -> u64 {
        self.per_service
            .get(name)
            .copied()
            .unwrap_or_else(|| self.max_index())
    }

    fn node_idx(&self, lc: &str) -> u64 {
        self.per_node
            .get(lc)
            .copied()
            .unwrap_or_else(|| self.max_index())
    }

    fn service_nodes(&self, pick: impl Fn(&Service) -> bool) -> Vec<ServiceNode> {
        self.services
            .iter()
            .filter(|(_, svc)| pick(svc))
            .filter_map(|((lc, _), svc)| {
                Some(ServiceNode {
                    node: self.nodes.get(lc)?.clone(),
                    service: svc.clone(),
                })
            })
            .collect()
    }

    /// Checks on a node; `Some(id)` = only those of that service ID.
    fn checks_of(&self, lc: &str, service: Option<&str>) -> Vec<Check> {
        self.checks
            .iter()
            .filter(|((n, _), c)| n == lc && service.is_none_or(|s| c.service_id == s))
            .map(|(_, c)| c.clone())
            .collect()
    }

    /// Apply a catalog command at `index`; the watch keys it touched.
    fn apply(&mut self, cmd: Command, index: u64) -> Result<Vec<WatchKey>, String> {
        let mut touched_services = Vec::new();
        let lc;
        match cmd {
            Command::CatalogRegister {
                node,
                skip_node_update,
                service,
                checks,
            } => {
                if let Some(msg) = self.reject.take() {
                    return Err(msg);
                }
                lc = node.node.to_lowercase();
                for c in &checks {
                    let known = c.service_id.is_empty()
                        || self
                            .services
                            .contains_key(&(lc.clone(), c.service_id.clone()))
                        || service.as_ref().is_some_and(|s| s.id == c.service_id);
                    if !known {
                        return Err("Missing service registration".into());
                    }
                }
                match self.nodes.get_mut(&lc) {
                    Some(_) if skip_node_update => {}
                    Some(old) => {
                        let create_index = old.create_index;
                        *old = Node {
                            create_index,
                            modify_index: index,
                            ..node
                        };
                    }
                    None => {
                        self.nodes.insert(
                            lc.clone(),
                            Node {
                                create_index: index,
                                modify_index: index,
                                ..node
                            },
                        );
                    }
                }
                self.nodes_index = index;
                let node_name = self
                    .nodes
                    .get(&lc)
                    .map(|n| n.node.clone())
                    .unwrap_or_default();
                if let Some(svc) = service {
                    let key = (lc.clone(), svc.id.clone());
                    let create_index = self.services.get(&key).map_or(index, |o| o.create_index);
                    self.services.insert(
                        key,
                        Service {
                            node: node_name.clone(),
                            create_index,
                            modify_index: index,
                            ..svc
                        },
                    );
                    self.services_index = index;
                }
                for c in checks {
                    let svc = self
                        .services
                        .get(&(lc.clone(), c.service_id.clone()))
                        .cloned();
                    let key = (lc.clone(), c.check_id.clone());
                    let create_index = self.checks.get(&key).map_or(index, |o| o.create_index);
                    self.checks.insert(
                        key,
                        Check {
                            node: node_name.clone(),
                            service_name: svc
                                .as_ref()
                                .map(|s| s.service.clone())
                                .unwrap_or_default(),
                            service_tags: svc.map(|s| s.tags).unwrap_or_default(),
                            create_index,
                            modify_index: index,
                            ..c
                        },
                    );
                    self.checks_index = index;
                }
            }
            Command::CatalogDeregister {
                node,
                service_id,
                check_id,
            } => {
                lc = node.to_lowercase();
                match (service_id, check_id) {
                    (Some(sid), _) => {
                        if let Some(svc) = self.services.remove(&(lc.clone(), sid.clone())) {
                            touched_services.push(svc.service);
                        }
                        self.checks
                            .retain(|(n, _), c| !(*n == lc && c.service_id == sid));
                    }
                    (None, Some(cid)) => {
                        self.checks.remove(&(lc.clone(), cid));
                    }
                    (None, None) => {
                        self.nodes.remove(&lc);
                        for ((n, _), svc) in &self.services {
                            if *n == lc {
                                touched_services.push(svc.service.clone());
                            }
                        }
                        self.services.retain(|(n, _), _| *n != lc);
                        self.checks.retain(|(n, _), _| *n != lc);
                    }
                }
                self.nodes_index = index;
                self.services_index = index;
                self.checks_index = index;
            }
            _ => return Ok(Vec::new()),
        }
        touched_services.extend(
            self.services
                .iter()
                .filter(|((n, _), _)| *n == lc)
                .map(|(_, s)| s.service.clone()),
        );
        self.per_node.insert(lc.clone(), index);
        let mut keys = vec![
            WatchKey::Table(Table::Nodes),
            WatchKey::Table(Table::Services),
            WatchKey::Table(Table::Checks),
            WatchKey::Node(lc),
        ];
        for name in touched_services {
            self.per_service.insert(name.clone(), index);
            keys.push(WatchKey::Service(name));
        }
        Ok(keys)
    }
}

fn state() -> (Arc<State<Arc<Fake>>>, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let mut cfg = ApiConfig::new("dc1", "n1", "00000000-0000-4000-8000-000000000001");
    cfg.kv_max_value_size = 16;
    let st = Arc::new(State {
        engine: fake.clone(),
        agent: Arc::new(agent::FakeAgent::default()),
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
    let agent = Arc::new(agent::FakeAgent::default());
    let server = tokio::spawn(crate::server::serve(
        listener,
        fake,
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
        out.to_ascii_lowercase().contains("x-consul-index: 1\r\n"),
        "{out}"
    );
    let _ = tx.send(());
    tokio::time::timeout(Duration::from_secs(10), server).await???;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    Ok(())
}

/// PUT `body` to `/v1/catalog/register` and expect `true`.
async fn register(st: &Arc<State<Arc<Fake>>>, body: &'static str) -> TestResult {
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
async fn seed(st: &Arc<State<Arc<Fake>>>) -> TestResult {
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

#[tokio::test]
async fn api_catalog_nodes_services_and_node() -> TestResult {
    let (st, fake) = state();
    let r = call_on(&st, Method::GET, "/v1/catalog/services", b"").await?;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "{}"));
    assert_eq!(r.header("x-consul-index"), "1");
    let r = call_on(&st, Method::GET, "/v1/catalog/nodes", b"").await?;
    assert_eq!(r.body, "[]");
    seed(&st).await?;

    let r = call_on(&st, Method::GET, "/v1/catalog/datacenters", b"").await?;
    assert_eq!(r.body, r#"["dc1"]"#);

    let r = call_on(&st, Method::GET, "/v1/catalog/nodes", b"").await?;
    assert_eq!(r.header("x-consul-index"), "3");
    assert_eq!(r.header("x-consul-knownleader"), "true");
    assert_eq!(r.header("x-consul-effective-consistency"), "leader");
    let v = json(&r)?;
    assert_eq!(col(&v, "Node"), ["n1", "n2"]);
    assert_eq!(
        v[0].to_string(),
        r#"{"Address":"10.0.0.1","CreateIndex":1,"Datacenter":"dc1","ID":"","Meta":{"env":"prod"},"ModifyIndex":1,"Node":"n1","TaggedAddresses":{"lan":"10.0.0.1"}}"#
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
    assert_eq!(fake.lock().cat.nodes.len(), 1);
    Ok(())
}

#[tokio::test]
async fn api_catalog_register_errors() -> TestResult {
    let (st, fake) = state();
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
    // The engine's rejection is a 500 with its message.
    fake.lock().cat.reject = Some("Node \"n\" is reserved".into());
    let r = call_on(
        &st,
        Method::PUT,
        "/v1/catalog/register",
        br#"{"Node":"n","Address":"a"}"#,
    )
    .await?;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (500, "Node \"n\" is reserved")
    );
    fake.lock().no_leader = true;
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
async fn api_health_endpoints() -> TestResult {
    let (st, _) = state();
    seed(&st).await?;
    let r = call_on(&st, Method::GET, "/v1/health/node/n1", b"").await?;
    let v = json(&r)?;
    assert_eq!(col(&v, "CheckID"), ["serfHealth", "service:web1"]);
    assert_eq!(
        v[0].to_string(),
        r#"{"CheckID":"serfHealth","CreateIndex":1,"Definition":{},"ExposedPort":0,"Interval":"","ModifyIndex":1,"Name":"Serf Health Status","Node":"n1","Notes":"","Output":"","ServiceID":"","ServiceName":"","ServiceTags":[],"Status":"passing","Timeout":"","Type":""}"#
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

#[tokio::test]
async fn api_catalog_blocking_wakes_on_register() -> TestResult {
    let (st, _) = state();
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
    assert_eq!(r.header("x-consul-index"), "5");
    assert_eq!(json(&r)?.as_array().map(Vec::len), Some(3));
    Ok(())
}
