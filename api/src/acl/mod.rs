//! Consul's ACL system: rules (`rules`), their merged decision
//! (`authz`), tokens, policies and roles stored through the log (`model`),
//! a request's token resolved to an authorizer with a cache per ACL state
//! (`resolve`), the `/v1/acl/*` endpoints (`endpoints`), and the guard
//! every request of a server passes ([`guard`]).
//!
//! What the guard checks per rule today: KV (read, write, recursive
//! delete; `recurse` and `keys` listings are filtered by the KV handler),
//! the ACL endpoints (`acl:read`/`acl:write`, checked by them), and the
//! status endpoints (open, as in Consul). Every other endpoint needs a
//! management token while ACLs are on: closed rather than open until its
//! rules are built.

mod authz;
mod endpoints;
pub(crate) mod model;
pub mod resolve;
pub mod rules;

pub use authz::Authorizer;
pub(crate) use endpoints::ROUTES;
pub use resolve::{Acl, AclConfig, Resolved};

use hyper::Method;
use rules::{Access, Resource};

use crate::error::Error;
use crate::query::Query;

/// Consul's 403 for a missing permission.
pub(crate) fn deny(r: &Resolved, permission: &str) -> Error {
    Error::Forbidden(format!(
        "Permission denied: token with AccessorID '{}' lacks permission '{permission}'",
        r.accessor
    ))
}

/// Now, as Go's `time.Time` JSON.
pub(crate) fn now_rfc3339() -> String {
    crate::autopilot::health::rfc3339(std::time::SystemTime::now())
}

/// May `r` make this request (`path` decoded, `rest` the resource of a
/// prefix route)? Listings are filtered by their handlers instead.
pub(crate) fn guard(
    r: &Resolved,
    method: &Method,
    path: &str,
    query: &Query,
    node: &str,
) -> Result<(), Error> {
    if r.authz.is_management() || path.starts_with("/v1/acl/") || path.starts_with("/v1/status/") {
        return Ok(());
    }
    if path == "/v1/agent/self" && matches!(*method, Method::GET | Method::HEAD) {
        return if r.authz.allowed(Resource::Agent, node, Access::Read) {
            Ok(())
        } else {
            Err(deny_on(r, "agent:read", node))
        };
    }
    if let Some(key) = path.strip_prefix("/v1/kv/") {
        let (ok, perm) = match *method {
            Method::GET | Method::HEAD if query.recurse() || query.keys() => (true, "key:list"),
            Method::GET | Method::HEAD => (
                r.authz.allowed(Resource::Key, key, Access::Read),
                "key:read",
            ),
            Method::DELETE if query.recurse() => (
                r.authz.allowed_under(Resource::Key, key, Access::Write),
                "key:write",
            ),
            _ => (
                r.authz.allowed(Resource::Key, key, Access::Write),
                "key:write",
            ),
        };
        return if ok {
            Ok(())
        } else {
            Err(deny_on(r, perm, key))
        };
    }
    if path == "/v1/txn" || path.starts_with("/v1/session/") || path.starts_with("/v1/event/") {
        // Checked by their handlers (each operation; the session's node;
        // the event's name).
        return Ok(());
    }
    let read = matches!(*method, Method::GET | Method::HEAD);
    if read
        && (FILTERED_READS.contains(&path)
            || FILTERED_READ_PREFIXES.iter().any(|p| path.starts_with(p)))
    {
        return Ok(());
    }
    Err(Error::Forbidden(format!(
        "Permission denied: token with AccessorID '{}' lacks permission 'management' \
         (with ACLs on, muster checks rules for KV, catalog and health service reads and \
         the ACL endpoints; {path} needs a management token until its rules are built)",
        r.accessor
    )))
}

/// May `r` run transaction operation `i`? KV operations are checked by
/// key (tree verbs on everything under the prefix); catalog and session
/// operations need a management token for now.
pub(crate) fn check_txn_op(
    r: &Resolved,
    i: usize,
    op: &muster_engine::txn::TxnOp,
) -> Result<(), Error> {
    use muster_engine::txn::{KvVerb, TxnOp};
    if r.authz.is_management() {
        return Ok(());
    }
    let (ok, perm, name) = match op {
        TxnOp::Kv { verb, key, .. } => match verb {
            KvVerb::Get
            | KvVerb::GetOrEmpty
            | KvVerb::CheckIndex
            | KvVerb::CheckSession
            | KvVerb::CheckNotExists => (
                r.authz.allowed(Resource::Key, key, Access::Read),
                "key:read",
                key.as_str(),
            ),
            KvVerb::GetTree => (
                r.authz.allowed_under(Resource::Key, key, Access::Read),
                "key:read",
                key.as_str(),
            ),
            KvVerb::DeleteTree => (
                r.authz.allowed_under(Resource::Key, key, Access::Write),
                "key:write",
                key.as_str(),
            ),
            _ => (
                r.authz.allowed(Resource::Key, key, Access::Write),
                "key:write",
                key.as_str(),
            ),
        },
        _ => (false, "management", ""),
    };
    if ok {
        return Ok(());
    }
    Err(match deny_on(r, perm, name) {
        Error::Forbidden(msg) => Error::Forbidden(format!("{msg} (transaction operation {i})")),
        other => other,
    })
}

/// `session:write` on `node` (creating, renewing or destroying a session
/// there).
pub(crate) fn check_session_write(r: Option<&Resolved>, node: &str) -> Result<(), Error> {
    match r {
        Some(r) if !may(r, Resource::Session, node, true) => Err(deny_on(r, "session:write", node)),
        _ => Ok(()),
    }
}

/// Whether `r` may read sessions of `node` (for filtering).
pub(crate) fn may_read_session(r: Option<&Resolved>, node: &str) -> bool {
    r.is_none_or(|r| r.authz.allowed(Resource::Session, node, Access::Read))
}

/// May `r` read (or, with `write`, write) `name` of `resource`?
pub(crate) fn may(r: &Resolved, resource: Resource, name: &str, write: bool) -> bool {
    let want = if write { Access::Write } else { Access::Read };
    r.authz.allowed(resource, name, want)
}

/// Consul's 403 for `permission` on `name`.
pub(crate) fn deny_on(r: &Resolved, permission: &str, name: &str) -> Error {
    Error::Forbidden(format!(
        "Permission denied: token with AccessorID '{}' lacks permission '{permission}' on {name:?}",
        r.accessor
    ))
}

/// Whether `r` may read `key` (for filtering listings).
pub(crate) fn may_read_key(r: Option<&Resolved>, key: &str) -> bool {
    r.is_none_or(|r| r.authz.allowed(Resource::Key, key, Access::Read))
}

/// Whether `r` may read service `name` on node `node` (for filtering).
pub(crate) fn may_read_instance(r: Option<&Resolved>, service: &str, node: &str) -> bool {
    r.is_none_or(|r| {
        r.authz.allowed(Resource::Service, service, Access::Read)
            && r.authz.allowed(Resource::Node, node, Access::Read)
    })
}

/// Whether `r` may read node `name` (for filtering).
pub(crate) fn may_read_node(r: Option<&Resolved>, node: &str) -> bool {
    r.is_none_or(|r| r.authz.allowed(Resource::Node, node, Access::Read))
}

/// `X-Consul-Results-Filtered-By-ACLs: true` when rows were left out for
/// a token the request named.
pub(crate) fn filtered_header(
    out: &mut crate::shared::Rendered,
    r: Option<&Resolved>,
    filtered: bool,
) {
    if filtered && r.is_some_and(|a| a.given) {
        out.headers.insert(
            "X-Consul-Results-Filtered-By-ACLs",
            hyper::header::HeaderValue::from_static("true"),
        );
    }
}

/// Reads that filter rows by the token's rules instead of needing a
/// management token.
const FILTERED_READS: &[&str] = &[
    "/v1/catalog/nodes",
    "/v1/catalog/services",
    "/v1/catalog/datacenters",
    "/v1/agent/members",
    "/v1/agent/services",
    "/v1/agent/checks",
];
const FILTERED_READ_PREFIXES: &[&str] = &["/v1/catalog/service/", "/v1/health/service/"];
