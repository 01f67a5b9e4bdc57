//! ACLs on a client agent: it holds no ACL state, so it asks a server what
//! a token may do (`GET /v1/internal/acl/authorizer`, over the server RPC
//! port only) and keeps the answer for `token_ttl`. While no server can
//! answer, `down_policy` decides: `allow`, `deny`, or `extend-cache` (the
//! last answer however old; a token never resolved is refused).

use std::sync::{Arc, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use hyper::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::authz::{Authorizer, AuthorizerWire};
use super::resolve::{with_given, DownPolicy};
use super::{Acl, Resolved};
use crate::client::{Upstream, X_AGENT_NODE};
use crate::error::{Error, Result};
use crate::response::Body;
use crate::router::EngineCtx;

/// The internal endpoint a client agent resolves tokens at.
pub(crate) const AUTHORIZER_PATH: &str = "/v1/internal/acl/authorizer";

/// At most this many tokens are kept per client agent.
const MAX_CACHED: usize = 65_536;

/// A resolved token as a server sends it to a client agent.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ResolvedWire {
    #[serde(rename = "AccessorID")]
    accessor: String,
    authorizer: AuthorizerWire,
}

/// `GET /v1/internal/acl/authorizer`: what the request's token may do, for
/// a client agent (only over the RPC port: the agent-node header is
/// stripped from every HTTP client).
pub(crate) fn authorizer(ctx: &EngineCtx<'_>, from_agent: bool) -> Result<Response<Body>> {
    if !from_agent {
        return Err(Error::NotFound(String::new()));
    }
    let Some(r) = &ctx.acl else {
        return Err(Error::bad_request("ACL support disabled"));
    };
    ctx.json(&ResolvedWire {
        accessor: r.accessor.clone(),
        authorizer: r.authz.to_wire(),
    })
}

impl Acl {
    /// On a client agent: the authorizer for `secret` (`None`: the agent's
    /// default token), from a server or the cache.
    pub async fn resolve_remote(
        &self,
        upstream: &dyn Upstream,
        secret: Option<&str>,
    ) -> Result<Arc<Resolved>> {
        let (secret, given) = self.secret_or_default(secret);
        if self.is_initial_management(&secret) {
            return Ok(Arc::new(Resolved {
                accessor: "initial-management".into(),
                authz: Authorizer::management(),
                given,
            }));
        }
        let cached = self
            .remote
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&secret)
            .cloned();
        if let Some((at, r)) = &cached {
            if at.elapsed() < self.cfg.token_ttl {
                return Ok(with_given(r, given));
            }
        }
        match ask(upstream, &secret).await {
            Ok(Ok(r)) => {
                let r = Arc::new(r);
                let mut cache = self.remote.lock().unwrap_or_else(PoisonError::into_inner);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
                cache.insert(secret, (Instant::now(), r.clone()));
                Ok(with_given(&r, given))
            }
            Ok(Err(refused)) => {
                self.remote
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&secret);
                Err(refused)
            }
            Err(down) => {
                tracing::warn!(error = %down, policy = ?self.cfg.down_policy,
                    "no server could resolve an ACL token; applying down_policy");
                let down_authz = |allow: bool| {
                    Arc::new(Resolved {
                        accessor: String::new(),
                        authz: Authorizer::new(&[], allow),
                        given,
                    })
                };
                match (self.cfg.down_policy, cached) {
                    (DownPolicy::Allow, _) => Ok(down_authz(true)),
                    (DownPolicy::Deny, _) => Ok(down_authz(false)),
                    (DownPolicy::ExtendCache, Some((_, r))) => Ok(with_given(&r, given)),
                    (DownPolicy::ExtendCache, None) => Err(Error::Forbidden(format!(
                        "ACL not found: no server could resolve the token ({down}) and this \
                         agent has no earlier answer (down_policy extend-cache)"
                    ))),
                }
            }
        }
    }
}

/// Ask a server: `Ok(Ok)` resolved, `Ok(Err)` the server's refusal (an
/// unknown token), `Err` no server answered.
async fn ask(
    upstream: &dyn Upstream,
    secret: &str,
) -> std::result::Result<Result<Resolved>, String> {
    let mut req = Request::builder()
        .method("GET")
        .uri(AUTHORIZER_PATH)
        .header(X_AGENT_NODE, "acl");
    if !secret.is_empty() {
        req = req.header("X-Consul-Token", secret);
    }
    let req = req.body(Bytes::new()).map_err(|e| e.to_string())?;
    let resp = upstream.forward(req).await?;
    let body = String::from_utf8_lossy(resp.body()).into_owned();
    match resp.status() {
        StatusCode::OK => {
            let wire: ResolvedWire = serde_json::from_str(&body)
                .map_err(|e| format!("bad authorizer from the server: {e}"))?;
            Ok(Ok(Resolved {
                accessor: wire.accessor,
                authz: Authorizer::from_wire(wire.authorizer),
                given: !secret.is_empty(),
            }))
        }
        StatusCode::FORBIDDEN => Ok(Err(Error::Forbidden(body))),
        other => Err(format!("{other}: {body}")),
    }
}
