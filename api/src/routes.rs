//! Routes: each domain module declares its own beside its handlers
//! (`agent::ROUTES`, `kv::ROUTES`, ...): the path (exact, or a prefix whose
//! rest is the resource), the methods it allows, and who answers it: the
//! agent from its own state ([`on_agent!`]), or the cluster
//! ([`on_cluster!`]: a server's engine; a client agent forwards it to a
//! server). [`find`] is Go ServeMux's longest match over all of them;
//! `router.rs` decodes the path, checks the method and calls the handler.

use std::fmt::Display;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use hyper::header;
use hyper::{Method, Request, Response};

use crate::error::Result;
use crate::response::Body;
use crate::router::{Ctx, EngineCtx};
use muster_engine::BoxFuture;

/// A request body of any source (a socket, a forwarded request).
pub(crate) type ReqBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Box `body` as a [`ReqBody`].
pub(crate) fn req_body<B>(body: B) -> ReqBody
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Display,
{
    body.map_err(|e| e.to_string().into()).boxed_unsync()
}

/// A handler's answer.
pub(crate) type Reply<'a> = BoxFuture<'a, Result<Response<Body>>>;

/// What a handler gets besides its context: the routed request.
pub(crate) struct Call {
    /// For prefix routes, the decoded rest of the path (a KV key, an ID).
    pub rest: String,
    /// The method (already checked against the route's).
    pub method: Method,
    /// The request.
    pub req: Request<ReqBody>,
}

impl Call {
    /// The client asked for `text/plain` (the agent health endpoints).
    pub fn accepts_text(&self) -> bool {
        self.req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/plain"))
    }
}

/// A handler answered from this agent's own state.
pub(crate) type AgentHandler = for<'a> fn(&'a Ctx<'a>, Call) -> Reply<'a>;
/// A handler answered from the state store.
pub(crate) type ClusterHandler = for<'a> fn(&'a EngineCtx<'a>, Call) -> Reply<'a>;

/// Who answers a route.
#[derive(Clone, Copy)]
pub(crate) enum Handler {
    /// The agent, server or client alike (`/v1/agent/*`, the keyring).
    Agent(AgentHandler),
    /// A server's engine; a client agent forwards the request to a server,
    /// and a server forwards another datacenter's (`?dc=`) there.
    Cluster(ClusterHandler),
}

/// One route.
#[derive(Clone, Copy)]
pub(crate) struct Route {
    /// The path, or the prefix when `prefix`.
    pub pattern: &'static str,
    /// Match by prefix (the rest is the resource) instead of exactly.
    pub prefix: bool,
    /// The `Allow` header value; empty = any method, no `OPTIONS` reply.
    pub allow: &'static str,
    /// Who answers.
    pub handler: Handler,
}

/// `GET` routes.
pub(crate) const GET: &str = "OPTIONS,GET";
/// `PUT` routes.
pub(crate) const PUT: &str = "OPTIONS,PUT";
/// `DELETE` routes.
pub(crate) const DELETE: &str = "OPTIONS,DELETE";

/// An exact route.
pub(crate) const fn exact(pattern: &'static str, allow: &'static str, handler: Handler) -> Route {
    Route {
        pattern,
        prefix: false,
        allow,
        handler,
    }
}

/// A prefix route (the rest of the path is the resource).
pub(crate) const fn under(pattern: &'static str, allow: &'static str, handler: Handler) -> Route {
    Route {
        pattern,
        prefix: true,
        allow,
        handler,
    }
}

/// `on_agent!(|ctx, call| body)`: a [`Handler::Agent`] whose body (which
/// may `.await`) sees `ctx: &Ctx` and the [`Call`].
macro_rules! on_agent {
    (|$ctx:ident, $call:pat_param| $body:expr) => {
        $crate::routes::Handler::Agent({
            fn handler<'a>(
                $ctx: &'a $crate::router::Ctx<'a>,
                $call: $crate::routes::Call,
            ) -> $crate::routes::Reply<'a> {
                Box::pin(async move { $body })
            }
            handler
        })
    };
}

/// `on_cluster!(|ctx, call| body)`: a [`Handler::Cluster`] whose body sees
/// `ctx: &EngineCtx` and the [`Call`].
macro_rules! on_cluster {
    (|$ctx:ident, $call:pat_param| $body:expr) => {
        $crate::routes::Handler::Cluster({
            fn handler<'a>(
                $ctx: &'a $crate::router::EngineCtx<'a>,
                $call: $crate::routes::Call,
            ) -> $crate::routes::Reply<'a> {
                Box::pin(async move { $body })
            }
            handler
        })
    };
}

pub(crate) use {on_agent, on_cluster};

/// A routing decision.
#[derive(Clone, Copy)]
pub(crate) struct Found<'p> {
    /// The route.
    pub route: &'static Route,
    /// For prefix routes, the rest of the path.
    pub rest: &'p str,
}

/// The longest route matching a decoded, canonical path among `tables`
/// (Go ServeMux: exact and prefix patterns, the longest winning).
pub(crate) fn find<'p>(tables: &[&'static [Route]], path: &'p str) -> Option<Found<'p>> {
    tables
        .iter()
        .flat_map(|t| t.iter())
        .filter(|r| {
            if r.prefix {
                path.starts_with(r.pattern)
            } else {
                path == r.pattern
            }
        })
        .max_by_key(|r| r.pattern.len())
        .map(|route| Found {
            route,
            rest: if route.prefix {
                path.get(route.pattern.len()..).unwrap_or_default()
            } else {
                ""
            },
        })
}
