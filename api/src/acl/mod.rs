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
pub use resolve::{request_secret, Acl, AclConfig, Resolved};

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
pub(crate) fn guard(r: &Resolved, method: &Method, path: &str, query: &Query) -> Result<(), Error> {
    if r.authz.is_management() || path.starts_with("/v1/acl/") || path.starts_with("/v1/status/") {
        return Ok(());
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
            Err(Error::Forbidden(format!(
                "Permission denied: token with AccessorID '{}' lacks permission '{perm}' on {key:?}",
                r.accessor
            )))
        };
    }
    Err(Error::Forbidden(format!(
        "Permission denied: token with AccessorID '{}' lacks permission 'management' \
         (with ACLs on, muster checks rules for KV and ACL endpoints; {path} needs a \
         management token until its rules are built)",
        r.accessor
    )))
}

/// Whether `r` may read `key` (for filtering listings).
pub(crate) fn may_read_key(r: Option<&Resolved>, key: &str) -> bool {
    r.is_none_or(|r| r.authz.allowed(Resource::Key, key, Access::Read))
}
