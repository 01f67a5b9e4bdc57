//! Routing (consul-compat.md §0.3): percent-decode the path, reject
//! non-canonical paths, pick the longest matching route among the domain
//! modules' tables (`routes.rs`), check the method, and hand the request
//! to its handler: an agent route with a [`Ctx`], a cluster route with an
//! [`EngineCtx`] on a server, or forwarded to a server by a client agent.
//! The resource part of a prefix route (a KV key) is everything after the
//! prefix and may contain `/`.

use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::backend::AgentBackend;
use crate::client::Upstream;
use crate::error::{Error, Result};
use crate::query::{self, Consistency, Query};
use crate::response::{self, Body, ReadMeta};
use crate::routes::{self, exact, on_agent, under, Call, Found, Handler, ReqBody, Route};
use crate::{agent, catalog, health, kv, operator, session, status, txn, ApiConfig};
use muster_engine::{BoxFuture, Engine};

/// The body of a 404 for an unknown `/v1/...` path.
pub const UNKNOWN_ENDPOINT: &str = "Invalid URL path: not a recognized HTTP API endpoint";

/// How this agent answers the cluster's endpoints.
pub(crate) enum Serving {
    /// A server: from its engine.
    Server(Engine),
    /// A client agent: by forwarding the request to a server.
    Client(Arc<dyn Upstream>),
}

/// Shared state of the HTTP server.
pub(crate) struct State {
    /// The engine (a server) or the way to the servers (a client agent).
    pub serving: Serving,
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
pub(crate) struct Ctx<'a> {
    /// Server state.
    pub st: &'a State,
    /// The decoded query string.
    pub query: Query,
    /// Indent JSON replies.
    pub pretty: bool,
    /// The decoded request path (for the shared-result key).
    pub path: String,
    /// The client accepts a gzip'd body.
    pub gzip: bool,
    /// The request's token, resolved (ACLs on, on a server).
    pub acl: Option<std::sync::Arc<crate::acl::Resolved>>,
}

impl Ctx<'_> {
    /// A JSON 200 reply honouring `?pretty`.
    pub fn json<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<Response<Body>> {
        response::json(value, self.pretty)
    }
}

/// What a cluster endpoint's handler gets on a server: the context and
/// the engine.
pub(crate) struct EngineCtx<'a> {
    /// The request's context.
    pub ctx: &'a Ctx<'a>,
    /// This server's engine.
    pub engine: &'a Engine,
}

impl<'a> std::ops::Deref for EngineCtx<'a> {
    type Target = Ctx<'a>;

    fn deref(&self) -> &Ctx<'a> {
        self.ctx
    }
}

impl EngineCtx<'_> {
    /// The read headers for a result with `index`, from the engine's
    /// current cluster status.
    pub fn read_meta(&self, index: u64, consistency: Consistency) -> ReadMeta {
        let status = self.engine.status();
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

/// The routes of unknown `/v1/` paths (`/` and the UI are `ui.rs`'s).
const ROOT_ROUTES: &[Route] = &[
    under(
        "/v1/",
        "",
        on_agent!(|_ctx, _| Err(Error::NotFound(UNKNOWN_ENDPOINT.into()))),
    ),
    exact(
        "/v1",
        "",
        on_agent!(|_ctx, _| Err(Error::NotFound(UNKNOWN_ENDPOINT.into()))),
    ),
];

/// Every route, each table declared beside its handlers.
const TABLES: &[&[Route]] = &[
    ROOT_ROUTES,
    agent::ROUTES,
    kv::ROUTES,
    status::ROUTES,
    catalog::ROUTES,
    health::ROUTES,
    session::ROUTES,
    txn::ROUTES,
    operator::ROUTES,
    crate::autopilot::ROUTES,
    crate::ui::ROUTES,
    crate::snapshot::ROUTES,
    crate::feed::ROUTES,
    crate::prepared::ROUTES,
    crate::acl::ROUTES,
    crate::event::ROUTES,
    crate::metrics::ROUTES,
    crate::monitor::ROUTES,
];

/// The route for a decoded, canonical path.
pub(crate) fn route(path: &str) -> Option<Found<'_>> {
    routes::find(TABLES, path)
}

/// `consul.http.<METHOD>.<path>`: a request's time, recorded when its
/// dispatch ends however it ends.
struct HttpTiming {
    method: Method,
    route: &'static Route,
    start: std::time::Instant,
}

impl HttpTiming {
    fn start(method: &Method, route: &'static Route) -> HttpTiming {
        HttpTiming {
            method: method.clone(),
            route,
            start: std::time::Instant::now(),
        }
    }
}

impl Drop for HttpTiming {
    fn drop(&mut self) {
        let ms = muster_metrics::ms(self.start.elapsed());
        crate::metrics::record_http(&self.method, self.route, ms);
    }
}

/// Serve one request; every failure becomes Consul's status and body.
pub(crate) fn handle<B>(st: Arc<State>, req: Request<B>) -> BoxFuture<'static, Response<Body>>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Display,
{
    let req = req.map(routes::req_body);
    Box::pin(async move {
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
    })
}

async fn dispatch(st: &State, req: Request<ReqBody>) -> Result<Response<Body>> {
    let path = decode_path(req.uri().path())?;
    check_canonical(&path)?;
    if let Some(answer) = crate::ui::answer(&st.cfg.ui, &path, req.method()).await {
        return answer;
    }
    let Some(Found { route, rest }) = route(&path) else {
        return Err(Error::NotFound(String::new()));
    };
    let method = req.method().clone();
    let _timing = HttpTiming::start(&method, route);
    if !route.allow.is_empty() {
        if method == Method::OPTIONS {
            let mut resp = response::text(StatusCode::OK, Bytes::new());
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(route.allow));
            return Ok(resp);
        }
        if !route.allow.split(',').any(|m| m == method.as_str()) {
            return Err(Error::MethodNotAllowed {
                method: method.to_string(),
                allow: route.allow,
            });
        }
    }
    let query = query::parse(req.uri().query().unwrap_or_default());
    let pretty = query.pretty();
    let gzip = req
        .headers()
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(crate::shared::accepts_gzip);
    let call = Call {
        rest: rest.to_string(),
        method,
        req,
    };
    // ACLs: resolve the request's token and check it, on a server, for
    // requests answered here (another datacenter's are checked there: the
    // token travels with the request).
    // A client agent checks the endpoints it answers itself, with what a
    // server says the token may do; the rest it forwards with the token.
    let mut acl = None;
    if let Some(system) = &st.cfg.acl {
        let other_dc = query.dc().is_some_and(|dc| dc != st.cfg.datacenter);
        let secret = crate::query::resolve_token(&query, call.req.headers());
        let resolved = match (&st.serving, route.handler) {
            _ if other_dc => None,
            (Serving::Server(engine), _) => Some(system.resolve(engine, secret.as_deref())?),
            (Serving::Client(upstream), Handler::Agent(_)) => Some(
                system
                    .resolve_remote(upstream.as_ref(), secret.as_deref())
                    .await?,
            ),
            (Serving::Client(_), Handler::Cluster(_)) => None,
        };
        if let Some(resolved) = resolved {
            crate::acl::guard(&resolved, &call.method, &path, &query, &st.cfg.node_name)?;
            acl = Some(resolved);
        }
    }
    let ctx = Ctx {
        st,
        query,
        pretty,
        path,
        gzip,
        acl,
    };
    match (route.handler, &st.serving) {
        (Handler::Agent(handler), _) => handler(&ctx, call).await,
        // Archives and the change feed are streamed; forwarding holds a
        // whole request and reply.
        (Handler::Cluster(_), Serving::Client(_)) if ctx.path == "/v1/snapshot" => {
            Err(Error::bad_request(
                "snapshots stream to and from a server: send this to a server's HTTP address \
                 (muster snapshot ... -http-addr <server>:8500)",
            ))
        }
        (Handler::Cluster(_), Serving::Client(_)) if ctx.path == "/v1/event-stream" => {
            Err(Error::bad_request(
                "the event stream comes from a server: send this to a server's HTTP address \
                 (muster log tail -http-addr <server>:8500)",
            ))
        }
        (Handler::Cluster(_), Serving::Client(upstream)) => {
            crate::client::forward(&ctx, upstream.as_ref(), call.req).await
        }
        (Handler::Cluster(handler), Serving::Server(engine)) => {
            // Every cluster endpoint takes `?dc=`: another datacenter's
            // requests go to its servers (or fail with No path to
            // datacenter), once, here.
            if let Some(dc) = ctx.query.dc().filter(|dc| *dc != st.cfg.datacenter) {
                return crate::client::forward_dc(&ctx, dc.to_string(), call.req).await;
            }
            handler(&EngineCtx { ctx: &ctx, engine }, call).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::{DELETE, GET, PUT};

    fn code(r: Result<()>) -> u16 {
        r.map_or_else(|e| e.status().as_u16(), |()| 200)
    }

    /// The matched (pattern, rest, allow), or `None`.
    fn at(path: &str) -> Option<(&'static str, String, &'static str)> {
        route(path).map(|f| (f.route.pattern, f.rest.to_string(), f.route.allow))
    }

    fn pattern(path: &str) -> &'static str {
        route(path).map_or("", |f| f.route.pattern)
    }

    fn is_cluster(path: &str) -> bool {
        route(path).is_some_and(|f| matches!(f.route.handler, Handler::Cluster(_)))
    }

    #[test]
    fn router_longest_prefix_wins() {
        let kv = "OPTIONS,GET,PUT,DELETE";
        assert_eq!(at("/v1/kv/a/b/c"), Some(("/v1/kv/", "a/b/c".into(), kv)));
        assert_eq!(at("/v1/kv/"), Some(("/v1/kv/", String::new(), kv)));
        assert_eq!(at("/v1/kv"), Some(("/v1/kv", String::new(), kv)));
        assert_eq!(pattern("/v1/status/leader"), "/v1/status/leader");
        assert_eq!(pattern("/v1/status/peers"), "/v1/status/peers");
        assert_eq!(pattern("/v1/agent/self"), "/v1/agent/self");
        assert_eq!(pattern("/v1/agent/self/x"), "/v1/");
        assert_eq!(
            at("/v1/agent/service/deregister/batman/pg0"),
            Some(("/v1/agent/service/deregister/", "batman/pg0".into(), PUT))
        );
        assert_eq!(
            at("/v1/agent/service/register"),
            Some(("/v1/agent/service/register", String::new(), PUT))
        );
        assert_eq!(
            at("/v1/agent/service/web/1"),
            Some(("/v1/agent/service/", "web/1".into(), GET))
        );
        assert_eq!(pattern("/v1/agent/services"), "/v1/agent/services");
        assert_eq!(
            at("/v1/agent/check/pass/service:a").map(|r| r.1),
            Some("service:a".into())
        );
        assert_eq!(
            pattern("/v1/agent/health/service/name/web"),
            "/v1/agent/health/service/name/"
        );
        assert_eq!(pattern("/v1/status/leader/"), "/v1/");
        assert_eq!(pattern("/v1/kvx"), "/v1/");
        assert_eq!(pattern("/v1/"), "/v1/");
        assert_eq!(pattern("/v1"), "/v1");
        // `/` and `/ui/` are the UI's, before routing.
        assert_eq!(at("/"), None);
        assert_eq!(at("/ui/"), None);
        assert_eq!(at(""), None);
        assert_eq!(
            at("/v1/session/info/abc"),
            Some(("/v1/session/info/", "abc".into(), GET))
        );
        assert_eq!(at("/v1/session/destroy/abc").map(|r| r.2), Some(PUT));
        assert_eq!(at("/v1/session/renew/").map(|r| r.1), Some(String::new()));
        assert_eq!(pattern("/v1/session/node/n1"), "/v1/session/node/");
        assert_eq!(pattern("/v1/session/list"), "/v1/session/list");
        assert_eq!(at("/v1/session/create").map(|r| r.2), Some(PUT));
        assert_eq!(pattern("/v1/session/list/x"), "/v1/");
        assert_eq!(at("/v1/txn"), Some(("/v1/txn", String::new(), PUT)));
        assert_eq!(pattern("/v1/txn/x"), "/v1/");
        assert_eq!(
            at("/v1/agent/join/10.0.0.1:8301"),
            Some(("/v1/agent/join/", "10.0.0.1:8301".into(), PUT))
        );
        assert_eq!(pattern("/v1/agent/leave"), "/v1/agent/leave");
        assert_eq!(
            at("/v1/agent/force-leave/n2.dc1").map(|r| r.1),
            Some("n2.dc1".into())
        );
        assert_eq!(
            pattern("/v1/operator/raft/configuration"),
            "/v1/operator/raft/configuration"
        );
        assert_eq!(at("/v1/operator/raft/peer").map(|r| r.2), Some(DELETE));
        assert_eq!(
            at("/v1/operator/keyring").map(|r| r.2),
            Some("OPTIONS,GET,POST,PUT,DELETE")
        );
        assert_eq!(pattern("/v1/operator/raft"), "/v1/");
    }

    #[test]
    fn router_tables_have_no_duplicate_patterns_and_the_right_owners() {
        let mut seen = std::collections::BTreeSet::new();
        for r in TABLES.iter().flat_map(|t| t.iter()) {
            assert!(seen.insert((r.pattern, r.prefix)), "{} twice", r.pattern);
        }
        // A client agent answers these itself; everything else goes to a
        // server.
        for local in [
            "/v1/agent/self",
            "/v1/agent/check/pass/x",
            "/v1/operator/keyring",
            "/",
        ] {
            assert!(!is_cluster(local), "{local}");
        }
        for cluster in [
            "/v1/kv/a",
            "/v1/catalog/nodes",
            "/v1/health/service/web",
            "/v1/session/list",
            "/v1/txn",
            "/v1/status/leader",
            "/v1/operator/raft/configuration",
        ] {
            assert!(is_cluster(cluster), "{cluster}");
        }
    }

    #[test]
    fn router_percent_decodes_before_matching() -> Result<()> {
        assert_eq!(decode_path("/v1/kv/a%2Fb")?, "/v1/kv/a/b");
        assert_eq!(decode_path("/v1/kv/a%2fb+c%20d")?, "/v1/kv/a/b+c d");
        assert_eq!(decode_path("/v1%2Fkv%2Fx")?, "/v1/kv/x");
        assert_eq!(decode_path("/v1/kv/%E2%82%AC")?, "/v1/kv/€");
        assert_eq!(
            at(&decode_path("/v1/kv/service%2Fbatman%2Fleader")?).map(|r| r.1),
            Some("service/batman/leader".into())
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
