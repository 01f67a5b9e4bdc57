//! Routing (consul-compat.md §0.3): percent-decode the path, reject
//! non-canonical paths, pick the longest matching route, check the method,
//! and hand the request to its domain handler. Handlers see a [`Ctx`]; this
//! module owns nothing else. The resource part of a prefix route (a KV key)
//! is everything after the prefix and may contain `/`.

use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use muster_engine::Status;

use crate::backend::AgentBackend;
use crate::error::{Error, Result};
use crate::query::{self, Consistency, Query};
use crate::response::{self, Body, ReadMeta};
pub use crate::routes::{route, Endpoint, Route};
use crate::{agent, catalog, health, kv, operator, session, status, txn, ApiConfig};
use muster_engine::Engine;

/// The body of `/` while there is no UI.
pub const ROOT_TEXT: &str = "muster agent: UI disabled.";
/// The body of a 404 for an unknown `/v1/...` path.
pub const UNKNOWN_ENDPOINT: &str = "Invalid URL path: not a recognized HTTP API endpoint";

/// Shared state of the HTTP server.
pub(crate) struct State<E> {
    /// The engine (a server) or the way to the servers (a client agent).
    pub engine: E,
    /// The local agent (or, in tests, a fake).
    pub agent: Arc<dyn AgentBackend>,
    /// The agent's identity and limits.
    pub cfg: ApiConfig,
    /// Where the listener is bound (for `/v1/agent/self`'s `Member.Addr`).
    pub local_addr: Option<SocketAddr>,
    /// Shared results of identical reads.
    pub shared: crate::shared::SharedReads,
}

/// What an endpoint handler gets.
pub(crate) struct Ctx<'a, E> {
    /// Server state.
    pub st: &'a State<E>,
    /// The decoded query string.
    pub query: Query,
    /// Indent JSON replies.
    pub pretty: bool,
    /// The decoded request path (for the shared-result key).
    pub path: String,
    /// The client accepts a gzip'd body.
    pub gzip: bool,
}

impl<E> Ctx<'_, E> {
    /// A JSON 200 reply honouring `?pretty`.
    pub fn json<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<Response<Body>> {
        response::json(value, self.pretty)
    }
}

impl Ctx<'_, Engine> {
    /// The read headers for a result with `index`, from the engine's
    /// current cluster status.
    pub fn read_meta(&self, index: u64, consistency: Consistency) -> ReadMeta {
        let status = self.st.engine.status();
        ReadMeta {
            index,
            known_leader: status.leader.is_some(),
            last_contact_ms: status.last_contact_ms,
            consistency,
        }
    }
}

/// Percent-decode a request path strictly: `%` must be followed by two hex
/// digits and the result must be UTF-8 (else 400). `+` stays `+`.
pub fn decode_path(raw: &str) -> Result<String> {
    let bad = || Error::bad_request(format!("Invalid URL path: bad escape in {raw:?}"));
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or_else(bad)?;
            let s = std::str::from_utf8(hex).map_err(|_| bad())?;
            if !s.bytes().all(|h| h.is_ascii_hexdigit()) {
                return Err(bad());
            }
            out.push(u8::from_str_radix(s, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::bad_request("Invalid URL path: not UTF-8"))
}

/// Reject what Go's ServeMux would redirect to a cleaned path (`//`, `/./`,
/// `/../`, a trailing `/.` or `/..`), a path not starting with `/`, and
/// unprintable characters.
pub fn check_canonical(path: &str) -> Result<()> {
    if !path.starts_with('/')
        || path.contains("//")
        || path.contains("/./")
        || path.contains("/../")
        || path.ends_with("/.")
        || path.ends_with("/..")
    {
        return Err(Error::bad_request(format!(
            "Invalid URL path: {path:?} is not in canonical form"
        )));
    }
    if path.chars().any(char::is_control) {
        return Err(Error::bad_request(
            "Invalid URL path: contains unprintable characters",
        ));
    }
    Ok(())
}

/// Serve one request; every failure becomes Consul's status and body.
///
/// Boxed on purpose: the future is proven `Send` here, under the generic
/// `Mode` bound. Proving it for a concrete engine type at a caller's
/// `tokio::spawn` trips rustc issue #100013 (higher-ranked lifetimes in
/// `Mode::rest`'s future).
pub(crate) fn handle<E, B>(
    st: Arc<State<E>>,
    req: Request<B>,
) -> crate::cluster::BoxFuture<'static, Response<Body>>
where
    E: Mode,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Display,
{
    Box::pin(handle_inner(st, req))
}

async fn handle_inner<E, B>(st: Arc<State<E>>, req: Request<B>) -> Response<Body>
where
    E: Mode,
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: Display,
{
    let resp = match dispatch(&st, req).await {
        Ok(resp) => resp,
        Err(e) => {
            if e.status().is_server_error() {
                tracing::warn!(error = %e, "request failed");
            }
            response::error(&e)
        }
    };
    tracing::debug!(status = resp.status().as_u16(), "replied");
    resp
}

async fn dispatch<E, B>(st: &State<E>, req: Request<B>) -> Result<Response<Body>>
where
    E: Mode,
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: Display,
{
    let path = decode_path(req.uri().path())?;
    check_canonical(&path)?;
    let Route {
        endpoint,
        rest,
        allow,
    } = route(&path);
    match endpoint {
        Endpoint::Root => return Ok(response::text(StatusCode::OK, ROOT_TEXT)),
        Endpoint::UnknownApi => return Err(Error::NotFound(UNKNOWN_ENDPOINT.into())),
        Endpoint::Unknown => return Err(Error::NotFound(String::new())),
        _ => {}
    }
    let method = req.method().clone();
    if method == Method::OPTIONS {
        let mut resp = response::text(StatusCode::OK, Bytes::new());
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        return Ok(resp);
    }
    if !allow.split(',').any(|m| m == method.as_str()) {
        return Err(Error::MethodNotAllowed {
            method: method.to_string(),
            allow,
        });
    }
    let query = query::parse(req.uri().query().unwrap_or_default());
    let accept_text = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    let pretty = st.cfg.pretty || query.pretty();
    let gzip = req
        .headers()
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(crate::shared::accepts_gzip);
    let ctx = Ctx {
        st,
        query,
        pretty,
        path: path.clone(),
        gzip,
    };
    match endpoint {
        Endpoint::AgentSelf => agent::self_(&ctx),
        Endpoint::AgentMembers => agent::members(&ctx),
        Endpoint::AgentJoin => agent::join(&ctx, &rest).await,
        Endpoint::AgentLeave => agent::leave(&ctx).await,
        Endpoint::AgentForceLeave => agent::force_leave(&ctx, &rest).await,
        Endpoint::AgentReload => agent::reload(&ctx).await,
        Endpoint::AgentMaintenance => agent::maintenance(&ctx).await,
        Endpoint::AgentServices => agent::services(&ctx),
        Endpoint::AgentService => agent::service(&ctx, &rest).await,
        Endpoint::AgentServiceRegister => agent::register_service(&ctx, req).await,
        Endpoint::AgentServiceDeregister => agent::deregister_service(&ctx, &rest).await,
        Endpoint::AgentServiceMaintenance => agent::service_maintenance(&ctx, &rest).await,
        Endpoint::AgentChecks => agent::checks(&ctx),
        Endpoint::AgentCheckRegister => agent::register_check(&ctx, req).await,
        Endpoint::AgentCheckDeregister => agent::deregister_check(&ctx, &rest).await,
        Endpoint::AgentCheckPass => agent::ttl(&ctx, &rest, Status::Passing).await,
        Endpoint::AgentCheckWarn => agent::ttl(&ctx, &rest, Status::Warning).await,
        Endpoint::AgentCheckFail => agent::ttl(&ctx, &rest, Status::Critical).await,
        Endpoint::AgentCheckUpdate => agent::update_check(&ctx, &rest, req).await,
        Endpoint::AgentHealthById => agent::health_by_id(&ctx, &rest, accept_text),
        Endpoint::AgentHealthByName => agent::health_by_name(&ctx, &rest, accept_text),
        Endpoint::OperatorKeyring => operator::keyring(&ctx, &method, req).await,
        _ => E::rest(&ctx, endpoint, &rest, &method, req).await,
    }
}

/// How an agent answers the endpoints it does not own (everything outside
/// `/v1/agent/*` and the keyring): a server from its engine, a client
/// agent by forwarding the request to a server.
pub(crate) trait Mode: Send + Sync + Sized + 'static {
    /// Answer `endpoint` (already routed and method-checked).
    fn rest<'a, B>(
        ctx: &'a Ctx<'a, Self>,
        endpoint: Endpoint,
        rest: &'a str,
        method: &'a Method,
        req: Request<B>,
    ) -> impl std::future::Future<Output = Result<Response<Body>>> + Send + 'a
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'a,
        B::Error: Display;
}

impl Mode for Engine {
    fn rest<'a, B>(
        ctx: &'a Ctx<'a, Self>,
        endpoint: Endpoint,
        rest: &'a str,
        method: &'a Method,
        req: Request<B>,
    ) -> impl std::future::Future<Output = Result<Response<Body>>> + Send + 'a
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'a,
        B::Error: Display,
    {
        serve_engine(ctx, endpoint, rest, method, req)
    }
}

/// A server's answer to everything but the agent endpoints.
async fn serve_engine<B>(
    ctx: &Ctx<'_, Engine>,
    endpoint: Endpoint,
    rest: &str,
    method: &Method,
    req: Request<B>,
) -> Result<Response<Body>>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: Display,
{
    // Every endpoint here takes `?dc=`: another datacenter's requests go
    // to its servers (or fail with No path to datacenter), once, here.
    if let Some(dc) = ctx.query.dc().filter(|dc| *dc != ctx.st.cfg.datacenter) {
        return crate::client::forward_dc(ctx, dc.to_string(), req).await;
    }
    match endpoint {
        Endpoint::Kv => kv::handle(ctx, method, rest, req).await,
        Endpoint::StatusLeader => status::leader(ctx),
        Endpoint::StatusPeers => status::peers(ctx),
        Endpoint::CatalogRegister => catalog::register(ctx, req).await,
        Endpoint::CatalogDeregister => catalog::deregister(ctx, req).await,
        Endpoint::CatalogDatacenters => catalog::datacenters(ctx),
        Endpoint::CatalogNodes => catalog::nodes(ctx).await,
        Endpoint::CatalogServices => catalog::services(ctx).await,
        Endpoint::CatalogService => catalog::service(ctx, rest).await,
        Endpoint::CatalogConnect | Endpoint::CatalogGatewayServices | Endpoint::HealthMesh => {
            catalog::mesh_empty(ctx, rest).await
        }
        Endpoint::CatalogNode => catalog::node(ctx, rest, false).await,
        Endpoint::CatalogNodeServices => catalog::node(ctx, rest, true).await,
        Endpoint::HealthNode => health::node(ctx, rest).await,
        Endpoint::HealthChecks => health::checks(ctx, rest).await,
        Endpoint::HealthService => health::service(ctx, rest).await,
        Endpoint::HealthState => health::state(ctx, rest).await,
        Endpoint::SessionCreate => session::create(ctx, req).await,
        Endpoint::SessionDestroy => session::destroy(ctx, rest).await,
        Endpoint::SessionRenew => session::renew(ctx, rest).await,
        Endpoint::SessionInfo => session::info(ctx, rest).await,
        Endpoint::SessionNode => session::node(ctx, rest).await,
        Endpoint::SessionList => session::list(ctx).await,
        Endpoint::Txn => txn::handle(ctx, req).await,
        Endpoint::OperatorRaftConfiguration => operator::raft_configuration(ctx).await,
        Endpoint::OperatorRaftPeer => operator::remove_raft_peer(ctx).await,
        _ => Err(Error::NotFound(String::new())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::{DELETE, GET, KEYRING_METHODS, PUT};

    fn code(r: Result<()>) -> u16 {
        r.map_or_else(|e| e.status().as_u16(), |()| 200)
    }

    #[test]
    fn router_longest_prefix_wins() {
        let r = route("/v1/kv/a/b/c");
        assert_eq!((r.endpoint, r.rest.as_str()), (Endpoint::Kv, "a/b/c"));
        assert_eq!(r.allow, "OPTIONS,GET,PUT,DELETE");
        assert_eq!(route("/v1/kv/").rest, "");
        assert_eq!(route("/v1/kv").endpoint, Endpoint::Kv);
        assert_eq!(route("/v1/status/leader").endpoint, Endpoint::StatusLeader);
        assert_eq!(route("/v1/status/peers").endpoint, Endpoint::StatusPeers);
        assert_eq!(route("/v1/agent/self").endpoint, Endpoint::AgentSelf);
        assert_eq!(route("/v1/agent/self/x").endpoint, Endpoint::UnknownApi);
        let r = route("/v1/agent/service/deregister/batman/pg0");
        assert_eq!(
            (r.endpoint, r.rest.as_str()),
            (Endpoint::AgentServiceDeregister, "batman/pg0")
        );
        let r = route("/v1/agent/service/register");
        assert_eq!((r.endpoint, r.allow), (Endpoint::AgentServiceRegister, PUT));
        let r = route("/v1/agent/service/web/1");
        assert_eq!(
            (r.endpoint, r.rest.as_str()),
            (Endpoint::AgentService, "web/1")
        );
        assert_eq!(
            route("/v1/agent/services").endpoint,
            Endpoint::AgentServices
        );
        assert_eq!(
            route("/v1/agent/check/pass/service:a").rest,
            "service:a".to_string()
        );
        assert_eq!(
            route("/v1/agent/health/service/name/web").endpoint,
            Endpoint::AgentHealthByName
        );
        assert_eq!(route("/v1/status/leader/").endpoint, Endpoint::UnknownApi);
        assert_eq!(route("/v1/kvx").endpoint, Endpoint::UnknownApi);
        assert_eq!(route("/v1/").endpoint, Endpoint::UnknownApi);
        assert_eq!(route("/v1").endpoint, Endpoint::UnknownApi);
        assert_eq!(route("/").endpoint, Endpoint::Root);
        assert_eq!(route("/ui/").endpoint, Endpoint::Unknown);
        assert_eq!(route("").endpoint, Endpoint::Unknown);
        let r = route("/v1/session/info/abc");
        assert_eq!(
            (r.endpoint, r.rest.as_str(), r.allow),
            (Endpoint::SessionInfo, "abc", GET)
        );
        let r = route("/v1/session/destroy/abc");
        assert_eq!((r.endpoint, r.allow), (Endpoint::SessionDestroy, PUT));
        assert_eq!(route("/v1/session/renew/").rest, "");
        assert_eq!(route("/v1/session/node/n1").endpoint, Endpoint::SessionNode);
        assert_eq!(route("/v1/session/list").endpoint, Endpoint::SessionList);
        assert_eq!(route("/v1/session/create").allow, PUT);
        assert_eq!(route("/v1/session/list/x").endpoint, Endpoint::UnknownApi);
        assert_eq!(
            (route("/v1/txn").endpoint, route("/v1/txn").allow),
            (Endpoint::Txn, PUT)
        );
        assert_eq!(route("/v1/txn/x").endpoint, Endpoint::UnknownApi);
        let r = route("/v1/agent/join/10.0.0.1:8301");
        assert_eq!(
            (r.endpoint, r.rest.as_str(), r.allow),
            (Endpoint::AgentJoin, "10.0.0.1:8301", PUT)
        );
        assert_eq!(route("/v1/agent/leave").endpoint, Endpoint::AgentLeave);
        let r = route("/v1/agent/force-leave/n2.dc1");
        assert_eq!(
            (r.endpoint, r.rest.as_str()),
            (Endpoint::AgentForceLeave, "n2.dc1")
        );
        assert_eq!(
            route("/v1/operator/raft/configuration").endpoint,
            Endpoint::OperatorRaftConfiguration
        );
        assert_eq!(route("/v1/operator/raft/peer").allow, DELETE);
        assert_eq!(route("/v1/operator/keyring").allow, KEYRING_METHODS);
        assert_eq!(route("/v1/operator/raft").endpoint, Endpoint::UnknownApi);
    }

    #[test]
    fn router_percent_decodes_before_matching() -> Result<()> {
        assert_eq!(decode_path("/v1/kv/a%2Fb")?, "/v1/kv/a/b");
        assert_eq!(decode_path("/v1/kv/a%2fb+c%20d")?, "/v1/kv/a/b+c d");
        assert_eq!(decode_path("/v1%2Fkv%2Fx")?, "/v1/kv/x");
        assert_eq!(decode_path("/v1/kv/%E2%82%AC")?, "/v1/kv/€");
        let r = route(&decode_path("/v1/kv/service%2Fbatman%2Fleader")?);
        assert_eq!(
            (r.endpoint, r.rest.as_str()),
            (Endpoint::Kv, "service/batman/leader")
        );
        for bad in ["/v1/kv/%", "/v1/kv/%2", "/v1/kv/%zz", "/v1/kv/%ff", "/%+1"] {
            assert_eq!(
                decode_path(bad).map_err(|e| e.status().as_u16()),
                Err(400),
                "{bad}"
            );
        }
        Ok(())
    }

    #[test]
    fn router_rejects_non_canonical_paths() {
        for bad in [
            "/v1//kv/a",
            "/v1/kv//a",
            "/v1/kv/a/./b",
            "/v1/kv/a/../b",
            "/v1/kv/a/..",
            "/v1/kv/a/.",
            "v1/kv/a",
            "",
            "/v1/kv/a\u{0}b",
            "/v1/kv/a\nb",
        ] {
            assert_eq!(code(check_canonical(bad)), 400, "{bad:?}");
        }
        for good in [
            "/",
            "/v1/kv/a/",
            "/v1/kv/a..b",
            "/v1/kv/.a",
            "/v1/kv/a/.b/c",
        ] {
            assert_eq!(code(check_canonical(good)), 200, "{good:?}");
        }
    }
}
