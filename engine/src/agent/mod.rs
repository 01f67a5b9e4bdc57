//! The agent: this node's services and checks (from config files and
//! `/v1/agent/*`), the check runners, maintenance mode and anti-entropy,
//! which keeps the catalog's copy of this node equal to the local state.
//!
//! Check results reach the catalog as commands only when a status changes,
//! or when only the output changed and `check_update_interval` has passed:
//! output churn must not flood the log.

pub mod checks;
pub mod definition;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use definition::{CheckDefinition, CheckKind, ServiceDefinition};

use crate::engine::Engine;
use crate::types::{Check, Service, Status};

/// Agent settings (from flags and config files).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This node's name.
    pub node_name: String,
    /// This node's ID (UUID).
    pub node_id: String,
    /// The datacenter.
    pub datacenter: String,
    /// The address registered for this node.
    pub address: String,
    /// Tagged addresses of the node (`lan`, `wan`, ...).
    pub tagged_addresses: BTreeMap<String, String>,
    /// Node metadata.
    pub node_meta: BTreeMap<String, String>,
    /// Allow script checks from any source (remote code execution risk).
    pub enable_script_checks: bool,
    /// Allow script checks from config files only.
    pub enable_local_script_checks: bool,
    /// Least time between output-only updates of a check (default 5 m).
    pub check_update_interval: Duration,
    /// Full anti-entropy sync interval (default 1 m).
    pub ae_interval: Duration,
    /// Cap on check output (`check_output_max_size`, default 4096).
    pub check_output_max_size: usize,
    /// Where API-registered services and checks are persisted
    /// (`None` = not persisted, e.g. `-dev`).
    pub persist_dir: Option<PathBuf>,
}

impl AgentConfig {
    /// Defaults for a node.
    pub fn new(
        node_name: impl Into<String>,
        node_id: impl Into<String>,
        datacenter: impl Into<String>,
    ) -> Self {
        AgentConfig {
            node_name: node_name.into(),
            node_id: node_id.into(),
            datacenter: datacenter.into(),
            address: "127.0.0.1".into(),
            tagged_addresses: BTreeMap::new(),
            node_meta: BTreeMap::new(),
            enable_script_checks: false,
            enable_local_script_checks: false,
            check_update_interval: Duration::from_secs(300),
            ae_interval: Duration::from_secs(60),
            check_output_max_size: definition::DEFAULT_OUTPUT_MAX_SIZE,
            persist_dir: None,
        }
    }
}

/// Where a definition came from: file-defined ones come back from config
/// on start and reload; API-defined ones are persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A config file.
    File,
    /// The HTTP API.
    Api,
}

/// Why an agent operation failed; the API maps these to Consul's codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// 404 `Unknown service ID "x". Ensure that the service ID is passed, not the service name.`
    #[error(
        "Unknown service ID {0:?}. Ensure that the service ID is passed, not the service name."
    )]
    UnknownService(String),
    /// 404 `Unknown check ID "x"`.
    #[error("Unknown check ID {0:?}")]
    UnknownCheck(String),
    /// 404 `ServiceID "x" does not exist` (check registration).
    #[error("ServiceID {0:?} does not exist")]
    MissingService(String),
    /// 500 `CheckID "x" does not have associated TTL`.
    #[error("CheckID {0:?} does not have associated TTL")]
    NotTtl(String),
    /// 400 `Invalid check: <reason>`.
    #[error("Invalid check: {0}")]
    InvalidCheck(String),
    /// 500: script checks are disabled.
    #[error("Scripts are disabled on this agent; to enable, configure 'enable_script_checks' or 'enable_local_script_checks' to true")]
    ScriptsDisabled,
    /// 400: a service definition is invalid (message is Consul's).
    #[error("{0}")]
    InvalidService(String),
    /// The engine failed (500).
    #[error("{0}")]
    Engine(String),
}

/// A local service with what the agent knows beyond the catalog record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalService {
    /// The record as synced to the catalog.
    pub service: Service,
    /// Where it came from.
    pub source: Source,
}

/// Aggregated health of a local service instance (§5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalServiceHealth {
    /// `passing`, `warning`, `critical` or `maintenance`.
    pub aggregated: String,
    /// The instance.
    pub service: Service,
    /// Its checks and the node's checks.
    pub checks: Vec<Check>,
}

/// The running agent; cheap to clone.
#[derive(Clone)]
pub struct Agent {
    inner: Arc<AgentInner>,
}

struct AgentInner {
    _engine: Engine,
    cfg: AgentConfig,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("node", &self.inner.cfg.node_name)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// Start the agent: load persisted API definitions, add the file
    /// definitions, start check runners and anti-entropy.
    pub async fn start(
        engine: Engine,
        cfg: AgentConfig,
        _services: Vec<ServiceDefinition>,
        _checks: Vec<CheckDefinition>,
    ) -> Result<Agent, AgentError> {
        Ok(Agent {
            inner: Arc::new(AgentInner {
                _engine: engine,
                cfg,
            }),
        })
    }

    /// The agent's settings.
    pub fn config(&self) -> &AgentConfig {
        &self.inner.cfg
    }

    /// Local services by ID.
    pub fn services(&self) -> BTreeMap<String, LocalService> {
        BTreeMap::new()
    }

    /// Local checks by ID (current status and output).
    pub fn checks(&self) -> BTreeMap<String, Check> {
        BTreeMap::new()
    }

    /// Register (or replace) a service and its inline checks. With
    /// `replace_existing_checks`, the service's checks not in `def` go.
    pub async fn register_service(
        &self,
        _def: ServiceDefinition,
        _replace_existing_checks: bool,
        _source: Source,
    ) -> Result<(), AgentError> {
        Err(AgentError::Engine("agent not implemented yet".into()))
    }

    /// Deregister a service and its checks.
    pub async fn deregister_service(&self, id: &str) -> Result<(), AgentError> {
        Err(AgentError::UnknownService(id.to_string()))
    }

    /// Register (or replace) a check.
    pub async fn register_check(
        &self,
        _def: CheckDefinition,
        _source: Source,
    ) -> Result<(), AgentError> {
        Err(AgentError::Engine("agent not implemented yet".into()))
    }

    /// Deregister a check.
    pub async fn deregister_check(&self, id: &str) -> Result<(), AgentError> {
        Err(AgentError::UnknownCheck(id.to_string()))
    }

    /// Update a TTL check (`pass`/`warn`/`fail`/`update`); resets its timer.
    pub async fn update_ttl(
        &self,
        id: &str,
        _status: Status,
        _output: &str,
    ) -> Result<(), AgentError> {
        Err(AgentError::UnknownCheck(id.to_string()))
    }

    /// Node maintenance mode on or off (`_node_maintenance` check).
    pub async fn set_node_maintenance(
        &self,
        _enable: bool,
        _reason: &str,
    ) -> Result<(), AgentError> {
        Err(AgentError::Engine("agent not implemented yet".into()))
    }

    /// Service maintenance mode (`_service_maintenance:<id>` check).
    pub async fn set_service_maintenance(
        &self,
        id: &str,
        _enable: bool,
        _reason: &str,
    ) -> Result<(), AgentError> {
        Err(AgentError::UnknownService(id.to_string()))
    }

    /// Aggregated health of one local instance (`None` if unknown).
    pub fn service_health(&self, _id: &str) -> Option<LocalServiceHealth> {
        None
    }

    /// Replace the file-defined services and checks (reload).
    pub async fn reload(
        &self,
        _services: Vec<ServiceDefinition>,
        _checks: Vec<CheckDefinition>,
    ) -> Result<(), AgentError> {
        Ok(())
    }

    /// Run a full anti-entropy sync now and wait for it.
    pub async fn sync_now(&self) -> Result<(), AgentError> {
        Ok(())
    }

    /// Stop check runners and anti-entropy.
    pub async fn shutdown(&self) {}
}
