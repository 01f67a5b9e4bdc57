//! The two ways a request crosses between agents. A client agent answers
//! `/v1/agent/*` and the keyring from its own state and forwards every
//! other request, unchanged, to a server ([`Upstream`]); the server answers
//! it with the same handlers its HTTP port uses ([`Handler`]). The client
//! names itself in [`X_AGENT_NODE`] so a session it creates defaults to
//! its node, as Consul's does.

use std::fmt::Display;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderValue;
use hyper::{Request, Response};
use muster_agent::Agent;
use muster_engine::remote::Remote;
use muster_engine::{AbortOnDrop, Engine};

use crate::cluster::BoxFuture;
use crate::decode::MAX_JSON_BODY;
use crate::error::{Error, Result};
use crate::response::Body;
use crate::router::{self, Ctx, Serving, State};
use crate::ApiConfig;

/// The header a client agent adds to forwarded requests: its node name.
pub const X_AGENT_NODE: &str = "x-muster-agent-node";

/// Where a client agent sends what it does not answer itself.
pub trait Upstream: Send + Sync + 'static {
    /// Send `req` to a server and return its answer; `Err` when no server
    /// could be reached (a 500 with the message).
    fn forward(
        &self,
        req: Request<Bytes>,
    ) -> BoxFuture<'_, std::result::Result<Response<Bytes>, String>>;
}

impl Upstream for Remote {
    fn forward(
        &self,
        req: Request<Bytes>,
    ) -> BoxFuture<'_, std::result::Result<Response<Bytes>, String>> {
        Box::pin(self.http(req))
    }
}

/// Read a request whole (its body bounded by the larger of the KV value
/// limit and the JSON body limit), to send it on.
async fn collect<B>(ctx: &Ctx<'_>, req: Request<B>) -> Result<Request<Bytes>>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: Display,
{
    let (parts, body) = req.into_parts();
    let content_length = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limit = ctx.st.cfg.kv_max_value_size.max(MAX_JSON_BODY);
    let body = crate::kv::read_body(body, content_length, limit).await?;
    Ok(Request::from_parts(parts, Bytes::from(body)))
}

/// A client agent's answer to a cluster endpoint: `req` forwarded whole
/// (path, query, method, headers, body) to a server.
pub(crate) async fn forward<B>(
    ctx: &Ctx<'_>,
    upstream: &dyn Upstream,
    req: Request<B>,
) -> Result<Response<Body>>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: Display,
{
    let mut req = collect(ctx, req).await?;
    if let Ok(node) = HeaderValue::from_str(&ctx.st.cfg.node_name) {
        req.headers_mut().insert(X_AGENT_NODE, node);
    }
    // A request without a token acts with this agent's default one, as
    // Consul's client agents do.
    let default = ctx
        .st
        .cfg
        .acl
        .as_ref()
        .and_then(|a| a.tokens.default_token());
    if let Some(token) = default.as_deref() {
        if crate::query::resolve_token(&ctx.query, req.headers()).is_none() {
            if let Ok(v) = HeaderValue::from_str(token) {
                req.headers_mut().insert("X-Consul-Token", v);
            }
        }
    }
    let answer = upstream.forward(req).await.map_err(Error::Internal)?;
    Ok(answer.map(Body::full))
}

/// A server's answer to a request for another datacenter (`?dc=`): sent
/// on to a server of that datacenter, found over the WAN pool.
pub(crate) async fn forward_dc<B>(
    ctx: &Ctx<'_>,
    dc: String,
    req: Request<B>,
) -> Result<Response<Body>>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: Display,
{
    let Some(cluster) = &ctx.st.cfg.cluster else {
        return Err(Error::NoPathToDatacenter);
    };
    let req = collect(ctx, req).await?;
    match cluster.forward_dc(dc, req).await {
        None => Err(Error::NoPathToDatacenter),
        Some(Err(msg)) => Err(Error::Internal(msg)),
        Some(Ok(resp)) => Ok(resp.map(Body::full)),
    }
}

/// Serve a client agent's HTTP API on `listener` until `shutdown`.
pub(crate) async fn serve(
    listener: impl Into<crate::server::Listener>,
    upstream: Arc<dyn Upstream>,
    agent: Agent,
    cfg: ApiConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    crate::server::serve(
        listener,
        Serving::Client(upstream),
        Arc::new(agent),
        cfg,
        shutdown,
    )
    .await
}

/// A server's HTTP API handlers without a listener: what it runs for the
/// requests client agents forward over RPC.
#[derive(Clone)]
pub struct Handler {
    state: Arc<State>,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler").finish_non_exhaustive()
    }
}

impl Handler {
    /// Handlers over `engine` and `agent` with `cfg`.
    pub fn new(engine: Engine, agent: Agent, cfg: ApiConfig) -> Handler {
        Handler {
            state: Arc::new(State {
                serving: Serving::Server(engine),
                agent: Arc::new(agent),
                cfg,
                local_addr: None,
                shared: Default::default(),
            }),
        }
    }

    /// Answer one request as the HTTP port would (in its own task: a
    /// panicking handler is a 500). Dropping the returned future (the
    /// client agent gave up, e.g. its own caller cancelled a blocking
    /// query) aborts that task, so nothing keeps running for nobody.
    pub async fn handle(&self, req: Request<Bytes>) -> Response<Bytes> {
        let mut task = AbortOnDrop(tokio::spawn(router::handle(
            self.state.clone(),
            req.map(Full::new),
        )));
        let resp = match (&mut task.0).await {
            Ok(resp) => resp,
            Err(e) => {
                tracing::error!(error = %e, "forwarded request handler failed");
                crate::response::text(
                    hyper::StatusCode::INTERNAL_SERVER_ERROR,
                    "internal server error",
                )
            }
        };
        let (parts, body) = resp.into_parts();
        match body.collect().await {
            Ok(collected) => Response::from_parts(parts, collected.to_bytes()),
            Err(e) => {
                let msg = format!("reading the reply failed: {e}");
                let mut resp = Response::new(Bytes::from(msg));
                *resp.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                resp
            }
        }
    }
}
