//! Executing a prepared query: the healthy instances of its service here
//! (Consul's rules: critical instances never, warning ones not with
//! `OnlyPassing`, checks in `IgnoreCheckIDs` not counted; `Tags` with
//! `!tag` exclusions, `NodeMeta`, `ServiceMeta`), shuffled, the agent's own
//! node first with `Near: "_agent"`; and when none is left, failover: the
//! `NearestN` nearest other datacenters (by round-trip time), then
//! `Datacenters` in order, each asked to run the same (rendered) query
//! over `PUT /v1/internal/query/execute`, the first with instances
//! answering.

use std::time::Duration;

use muster_engine::{Check, Engine, Node, Service, ServiceHealth, Status, WatchSet};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::model::{self, Query};
use crate::error::{Error, Result};
use crate::ApiConfig;

/// The path another datacenter runs a query at.
pub(crate) const REMOTE_PATH: &str = "/v1/internal/query/execute";

/// A query's outcome.
#[derive(Debug, Clone)]
pub struct Executed {
    /// The (rendered) query that ran.
    pub(crate) query: Query,
    /// The service it asked for.
    pub service: String,
    /// The instances, in answer order.
    pub nodes: Vec<ServiceHealth>,
    /// `DNS.TTL` (`None`: the agent's service TTL).
    pub ttl: Option<Duration>,
    /// Where they came from.
    pub datacenter: String,
    /// How many other datacenters were asked.
    pub failovers: u32,
    /// The index of the answering datacenter's read.
    pub index: u64,
}

/// What another datacenter answers (muster to muster).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RemoteResult {
    pub index: u64,
    pub nodes: Vec<(Node, Service, Vec<Check>)>,
}

/// The instances `q` selects here, with the read's index.
pub(crate) fn run_local(
    engine: &Engine,
    q: &Query,
    agent_node: &str,
    limit: Option<usize>,
) -> Result<(u64, Vec<ServiceHealth>)> {
    let mut ws = WatchSet::new();
    let r = engine.health_service(&q.service.service, &mut ws)?;
    let s = &q.service;
    let mut nodes: Vec<ServiceHealth> = r
        .value
        .into_iter()
        .filter(|e| {
            e.checks
                .iter()
                .filter(|c| !s.ignore_check_ids.contains(&c.check_id))
                .all(|c| match c.status {
                    Status::Passing => true,
                    Status::Warning => !s.only_passing,
                    _ => false,
                })
        })
        .filter(|e| tags_match(&e.service.tags, &s.tags))
        .filter(|e| {
            s.node_meta
                .iter()
                .all(|(k, v)| e.node.meta.get(k) == Some(v))
        })
        .filter(|e| {
            s.service_meta
                .iter()
                .all(|(k, v)| e.service.meta.get(k) == Some(v))
        })
        .collect();
    nodes.shuffle(&mut rand::rng());
    if s.near == "_agent" {
        if let Some(at) = nodes
            .iter()
            .position(|e| e.node.node.eq_ignore_ascii_case(agent_node))
        {
            let own = nodes.remove(at);
            nodes.insert(0, own);
        }
    }
    if let Some(n) = limit {
        nodes.truncate(n);
    }
    Ok((r.index, nodes))
}

/// Every tag wanted present (case-insensitively), every `!tag` absent.
fn tags_match(have: &[String], want: &[String]) -> bool {
    want.iter().all(|t| match t.strip_prefix('!') {
        Some(not) => !have.iter().any(|h| h.eq_ignore_ascii_case(not)),
        None => have.iter().any(|h| h.eq_ignore_ascii_case(t)),
    })
}

/// The datacenters to fail over to, in order: the `NearestN` nearest
/// other ones of `known` (sorted by round-trip time, this one first), then
/// `Datacenters` not already listed. Unknown ones are skipped, as Consul
/// does.
fn failover_order(q: &Query, own: &str, known: &[String]) -> Vec<String> {
    let n = usize::try_from(q.service.failover.nearest_n).unwrap_or(0);
    let mut out: Vec<String> = known
        .iter()
        .filter(|d| *d != own)
        .take(n)
        .cloned()
        .collect();
    for dc in &q.service.failover.datacenters {
        if dc != own && !out.contains(dc) && known.contains(dc) {
            out.push(dc.clone());
        }
    }
    out
}

/// Run the query named `id_or_name` (an ID, a name, or a template's
/// prefix): `None` when no query has that name.
pub async fn execute(
    engine: &Engine,
    cfg: &ApiConfig,
    id_or_name: &str,
    limit: Option<usize>,
) -> Result<Option<Executed>> {
    let all: Vec<Query> = engine
        .objects(model::KIND, &mut WatchSet::new())?
        .value
        .iter()
        .map(Query::from_object)
        .collect();
    let Some(query) = model::resolve(&all, id_or_name).map_err(Error::Internal)? else {
        return Ok(None);
    };
    let ttl = query.dns_ttl().map_err(Error::Internal)?;
    let (index, nodes) = run_local(engine, &query, &cfg.node_name, limit)?;
    let mut out = Executed {
        service: query.service.service.clone(),
        query,
        nodes,
        ttl,
        datacenter: cfg.datacenter.clone(),
        failovers: 0,
        index,
    };
    let Some(cluster) = cfg.cluster.as_ref().filter(|_| out.nodes.is_empty()) else {
        return Ok(Some(out));
    };
    for dc in failover_order(&out.query, &cfg.datacenter, &cluster.datacenters()) {
        out.failovers += 1;
        match remote(cluster.as_ref(), &dc, &out.query, limit).await {
            Ok(r) if !r.nodes.is_empty() => {
                out.nodes = r
                    .nodes
                    .into_iter()
                    .map(|(node, service, checks)| ServiceHealth {
                        node,
                        service,
                        checks,
                    })
                    .collect();
                out.datacenter = dc;
                out.index = r.index;
                return Ok(Some(out));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(datacenter = %dc, error = %e, "prepared query failover failed");
            }
        }
    }
    Ok(Some(out))
}

/// Ask `dc` to run `q` there.
async fn remote(
    cluster: &dyn crate::ClusterBackend,
    dc: &str,
    q: &Query,
    limit: Option<usize>,
) -> std::result::Result<RemoteResult, String> {
    let body = serde_json::to_vec(q).map_err(|e| e.to_string())?;
    let uri = match limit {
        Some(n) => format!("{REMOTE_PATH}?limit={n}"),
        None => REMOTE_PATH.to_string(),
    };
    let req = hyper::Request::builder()
        .method(hyper::Method::PUT)
        .uri(uri)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(bytes::Bytes::from(body))
        .map_err(|e| e.to_string())?;
    let resp = cluster
        .forward_dc(dc.to_string(), req)
        .await
        .ok_or_else(|| format!("no path to datacenter {dc}"))??;
    if !resp.status().is_success() {
        return Err(format!(
            "{dc} answered {}: {}",
            resp.status(),
            String::from_utf8_lossy(resp.body())
        ));
    }
    serde_json::from_slice(resp.body()).map_err(|e| format!("{dc}: bad answer: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_exclusions() {
        let have = vec!["v1".to_string(), "Primary".to_string()];
        let t =
            |w: &[&str]| tags_match(&have, &w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(t(&[]));
        assert!(t(&["v1", "primary"]));
        assert!(!t(&["v2"]));
        assert!(t(&["!v2"]));
        assert!(!t(&["!primary"]));
    }

    #[test]
    fn failover_takes_the_nearest_then_the_listed() {
        let mut q = Query::default();
        let known: Vec<String> = ["dc1", "dc3", "dc2", "dc4"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        q.service.failover.nearest_n = 2;
        q.service.failover.datacenters = vec!["dc4".into(), "dc3".into(), "dc9".into()];
        assert_eq!(failover_order(&q, "dc1", &known), ["dc3", "dc2", "dc4"]);
        q.service.failover.nearest_n = 0;
        assert_eq!(failover_order(&q, "dc1", &known), ["dc4", "dc3"]);
    }
}
