//! `AgentBackend`: the slice of the agent's interface the `/v1/agent/*`
//! handlers use. The agent runs on [`muster_agent::Agent`]; unit tests run
//! the same handlers over a recording fake of it (the engine under them is
//! always the real one). This is a seam for testing only: it adds no
//! behaviour and must stay a one-to-one delegation to `Agent`.

use std::collections::BTreeMap;

use muster_agent::{
    Agent, AgentError, CheckDefinition, LocalService, LocalServiceHealth, ServiceDefinition, Source,
};
use muster_engine::{Check, Result, Status};

pub(crate) use crate::cluster::BoxFuture;

/// What the `/v1/agent/*` handlers need from the agent (see
/// [`muster_agent::Agent`] for the contracts). A
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
