//! `/v1/acl/*`: bootstrap (once), tokens (create, read, `self`, update,
//! clone, delete, list), policies (create, read by ID or name, update,
//! delete, list) and roles (the same), all through the log. Reads need
//! `acl:read`, writes `acl:write`; secrets are shown only to `acl:write`.
//! And `/v1/agent/token/<kind>`, the agent's own tokens (`acl:write`).

use std::fmt::Display;

use bytes::Bytes;
use hyper::{Method, Request, Response};
use muster_engine::{Command, WatchSet};
use serde::de::DeserializeOwned;

use super::model::{
    management_policy, Link, Policy, Role, Stored, Token, BOOTSTRAP, MANAGEMENT_POLICY_ID,
    MANAGEMENT_POLICY_NAME,
};
use super::rules::{parse, Access, Global};
use super::{deny, Resolved};
use crate::error::{Error, Result};
use crate::response::Body;
use crate::router::{Ctx, EngineCtx};
use crate::routes::{exact, on_agent, on_cluster, under, Call, Route};

fn acl_of<'a>(ctx: &'a EngineCtx<'_>) -> Result<&'a Resolved> {
    match (&ctx.st.cfg.acl, &ctx.acl) {
        (Some(_), Some(r)) => Ok(r),
        _ => Err(Error::Unauthorized("ACL support disabled".into())),
    }
}

fn need(r: &Resolved, want: Access) -> Result<()> {
    if r.authz.allowed_global(Global::Acl, want) {
        Ok(())
    } else {
        Err(deny(r, &format!("acl:{}", want.as_str())))
    }
}

/// A write is checked against the state the leader committed (a follower
/// first catches up to it), so it sees policies and roles made through
/// any server just before, as Consul's leader-side checks do.
async fn writable<'a>(ctx: &'a EngineCtx<'_>) -> Result<&'a Resolved> {
    let r = acl_of(ctx)?;
    need(r, Access::Write)?;
    ctx.engine.linearizable().await?;
    Ok(r)
}

fn body<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| Error::bad_request(format!("Request decode failed: {e}")))
}

async fn store<T: Stored>(ctx: &EngineCtx<'_>, item: &T, cas: Option<u64>) -> Result<bool> {
    let applied = ctx
        .engine
        .propose(Command::ObjectSet {
            object: item.to_object(),
            cas,
            unique_name: true,
        })
        .await?;
    match applied.response {
        muster_engine::Response::Bool(ok) => Ok(ok),
        muster_engine::Response::Rejected(msg) => Err(Error::bad_request(msg)),
        other => Err(Error::Internal(format!("unexpected response {other:?}"))),
    }
}

fn all<T: Stored>(ctx: &EngineCtx<'_>) -> Result<(u64, Vec<T>)> {
    let r = ctx.engine.objects(T::KIND, &mut WatchSet::new())?;
    Ok((r.index, r.value.iter().filter_map(T::from_object).collect()))
}

fn one<T: Stored>(ctx: &EngineCtx<'_>, id: &str) -> Result<Option<T>> {
    let r = ctx.engine.object(T::KIND, id, &mut WatchSet::new())?;
    Ok(r.value.as_ref().and_then(T::from_object))
}

fn with_index(mut resp: Response<Body>, index: u64) -> Response<Body> {
    if let Ok(v) = hyper::header::HeaderValue::from_str(&index.max(1).to_string()) {
        resp.headers_mut().insert("X-Consul-Index", v);
    }
    resp
}

/// Fill links' missing names or IDs from the stored `T`s (policies or
/// roles); an unknown one is a 400 naming it.
fn link_all<T: Stored>(ctx: &EngineCtx<'_>, links: &mut [Link], what: &str) -> Result<()> {
    let (_, items) = all::<T>(ctx)?;
    for l in links.iter_mut() {
        match items.iter().find(|t| l.names(t.id(), t.unique())) {
            Some(t) => {
                *l = Link {
                    id: t.id().to_string(),
                    name: t.unique().to_string(),
                }
            }
            None => {
                let named = if l.id.is_empty() { &l.name } else { &l.id };
                return Err(Error::bad_request(format!("cannot find {what} {named}")));
            }
        }
    }
    Ok(())
}

fn now() -> String {
    super::now_rfc3339()
}

/// `PUT /v1/acl/bootstrap`: the first management token, once.
async fn bootstrap(ctx: &EngineCtx<'_>) -> Result<Response<Body>> {
    if ctx.st.cfg.acl.is_none() {
        return Err(Error::Unauthorized("ACL support disabled".into()));
    }
    let marker = muster_engine::StoredObject {
        kind: BOOTSTRAP.into(),
        id: "done".into(),
        ..muster_engine::StoredObject::default()
    };
    let applied = ctx
        .engine
        .propose(Command::ObjectSet {
            object: marker,
            cas: Some(0),
            unique_name: false,
        })
        .await?;
    if applied.response != muster_engine::Response::Bool(true) {
        let at = one_marker(ctx)?;
        return Err(Error::Forbidden(format!(
            "Permission denied: ACL bootstrap no longer allowed (reset index: {at})"
        )));
    }
    store(ctx, &management_policy(), None).await?;
    let token = Token {
        accessor_id: crate::session::new_uuid(),
        secret_id: crate::session::new_uuid(),
        description: "Bootstrap Token (Global Management)".into(),
        policies: vec![Link {
            id: MANAGEMENT_POLICY_ID.into(),
            name: MANAGEMENT_POLICY_NAME.into(),
        }],
        create_time: now(),
        ..Token::default()
    };
    store(ctx, &token, Some(0)).await?;
    let stored = one::<Token>(ctx, &token.accessor_id)?.unwrap_or(token);
    ctx.json(&stored)
}

fn one_marker(ctx: &EngineCtx<'_>) -> Result<u64> {
    let r = ctx.engine.object(BOOTSTRAP, "done", &mut WatchSet::new())?;
    Ok(r.value.map_or(0, |o| o.modify_index))
}

/// `PUT /v1/acl/token` (create) and `PUT /v1/acl/token/<id>` (update).
async fn token_put(ctx: &EngineCtx<'_>, id: Option<&str>, call: Call) -> Result<Response<Body>> {
    writable(ctx).await?;
    let mut t: Token = body(&crate::decode::read_bytes(call.req).await?)?;
    match id {
        Some(id) => {
            let Some(old) = one::<Token>(ctx, id)? else {
                return Err(Error::NotFound(format!("Cannot find token {id:?}")));
            };
            if !t.accessor_id.is_empty() && t.accessor_id != id {
                return Err(Error::bad_request(
                    "AccessorID in the body does not match the URL",
                ));
            }
            t.accessor_id = id.to_string();
            t.secret_id = old.secret_id;
            t.create_time = old.create_time;
        }
        None => {
            if t.accessor_id.is_empty() {
                t.accessor_id = crate::session::new_uuid();
            }
            if t.secret_id.is_empty() {
                t.secret_id = crate::session::new_uuid();
            }
            if one::<Token>(ctx, &t.accessor_id)?.is_some() {
                return Err(Error::bad_request(
                    "Invalid Token: AccessorID is already in use",
                ));
            }
            t.create_time = now();
        }
    }
    link_all::<Policy>(ctx, &mut t.policies, "policy")?;
    link_all::<Role>(ctx, &mut t.roles, "role")?;
    store(ctx, &t, None).await?;
    let stored = one::<Token>(ctx, &t.accessor_id)?.unwrap_or(t);
    ctx.json(&stored)
}

/// `GET /v1/acl/token/self`: the token the request carries.
fn token_self(ctx: &EngineCtx<'_>) -> Result<Response<Body>> {
    let r = acl_of(ctx)?;
    let (_, tokens) = all::<Token>(ctx)?;
    match tokens.into_iter().find(|t| t.accessor_id == r.accessor) {
        Some(t) => ctx.json(&t),
        None => Err(Error::Forbidden("ACL not found".into())),
    }
}

async fn token_clone(ctx: &EngineCtx<'_>, id: &str, call: Call) -> Result<Response<Body>> {
    writable(ctx).await?;
    let Some(mut t) = one::<Token>(ctx, id)? else {
        return Err(Error::NotFound(format!("Cannot find token {id:?}")));
    };
    let given: Token = body(&crate::decode::read_bytes(call.req).await?)?;
    if !given.description.is_empty() {
        t.description = given.description;
    }
    t.accessor_id = crate::session::new_uuid();
    t.secret_id = crate::session::new_uuid();
    t.create_time = now();
    store(ctx, &t, Some(0)).await?;
    let stored = one::<Token>(ctx, &t.accessor_id)?.unwrap_or(t);
    ctx.json(&stored)
}

async fn delete<T: Stored>(ctx: &EngineCtx<'_>, id: &str) -> Result<Response<Body>> {
    writable(ctx).await?;
    if T::KIND == super::model::POLICY && id == MANAGEMENT_POLICY_ID {
        return Err(Error::bad_request(
            "Cannot delete the builtin global-management policy",
        ));
    }
    ctx.engine
        .propose(Command::ObjectDelete {
            kind: T::KIND.into(),
            id: id.to_string(),
        })
        .await?;
    ctx.json(&true)
}

fn read<T: Stored>(ctx: &EngineCtx<'_>, id: &str) -> Result<Response<Body>> {
    let r = acl_of(ctx)?;
    need(r, Access::Read)?;
    let (index, items) = all::<T>(ctx)?;
    match items.into_iter().find(|t| t.id() == id) {
        Some(t) => {
            let v = serde_json::to_value(&t).map_err(|e| Error::Internal(e.to_string()))?;
            let v = redact(v, r);
            Ok(with_index(ctx.json(&v)?, index))
        }
        None => Err(Error::NotFound(format!("ACL not found: {id}"))),
    }
}

/// A token's `SecretID` hidden unless the reader may write ACLs.
fn redact(mut v: serde_json::Value, r: &Resolved) -> serde_json::Value {
    if !r.authz.allowed_global(Global::Acl, Access::Write) {
        if let Some(s) = v.get_mut("SecretID") {
            *s = serde_json::Value::String("<hidden>".into());
        }
    }
    v
}

fn list<T: Stored>(ctx: &EngineCtx<'_>) -> Result<Response<Body>> {
    let r = acl_of(ctx)?;
    need(r, Access::Read)?;
    let (index, items) = all::<T>(ctx)?;
    let out: Vec<serde_json::Value> = items
        .iter()
        .filter_map(|t| serde_json::to_value(t).ok())
        .map(|v| redact(v, r))
        .collect();
    Ok(with_index(ctx.json(&out)?, index))
}

/// `PUT /v1/acl/policy[/<id>]`.
async fn policy_put(ctx: &EngineCtx<'_>, id: Option<&str>, call: Call) -> Result<Response<Body>> {
    writable(ctx).await?;
    let mut p: Policy = body(&crate::decode::read_bytes(call.req).await?)?;
    if p.name.is_empty() {
        return Err(Error::bad_request("Invalid Policy: no Name is set"));
    }
    parse(&p.rules).map_err(Error::bad_request)?;
    match id {
        Some(id) => {
            if id == MANAGEMENT_POLICY_ID {
                return Err(Error::bad_request(
                    "Changing the Rules for the builtin global-management policy is not permitted",
                ));
            }
            if one::<Policy>(ctx, id)?.is_none() {
                return Err(Error::NotFound(format!("Cannot find policy {id:?}")));
            }
            p.id = id.to_string();
        }
        None => p.id = crate::session::new_uuid(),
    }
    store(ctx, &p, None).await?;
    let stored = one::<Policy>(ctx, &p.id)?.unwrap_or(p);
    ctx.json(&stored)
}

/// `PUT /v1/acl/role[/<id>]`.
async fn role_put(ctx: &EngineCtx<'_>, id: Option<&str>, call: Call) -> Result<Response<Body>> {
    writable(ctx).await?;
    let mut role: Role = body(&crate::decode::read_bytes(call.req).await?)?;
    if role.name.is_empty() {
        return Err(Error::bad_request("Invalid Role: no Name is set"));
    }
    link_all::<Policy>(ctx, &mut role.policies, "policy")?;
    match id {
        Some(id) => {
            if one::<Role>(ctx, id)?.is_none() {
                return Err(Error::NotFound(format!("Cannot find role {id:?}")));
            }
            role.id = id.to_string();
        }
        None => role.id = crate::session::new_uuid(),
    }
    store(ctx, &role, None).await?;
    let stored = one::<Role>(ctx, &role.id)?.unwrap_or(role);
    ctx.json(&stored)
}

fn by_name<T: Stored>(ctx: &EngineCtx<'_>, name: &str) -> Result<Response<Body>> {
    let r = acl_of(ctx)?;
    need(r, Access::Read)?;
    let (index, items) = all::<T>(ctx)?;
    match items.into_iter().find(|t| t.unique() == name) {
        Some(t) => Ok(with_index(ctx.json(&t)?, index)),
        None => Err(Error::NotFound(format!("ACL not found: {name}"))),
    }
}

/// `/v1/acl/token/<rest>`.
async fn token_route(ctx: &EngineCtx<'_>, call: Call) -> Result<Response<Body>> {
    let rest = call.rest.clone();
    if rest == "self" {
        return token_self(ctx);
    }
    if let Some(id) = rest.strip_suffix("/clone") {
        return token_clone(ctx, id, call).await;
    }
    match call.method {
        Method::GET => read::<Token>(ctx, &rest),
        Method::DELETE => delete::<Token>(ctx, &rest).await,
        _ => token_put(ctx, Some(&rest), call).await,
    }
}

async fn policy_route(ctx: &EngineCtx<'_>, call: Call) -> Result<Response<Body>> {
    let rest = call.rest.clone();
    if let Some(name) = rest.strip_prefix("name/") {
        return by_name::<Policy>(ctx, name);
    }
    match call.method {
        Method::GET => read::<Policy>(ctx, &rest),
        Method::DELETE => delete::<Policy>(ctx, &rest).await,
        _ => policy_put(ctx, Some(&rest), call).await,
    }
}

async fn role_route(ctx: &EngineCtx<'_>, call: Call) -> Result<Response<Body>> {
    let rest = call.rest.clone();
    if let Some(name) = rest.strip_prefix("name/") {
        return by_name::<Role>(ctx, name);
    }
    match call.method {
        Method::GET => read::<Role>(ctx, &rest),
        Method::DELETE => delete::<Role>(ctx, &rest).await,
        _ => role_put(ctx, Some(&rest), call).await,
    }
}

const ONE: &str = "OPTIONS,GET,PUT,DELETE";

/// `PUT /v1/agent/token/<kind>` with `{"Token": "..."}`: replace one of
/// the agent's own tokens (`default`, `agent`, `agent_recovery`, `dns`,
/// `replication`, or Consul's legacy names); needs `acl:write`.
async fn set_agent_token<B>(ctx: &Ctx<'_>, kind: &str, req: Request<B>) -> Result<Response<Body>>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Display,
{
    let Some(acl) = &ctx.st.cfg.acl else {
        return Err(Error::bad_request("ACL support disabled"));
    };
    let body = crate::decode::read_bytes(req).await?;
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| Error::bad_request(format!("Request decode failed: {e}")))?;
    let token = v
        .as_object()
        .and_then(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case("token")))
        .and_then(|(_, t)| t.as_str())
        .ok_or_else(|| Error::bad_request("Request decode failed: missing \"Token\""))?;
    acl.tokens.set(kind, token)?;
    Ok(crate::response::ok_empty())
}

/// `/v1/acl/*`.
pub(crate) const ROUTES: &[Route] = &[
    under(
        "/v1/agent/token/",
        "OPTIONS,PUT",
        on_agent!(|ctx, c| set_agent_token(ctx, &c.rest, c.req).await),
    ),
    exact(
        super::remote::AUTHORIZER_PATH,
        "OPTIONS,GET",
        on_cluster!(|ctx, c| super::remote::authorizer(
            ctx,
            c.req.headers().contains_key(crate::client::X_AGENT_NODE)
        )),
    ),
    exact(
        "/v1/acl/bootstrap",
        "OPTIONS,PUT",
        on_cluster!(|ctx, _| bootstrap(ctx).await),
    ),
    exact(
        "/v1/acl/token",
        "OPTIONS,PUT",
        on_cluster!(|ctx, c| token_put(ctx, None, c).await),
    ),
    under(
        "/v1/acl/token/",
        ONE,
        on_cluster!(|ctx, c| token_route(ctx, c).await),
    ),
    exact(
        "/v1/acl/tokens",
        "OPTIONS,GET",
        on_cluster!(|ctx, _| list::<Token>(ctx)),
    ),
    exact(
        "/v1/acl/policy",
        "OPTIONS,PUT",
        on_cluster!(|ctx, c| policy_put(ctx, None, c).await),
    ),
    under(
        "/v1/acl/policy/",
        ONE,
        on_cluster!(|ctx, c| policy_route(ctx, c).await),
    ),
    exact(
        "/v1/acl/policies",
        "OPTIONS,GET",
        on_cluster!(|ctx, _| list::<Policy>(ctx)),
    ),
    exact(
        "/v1/acl/role",
        "OPTIONS,PUT",
        on_cluster!(|ctx, c| role_put(ctx, None, c).await),
    ),
    under(
        "/v1/acl/role/",
        ONE,
        on_cluster!(|ctx, c| role_route(ctx, c).await),
    ),
    exact(
        "/v1/acl/roles",
        "OPTIONS,GET",
        on_cluster!(|ctx, _| list::<Role>(ctx)),
    ),
];
