//! Property: a query's watch set covers its result. For random sequences
//! of KV, catalog and session commands, every query is run before each
//! command with a fresh watch set and subscribed with the fire number taken
//! before it ran (as the blocking loop does); after the command, any query
//! whose answer changed must have been woken: its value, or its index when
//! the answer is not empty. (An empty answer, a missing key or a service
//! never registered, takes a table's index, which unrelated writes move;
//! waking on those would only hand the client the same nothing again, and
//! for a missing key Consul's rule keeps it blocking: consul-compat.md §1.1
//! point 6.) Spurious wakes are allowed; a missed one would leave a
//! blocking client waiting out its `wait` on a stale answer.

use std::time::Duration;

use muster_engine::{
    Check, Command, Engine, EngineConfig, Node, Service, Session, SessionBehavior, Status, WatchSet,
};
use proptest::prelude::*;

const KEYS: &[&str] = &["a/1", "a/2", "b/1", "ab"];
const NODES: &[&str] = &["n1", "n2"];
const SERVICES: &[&str] = &["web", "db"];

#[derive(Debug, Clone)]
enum Op {
    Set(usize, u8),
    Delete(usize),
    DeleteTree(&'static str),
    Register {
        node: usize,
        service: usize,
        id: u8,
        status: Status,
    },
    NodeCheck {
        node: usize,
        status: Status,
    },
    DeregisterService {
        node: usize,
        id: u8,
    },
    DeregisterNode(usize),
    SessionCreate {
        node: usize,
        n: u8,
    },
    SessionDestroy(u8),
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::Passing),
        Just(Status::Warning),
        Just(Status::Critical)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..KEYS.len(), any::<u8>()).prop_map(|(k, v)| Op::Set(k, v % 3)),
        (0..KEYS.len()).prop_map(Op::Delete),
        prop_oneof![Just("a/"), Just("b")].prop_map(Op::DeleteTree),
        (0..NODES.len(), 0..SERVICES.len(), 0u8..2, status()).prop_map(
            |(node, service, id, status)| Op::Register {
                node,
                service,
                id,
                status
            }
        ),
        (0..NODES.len(), status()).prop_map(|(node, status)| Op::NodeCheck { node, status }),
        (0..NODES.len(), 0u8..2).prop_map(|(node, id)| Op::DeregisterService { node, id }),
        (0..NODES.len()).prop_map(Op::DeregisterNode),
        (0..NODES.len(), 0u8..3).prop_map(|(node, n)| Op::SessionCreate { node, n }),
        (0u8..3).prop_map(Op::SessionDestroy),
    ]
}

fn session_id(n: u8) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

fn node(n: usize) -> Node {
    Node {
        node: NODES[n].into(),
        address: format!("10.0.0.{n}"),
        ..Node::default()
    }
}

fn command(op: &Op) -> Command {
    match op {
        Op::Set(k, v) => Command::KvSet {
            key: KEYS[*k].into(),
            value: vec![*v],
            flags: 0,
        },
        Op::Delete(k) => Command::KvDelete {
            key: KEYS[*k].into(),
        },
        Op::DeleteTree(p) => Command::KvDeleteTree {
            prefix: (*p).into(),
        },
        Op::Register {
            node: n,
            service,
            id,
            status,
        } => {
            let sid = format!("{}-{id}", SERVICES[*service]);
            Command::CatalogRegister {
                node: node(*n),
                skip_node_update: false,
                service: Some(Service {
                    id: sid.clone(),
                    service: SERVICES[*service].into(),
                    port: 80,
                    ..Service::default()
                }),
                checks: vec![Check {
                    node: NODES[*n].into(),
                    check_id: format!("svc:{sid}"),
                    name: "alive".into(),
                    status: *status,
                    service_id: sid,
                    ..Check::default()
                }],
            }
        }
        Op::NodeCheck { node: n, status } => Command::CatalogRegister {
            node: node(*n),
            skip_node_update: false,
            service: None,
            checks: vec![Check {
                node: NODES[*n].into(),
                check_id: "serfHealth".into(),
                name: "Serf Health Status".into(),
                status: *status,
                ..Check::default()
            }],
        },
        Op::DeregisterService { node: n, id } => Command::CatalogDeregister {
            node: NODES[*n].into(),
            // Either service's instance `<name>-<id>`: try web's.
            service_id: Some(format!("web-{id}")),
            check_id: None,
        },
        Op::DeregisterNode(n) => Command::CatalogDeregister {
            node: NODES[*n].into(),
            service_id: None,
            check_id: None,
        },
        Op::SessionCreate { node: n, n: i } => Command::SessionCreate {
            session: Session {
                id: session_id(*i),
                name: String::new(),
                node: NODES[*n].into(),
                lock_delay_ns: 0,
                behavior: SessionBehavior::Release,
                ttl: String::new(),
                node_checks: Some(Vec::new()),
                service_checks: None,
                create_index: 0,
                modify_index: 0,
            },
        },
        Op::SessionDestroy(i) => Command::SessionDestroy { id: session_id(*i) },
    }
}

/// A query's answer: its value and its index, rendered for comparison.
type Answer = (String, u64);

/// Every query, by name.
type Query<'e> = (String, Box<dyn Fn(&mut WatchSet) -> Answer + 'e>);

/// Split a rendered `Indexed` into the value and the index.
fn answer<T: std::fmt::Debug>(r: muster_engine::Result<muster_engine::Indexed<T>>) -> Answer {
    match r {
        Ok(r) => (format!("{:?}", r.value), r.index),
        Err(e) => (format!("error: {e}"), 0),
    }
}

/// An answer that says "nothing": `None`, `[]`, `Some([])`.
fn is_empty(value: &str) -> bool {
    matches!(value, "None" | "[]")
}

/// Every query, by name.
fn queries(engine: &Engine) -> Vec<Query<'_>> {
    let mut q: Vec<Query<'_>> = Vec::new();
    for k in KEYS {
        q.push((
            format!("kv_get {k}"),
            Box::new(move |ws| answer(engine.kv_get(k, ws))),
        ));
    }
    for p in ["", "a/", "a", "b/"] {
        q.push((
            format!("kv_list {p:?}"),
            Box::new(move |ws| answer(engine.kv_list(p, ws))),
        ));
        q.push((
            format!("kv_keys {p:?}"),
            Box::new(move |ws| answer(engine.kv_keys(p, Some("/"), ws))),
        ));
    }
    for s in SERVICES {
        q.push((
            format!("health_service {s}"),
            Box::new(move |ws| answer(engine.health_service(s, ws))),
        ));
        q.push((
            format!("catalog_service {s}"),
            Box::new(move |ws| answer(engine.catalog_service(s, ws))),
        ));
    }
    for n in NODES {
        q.push((
            format!("catalog_node {n}"),
            Box::new(move |ws| answer(engine.catalog_node(n, ws))),
        ));
        q.push((
            format!("health_node {n}"),
            Box::new(move |ws| answer(engine.health_node(n, ws))),
        ));
        q.push((
            format!("session_node {n}"),
            Box::new(move |ws| answer(engine.session_node(n, ws))),
        ));
    }
    q.push((
        "catalog_nodes".into(),
        Box::new(|ws| answer(engine.catalog_nodes(ws))),
    ));
    q.push((
        "catalog_services".into(),
        Box::new(|ws| answer(engine.catalog_services(ws))),
    ));
    q.push((
        "health_checks_all".into(),
        Box::new(|ws| answer(engine.health_checks_all(ws))),
    ));
    q.push((
        "ui_services".into(),
        Box::new(|ws| answer(engine.ui_services(ws))),
    ));
    q.push((
        "ui_nodes".into(),
        Box::new(|ws| answer(engine.ui_nodes(ws))),
    ));
    q.push((
        "ui_node_summaries".into(),
        Box::new(|ws| answer(engine.ui_node_summaries(ws))),
    ));
    q.push((
        "session_list".into(),
        Box::new(|ws| answer(engine.session_list(ws))),
    ));
    for i in 0..3 {
        let id = session_id(i);
        q.push((
            format!("session_get {i}"),
            Box::new(move |ws| answer(engine.session_get(&id, ws))),
        ));
    }
    q
}

async fn run(ops: Vec<Op>) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut cfg = EngineConfig::new(dir.path(), "n1");
    cfg.heartbeat = Duration::from_millis(50);
    cfg.election_timeout = Duration::from_millis(150);
    let engine = Engine::open(cfg).await.map_err(|e| e.to_string())?;
    let qs = queries(&engine);
    for op in &ops {
        let before: Vec<_> = qs
            .iter()
            .map(|(_, q)| {
                let since = engine.watch().seq();
                let mut ws = WatchSet::new();
                let was = q(&mut ws);
                (was, engine.watch().subscribe_since(ws.keys(), since))
            })
            .collect();
        engine
            .propose(command(op))
            .await
            .map_err(|e| format!("{op:?}: {e}"))?;
        for ((name, q), (was, sub)) in qs.iter().zip(&before) {
            let now = q(&mut WatchSet::new());
            let changed = now.0 != was.0 || (now.1 != was.1 && !is_empty(&now.0));
            if changed && !sub.has_changed() {
                return Err(format!(
                    "{op:?} changed {name} without waking it:\n  before {was:?}\n  after  {now:?}"
                ));
            }
        }
    }
    engine.shutdown().await.map_err(|e| e.to_string())?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn every_change_to_an_answer_wakes_its_query(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        rt.block_on(run(ops)).map_err(TestCaseError::fail)?;
    }
}
