//! Property tests of the catalog and health tables: random register,
//! deregister and check-update sequences against a model of the catalog and
//! of aggregate health; per-service indexes never go backwards and do not
//! move on writes that change nothing; snapshot + replay equals direct apply.

use std::collections::{BTreeMap, BTreeSet};

use openraft::EntryPayload;
use proptest::prelude::*;

use crate::apply::apply_entry;
use crate::command::{Command, Response};
use crate::sm_tests::{dump, entry};
use crate::snapshot;
use crate::tables::catalog;
use crate::types::{Check, Node, Service, Status};
use crate::views::{Views, SERVICE_INDEX_PREFIX};

const NODES: &[&str] = &["n1", "N1", "n2", "n3"];
const NAMES: &[&str] = &["web", "db", "cache"];
const SIDS: &[&str] = &["a", "b", "c"];
const CIDS: &[&str] = &["c1", "c2", "serfHealth"];

#[derive(Debug, Clone)]
enum Op {
    Node(usize, u8),
    Service(usize, usize, usize, u8),
    Check(usize, usize, Option<usize>, Status),
    DeregNode(usize),
    DeregService(usize, usize),
    DeregCheck(usize, usize),
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::Passing),
        Just(Status::Warning),
        Just(Status::Critical)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let n = 0..NODES.len();
    prop_oneof![
        2 => (n.clone(), 0u8..2).prop_map(|(n, a)| Op::Node(n, a)),
        4 => (n.clone(), 0..SIDS.len(), 0..NAMES.len(), 0u8..2).prop_map(|(n, s, name, t)| Op::Service(n, s, name, t)),
        5 => (n.clone(), 0..CIDS.len(), proptest::option::of(0..SIDS.len()), status())
            .prop_map(|(n, c, s, st)| Op::Check(n, c, s, st)),
        1 => n.clone().prop_map(Op::DeregNode),
        2 => (n.clone(), 0..SIDS.len()).prop_map(|(n, s)| Op::DeregService(n, s)),
        2 => (n, 0..CIDS.len()).prop_map(|(n, c)| Op::DeregCheck(n, c)),
    ]
}

/// The model: lowercase node → (address, services id → (name, tags), checks id → (service id, status)).
#[derive(Default, Clone, PartialEq, Debug)]
struct ModelNode {
    address: String,
    services: BTreeMap<String, (String, Vec<String>)>,
    checks: BTreeMap<String, (String, Status)>,
}

#[derive(Default)]
struct Model {
    nodes: BTreeMap<String, ModelNode>,
}

fn node_rec(name: &str, addr: u8) -> Node {
    Node {
        node: name.to_string(),
        address: format!("10.0.0.{addr}"),
        datacenter: "dc1".into(),
        ..Node::default()
    }
}

impl Model {
    /// Apply; returns the command and whether the model expects a rejection.
    fn apply(&mut self, op: &Op) -> (Command, bool) {
        match op {
            Op::Node(n, a) => {
                let rec = node_rec(NODES[*n], *a);
                self.nodes
                    .entry(NODES[*n].to_lowercase())
                    .or_default()
                    .address = rec.address.clone();
                (
                    Command::CatalogRegister {
                        node: rec,
                        skip_node_update: false,
                        service: None,
                        checks: vec![],
                    },
                    false,
                )
            }
            Op::Service(n, s, name, t) => {
                let lower = NODES[*n].to_lowercase();
                let tags = if *t == 0 {
                    vec![]
                } else {
                    vec!["v1".to_string()]
                };
                let entry = self.nodes.entry(lower).or_insert_with(|| ModelNode {
                    address: "10.0.0.9".into(),
                    ..ModelNode::default()
                });
                entry
                    .services
                    .insert(SIDS[*s].into(), (NAMES[*name].into(), tags.clone()));
                (
                    Command::CatalogRegister {
                        node: node_rec(NODES[*n], 9),
                        skip_node_update: true,
                        service: Some(Service {
                            id: SIDS[*s].into(),
                            service: NAMES[*name].into(),
                            tags,
                            ..Service::default()
                        }),
                        checks: vec![],
                    },
                    false,
                )
            }
            Op::Check(n, c, s, st) => {
                let lower = NODES[*n].to_lowercase();
                let sid = s.map(|s| SIDS[s].to_string()).unwrap_or_default();
                let rejected = !sid.is_empty()
                    && !self
                        .nodes
                        .get(&lower)
                        .is_some_and(|m| m.services.contains_key(&sid));
                if !rejected {
                    let entry = self.nodes.entry(lower).or_insert_with(|| ModelNode {
                        address: "10.0.0.9".into(),
                        ..ModelNode::default()
                    });
                    entry.checks.insert(CIDS[*c].into(), (sid.clone(), *st));
                }
                (
                    Command::CatalogRegister {
                        node: node_rec(NODES[*n], 9),
                        skip_node_update: true,
                        service: None,
                        checks: vec![Check {
                            check_id: CIDS[*c].into(),
                            name: CIDS[*c].into(),
                            status: *st,
                            service_id: sid,
                            ..Check::default()
                        }],
                    },
                    rejected,
                )
            }
            Op::DeregNode(n) => {
                self.nodes.remove(&NODES[*n].to_lowercase());
                (
                    Command::CatalogDeregister {
                        node: NODES[*n].into(),
                        service_id: None,
                        check_id: None,
                    },
                    false,
                )
            }
            Op::DeregService(n, s) => {
                if let Some(m) = self.nodes.get_mut(&NODES[*n].to_lowercase()) {
                    m.services.remove(SIDS[*s]);
                    m.checks.retain(|_, (sid, _)| sid != SIDS[*s]);
                }
                (
                    Command::CatalogDeregister {
                        node: NODES[*n].into(),
                        service_id: Some(SIDS[*s].into()),
                        check_id: None,
                    },
                    false,
                )
            }
            Op::DeregCheck(n, c) => {
                if let Some(m) = self.nodes.get_mut(&NODES[*n].to_lowercase()) {
                    m.checks.remove(CIDS[*c]);
                }
                (
                    Command::CatalogDeregister {
                        node: NODES[*n].into(),
                        service_id: None,
                        check_id: Some(CIDS[*c].into()),
                    },
                    false,
                )
            }
        }
    }

    /// Expected health of a service: (lowercase node, id) → (tags, worst status or None if no checks).
    fn health(&self, name: &str) -> BTreeMap<(String, String), (Vec<String>, Option<Status>)> {
        let mut out = BTreeMap::new();
        for (lower, m) in &self.nodes {
            for (sid, (sname, tags)) in &m.services {
                if sname != name {
                    continue;
                }
                let worst = m
                    .checks
                    .values()
                    .filter(|(csid, _)| csid.is_empty() || csid == sid)
                    .map(|(_, st)| *st)
                    .max();
                out.insert((lower.clone(), sid.clone()), (tags.clone(), worst));
            }
        }
        out
    }
}

fn dump_all(v: &Views) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut meta = dump(v.ks(crate::views::Ks::Meta));
    meta.retain(|(k, _)| k.as_slice() != crate::views::META_MEMBERSHIP);
    vec![
        dump(v.ks(crate::views::Ks::Nodes)),
        dump(v.ks(crate::views::Ks::Services)),
        dump(v.ks(crate::views::Ks::ServiceNames)),
        dump(v.ks(crate::views::Ks::Checks)),
        meta,
    ]
}

fn service_index(v: &Views, name: &str) -> u64 {
    crate::view::meta_index(v, &format!("{SERVICE_INDEX_PREFIX}{name}")).expect("index")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn catalog_matches_model_and_snapshot_replay(ops in proptest::collection::vec(op(), 1..50), cut in 0usize..50) {
        let dir = tempfile::tempdir().expect("tempdir");
        let direct = Views::open(&dir.path().join("direct")).expect("open");
        let mut model = Model::default();
        let mut entries = Vec::new();
        let mut last_idx: BTreeMap<&str, u64> = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            let index = i as u64 + 1;
            let before: BTreeMap<&str, _> = NAMES.iter().map(|n| (*n, model.health(n))).collect();
            let (cmd, rejected) = model.apply(op);
            let e = entry(index, cmd);
            let (resp, _) = apply_entry(&direct, &e).expect("apply");
            prop_assert_eq!(matches!(resp, Response::Rejected(_)), rejected, "op {:?}: {:?}", op, resp);

            let nodes: BTreeSet<String> = catalog::all_nodes(&direct).expect("nodes").into_iter().map(|n| n.node.to_lowercase()).collect();
            prop_assert_eq!(&nodes, &model.nodes.keys().cloned().collect::<BTreeSet<_>>());
            for name in NAMES {
                let got: BTreeMap<(String, String), (Vec<String>, Option<Status>)> =
                    catalog::service_health(&direct, name, true).expect("health").into_iter().map(|h| {
                        let worst = h.checks.iter().map(|c| c.status).max();
                        for c in &h.checks {
                            assert!(c.service_id.is_empty() || c.service_id == h.service.id);
                            if !c.service_id.is_empty() {
                                assert_eq!(&c.service_name, name, "check carries its service's name");
                                assert_eq!(c.service_tags, h.service.tags, "check carries its service's tags");
                            }
                        }
                        ((h.node.node.to_lowercase(), h.service.id), (h.service.tags, worst))
                    }).collect();
                let expected = model.health(name);
                prop_assert_eq!(&got, &expected, "service {} after {:?}", name, op);
                let idx = service_index(&direct, name);
                let prev = last_idx.get(name).copied().unwrap_or(0);
                prop_assert!(idx >= prev, "per-service index of {} went backwards", name);
                if before[name] != expected {
                    prop_assert_eq!(idx, index, "{} changed but its index did not move", name);
                }
                last_idx.insert(name, idx);
            }
            entries.push(e);
        }

        // Re-applying the last register changes nothing and moves no index.
        if let Some(last) = entries.last() {
            if matches!(last.payload, EntryPayload::Normal(Command::CatalogRegister { .. })) {
                let before = dump_all(&direct);
                let again = entry(entries.len() as u64 + 1, match &last.payload {
                    EntryPayload::Normal(c) => c.clone(),
                    _ => unreachable!(),
                });
                apply_entry(&direct, &again).expect("apply");
                let mut after = dump_all(&direct);
                let mut before = before;
                // Only last_applied may differ.
                for d in [&mut after, &mut before] {
                    d[4].retain(|(k, _)| k.as_slice() != crate::views::META_LAST_APPLIED);
                }
                prop_assert_eq!(before, after, "identical re-registration changed state");
                entries.push(again);
            }
        }

        let cut = cut.min(entries.len());
        let partial = Views::open(&dir.path().join("partial")).expect("open");
        for e in &entries[..cut] {
            apply_entry(&partial, e).expect("apply");
        }
        let (_, path) = snapshot::build(&partial, &dir.path().join("snaps"), 1).expect("build");
        let restored = Views::open(&dir.path().join("restored")).expect("open");
        let mut file = std::fs::File::open(&path).expect("open snap");
        snapshot::install(&restored, &mut file).expect("install");
        for e in &entries[cut..] {
            apply_entry(&restored, e).expect("apply");
        }
        prop_assert_eq!(dump_all(&direct), dump_all(&restored));
    }
}
