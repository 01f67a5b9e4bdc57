//! The route table: every endpoint muster serves, the path (exact or a
//! prefix whose rest is the resource) and the methods it allows, and the
//! longest-match lookup of Go's ServeMux. `router.rs` decodes the path,
//! checks the method and dispatches on the [`Endpoint`] found here.

/// The endpoints known so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/`.
    Root,
    /// `/v1/kv/<key>`.
    Kv,
    /// `/v1/status/leader`.
    StatusLeader,
    /// `/v1/status/peers`.
    StatusPeers,
    /// `/v1/agent/self`.
    AgentSelf,
    /// `/v1/agent/members`.
    AgentMembers,
    /// `PUT /v1/agent/join/<address>`.
    AgentJoin,
    /// `PUT /v1/agent/leave`.
    AgentLeave,
    /// `PUT /v1/agent/force-leave/<node>`.
    AgentForceLeave,
    /// `PUT /v1/agent/reload`.
    AgentReload,
    /// `PUT /v1/agent/maintenance`.
    AgentMaintenance,
    /// `/v1/agent/services`.
    AgentServices,
    /// `/v1/agent/service/<id>`.
    AgentService,
    /// `PUT /v1/agent/service/register`.
    AgentServiceRegister,
    /// `PUT /v1/agent/service/deregister/<id>`.
    AgentServiceDeregister,
    /// `PUT /v1/agent/service/maintenance/<id>`.
    AgentServiceMaintenance,
    /// `/v1/agent/checks`.
    AgentChecks,
    /// `PUT /v1/agent/check/register`.
    AgentCheckRegister,
    /// `PUT /v1/agent/check/deregister/<id>`.
    AgentCheckDeregister,
    /// `PUT /v1/agent/check/pass/<id>`.
    AgentCheckPass,
    /// `PUT /v1/agent/check/warn/<id>`.
    AgentCheckWarn,
    /// `PUT /v1/agent/check/fail/<id>`.
    AgentCheckFail,
    /// `PUT /v1/agent/check/update/<id>`.
    AgentCheckUpdate,
    /// `/v1/agent/health/service/id/<id>`.
    AgentHealthById,
    /// `/v1/agent/health/service/name/<name>`.
    AgentHealthByName,
    /// `PUT /v1/catalog/register`.
    CatalogRegister,
    /// `PUT /v1/catalog/deregister`.
    CatalogDeregister,
    /// `/v1/catalog/datacenters`.
    CatalogDatacenters,
    /// `/v1/catalog/nodes`.
    CatalogNodes,
    /// `/v1/catalog/services`.
    CatalogServices,
    /// `/v1/catalog/service/<name>`.
    CatalogService,
    /// `/v1/catalog/connect/<name>`.
    CatalogConnect,
    /// `/v1/catalog/gateway-services/<name>`.
    CatalogGatewayServices,
    /// `/v1/catalog/node/<node>`.
    CatalogNode,
    /// `/v1/catalog/node-services/<node>`.
    CatalogNodeServices,
    /// `/v1/health/node/<node>`.
    HealthNode,
    /// `/v1/health/checks/<service>`.
    HealthChecks,
    /// `/v1/health/service/<service>`.
    HealthService,
    /// `/v1/health/state/<state>`.
    HealthState,
    /// `/v1/health/connect/<service>` and `/v1/health/ingress/<service>`.
    HealthMesh,
    /// `PUT /v1/session/create`.
    SessionCreate,
    /// `PUT /v1/session/destroy/<id>`.
    SessionDestroy,
    /// `PUT /v1/session/renew/<id>`.
    SessionRenew,
    /// `/v1/session/info/<id>`.
    SessionInfo,
    /// `/v1/session/node/<node>`.
    SessionNode,
    /// `/v1/session/list`.
    SessionList,
    /// `PUT /v1/txn`.
    Txn,
    /// `GET /v1/operator/raft/configuration`.
    OperatorRaftConfiguration,
    /// `DELETE /v1/operator/raft/peer`.
    OperatorRaftPeer,
    /// `GET|POST|PUT|DELETE /v1/operator/keyring`.
    OperatorKeyring,
    /// Any other `/v1/...` path.
    UnknownApi,
    /// Anything else.
    Unknown,
}

/// One routing-table row.
struct RouteDef {
    /// The path, or the prefix when `prefix`.
    pattern: &'static str,
    /// Match by prefix (the rest is the resource) instead of exactly.
    prefix: bool,
    endpoint: Endpoint,
    /// The `Allow` header value; empty = any method.
    allow: &'static str,
}

pub(crate) const GET: &str = "OPTIONS,GET";
pub(crate) const KV_METHODS: &str = "OPTIONS,GET,PUT,DELETE";
pub(crate) const PUT: &str = "OPTIONS,PUT";
pub(crate) const DELETE: &str = "OPTIONS,DELETE";
pub(crate) const KEYRING_METHODS: &str = "OPTIONS,GET,POST,PUT,DELETE";

/// An exact route.
const fn exact(pattern: &'static str, endpoint: Endpoint, allow: &'static str) -> RouteDef {
    RouteDef {
        pattern,
        prefix: false,
        endpoint,
        allow,
    }
}

/// A prefix route (the rest of the path is the resource).
const fn under(pattern: &'static str, endpoint: Endpoint, allow: &'static str) -> RouteDef {
    RouteDef {
        pattern,
        prefix: true,
        endpoint,
        allow,
    }
}

const ROUTES: &[RouteDef] = &[
    RouteDef {
        pattern: "/",
        prefix: false,
        endpoint: Endpoint::Root,
        allow: "",
    },
    RouteDef {
        pattern: "/v1/",
        prefix: true,
        endpoint: Endpoint::UnknownApi,
        allow: "",
    },
    RouteDef {
        pattern: "/v1",
        prefix: false,
        endpoint: Endpoint::UnknownApi,
        allow: "",
    },
    RouteDef {
        pattern: "/v1/kv/",
        prefix: true,
        endpoint: Endpoint::Kv,
        allow: KV_METHODS,
    },
    // Go's ServeMux redirects a subtree root without its slash; serve it.
    RouteDef {
        pattern: "/v1/kv",
        prefix: false,
        endpoint: Endpoint::Kv,
        allow: KV_METHODS,
    },
    RouteDef {
        pattern: "/v1/status/leader",
        prefix: false,
        endpoint: Endpoint::StatusLeader,
        allow: GET,
    },
    RouteDef {
        pattern: "/v1/status/peers",
        prefix: false,
        endpoint: Endpoint::StatusPeers,
        allow: GET,
    },
    RouteDef {
        pattern: "/v1/agent/self",
        prefix: false,
        endpoint: Endpoint::AgentSelf,
        allow: GET,
    },
    exact("/v1/agent/members", Endpoint::AgentMembers, GET),
    under("/v1/agent/join/", Endpoint::AgentJoin, PUT),
    exact("/v1/agent/leave", Endpoint::AgentLeave, PUT),
    under("/v1/agent/force-leave/", Endpoint::AgentForceLeave, PUT),
    exact("/v1/agent/reload", Endpoint::AgentReload, PUT),
    exact("/v1/agent/maintenance", Endpoint::AgentMaintenance, PUT),
    exact("/v1/agent/services", Endpoint::AgentServices, GET),
    under("/v1/agent/service/", Endpoint::AgentService, GET),
    exact(
        "/v1/agent/service/register",
        Endpoint::AgentServiceRegister,
        PUT,
    ),
    under(
        "/v1/agent/service/deregister/",
        Endpoint::AgentServiceDeregister,
        PUT,
    ),
    under(
        "/v1/agent/service/maintenance/",
        Endpoint::AgentServiceMaintenance,
        PUT,
    ),
    exact("/v1/agent/checks", Endpoint::AgentChecks, GET),
    exact(
        "/v1/agent/check/register",
        Endpoint::AgentCheckRegister,
        PUT,
    ),
    under(
        "/v1/agent/check/deregister/",
        Endpoint::AgentCheckDeregister,
        PUT,
    ),
    under("/v1/agent/check/pass/", Endpoint::AgentCheckPass, PUT),
    under("/v1/agent/check/warn/", Endpoint::AgentCheckWarn, PUT),
    under("/v1/agent/check/fail/", Endpoint::AgentCheckFail, PUT),
    under("/v1/agent/check/update/", Endpoint::AgentCheckUpdate, PUT),
    under(
        "/v1/agent/health/service/id/",
        Endpoint::AgentHealthById,
        GET,
    ),
    under(
        "/v1/agent/health/service/name/",
        Endpoint::AgentHealthByName,
        GET,
    ),
    exact("/v1/catalog/register", Endpoint::CatalogRegister, PUT),
    exact("/v1/catalog/deregister", Endpoint::CatalogDeregister, PUT),
    exact("/v1/catalog/datacenters", Endpoint::CatalogDatacenters, GET),
    exact("/v1/catalog/nodes", Endpoint::CatalogNodes, GET),
    exact("/v1/catalog/services", Endpoint::CatalogServices, GET),
    under("/v1/catalog/service/", Endpoint::CatalogService, GET),
    under("/v1/catalog/connect/", Endpoint::CatalogConnect, GET),
    under(
        "/v1/catalog/gateway-services/",
        Endpoint::CatalogGatewayServices,
        GET,
    ),
    under("/v1/catalog/node/", Endpoint::CatalogNode, GET),
    under(
        "/v1/catalog/node-services/",
        Endpoint::CatalogNodeServices,
        GET,
    ),
    under("/v1/health/node/", Endpoint::HealthNode, GET),
    under("/v1/health/checks/", Endpoint::HealthChecks, GET),
    under("/v1/health/service/", Endpoint::HealthService, GET),
    under("/v1/health/state/", Endpoint::HealthState, GET),
    under("/v1/health/connect/", Endpoint::HealthMesh, GET),
    under("/v1/health/ingress/", Endpoint::HealthMesh, GET),
    exact("/v1/session/create", Endpoint::SessionCreate, PUT),
    under("/v1/session/destroy/", Endpoint::SessionDestroy, PUT),
    under("/v1/session/renew/", Endpoint::SessionRenew, PUT),
    under("/v1/session/info/", Endpoint::SessionInfo, GET),
    under("/v1/session/node/", Endpoint::SessionNode, GET),
    exact("/v1/session/list", Endpoint::SessionList, GET),
    exact("/v1/txn", Endpoint::Txn, PUT),
    exact(
        "/v1/operator/raft/configuration",
        Endpoint::OperatorRaftConfiguration,
        GET,
    ),
    exact("/v1/operator/raft/peer", Endpoint::OperatorRaftPeer, DELETE),
    exact(
        "/v1/operator/keyring",
        Endpoint::OperatorKeyring,
        KEYRING_METHODS,
    ),
];

/// A routing decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// For prefix routes, the decoded rest of the path (the KV key).
    pub rest: String,
    /// The `Allow` header value; empty = any method.
    pub allow: &'static str,
}

/// Route a decoded, canonical path: exact matches and prefix matches, the
/// longest pattern winning (Go ServeMux).
pub fn route(path: &str) -> Route {
    let best = ROUTES
        .iter()
        .filter(|r| {
            if r.prefix {
                path.starts_with(r.pattern)
            } else {
                path == r.pattern
            }
        })
        .max_by_key(|r| r.pattern.len());
    match best {
        Some(r) => Route {
            endpoint: r.endpoint,
            rest: if r.prefix {
                path.get(r.pattern.len()..).unwrap_or_default().to_string()
            } else {
                String::new()
            },
            allow: r.allow,
        },
        None => Route {
            endpoint: Endpoint::Unknown,
            rest: String::new(),
            allow: "",
        },
    }
}
