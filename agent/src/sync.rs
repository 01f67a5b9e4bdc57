//! Anti-entropy: keep the catalog's copy of this node equal to the local
//! state (consul-compat.md §12.4). A sync registers what is missing or
//! different, pushes status changes at once and output-only changes at
//! most once per `check_update_interval`, and deregisters catalog services
//! and checks on this node that the agent does not know.

use std::sync::Weak;
use std::time::Duration;

use tokio::time::Instant;

use super::{AgentError, AgentInner};
use muster_engine::Command;
use muster_engine::{Check, Node, Service, Status};

/// Checks the agent never removes from its node (maintained by the leader).
const KEEP_CHECKS: &[&str] = &[SERF_CHECK_ID];
/// The ID of the node liveness check (Consul's `serfHealth`).
pub const SERF_CHECK_ID: &str = "serfHealth";

/// A node's `serfHealth` check with `status` and Consul's output for it
/// (written by the agent for itself and by the leader's reconcile).
pub fn serf_check(node: &str, status: Status) -> Check {
    Check {
        node: node.to_string(),
        check_id: SERF_CHECK_ID.to_string(),
        name: "Serf Health Status".to_string(),
        status,
        output: match status {
            Status::Passing => "Agent alive and reachable",
            _ => "Agent not live or unreachable",
        }
        .to_string(),
        ..Check::default()
    }
}
/// Services the agent never removes (the servers' own service).
const KEEP_SERVICES: &[&str] = &["consul"];
/// Retry delay after a failed sync.
const RETRY: Duration = Duration::from_secs(15);

fn strip_service(s: &Service) -> Service {
    Service {
        create_index: 0,
        modify_index: 0,
        ..s.clone()
    }
}

fn strip_check(c: &Check) -> Check {
    Check {
        create_index: 0,
        modify_index: 0,
        ..c.clone()
    }
}

/// Run syncs: at start, on every local change, and every `ae_interval`
/// plus a random stagger; after a failure, again after 15 s.
pub(crate) async fn anti_entropy_loop(inner: Weak<AgentInner>) {
    let mut stop = match inner.upgrade() {
        Some(i) => i.stop.subscribe(),
        None => return,
    };
    loop {
        let Some(i) = inner.upgrade() else { return };
        let wait = match sync(&i).await {
            Ok(()) => {
                let base = i.cfg.ae_interval;
                let stagger = rand::random_range(0..=base.as_millis().max(1) as u64);
                base + Duration::from_millis(stagger)
            }
            Err(e) => {
                tracing::warn!(error = %e, "anti-entropy sync failed; retrying");
                RETRY
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = i.sync_wake.notified() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// One sync of the local state into the catalog.
pub(crate) async fn sync(inner: &AgentInner) -> Result<(), AgentError> {
    let _one_at_a_time = inner.sync_lock.lock().await;
    let cfg = &inner.cfg;
    let view = inner
        .store
        .node_view(&cfg.node_name, 0, Duration::ZERO)
        .await?;
    let catalog = view.node;
    let catalog_checks = view.checks;

    let node = Node {
        id: cfg.node_id.clone(),
        node: cfg.node_name.clone(),
        address: cfg.address.clone(),
        datacenter: cfg.datacenter.clone(),
        tagged_addresses: cfg.tagged_addresses.clone(),
        meta: cfg.node_meta.clone(),
        create_index: 0,
        modify_index: 0,
    };
    let node_ok = catalog.as_ref().is_some_and(|c| {
        Node {
            create_index: 0,
            modify_index: 0,
            ..c.node.clone()
        } == node
    });
    let catalog_services = catalog.map(|c| c.services).unwrap_or_default();

    let mut commands = Vec::new();
    // Per service ID ("" = node checks): the service to register, if it
    // changed, and the checks to register with it.
    let mut registers: std::collections::BTreeMap<String, (Option<Service>, Vec<Check>)> =
        std::collections::BTreeMap::new();
    let mut pushed_outputs = Vec::new();
    {
        let mut st = inner.lock_state();
        // Services.
        for (id, local) in st.services.iter_mut() {
            let existing = catalog_services.iter().find(|s| &s.id == id);
            if local.record.enable_tag_override {
                if let Some(e) = existing {
                    local.record.tags = e.tags.clone();
                }
            }
            let want = Service {
                node: cfg.node_name.clone(),
                ..strip_service(&local.record)
            };
            if existing.map(strip_service).as_ref() != Some(&want) {
                registers.entry(id.clone()).or_default().0 = Some(want);
            }
        }
        let tags: std::collections::BTreeMap<String, (String, Vec<String>)> = st
            .services
            .iter()
            .map(|(id, s)| {
                (
                    id.clone(),
                    (s.record.service.clone(), s.record.tags.clone()),
                )
            })
            .collect();
        // Checks.
        let now = Instant::now();
        for (id, local) in st.checks.iter_mut() {
            if let Some((name, t)) = tags.get(&local.record.service_id) {
                local.record.service_name = name.clone();
                local.record.service_tags = t.clone();
            }
            let want = strip_check(&local.record);
            let existing = catalog_checks
                .iter()
                .find(|c| &c.check_id == id)
                .map(strip_check);
            let push = match &existing {
                None => true,
                Some(e) if *e == want => false,
                Some(e) => {
                    let same_but_output = Check {
                        output: want.output.clone(),
                        ..e.clone()
                    } == want;
                    if same_but_output {
                        local.synced_output.as_ref().is_none_or(|(_, at)| {
                            now.duration_since(*at) >= cfg.check_update_interval
                        })
                    } else {
                        true
                    }
                }
            };
            if push {
                let mut check = want;
                if let Some(e) = &existing {
                    // An update that is not output-only and comes before
                    // the output interval keeps the catalog's output.
                    let output_due = local
                        .synced_output
                        .as_ref()
                        .is_none_or(|(_, at)| now.duration_since(*at) >= cfg.check_update_interval);
                    if !output_due && e.status == check.status {
                        check.output = e.output.clone();
                    }
                }
                if existing.as_ref().is_none_or(|e| e.output != check.output) {
                    pushed_outputs.push(id.clone());
                }
                // A check goes with its service's registration, so it never
                // reaches the catalog before the service it belongs to.
                registers
                    .entry(check.service_id.clone())
                    .or_default()
                    .1
                    .push(check);
            }
        }
        // The node's `serfHealth` check: sessions link to it by default.
        // Until gossip exists (membership is this one agent, alive while it
        // runs) the agent registers it itself, passing; with gossip the
        // leader's reconcile owns it and reports failures.
        if !catalog_checks.iter().any(|c| c.check_id == SERF_CHECK_ID) {
            registers
                .entry(String::new())
                .or_default()
                .1
                .push(serf_check(&cfg.node_name, Status::Passing));
        }
        for (_, (service, checks)) in std::mem::take(&mut registers) {
            commands.push(Command::CatalogRegister {
                node: node.clone(),
                skip_node_update: node_ok,
                service,
                checks,
            });
        }
        for id in &pushed_outputs {
            if let Some(c) = st.checks.get_mut(id) {
                c.synced_output = Some((c.record.output.clone(), now));
            }
        }
        // Catalog entries on this node the agent does not know.
        for s in &catalog_services {
            if !st.services.contains_key(&s.id) && !KEEP_SERVICES.contains(&s.id.as_str()) {
                commands.push(Command::CatalogDeregister {
                    node: cfg.node_name.clone(),
                    service_id: Some(s.id.clone()),
                    check_id: None,
                });
            }
        }
        for c in &catalog_checks {
            let owned_by_removed_service =
                !c.service_id.is_empty() && !st.services.contains_key(&c.service_id);
            if !st.checks.contains_key(&c.check_id)
                && !KEEP_CHECKS.contains(&c.check_id.as_str())
                && !owned_by_removed_service
            {
                commands.push(Command::CatalogDeregister {
                    node: cfg.node_name.clone(),
                    service_id: None,
                    check_id: Some(c.check_id.clone()),
                });
            }
        }
    }
    if !node_ok && commands.is_empty() {
        commands.push(Command::CatalogRegister {
            node,
            skip_node_update: false,
            service: None,
            checks: Vec::new(),
        });
    }
    if commands.is_empty() {
        return Ok(());
    }
    tracing::debug!(writes = commands.len(), "anti-entropy sync");
    let done = synced_lines(&commands);
    // Applied concurrently: the leader batches them into one log entry.
    inner.store.apply(commands).await?;
    for line in done {
        tracing::info!("{line}");
    }
    Ok(())
}

/// What a sync's commands did, in the words Consul's agent logs once they
/// are applied (`Synced service "web"`, `Synced check "service:web"`,
/// `Deregistered service "old"`); guides tell operators to look for them.
fn synced_lines(commands: &[Command]) -> Vec<String> {
    let mut lines = Vec::new();
    for c in commands {
        match c {
            Command::CatalogRegister {
                service, checks, ..
            } => {
                if let Some(s) = service {
                    lines.push(format!("Synced service {:?}", s.id));
                }
                for check in checks {
                    lines.push(format!("Synced check {:?}", check.check_id));
                }
                if service.is_none() && checks.is_empty() {
                    lines.push("Synced node info".to_string());
                }
            }
            Command::CatalogDeregister {
                service_id: Some(id),
                ..
            } => lines.push(format!("Deregistered service {id:?}")),
            Command::CatalogDeregister {
                check_id: Some(id), ..
            } => lines.push(format!("Deregistered check {id:?}")),
            _ => {}
        }
    }
    lines
}
