//! `Backend`: the slice of the engine's interface the handlers use. The
//! server runs on [`muster_engine::Engine`]; unit tests run the same handlers
//! on an in-memory fake. This is a seam for testing only: it adds no
//! behaviour and must stay a one-to-one delegation to `Engine`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use muster_agent::{
    Agent, AgentError, CheckDefinition, LocalService, LocalServiceHealth, ServiceDefinition, Source,
};

use muster_engine::txn::{TxnError, TxnOp, TxnResult};
use muster_engine::watch::{Watch, WatchSet};
use muster_engine::Node;
use muster_engine::{
    Applied, Check, ClusterStatus, Command, Engine, Indexed, KvEntry, NodeServices, Result,
    ServiceHealth, ServiceNode, Session, Status,
};

pub(crate) use crate::cluster::BoxFuture;

/// What the handlers need from the engine (see `Engine` for the contracts).
pub(crate) trait Backend: Send + Sync + 'static {
    /// [`Engine::status`].
    fn status(&self) -> ClusterStatus;
    /// [`Engine::check_leader`].
    fn check_leader(&self) -> Result<()>;
    /// [`Engine::leader_known`].
    fn leader_known(&self) -> Result<()>;
    /// [`Engine::linearizable`].
    fn linearizable(&self) -> impl Future<Output = Result<()>> + Send;
    /// [`Engine::propose`].
    fn propose(&self, cmd: Command) -> impl Future<Output = Result<Applied>> + Send;
    /// [`Engine::watch`].
    fn watch(&self) -> &Arc<Watch>;
    /// [`Engine::kv_get`].
    fn kv_get(&self, key: &str, ws: &mut WatchSet) -> Result<Indexed<Option<KvEntry>>>;
    /// [`Engine::kv_list`].
    fn kv_list(&self, prefix: &str, ws: &mut WatchSet) -> Result<Indexed<Vec<KvEntry>>>;
    /// [`Engine::kv_keys`].
    fn kv_keys(
        &self,
        prefix: &str,
        separator: Option<&str>,
        ws: &mut WatchSet,
    ) -> Result<Indexed<Vec<String>>>;
    /// [`Engine::catalog_nodes`].
    fn catalog_nodes(&self, ws: &mut WatchSet) -> Result<Indexed<Vec<Node>>>;
    /// [`Engine::catalog_services`].
    fn catalog_services(&self, ws: &mut WatchSet) -> Result<Indexed<Vec<ServiceNode>>>;
    /// [`Engine::catalog_service`].
    fn catalog_service(&self, name: &str, ws: &mut WatchSet) -> Result<Indexed<Vec<ServiceNode>>>;
    /// [`Engine::catalog_node`].
    fn catalog_node(&self, node: &str, ws: &mut WatchSet) -> Result<Indexed<Option<NodeServices>>>;
    /// [`Engine::health_node`].
    fn health_node(&self, node: &str, ws: &mut WatchSet) -> Result<Indexed<Vec<Check>>>;
    /// [`Engine::health_service`].
    fn health_service(&self, name: &str, ws: &mut WatchSet) -> Result<Indexed<Vec<ServiceHealth>>>;
    /// [`Engine::health_checks_all`].
    fn health_checks_all(&self, ws: &mut WatchSet) -> Result<Indexed<Vec<Check>>>;
    /// [`Engine::node_name`].
    fn node_name(&self) -> String;
    /// [`Engine::session_get`].
    fn session_get(&self, id: &str, ws: &mut WatchSet) -> Result<Indexed<Option<Session>>>;
    /// [`Engine::session_list`].
    fn session_list(&self, ws: &mut WatchSet) -> Result<Indexed<Vec<Session>>>;
    /// [`Engine::session_node`].
    fn session_node(&self, node: &str, ws: &mut WatchSet) -> Result<Indexed<Vec<Session>>>;
    /// [`Engine::session_renew`].
    fn session_renew(&self, id: &str) -> impl Future<Output = Result<Option<Session>>> + Send;
    /// [`Engine::kv_lock_delay`].
    fn kv_lock_delay(&self, key: &str) -> Option<Duration>;
    /// [`Engine::txn_read`].
    fn txn_read(&self, ops: &[TxnOp]) -> Result<(Vec<TxnResult>, Vec<TxnError>)>;
}

impl Backend for Engine {
    fn status(&self) -> ClusterStatus {
        Engine::status(self)
    }
    fn check_leader(&self) -> Result<()> {
        Engine::check_leader(self)
    }
    fn leader_known(&self) -> Result<()> {
        Engine::leader_known(self)
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
    fn kv_get(&self, key: &str, ws: &mut WatchSet) -> Result<Indexed<Option<KvEntry>>> {
        Engine::kv_get(self, key, ws)
    }
    fn kv_list(&self, prefix: &str, ws: &mut WatchSet) -> Result<Indexed<Vec<KvEntry>>> {
        Engine::kv_list(self, prefix, ws)
    }
    fn kv_keys(
        &self,
        prefix: &str,
        separator: Option<&str>,
        ws: &mut WatchSet,
    ) -> Result<Indexed<Vec<String>>> {
        Engine::kv_keys(self, prefix, separator, ws)
    }
    fn catalog_nodes(&self, ws: &mut WatchSet) -> Result<Indexed<Vec<Node>>> {
        Engine::catalog_nodes(self, ws)
    }
    fn catalog_services(&self, ws: &mut WatchSet) -> Result<Indexed<Vec<ServiceNode>>> {
        Engine::catalog_services(self, ws)
    }
    fn catalog_service(&self, name: &str, ws: &mut WatchSet) -> Result<Indexed<Vec<ServiceNode>>> {
        Engine::catalog_service(self, name, ws)
    }
    fn catalog_node(&self, node: &str, ws: &mut WatchSet) -> Result<Indexed<Option<NodeServices>>> {
        Engine::catalog_node(self, node, ws)
    }
    fn health_node(&self, node: &str, ws: &mut WatchSet) -> Result<Indexed<Vec<Check>>> {
        Engine::health_node(self, node, ws)
    }
    fn health_service(&self, name: &str, ws: &mut WatchSet) -> Result<Indexed<Vec<ServiceHealth>>> {
        Engine::health_service(self, name, ws)
    }
    fn health_checks_all(&self, ws: &mut WatchSet) -> Result<Indexed<Vec<Check>>> {
        Engine::health_checks_all(self, ws)
    }
    fn node_name(&self) -> String {
        Engine::node_name(self)
    }
    fn session_get(&self, id: &str, ws: &mut WatchSet) -> Result<Indexed<Option<Session>>> {
        Engine::session_get(self, id, ws)
    }
    fn session_list(&self, ws: &mut WatchSet) -> Result<Indexed<Vec<Session>>> {
        Engine::session_list(self, ws)
    }
    fn session_node(&self, node: &str, ws: &mut WatchSet) -> Result<Indexed<Vec<Session>>> {
        Engine::session_node(self, node, ws)
    }
    fn session_renew(&self, id: &str) -> impl Future<Output = Result<Option<Session>>> + Send {
        Engine::session_renew(self, id)
    }
    fn kv_lock_delay(&self, key: &str) -> Option<Duration> {
        Engine::kv_lock_delay(self, key)
    }
    fn txn_read(&self, ops: &[TxnOp]) -> Result<(Vec<TxnResult>, Vec<TxnError>)> {
        Engine::txn_read(self, ops)
    }
}

/// What the `/v1/agent/*` handlers need from the agent (see
/// [`muster_agent::Agent`] for the contracts). Like [`Backend`], a
/// test seam only: a one-to-one delegation, API writes tagged
/// [`Source::Api`].
pub(crate) trait AgentBackend: Send + Sync + 'static {
    /// [`Agent::services`].
    fn services(&self) -> BTreeMap<String, LocalService>;
    /// [`Agent::checks`].
    fn checks(&self) -> BTreeMap<String, Check>;
    /// [`Agent::register_service`] from the API.
    fn register_service(
        &self,
        def: ServiceDefinition,
        replace_existing_checks: bool,
    ) -> BoxFuture<'_, Result<(), AgentError>>;
    /// [`Agent::deregister_service`].
    fn deregister_service<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), AgentError>>;
    /// [`Agent::register_check`] from the API.
    fn register_check(&self, def: CheckDefinition) -> BoxFuture<'_, Result<(), AgentError>>;
    /// [`Agent::deregister_check`].
    fn deregister_check<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), AgentError>>;
    /// [`Agent::update_ttl`].
    fn update_ttl<'a>(
        &'a self,
        id: &'a str,
        status: Status,
        output: &'a str,
    ) -> BoxFuture<'a, Result<(), AgentError>>;
    /// [`Agent::set_node_maintenance`].
    fn set_node_maintenance<'a>(
        &'a self,
        enable: bool,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), AgentError>>;
    /// [`Agent::set_service_maintenance`].
    fn set_service_maintenance<'a>(
        &'a self,
        id: &'a str,
        enable: bool,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), AgentError>>;
    /// [`Agent::service_health`].
    fn service_health(&self, id: &str) -> Option<LocalServiceHealth>;
}

impl AgentBackend for Agent {
    fn services(&self) -> BTreeMap<String, LocalService> {
        Agent::services(self)
    }
    fn checks(&self) -> BTreeMap<String, Check> {
        Agent::checks(self)
    }
    fn register_service(
        &self,
        def: ServiceDefinition,
        replace_existing_checks: bool,
    ) -> BoxFuture<'_, Result<(), AgentError>> {
        Box::pin(Agent::register_service(
            self,
            def,
            replace_existing_checks,
            Source::Api,
        ))
    }
    fn deregister_service<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), AgentError>> {
        Box::pin(Agent::deregister_service(self, id))
    }
    fn register_check(&self, def: CheckDefinition) -> BoxFuture<'_, Result<(), AgentError>> {
        Box::pin(Agent::register_check(self, def, Source::Api))
    }
    fn deregister_check<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), AgentError>> {
        Box::pin(Agent::deregister_check(self, id))
    }
    fn update_ttl<'a>(
        &'a self,
        id: &'a str,
        status: Status,
        output: &'a str,
    ) -> BoxFuture<'a, Result<(), AgentError>> {
        Box::pin(Agent::update_ttl(self, id, status, output))
    }
    fn set_node_maintenance<'a>(
        &'a self,
        enable: bool,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), AgentError>> {
        Box::pin(Agent::set_node_maintenance(self, enable, reason))
    }
    fn set_service_maintenance<'a>(
        &'a self,
        id: &'a str,
        enable: bool,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), AgentError>> {
        Box::pin(Agent::set_service_maintenance(self, id, enable, reason))
    }
    fn service_health(&self, id: &str) -> Option<LocalServiceHealth> {
        Agent::service_health(self, id)
    }
}
