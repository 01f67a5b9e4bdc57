//! The engine's typed reads of the KV, catalog and health views, each
//! with the index that goes into `X-Consul-Index` (and the watch key a
//! blocking read waits on, in its doc).

use std::collections::HashMap;
use std::sync::Arc;

use crate::engine::Engine;
use crate::error::Result;
use crate::tables::{catalog, kv};
use crate::types::{
    Check, Indexed, KvEntry, Node, NodeServices, Service, ServiceHealth, ServiceNode,
};
use crate::views::{NODE_INDEX_PREFIX, SERVICE_INDEX_PREFIX};
use crate::watch::Table;

impl Engine {
    /// One KV key. Index: the key's `ModifyIndex` when found, else the KV
    /// table index (≥ 1).
    pub fn kv_get(&self, key: &str) -> Result<Indexed<Option<KvEntry>>> {
        let views = &self.inner.shared.views;
        match kv::get(views, key)? {
            Some(e) => Ok(Indexed {
                index: e.modify_index.max(1),
                value: Some(e),
            }),
            None => Ok(Indexed {
                index: self.kv_table_index()?,
                value: None,
            }),
        }
    }

    /// Index of a prefix read: max `ModifyIndex` of `entries` and of
    /// tombstones under the prefix; the table index if that is 0 or the
    /// prefix is empty (≥ 1).
    fn prefix_index(&self, prefix: &str, max_modify: u64) -> Result<u64> {
        if prefix.is_empty() {
            return self.kv_table_index();
        }
        let idx = max_modify.max(kv::tombstone_index(&self.inner.shared.views, prefix)?);
        if idx == 0 {
            self.kv_table_index()
        } else {
            Ok(idx)
        }
    }

    /// Every KV entry whose key starts with `prefix`, sorted by key. Index:
    /// max `ModifyIndex` of the entries and of tombstones under the prefix; the
    /// KV table index if nothing matches or the prefix is empty (≥ 1).
    pub fn kv_list(&self, prefix: &str) -> Result<Indexed<Vec<KvEntry>>> {
        let entries = kv::list(&self.inner.shared.views, prefix)?;
        let max = entries.iter().map(|e| e.modify_index).max().unwrap_or(0);
        Ok(Indexed {
            index: self.prefix_index(prefix, max)?,
            value: entries,
        })
    }

    /// Key names under `prefix`, cut after the first `separator` past the
    /// prefix and deduplicated (when a separator is given), sorted. Index as
    /// for [`Engine::kv_list`].
    pub fn kv_keys(&self, prefix: &str, separator: Option<&str>) -> Result<Indexed<Vec<String>>> {
        let entries = kv::list(&self.inner.shared.views, prefix)?;
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
            index: self.prefix_index(prefix, max)?,
            value: keys,
        })
    }

    /// The KV table index, tombstones included (≥ 1).
    pub fn kv_table_index(&self) -> Result<u64> {
        Ok(self.inner.shared.views.table_index(Table::Kv)?.max(1))
    }

    /// Every catalog node, sorted by name. Index: the nodes table.
    /// Watch: `WatchKey::Table(Table::Nodes)`.
    pub fn catalog_nodes(&self) -> Result<Indexed<Vec<Node>>> {
        let views = self.views();
        Ok(Indexed {
            index: views.table_index(Table::Nodes)?.max(1),
            value: catalog::all_nodes(views)?,
        })
    }

    /// Every service instance with its node, sorted by service name, node,
    /// ID. Index: the services table. Watch: `WatchKey::Table(Table::Services)`.
    pub fn catalog_services(&self) -> Result<Indexed<Vec<ServiceNode>>> {
        let views = self.views();
        let index = views.table_index(Table::Services)?.max(1);
        let mut nodes = std::collections::HashMap::new();
        let mut out = Vec::new();
        for item in views.services.iter() {
            let (_, v) = item.into_inner()?;
            let service: Service = crate::views::decode(&v, "service")?;
            let lower = service.node.to_lowercase();
            let node = match nodes.get(&lower) {
                Some(n) => Clone::clone(n),
                None => {
                    let Some(n) = catalog::get_node(views, &lower)? else {
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

    /// The per-service index of `name`: bumped by every write that can change
    /// its catalog or health results, kept after its last instance goes (so
    /// it never goes backwards); the services table index for a name never
    /// registered (≥ 1).
    fn service_index(&self, name: &str) -> Result<u64> {
        let views = self.views();
        let idx = views.meta_index(&format!("{SERVICE_INDEX_PREFIX}{name}"))?;
        if idx > 0 {
            Ok(idx)
        } else {
            Ok(views.table_index(Table::Services)?.max(1))
        }
    }

    /// The per-node index (lowercase name), or the max catalog table index.
    fn node_index(&self, lower: &str) -> Result<u64> {
        let views = self.views();
        let idx = views.meta_index(&format!("{NODE_INDEX_PREFIX}{lower}"))?;
        if idx > 0 {
            return Ok(idx);
        }
        let mut max = 1;
        for t in [Table::Nodes, Table::Services, Table::Checks] {
            max = max.max(views.table_index(t)?);
        }
        Ok(max)
    }

    /// The instances of one service with their nodes, sorted by node then ID.
    /// Index: the per-service index (never goes backwards, also after the
    /// last instance is deregistered). Watch: `WatchKey::Service(name)`.
    pub fn catalog_service(&self, name: &str) -> Result<Indexed<Vec<ServiceNode>>> {
        let index = self.service_index(name)?;
        let value = catalog::service_health(self.views(), name, false)?
            .into_iter()
            .map(|h| ServiceNode {
                node: h.node,
                service: h.service,
            })
            .collect();
        Ok(Indexed { index, value })
    }

    /// A node and its services (`None` if unknown; names match
    /// case-insensitively). Index: the per-node index. Watch:
    /// `WatchKey::Node(name.to_lowercase())`.
    pub fn catalog_node(&self, node: &str) -> Result<Indexed<Option<NodeServices>>> {
        let lower = node.to_lowercase();
        let index = self.node_index(&lower)?;
        let views = self.views();
        let value = match catalog::get_node(views, &lower)? {
            Some(node) => Some(NodeServices {
                node,
                services: catalog::node_services(views, &lower)?,
            }),
            None => None,
        };
        Ok(Indexed { index, value })
    }

    /// Every check on a node (node and service checks), sorted by ID.
    /// Index: the per-node index. Watch: `WatchKey::Node(name.to_lowercase())`.
    pub fn health_node(&self, node: &str) -> Result<Indexed<Vec<Check>>> {
        let lower = node.to_lowercase();
        Ok(Indexed {
            index: self.node_index(&lower)?,
            value: catalog::node_checks(self.views(), &lower)?,
        })
    }

    /// The instances of one service, each with its node and checks (the
    /// node's checks, then the instance's). Index: the per-service index.
    /// Watch: `WatchKey::Service(name)`. `/v1/health/checks/:s` is the
    /// instance checks of this result.
    pub fn health_service(&self, name: &str) -> Result<Indexed<Vec<ServiceHealth>>> {
        let index = self.service_index(name)?;
        Ok(Indexed {
            index,
            value: catalog::service_health(self.views(), name, true)?,
        })
    }

    /// [`Engine::health_service`], shared: the decoded result is kept per
    /// service name and handed out again while the per-service index has
    /// not moved (every write that can change a service's health moves
    /// it), so a hot name costs one index read instead of a scan and a
    /// decode of every instance, node and check. For the DNS hot path.
    pub fn health_service_shared(&self, name: &str) -> Result<Indexed<Arc<Vec<ServiceHealth>>>> {
        let cache = &self.inner.health_cache;
        let index = self.service_index(name)?;
        if let Some((cached, value)) = cache.get(name) {
            if cached == index {
                return Ok(Indexed { index, value });
            }
        }
        // The index is read before the rows: a write landing in between
        // leaves newer rows under an older index, which the next read
        // replaces; never older rows under a newer index.
        let value = Arc::new(catalog::service_health(self.views(), name, true)?);
        cache.put(name, index, value.clone());
        Ok(Indexed { index, value })
    }

    /// Every check, sorted by node then ID. Index: the checks table.
    /// Watch: `WatchKey::Table(Table::Checks)`.
    pub fn health_checks_all(&self) -> Result<Indexed<Vec<Check>>> {
        let views = self.views();
        Ok(Indexed {
            index: views.table_index(Table::Checks)?.max(1),
            value: catalog::all_checks(views)?,
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
