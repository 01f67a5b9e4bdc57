//! `/v1/session/*` (consul-compat.md §8): create (body decoded with
//! [`crate::decode`], defaults and the request-level rules of §8.2 applied
//! here), destroy, renew, and the blocking reads `info`, `node` and `list`.
//! Whether the node and linked checks exist (and are not critical) is the
//! engine's decision at apply time; its `Rejected` message becomes a 500.
//! Lock semantics and invalidation are the engine's too.

use std::fmt::Display;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Request, Response};
use muster_engine::{duration, Command, ServiceCheckRef, Session, SessionBehavior};
use serde::Deserialize;

use crate::catalog::MISSING_NODE;
use crate::decode::{self, f, Decode, Kind, Schema};
use crate::error::{Error, Result};
use crate::kv::propose_bool;
use crate::response::Body;
use crate::router::EngineCtx;
use crate::routes::{exact, on_cluster, under, Route, GET, PUT};
use crate::shapes::SessionJson;

/// `Missing session` body (empty session ID in the path).
pub const MISSING_SESSION: &str = "Missing session";
/// The default (and Consul's only built-in) node check.
pub const SERF_HEALTH: &str = "serfHealth";
/// Lock-delay when the body gives none.
pub const DEFAULT_LOCK_DELAY: Duration = Duration::from_secs(15);
/// Longest lock-delay applied (longer values are capped).
pub const MAX_LOCK_DELAY: Duration = Duration::from_secs(60);
/// Longest session TTL.
pub const SESSION_TTL_MAX: Duration = Duration::from_secs(24 * 60 * 60);

use Kind::Value as V;

/// A linked service check: `{"ID","Namespace"}`.
const SERVICE_CHECK: Schema = Schema {
    fields: &[f("ID", V), f("Namespace", V)],
};

/// The session object (`api.SessionEntry`), also the `Session` of a
/// transaction's session operation.
pub(crate) const SESSION_ENTRY: Schema = Schema {
    fields: &[
        f("ID", V),
        f("Name", V),
        f("Node", V),
        f("LockDelay", Kind::LockDelay),
        f("Behavior", V),
        f("TTL", V),
        f("Checks", V),
        f("NodeChecks", V),
        f("ServiceChecks", Kind::List(&SERVICE_CHECK)),
        f("Namespace", V),
        f("Partition", V),
        f("CreateIndex", V),
        f("ModifyIndex", V),
    ],
};

/// A linked service check as sent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
struct ServiceCheckIn {
    #[serde(rename = "ID")]
    id: String,
    namespace: String,
}

/// The session body as sent; `None` = absent (the default applies).
/// `Namespace`, `Partition` and the indexes are accepted and ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
pub(crate) struct SessionIn {
    /// Ignored by create (a new ID is generated); the target of a
    /// transaction's session `delete`.
    #[serde(rename = "ID")]
    pub id: String,
    name: String,
    node: Option<String>,
    /// Nanoseconds (decoded by the `LockDelay` rule).
    lock_delay: Option<u64>,
    behavior: String,
    #[serde(rename = "TTL")]
    ttl: String,
    checks: Option<Vec<String>>,
    node_checks: Option<Vec<String>>,
    service_checks: Option<Vec<ServiceCheckIn>>,
    #[serde(rename = "Namespace")]
    _namespace: String,
    #[serde(rename = "Partition")]
    _partition: String,
    #[serde(rename = "CreateIndex")]
    _create_index: u64,
    #[serde(rename = "ModifyIndex")]
    _modify_index: u64,
}

impl Decode for SessionIn {
    const SCHEMA: &'static Schema = &SESSION_ENTRY;
}

/// A server-side validation failure: 500 with Consul's message.
fn invalid(msg: impl Into<String>) -> Error {
    Error::Internal(msg.into())
}

/// The node checks a session gets from the deprecated `Checks` and
/// `NodeChecks` (Consul's `fixupEmptySessionChecks`, then `CheckIDs`):
/// both default to `["serfHealth"]`; `Checks` present and empty means no
/// node checks at all (Patroni's `checks: []`); `Checks` absent or exactly
/// `["serfHealth"]` lets `NodeChecks` decide; an explicit empty
/// `NodeChecks` drops `Checks`; otherwise both count, `Checks` first. The
/// engine keeps one list, so the result is their union.
pub(crate) fn resolve_node_checks(
    checks: Option<Vec<String>>,
    node_checks: Option<Vec<String>>,
) -> Vec<String> {
    let mut node_checks = node_checks.unwrap_or_else(|| vec![SERF_HEALTH.to_string()]);
    let checks = match checks {
        None => Vec::new(),
        Some(c) if c.is_empty() => {
            node_checks.clear();
            Vec::new()
        }
        Some(c) if c.len() == 1 && c.first().is_some_and(|id| id == SERF_HEALTH) => Vec::new(),
        Some(_) if node_checks.is_empty() => Vec::new(),
        Some(c) => c,
    };
    let mut out = checks;
    for id in node_checks {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

/// Consul's TTL rule: `""` or zero = none; else within `[min, 24h]`.
pub(crate) fn check_ttl(ttl: &str, min: Duration) -> Result<()> {
    if ttl.is_empty() {
        return Ok(());
    }
    let (negative, d) = duration::parse_signed(ttl)
        .map_err(|e| invalid(format!("Session TTL '{ttl}' invalid: {e}")))?;
    if d.is_zero() {
        return Ok(());
    }
    if negative || d < min || d > SESSION_TTL_MAX {
        let sign = if negative { "-" } else { "" };
        return Err(invalid(format!(
            "Invalid Session TTL '{sign}{}', must be between [{}={}]",
            d.as_nanos(),
            duration::format(min),
            duration::format(SESSION_TTL_MAX)
        )));
    }
    Ok(())
}

/// A random (version 4) UUID string. Built from `rand` (already a
/// dependency) rather than pulling in the `uuid` crate for one function.
pub(crate) fn new_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    // 32 ASCII hex digits: every slice below is in bounds.
    format!(
        "{}-{}-{}-{}-{}",
        hex.get(0..8).unwrap_or_default(),
        hex.get(8..12).unwrap_or_default(),
        hex.get(12..16).unwrap_or_default(),
        hex.get(16..20).unwrap_or_default(),
        hex.get(20..32).unwrap_or_default()
    )
}

/// Apply the defaults and the request-level rules (§8.2) to a create body;
/// `node` is the agent's node name (the default).
pub(crate) fn build_session(body: SessionIn, node: String, ttl_min: Duration) -> Result<Session> {
    let node = body.node.unwrap_or(node);
    if node.is_empty() {
        return Err(invalid("Must provide Node"));
    }
    let behavior = match body.behavior.as_str() {
        "" | "release" => SessionBehavior::Release,
        "delete" => SessionBehavior::Delete,
        other => return Err(invalid(format!("Invalid Behavior setting '{other}'"))),
    };
    check_ttl(&body.ttl, ttl_min)?;
    let max_ns = u64::try_from(MAX_LOCK_DELAY.as_nanos()).unwrap_or(u64::MAX);
    let default_ns = u64::try_from(DEFAULT_LOCK_DELAY.as_nanos()).unwrap_or(u64::MAX);
    Ok(Session {
        id: new_uuid(),
        name: body.name,
        node,
        lock_delay_ns: body.lock_delay.unwrap_or(default_ns).min(max_ns),
        behavior,
        ttl: body.ttl,
        node_checks: Some(resolve_node_checks(body.checks, body.node_checks)),
        service_checks: body.service_checks.map(|list| {
            list.into_iter()
                .map(|c| ServiceCheckRef {
                    id: c.id,
                    namespace: c.namespace,
                })
                .collect()
        }),
        create_index: 0,
        modify_index: 0,
    })
}

/// `{"ID":"<uuid>"}`.
#[derive(serde::Serialize)]
struct Created<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
}

/// `PUT /v1/session/create` (the body is optional).
pub(crate) async fn create<B>(ctx: &EngineCtx<'_>, req: Request<B>) -> Result<Response<Body>>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Display,
{
    // A client agent forwarding this names itself: its node is the default.
    let agent_node = req
        .headers()
        .get(crate::client::X_AGENT_NODE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    let body: SessionIn = decode::from_slice_or_default(&decode::read_bytes(req).await?)?;
    let node = agent_node.unwrap_or_else(|| ctx.engine.node_name());
    let session = build_session(body, node, ctx.st.cfg.session_ttl_min)?;
    crate::acl::check_session_write(ctx.acl.as_deref(), &session.node)?;
    let id = session.id.clone();
    let applied = ctx
        .engine
        .propose(Command::SessionCreate { session })
        .await?;
    match applied.response {
        muster_engine::Response::Bool(true) => ctx.json(&Created { id: &id }),
        muster_engine::Response::Rejected(msg) => Err(invalid(msg)),
        other => Err(invalid(format!("unexpected response {other:?}"))),
    }
}

/// `PUT /v1/session/destroy/:id` (unknown IDs are fine).
pub(crate) async fn destroy(ctx: &EngineCtx<'_>, id: &str) -> Result<Response<Body>> {
    if id.is_empty() {
        return Err(Error::bad_request(MISSING_SESSION));
    }
    check_existing(ctx, id)?;
    propose_bool(ctx, Command::SessionDestroy { id: id.to_string() }).await
}

/// `PUT /v1/session/renew/:id`: `[Session]`, or 404 when unknown.
pub(crate) async fn renew(ctx: &EngineCtx<'_>, id: &str) -> Result<Response<Body>> {
    if id.is_empty() {
        return Err(Error::bad_request(MISSING_SESSION));
    }
    check_existing(ctx, id)?;
    match ctx.engine.session_renew(id).await? {
        Some(s) => ctx.json(&[SessionJson::from(&s)]),
        None => Err(Error::NotFound(format!("Session id '{id}' not found"))),
    }
}

/// With ACLs on: `session:write` on the node of session `id` (if it
/// exists).
fn check_existing(ctx: &EngineCtx<'_>, id: &str) -> Result<()> {
    if let Some(acl) = ctx.acl.as_deref() {
        let found = ctx
            .engine
            .session_get(id, &mut muster_engine::WatchSet::new())?;
        if let Some(s) = &found.value {
            crate::acl::check_session_write(Some(acl), &s.node)?;
        }
    }
    Ok(())
}

/// Sessions as JSON, those the token may not read left out.
fn render_sessions<'a>(
    ctx: &EngineCtx<'_>,
    index: u64,
    sessions: impl Iterator<Item = &'a Session>,
) -> Result<crate::shared::Rendered> {
    let acl = ctx.acl.as_deref();
    let out: Vec<SessionJson<'_>> = sessions
        .filter(|s| crate::acl::may_read_session(acl, &s.node))
        .map(SessionJson::from)
        .collect();
    ctx.render_json(index, &out)
}

/// `GET /v1/session/info/:id`: `[Session]` or `[]`.
pub(crate) async fn info(ctx: &EngineCtx<'_>, id: &str) -> Result<Response<Body>> {
    if id.is_empty() {
        return Err(Error::bad_request(MISSING_SESSION));
    }
    let engine = &ctx.engine;
    ctx.shared_read(|ws| {
        let r = engine.session_get(id, ws)?;
        render_sessions(ctx, r.index, r.value.iter())
    })
    .await
}

/// `GET /v1/session/node/:node`.
pub(crate) async fn node(ctx: &EngineCtx<'_>, node: &str) -> Result<Response<Body>> {
    if node.is_empty() {
        return Err(Error::bad_request(MISSING_NODE));
    }
    let engine = &ctx.engine;
    ctx.shared_read(|ws| {
        let r = engine.session_node(node, ws)?;
        render_sessions(ctx, r.index, r.value.iter())
    })
    .await
}

/// `GET /v1/session/list`.
pub(crate) async fn list(ctx: &EngineCtx<'_>) -> Result<Response<Body>> {
    let engine = &ctx.engine;
    ctx.shared_read(|ws| {
        let r = engine.session_list(ws)?;
        render_sessions(ctx, r.index, r.value.iter())
    })
    .await
}

/// `/v1/session/*`.
pub(crate) const ROUTES: &[Route] = &[
    exact(
        "/v1/session/create",
        PUT,
        on_cluster!(|ctx, c| create(ctx, c.req).await),
    ),
    under(
        "/v1/session/destroy/",
        PUT,
        on_cluster!(|ctx, c| destroy(ctx, &c.rest).await),
    ),
    under(
        "/v1/session/renew/",
        PUT,
        on_cluster!(|ctx, c| renew(ctx, &c.rest).await),
    ),
    under(
        "/v1/session/info/",
        GET,
        on_cluster!(|ctx, c| info(ctx, &c.rest).await),
    ),
    under(
        "/v1/session/node/",
        GET,
        on_cluster!(|ctx, c| node(ctx, &c.rest).await),
    ),
    exact(
        "/v1/session/list",
        GET,
        on_cluster!(|ctx, _| list(ctx).await),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn session_checks_resolution_follows_consul() {
        let r =
            |c: Option<&[&str]>, n: Option<&[&str]>| resolve_node_checks(c.map(ids), n.map(ids));
        // Defaults: serfHealth.
        assert_eq!(r(None, None), ["serfHealth"]);
        // Patroni: `checks: []` → no node checks at all.
        assert!(r(Some(&[]), None).is_empty());
        assert!(r(Some(&[]), Some(&["a"])).is_empty());
        // Checks absent or the default: NodeChecks decides.
        assert_eq!(r(None, Some(&["a"])), ["a"]);
        assert!(r(None, Some(&[])).is_empty());
        assert!(r(Some(&["serfHealth"]), Some(&[])).is_empty());
        assert_eq!(r(Some(&["serfHealth"]), Some(&["b"])), ["b"]);
        // An explicit empty NodeChecks drops Checks.
        assert!(r(Some(&["a"]), Some(&[])).is_empty());
        // Otherwise both, Checks first, without duplicates.
        assert_eq!(r(Some(&["a"]), None), ["a", "serfHealth"]);
        assert_eq!(r(Some(&["a", "b"]), Some(&["b", "c"])), ["a", "b", "c"]);
    }

    #[test]
    fn session_ttl_rules_and_messages() {
        let min = Duration::from_secs(10);
        for ok in ["", "0", "0s", "10s", "30s", "24h", "1440m"] {
            assert!(check_ttl(ok, min).is_ok(), "{ok}");
        }
        let msg = |t: &str| check_ttl(t, min).err().map(|e| e.to_string());
        assert_eq!(
            msg("5s").as_deref(),
            Some("Invalid Session TTL '5000000000', must be between [10s=24h0m0s]")
        );
        assert_eq!(
            msg("86401s").as_deref(),
            Some("Invalid Session TTL '86401000000000', must be between [10s=24h0m0s]")
        );
        assert_eq!(
            msg("-30s").as_deref(),
            Some("Invalid Session TTL '-30000000000', must be between [10s=24h0m0s]")
        );
        assert_eq!(
            msg("abc").as_deref(),
            Some("Session TTL 'abc' invalid: time: invalid duration \"abc\"")
        );
        assert_eq!(
            check_ttl("1s", Duration::from_millis(1500))
                .err()
                .map(|e| e.to_string())
                .as_deref(),
            Some("Invalid Session TTL '1000000000', must be between [1.5s=24h0m0s]")
        );
    }

    #[test]
    fn session_uuid_is_v4() {
        let a = new_uuid();
        assert!(crate::catalog::check_uuid(&a).is_ok(), "{a}");
        assert_eq!(a.get(14..15), Some("4"));
        assert!(matches!(a.get(19..20), Some("8" | "9" | "a" | "b")), "{a}");
        assert_ne!(a, new_uuid());
    }
}
