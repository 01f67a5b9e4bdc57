//! Autopilot, as Consul's leader runs it: alive servers missing from raft
//! are added back (caught up as learners first), and servers failed for
//! longer than `server_stabilization_time` are removed, never so many that
//! quorum would be at risk. The settings are the configuration an operator
//! stored (`/v1/operator/autopilot/configuration`), else this server's
//! `autopilot` config-file block; `health.rs` keeps each server's health
//! for `/v1/operator/autopilot/health|state`.

pub(crate) mod health;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use muster_engine::raft::RaftNode;
use muster_engine::Engine;
use muster_gossip::{Member, MemberStatus};

use super::cluster::{server_of, ClusterConfig, ADD_SERVER_TIMEOUT, ROLE_SERVER};

/// How often the leader reconciles and runs autopilot: every
/// [`RECONCILE_INTERVAL`](super::cluster::RECONCILE_INTERVAL), sooner when
/// the stabilization time in force is shorter (but not below 500 ms).
pub(super) fn tick(engine: &Engine) -> std::time::Duration {
    super::cluster::RECONCILE_INTERVAL
        .min(health::effective(engine).server_stabilization_time)
        .max(std::time::Duration::from_millis(500))
}

/// The leader's server management (Consul's autopilot): alive servers
/// missing from raft are added (a restarted server that was pruned comes
/// back), and servers failed for longer than the stabilization time are
/// removed, never so many that quorum would be at risk.
#[derive(Default)]
pub(super) struct Autopilot {
    /// Raft id → when this leader first saw the server failed.
    failed_since: std::collections::HashMap<u64, tokio::time::Instant>,
    /// Raft ids being added (an add waits for the server to catch up).
    adding: Arc<std::sync::Mutex<BTreeSet<u64>>>,
    /// This server ran the last pass as the leader.
    leading: bool,
}

impl Autopilot {
    /// This server lost (or never had) leadership: what it saw as leader
    /// no longer counts.
    pub(super) fn step_down(&mut self) {
        self.leading = false;
        self.failed_since.clear();
    }

    /// One pass on the leader: refresh every server's health, add alive
    /// servers missing from raft, and remove dead ones if the configuration
    /// in force says so.
    pub(super) async fn run(&mut self, engine: &Engine, members: &[Member], cfg: &ClusterConfig) {
        if !self.leading {
            // A new leader judges every server afresh, as Consul's does.
            health::forget();
            self.leading = true;
        }
        let ap = health::effective(engine);
        let judged = health::servers(engine, members, &ap).await;
        // Consul's `consul.autopilot.healthy` and `failure_tolerance`.
        let summary = muster_api::autopilot::health::ClusterHealth::new(judged);
        metrics::gauge!("consul.autopilot.healthy").set(if summary.healthy { 1.0 } else { 0.0 });
        #[allow(clippy::cast_precision_loss)] // a handful of servers
        metrics::gauge!("consul.autopilot.failure_tolerance").set(summary.failure_tolerance as f64);
        let (servers, _) = engine.raft_servers();
        let mut voters: BTreeSet<u64> = servers.iter().filter(|s| s.voter).map(|s| s.id).collect();
        let now = tokio::time::Instant::now();
        let mut failed = BTreeMap::new();
        for m in members {
            if m.tags.get("role").map(String::as_str) != Some(ROLE_SERVER)
                || m.tags.get("dc") != Some(&cfg.datacenter)
            {
                continue;
            }
            let Some(id) = m.tags.get("raft_id").and_then(|i| i.parse::<u64>().ok()) else {
                continue;
            };
            match m.status {
                MemberStatus::Failed => {
                    let since = *self.failed_since.entry(id).or_insert(now);
                    failed.insert(id, (m.name.clone(), now - since));
                }
                MemberStatus::Alive if !servers.iter().any(|s| s.id == id) => {
                    if let Some((_, node)) = server_of(m, &cfg.datacenter) {
                        self.add(engine, id, node);
                    }
                }
                _ => {}
            }
        }
        self.failed_since.retain(|id, _| failed.contains_key(id));
        if !ap.cleanup_dead_servers {
            return;
        }
        let failed_voters = failed.keys().filter(|id| voters.contains(id)).count();
        for (id, (name, down_for)) in failed {
            if !voters.contains(&id)
                || id == engine.raft_id()
                || down_for < ap.server_stabilization_time
            {
                continue;
            }
            if failed_voters * 2 >= voters.len() {
                tracing::warn!(
                    failed = failed_voters,
                    voters = voters.len(),
                    "autopilot: not removing dead servers: too many have failed to do it safely"
                );
                return;
            }
            if voters.len() <= ap.min_quorum as usize {
                return;
            }
            tracing::info!(member = %name, id, down_for = ?down_for, "autopilot: removing dead server");
            match engine.remove_server(id).await {
                Ok(()) => {
                    voters.remove(&id);
                }
                Err(e) => tracing::warn!(error = %e, "autopilot: removing a dead server failed"),
            }
        }
    }

    /// Add server `id` in the background (the add waits for it to catch
    /// up), once at a time per server.
    fn add(&self, engine: &Engine, id: u64, node: RaftNode) {
        {
            let mut adding = self
                .adding
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !adding.insert(id) {
                return;
            }
        }
        let (engine, adding) = (engine.clone(), self.adding.clone());
        tokio::spawn(async move {
            tracing::info!(id, node = %node, "autopilot: adding alive server missing from raft");
            // Bounded, so a stuck add cannot keep this server from being
            // tried again.
            match tokio::time::timeout(ADD_SERVER_TIMEOUT, engine.add_server(id, node)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "autopilot: adding a server failed"),
                Err(_) => tracing::warn!(id, "autopilot: adding a server timed out; will retry"),
            }
            adding
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&id);
        });
    }
}
