//! Consul's ACL system: rules (`rules`), their merged decision
//! (`authz`), tokens, policies and roles stored through the log (`model`),
//! a request's token resolved to an authorizer with a cache per ACL state
//! (`resolve`), the `/v1/acl/*` endpoints (`endpoints`), and the guard
//! every request of a server passes (`guard`).
//!
//! What each endpoint needs is one table in `guard`; listings filter their
//! rows with the `may_*` checks here.

pub mod agent_tokens;
mod authz;
mod endpoints;
mod guard;
pub(crate) mod model;
mod remote;
pub mod resolve;
pub mod rules;

pub use authz::Authorizer;
pub(crate) use endpoints::ROUTES;
pub(crate) use guard::{check_command, check_txn_op, guard, require_check_write, require_opt};
pub use resolve::{Acl, AclConfig, DownPolicy, Resolved};

use rules::{Access, Resource};

use crate::error::Error;

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

/// May a client agent holding `token` propose `commands` (its
/// anti-entropy) or, with `read_node`, read that node? For the server RPC
/// port; `Err` is Consul's refusal text.
pub fn authorize_client(
    acl: &Acl,
    engine: &muster_engine::Engine,
    token: &str,
    commands: &[muster_engine::Command],
    read_node: Option<&str>,
) -> Result<(), String> {
    let r = acl
        .resolve(engine, Some(token))
        .map_err(|e| e.to_string())?;
    if let Some(node) = read_node {
        guard::require(&r, Resource::Node, node, Access::Read).map_err(|e| e.to_string())?;
    }
    commands
        .iter()
        .try_for_each(|c| check_command(&r, engine, c))
        .map_err(|e| e.to_string())
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

/// Whether `r` may read check `c` (node-level: the node; else its
/// instance).
pub(crate) fn may_read_check(r: Option<&Resolved>, c: &muster_engine::Check) -> bool {
    if c.service_name.is_empty() {
        may_read_node(r, &c.node)
    } else {
        may_read_instance(r, &c.service_name, &c.node)
    }
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
