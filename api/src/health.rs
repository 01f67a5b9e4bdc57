//! `/v1/health/*` (consul-compat.md §4): blocking reads of checks and of
//! service instances with their checks, with `passing`, `tag`, `node-meta`
//! and `filter`. Check semantics (status, aggregation inputs) are the
//! engine's; this module only selects and shapes.

use hyper::Response;
use muster_engine::Status;
use serde::Serialize;

use crate::catalog::{MISSING_NODE, MISSING_SERVICE};
use crate::error::{Error, Result};
use crate::read::{has_all_tags, node_meta_matches, passes};
use crate::response::Body;
use crate::router::EngineCtx;
use crate::routes::{on_cluster, under, Route, GET};
use crate::shapes::{HealthCheckJson, NodeJson, NodeServiceJson};

/// `Missing check state` body.
pub const MISSING_STATE: &str = "Missing check state";
/// `Invalid value for ?passing` body.
pub const INVALID_PASSING: &str = "Invalid value for ?passing";

/// One `/v1/health/service/:s` entry (also a prepared query's `Nodes`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ServiceEntry<'a> {
    node: NodeJson<'a>,
    service: NodeServiceJson<'a>,
    checks: Vec<HealthCheckJson<'a>>,
}

impl<'a> From<&'a muster_engine::ServiceHealth> for ServiceEntry<'a> {
    fn from(e: &'a muster_engine::ServiceHealth) -> Self {
        ServiceEntry {
            node: NodeJson::from(&e.node),
            service: NodeServiceJson::from(&e.service),
            checks: e.checks.iter().map(HealthCheckJson::from).collect(),
        }
    }
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// `?passing`: absent → false; present and empty → true; else a Go bool
/// (400 `Invalid value for ?passing` otherwise).
fn passing_param(ctx: &EngineCtx<'_>) -> Result<bool> {
    match ctx.query.get("passing") {
        None => Ok(false),
        Some("") => Ok(true),
        Some(v) => parse_bool(v).ok_or_else(|| Error::bad_request(INVALID_PASSING)),
    }
}

/// Whether `c` may be shown to `acl`; notes in `hidden` when not.
fn visible_check(
    acl: Option<&crate::acl::Resolved>,
    c: &muster_engine::Check,
    hidden: &mut bool,
) -> bool {
    let ok = crate::acl::may_read_check(acl, c);
    *hidden |= !ok;
    ok
}

/// `GET /v1/health/node/:node`: every check on the node.
pub(crate) async fn node(ctx: &EngineCtx<'_>, name: &str) -> Result<Response<Body>> {
    if name.is_empty() {
        return Err(Error::bad_request(MISSING_NODE));
    }
    let filter = ctx.filter()?;
    let engine = &ctx.engine;
    ctx.shared_read(|ws| {
        let r = engine.health_node(name, ws)?;
        let acl = ctx.acl.as_deref();
        let mut hidden = false;
        let out: Vec<HealthCheckJson<'_>> = r
            .value
            .iter()
            .filter(|c| visible_check(acl, c, &mut hidden))
            .map(HealthCheckJson::from)
            .filter(|j| passes(filter.as_ref(), j))
            .collect();
        let mut rendered = ctx.render_json(r.index, &out)?;
        crate::acl::filtered_header(&mut rendered, acl, hidden);
        Ok(rendered)
    })
    .await
}

/// `GET /v1/health/checks/:service`: the instance checks of every instance.
pub(crate) async fn checks(ctx: &EngineCtx<'_>, name: &str) -> Result<Response<Body>> {
    if name.is_empty() {
        return Err(Error::bad_request(MISSING_SERVICE));
    }
    let filter = ctx.filter()?;
    let meta = ctx.node_meta();
    let engine = &ctx.engine;
    ctx.shared_read(|ws| {
        let r = engine.health_service(name, ws)?;
        let acl = ctx.acl.as_deref();
        let mut hidden = false;
        let out: Vec<HealthCheckJson<'_>> = r
            .value
            .iter()
            .filter(|e| node_meta_matches(&e.node, &meta))
            .flat_map(|e| {
                e.checks
                    .iter()
                    .filter(|c| !c.service_id.is_empty() && c.service_id == e.service.id)
            })
            .filter(|c| visible_check(acl, c, &mut hidden))
            .map(HealthCheckJson::from)
            .filter(|j| passes(filter.as_ref(), j))
            .collect();
        let mut rendered = ctx.render_json(r.index, &out)?;
        crate::acl::filtered_header(&mut rendered, acl, hidden);
        Ok(rendered)
    })
    .await
}

/// `GET /v1/health/service/:service`.
pub(crate) async fn service(ctx: &EngineCtx<'_>, name: &str) -> Result<Response<Body>> {
    if name.is_empty() {
        return Err(Error::bad_request(MISSING_SERVICE));
    }
    metrics::counter!("consul.health.service.query", "service" => name.to_string()).increment(1);
    let passing = passing_param(ctx)?;
    let filter = ctx.filter()?;
    let meta = ctx.node_meta();
    let tags = ctx.tags();
    let engine = &ctx.engine;
    ctx.shared_read(|ws| {
        let r = engine.health_service(name, ws)?;
        let acl = ctx.acl.as_deref();
        let visible: Vec<_> = r
            .value
            .iter()
            .filter(|e| crate::acl::may_read_instance(acl, &e.service.service, &e.node.node))
            .collect();
        let hidden = visible.len() < r.value.len();
        let out: Vec<ServiceEntry<'_>> = visible
            .into_iter()
            .filter(|e| node_meta_matches(&e.node, &meta) && has_all_tags(&e.service.tags, &tags))
            .filter(|e| !passing || e.checks.iter().all(|c| c.status == Status::Passing))
            .map(ServiceEntry::from)
            .filter(|j| passes(filter.as_ref(), j))
            .collect();
        let mut rendered = ctx.render_json(r.index, &out)?;
        crate::acl::filtered_header(&mut rendered, acl, hidden);
        Ok(rendered)
    })
    .await
}

/// `GET /v1/health/state/:state`: `any|passing|warning|critical`; an
/// unknown state yields `[]`.
pub(crate) async fn state(ctx: &EngineCtx<'_>, state: &str) -> Result<Response<Body>> {
    if state.is_empty() {
        return Err(Error::bad_request(MISSING_STATE));
    }
    let want = match state {
        "any" => None,
        other => Some(Status::parse(other)),
    };
    let filter = ctx.filter()?;
    let meta = ctx.node_meta();
    let engine = &ctx.engine;
    ctx.shared_read(|ws| {
        let r = engine.health_checks_all(ws)?;
        let acl = ctx.acl.as_deref();
        let mut hidden = false;
        // node-meta needs the nodes; read them only when asked.
        let nodes = if meta.is_empty() {
            None
        } else {
            Some(engine.catalog_nodes(ws)?.value)
        };
        let node_ok = |node: &str| match &nodes {
            None => true,
            Some(nodes) => nodes
                .iter()
                .any(|n| n.node.eq_ignore_ascii_case(node) && node_meta_matches(n, &meta)),
        };
        let out: Vec<HealthCheckJson<'_>> = r
            .value
            .iter()
            .filter(|c| match want {
                None => true,
                Some(s) => s == Some(c.status),
            })
            .filter(|c| node_ok(&c.node))
            .filter(|c| visible_check(acl, c, &mut hidden))
            .map(HealthCheckJson::from)
            .filter(|j| passes(filter.as_ref(), j))
            .collect();
        let mut rendered = ctx.render_json(r.index, &out)?;
        crate::acl::filtered_header(&mut rendered, acl, hidden);
        Ok(rendered)
    })
    .await
}

/// `/v1/health/*`.
pub(crate) const ROUTES: &[Route] = &[
    under(
        "/v1/health/node/",
        GET,
        on_cluster!(|ctx, c| node(ctx, &c.rest).await),
    ),
    under(
        "/v1/health/checks/",
        GET,
        on_cluster!(|ctx, c| checks(ctx, &c.rest).await),
    ),
    under(
        "/v1/health/service/",
        GET,
        on_cluster!(|ctx, c| service(ctx, &c.rest).await),
    ),
    under(
        "/v1/health/state/",
        GET,
        on_cluster!(|ctx, c| state(ctx, &c.rest).await),
    ),
    under(
        "/v1/health/connect/",
        GET,
        on_cluster!(|ctx, c| crate::catalog::mesh_empty(ctx, &c.rest).await),
    ),
    under(
        "/v1/health/ingress/",
        GET,
        on_cluster!(|ctx, c| crate::catalog::mesh_empty(ctx, &c.rest).await),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_parse_bool_like_go() {
        for t in ["1", "t", "T", "true", "TRUE", "True"] {
            assert_eq!(parse_bool(t), Some(true));
        }
        for f in ["0", "f", "F", "false", "FALSE", "False"] {
            assert_eq!(parse_bool(f), Some(false));
        }
        assert_eq!(parse_bool("yes"), None);
    }
}
