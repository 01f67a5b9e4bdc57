//! `/v1/status/leader` and `/v1/status/peers` (consul-compat.md §9): what
//! raft knows about the cluster. They never block and need no leader.

use hyper::Response;

use crate::backend::Backend;
use crate::error::Result;
use crate::response::Body;
use crate::router::Ctx;

/// `GET /v1/status/leader`: the leader's RPC address, or `""`.
pub(crate) fn leader<E: Backend>(ctx: &Ctx<'_, E>) -> Result<Response<Body>> {
    let status = ctx.st.engine.status();
    ctx.json(status.leader.as_deref().unwrap_or_default())
}

/// `GET /v1/status/peers`: the raft voters' RPC addresses.
pub(crate) fn peers<E: Backend>(ctx: &Ctx<'_, E>) -> Result<Response<Body>> {
    let status = ctx.st.engine.status();
    ctx.json(&status.peers)
}
