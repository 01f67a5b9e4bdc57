//! Prepared queries (`/v1/query`): create, list, read, update and delete
//! through the log (the engine stores them as objects of kind `query`
//! without reading them), `execute` and `explain` by ID, name or template
//! prefix, and the internal endpoint another datacenter's failover runs a
//! query at. Shapes and the name rules are in `model`; running one is in
//! `execute` (also what DNS `<name>.query.<domain>` asks).

mod execute;
pub(crate) mod model;

use hyper::header::HeaderValue;
use hyper::{Method, Response};
use muster_engine::{Command, WatchSet};
use serde::Serialize;

pub use execute::{execute, Executed};
use model::{Query, KIND, NOT_FOUND};

use crate::acl::rules::{Access, Resource};
use crate::error::{Error, Result};
use crate::health::ServiceEntry;
use crate::response::Body;
use crate::router::EngineCtx;
use crate::routes::{exact, on_cluster, under, Call, Route};

/// `{"ID": ...}`.
#[derive(Serialize)]
struct Created {
    #[serde(rename = "ID")]
    id: String,
}

/// `DNS` of an execute answer.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DnsOut {
    #[serde(rename = "TTL")]
    ttl: String,
}

/// `api.PreparedQueryExecuteResponse`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ExecuteOut<'a> {
    service: &'a str,
    nodes: Vec<ServiceEntry<'a>>,
    #[serde(rename = "DNS")]
    dns: DnsOut,
    datacenter: &'a str,
    failovers: u32,
}

/// `api.PreparedQueryExplainResponse`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ExplainOut<'a> {
    query: &'a Query,
}

fn body_query(bytes: &[u8]) -> Result<Query> {
    Query::decode(bytes).map_err(Error::bad_request)
}

/// ACLs: `want` on the query named `name` (a nameless query is `""`).
fn require(ctx: &EngineCtx<'_>, name: &str, want: Access) -> Result<()> {
    crate::acl::require_opt(ctx.acl.as_deref(), Resource::Query, name, want)
}

/// The stored query `id`, or 404.
fn stored(ctx: &EngineCtx<'_>, id: &str) -> Result<Query> {
    match ctx.engine.object(KIND, id, &mut WatchSet::new())?.value {
        Some(o) => Ok(Query::from_object(&o)),
        None => Err(Error::NotFound(NOT_FOUND.into())),
    }
}

/// Check a definition and that its session (if any) exists.
fn check(ctx: &EngineCtx<'_>, q: &Query) -> Result<()> {
    q.validate().map_err(Error::Internal)?;
    if !q.session.is_empty()
        && ctx
            .engine
            .session_get(&q.session, &mut WatchSet::new())?
            .value
            .is_none()
    {
        return Err(Error::Internal(format!("invalid session {:?}", q.session)));
    }
    Ok(())
}

/// Store `q` (a name another query has is refused).
async fn store(ctx: &EngineCtx<'_>, q: &Query) -> Result<()> {
    let applied = ctx
        .engine
        .propose(Command::ObjectSet {
            object: q.to_object(),
            cas: None,
            unique_name: true,
        })
        .await?;
    match applied.response {
        muster_engine::Response::Bool(true) => Ok(()),
        muster_engine::Response::Rejected(msg) => Err(Error::Internal(msg)),
        other => Err(Error::Internal(format!("unexpected response {other:?}"))),
    }
}

/// `POST /v1/query`.
async fn create(ctx: &EngineCtx<'_>, call: Call) -> Result<Response<Body>> {
    let mut q = body_query(&crate::decode::read_bytes(call.req).await?)?;
    q.id = crate::session::new_uuid();
    require(ctx, &q.name, Access::Write)?;
    check(ctx, &q)?;
    store(ctx, &q).await?;
    ctx.json(&Created { id: q.id })
}

/// `GET /v1/query`.
async fn list(ctx: &EngineCtx<'_>) -> Result<Response<Body>> {
    let engine = &ctx.engine;
    ctx.shared_read(|ws| {
        let r = engine.objects(KIND, ws)?;
        let acl = ctx.acl.as_deref();
        let all: Vec<Query> = r.value.iter().map(Query::from_object).collect();
        let count = all.len();
        let out: Vec<Query> = all
            .into_iter()
            .filter(|q| acl.is_none_or(|a| crate::acl::may(a, Resource::Query, &q.name, false)))
            .collect();
        let mut rendered = ctx.render_json(r.index, &out)?;
        crate::acl::filtered_header(&mut rendered, acl, out.len() < count);
        Ok(rendered)
    })
    .await
}

/// `GET /v1/query/<id>`: `[query]`, 404 when unknown.
async fn read(ctx: &EngineCtx<'_>, id: &str) -> Result<Response<Body>> {
    let engine = &ctx.engine;
    ctx.shared_read(|ws| {
        let r = engine.object(KIND, id, ws)?;
        match &r.value {
            Some(o) => {
                let q = Query::from_object(o);
                require(ctx, &q.name, Access::Read)?;
                ctx.render_json(r.index, &[q])
            }
            None => Err(Error::NotFound(NOT_FOUND.into())),
        }
    })
    .await
}

/// `PUT /v1/query/<id>`.
async fn update(ctx: &EngineCtx<'_>, id: &str, call: Call) -> Result<Response<Body>> {
    let mut q = body_query(&crate::decode::read_bytes(call.req).await?)?;
    require(ctx, &stored(ctx, id)?.name, Access::Write)?;
    require(ctx, &q.name, Access::Write)?;
    q.id = id.to_string();
    check(ctx, &q)?;
    store(ctx, &q).await?;
    ctx.json(&serde_json::Value::Null)
}

/// `DELETE /v1/query/<id>`.
async fn delete(ctx: &EngineCtx<'_>, id: &str) -> Result<Response<Body>> {
    require(ctx, &stored(ctx, id)?.name, Access::Write)?;
    ctx.engine
        .propose(Command::ObjectDelete {
            kind: KIND.into(),
            id: id.to_string(),
        })
        .await?;
    ctx.json(&serde_json::Value::Null)
}

/// `?limit=` (absent or 0: all).
fn limit(ctx: &EngineCtx<'_>) -> Result<Option<usize>> {
    match ctx.query.get("limit") {
        None | Some("") | Some("0") => Ok(None),
        Some(v) => v
            .parse::<usize>()
            .map(Some)
            .map_err(|_| Error::bad_request(format!("Bad limit: {v:?} is not a number"))),
    }
}

fn with_index(mut resp: Response<Body>, index: u64) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(&index.max(1).to_string()) {
        resp.headers_mut().insert("X-Consul-Index", v);
    }
    resp
}

/// `GET /v1/query/<id or name>/execute`.
async fn run(ctx: &EngineCtx<'_>, name: &str) -> Result<Response<Body>> {
    let limit = limit(ctx)?;
    let Some(out) = execute(ctx.engine, &ctx.st.cfg, name, limit).await? else {
        return Err(Error::NotFound(NOT_FOUND.into()));
    };
    let acl = ctx.acl.as_deref();
    let json = ExecuteOut {
        service: &out.service,
        nodes: out
            .nodes
            .iter()
            .filter(|e| crate::acl::may_read_instance(acl, &e.service.service, &e.node.node))
            .map(ServiceEntry::from)
            .collect(),
        dns: DnsOut {
            ttl: out.query.dns.ttl.clone(),
        },
        datacenter: &out.datacenter,
        failovers: out.failovers,
    };
    Ok(with_index(ctx.json(&json)?, out.index))
}

/// `GET /v1/query/<id or name>/explain`: the query as it would run.
async fn explain(ctx: &EngineCtx<'_>, name: &str) -> Result<Response<Body>> {
    let all: Vec<Query> = ctx
        .engine
        .objects(KIND, &mut WatchSet::new())?
        .value
        .iter()
        .map(Query::from_object)
        .collect();
    match model::resolve(&all, name).map_err(Error::Internal)? {
        Some(q) => {
            require(ctx, &q.name, Access::Read)?;
            ctx.json(&ExplainOut { query: &q })
        }
        None => Err(Error::NotFound(NOT_FOUND.into())),
    }
}

/// `PUT /v1/internal/query/execute`: run the query in the body here, no
/// failover (another datacenter's failover).
async fn run_remote(ctx: &EngineCtx<'_>, call: Call) -> Result<Response<Body>> {
    let q = body_query(&crate::decode::read_bytes(call.req).await?)?;
    let (index, nodes) = execute::run_local(ctx.engine, &q, &ctx.st.cfg.node_name, limit(ctx)?)?;
    let acl = ctx.acl.as_deref();
    let out = execute::RemoteResult {
        index,
        nodes: nodes
            .into_iter()
            .filter(|e| crate::acl::may_read_instance(acl, &e.service.service, &e.node.node))
            .map(|e| (e.node, e.service, e.checks))
            .collect(),
    };
    Ok(with_index(ctx.json(&out)?, index))
}

/// `/v1/query/<rest>`: `<id>` or `<id or name>/execute|explain`.
async fn dispatch(ctx: &EngineCtx<'_>, call: Call) -> Result<Response<Body>> {
    let rest = call.rest.clone();
    if let Some(name) = rest.strip_suffix("/execute") {
        return match call.method {
            Method::GET => run(ctx, name).await,
            _ => Err(method_not_allowed(&call.method, "OPTIONS,GET")),
        };
    }
    if let Some(name) = rest.strip_suffix("/explain") {
        return match call.method {
            Method::GET => explain(ctx, name).await,
            _ => Err(method_not_allowed(&call.method, "OPTIONS,GET")),
        };
    }
    if rest.is_empty() || rest.contains('/') {
        return Err(Error::NotFound(NOT_FOUND.into()));
    }
    match call.method {
        Method::GET => read(ctx, &rest).await,
        Method::PUT | Method::POST => update(ctx, &rest, call).await,
        Method::DELETE => delete(ctx, &rest).await,
        _ => Err(method_not_allowed(&call.method, QUERY_ALLOW)),
    }
}

fn method_not_allowed(method: &Method, allow: &'static str) -> Error {
    Error::MethodNotAllowed {
        method: method.to_string(),
        allow,
    }
}

const QUERY_ALLOW: &str = "OPTIONS,GET,PUT,POST,DELETE";

/// `/v1/query*`.
pub(crate) const ROUTES: &[Route] = &[
    exact(
        "/v1/query",
        "OPTIONS,GET,POST,PUT",
        on_cluster!(|ctx, c| match c.method {
            Method::GET => list(ctx).await,
            _ => create(ctx, c).await,
        }),
    ),
    under(
        "/v1/query/",
        QUERY_ALLOW,
        on_cluster!(|ctx, c| dispatch(ctx, c).await),
    ),
    exact(
        execute::REMOTE_PATH,
        "OPTIONS,PUT",
        on_cluster!(|ctx, c| run_remote(ctx, c).await),
    ),
];
