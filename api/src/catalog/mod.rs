//! `/v1/catalog/*` (consul-compat.md §3): the blocking reads over the
//! engine's catalog views, with `node-meta`, `tag` and `filter`, and the
//! routes; register/deregister bodies are `register.rs`.

use std::collections::{BTreeMap, BTreeSet};

use hyper::Response;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::read::{has_all_tags, node_meta_matches, passes};
use crate::response::Body;
use crate::router::EngineCtx;
use crate::routes::{exact, on_cluster, under, Route, GET, PUT};
use crate::shapes::{CatalogServiceJson, NodeJson, NodeServiceJson};

mod register;

#[cfg(test)]
pub(crate) use register::check_uuid;
use register::{deregister, register};
pub(crate) use register::{to_check, HealthCheckIn, HEALTH_CHECK};
pub use register::{MISSING_NODE, MISSING_SERVICE};

/// `GET /v1/catalog/datacenters` (not blocking): this agent's datacenter
/// first, then the others its WAN pool knows, nearest (round-trip time)
/// first.
pub(crate) fn datacenters(ctx: &EngineCtx<'_>) -> Result<Response<Body>> {
    let own = &ctx.st.cfg.datacenter;
    let mut dcs = vec![own.clone()];
    if let Some(cluster) = &ctx.st.cfg.cluster {
        dcs.extend(cluster.datacenters().into_iter().filter(|d| d != own));
    }
    ctx.json(&dcs)
}

/// `GET /v1/catalog/nodes`.
pub(crate) async fn nodes(ctx: &EngineCtx<'_>) -> Result<Response<Body>> {
    let filter = ctx.filter()?;
    let meta = ctx.node_meta();
    let engine = &ctx.engine;
    ctx.shared_read(|ws| {
        let r = engine.catalog_nodes(ws)?;
        let acl = ctx.acl.as_deref();
        let visible: Vec<_> = r
            .value
            .iter()
            .filter(|n| crate::acl::may_read_node(acl, &n.node))
            .collect();
        let hidden = visible.len() < r.value.len();
        let out: Vec<NodeJson<'_>> = visible
            .into_iter()
            .filter(|n| node_meta_matches(n, &meta))
            .map(NodeJson::from)
            .filter(|j| passes(filter.as_ref(), j))
            .collect();
        let mut rendered = ctx.render_json(r.index, &out)?;
        crate::acl::filtered_header(&mut rendered, acl, hidden);
        Ok(rendered)
    })
    .await
}

/// `GET /v1/catalog/services`: name → deduplicated, sorted tag union.
pub(crate) async fn services(ctx: &EngineCtx<'_>) -> Result<Response<Body>> {
    let filter = ctx.filter()?;
    let meta = ctx.node_meta();
    let engine = &ctx.engine;
    ctx.shared_read(|ws| {
        let r = engine.catalog_services(ws)?;
        let acl = ctx.acl.as_deref();
        let mut hidden = false;
        let mut out: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for sn in &r.value {
            if !crate::acl::may_read_instance(acl, &sn.service.service, &sn.node.node) {
                hidden = true;
                continue;
            }
            if !node_meta_matches(&sn.node, &meta)
                || !passes(
                    filter.as_ref(),
                    &CatalogServiceJson::new(&sn.node, &sn.service),
                )
            {
                continue;
            }
            out.entry(&sn.service.service)
                .or_default()
                .extend(sn.service.tags.iter().map(String::as_str));
        }
        let mut rendered = ctx.render_json(r.index, &out)?;
        crate::acl::filtered_header(&mut rendered, acl, hidden);
        Ok(rendered)
    })
    .await
}

/// `GET /v1/catalog/service/:name`.
pub(crate) async fn service(ctx: &EngineCtx<'_>, name: &str) -> Result<Response<Body>> {
    if name.is_empty() {
        return Err(Error::bad_request(MISSING_SERVICE));
    }
    let filter = ctx.filter()?;
    let meta = ctx.node_meta();
    let tags = ctx.tags();
    let engine = &ctx.engine;
    ctx.shared_read(|ws| {
        let r = engine.catalog_service(name, ws)?;
        let acl = ctx.acl.as_deref();
        let visible: Vec<_> = r
            .value
            .iter()
            .filter(|sn| crate::acl::may_read_instance(acl, &sn.service.service, &sn.node.node))
            .collect();
        let hidden = visible.len() < r.value.len();
        let out: Vec<CatalogServiceJson<'_>> = visible
            .into_iter()
            .filter(|sn| {
                node_meta_matches(&sn.node, &meta) && has_all_tags(&sn.service.tags, &tags)
            })
            .map(|sn| CatalogServiceJson::new(&sn.node, &sn.service))
            .filter(|j| passes(filter.as_ref(), j))
            .collect();
        let mut rendered = ctx.render_json(r.index, &out)?;
        crate::acl::filtered_header(&mut rendered, acl, hidden);
        Ok(rendered)
    })
    .await
}

/// `GET /v1/catalog/connect/:s` and `/v1/catalog/gateway-services/:s`: no
/// mesh yet, so `[]`, blocking on the service like its non-mesh sibling.
pub(crate) async fn mesh_empty(ctx: &EngineCtx<'_>, name: &str) -> Result<Response<Body>> {
    if name.is_empty() {
        return Err(Error::bad_request(MISSING_SERVICE));
    }
    ctx.filter()?;
    let engine = &ctx.engine;
    ctx.shared_read(|ws| {
        let index = engine.catalog_service(name, ws)?.index;
        ctx.render_json(index, &[(); 0])
    })
    .await
}

/// `{"Node":Node,"Services":...}` of the node endpoints.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NodeWith<'a, S> {
    node: NodeJson<'a>,
    services: S,
}

/// `GET /v1/catalog/node/:node` (`services_list` false) and
/// `/v1/catalog/node-services/:node` (true); unknown node → `null`.
pub(crate) async fn node(
    ctx: &EngineCtx<'_>,
    name: &str,
    services_list: bool,
) -> Result<Response<Body>> {
    if name.is_empty() {
        return Err(Error::bad_request(MISSING_NODE));
    }
    let filter = ctx.filter()?;
    let engine = &ctx.engine;
    ctx.shared_read(|ws| {
        let r = engine.catalog_node(name, ws)?;
        let acl = ctx.acl.as_deref();
        let Some(ns) = r
            .value
            .as_ref()
            .filter(|ns| crate::acl::may_read_node(acl, &ns.node.node))
        else {
            // Unknown, or hidden from this token: both are `null`.
            let mut rendered = ctx.render_json(r.index, &())?;
            crate::acl::filtered_header(&mut rendered, acl, r.value.is_some());
            return Ok(rendered);
        };
        let services = ns
            .services
            .iter()
            .filter(|s| crate::acl::may_read_instance(acl, &s.service, &ns.node.node))
            .map(NodeServiceJson::from)
            .filter(|j| passes(filter.as_ref(), j));
        let node = NodeJson::from(&ns.node);
        if services_list {
            let services: Vec<NodeServiceJson<'_>> = services.collect();
            ctx.render_json(r.index, &NodeWith { node, services })
        } else {
            let services: BTreeMap<&str, NodeServiceJson<'_>> =
                services.map(|j| (j.id, j)).collect();
            ctx.render_json(r.index, &NodeWith { node, services })
        }
    })
    .await
}

/// `/v1/catalog/*`.
pub(crate) const ROUTES: &[Route] = &[
    exact(
        "/v1/catalog/register",
        PUT,
        on_cluster!(|ctx, c| register(ctx, c.req).await),
    ),
    exact(
        "/v1/catalog/deregister",
        PUT,
        on_cluster!(|ctx, c| deregister(ctx, c.req).await),
    ),
    exact(
        "/v1/catalog/datacenters",
        GET,
        on_cluster!(|ctx, _| datacenters(ctx)),
    ),
    exact(
        "/v1/catalog/nodes",
        GET,
        on_cluster!(|ctx, _| nodes(ctx).await),
    ),
    exact(
        "/v1/catalog/services",
        GET,
        on_cluster!(|ctx, _| services(ctx).await),
    ),
    under(
        "/v1/catalog/service/",
        GET,
        on_cluster!(|ctx, c| service(ctx, &c.rest).await),
    ),
    under(
        "/v1/catalog/connect/",
        GET,
        on_cluster!(|ctx, c| mesh_empty(ctx, &c.rest).await),
    ),
    under(
        "/v1/catalog/gateway-services/",
        GET,
        on_cluster!(|ctx, c| mesh_empty(ctx, &c.rest).await),
    ),
    under(
        "/v1/catalog/node/",
        GET,
        on_cluster!(|ctx, c| node(ctx, &c.rest, false).await),
    ),
    under(
        "/v1/catalog/node-services/",
        GET,
        on_cluster!(|ctx, c| node(ctx, &c.rest, true).await),
    ),
];
