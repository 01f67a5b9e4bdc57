//! `Backend`: the slice of the engine's interface the handlers use. The
//! server runs on [`muster_engine::Engine`]; unit tests run the same handlers
//! on an in-memory fake. This is a seam for testing only: it adds no
//! behaviour and must stay a one-to-one delegation to `Engine`.

use std::future::Future;
use std::sync::Arc;

use muster_engine::watch::Watch;
use muster_engine::Node;
use muster_engine::{
    Applied, Check, ClusterStatus, Command, Engine, Indexed, KvEntry, NodeServices, Result,
    ServiceHealth, ServiceNode,
};

/// What the handlers need from the engine (see `Engine` for the contracts).
pub(crate) trait Backend: Send + Sync + 'static {
    /// [`Engine::status`].
    fn status(&self) -> ClusterStatus;
    /// [`Engine::check_leader`].
    fn check_leader(&self) -> Result<()>;
    /// [`Engine::linearizable`].
    fn linearizable(&self) -> impl Future<Output = Result<()>> + Send;
    /// [`Engine::propose`].
    fn propose(&self, cmd: Command) -> impl Future<Output = Result<Applied>> + Send;
    /// [`Engine::watch`].
    fn watch(&self) -> &Arc<Watch>;
    /// [`Engine::kv_get`].
    fn kv_get(&self, key: &str) -> Result<Indexed<Option<KvEntry>>>;
    /// [`Engine::kv_list`].
    fn kv_list(&self, prefix: &str) -> Result<Indexed<Vec<KvEntry>>>;
    /// [`Engine::kv_keys`].
    fn kv_keys(&self, prefix: &str, separator: Option<&str>) -> Result<Indexed<Vec<String>>>;
    /// [`Engine::catalog_nodes`].
    fn catalog_nodes(&self) -> Result<Indexed<Vec<Node>>>;
    /// [`Engine::catalog_services`].
    fn catalog_services(&self) -> Result<Indexed<Vec<ServiceNode>>>;
    /// [`Engine::catalog_service`].
    fn catalog_service(&self, name: &str) -> Result<Indexed<Vec<ServiceNode>>>;
    /// [`Engine::catalog_node`].
    fn catalog_node(&self, node: &str) -> Result<Indexed<Option<NodeServices>>>;
    /// [`Engine::health_node`].
    fn health_node(&self, node: &str) -> Result<Indexed<Vec<Check>>>;
    /// [`Engine::health_service`].
    fn health_service(&self, name: &str) -> Result<Indexed<Vec<ServiceHealth>>>;
    /// [`Engine::health_checks_all`].
    fn health_checks_all(&self) -> Result<Indexed<Vec<Check>>>;
}

impl Backend for Engine {
    fn status(&self) -> ClusterStatus {
        Engine::status(self)
    }
    fn check_leader(&self) -> Result<()> {
        Engine::check_leader(self)
    }
    fn linearizable(&self) -> impl Future<Output = Result<()>> + Send {
        Engine::linearizable(self)
    }
    fn propose(&self, cmd: Command) -> impl Future<Output = Result<Applied>> + Send {
        Engine::propose(self, cmd)
    }
    fn watch(&self) -> &Arc<Watch> {
        Engine::watch(self)
    }
    fn kv_get(&self, key: &str) -> Result<Indexed<Option<KvEntry>>> {
        Engine::kv_get(self, key)
    }
    fn kv_list(&self, prefix: &str) -> Result<Indexed<Vec<KvEntry>>> {
        Engine::kv_list(self, prefix)
    }
    fn kv_keys(&self, prefix: &str, separator: Option<&str>) -> Result<Indexed<Vec<String>>> {
        Engine::kv_keys(self, prefix, separator)
    }
    fn catalog_nodes(&self) -> Result<Indexed<Vec<Node>>> {
        Engine::catalog_nodes(self)
    }
    fn catalog_services(&self) -> Result<Indexed<Vec<ServiceNode>>> {
        Engine::catalog_services(self)
    }
    fn catalog_service(&self, name: &str) -> Result<Indexed<Vec<ServiceNode>>> {
        Engine::catalog_service(self, name)
    }
    fn catalog_node(&self, node: &str) -> Result<Indexed<Option<NodeServices>>> {
        Engine::catalog_node(self, node)
    }
    fn health_node(&self, node: &str) -> Result<Indexed<Vec<Check>>> {
        Engine::health_node(self, node)
    }
    fn health_service(&self, name: &str) -> Result<Indexed<Vec<ServiceHealth>>> {
        Engine::health_service(self, name)
    }
    fn health_checks_all(&self) -> Result<Indexed<Vec<Check>>> {
        Engine::health_checks_all(self)
    }
}
