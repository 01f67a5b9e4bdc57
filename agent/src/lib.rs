//! The agent: this node's services and checks (from config files and
//! `/v1/agent/*`), the check runners, maintenance mode and anti-entropy,
//! which keeps the catalog's copy of this node equal to the local state.
//!
//! Check results reach the catalog as commands only when a status changes,
//! or when only the output changed and `check_update_interval` has passed:
//! output churn must not flood the log.
//!
//! The agent is a client of the catalog, not event-sourced state: it holds
//! no views and reaches the catalog only through a [`Store`] (the local
//! engine on a server, the servers over RPC on a client agent). It owns
//! the TLS, HTTP-client and process code the check runners need, so the
//! engine does not.
//!
//! # Layout
//! - `lib.rs`: `Agent`, its config and errors; `local.rs`: the local state
//!   and its persistence; `sync.rs`: anti-entropy and the `serfHealth`
//!   check; `store.rs`: [`Store`] for the engine and for `Remote`.
//! - `definition/`: service and check definitions, their defaults and
//!   rules; `decode.rs` is the one decoder (HTTP bodies and config files),
//!   `encode.rs` the API JSON back.
//! - `checks/`: one runner per check kind (script, HTTP, TCP, UDP, TTL,
//!   Docker, gRPC, alias) and their scheduling.

pub mod checks;
pub mod definition;
mod local;
pub mod store;
mod sync;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use definition::{CheckDefinition, CheckKind, ServiceDefinition};
pub use muster_engine::NodeView;
pub use store::Store;
pub use sync::{serf_check, SERF_CHECK_ID};

use checks::{CheckResult, RunnerContext};
use local::LocalState;
use muster_engine::Engine;
use muster_engine::{Check, Service, Status};

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
    /// How often services critical past `deregister_critical_service_after`
    /// are reaped (Consul: 30 s).
    pub reap_interval: Duration,
    /// Floor of `deregister_critical_service_after` (Consul: 1 minute).
    pub min_deregister_after: Duration,
    /// Floor of check intervals (Consul: 1 s).
    pub min_interval: Duration,
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
            reap_interval: Duration::from_secs(30),
            min_deregister_after: Duration::from_secs(60),
            min_interval: Duration::from_secs(1),
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

pub(crate) struct AgentInner {
    /// Where this node's catalog entry lives (local engine or servers).
    pub(crate) store: Arc<dyn Store>,
    pub(crate) cfg: AgentConfig,
    pub(crate) state: Mutex<LocalState>,
    /// Wakes the anti-entropy task for an immediate (partial) sync.
    pub(crate) sync_wake: tokio::sync::Notify,
    /// Serialises syncs.
    pub(crate) sync_lock: tokio::sync::Mutex<()>,
    /// Serialises writes of the persisted API definitions.
    pub(crate) persist_lock: tokio::sync::Mutex<()>,
    pub(crate) results: tokio::sync::mpsc::UnboundedSender<(String, CheckResult)>,
    pub(crate) runner_ctx: Arc<RunnerContext>,
    pub(crate) stop: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("node", &self.inner.cfg.node_name)
            .finish_non_exhaustive()
    }
}

/// `_node_maintenance`.
pub const NODE_MAINT_ID: &str = "_node_maintenance";
/// Prefix of `_service_maintenance:<id>`.
pub const SERVICE_MAINT_PREFIX: &str = "_service_maintenance:";

impl Agent {
    /// Start a server's agent on the local engine (see [`Agent::start_with`]).
    pub async fn start(
        engine: Engine,
        cfg: AgentConfig,
        services: Vec<ServiceDefinition>,
        checks: Vec<CheckDefinition>,
    ) -> Result<Agent, AgentError> {
        Agent::start_with(Arc::new(engine), cfg, services, checks).await
    }

    /// Start the agent on `store`: load persisted API definitions, add the
    /// file definitions, start check runners and anti-entropy.
    pub async fn start_with(
        store: Arc<dyn Store>,
        cfg: AgentConfig,
        services: Vec<ServiceDefinition>,
        checks: Vec<CheckDefinition>,
    ) -> Result<Agent, AgentError> {
        let mut cfg = cfg;
        // Consul's defaults for an agent's own node (§2.1).
        if cfg.tagged_addresses.is_empty() {
            let family = if cfg.address.contains(':') {
                "ipv6"
            } else {
                "ipv4"
            };
            for key in [
                "lan".to_string(),
                format!("lan_{family}"),
                "wan".to_string(),
                format!("wan_{family}"),
            ] {
                cfg.tagged_addresses.insert(key, cfg.address.clone());
            }
        }
        cfg.node_meta
            .entry("consul-network-segment".into())
            .or_default();
        cfg.node_meta
            .entry("consul-version".into())
            .or_insert_with(|| muster_engine::CONSUL_VERSION.to_string());
        let (results, results_rx) = tokio::sync::mpsc::unbounded_channel();
        let docker_host = std::env::var("DOCKER_HOST").ok();
        let (stop, _) = tokio::sync::watch::channel(false);
        let agent = Agent {
            inner: Arc::new(AgentInner {
                runner_ctx: Arc::new(RunnerContext {
                    docker_host: docker_host.filter(|h| !h.is_empty()),
                    output_max_size_cap: cfg.check_output_max_size,
                }),
                store,
                cfg,
                state: Mutex::new(LocalState::default()),
                sync_wake: tokio::sync::Notify::new(),
                sync_lock: tokio::sync::Mutex::new(()),
                persist_lock: tokio::sync::Mutex::new(()),
                results,
                stop,
            }),
        };
        let (saved_services, saved_checks) = local::load_persisted(&agent.inner.cfg);
        for def in saved_services {
            if let Err(e) = agent.add_service(def, false, Source::Api) {
                tracing::warn!(error = %e, "skipping a persisted service");
            }
        }
        for def in saved_checks {
            if let Err(e) = agent.add_check(def, Source::Api) {
                tracing::warn!(error = %e, "skipping a persisted check");
            }
        }
        for def in services {
            agent.add_service(def, false, Source::File)?;
        }
        for def in checks {
            agent.add_check(def, Source::File)?;
        }
        tokio::spawn(local::results_loop(
            Arc::downgrade(&agent.inner),
            results_rx,
        ));
        tokio::spawn(sync::anti_entropy_loop(Arc::downgrade(&agent.inner)));
        tokio::spawn(local::reaper_loop(Arc::downgrade(&agent.inner)));
        Ok(agent)
    }

    fn state(&self) -> MutexGuard<'_, LocalState> {
        self.inner.lock_state()
    }

    /// The agent's settings.
    pub fn config(&self) -> &AgentConfig {
        &self.inner.cfg
    }

    /// Local services by ID.
    pub fn services(&self) -> BTreeMap<String, LocalService> {
        self.state()
            .services
            .iter()
            .map(|(id, s)| {
                (
                    id.clone(),
                    LocalService {
                        service: s.record.clone(),
                        source: s.source,
                    },
                )
            })
            .collect()
    }

    /// Local checks by ID (current status and output).
    pub fn checks(&self) -> BTreeMap<String, Check> {
        self.state()
            .checks
            .iter()
            .map(|(id, c)| (id.clone(), c.record.clone()))
            .collect()
    }

    fn script_allowed(&self, def: &CheckDefinition, source: Source) -> Result<(), AgentError> {
        if matches!(
            def.kind,
            CheckKind::Script { .. } | CheckKind::Docker { .. }
        ) {
            let ok = self.inner.cfg.enable_script_checks
                || (source == Source::File && self.inner.cfg.enable_local_script_checks);
            if !ok {
                return Err(AgentError::ScriptsDisabled);
            }
        }
        Ok(())
    }

    fn add_service(
        &self,
        mut def: ServiceDefinition,
        replace_checks: bool,
        source: Source,
    ) -> Result<(), AgentError> {
        def.normalize();
        if def.name.is_empty() {
            return Err(AgentError::InvalidService("Missing service name".into()));
        }
        for c in &def.checks {
            c.validate().map_err(AgentError::InvalidCheck)?;
            self.script_allowed(c, source)?;
        }
        let mut st = self.state();
        st.add_service(&self.inner, def, replace_checks, source);
        drop(st);
        self.inner.sync_wake.notify_one();
        Ok(())
    }

    fn add_check(&self, def: CheckDefinition, source: Source) -> Result<(), AgentError> {
        def.validate().map_err(AgentError::InvalidCheck)?;
        self.script_allowed(&def, source)?;
        let mut st = self.state();
        if !def.service_id.is_empty() && !st.services.contains_key(&def.service_id) {
            return Err(AgentError::MissingService(def.service_id));
        }
        st.add_check(&self.inner, def, source);
        drop(st);
        self.inner.sync_wake.notify_one();
        Ok(())
    }

    /// Persist API definitions (if configured; the write is done when
    /// this returns) and wake anti-entropy.
    async fn changed(&self, source: Source) {
        if source == Source::Api {
            local::persist(&self.inner).await;
        }
        self.inner.sync_wake.notify_one();
    }

    /// Register (or replace) a service and its inline checks. With
    /// `replace_existing_checks`, the service's checks not in `def` go.
    pub async fn register_service(
        &self,
        def: ServiceDefinition,
        replace_existing_checks: bool,
        source: Source,
    ) -> Result<(), AgentError> {
        self.add_service(def, replace_existing_checks, source)?;
        self.changed(source).await;
        self.sync_now().await
    }

    /// Deregister a service and its checks.
    pub async fn deregister_service(&self, id: &str) -> Result<(), AgentError> {
        {
            let mut st = self.state();
            if st.services.remove(id).is_none() {
                return Err(AgentError::UnknownService(id.to_string()));
            }
            st.checks.retain(|_, c| c.record.service_id != id);
        }
        self.changed(Source::Api).await;
        self.sync_now().await
    }

    /// Register (or replace) a check.
    pub async fn register_check(
        &self,
        def: CheckDefinition,
        source: Source,
    ) -> Result<(), AgentError> {
        self.add_check(def, source)?;
        self.changed(source).await;
        self.sync_now().await
    }

    /// Deregister a check.
    pub async fn deregister_check(&self, id: &str) -> Result<(), AgentError> {
        if self.state().checks.remove(id).is_none() {
            return Err(AgentError::UnknownCheck(id.to_string()));
        }
        self.changed(Source::Api).await;
        self.sync_now().await
    }

    /// Update a TTL check (`pass`/`warn`/`fail`/`update`); resets its timer.
    pub async fn update_ttl(
        &self,
        id: &str,
        status: Status,
        output: &str,
    ) -> Result<(), AgentError> {
        let status_changed = {
            let mut st = self.state();
            let Some(c) = st.checks.get_mut(id) else {
                return Err(AgentError::UnknownCheck(id.to_string()));
            };
            let CheckKind::Ttl { ttl } = c.def.kind else {
                return Err(AgentError::NotTtl(id.to_string()));
            };
            c.ttl_deadline = Some(tokio::time::Instant::now() + ttl);
            c.ttl_wake.notify_one();
            let max = checks::output_max_size(&c.def, &self.inner.runner_ctx);
            let output = checks::truncate_output(&c.def.kind, output, max);
            st.apply_result(id, CheckResult { status, output })
        };
        if status_changed {
            self.sync_now().await?;
        }
        Ok(())
    }

    /// Node maintenance mode on or off (`_node_maintenance` check).
    pub async fn set_node_maintenance(&self, enable: bool, reason: &str) -> Result<(), AgentError> {
        {
            let mut st = self.state();
            if enable {
                let notes = if reason.is_empty() {
                    "Maintenance mode is enabled for this node, but no reason was provided. This is a default message."
                        .to_string()
                } else {
                    reason.to_string()
                };
                st.add_maintenance(
                    &self.inner,
                    NODE_MAINT_ID,
                    "Node Maintenance Mode",
                    "",
                    notes,
                );
            } else {
                st.checks.remove(NODE_MAINT_ID);
            }
        }
        self.changed(Source::Api).await;
        self.sync_now().await
    }

    /// Service maintenance mode (`_service_maintenance:<id>` check).
    pub async fn set_service_maintenance(
        &self,
        id: &str,
        enable: bool,
        reason: &str,
    ) -> Result<(), AgentError> {
        {
            let mut st = self.state();
            if !st.services.contains_key(id) {
                return Err(AgentError::UnknownService(id.to_string()));
            }
            let check_id = format!("{SERVICE_MAINT_PREFIX}{id}");
            if enable {
                let notes = if reason.is_empty() {
                    "Maintenance mode is enabled for this service, but no reason was provided. This is a default message."
                        .to_string()
                } else {
                    reason.to_string()
                };
                st.add_maintenance(
                    &self.inner,
                    &check_id,
                    "Service Maintenance Mode",
                    id,
                    notes,
                );
            } else {
                st.checks.remove(&check_id);
            }
        }
        self.changed(Source::Api).await;
        self.sync_now().await
    }

    /// Aggregated health of one local instance (`None` if unknown).
    pub fn service_health(&self, id: &str) -> Option<LocalServiceHealth> {
        let st = self.state();
        let s = st.services.get(id)?;
        let checks: Vec<Check> = st
            .checks
            .values()
            .filter(|c| c.record.service_id.is_empty() || c.record.service_id == id)
            .map(|c| c.record.clone())
            .collect();
        Some(LocalServiceHealth {
            aggregated: aggregate(&checks).to_string(),
            service: s.record.clone(),
            checks,
        })
    }

    /// Replace the file-defined services and checks (reload).
    pub async fn reload(
        &self,
        services: Vec<ServiceDefinition>,
        checks: Vec<CheckDefinition>,
    ) -> Result<(), AgentError> {
        {
            let mut st = self.state();
            st.services.retain(|_, s| s.source != Source::File);
            let services = &st.services;
            let keep: Vec<String> = st
                .checks
                .iter()
                .filter(|(_, c)| {
                    c.source != Source::File
                        && (c.record.service_id.is_empty()
                            || services.contains_key(&c.record.service_id))
                })
                .map(|(id, _)| id.clone())
                .collect();
            st.checks.retain(|id, _| keep.contains(id));
        }
        for def in services {
            self.add_service(def, false, Source::File)?;
        }
        for def in checks {
            self.add_check(def, Source::File)?;
        }
        self.sync_now().await
    }

    /// Run an anti-entropy sync now and wait for it.
    pub async fn sync_now(&self) -> Result<(), AgentError> {
        sync::sync(&self.inner).await
    }

    /// Stop check runners and anti-entropy.
    pub async fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
        let mut st = self.state();
        st.checks.clear();
        st.services.clear();
    }
}

impl AgentInner {
    pub(crate) fn lock_state(&self) -> MutexGuard<'_, LocalState> {
        // The state is plain maps; a panic elsewhere leaves it consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Consul's aggregate (§4): maintenance if any maintenance check, else the
/// worst status; no checks is passing.
pub fn aggregate(checks: &[Check]) -> &'static str {
    if checks
        .iter()
        .any(|c| c.check_id == NODE_MAINT_ID || c.check_id.starts_with(SERVICE_MAINT_PREFIX))
    {
        return "maintenance";
    }
    checks
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(Status::Passing)
        .as_str()
}
