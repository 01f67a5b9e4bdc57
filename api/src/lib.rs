//! muster-api: Consul's HTTP API over hyper (placeholder signature; the
//! implementation lands with the API work).

use std::future::Future;

use muster_engine::Engine;

/// What the HTTP layer needs to know about the agent it serves.
#[derive(Debug, Clone)]
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
    /// Pretty-print JSON by default (`-dev`).
    pub pretty: bool,
    /// Largest KV value accepted (bytes); `kv_max_value_size`, 512 KiB.
    pub kv_max_value_size: usize,
}

/// The API's error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listener failed.
    #[error("http listener: {0}")]
    Io(#[from] std::io::Error),
}

/// Serve the HTTP API on `listener` until `shutdown` resolves, then stop
/// accepting, let in-flight requests finish (bounded) and return.
pub async fn serve(
    _listener: tokio::net::TcpListener,
    _engine: Engine,
    _cfg: ApiConfig,
    _shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    todo!("api serve")
}
