//! The leader's reconcile of the gossip member list into the catalog:
//! every member a node with a `serfHealth` check (servers also with the
//! `consul` service), failed members critical, left and reaped members
//! deregistered, servers that left removed from raft. After each pass the
//! leader runs autopilot.

use std::collections::BTreeSet;
use std::sync::Arc;

use muster_agent::{serf_check, SERF_CHECK_ID};
use muster_engine::WatchSet;
use muster_engine::{Command, Engine, Node, Service, Status};
use muster_gossip::{Gossip, Member, MemberStatus};

use super::autopilot::Autopilot;
use super::cluster::{ClusterConfig, ROLE_SERVER};

/// On the leader: reconcile on every membership event and every
/// [`RECONCILE_INTERVAL`](super::cluster::RECONCILE_INTERVAL) (sooner when
/// autopilot's stabilization time is shorter), then let autopilot add and
/// remove servers. The config-file autopilot settings are recorded at once
/// (before the HTTP API serves), as the defaults of
/// `/v1/operator/autopilot/configuration`.
pub(super) fn reconcile_loop(
    gossip: Arc<Gossip>,
    engine: Engine,
    cfg: ClusterConfig,
) -> impl std::future::Future<Output = ()> {
    super::autopilot::health::set_defaults(&cfg.autopilot);
    reconcile_passes(gossip, engine, cfg)
}

async fn reconcile_passes(gossip: Arc<Gossip>, engine: Engine, cfg: ClusterConfig) {
    let mut events = gossip.subscribe();
    let mut pilot = Autopilot::default();
    loop {
        tokio::select! {
            ev = events.recv() => {
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) = ev {
                    return;
                }
            }
            () = tokio::time::sleep(super::autopilot::tick(&engine)) => {}
        }
        if engine.check_leader().is_err() {
            pilot.step_down();
            continue;
        }
        let members = gossip.members();
        if let Err(e) = reconcile(&engine, &members, &cfg.datacenter).await {
            tracing::warn!(error = %e, "reconciling members into the catalog failed");
        }
        pilot.run(&engine, &members, &cfg).await;
    }
}

/// Bring the catalog in line with the member list: alive members are nodes
/// with a passing `serfHealth` (servers also with the `consul` service),
/// failed ones get it critical, left and reaped ones are deregistered, and
/// servers that left are removed from raft.
async fn reconcile(engine: &Engine, members: &[Member], dc: &str) -> anyhow::Result<()> {
    let mut listed = BTreeSet::new();
    for m in members {
        if m.tags.get("dc").map(String::as_str) != Some(dc) {
            continue;
        }
        listed.insert(m.name.to_lowercase());
        let current = engine.catalog_node(&m.name, &mut WatchSet::new())?.value;
        let checks = engine.health_node(&m.name, &mut WatchSet::new())?.value;
        let serf = checks.iter().find(|c| c.check_id == SERF_CHECK_ID);
        match m.status {
            MemberStatus::Alive | MemberStatus::Failed => {
                let want = if m.status == MemberStatus::Alive {
                    Status::Passing
                } else {
                    Status::Critical
                };
                let is_server = m.tags.get("role").map(String::as_str) == Some(ROLE_SERVER);
                let has_consul = current
                    .as_ref()
                    .is_some_and(|c| c.services.iter().any(|s| s.id == "consul"));
                if serf.is_some_and(|c| c.status == want) && (!is_server || has_consul) {
                    continue;
                }
                let service = (is_server && !has_consul).then(|| Service {
                    id: "consul".to_string(),
                    service: "consul".to_string(),
                    port: m
                        .tags
                        .get("port")
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(8300),
                    ..Service::default()
                });
                let node = Node {
                    id: m.id.clone(),
                    node: m.name.clone(),
                    address: m.addr.ip().to_string(),
                    datacenter: dc.to_string(),
                    ..Node::default()
                };
                tracing::info!(member = %m.name, status = m.status.as_str(), "reconciling member");
                engine
                    .propose(Command::CatalogRegister {
                        node,
                        skip_node_update: current.is_some(),
                        service,
                        checks: vec![serf_check(&m.name, want)],
                    })
                    .await?;
            }
            MemberStatus::Left => {
                if current.is_some() {
                    tracing::info!(member = %m.name, "member left: deregistering its node");
                    deregister(engine, &m.name).await?;
                }
                remove_from_raft(engine, m).await;
            }
            MemberStatus::Leaving => {}
        }
    }
    // Reaped members: nodes with a serfHealth check no member lists.
    for node in engine.catalog_nodes(&mut WatchSet::new())?.value {
        if listed.contains(&node.node.to_lowercase()) {
            continue;
        }
        let checks = engine.health_node(&node.node, &mut WatchSet::new())?.value;
        if checks.iter().any(|c| c.check_id == SERF_CHECK_ID) {
            tracing::info!(member = %node.node, "member reaped: deregistering its node");
            deregister(engine, &node.node).await?;
        }
    }
    Ok(())
}

async fn deregister(engine: &Engine, node: &str) -> anyhow::Result<()> {
    engine
        .propose(Command::CatalogDeregister {
            node: node.to_string(),
            service_id: None,
            check_id: None,
        })
        .await?;
    Ok(())
}

/// A server that left gracefully leaves the raft configuration too.
async fn remove_from_raft(engine: &Engine, m: &Member) {
    let Some(id) = m.tags.get("raft_id").and_then(|i| i.parse::<u64>().ok()) else {
        return;
    };
    let (servers, _) = engine.raft_servers();
    if id != engine.raft_id() && servers.iter().any(|s| s.id == id) {
        tracing::info!(member = %m.name, id, "server left: removing it from raft");
        if let Err(e) = engine.remove_server(id).await {
            tracing::warn!(error = %e, "removing a departed server from raft failed");
        }
    }
}
