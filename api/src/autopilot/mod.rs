//! `/v1/operator/autopilot/*` (consul-compat.md §9): the autopilot
//! configuration (`GET`, and `PUT` with `?cas=`) kept through the log in
//! the engine's stored-object table, and the servers' health (`health`,
//! `state`) as the leader judges it. Before an operator stores a
//! configuration, the answering server's configured values apply.
//!
//! Health and state are the leader's view, as in Consul: a follower sends
//! those requests on to the leader (`state?stale` answers from the server
//! asked). The facts come from the [`crate::ClusterBackend`]; this module
//! only decodes requests, applies Consul's health rule and renders JSON.
//! It also serves `/v1/internal/raft-stats`, one server's raft progress,
//! which the leader asks each server for (Consul's `Status.RaftStats`).

pub mod config;
pub mod health;

use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use muster_engine::remote::Remote;
use muster_engine::{Command, WatchSet};

use crate::cluster;
use crate::error::{Error, Result};
use crate::query::Consistency;
use crate::response::Body;
use crate::router::EngineCtx;
use crate::routes::{exact, on_cluster, ReqBody, Route, GET};

pub use config::AutopilotConfiguration;
pub use health::{AutopilotServer, ClusterHealth, NodeStatus, ServerStats};

/// Where a server answers its raft progress ([`ServerStats`] as JSON).
pub const RAFT_STATS_PATH: &str = "/v1/internal/raft-stats";

/// Marks a health or state request a follower sent on to the leader: the
/// receiver answers it or fails, never forwards it again.
const FORWARDED: &str = "x-muster-autopilot-forwarded";

/// The configuration in force: the stored one, else this server's
/// configured values (Consul's defaults without a backend).
fn current(ctx: &EngineCtx<'_>) -> Result<AutopilotConfiguration> {
    let stored = ctx
        .engine
        .object(config::KIND, config::ID, &mut WatchSet::new())?
        .value;
    match stored {
        Some(object) => AutopilotConfiguration::from_stored(&object).map_err(Error::Internal),
        None => Ok(ctx
            .st
            .cfg
            .cluster
            .as_ref()
            .and_then(|c| c.autopilot_defaults())
            .unwrap_or_default()),
    }
}

/// `GET /v1/operator/autopilot/configuration` (`?stale` answers from this
/// server; otherwise from the leader's state).
async fn get_config(ctx: &EngineCtx<'_>) -> Result<Response<Body>> {
    let read = ctx.begin_read().await?;
    if read.consistency == Consistency::Leader {
        ctx.engine.leader_known()?;
    }
    ctx.json(&current(ctx)?)
}

/// `PUT /v1/operator/autopilot/configuration[?cas=N]`: the whole
/// configuration (absent fields are zero, as in Consul); `true`, or with
/// `?cas` whether `N` was the stored `ModifyIndex` (0: none stored yet).
async fn put_config(ctx: &EngineCtx<'_>, req: Request<ReqBody>) -> Result<Response<Body>> {
    let body = crate::decode::read_bytes(req).await?;
    let config = config::decode(&body)
        .map_err(|e| Error::bad_request(format!("Error parsing autopilot config: {e}")))?;
    let cas = ctx
        .query
        .cas()
        .map_err(|e| Error::bad_request(format!("Error parsing cas value: {e}")))?;
    let object = config.to_stored().map_err(Error::Internal)?;
    let cmd = Command::ObjectSet {
        object,
        cas,
        unique_name: false,
    };
    crate::kv::propose_bool(ctx, cmd).await
}

/// Who answers a leader-only request.
enum Answerer {
    /// This server leads.
    Here,
    /// The leader at this RPC address.
    Leader(String),
}

/// This server if it leads, else the leader (a request a follower already
/// forwarded is not sent on again: leadership moved in between).
fn answerer(ctx: &EngineCtx<'_>, req: &Request<ReqBody>) -> Result<Answerer> {
    let here = &ctx.engine.config().rpc_addr;
    match ctx.engine.leader_addr() {
        Some(addr) if addr == *here => Ok(Answerer::Here),
        Some(addr) if !req.headers().contains_key(FORWARDED) => Ok(Answerer::Leader(addr)),
        _ => Err(muster_engine::Error::NoLeader.into()),
    }
}

/// Send `req` to the leader at `addr` and relay its answer.
async fn forward(
    ctx: &EngineCtx<'_>,
    addr: String,
    mut req: Request<ReqBody>,
) -> Result<Response<Body>> {
    req.headers_mut()
        .insert(FORWARDED, HeaderValue::from_static("1"));
    let remote = Remote::new();
    remote.set_servers(vec![addr]);
    crate::client::forward(ctx, &remote, req).await
}

/// The servers judged with the configuration in force.
async fn cluster_health(ctx: &EngineCtx<'_>) -> Result<ClusterHealth> {
    let config = current(ctx)?;
    let backend = cluster::require(&ctx.st.cfg)?;
    let servers = backend
        .autopilot_servers(config)
        .await
        .map_err(Error::Internal)?;
    Ok(ClusterHealth::new(servers))
}

/// `GET /v1/operator/autopilot/health`: Consul's `OperatorHealthReply`
/// from the leader; 429 when any server is unhealthy.
async fn health(ctx: &EngineCtx<'_>, req: Request<ReqBody>) -> Result<Response<Body>> {
    if let Answerer::Leader(addr) = answerer(ctx, &req)? {
        return forward(ctx, addr, req).await;
    }
    let h = cluster_health(ctx).await?;
    let mut resp = ctx.json(&health::health_reply(&h))?;
    if !h.healthy {
        *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    }
    Ok(resp)
}

/// `GET /v1/operator/autopilot/state`: Consul's `AutopilotState`, from the
/// leader unless `?stale`.
async fn state(ctx: &EngineCtx<'_>, req: Request<ReqBody>) -> Result<Response<Body>> {
    if ctx.query.consistency()? != Consistency::Stale {
        if let Answerer::Leader(addr) = answerer(ctx, &req)? {
            return forward(ctx, addr, req).await;
        }
    }
    let h = cluster_health(ctx).await?;
    ctx.json(&health::state_reply(&h))
}

/// `GET /v1/internal/raft-stats`: this server's raft progress.
fn raft_stats(ctx: &EngineCtx<'_>) -> Result<Response<Body>> {
    ctx.json(&ServerStats::of(&ctx.engine.status()))
}

/// The configuration route's methods.
const CONFIG_METHODS: &str = "OPTIONS,GET,PUT";

/// `/v1/operator/autopilot/*` and the servers' stats: all the cluster's
/// (a client agent forwards them to a server).
pub(crate) const ROUTES: &[Route] = &[
    exact(
        "/v1/operator/autopilot/configuration",
        CONFIG_METHODS,
        on_cluster!(|ctx, c| {
            if c.method == hyper::Method::PUT {
                put_config(ctx, c.req).await
            } else {
                get_config(ctx).await
            }
        }),
    ),
    exact(
        "/v1/operator/autopilot/health",
        GET,
        on_cluster!(|ctx, c| health(ctx, c.req).await),
    ),
    exact(
        "/v1/operator/autopilot/state",
        GET,
        on_cluster!(|ctx, c| state(ctx, c.req).await),
    ),
    exact(RAFT_STATS_PATH, GET, on_cluster!(|ctx, _| raft_stats(ctx))),
];

/// The raft-stats request a leader sends a server.
pub fn raft_stats_request() -> Request<Bytes> {
    let mut req = Request::new(Bytes::new());
    *req.uri_mut() = hyper::Uri::from_static(RAFT_STATS_PATH);
    req
}
