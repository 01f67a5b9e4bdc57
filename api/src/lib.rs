//! muster-api: Consul's HTTP API over hyper, and the web UI it serves.
//!
//! The crate holds an [`Engine`] handle and never opens storage: reads go
//! through the engine's typed views (with its blocking-query loop) and
//! writes through `Engine::propose`.
//!
//! # Layout
//! - `server.rs`: accept loop (plain, or after a [`Handshake`] such as the
//!   binary's TLS), per-request task and span, graceful shutdown.
//! - `router.rs`: percent-decoding, the canonical-path check, the method
//!   check (`405`/`OPTIONS`) and dispatch to the domain handlers;
//!   `routes.rs`: the route table and its longest-prefix lookup.
//! - `query.rs`: query-string parsing (`index`, `wait`, consistency, `dc`,
//!   `token`, KV flags), public for fuzzing.
//! - `response.rs`: JSON/text replies and the `X-Consul-*` read headers.
//! - `read.rs`: the one read path (consistency gate, blocking on the
//!   engine's watch set, read headers) and the list parameters (`filter`,
//!   `node-meta`, `tag`); `shared.rs`: one computed, encoded (and gzip'd)
//!   result per identical read.
//! - `decode.rs`: JSON request bodies with Consul's decoding rules.
//! - `shapes.rs`: the catalog/health/agent JSON objects.
//! - `definition.rs`: service and check definitions (§6) from JSON, for
//!   the agent endpoints and the binary's config loader.
//! - `kv.rs`, `catalog.rs`, `health.rs`, `status.rs`, `agent.rs`,
//!   `session.rs`, `txn.rs`: one handler module per domain.
//! - `bodies.rs`: the txn, session-create and prepared-query body
//!   decoders, public for fuzzing.
//! - `error.rs`: the one [`Error`] enum and its Consul status codes.
//! - `backend.rs`: the agent interface the `/v1/agent/*` handlers use (a
//!   test seam; every other handler holds the real `Engine`).
//! - `cluster.rs`: [`ClusterBackend`], the gossip/raft interface the binary
//!   implements for the membership and operator endpoints, and its data.
//! - `operator.rs`: `/v1/operator/raft/*` and `/v1/operator/keyring`;
//!   `autopilot/`: `/v1/operator/autopilot/*` (configuration, health).
//! - `client.rs`: client-agent mode (answer `/v1/agent/*`, forward the
//!   rest to a server) and the server's [`Handler`] for forwarded requests.
//! - `snapshot/`: `/v1/snapshot` (save and restore, streamed) and the
//!   archive format (`archive.rs`, also read by `muster snapshot`).
//! - `prepared/`: prepared queries (`/v1/query`): shapes, templates,
//!   execution with failover (also what DNS `.query.` runs).
//! - `event.rs`: user events (`/v1/event/*`) over gossip.
//! - `feed.rs`: the change feed (`/v1/event-stream`).
//! - `ui/`: the web UI: serving the app (embedded from `api/ui/`, or a
//!   directory) under its content path, and `/v1/internal/ui/*`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use muster_agent::Agent;
use muster_engine::Engine;

pub mod acl;
mod agent;
pub mod autopilot;
mod backend;
pub mod bodies;
mod catalog;
mod client;
pub mod cluster;
mod decode;
pub mod definition;
mod error;
pub mod event;
pub mod feed;
pub mod filter;
mod health;
mod kv;
pub mod metrics;
pub mod monitor;
mod operator;
pub mod prepared;
pub mod query;
mod read;
mod response;
mod router;
mod routes;
mod server;
mod session;
mod shapes;
mod shared;
pub mod snapshot;
mod status;
#[cfg(test)]
mod tests;
mod txn;
pub mod ui;

pub use client::{Handler, Upstream, X_AGENT_NODE};
pub use cluster::{
    BoxFuture, ClusterBackend, KeyringOp, KeyringReply, MemberInfo, MemberStatusCode, PeerRef,
    RaftConfiguration, RaftServer,
};
pub use error::{Error, Result};
pub use server::{Handshake, HandshakeFuture, Listener, Stream, HANDSHAKE_TIMEOUT};

/// Default `kv_max_value_size` (512 KiB).
pub const DEFAULT_KV_MAX_VALUE_SIZE: usize = 512 * 1024;

/// Default `session_ttl_min` (10 s).
pub const DEFAULT_SESSION_TTL_MIN: Duration = Duration::from_secs(10);

/// What the HTTP layer needs to know about the agent it serves.
#[derive(Clone)]
pub struct ApiConfig {
    /// The agent's datacenter (`dc1` by default).
    pub datacenter: String,
    /// The agent's node name.
    pub node_name: String,
    /// The agent's node ID (a UUID string).
    pub node_id: String,
    /// True for a server agent.
    pub server: bool,
    /// muster's version string (e.g. `0.1.0`).
    pub version: String,
    /// Largest KV value accepted (bytes); `kv_max_value_size`, 512 KiB.
    pub kv_max_value_size: usize,
    /// Shortest non-zero session TTL accepted (`session_ttl_min`, 10 s);
    /// the longest is always 24 h.
    pub session_ttl_min: Duration,
    /// What `PUT /v1/agent/reload` runs (`None`: the endpoint answers 500).
    pub reload: Option<ReloadHook>,
    /// The gossip pools and raft, for `/v1/agent/members|join|leave|
    /// force-leave` and `/v1/operator/*` (`None`: those answer 500, except
    /// `members`, which then lists this agent alone).
    pub cluster: Option<Arc<dyn ClusterBackend>>,
    /// The web UI's settings (off by default).
    pub ui: ui::UiConfig,
    /// The ACL system (`None`: ACLs off, everything allowed).
    pub acl: Option<Arc<acl::Acl>>,
    /// Open HTTP connections allowed per client address
    /// (`limits.http_max_conns_per_client`, Consul's 200; 0 = no limit).
    pub http_max_conns_per_client: usize,
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("datacenter", &self.datacenter)
            .field("node_name", &self.node_name)
            .field("node_id", &self.node_id)
            .field("server", &self.server)
            .field("version", &self.version)
            .field("kv_max_value_size", &self.kv_max_value_size)
            .field("session_ttl_min", &self.session_ttl_min)
            .field("reload", &self.reload)
            .field("cluster", &self.cluster.as_ref().map(|_| "ClusterBackend"))
            .field("ui", &self.ui)
            .field("acl", &self.acl.is_some())
            .finish()
    }
}

/// The future a [`ReloadHook`] returns: `Err(msg)` becomes a 500 with `msg`.
pub type ReloadFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// The binary's "re-read the config files and apply them" (the same thing
/// SIGHUP does), run by `PUT /v1/agent/reload`. The request waits for the
/// returned future: 200 with an empty body on `Ok`, 500 with the message on
/// `Err`, as Consul answers. Cheap to clone.
#[derive(Clone)]
pub struct ReloadHook(Arc<dyn Fn() -> ReloadFuture + Send + Sync>);

impl ReloadHook {
    /// Wrap an async callback, e.g.
    /// `ReloadHook::new(move || { let tx = tx.clone(); async move { ... } })`.
    pub fn new<F, Fut>(f: F) -> ReloadHook
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        ReloadHook(Arc::new(move || Box::pin(f()) as ReloadFuture))
    }

    /// Run the reload.
    pub fn run(&self) -> ReloadFuture {
        (self.0)()
    }
}

impl std::fmt::Debug for ReloadHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReloadHook")
    }
}

impl ApiConfig {
    /// A server agent with the defaults: this crate's version, compact JSON,
    /// a 512 KiB KV value limit, a 10 s minimum session TTL.
    pub fn new(
        datacenter: impl Into<String>,
        node_name: impl Into<String>,
        node_id: impl Into<String>,
    ) -> ApiConfig {
        ApiConfig {
            datacenter: datacenter.into(),
            node_name: node_name.into(),
            node_id: node_id.into(),
            server: true,
            version: env!("CARGO_PKG_VERSION").to_string(),
            kv_max_value_size: DEFAULT_KV_MAX_VALUE_SIZE,
            session_ttl_min: DEFAULT_SESSION_TTL_MIN,
            reload: None,
            cluster: None,
            ui: ui::UiConfig::default(),
            acl: None,
            http_max_conns_per_client: DEFAULT_HTTP_MAX_CONNS_PER_CLIENT,
        }
    }
}

/// Consul's default `limits.http_max_conns_per_client`.
pub const DEFAULT_HTTP_MAX_CONNS_PER_CLIENT: usize = 200;

/// Serve the HTTP API on `listener` until `shutdown` resolves, then stop
/// accepting, let in-flight requests finish (bounded) and return.
/// `/v1/agent/*` acts on `agent`.
pub async fn serve(
    listener: impl Into<Listener>,
    engine: Engine,
    agent: Agent,
    cfg: ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    server::serve(
        listener,
        router::Serving::Server(engine),
        Arc::new(agent),
        cfg,
        shutdown,
    )
    .await
}

/// Serve a client agent's HTTP API on `listener` until `shutdown`:
/// `/v1/agent/*` and `/v1/operator/keyring` act on `agent` and this agent's
/// gossip; every other request is forwarded to a server through `upstream`.
pub async fn serve_client(
    listener: impl Into<Listener>,
    upstream: Arc<dyn Upstream>,
    agent: Agent,
    cfg: ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    client::serve(listener, upstream, agent, cfg, shutdown).await
}
