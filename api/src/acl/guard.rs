//! What each request needs of its token: one table from route to
//! permission ([`need`]), the guard every request of a server passes
//! ([`guard`]), and the checks handlers make where the resource is in the
//! body or the state (a transaction's operations, a catalog command's node,
//! services and checks, an agent's own services and checks).
//!
//! The permissions are Consul's (its `acl/` docs per endpoint): reads of
//! listings filter rows instead of failing; a read of one named thing
//! needs `read` on it; a change needs `write`; the operator, keyring and
//! ACL endpoints need their global permission; snapshots and the change
//! feed (everything in one stream) need a management token.

use hyper::Method;
use muster_engine::command::Command;
use muster_engine::Engine;

use super::rules::{Access, Global, Resource};
use super::{deny, deny_on, Resolved};
use crate::error::{Error, Result};
use crate::query::Query;

/// What a request needs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Need<'a> {
    /// Any token (the status endpoints; the ACL endpoints, which check
    /// `acl:read`/`acl:write` themselves).
    Open,
    /// Checked by the handler: per row of a listing, per operation of a
    /// transaction, or on a name in the body or the state.
    Handler,
    /// `access` on the named `resource`.
    On(Resource, &'a str, Access),
    /// `access` on every name under a prefix (a recursive KV delete).
    Under(Resource, &'a str, Access),
    /// A single-value resource (`operator`, `keyring`, `acl`).
    Global(Global, Access),
    /// A management token.
    Management,
}

/// The need of a request for `path` (decoded) on the agent `node`.
pub(crate) fn need<'a>(method: &Method, path: &'a str, query: &Query, node: &'a str) -> Need<'a> {
    let read = matches!(*method, Method::GET | Method::HEAD);
    let want = if read { Access::Read } else { Access::Write };
    let on = |r: Resource, name: &'a str, a: Access| Need::On(r, name, a);
    // The authorizer endpoint answers a client agent with the rules of the
    // token it names, and only over the RPC port.
    if path.starts_with("/v1/acl/")
        || path.starts_with("/v1/status/")
        || path == super::remote::AUTHORIZER_PATH
    {
        return Need::Open;
    }
    if let Some(key) = path.strip_prefix("/v1/kv/") {
        return match *method {
            // Listings are filtered by the KV handler.
            Method::GET | Method::HEAD if query.recurse() || query.keys() => Need::Handler,
            Method::DELETE if query.recurse() => Need::Under(Resource::Key, key, want),
            _ => on(Resource::Key, key, want),
        };
    }
    if let Some(rest) = path.strip_prefix("/v1/agent/") {
        return match rest {
            "self" | "host" | "metrics" | "monitor" | "version" => {
                on(Resource::Agent, node, Access::Read)
            }
            "leave" | "reload" => on(Resource::Agent, node, Access::Write),
            "maintenance" => on(Resource::Node, node, Access::Write),
            _ if rest.starts_with("join/") => on(Resource::Agent, node, Access::Write),
            _ if rest.starts_with("force-leave/") => Need::Global(Global::Operator, Access::Write),
            _ if rest.starts_with("token/") => Need::Global(Global::Acl, Access::Write),
            _ if rest.starts_with("health/service/name/") => on(
                Resource::Service,
                rest.trim_start_matches("health/service/name/"),
                Access::Read,
            ),
            // The rest name their service or check by ID (the handler looks
            // up whose it is) or in the body, or list rows to filter.
            _ => Need::Handler,
        };
    }
    if path.starts_with("/v1/operator/keyring") {
        return Need::Global(Global::Keyring, want);
    }
    if path.starts_with("/v1/operator/") {
        return Need::Global(Global::Operator, want);
    }
    if path == "/v1/snapshot" || path == "/v1/event-stream" {
        return Need::Management;
    }
    let handled = [
        "/v1/txn",
        "/v1/session/",
        "/v1/event/",
        "/v1/query",
        "/v1/internal/query/",
        "/v1/catalog/register",
        "/v1/catalog/deregister",
    ];
    if handled.iter().any(|p| path.starts_with(p)) {
        return Need::Handler;
    }
    let filtered = ["/v1/catalog/", "/v1/health/", "/v1/internal/ui/"];
    if read && filtered.iter().any(|p| path.starts_with(p)) {
        return Need::Handler;
    }
    if read && path.starts_with("/v1/coordinate/") {
        return Need::Handler;
    }
    Need::Management
}

/// May `r` make this request? Handlers check the rest ([`Need::Handler`]).
pub(crate) fn guard(
    r: &Resolved,
    method: &Method,
    path: &str,
    query: &Query,
    node: &str,
) -> Result<()> {
    if r.authz.is_management() {
        return Ok(());
    }
    match need(method, path, query, node) {
        Need::Open | Need::Handler => Ok(()),
        Need::On(resource, name, want) => require(r, resource, name, want),
        Need::Under(resource, name, want) => {
            if r.authz.allowed_under(resource, name, want) {
                Ok(())
            } else {
                Err(deny_on(r, &permission(resource, want), name))
            }
        }
        Need::Global(g, want) => {
            if r.authz.allowed_global(g, want) {
                Ok(())
            } else {
                Err(deny(r, &format!("{}:{}", g.as_str(), want.as_str())))
            }
        }
        Need::Management => Err(deny(r, "management")),
    }
}

/// `resource:access`, as Consul names a permission.
fn permission(resource: Resource, want: Access) -> String {
    format!("{}:{}", resource.as_str(), want.as_str())
}

/// 403 unless `r` has `want` on `name`.
pub(crate) fn require(r: &Resolved, resource: Resource, name: &str, want: Access) -> Result<()> {
    if r.authz.allowed(resource, name, want) {
        Ok(())
    } else {
        Err(deny_on(r, &permission(resource, want), name))
    }
}

/// [`require`] when ACLs are on (`r` present).
pub(crate) fn require_opt(
    r: Option<&Resolved>,
    resource: Resource,
    name: &str,
    want: Access,
) -> Result<()> {
    r.map_or(Ok(()), |r| require(r, resource, name, want))
}

/// Writing a check: `service:write` on its service, or `node:write` on the
/// node for a node-level check (`service` empty).
pub(crate) fn require_check_write(r: Option<&Resolved>, service: &str, node: &str) -> Result<()> {
    if service.is_empty() {
        require_opt(r, Resource::Node, node, Access::Write)
    } else {
        require_opt(r, Resource::Service, service, Access::Write)
    }
}

/// May `r` propose `cmd` (a catalog change from `/v1/catalog/*` or a
/// client agent's anti-entropy)? Registering a service needs
/// `service:write` on it; a check, `service:write` on its service or
/// `node:write` on the node; creating or changing the node itself,
/// `node:write`. Deregistering needs the same on what goes.
pub(crate) fn check_command(r: &Resolved, engine: &Engine, cmd: &Command) -> Result<()> {
    if r.authz.is_management() {
        return Ok(());
    }
    let mut ws = muster_engine::WatchSet::new();
    match cmd {
        Command::CatalogRegister {
            node,
            skip_node_update,
            service,
            checks,
        } => {
            if let Some(s) = service {
                require(r, Resource::Service, &s.service, Access::Write)?;
            }
            let existing = engine.catalog_node(&node.node, &mut ws)?.value;
            for c in checks {
                // A check's service: the one registered with it, or one
                // already on the node (an unknown one: the node's).
                let name = service
                    .iter()
                    .chain(existing.iter().flat_map(|e| e.services.iter()))
                    .find(|s| !c.service_id.is_empty() && s.id == c.service_id)
                    .map_or("", |s| s.service.as_str());
                require_check_write(Some(r), name, &node.node)?;
            }
            let unchanged = existing.is_some_and(|e| {
                *skip_node_update
                    || (e.node.address == node.address
                        && e.node.meta == node.meta
                        && e.node.tagged_addresses == node.tagged_addresses)
            });
            if !unchanged {
                require(r, Resource::Node, &node.node, Access::Write)?;
            }
            Ok(())
        }
        Command::CatalogDeregister {
            node,
            service_id,
            check_id,
        } => {
            let existing = engine.catalog_node(node, &mut ws)?.value;
            let service_of = |id: &str| {
                existing.as_ref().and_then(|e| {
                    e.services
                        .iter()
                        .find(|s| s.id == id)
                        .map(|s| s.service.clone())
                })
            };
            match (service_id, check_id) {
                (Some(id), _) => match service_of(id) {
                    Some(name) => require(r, Resource::Service, &name, Access::Write),
                    None => require(r, Resource::Node, node, Access::Write),
                },
                (None, Some(check)) => {
                    let mut ws = muster_engine::WatchSet::new();
                    let checks = engine.health_node(node, &mut ws)?.value;
                    let service = checks
                        .iter()
                        .find(|c| c.check_id == *check)
                        .map(|c| c.service_name.clone())
                        .unwrap_or_default();
                    require_check_write(Some(r), &service, node)
                }
                (None, None) => require(r, Resource::Node, node, Access::Write),
            }
        }
        Command::Batch { commands } => commands
            .iter()
            .try_for_each(|c| check_command(r, engine, c)),
        _ => Err(deny(r, "management")),
    }
}

/// May `r` run transaction operation `i`? KV operations are checked by
/// key (tree verbs on everything under the prefix); node operations by
/// the node, service operations by the service, check operations as a
/// check write or read, a session delete by the session's node.
pub(crate) fn check_txn_op(
    r: &Resolved,
    engine: &Engine,
    i: usize,
    op: &muster_engine::txn::TxnOp,
) -> Result<()> {
    use muster_engine::txn::{CatalogVerb, KvVerb, TxnOp};
    if r.authz.is_management() {
        return Ok(());
    }
    let want = |verb: &CatalogVerb| {
        if *verb == CatalogVerb::Get {
            Access::Read
        } else {
            Access::Write
        }
    };
    // The name of instance `id` on `node` (an unknown one: the ID).
    let service_name = |node: &str, id: &str| -> Result<String> {
        let entry = engine
            .catalog_node(node, &mut muster_engine::WatchSet::new())?
            .value;
        Ok(entry
            .and_then(|e| e.services.into_iter().find(|s| s.id == id))
            .map_or_else(|| id.to_string(), |s| s.service))
    };
    let checked = match op {
        TxnOp::Kv { verb, key, .. } => match verb {
            KvVerb::Get
            | KvVerb::GetOrEmpty
            | KvVerb::CheckIndex
            | KvVerb::CheckSession
            | KvVerb::CheckNotExists => require(r, Resource::Key, key, Access::Read),
            KvVerb::GetTree if r.authz.allowed_under(Resource::Key, key, Access::Read) => Ok(()),
            KvVerb::DeleteTree if r.authz.allowed_under(Resource::Key, key, Access::Write) => {
                Ok(())
            }
            KvVerb::GetTree => Err(deny_on(r, "key:read", key)),
            KvVerb::DeleteTree => Err(deny_on(r, "key:write", key)),
            _ => require(r, Resource::Key, key, Access::Write),
        },
        TxnOp::Node { verb, node } => require(r, Resource::Node, &node.node, want(verb)),
        TxnOp::Service {
            verb,
            node,
            service,
        } => {
            let name = if service.service.is_empty() {
                service_name(node, &service.id)?
            } else {
                service.service.clone()
            };
            require(r, Resource::Service, &name, want(verb))
        }
        TxnOp::Check { verb, check } => {
            let service = if check.service_id.is_empty() {
                String::new()
            } else if check.service_name.is_empty() {
                service_name(&check.node, &check.service_id)?
            } else {
                check.service_name.clone()
            };
            match want(verb) {
                Access::Write => require_check_write(Some(r), &service, &check.node),
                _ if service.is_empty() => require(r, Resource::Node, &check.node, Access::Read),
                _ => require(r, Resource::Service, &service, Access::Read),
            }
        }
        TxnOp::SessionDelete { id } => {
            let node = engine
                .session_get(id, &mut muster_engine::WatchSet::new())?
                .value
                .map(|s| s.node);
            match node {
                Some(node) => require(r, Resource::Session, &node, Access::Write),
                // Unknown: a no-op, as for a management token.
                None => Ok(()),
            }
        }
    };
    checked.map_err(|e| match e {
        Error::Forbidden(msg) => Error::Forbidden(format!("{msg} (transaction operation {i})")),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need_of(method: Method, path: &str) -> Need<'_> {
        need(&method, path, &crate::query::parse(""), "n1")
    }

    #[test]
    fn every_endpoint_names_its_permission() {
        use Access::{Read, Write};
        let on = |r, n, a| Need::On(r, n, a);
        assert_eq!(need_of(Method::GET, "/v1/status/leader"), Need::Open);
        assert_eq!(
            need_of(Method::GET, "/v1/kv/a/b"),
            on(Resource::Key, "a/b", Read)
        );
        assert_eq!(
            need_of(Method::PUT, "/v1/kv/a/b"),
            on(Resource::Key, "a/b", Write)
        );
        assert_eq!(
            need_of(Method::GET, "/v1/agent/self"),
            on(Resource::Agent, "n1", Read)
        );
        assert_eq!(
            need_of(Method::PUT, "/v1/agent/join/x"),
            on(Resource::Agent, "n1", Write)
        );
        assert_eq!(
            need_of(Method::PUT, "/v1/agent/maintenance"),
            on(Resource::Node, "n1", Write)
        );
        assert_eq!(
            need_of(Method::PUT, "/v1/agent/force-leave/x"),
            Need::Global(Global::Operator, Write)
        );
        assert_eq!(
            need_of(Method::GET, "/v1/operator/raft/configuration"),
            Need::Global(Global::Operator, Read)
        );
        assert_eq!(
            need_of(Method::PUT, "/v1/operator/keyring"),
            Need::Global(Global::Keyring, Write)
        );
        assert_eq!(
            need_of(Method::GET, "/v1/agent/health/service/name/web"),
            on(Resource::Service, "web", Read)
        );
        for filtered in [
            "/v1/catalog/node/x",
            "/v1/health/state/any",
            "/v1/internal/ui/services",
            "/v1/agent/service/web",
        ] {
            assert_eq!(need_of(Method::GET, filtered), Need::Handler, "{filtered}");
        }
        assert_eq!(need_of(Method::PUT, "/v1/catalog/register"), Need::Handler);
        assert_eq!(need_of(Method::GET, "/v1/snapshot"), Need::Management);
        assert_eq!(need_of(Method::PUT, "/v1/internal/ui/x"), Need::Management);
    }
}
