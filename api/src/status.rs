//! `/v1/status/leader` and `/v1/status/peers` (consul-compat.md §9): what
//! raft knows about the cluster. They never block and need no leader.

use hyper::Response;

use crate::error::Result;
use crate::response::Body;
use crate::router::EngineCtx;
use crate::routes::{exact, on_cluster, Route, GET};

/// `GET /v1/status/leader`: the leader's RPC address, or `""`.
pub(crate) fn leader(ctx: &EngineCtx<'_>) -> Result<Response<Body>> {
    let status = ctx.engine.status();
    ctx.json(status.leader.as_deref().unwrap_or_default())
}

/// `GET /v1/status/peers`: the raft voters' RPC addresses.
pub(crate) fn peers(ctx: &EngineCtx<'_>) -> Result<Response<Body>> {
    let status = ctx.engine.status();
    ctx.json(&status.peers)
}

/// `/v1/status/*`.
pub(crate) const ROUTES: &[Route] = &[
    exact("/v1/status/leader", GET, on_cluster!(|ctx, _| leader(ctx))),
    exact("/v1/status/peers", GET, on_cluster!(|ctx, _| peers(ctx))),
];
