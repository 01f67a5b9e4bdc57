//! The web UI's summary reads: every service with its instance and check
//! counts (`/v1/internal/ui/services`), every node with its services and
//! checks (`/v1/internal/ui/nodes`, Consul's shape) or just their counts
//! (`/v1/internal/ui/node-summaries`, muster's), each read on one
//! [`ReadView`] so a summary never mixes two applied states.
//!
//! The summaries scale with what changed, not with the catalog: a
//! service's summary is kept (in [`UiCache`]) with the per-service index it
//! was computed at, and every write that can change it moves that index
//! (the same rule `health_service_shared` relies on), so after one check
//! flips in a catalog of 50,000 instances only that service is summarised
//! again; nodes likewise by the per-node index. The full node dump has no
//! such shortcut: it is Consul's shape and as large as the catalog.
//!
//! This module owns only the aggregation; the JSON shapes are the API's.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use crate::engine::Engine;
use crate::error::Result;
use crate::stage::{Ks, Read};
use crate::tables::catalog;
use crate::types::{Check, Indexed, Node, Service, Status};
use crate::view::table_index;
use crate::views::{decode, NODE_INDEX_PREFIX, SERVICE_INDEX_PREFIX};
use crate::watch::{Table, WatchKey, WatchSet};

/// One service name across the datacenter (Consul's `ServiceSummary`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceSummary {
    /// The service name.
    pub name: String,
    /// Its kind (`""` for a typical service).
    pub kind: String,
    /// The datacenter of its nodes.
    pub datacenter: String,
    /// Every tag of any instance, sorted, once each.
    pub tags: Vec<String>,
    /// The nodes it runs on, sorted.
    pub nodes: Vec<String>,
    /// `external-source` meta values of its instances, once each.
    pub external_sources: Vec<String>,
    /// How many instances.
    pub instance_count: usize,
    /// Checks that bear on it (its instances' and their nodes' node-level
    /// checks, each once) by status.
    pub checks_passing: usize,
    /// See `checks_passing`.
    pub checks_warning: usize,
    /// See `checks_passing`.
    pub checks_critical: usize,
}

/// A node with its services and every check on it (Consul's `NodeInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDump {
    /// The node.
    pub node: Node,
    /// Its service instances, sorted by ID.
    pub services: Vec<Service>,
    /// Its checks (node and service), sorted by ID.
    pub checks: Vec<Check>,
}

/// A node and the counts of what runs on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSummary {
    /// The node.
    pub node: Node,
    /// How many service instances it runs.
    pub services: usize,
    /// Its checks (node and service) by status.
    pub checks_passing: usize,
    /// See `checks_passing`.
    pub checks_warning: usize,
    /// See `checks_passing`.
    pub checks_critical: usize,
}

/// Summaries by name with the per-service or per-node index each was
/// computed at.
#[derive(Default)]
pub(crate) struct UiCache {
    services: RwLock<HashMap<String, (u64, Arc<ServiceSummary>)>>,
    nodes: RwLock<HashMap<String, (u64, Arc<NodeSummary>)>>,
}

/// Most names a cache keeps; past it, it starts over.
const CACHE_NAMES: usize = 200_000;

fn cached<T>(
    map: &RwLock<HashMap<String, (u64, Arc<T>)>>,
    name: &str,
    index: u64,
) -> Option<Arc<T>> {
    let map = map.read().unwrap_or_else(PoisonError::into_inner);
    map.get(name)
        .filter(|(i, _)| *i == index)
        .map(|(_, v)| v.clone())
}

fn keep<T>(map: &RwLock<HashMap<String, (u64, Arc<T>)>>, name: &str, index: u64, value: Arc<T>) {
    let mut map = map.write().unwrap_or_else(PoisonError::into_inner);
    if map.len() >= CACHE_NAMES && !map.contains_key(name) {
        map.clear();
    }
    // Never replace a newer summary with an older one.
    if map.get(name).is_none_or(|(i, _)| *i <= index) {
        map.insert(name.to_string(), (index, value));
    }
}

/// The fields of a service row a summary reads (rows are MessagePack
/// maps, so the rest are skipped, not decoded).
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct ServiceRow {
    id: String,
    service: String,
    kind: String,
    tags: Vec<String>,
    meta: BTreeMap<String, String>,
}

/// The fields of a check row a summary reads.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct CheckRow {
    service_id: String,
    status: Status,
}

/// `(name, index)` of every finer index under `prefix` in `meta`.
fn indexes(v: &impl Read, prefix: &str) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    v.scan(Ks::Meta, prefix.as_bytes(), &mut |key, value| {
        let name = String::from_utf8_lossy(key.get(prefix.len()..).unwrap_or_default());
        let index = value
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_be_bytes);
        out.push((name.into_owned(), index));
        Ok(true)
    })?;
    Ok(out)
}

/// The catalog tables' max index (≥ 1), watching all three.
fn catalog_index(v: &impl Read, ws: &mut WatchSet) -> Result<u64> {
    let mut index = 1;
    for t in [Table::Nodes, Table::Services, Table::Checks] {
        ws.add(WatchKey::Table(t));
        index = index.max(table_index(v, t)?);
    }
    Ok(index)
}

fn count(statuses: impl Iterator<Item = Status>, p: &mut usize, w: &mut usize, c: &mut usize) {
    for status in statuses {
        match status {
            Status::Passing => *p += 1,
            Status::Warning => *w += 1,
            Status::Critical => *c += 1,
        }
    }
}

/// One service's summary, or `None` when it has no instances left.
fn summarize_service(v: &impl Read, name: &str) -> Result<Option<ServiceSummary>> {
    let mut s = ServiceSummary {
        name: name.to_string(),
        ..ServiceSummary::default()
    };
    let (mut tags, mut nodes, mut sources) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    // The node being read and its checks (instances come sorted by node).
    let mut at: Option<(String, Vec<CheckRow>)> = None;
    let (mut p, mut w, mut c) = (0, 0, 0);
    for (lower, id) in catalog::instances_of(v, name)? {
        let Some(row) = v.get(Ks::Services, &catalog::pair_key(&lower, &id))? else {
            continue;
        };
        let svc: ServiceRow = decode(&row, "service")?;
        if at.as_ref().is_none_or(|(l, _)| *l != lower) {
            let Some(node) = catalog::get_node(v, &lower)? else {
                continue;
            };
            let checks: Vec<CheckRow> =
                catalog::scan_rows(v, Ks::Checks, &catalog::prefix_key(&lower), "check")?;
            // A node's own checks count once per service, however many
            // instances it runs.
            count(
                checks
                    .iter()
                    .filter(|c| c.service_id.is_empty())
                    .map(|c| c.status),
                &mut p,
                &mut w,
                &mut c,
            );
            s.datacenter = node.datacenter;
            nodes.insert(node.node);
            at = Some((lower.clone(), checks));
        }
        let own = at.iter().flat_map(|(_, checks)| checks.iter());
        count(
            own.filter(|c| c.service_id == svc.id).map(|c| c.status),
            &mut p,
            &mut w,
            &mut c,
        );
        s.instance_count += 1;
        s.kind = svc.kind;
        tags.extend(svc.tags);
        if let Some(source) = svc.meta.get("external-source").filter(|x| !x.is_empty()) {
            sources.insert(source.clone());
        }
    }
    if s.instance_count == 0 {
        return Ok(None);
    }
    s.tags = tags.into_iter().collect();
    s.nodes = nodes.into_iter().collect();
    s.external_sources = sources.into_iter().collect();
    (s.checks_passing, s.checks_warning, s.checks_critical) = (p, w, c);
    Ok(Some(s))
}

/// Every service's summary in one pass over the services and checks (for
/// a cold cache: summarising names one by one would read each node's
/// checks once per service on it).
fn summarize_all(v: &impl Read) -> Result<HashMap<String, ServiceSummary>> {
    let node_of = |key: &[u8]| {
        let end = key.iter().position(|b| *b == 0).unwrap_or(key.len());
        String::from_utf8_lossy(key.get(..end).unwrap_or_default()).into_owned()
    };
    let mut services: Vec<(String, ServiceRow)> = Vec::new();
    v.scan(Ks::Services, b"", &mut |key, row| {
        services.push((node_of(key), decode(row, "service")?));
        Ok(true)
    })?;
    // Per node (lowercase): node-level statuses, and the instances' own.
    let mut node_checks: HashMap<String, Vec<Status>> = HashMap::new();
    let mut own_checks: HashMap<(String, String), Vec<Status>> = HashMap::new();
    v.scan(Ks::Checks, b"", &mut |key, row| {
        let c: CheckRow = decode(row, "check")?;
        let lower = node_of(key);
        if c.service_id.is_empty() {
            node_checks.entry(lower).or_default().push(c.status);
        } else {
            own_checks
                .entry((lower, c.service_id))
                .or_default()
                .push(c.status);
        }
        Ok(true)
    })?;
    let nodes: HashMap<String, Node> = catalog::all_nodes(v)?
        .into_iter()
        .map(|n| (n.node.to_lowercase(), n))
        .collect();
    #[derive(Default)]
    struct Acc {
        s: ServiceSummary,
        tags: BTreeSet<String>,
        nodes: BTreeSet<String>,
        sources: BTreeSet<String>,
    }
    let mut by_name: HashMap<String, Acc> = HashMap::new();
    for (lower, svc) in services {
        let Some(node) = nodes.get(&lower) else {
            continue;
        };
        let acc = by_name.entry(svc.service.clone()).or_default();
        let s = &mut acc.s;
        if acc.nodes.insert(node.node.clone()) {
            let statuses = node_checks.get(&lower).into_iter().flatten().copied();
            count(
                statuses,
                &mut s.checks_passing,
                &mut s.checks_warning,
                &mut s.checks_critical,
            );
        }
        let own = own_checks
            .get(&(lower, svc.id))
            .into_iter()
            .flatten()
            .copied();
        count(
            own,
            &mut s.checks_passing,
            &mut s.checks_warning,
            &mut s.checks_critical,
        );
        s.instance_count += 1;
        s.kind = svc.kind;
        s.datacenter.clone_from(&node.datacenter);
        acc.tags.extend(svc.tags);
        if let Some(source) = svc.meta.get("external-source").filter(|x| !x.is_empty()) {
            acc.sources.insert(source.clone());
        }
    }
    Ok(by_name
        .into_iter()
        .map(|(name, acc)| {
            let s = ServiceSummary {
                name: name.clone(),
                tags: acc.tags.into_iter().collect(),
                nodes: acc.nodes.into_iter().collect(),
                external_sources: acc.sources.into_iter().collect(),
                ..acc.s
            };
            (name, s)
        })
        .collect())
}

/// One node's counts, or `None` if it is gone.
fn summarize_node(v: &impl Read, lower: &str) -> Result<Option<NodeSummary>> {
    let Some(node) = catalog::get_node(v, lower)? else {
        return Ok(None);
    };
    let prefix = catalog::prefix_key(lower);
    let mut services = 0;
    v.scan(Ks::Services, &prefix, &mut |_, _| {
        services += 1;
        Ok(true)
    })?;
    let checks: Vec<CheckRow> = catalog::scan_rows(v, Ks::Checks, &prefix, "check")?;
    let mut s = NodeSummary {
        node,
        services,
        checks_passing: 0,
        checks_warning: 0,
        checks_critical: 0,
    };
    count(
        checks.iter().map(|c| c.status),
        &mut s.checks_passing,
        &mut s.checks_warning,
        &mut s.checks_critical,
    );
    Ok(Some(s))
}

impl Engine {
    /// Every service name with its counts, sorted by name. Index: the
    /// catalog tables' max, which it watches. Only services whose
    /// per-service index moved since they were last summarised are read.
    pub fn ui_services(&self, ws: &mut WatchSet) -> Result<Indexed<Vec<Arc<ServiceSummary>>>> {
        let v = self.read_view();
        let index = catalog_index(&v, ws)?;
        let cache = &self.inner.ui_cache.services;
        let names = indexes(&v, SERVICE_INDEX_PREFIX)?;
        let fresh: Vec<Option<Arc<ServiceSummary>>> = names
            .iter()
            .map(|(name, at)| cached(cache, name, *at))
            .collect();
        // Many to (re)compute (a cold cache, a restart): one pass over the
        // whole catalog beats reading each node's checks once per service.
        let stale = fresh.iter().filter(|f| f.is_none()).count();
        let mut all = if stale > 64 && stale * 4 > names.len() {
            Some(summarize_all(&v)?)
        } else {
            None
        };
        let mut value = Vec::with_capacity(names.len());
        for ((name, at), fresh) in names.into_iter().zip(fresh) {
            if let Some(s) = fresh {
                value.push(s);
                continue;
            }
            let summary = match all.as_mut() {
                Some(all) => all.remove(&name),
                None => summarize_service(&v, &name)?,
            };
            if let Some(s) = summary {
                let s = Arc::new(s);
                keep(cache, &name, at, s.clone());
                value.push(s);
            }
        }
        Ok(Indexed { index, value })
    }

    /// Every node with the counts of its services and checks, sorted by
    /// name. Index: the catalog tables' max, which it watches.
    pub fn ui_node_summaries(&self, ws: &mut WatchSet) -> Result<Indexed<Vec<Arc<NodeSummary>>>> {
        let v = self.read_view();
        let index = catalog_index(&v, ws)?;
        let cache = &self.inner.ui_cache.nodes;
        let at: HashMap<String, u64> = indexes(&v, NODE_INDEX_PREFIX)?.into_iter().collect();
        let mut value = Vec::new();
        let mut lowers = Vec::new();
        v.scan(Ks::Nodes, b"", &mut |key, _| {
            lowers.push(String::from_utf8_lossy(key).into_owned());
            Ok(true)
        })?;
        for lower in lowers {
            let idx = at.get(&lower).copied().unwrap_or(0);
            if let Some(s) = cached(cache, &lower, idx).filter(|_| idx > 0) {
                value.push(s);
                continue;
            }
            if let Some(s) = summarize_node(&v, &lower)? {
                let s = Arc::new(s);
                if idx > 0 {
                    keep(cache, &lower, idx, s.clone());
                }
                value.push(s);
            }
        }
        Ok(Indexed { index, value })
    }

    /// Every node with its services and checks, sorted by name. Index: the
    /// catalog tables' max, which it watches.
    pub fn ui_nodes(&self, ws: &mut WatchSet) -> Result<Indexed<Vec<NodeDump>>> {
        let v = self.read_view();
        let index = catalog_index(&v, ws)?;
        let mut services: HashMap<String, Vec<Service>> = HashMap::new();
        for s in catalog::scan_rows::<Service>(&v, Ks::Services, b"", "service")? {
            services.entry(s.node.to_lowercase()).or_default().push(s);
        }
        let mut checks: HashMap<String, Vec<Check>> = HashMap::new();
        for c in catalog::scan_rows::<Check>(&v, Ks::Checks, b"", "check")? {
            checks.entry(c.node.to_lowercase()).or_default().push(c);
        }
        let value = catalog::all_nodes(&v)?
            .into_iter()
            .map(|node| {
                let lower = node.node.to_lowercase();
                NodeDump {
                    services: services.remove(&lower).unwrap_or_default(),
                    checks: checks.remove(&lower).unwrap_or_default(),
                    node,
                }
            })
            .collect();
        Ok(Indexed { index, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::engine::EngineConfig;
    use std::time::Duration;

    /// The one-pass summary (cold cache) and the per-service one (warm
    /// cache) agree on every name, after every command of a random mix.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_pass_and_per_service_summaries_agree(
    ) -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut cfg = EngineConfig::new(dir.path(), "n1");
        cfg.heartbeat = Duration::from_millis(50);
        cfg.election_timeout = Duration::from_millis(150);
        let engine = Engine::open(cfg).await?;
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let statuses = [Status::Passing, Status::Warning, Status::Critical];
        for _ in 0..300 {
            let node = format!("Node{}", next(5));
            let name = format!("svc{}", next(6));
            let id = format!("{name}-{}", next(3));
            let status = statuses[next(3) as usize];
            let cmd = match next(10) {
                0 => Command::CatalogDeregister {
                    node: node.clone(),
                    service_id: Some(id),
                    check_id: None,
                },
                1 => Command::CatalogDeregister {
                    node: node.clone(),
                    service_id: None,
                    check_id: None,
                },
                2..=4 => Command::CatalogRegister {
                    node: Node {
                        node: node.clone(),
                        datacenter: "dc1".into(),
                        ..Node::default()
                    },
                    skip_node_update: false,
                    service: None,
                    checks: vec![Check {
                        node: node.clone(),
                        check_id: format!("n{}", next(2)),
                        status,
                        ..Check::default()
                    }],
                },
                _ => Command::CatalogRegister {
                    node: Node {
                        node: node.clone(),
                        datacenter: "dc1".into(),
                        ..Node::default()
                    },
                    skip_node_update: false,
                    service: Some(Service {
                        id: id.clone(),
                        service: name,
                        tags: vec![format!("t{}", next(3))],
                        meta: BTreeMap::from([("external-source".into(), format!("s{}", next(2)))]),
                        ..Service::default()
                    }),
                    checks: vec![Check {
                        node: node.clone(),
                        check_id: format!("c-{id}"),
                        status,
                        service_id: id,
                        ..Check::default()
                    }],
                },
            };
            engine.propose(cmd).await?;
            let v = engine.read_view();
            let mut all = summarize_all(&v)?;
            for (name, _) in indexes(&v, SERVICE_INDEX_PREFIX)? {
                let one = summarize_service(&v, &name)?;
                assert_eq!(one, all.remove(&name), "{name}");
            }
            assert!(all.is_empty(), "one-pass names no index knows: {all:?}");
        }
        engine.shutdown().await?;
        Ok(())
    }
}
