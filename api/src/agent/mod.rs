//! `/v1/agent/*` (consul-compat.md §5): `self`; `members`, `join`, `leave`
//! and `force-leave` (through [`crate::ClusterBackend`]; without one,
//! `members` lists this node alone); the local services and checks
//! (list/get/register/deregister), TTL updates, node and service
//! maintenance, local service health, and `reload`. Agent endpoints act on
//! this agent only: no `dc`, no consistency gate, no read headers. Bodies
//! are decoded by [`crate::definition`]; state rules are the agent's, its
//! [`AgentError`]s mapped to Consul's codes by [`agent_error`]. Writes
//! answer 200 with an empty body.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use muster_agent::{AgentError, LocalServiceHealth};
use muster_engine::Status;
use serde::{Deserialize, Serialize};

use crate::acl::rules::{Access, Resource};
use crate::cluster;
use crate::decode::{self, f, Decode, Kind, Schema};
use crate::definition;
use crate::error::{Error, Result};
use crate::health::parse_bool;
use crate::read::passes;
use crate::response::{self, Body};
use crate::router::Ctx;
use crate::routes::{exact, on_agent, under, Route, GET, PUT};
use crate::shapes::{AgentServiceJson, HealthCheckJson};
mod member;

pub use member::{local_member, self_document};
use member::{MemberJson, SERF_WAN_PORT};

/// Hash-blocking (`?hash=`): default and longest wait, and the poll step.
const HASH_WAIT_DEFAULT: Duration = Duration::from_secs(300);
const HASH_WAIT_MAX: Duration = Duration::from_secs(600);
const HASH_POLL: Duration = Duration::from_millis(100);
/// `X-Consul-ContentHash`.
const X_CONSUL_CONTENT_HASH: &str = "x-consul-contenthash";

/// `GET /v1/agent/self`.
pub(crate) fn self_(ctx: &Ctx<'_>) -> Result<Response<Body>> {
    let cfg = &ctx.st.cfg;
    let me = cfg
        .cluster
        .as_ref()
        .and_then(|c| {
            c.members(false)
                .into_iter()
                .find(|m| m.name == cfg.node_name)
        })
        .unwrap_or_else(|| local_member(cfg, ctx.st.local_addr.map(|a| a.ip())));
    ctx.json(&self_document(cfg, &me))
}

/// Consul's status code and body for an agent failure: unknown
/// service/check and a check's missing service → 404, invalid definitions
/// → 400, the rest (not a TTL check, scripts disabled, engine) → 500.
pub fn agent_error(e: AgentError) -> Error {
    match e {
        AgentError::UnknownService(_)
        | AgentError::UnknownCheck(_)
        | AgentError::MissingService(_) => Error::NotFound(e.to_string()),
        AgentError::InvalidCheck(_) | AgentError::InvalidService(_) => {
            Error::BadRequest(e.to_string())
        }
        _ => Error::Internal(e.to_string()),
    }
}

/// `?wan=<non-empty>` (members, join), as Consul reads it.
fn wan_param(ctx: &Ctx<'_>) -> bool {
    ctx.query.get("wan").is_some_and(|w| !w.is_empty())
}

/// `GET /v1/agent/members` (`?wan` for the WAN pool; `?segment` ignored),
/// sorted by name. Without a cluster backend: this node (LAN), or with
/// `?wan` this node as a WAN member (`<node>.<dc>`) if it is a server.
pub(crate) fn members(ctx: &Ctx<'_>) -> Result<Response<Body>> {
    let cfg = &ctx.st.cfg;
    let wan = wan_param(ctx);
    let mut list = match &cfg.cluster {
        Some(c) => c.members(wan),
        None if wan && !cfg.server => Vec::new(),
        None => {
            let mut me = local_member(cfg, ctx.st.local_addr.map(|a| a.ip()));
            if wan {
                me.name = format!("{}.{}", cfg.node_name, cfg.datacenter);
                me.port = SERF_WAN_PORT;
            }
            vec![me]
        }
    };
    list.sort_by(|a, b| a.name.cmp(&b.name));
    // ACLs: node:read on each member (a WAN member's node is its name
    // before the datacenter).
    let acl = ctx.acl.as_deref();
    list.retain(|m| {
        let node = if wan {
            m.name.rsplit_once('.').map_or(m.name.as_str(), |(n, _)| n)
        } else {
            &m.name
        };
        crate::acl::may_read_node(acl, node)
    });
    let json: Vec<MemberJson<'_>> = list.iter().map(MemberJson::from).collect();
    ctx.json(&json)
}

/// `PUT /v1/agent/join/:address` (`?wan`): join the pool through one
/// address; a failure is a 500 with the backend's message.
pub(crate) async fn join(ctx: &Ctx<'_>, addr: &str) -> Result<Response<Body>> {
    if addr.is_empty() {
        return Err(Error::bad_request("Missing address to join"));
    }
    let backend = cluster::require(&ctx.st.cfg)?;
    backend
        .join(vec![addr.to_string()], wan_param(ctx))
        .await
        .map_err(Error::Internal)?;
    Ok(response::ok_empty())
}

/// `PUT /v1/agent/leave`: leave gracefully; the agent then shuts down.
pub(crate) async fn leave(ctx: &Ctx<'_>) -> Result<Response<Body>> {
    let backend = cluster::require(&ctx.st.cfg)?;
    backend.leave().await.map_err(Error::Internal)?;
    Ok(response::ok_empty())
}

/// `PUT /v1/agent/force-leave/:node` (`?prune`, `?wan`, both by presence
/// as in Consul): mark a failed member left, or forget it with `prune`.
pub(crate) async fn force_leave(ctx: &Ctx<'_>, node: &str) -> Result<Response<Body>> {
    if node.is_empty() {
        return Err(Error::bad_request("Missing node name"));
    }
    let backend = cluster::require(&ctx.st.cfg)?;
    let (prune, wan) = (ctx.query.has("prune"), ctx.query.has("wan"));
    backend
        .force_leave(node.to_string(), prune, wan)
        .await
        .map_err(Error::Internal)?;
    Ok(response::ok_empty())
}

/// `PUT /v1/agent/reload`: run the binary's reload hook and wait for it.
pub(crate) async fn reload(ctx: &Ctx<'_>) -> Result<Response<Body>> {
    let hook = ctx
        .st
        .cfg
        .reload
        .as_ref()
        .ok_or_else(|| Error::Internal("Reload is not available on this agent".into()))?;
    hook.run().await.map_err(Error::Internal)?;
    Ok(response::ok_empty())
}

/// `?enable=` of the maintenance endpoints: required, a Go bool.
fn enable_param(ctx: &Ctx<'_>) -> Result<bool> {
    let raw = ctx
        .query
        .get("enable")
        .ok_or_else(|| Error::bad_request("Missing value for enable"))?;
    parse_bool(raw).ok_or_else(|| Error::bad_request(format!("Invalid value for enable: {raw:?}")))
}

/// `PUT /v1/agent/maintenance?enable=&reason=`.
pub(crate) async fn maintenance(ctx: &Ctx<'_>) -> Result<Response<Body>> {
    let enable = enable_param(ctx)?;
    let reason = ctx.query.get("reason").unwrap_or_default();
    ctx.st
        .agent
        .set_node_maintenance(enable, reason)
        .await
        .map_err(agent_error)?;
    Ok(response::ok_empty())
}

/// `PUT /v1/agent/service/maintenance/:id?enable=&reason=`.
pub(crate) async fn service_maintenance(ctx: &Ctx<'_>, id: &str) -> Result<Response<Body>> {
    if id.is_empty() {
        return Err(Error::bad_request("Missing service ID"));
    }
    require_service(ctx, id, Access::Write)?;
    let enable = enable_param(ctx)?;
    let reason = ctx.query.get("reason").unwrap_or_default();
    ctx.st
        .agent
        .set_service_maintenance(id, enable, reason)
        .await
        .map_err(agent_error)?;
    Ok(response::ok_empty())
}

/// ACLs: `want` on the service of local instance `id` (an unknown ID is
/// left to the handler's 404).
fn require_service(ctx: &Ctx<'_>, id: &str, want: Access) -> Result<()> {
    let Some(r) = ctx.acl.as_deref() else {
        return Ok(());
    };
    match ctx.st.agent.services().get(id) {
        Some(l) => crate::acl::require_opt(Some(r), Resource::Service, &l.service.service, want),
        None => Ok(()),
    }
}

/// ACLs: writing local check `id` (`service:write` on its service, or
/// `node:write` for a node-level check).
fn require_check(ctx: &Ctx<'_>, id: &str) -> Result<()> {
    let Some(r) = ctx.acl.as_deref() else {
        return Ok(());
    };
    match ctx.st.agent.checks().get(id) {
        Some(c) => crate::acl::require_check_write(Some(r), &c.service_name, &ctx.st.cfg.node_name),
        None => Ok(()),
    }
}

/// `GET /v1/agent/services`: `{"<id>": AgentService}`, `filter`.
pub(crate) fn services(ctx: &Ctx<'_>) -> Result<Response<Body>> {
    let filter = ctx.filter()?;
    let all = ctx.st.agent.services();
    let dc = ctx.st.cfg.datacenter.as_str();
    let acl = ctx.acl.as_deref();
    let node = ctx.st.cfg.node_name.as_str();
    let out: BTreeMap<&str, AgentServiceJson<'_>> = all
        .iter()
        .filter(|(_, l)| crate::acl::may_read_instance(acl, &l.service.service, node))
        .map(|(id, l)| (id.as_str(), AgentServiceJson::new(&l.service, dc)))
        .filter(|(_, j)| passes(filter.as_ref(), j))
        .collect();
    ctx.json(&out)
}

/// `GET /v1/agent/service/:id`: the `AgentService` with `ContentHash` (and
/// the `X-Consul-ContentHash` header). With `?hash=` equal to the current
/// hash, waits (`wait`, default 5m, at most 10m) until it changes.
pub(crate) async fn service(ctx: &Ctx<'_>, id: &str) -> Result<Response<Body>> {
    if id.is_empty() {
        return Err(Error::bad_request("Missing serviceID"));
    }
    let want = ctx.query.get("hash").filter(|h| !h.is_empty());
    let wait = ctx
        .query
        .wait()?
        .unwrap_or(HASH_WAIT_DEFAULT)
        .min(HASH_WAIT_MAX);
    let deadline = Instant::now() + wait;
    let dc = ctx.st.cfg.datacenter.as_str();
    require_service(ctx, id, Access::Read)?;
    loop {
        let svc = ctx
            .st
            .agent
            .services()
            .remove(id)
            .ok_or_else(|| Error::NotFound(format!("unknown service ID: {id}")))?;
        let (j, hash) = AgentServiceJson::new(&svc.service, dc).with_content_hash();
        let now = Instant::now();
        let waiting = want == Some(hash.as_str()) && now < deadline;
        if waiting {
            tokio::select! {
                () = tokio::time::sleep(HASH_POLL.min(deadline - now)) => continue,
                // Shutting down: answer with what there is.
                () = ctx.st.shared.stopped() => {}
            }
        }
        let mut resp = ctx.json(&j)?;
        if let Ok(v) = HeaderValue::from_str(&hash) {
            resp.headers_mut().insert(X_CONSUL_CONTENT_HASH, v);
        }
        return Ok(resp);
    }
}

/// `GET /v1/agent/checks`: `{"<checkID>": HealthCheck}`, `filter`.
pub(crate) fn checks(ctx: &Ctx<'_>) -> Result<Response<Body>> {
    let filter = ctx.filter()?;
    let all = ctx.st.agent.checks();
    let acl = ctx.acl.as_deref();
    let out: BTreeMap<&str, HealthCheckJson<'_>> = all
        .iter()
        .filter(|(_, c)| crate::acl::may_read_check(acl, c))
        .map(|(id, c)| (id.as_str(), HealthCheckJson::from(c)))
        .filter(|(_, j)| passes(filter.as_ref(), j))
        .collect();
    ctx.json(&out)
}

/// `?replace-existing-checks`: present and empty, or a true Go bool.
fn replace_existing_checks(ctx: &Ctx<'_>) -> bool {
    match ctx.query.get("replace-existing-checks") {
        None => false,
        Some("") => true,
        Some(v) => parse_bool(v).unwrap_or(false),
    }
}

/// `PUT /v1/agent/service/register[?replace-existing-checks]`.
pub(crate) async fn register_service<B>(ctx: &Ctx<'_>, req: Request<B>) -> Result<Response<Body>>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Display,
{
    let replace = replace_existing_checks(ctx);
    let body = decode::read_bytes(req).await?;
    let def = definition::service_from_body(&body)?;
    crate::acl::require_opt(
        ctx.acl.as_deref(),
        Resource::Service,
        &def.name,
        Access::Write,
    )?;
    ctx.st
        .agent
        .register_service(def, replace)
        .await
        .map_err(agent_error)?;
    Ok(response::ok_empty())
}

/// `PUT /v1/agent/service/deregister/:id` (the ID may contain `/`).
pub(crate) async fn deregister_service(ctx: &Ctx<'_>, id: &str) -> Result<Response<Body>> {
    if id.is_empty() {
        return Err(Error::bad_request("Missing service ID"));
    }
    require_service(ctx, id, Access::Write)?;
    ctx.st
        .agent
        .deregister_service(id)
        .await
        .map_err(agent_error)?;
    Ok(response::ok_empty())
}

/// `PUT /v1/agent/check/register` (§5.1).
pub(crate) async fn register_check<B>(ctx: &Ctx<'_>, req: Request<B>) -> Result<Response<Body>>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Display,
{
    let body = decode::read_bytes(req).await?;
    let def = definition::check_from_body(&body)?;
    if let Some(r) = ctx.acl.as_deref() {
        let services = ctx.st.agent.services();
        let service = services
            .get(&def.service_id)
            .map_or("", |l| l.service.service.as_str());
        crate::acl::require_check_write(Some(r), service, &ctx.st.cfg.node_name)?;
    }
    ctx.st
        .agent
        .register_check(def)
        .await
        .map_err(agent_error)?;
    Ok(response::ok_empty())
}

/// `PUT /v1/agent/check/deregister/:id`.
pub(crate) async fn deregister_check(ctx: &Ctx<'_>, id: &str) -> Result<Response<Body>> {
    require_check(ctx, id)?;
    ctx.st
        .agent
        .deregister_check(id)
        .await
        .map_err(agent_error)?;
    Ok(response::ok_empty())
}

/// `PUT /v1/agent/check/pass|warn|fail/:id?note=`: the note is the output.
pub(crate) async fn ttl(ctx: &Ctx<'_>, id: &str, status: Status) -> Result<Response<Body>> {
    require_check(ctx, id)?;
    let note = ctx.query.get("note").unwrap_or_default();
    ctx.st
        .agent
        .update_ttl(id, status, note)
        .await
        .map_err(agent_error)?;
    Ok(response::ok_empty())
}

const CHECK_UPDATE: Schema = Schema {
    fields: &[f("Status", Kind::Value), f("Output", Kind::Value)],
};

/// `PUT /v1/agent/check/update/:id` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
struct CheckUpdate {
    status: String,
    output: String,
}

impl Decode for CheckUpdate {
    const SCHEMA: &'static Schema = &CHECK_UPDATE;
}

/// `PUT /v1/agent/check/update/:id` with `{"Status","Output"}`.
pub(crate) async fn update_check<B>(
    ctx: &Ctx<'_>,
    id: &str,
    req: Request<B>,
) -> Result<Response<Body>>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Display,
{
    require_check(ctx, id)?;
    let body: CheckUpdate = decode::read(req).await?;
    let status = Status::parse(&body.status)
        .ok_or_else(|| Error::bad_request(format!("Invalid check status: '{}'", body.status)))?;
    ctx.st
        .agent
        .update_ttl(id, status, &body.output)
        .await
        .map_err(agent_error)?;
    Ok(response::ok_empty())
}

/// One local instance's health (§5).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceHealthJson<'a> {
    aggregated_status: &'a str,
    service: Option<AgentServiceJson<'a>>,
    checks: Option<Vec<HealthCheckJson<'a>>>,
}

impl<'a> ServiceHealthJson<'a> {
    fn new(h: &'a LocalServiceHealth, dc: &'a str) -> Self {
        ServiceHealthJson {
            aggregated_status: &h.aggregated,
            service: Some(AgentServiceJson::new(&h.service, dc)),
            checks: Some(h.checks.iter().map(HealthCheckJson::from).collect()),
        }
    }
}

/// The status code for an aggregate: passing 200, warning 429, else 503.
fn health_code(aggregated: &str) -> StatusCode {
    match aggregated {
        "passing" => StatusCode::OK,
        "warning" => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// `?format=text` or `Accept: text/plain…`.
fn wants_text(ctx: &Ctx<'_>, accept_text: bool) -> bool {
    accept_text || ctx.query.get("format") == Some("text")
}

fn with_status(mut resp: Response<Body>, code: StatusCode) -> Response<Body> {
    *resp.status_mut() = code;
    resp
}

/// `GET /v1/agent/health/service/id/:id`.
pub(crate) fn health_by_id(ctx: &Ctx<'_>, id: &str, accept_text: bool) -> Result<Response<Body>> {
    if id.is_empty() {
        return Err(Error::bad_request("Missing serviceID"));
    }
    require_service(ctx, id, Access::Read)?;
    let text = wants_text(ctx, accept_text);
    let Some(h) = ctx.st.agent.service_health(id) else {
        if text {
            return Ok(response::text(
                StatusCode::NOT_FOUND,
                format!("ServiceId {id} not found"),
            ));
        }
        let unknown = ServiceHealthJson {
            aggregated_status: "critical",
            service: None,
            checks: None,
        };
        return Ok(with_status(ctx.json(&unknown)?, StatusCode::NOT_FOUND));
    };
    let code = health_code(&h.aggregated);
    if text {
        return Ok(response::text(code, h.aggregated.clone()));
    }
    let j = ServiceHealthJson::new(&h, &ctx.st.cfg.datacenter);
    Ok(with_status(ctx.json(&j)?, code))
}

/// `GET /v1/agent/health/service/name/:name`: every local instance of the
/// service; the code is the worst (200 < 429 < 503), 404 with `[]` if none.
pub(crate) fn health_by_name(
    ctx: &Ctx<'_>,
    name: &str,
    accept_text: bool,
) -> Result<Response<Body>> {
    if name.is_empty() {
        return Err(Error::bad_request("Missing service Name"));
    }
    let text = wants_text(ctx, accept_text);
    let agent = &ctx.st.agent;
    let healths: Vec<LocalServiceHealth> = agent
        .services()
        .values()
        .filter(|l| l.service.service == name)
        .filter_map(|l| agent.service_health(&l.service.id))
        .collect();
    let mut code = StatusCode::NOT_FOUND;
    let mut status = format!("ServiceName {name} Not Found");
    for h in &healths {
        let c = health_code(&h.aggregated);
        if code == StatusCode::NOT_FOUND || c.as_u16() > code.as_u16() {
            code = c;
            status.clone_from(&h.aggregated);
        }
    }
    if text {
        return Ok(response::text(code, status));
    }
    let dc = ctx.st.cfg.datacenter.as_str();
    let list: Vec<ServiceHealthJson<'_>> = healths
        .iter()
        .map(|h| ServiceHealthJson::new(h, dc))
        .collect();
    Ok(with_status(ctx.json(&list)?, code))
}

/// `/v1/agent/*`: answered from this agent's own state.
pub(crate) const ROUTES: &[Route] = &[
    exact("/v1/agent/self", GET, on_agent!(|ctx, _| self_(ctx))),
    exact("/v1/agent/members", GET, on_agent!(|ctx, _| members(ctx))),
    under(
        "/v1/agent/join/",
        PUT,
        on_agent!(|ctx, c| join(ctx, &c.rest).await),
    ),
    exact("/v1/agent/leave", PUT, on_agent!(|ctx, _| leave(ctx).await)),
    under(
        "/v1/agent/force-leave/",
        PUT,
        on_agent!(|ctx, c| force_leave(ctx, &c.rest).await),
    ),
    exact(
        "/v1/agent/reload",
        PUT,
        on_agent!(|ctx, _| reload(ctx).await),
    ),
    exact(
        "/v1/agent/maintenance",
        PUT,
        on_agent!(|ctx, _| maintenance(ctx).await),
    ),
    exact("/v1/agent/services", GET, on_agent!(|ctx, _| services(ctx))),
    under(
        "/v1/agent/service/",
        GET,
        on_agent!(|ctx, c| service(ctx, &c.rest).await),
    ),
    exact(
        "/v1/agent/service/register",
        PUT,
        on_agent!(|ctx, c| register_service(ctx, c.req).await),
    ),
    under(
        "/v1/agent/service/deregister/",
        PUT,
        on_agent!(|ctx, c| deregister_service(ctx, &c.rest).await),
    ),
    under(
        "/v1/agent/service/maintenance/",
        PUT,
        on_agent!(|ctx, c| service_maintenance(ctx, &c.rest).await),
    ),
    exact("/v1/agent/checks", GET, on_agent!(|ctx, _| checks(ctx))),
    exact(
        "/v1/agent/check/register",
        PUT,
        on_agent!(|ctx, c| register_check(ctx, c.req).await),
    ),
    under(
        "/v1/agent/check/deregister/",
        PUT,
        on_agent!(|ctx, c| deregister_check(ctx, &c.rest).await),
    ),
    under(
        "/v1/agent/check/pass/",
        PUT,
        on_agent!(|ctx, c| ttl(ctx, &c.rest, Status::Passing).await),
    ),
    under(
        "/v1/agent/check/warn/",
        PUT,
        on_agent!(|ctx, c| ttl(ctx, &c.rest, Status::Warning).await),
    ),
    under(
        "/v1/agent/check/fail/",
        PUT,
        on_agent!(|ctx, c| ttl(ctx, &c.rest, Status::Critical).await),
    ),
    under(
        "/v1/agent/check/update/",
        PUT,
        on_agent!(|ctx, c| update_check(ctx, &c.rest, c.req).await),
    ),
    under(
        "/v1/agent/health/service/id/",
        GET,
        on_agent!(|ctx, c| health_by_id(ctx, &c.rest, c.accepts_text())),
    ),
    under(
        "/v1/agent/health/service/name/",
        GET,
        on_agent!(|ctx, c| health_by_name(ctx, &c.rest, c.accepts_text())),
    ),
];
