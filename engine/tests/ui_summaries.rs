//! Property: the UI's cached summaries equal a summary computed afresh.
//! Service and node summaries are kept per name with the per-service or
//! per-node index they were computed at and reused while it stands; for
//! random registrations, check flips and deregistrations, after every
//! command, `ui_services` and `ui_node_summaries` must equal what the
//! uncached health and catalog reads say.

use std::collections::BTreeMap;
use std::time::Duration;

use muster_engine::{Check, Command, Engine, EngineConfig, Node, Service, Status, WatchSet};
use proptest::prelude::*;

const NODES: &[&str] = &["n1", "N2", "n3"];
const SERVICES: &[&str] = &["web", "db"];

#[derive(Debug, Clone)]
enum Op {
    Register {
        node: usize,
        service: usize,
        id: u8,
        status: Status,
        tag: u8,
    },
    NodeCheck {
        node: usize,
        id: u8,
        status: Status,
    },
    DeregisterService {
        node: usize,
        service: usize,
        id: u8,
    },
    DeregisterCheck {
        node: usize,
        id: u8,
    },
    DeregisterNode(usize),
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
        4 => (0..NODES.len(), 0..SERVICES.len(), 0u8..3, status(), 0u8..3).prop_map(
            |(node, service, id, status, tag)| Op::Register { node, service, id, status, tag }
        ),
        3 => (0..NODES.len(), 0u8..2, status()).prop_map(|(node, id, status)| Op::NodeCheck { node, id, status }),
        1 => (0..NODES.len(), 0..SERVICES.len(), 0u8..3)
            .prop_map(|(node, service, id)| Op::DeregisterService { node, service, id }),
        1 => (0..NODES.len(), 0u8..2).prop_map(|(node, id)| Op::DeregisterCheck { node, id }),
        1 => (0..NODES.len()).prop_map(Op::DeregisterNode),
    ]
}

fn node(n: usize) -> Node {
    Node {
        node: NODES[n].into(),
        address: format!("10.0.0.{n}"),
        datacenter: "dc1".into(),
        ..Node::default()
    }
}

fn command(op: &Op) -> Command {
    match op {
        Op::Register {
            node: n,
            service,
            id,
            status,
            tag,
        } => {
            let sid = format!("{}-{id}", SERVICES[*service]);
            Command::CatalogRegister {
                node: node(*n),
                skip_node_update: false,
                service: Some(Service {
                    id: sid.clone(),
                    service: SERVICES[*service].into(),
                    tags: vec![format!("t{tag}")],
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
        Op::NodeCheck {
            node: n,
            id,
            status,
        } => Command::CatalogRegister {
            node: node(*n),
            skip_node_update: false,
            service: None,
            checks: vec![Check {
                node: NODES[*n].into(),
                check_id: format!("node-{id}"),
                name: "node".into(),
                status: *status,
                ..Check::default()
            }],
        },
        Op::DeregisterService {
            node: n,
            service,
            id,
        } => Command::CatalogDeregister {
            node: NODES[*n].into(),
            service_id: Some(format!("{}-{id}", SERVICES[*service])),
            check_id: None,
        },
        Op::DeregisterCheck { node: n, id } => Command::CatalogDeregister {
            node: NODES[*n].into(),
            service_id: None,
            check_id: Some(format!("node-{id}")),
        },
        Op::DeregisterNode(n) => Command::CatalogDeregister {
            node: NODES[*n].into(),
            service_id: None,
            check_id: None,
        },
    }
}

/// (instances, tags, nodes, passing, warning, critical) per service, from
/// the uncached health read.
type Counts = (usize, Vec<String>, Vec<String>, usize, usize, usize);

fn expected_services(engine: &Engine) -> Result<BTreeMap<String, Counts>, String> {
    let mut out = BTreeMap::new();
    for name in SERVICES {
        let entries = engine
            .health_service(name, &mut WatchSet::new())
            .map_err(|e| e.to_string())?
            .value;
        if entries.is_empty() {
            continue;
        }
        let mut tags: Vec<String> = entries
            .iter()
            .flat_map(|e| e.service.tags.clone())
            .collect();
        tags.sort();
        tags.dedup();
        let mut nodes: Vec<String> = entries.iter().map(|e| e.node.node.clone()).collect();
        nodes.sort();
        nodes.dedup();
        // Each (node, check) once: node checks repeat per instance.
        let mut seen = std::collections::BTreeSet::new();
        let (mut p, mut w, mut c) = (0, 0, 0);
        for e in &entries {
            for check in &e.checks {
                if seen.insert((check.node.to_lowercase(), check.check_id.clone())) {
                    match check.status {
                        Status::Passing => p += 1,
                        Status::Warning => w += 1,
                        Status::Critical => c += 1,
                    }
                }
            }
        }
        out.insert(name.to_string(), (entries.len(), tags, nodes, p, w, c));
    }
    Ok(out)
}

async fn run(ops: Vec<Op>) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut cfg = EngineConfig::new(dir.path(), "n1");
    cfg.heartbeat = Duration::from_millis(50);
    cfg.election_timeout = Duration::from_millis(150);
    let engine = Engine::open(cfg).await.map_err(|e| e.to_string())?;
    for op in &ops {
        engine
            .propose(command(op))
            .await
            .map_err(|e| e.to_string())?;
        let got: BTreeMap<String, Counts> = engine
            .ui_services(&mut WatchSet::new())
            .map_err(|e| e.to_string())?
            .value
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    (
                        s.instance_count,
                        s.tags.clone(),
                        s.nodes.clone(),
                        s.checks_passing,
                        s.checks_warning,
                        s.checks_critical,
                    ),
                )
            })
            .collect();
        let want = expected_services(&engine)?;
        if got != want {
            return Err(format!("after {op:?}: services {got:?} != {want:?}"));
        }
        let nodes = engine
            .ui_node_summaries(&mut WatchSet::new())
            .map_err(|e| e.to_string())?
            .value;
        for n in nodes.iter() {
            let checks = engine
                .health_node(&n.node.node, &mut WatchSet::new())
                .map_err(|e| e.to_string())?
                .value;
            let services = engine
                .catalog_node(&n.node.node, &mut WatchSet::new())
                .map_err(|e| e.to_string())?
                .value
                .map_or(0, |e| e.services.len());
            let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
            let want = (
                services,
                count(Status::Passing),
                count(Status::Warning),
                count(Status::Critical),
            );
            let got = (
                n.services,
                n.checks_passing,
                n.checks_warning,
                n.checks_critical,
            );
            if got != want {
                return Err(format!(
                    "after {op:?}: node {} {got:?} != {want:?}",
                    n.node.node
                ));
            }
        }
        let all = engine
            .catalog_nodes(&mut WatchSet::new())
            .map_err(|e| e.to_string())?
            .value;
        if all.len() != nodes.len() {
            return Err(format!(
                "after {op:?}: {} nodes summarised of {}",
                nodes.len(),
                all.len()
            ));
        }
    }
    engine.shutdown().await.map_err(|e| e.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn cached_ui_summaries_equal_fresh_ones(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        rt.block_on(run(ops)).map_err(TestCaseError::fail)?;
    }
}
