//! The agent's local state: services and checks with their definitions,
//! current results and runners; the loop that folds runner results into
//! it; TTL timers; the critical-service reaper; persistence of
//! API-registered definitions.

use muster_engine::AbortOnDrop;
use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::checks::{self, CheckResult, RunnerHandle};
use super::definition::{CheckDefinition, CheckKind, ServiceDefinition};
use super::{AgentConfig, AgentInner, NodeView, Source};
use muster_engine::{Check, Service, Status};

/// A local service.
pub(crate) struct LocalSvc {
    /// The definition (normalised).
    pub def: ServiceDefinition,
    /// Where it came from.
    pub source: Source,
    /// The catalog record this agent wants.
    pub record: Service,
}

/// A local check.
pub(crate) struct LocalCheck {
    /// The definition.
    pub def: CheckDefinition,
    /// Where it came from.
    pub source: Source,
    /// The record with the current status and output.
    pub record: Check,
    /// The interval runner (stopped on drop).
    pub _runner: Option<RunnerHandle>,
    /// The TTL timer task (aborted on drop).
    pub _ttl_timer: Option<AbortOnDrop>,
    /// When a TTL check expires unless updated.
    pub ttl_deadline: Option<Instant>,
    /// Wakes the TTL timer after an update.
    pub ttl_wake: Arc<tokio::sync::Notify>,
    /// Output last written to the catalog, and when.
    pub synced_output: Option<(String, Instant)>,
    /// Since when the check has been critical (for the reaper).
    pub critical_since: Option<Instant>,
}

/// Services and checks by ID.
#[derive(Default)]
pub(crate) struct LocalState {
    pub services: BTreeMap<String, LocalSvc>,
    pub checks: BTreeMap<String, LocalCheck>,
}

fn service_record(cfg: &AgentConfig, def: &ServiceDefinition) -> Service {
    Service {
        node: cfg.node_name.clone(),
        id: def.id.clone(),
        service: def.name.clone(),
        kind: def.kind.clone(),
        tags: def.tags.clone(),
        address: def.address.clone(),
        tagged_addresses: def.tagged_addresses.clone(),
        port: def.port,
        socket_path: def.socket_path.clone(),
        meta: def.meta.clone(),
        weights: def.weights,
        enable_tag_override: def.enable_tag_override,
        create_index: 0,
        modify_index: 0,
    }
}

fn check_record(cfg: &AgentConfig, def: &CheckDefinition, service: Option<&Service>) -> Check {
    let definition = match &def.kind {
        CheckKind::Ttl { ttl } => {
            format!("{{\"TTL\":\"{}\"}}", muster_engine::duration::format(*ttl))
        }
        CheckKind::Alias { service, node } => format!(
            "{{\"AliasService\":{:?},\"AliasNode\":{:?}}}",
            service, node
        ),
        CheckKind::Unset => String::new(),
        _ => format!(
            "{{\"Interval\":\"{}\",\"Timeout\":\"{}\"}}",
            muster_engine::duration::format(def.interval),
            muster_engine::duration::format(def.effective_timeout())
        ),
    };
    Check {
        node: cfg.node_name.clone(),
        check_id: def.id.clone(),
        name: def.name.clone(),
        status: def.status.unwrap_or(Status::Critical),
        notes: def.notes.clone(),
        output: String::new(),
        service_id: def.service_id.clone(),
        service_name: service.map(|s| s.service.clone()).unwrap_or_default(),
        service_tags: service.map(|s| s.tags.clone()).unwrap_or_default(),
        check_type: def.check_type().to_string(),
        interval_ns: u64::try_from(def.interval.as_nanos()).unwrap_or(u64::MAX),
        timeout_ns: if def.is_interval_kind() {
            u64::try_from(def.effective_timeout().as_nanos()).unwrap_or(u64::MAX)
        } else {
            0
        },
        definition,
        create_index: 0,
        modify_index: 0,
    }
}

impl LocalState {
    /// Add or replace a service and its inline checks.
    pub fn add_service(
        &mut self,
        inner: &Arc<AgentInner>,
        def: ServiceDefinition,
        replace_checks: bool,
        source: Source,
    ) {
        let record = service_record(&inner.cfg, &def);
        let id = def.id.clone();
        if replace_checks {
            let keep: Vec<&str> = def.checks.iter().map(|c| c.id.as_str()).collect();
            self.checks.retain(|cid, c| {
                c.record.service_id != id
                    || keep.contains(&cid.as_str())
                    || cid.starts_with(super::SERVICE_MAINT_PREFIX)
            });
        }
        let checks = def.checks.clone();
        self.services.insert(
            id.clone(),
            LocalSvc {
                def,
                source,
                record: record.clone(),
            },
        );
        // Checks carry copies of the service's name and tags.
        for c in self
            .checks
            .values_mut()
            .filter(|c| c.record.service_id == id)
        {
            c.record.service_name = record.service.clone();
            c.record.service_tags = record.tags.clone();
        }
        for c in checks {
            self.add_check(inner, c, source);
        }
    }

    /// Add or replace a check and start its runner. A re-registered check
    /// keeps its current status unless the definition gives one.
    pub fn add_check(&mut self, inner: &Arc<AgentInner>, mut def: CheckDefinition, source: Source) {
        let min = inner.cfg.min_interval;
        if def.is_interval_kind() && def.interval < min {
            tracing::warn!(
                "Check {:?} has interval below minimum of {min:?}: using {min:?}",
                def.id
            );
            def.interval = min;
        }
        let min = inner.cfg.min_deregister_after;
        if def
            .deregister_critical_service_after
            .is_some_and(|d| d < min)
        {
            tracing::warn!(
                "Check {:?} has deregister_critical_service_after below minimum of {min:?}: \
                 using {min:?}",
                def.id
            );
        }
        let service = self.services.get(&def.service_id).map(|s| &s.record);
        let mut record = check_record(&inner.cfg, &def, service);
        let previous = self.checks.remove(&def.id);
        if let (Some(prev), None) = (&previous, def.status) {
            record.status = prev.record.status;
            record.output = prev.record.output.clone();
        }
        let ttl_wake = Arc::new(tokio::sync::Notify::new());
        let (runner, ttl_timer, ttl_deadline) = match &def.kind {
            CheckKind::Ttl { ttl } => (
                None,
                Some(spawn_ttl(
                    Arc::downgrade(inner),
                    def.id.clone(),
                    ttl_wake.clone(),
                )),
                Some(Instant::now() + *ttl),
            ),
            CheckKind::Alias { service, node } => {
                let node = if node.is_empty() {
                    inner.cfg.node_name.clone()
                } else {
                    node.clone()
                };
                (
                    None,
                    Some(spawn_alias(
                        Arc::downgrade(inner),
                        def.id.clone(),
                        node,
                        service.clone(),
                    )),
                    None,
                )
            }
            CheckKind::Unset => (None, None, None),
            _ => (
                Some(checks::spawn_interval(
                    def.clone(),
                    inner.runner_ctx.clone(),
                    inner.results.clone(),
                )),
                None,
                None,
            ),
        };
        let critical_since = (record.status == Status::Critical).then(Instant::now);
        self.checks.insert(
            def.id.clone(),
            LocalCheck {
                def,
                source,
                record,
                _runner: runner,
                _ttl_timer: ttl_timer,
                ttl_deadline,
                ttl_wake,
                synced_output: previous.and_then(|p| p.synced_output),
                critical_since,
            },
        );
    }

    /// Add a maintenance check (critical, with the reason as notes).
    pub fn add_maintenance(
        &mut self,
        inner: &Arc<AgentInner>,
        id: &str,
        name: &str,
        service_id: &str,
        notes: String,
    ) {
        let service = self.services.get(service_id).map(|s| s.record.clone());
        let def = CheckDefinition {
            id: id.to_string(),
            name: name.to_string(),
            notes: notes.clone(),
            service_id: service_id.to_string(),
            status: Some(Status::Critical),
            ..CheckDefinition::default()
        };
        let mut record = check_record(&inner.cfg, &def, service.as_ref());
        record.definition = String::new();
        record.timeout_ns = 0;
        self.checks.insert(
            id.to_string(),
            LocalCheck {
                def,
                source: Source::Api,
                record,
                _runner: None,
                _ttl_timer: None,
                ttl_deadline: None,
                ttl_wake: Arc::new(tokio::sync::Notify::new()),
                synced_output: None,
                critical_since: None,
            },
        );
    }

    /// Fold a result into a check; returns true if the status changed.
    pub fn apply_result(&mut self, id: &str, result: CheckResult) -> bool {
        let Some(c) = self.checks.get_mut(id) else {
            return false;
        };
        let changed = c.record.status != result.status;
        if changed {
            c.critical_since = (result.status == Status::Critical).then(Instant::now);
            log_status_change(id, result.status, &result.output);
        }
        c.record.status = result.status;
        c.record.output = result.output;
        changed
    }
}

/// `Check "mem-util" is now critical` (Consul's line), with the first line
/// of the output that made it so; warning and critical at WARN.
fn log_status_change(id: &str, status: Status, output: &str) {
    let first = output.lines().next().unwrap_or("").trim();
    let status = status.as_str();
    if status == Status::Passing.as_str() {
        tracing::info!(output = first, "Check {id:?} is now {status}");
    } else {
        tracing::warn!(output = first, "Check {id:?} is now {status}");
    }
}

/// Fold runner results into the state; a status change syncs at once.
pub(crate) async fn results_loop(
    inner: Weak<AgentInner>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<(String, CheckResult)>,
) {
    while let Some((id, result)) = rx.recv().await {
        let Some(inner) = inner.upgrade() else { return };
        let changed = inner.lock_state().apply_result(&id, result);
        if changed {
            inner.sync_wake.notify_one();
        }
    }
}

/// The timer of one TTL check: critical with `TTL expired` once the
/// deadline passes without an update.
fn spawn_ttl(inner: Weak<AgentInner>, id: String, wake: Arc<tokio::sync::Notify>) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        loop {
            let deadline = {
                let Some(inner) = inner.upgrade() else { return };
                let st = inner.lock_state();
                let Some(c) = st.checks.get(&id) else { return };
                c.ttl_deadline
            };
            let Some(deadline) = deadline else { return };
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = wake.notified() => continue,
            }
            let Some(inner) = inner.upgrade() else { return };
            let expired = {
                let mut st = inner.lock_state();
                let Some(c) = st.checks.get_mut(&id) else {
                    return;
                };
                if c.ttl_deadline.is_some_and(|d| d <= Instant::now()) {
                    c.ttl_deadline = None;
                    let last = std::mem::take(&mut c.record.output);
                    let output = if last.is_empty() {
                        "TTL expired".to_string()
                    } else {
                        format!("TTL expired (last output before timeout follows): {last}")
                    };
                    Some(st.apply_result(
                        &id,
                        CheckResult {
                            status: Status::Critical,
                            output,
                        },
                    ))
                } else {
                    None
                }
            };
            match expired {
                Some(changed) => {
                    if changed {
                        inner.sync_wake.notify_one();
                    }
                    // Wait for the next update to arm the timer again.
                    wake.notified().await;
                }
                None => continue,
            }
        }
    }))
}

/// The health an alias check mirrors, from a view of the aliased node: the
/// worst status of the instance's checks and its node's checks; critical
/// if the instance does not exist.
fn alias_result(view: &NodeView, own_id: &str, node: &str, service_id: &str) -> CheckResult {
    let exists = view
        .node
        .as_ref()
        .is_some_and(|n| n.services.iter().any(|s| s.id == service_id));
    if !exists {
        return CheckResult {
            status: Status::Critical,
            output: format!("Service {service_id} could not be found on node {node}"),
        };
    }
    let worst = view
        .checks
        .iter()
        .filter(|c| c.check_id != own_id && (c.service_id.is_empty() || c.service_id == service_id))
        .map(|c| c.status)
        .max()
        .unwrap_or(Status::Passing);
    let output = match worst {
        Status::Passing => "All checks passing.".to_string(),
        Status::Warning => "At least one check is warning.".to_string(),
        Status::Critical => "At least one check is critical.".to_string(),
    };
    CheckResult {
        status: worst,
        output,
    }
}

/// How long one blocking read of an alias check waits.
const ALIAS_WAIT: Duration = Duration::from_secs(300);
/// Pause after a failed read of the aliased node (servers unreachable).
const ALIAS_RETRY: Duration = Duration::from_secs(3);

/// An alias check: mirror another instance's health, re-evaluated whenever
/// that node's checks or services change (a blocking read on the node).
fn spawn_alias(
    inner: Weak<AgentInner>,
    id: String,
    node: String,
    service_id: String,
) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let mut index = 0u64;
        let mut last: Option<CheckResult> = None;
        loop {
            let Some(strong) = inner.upgrade() else {
                return;
            };
            let store = strong.store.clone();
            let sender = strong.results.clone();
            drop(strong);
            let result = match store.node_view(&node, index, ALIAS_WAIT).await {
                Ok(view) => {
                    index = view.index;
                    alias_result(&view, &id, &node, &service_id)
                }
                Err(e) => {
                    index = 0;
                    tokio::time::sleep(ALIAS_RETRY).await;
                    CheckResult {
                        status: Status::Critical,
                        output: format!("Unable to read the aliased node's checks: {e}"),
                    }
                }
            };
            if last.as_ref() != Some(&result) {
                last = Some(result.clone());
                if sender.send((id.clone(), result)).is_err() {
                    return;
                }
            }
        }
    }))
}

/// Reap services whose check has been critical longer than its
/// `deregister_critical_service_after`.
pub(crate) async fn reaper_loop(inner: Weak<AgentInner>) {
    loop {
        let interval = match inner.upgrade() {
            Some(i) => i.cfg.reap_interval,
            None => return,
        };
        tokio::time::sleep(interval).await;
        let Some(inner) = inner.upgrade() else { return };
        // Service → the check that dooms it (one deregistration each).
        let doomed: BTreeMap<String, String> = {
            let st = inner.lock_state();
            st.checks
                .values()
                .filter_map(|c| {
                    let after = c
                        .def
                        .deregister_critical_service_after?
                        .max(inner.cfg.min_deregister_after);
                    let since = c.critical_since?;
                    (!c.record.service_id.is_empty() && since.elapsed() >= after)
                        .then(|| (c.record.service_id.clone(), c.record.check_id.clone()))
                })
                .collect()
        };
        if doomed.is_empty() {
            continue;
        }
        let agent = super::Agent {
            inner: inner.clone(),
        };
        for (id, check) in doomed {
            tracing::info!(
                "Check {check:?} for service {id:?} has been critical for too long \
                 (deregister_critical_service_after); deregistered service {id:?}"
            );
            if let Err(e) = agent.deregister_service(&id).await {
                tracing::warn!(service = %id, error = %e, "reaping failed");
            }
        }
    }
}

/// API-registered definitions as persisted.
#[derive(Serialize, Deserialize, Default)]
struct Persisted {
    services: Vec<ServiceDefinition>,
    checks: Vec<CheckDefinition>,
}

const PERSIST_FILE: &str = "agent-local.mpk";

/// Write the API-registered services and standalone checks (temp,
/// fsync, rename), off the async runtime; writes are serialised and each
/// takes the state as of its turn, so the newest state is the one left on
/// disk.
pub(crate) async fn persist(inner: &Arc<AgentInner>) {
    let Some(dir) = inner.cfg.persist_dir.clone() else {
        return;
    };
    let _turn = inner.persist_lock.lock().await;
    let data = {
        let st = inner.lock_state();
        Persisted {
            services: st
                .services
                .values()
                .filter(|s| s.source == Source::Api)
                .map(|s| ServiceDefinition {
                    checks: st
                        .checks
                        .values()
                        .filter(|c| c.record.service_id == s.def.id && c.source == Source::Api)
                        .map(|c| c.def.clone())
                        .collect(),
                    ..s.def.clone()
                })
                .collect(),
            checks: st
                .checks
                .values()
                .filter(|c| c.source == Source::Api && c.record.service_id.is_empty())
                .map(|c| c.def.clone())
                .collect(),
        }
    };
    let write = move || -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        let bytes = rmp_serde::to_vec_named(&data).map_err(std::io::Error::other)?;
        let tmp = dir.join(format!("{PERSIST_FILE}.tmp"));
        std::fs::write(&tmp, bytes)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, dir.join(PERSIST_FILE))
    };
    match tokio::task::spawn_blocking(write).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "could not persist agent services"),
        Err(e) => tracing::warn!(error = %e, "could not persist agent services"),
    }
}

/// Load persisted API definitions: services (with their checks) and
/// standalone checks.
pub(crate) fn load_persisted(cfg: &AgentConfig) -> (Vec<ServiceDefinition>, Vec<CheckDefinition>) {
    let Some(dir) = &cfg.persist_dir else {
        return (Vec::new(), Vec::new());
    };
    let Ok(bytes) = std::fs::read(dir.join(PERSIST_FILE)) else {
        return (Vec::new(), Vec::new());
    };
    match rmp_serde::from_slice::<Persisted>(&bytes) {
        Ok(p) => (p.services, p.checks),
        Err(e) => {
            tracing::warn!(error = %e, "ignoring unreadable persisted agent services");
            (Vec::new(), Vec::new())
        }
    }
}
