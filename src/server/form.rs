//! Forming the raft cluster: until this server belongs to one, join one
//! that another server already belongs to or, with `bootstrap_expect`,
//! initialise one once that many servers have met over gossip.

use std::collections::BTreeMap;
use std::sync::Arc;

use muster_engine::raft::RaftNode;
use muster_engine::Engine;
use muster_gossip::Gossip;

use super::cluster::{server_of, ClusterConfig, FORM_INTERVAL};

/// Until this server belongs to a raft cluster: join one another server
/// already belongs to, or, with `bootstrap_expect`, form one once that many
/// servers have met (the one with the lowest raft id initialises it with
/// all of them).
pub(super) async fn form_loop(gossip: Arc<Gossip>, engine: Engine, cfg: ClusterConfig) {
    loop {
        if engine.is_initialized().await {
            return;
        }
        tokio::time::sleep(FORM_INTERVAL).await;
        let servers: BTreeMap<u64, RaftNode> = gossip
            .members()
            .iter()
            .filter_map(|m| server_of(m, &cfg.datacenter))
            .collect();
        let mut any_initialized = false;
        for (id, node) in &servers {
            if *id == engine.raft_id() {
                continue;
            }
            let Ok(info) = engine.remote_info(&node.addr).await else {
                continue;
            };
            if info.initialized {
                any_initialized = true;
                let target = info.leader.unwrap_or_else(|| node.addr.clone());
                match engine.join(&target).await {
                    Ok(()) => {
                        tracing::info!(via = %target, "joined the raft cluster");
                        return;
                    }
                    Err(e) => tracing::debug!(error = %e, "raft join failed; retrying"),
                }
            }
        }
        let Some(expect) = cfg.bootstrap_expect else {
            continue;
        };
        if any_initialized || servers.len() < expect as usize {
            continue;
        }
        if servers.keys().next() != Some(&engine.raft_id()) {
            continue;
        }
        tracing::info!(
            servers = servers.len(),
            expect,
            "bootstrap_expect reached: initialising the raft cluster"
        );
        match engine.initialize(servers).await {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %e, "initialising the cluster failed; retrying"),
        }
    }
}
