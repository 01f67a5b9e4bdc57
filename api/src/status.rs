//! `/v1/status/leader` and `/v1/status/peers` (consul-compat.md §9): what
//! raft knows about the cluster. They never block and need no leader.

use hyper::Response;

use crate::error::Result;
use crate::response::Body;
use crate::router::Ctx;
use muster_engine::Engine;

/// `GET /v1/status/leader`: the leader's RPC address, or `""`.
pub(crate) fn leader(ctx: &Ctx<'_, Engine>) -> Result<Response<Body>> {
    let status = ctx.st.engine.status();
    ctx.json(status.leader.as_deref().unwrap_or_default())
}

/// `GET /v1/status/peers`: the raft voters' RPC addresses.
pub(crate) fn peers(ctx: &Ctx<'_, Engine>) -> Result<Response<Body>> {
    let status = ctx.st.engine.status();
    ctx.json(&status.peers)
}
