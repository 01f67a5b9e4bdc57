//! Handler tests: the real router and handlers over an in-memory fake of
//! the engine interface (the real engine is tested in its own crate and the
//! binary end to end in `tests/`). This file owns the shared fake engine
//! (`Fake`, `FakeCatalog`; its sessions, locks and transactions are in
//! `fake_coord.rs`) and the request helpers; the tests live in one file per
//! domain: `kv.rs`, `catalog.rs`, `health.rs`, `agent.rs`, `session.rs`,
//! `txn.rs`, `cluster.rs` (membership and operator endpoints), `client.rs`
//! (client-agent forwarding), and
//! `server.rs` (routing, status and serving over TCP).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode};
use muster_engine::txn::{TxnError, TxnOp, TxnResult};
use muster_engine::watch::{Table, Watch, WatchSet};
use muster_engine::{
    Applied, Check, ClusterStatus, Command, Indexed, KvEntry, Node, NodeServices, Service,
    ServiceHealth, ServiceNode, Session, WatchKey,
};

use crate::backend::Backend;
use crate::response::Body;
use crate::router::{self, State};
use crate::ApiConfig;

mod agent;
mod catalog;
mod client;
mod cluster;
mod engine;
mod fake_coord;
mod health;
mod kv;
mod server;
mod session;
mod txn;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The server state over the fake.
type TestState = Arc<State<Arc<Fake>>>;

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
    /// Sessions by ID.
    sessions: BTreeMap<String, Session>,
    /// Sessions table index.
    sessions_index: u64,
    /// Key → end of its lock-delay window.
    lock_delays: BTreeMap<String, Instant>,
    /// Every command proposed through the `Backend` (tests seeding the
    /// fake call `apply` directly).
    proposed: Vec<Command>,
}

/// An in-memory engine with Consul's KV, catalog and session semantics.
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
            cmd @ (Command::SessionCreate { .. }
            | Command::SessionDestroy { .. }
            | Command::KvLock { .. }
            | Command::KvUnlock { .. }
            | Command::Txn { .. }) => {
                let (response, keys) = s.apply_coord(cmd, index);
                drop(s);
                self.watch.fire(&keys);
                return Applied { index, response };
            }
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
    fn leader_known(&self) -> muster_engine::Result<()> {
        self.check_leader()
    }
    fn linearizable(&self) -> impl Future<Output = muster_engine::Result<()>> + Send {
        let r = self.check_leader();
        async move { r }
    }
    fn propose(&self, cmd: Command) -> impl Future<Output = muster_engine::Result<Applied>> + Send {
        let r = self.check_leader().map(|()| {
            self.lock().proposed.push(cmd.clone());
            self.apply(cmd)
        });
        async move { r }
    }
    fn watch(&self) -> &Arc<Watch> {
        &self.watch
    }
    fn kv_get(
        &self,
        key: &str,
        ws: &mut WatchSet,
    ) -> muster_engine::Result<Indexed<Option<KvEntry>>> {
        ws.add(WatchKey::KvKey(key.to_string()));
        let s = self.lock();
        let value = s.kv.get(key).cloned();
        let index = value.as_ref().map_or(s.kv_index, |e| e.modify_index).max(1);
        Ok(Indexed { index, value })
    }
    fn kv_list(
        &self,
        prefix: &str,
        ws: &mut WatchSet,
    ) -> muster_engine::Result<Indexed<Vec<KvEntry>>> {
        ws.add(WatchKey::KvPrefix(prefix.to_string()));
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
        ws: &mut WatchSet,
    ) -> muster_engine::Result<Indexed<Vec<String>>> {
        let list = self.kv_list(prefix, ws)?;
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

    fn catalog_nodes(&self, ws: &mut WatchSet) -> muster_engine::Result<Indexed<Vec<Node>>> {
        ws.add(WatchKey::Table(Table::Nodes));
        let s = self.lock();
        Ok(Indexed {
            index: s.cat.nodes_index.max(1),
            value: s.cat.nodes.values().cloned().collect(),
        })
    }
    fn catalog_services(
        &self,
        ws: &mut WatchSet,
    ) -> muster_engine::Result<Indexed<Vec<ServiceNode>>> {
        ws.add(WatchKey::Table(Table::Services));
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
    fn catalog_service(
        &self,
        name: &str,
        ws: &mut WatchSet,
    ) -> muster_engine::Result<Indexed<Vec<ServiceNode>>> {
        ws.add(WatchKey::Service(name.to_string()));
        let s = self.lock();
        Ok(Indexed {
            index: s.cat.service_idx(name),
            value: s.cat.service_nodes(|svc| svc.service == name),
        })
    }
    fn catalog_node(
        &self,
        node: &str,
        ws: &mut WatchSet,
    ) -> muster_engine::Result<Indexed<Option<NodeServices>>> {
        ws.add(WatchKey::Node(node.to_lowercase()));
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
    fn health_node(
        &self,
        node: &str,
        ws: &mut WatchSet,
    ) -> muster_engine::Result<Indexed<Vec<Check>>> {
        ws.add(WatchKey::Node(node.to_lowercase()));
        let s = self.lock();
        let lc = node.to_lowercase();
        Ok(Indexed {
            index: s.cat.node_idx(&lc),
            value: s.cat.checks_of(&lc, None),
        })
    }
    fn health_service(
        &self,
        name: &str,
        ws: &mut WatchSet,
    ) -> muster_engine::Result<Indexed<Vec<ServiceHealth>>> {
        ws.add(WatchKey::Service(name.to_string()));
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
    fn health_checks_all(&self, ws: &mut WatchSet) -> muster_engine::Result<Indexed<Vec<Check>>> {
        ws.add(WatchKey::Table(Table::Checks));
        let s = self.lock();
        Ok(Indexed {
            index: s.cat.checks_index.max(1),
            value: s.cat.checks.values().cloned().collect(),
        })
    }
    fn node_name(&self) -> String {
        "n1".to_string()
    }
    fn session_get(
        &self,
        id: &str,
        ws: &mut WatchSet,
    ) -> muster_engine::Result<Indexed<Option<Session>>> {
        ws.add(WatchKey::Table(Table::Sessions));
        let s = self.lock();
        Ok(Indexed {
            index: s.sessions_index.max(1),
            value: s.sessions.get(id).cloned(),
        })
    }
    fn session_list(&self, ws: &mut WatchSet) -> muster_engine::Result<Indexed<Vec<Session>>> {
        ws.add(WatchKey::Table(Table::Sessions));
        let s = self.lock();
        Ok(Indexed {
            index: s.sessions_index.max(1),
            value: s.sessions.values().cloned().collect(),
        })
    }
    fn session_node(
        &self,
        node: &str,
        ws: &mut WatchSet,
    ) -> muster_engine::Result<Indexed<Vec<Session>>> {
        ws.add(WatchKey::Table(Table::Sessions));
        let s = self.lock();
        Ok(Indexed {
            index: s.sessions_index.max(1),
            value: s
                .sessions
                .values()
                .filter(|x| x.node.eq_ignore_ascii_case(node))
                .cloned()
                .collect(),
        })
    }
    fn session_renew(
        &self,
        id: &str,
    ) -> impl Future<Output = muster_engine::Result<Option<Session>>> + Send {
        let r = self
            .check_leader()
            .map(|()| self.lock().sessions.get(id).cloned());
        async move { r }
    }
    fn kv_lock_delay(&self, key: &str) -> Option<Duration> {
        let until = *self.lock().lock_delays.get(key)?;
        let left = until.checked_duration_since(Instant::now())?;
        (!left.is_zero()).then_some(left)
    }
    fn txn_read(&self, ops: &[TxnOp]) -> muster_engine::Result<(Vec<TxnResult>, Vec<TxnError>)> {
        Ok(self.lock().read_txn(ops))
    }
}

/// The fake's catalog: Consul's register/deregister semantics minus
/// change detection and session invalidation. Node keys are lowercased
/// names.
#[derive(Default, Clone)]
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
        shared: Default::default(),
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
    call_with(st, method, uri, Bytes::from_static(body)).await
}

async fn call_with(
    st: &Arc<State<Arc<Fake>>>,
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
