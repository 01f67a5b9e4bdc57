//! `/v1/internal/ui/services`, `/v1/internal/ui/nodes` and
//! `/v1/internal/ui/node/<node>`: the summaries the web UI reads, in
//! Consul's shapes (`ServiceListingSummary`, `NodeInfo`) so other tools can
//! read them too; and `/v1/internal/ui/node-summaries`, muster's own node
//! list with counts instead of every service and check. Each is one engine read on one snapshot, blocking with
//! `?index=` like every read, and shared between identical watchers.

use std::collections::BTreeMap;
use std::sync::Arc;

use hyper::Response;
use muster_engine::ui::{NodeDump, NodeSummary, ServiceSummary};
use muster_engine::{Engine, Indexed, WatchSet};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::acl::rules::Resource;
use crate::acl::Resolved;
use crate::catalog::MISSING_NODE;
use crate::error::{Error, Result};
use crate::read::passes;
use crate::response::Body;
use crate::router::EngineCtx;
use crate::routes::{exact, on_cluster, under, Route, GET};
use crate::shapes::{HealthCheckJson, NodeServiceJson};

/// One `/v1/internal/ui/services` entry (Consul's
/// `ServiceListingSummary`; the mesh fields are always empty).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceSummaryJson<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    kind: &'a str,
    name: &'a str,
    datacenter: &'a str,
    /// `null` when none (Go's nil slice).
    tags: Option<&'a [String]>,
    nodes: &'a [String],
    external_sources: Option<&'a [String]>,
    instance_count: usize,
    checks_passing: usize,
    checks_warning: usize,
    checks_critical: usize,
    gateway_config: Map<String, Value>,
    transparent_proxy: bool,
    connect_native: bool,
    connected_with_proxy: bool,
    connected_with_gateway: bool,
}

fn some<T>(list: &[T]) -> Option<&[T]> {
    (!list.is_empty()).then_some(list)
}

impl<'a> From<&'a ServiceSummary> for ServiceSummaryJson<'a> {
    fn from(s: &'a ServiceSummary) -> Self {
        ServiceSummaryJson {
            kind: &s.kind,
            name: &s.name,
            datacenter: &s.datacenter,
            tags: some(&s.tags),
            nodes: &s.nodes,
            external_sources: some(&s.external_sources),
            instance_count: s.instance_count,
            checks_passing: s.checks_passing,
            checks_warning: s.checks_warning,
            checks_critical: s.checks_critical,
            gateway_config: Map::new(),
            transparent_proxy: false,
            connect_native: false,
            connected_with_proxy: false,
            connected_with_gateway: false,
        }
    }
}

/// A node with its services and checks (Consul's `NodeInfo`, plus the
/// node's `Datacenter`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NodeInfoJson<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    node: &'a str,
    address: &'a str,
    datacenter: &'a str,
    tagged_addresses: &'a BTreeMap<String, String>,
    meta: &'a BTreeMap<String, String>,
    services: Vec<NodeServiceJson<'a>>,
    checks: Vec<HealthCheckJson<'a>>,
}

impl<'a> From<&'a NodeDump> for NodeInfoJson<'a> {
    fn from(d: &'a NodeDump) -> Self {
        NodeInfoJson {
            id: &d.node.id,
            node: &d.node.node,
            address: &d.node.address,
            datacenter: &d.node.datacenter,
            tagged_addresses: &d.node.tagged_addresses,
            meta: &d.node.meta,
            services: d.services.iter().map(NodeServiceJson::from).collect(),
            checks: d.checks.iter().map(HealthCheckJson::from).collect(),
        }
    }
}

/// One `/v1/internal/ui/node-summaries` entry (muster's own: Consul's
/// `NodeInfo` with counts in place of the services and checks, so the UI's
/// node list does not carry the whole catalog).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NodeSummaryJson<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    node: &'a str,
    address: &'a str,
    datacenter: &'a str,
    tagged_addresses: &'a BTreeMap<String, String>,
    meta: &'a BTreeMap<String, String>,
    service_count: usize,
    checks_passing: usize,
    checks_warning: usize,
    checks_critical: usize,
}

impl<'a> From<&'a NodeSummary> for NodeSummaryJson<'a> {
    fn from(s: &'a NodeSummary) -> Self {
        NodeSummaryJson {
            id: &s.node.id,
            node: &s.node.node,
            address: &s.node.address,
            datacenter: &s.node.datacenter,
            tagged_addresses: &s.node.tagged_addresses,
            meta: &s.node.meta,
            service_count: s.services,
            checks_passing: s.checks_passing,
            checks_warning: s.checks_warning,
            checks_critical: s.checks_critical,
        }
    }
}

/// An engine summary with its JSON shape.
trait Shaped {
    type Json<'a>: Serialize
    where
        Self: 'a;
    fn json(&self) -> Self::Json<'_>;
    /// Whether a token may see this entry (its service, or its node).
    fn visible(&self, acl: Option<&Resolved>) -> bool;
}

impl Shaped for Arc<ServiceSummary> {
    type Json<'a> = ServiceSummaryJson<'a>;
    fn json(&self) -> ServiceSummaryJson<'_> {
        ServiceSummaryJson::from(&**self)
    }
    fn visible(&self, acl: Option<&Resolved>) -> bool {
        acl.is_none_or(|r| crate::acl::may(r, Resource::Service, &self.name, false))
    }
}

impl Shaped for NodeDump {
    type Json<'a> = NodeInfoJson<'a>;
    fn json(&self) -> NodeInfoJson<'_> {
        NodeInfoJson::from(self)
    }
    fn visible(&self, acl: Option<&Resolved>) -> bool {
        crate::acl::may_read_node(acl, &self.node.node)
    }
}

impl Shaped for Arc<NodeSummary> {
    type Json<'a> = NodeSummaryJson<'a>;
    fn json(&self) -> NodeSummaryJson<'_> {
        NodeSummaryJson::from(&**self)
    }
    fn visible(&self, acl: Option<&Resolved>) -> bool {
        crate::acl::may_read_node(acl, &self.node.node)
    }
}

/// A summary list: `read` from the engine, each entry in its JSON shape,
/// `filter` applied to the shaped entries; through the shared slot even
/// without `?index=` (see `Ctx::summary_read`).
async fn summary_list<T, R>(ctx: &EngineCtx<'_>, read: R) -> Result<Response<Body>>
where
    T: Shaped,
    R: Fn(&Engine, &mut WatchSet) -> muster_engine::Result<Indexed<Vec<T>>>,
{
    let filter = ctx.filter()?;
    let engine = &ctx.engine;
    ctx.summary_read(|ws| {
        let r = read(engine, ws)?;
        let acl = ctx.acl.as_deref();
        let visible: Vec<&T> = r.value.iter().filter(|e| e.visible(acl)).collect();
        let hidden = visible.len() < r.value.len();
        let out: Vec<T::Json<'_>> = visible
            .into_iter()
            .map(Shaped::json)
            .filter(|j| passes(filter.as_ref(), j))
            .collect();
        let mut rendered = ctx.render_json(r.index, &out)?;
        crate::acl::filtered_header(&mut rendered, acl, hidden);
        Ok(rendered)
    })
    .await
}

/// `GET /v1/internal/ui/node/<node>`: 404 for an unknown node.
async fn node(ctx: &EngineCtx<'_>, name: &str) -> Result<Response<Body>> {
    if name.is_empty() {
        return Err(Error::bad_request(MISSING_NODE));
    }
    let engine = &ctx.engine;
    ctx.shared_read(|ws| {
        let r = engine.node_entry(name, ws)?;
        let (entry, checks) = r.value;
        let acl = ctx.acl.as_deref();
        match entry.filter(|e| crate::acl::may_read_node(acl, &e.node.node)) {
            Some(e) => {
                let node = e.node.node.clone();
                let dump = NodeDump {
                    services: e
                        .services
                        .into_iter()
                        .filter(|s| crate::acl::may_read_instance(acl, &s.service, &node))
                        .collect(),
                    checks: checks
                        .into_iter()
                        .filter(|c| crate::acl::may_read_check(acl, c))
                        .collect(),
                    node: e.node,
                };
                ctx.render_json(r.index, &NodeInfoJson::from(&dump))
            }
            None => Ok(crate::shared::Rendered::not_found(r.index)),
        }
    })
    .await
}

/// `/v1/internal/ui/*`.
pub(crate) const ROUTES: &[Route] = &[
    exact(
        "/v1/internal/ui/services",
        GET,
        on_cluster!(|ctx, _| summary_list(ctx, |e, ws| e.ui_services(ws)).await),
    ),
    exact(
        "/v1/internal/ui/nodes",
        GET,
        on_cluster!(|ctx, _| summary_list(ctx, |e, ws| e.ui_nodes(ws)).await),
    ),
    exact(
        "/v1/internal/ui/node-summaries",
        GET,
        on_cluster!(|ctx, _| summary_list(ctx, |e, ws| e.ui_node_summaries(ws)).await),
    ),
    under(
        "/v1/internal/ui/node/",
        GET,
        on_cluster!(|ctx, c| node(ctx, &c.rest).await),
    ),
];
