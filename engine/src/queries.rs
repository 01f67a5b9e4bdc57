//! The engine's typed reads of the KV, catalog and health views. Each runs
//! on one [`ReadView`] (a consistent snapshot), returns the index that goes
//! into `X-Consul-Index`, and fills the [`WatchSet`] of what it read: the
//! blocking loop waits on exactly that set, so callers never choose what a
//! read waits on. The set covers every change to a query's answer (a
//! property test, `tests/watch_sets.rs`, holds them to it), with one
//! exception: an empty answer (a missing key, an empty prefix, a service
//! never registered) takes a table's index, which unrelated writes move
//! without waking it (for a missing key that is Consul's rule,
//! consul-compat.md §1.1 point 6).

use std::collections::HashMap;
use std::sync::Arc;

use crate::engine::Engine;
use crate::error::Result;
use crate::stage::Read;
use crate::tables::{catalog, kv, objects};
use crate::types::{
    Check, Indexed, KvEntry, Node, NodeServices, Service, ServiceHealth, ServiceNode, StoredObject,
};
use crate::view::{meta_index, table_index, ReadView};
use crate::views::{NODE_INDEX_PREFIX, SERVICE_INDEX_PREFIX};
use crate::watch::{Table, WatchKey, WatchSet};

/// The KV table index, tombstones included (≥ 1).
fn kv_table_index(v: &impl Read) -> Result<u64> {
    Ok(table_index(v, Table::Kv)?.max(1))
}

/// The index of the last restore: no KV read answers below it, though the
/// entries it restored keep their own (older) `ModifyIndex`es.
fn restore_floor(v: &impl Read) -> Result<u64> {
    meta_index(v, "restored_at")
}

/// Index of a prefix read: max `ModifyIndex` of its entries and of
/// tombstones under the prefix; the table index if that is 0 or the prefix
/// is empty (≥ 1); never below the last restore.
fn prefix_index(v: &impl Read, prefix: &str, max_modify: u64) -> Result<u64> {
    if prefix.is_empty() {
        return kv_table_index(v);
    }
    let idx = max_modify.max(kv::tombstone_index(v, prefix)?);
    if idx == 0 {
        kv_table_index(v)
    } else {
        Ok(idx.max(restore_floor(v)?))
    }
}

/// The per-service index of `name`: bumped by every write that can change
/// its catalog or health results, kept after its last instance goes (so it
/// never goes backwards); the services table index for a name never
/// registered (≥ 1).
fn service_index(v: &impl Read, name: &str) -> Result<u64> {
    let idx = meta_index(v, &format!("{SERVICE_INDEX_PREFIX}{name}"))?;
    if idx > 0 {
        Ok(idx)
    } else {
        Ok(table_index(v, Table::Services)?.max(1))
    }
}

/// The per-node index (lowercase name), or the max catalog table index.
fn node_index(v: &impl Read, lower: &str) -> Result<u64> {
    let idx = meta_index(v, &format!("{NODE_INDEX_PREFIX}{lower}"))?;
    if idx > 0 {
        return Ok(idx);
    }
    let mut max = 1;
    for t in [Table::Nodes, Table::Services, Table::Checks] {
        max = max.max(table_index(v, t)?);
    }
    Ok(max)
}

impl Engine {
    /// A consistent view of everything applied so far, for one query.
    pub(crate) fn read_view(&self) -> ReadView<'_> {
        ReadView::new(self.views())
    }

    /// One KV key. Index: the key's `ModifyIndex` (not below the last
    /// restore) when found, else the KV table index (≥ 1). Watches the key
    /// (its write or delete).
    pub fn kv_get(&self, key: &str, ws: &mut WatchSet) -> Result<Indexed<Option<KvEntry>>> {
        let v = self.read_view();
        ws.add(WatchKey::KvKey(key.to_string()));
        match kv::get(&v, key)? {
            Some(e) => Ok(Indexed {
                index: e.modify_index.max(restore_floor(&v)?).max(1),
                value: Some(e),
            }),
            None => Ok(Indexed {
                index: kv_table_index(&v)?,
                value: None,
            }),
        }
    }

    /// Every KV entry whose key starts with `prefix`, sorted by key. Index:
    /// max `ModifyIndex` of the entries and of tombstones under the prefix;
    /// the KV table index if nothing matches or the prefix is empty (≥ 1).
    /// Watches the prefix.
    pub fn kv_list(&self, prefix: &str, ws: &mut WatchSet) -> Result<Indexed<Vec<KvEntry>>> {
        let v = self.read_view();
        ws.add(WatchKey::KvPrefix(prefix.to_string()));
        let entries = kv::list(&v, prefix)?;
        let max = entries.iter().map(|e| e.modify_index).max().unwrap_or(0);
        Ok(Indexed {
            index: prefix_index(&v, prefix, max)?,
            value: entries,
        })
    }

    /// Key names under `prefix`, cut after the first `separator` past the
    /// prefix and deduplicated (when a separator is given), sorted. Index
    /// and watch as for [`Engine::kv_list`].
    pub fn kv_keys(
        &self,
        prefix: &str,
        separator: Option<&str>,
        ws: &mut WatchSet,
    ) -> Result<Indexed<Vec<String>>> {
        let v = self.read_view();
        ws.add(WatchKey::KvPrefix(prefix.to_string()));
        let entries = kv::list(&v, prefix)?;
        let max = entries.iter().map(|e| e.modify_index).max().unwrap_or(0);
        let mut keys: Vec<String> = Vec::with_capacity(entries.len());
        for e in entries {
            let rest = e.key.get(prefix.len()..).unwrap_or_default();
            let cut = match separator {
                Some(sep) if !sep.is_empty() => rest
                    .find(sep)
                    .map(|p| format!("{prefix}{}", &rest[..p + sep.len()])),
                _ => None,
            };
            let name = cut.unwrap_or(e.key);
            if keys.last() != Some(&name) {
                keys.push(name);
            }
        }
        Ok(Indexed {
            index: prefix_index(&v, prefix, max)?,
            value: keys,
        })
    }

    /// The KV table index, tombstones included (≥ 1).
    pub fn kv_table_index(&self) -> Result<u64> {
        kv_table_index(&self.read_view())
    }

    /// The catalog's index: the highest of the nodes, services, checks and
    /// objects (prepared queries) tables, which it watches. Every change a DNS answer can depend on
    /// moves it (what another datacenter's cached answers follow).
    pub fn catalog_index(&self, ws: &mut WatchSet) -> Result<Indexed<()>> {
        let v = self.read_view();
        let mut index = 1;
        for table in [Table::Nodes, Table::Services, Table::Checks, Table::Objects] {
            ws.add(WatchKey::Table(table));
            index = index.max(table_index(&v, table)?);
        }
        Ok(Indexed { index, value: () })
    }

    /// Every stored object of `kind`, sorted by ID. Index: the objects
    /// table, which it watches.
    pub fn objects(&self, kind: &str, ws: &mut WatchSet) -> Result<Indexed<Vec<StoredObject>>> {
        let v = self.read_view();
        ws.add(WatchKey::Table(Table::Objects));
        Ok(Indexed {
            index: table_index(&v, Table::Objects)?.max(1),
            value: objects::list(&v, kind)?,
        })
    }

    /// One consistent read of the stored objects: the table's index and
    /// rows from the same view, so a cache keyed by the index never holds
    /// rows older or newer than its key.
    pub fn objects_view(&self) -> ObjectsView<'_> {
        ObjectsView {
            v: self.read_view(),
        }
    }

    /// One stored object. Index: the objects table, which it watches.
    pub fn object(
        &self,
        kind: &str,
        id: &str,
        ws: &mut WatchSet,
    ) -> Result<Indexed<Option<StoredObject>>> {
        let v = self.read_view();
        ws.add(WatchKey::Table(Table::Objects));
        Ok(Indexed {
            index: table_index(&v, Table::Objects)?.max(1),
            value: objects::get(&v, kind, id)?,
        })
    }

    /// Every catalog node, sorted by name. Index: the nodes table, which it
    /// watches.
    pub fn catalog_nodes(&self, ws: &mut WatchSet) -> Result<Indexed<Vec<Node>>> {
        let v = self.read_view();
        ws.add(WatchKey::Table(Table::Nodes));
        Ok(Indexed {
            index: table_index(&v, Table::Nodes)?.max(1),
            value: catalog::all_nodes(&v)?,
        })
    }

    /// Every service instance with its node, sorted by service name, node,
    /// ID. Index: the services table, which it watches.
    pub fn catalog_services(&self, ws: &mut WatchSet) -> Result<Indexed<Vec<ServiceNode>>> {
        let v = self.read_view();
        ws.add(WatchKey::Table(Table::Services));
        let index = table_index(&v, Table::Services)?.max(1);
        let mut nodes = HashMap::new();
        let mut out = Vec::new();
        let mut services: Vec<Service> = Vec::new();
        v.scan(crate::stage::Ks::Services, b"", &mut |_, row| {
            services.push(crate::views::decode(row, "service")?);
            Ok(true)
        })?;
        for service in services {
            let lower = service.node.to_lowercase();
            let node = match nodes.get(&lower) {
                Some(n) => Clone::clone(n),
                None => {
                    let Some(n) = catalog::get_node(&v, &lower)? else {
                        continue;
                    };
                    nodes.insert(lower, n.clone());
                    n
                }
            };
            out.push(ServiceNode { node, service });
        }
        out.sort_by(|a, b| {
            (&a.service.service, &a.node.node, &a.service.id).cmp(&(
                &b.service.service,
                &b.node.node,
                &b.service.id,
            ))
        });
        Ok(Indexed { index, value: out })
    }

    /// The instances of one service with their nodes, sorted by node then ID.
    /// Index: the per-service index (never goes backwards, also after the
    /// last instance is deregistered). Watches the service.
    pub fn catalog_service(
        &self,
        name: &str,
        ws: &mut WatchSet,
    ) -> Result<Indexed<Vec<ServiceNode>>> {
        let v = self.read_view();
        ws.add(WatchKey::Service(name.to_string()));
        let index = service_index(&v, name)?;
        let value = catalog::service_health(&v, name, false)?
            .into_iter()
            .map(|h| ServiceNode {
                node: h.node,
                service: h.service,
            })
            .collect();
        Ok(Indexed { index, value })
    }

    /// A node and its services (`None` if unknown; names match
    /// case-insensitively). Index: the per-node index. Watches the node.
    pub fn catalog_node(
        &self,
        node: &str,
        ws: &mut WatchSet,
    ) -> Result<Indexed<Option<NodeServices>>> {
        let v = self.read_view();
        let lower = node.to_lowercase();
        ws.add(WatchKey::Node(lower.clone()));
        let index = node_index(&v, &lower)?;
        let value = match catalog::get_node(&v, &lower)? {
            Some(node) => Some(NodeServices {
                node,
                services: catalog::node_services(&v, &lower)?,
            }),
            None => None,
        };
        Ok(Indexed { index, value })
    }

    /// A node with its services, and every check on it, from one view.
    /// Index: the per-node index. Watches the node.
    pub fn node_entry(
        &self,
        node: &str,
        ws: &mut WatchSet,
    ) -> Result<Indexed<(Option<NodeServices>, Vec<Check>)>> {
        let v = self.read_view();
        let lower = node.to_lowercase();
        ws.add(WatchKey::Node(lower.clone()));
        let entry = match catalog::get_node(&v, &lower)? {
            Some(node) => Some(NodeServices {
                node,
                services: catalog::node_services(&v, &lower)?,
            }),
            None => None,
        };
        Ok(Indexed {
            index: node_index(&v, &lower)?,
            value: (entry, catalog::node_checks(&v, &lower)?),
        })
    }

    /// Every check on a node (node and service checks), sorted by ID.
    /// Index: the per-node index. Watches the node.
    pub fn health_node(&self, node: &str, ws: &mut WatchSet) -> Result<Indexed<Vec<Check>>> {
        let v = self.read_view();
        let lower = node.to_lowercase();
        ws.add(WatchKey::Node(lower.clone()));
        Ok(Indexed {
            index: node_index(&v, &lower)?,
            value: catalog::node_checks(&v, &lower)?,
        })
    }

    /// The instances of one service, each with its node and checks (the
    /// node's checks, then the instance's). Index: the per-service index.
    /// Watches the service. `/v1/health/checks/:s` is the instance checks
    /// of this result.
    pub fn health_service(
        &self,
        name: &str,
        ws: &mut WatchSet,
    ) -> Result<Indexed<Vec<ServiceHealth>>> {
        let v = self.read_view();
        ws.add(WatchKey::Service(name.to_string()));
        Ok(Indexed {
            index: service_index(&v, name)?,
            value: catalog::service_health(&v, name, true)?,
        })
    }

    /// [`Engine::health_service`], shared: the decoded result is kept per
    /// service name and handed out again while the per-service index has
    /// not moved (every write that can change a service's health moves
    /// it), so a hot name costs one index read instead of a scan and a
    /// decode of every instance, node and check. For the DNS hot path.
    pub fn health_service_shared(&self, name: &str) -> Result<Indexed<Arc<Vec<ServiceHealth>>>> {
        let cache = &self.inner.health_cache;
        // Every write that can change the result moves the per-service
        // index, so a cached result (read on one view) at the index now
        // committed is exactly what a fresh view would read: check it
        // without opening one.
        if let Some((cached, value)) = cache.get(name) {
            if cached == service_index(self.views(), name)? {
                return Ok(Indexed {
                    index: cached,
                    value,
                });
            }
        }
        let v = self.read_view();
        let index = service_index(&v, name)?;
        // Index and rows come from one view, so they always agree.
        let value = Arc::new(catalog::service_health(&v, name, true)?);
        cache.put(name, index, value.clone());
        Ok(Indexed { index, value })
    }

    /// Every check, sorted by node then ID. Index: the checks table, which
    /// it watches.
    pub fn health_checks_all(&self, ws: &mut WatchSet) -> Result<Indexed<Vec<Check>>> {
        let v = self.read_view();
        ws.add(WatchKey::Table(Table::Checks));
        Ok(Indexed {
            index: table_index(&v, Table::Checks)?.max(1),
            value: catalog::all_checks(&v)?,
        })
    }
}

/// Most names [`HealthCache`] keeps; past it, it starts over.
const HEALTH_CACHE_NAMES: usize = 4096;

/// A decoded `health_service` result and the per-service index it was
/// read at.
type CachedHealth = (u64, Arc<Vec<ServiceHealth>>);

/// `health_service` results by service name.
#[derive(Default)]
pub(crate) struct HealthCache {
    map: std::sync::RwLock<HashMap<String, CachedHealth>>,
}

impl HealthCache {
    fn get(&self, name: &str) -> Option<CachedHealth> {
        let map = self
            .map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(name).map(|(i, v)| (*i, v.clone()))
    }

    fn put(&self, name: &str, index: u64, value: Arc<Vec<ServiceHealth>>) {
        let mut map = self
            .map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= HEALTH_CACHE_NAMES && !map.contains_key(name) {
            map.clear();
        }
        // Never replace a newer result with an older one.
        if map.get(name).is_none_or(|(i, _)| *i <= index) {
            map.insert(name.to_string(), (index, value));
        }
    }
}

/// See [`Engine::objects_view`].
pub struct ObjectsView<'a> {
    v: ReadView<'a>,
}

impl ObjectsView<'_> {
    /// The objects table's index (≥ 1).
    pub fn index(&self) -> Result<u64> {
        Ok(table_index(&self.v, Table::Objects)?.max(1))
    }

    /// Every object of `kind`, sorted by ID.
    pub fn list(&self, kind: &str) -> Result<Vec<StoredObject>> {
        objects::list(&self.v, kind)
    }
}
