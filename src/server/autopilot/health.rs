//! What autopilot knows of each server, shared by the leader's loop and
//! the HTTP API of this process: the configuration in force (the stored
//! one, else this server's configured values), each server's raft progress
//! (asked of it over RPC, as Consul's leader asks `Status.RaftStats`), its
//! health judged by `muster_api::autopilot::health::judge`, and since when
//! it has held that health.
//!
//! # Correctness
//! The state lives in one process-wide [`LOCAL`]: one agent runs per
//! process, and both the reconcile loop and the HTTP API's
//! `ClusterBackend` reach it without new wiring. It only remembers (stable
//! times, last stats, RPC links); what is stored in the log is never kept
//! here.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use muster_api::autopilot::{
    config, health, raft_stats_request, AutopilotConfiguration, AutopilotServer, NodeStatus,
    ServerStats,
};
use muster_engine::remote::Remote;
use muster_engine::{Engine, WatchSet};
use muster_gossip::{Member, MemberStatus};

use crate::server::cluster::AutopilotConfig;

/// How long the leader waits for a server's raft progress (Consul: half
/// its update interval); a server that does not answer is unhealthy.
const STATS_TIMEOUT: Duration = Duration::from_secs(1);

/// One server's remembered state.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// Its health when last judged.
    healthy: bool,
    /// When that health was first seen.
    since: SystemTime,
    /// Its last fetched stats (kept when a fetch fails, as Consul does).
    stats: ServerStats,
}

/// The process-wide autopilot state.
#[derive(Default)]
struct Local {
    /// This server's configured values (set once at start on a server).
    defaults: OnceLock<AutopilotConfiguration>,
    /// Server ID → what was last seen of it.
    seen: Mutex<HashMap<String, Seen>>,
    /// RPC address → a link to that server (kept: connections are reused).
    links: Mutex<HashMap<String, Arc<Remote>>>,
}

static LOCAL: LazyLock<Local> = LazyLock::new(Local::default);

/// Record this server's `autopilot` settings from its configuration files
/// (Consul's defaults for the keys muster does not read).
pub(crate) fn set_defaults(file: &AutopilotConfig) {
    let _ = LOCAL.defaults.set(AutopilotConfiguration {
        cleanup_dead_servers: file.cleanup_dead_servers,
        server_stabilization_time: file.stabilization,
        min_quorum: file.min_quorum,
        ..AutopilotConfiguration::default()
    });
}

/// This server's configured values, once recorded (`None` on a client).
pub(crate) fn defaults() -> Option<AutopilotConfiguration> {
    LOCAL.defaults.get().cloned()
}

/// The configuration in force: the stored one, else the configured values
/// (an unreadable stored one is logged and the configured values apply).
pub(crate) fn effective(engine: &Engine) -> AutopilotConfiguration {
    let fallback = || defaults().unwrap_or_default();
    match engine.object(config::KIND, config::ID, &mut WatchSet::new()) {
        Ok(r) => match r.value {
            Some(object) => AutopilotConfiguration::from_stored(&object).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "autopilot: using the configured values");
                fallback()
            }),
            None => fallback(),
        },
        Err(e) => {
            tracing::warn!(error = %e, "autopilot: reading the stored configuration failed");
            fallback()
        }
    }
}

/// Forget what this server saw as leader (a new leader starts afresh, as
/// Consul's does).
pub(crate) fn forget() {
    LOCAL
        .seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
}

/// The link to the server at `addr`.
fn link(addr: &str) -> Arc<Remote> {
    let mut links = LOCAL.links.lock().unwrap_or_else(PoisonError::into_inner);
    links
        .entry(addr.to_string())
        .or_insert_with(|| {
            let remote = Remote::new();
            remote.set_servers(vec![addr.to_string()]);
            Arc::new(remote)
        })
        .clone()
}

/// Ask the server at `addr` for its raft progress.
async fn fetch(addr: String) -> Option<ServerStats> {
    let remote = link(&addr);
    let answer = tokio::time::timeout(STATS_TIMEOUT, remote.http(raft_stats_request())).await;
    match answer {
        Ok(Ok(resp)) if resp.status() == hyper::StatusCode::OK => {
            serde_json::from_slice(resp.body()).ok()
        }
        Ok(Ok(resp)) => {
            tracing::debug!(server = %addr, status = %resp.status(), "autopilot: no raft stats");
            None
        }
        Ok(Err(e)) => {
            tracing::debug!(server = %addr, error = %e, "autopilot: no raft stats");
            None
        }
        Err(_) => None,
    }
}

/// The gossip status autopilot sees: a member that is not there has left.
fn node_status(member: Option<&Member>) -> NodeStatus {
    match member.map(|m| m.status) {
        Some(MemberStatus::Alive) => NodeStatus::Alive,
        Some(MemberStatus::Failed | MemberStatus::Leaving) => NodeStatus::Failed,
        Some(MemberStatus::Left) | None => NodeStatus::Left,
    }
}

/// Every server of the raft configuration, judged with `config`: its
/// gossip status from `members`, its raft progress fetched now (in
/// parallel, at most [`STATS_TIMEOUT`]), and since when it has been as
/// healthy as it is.
pub(crate) async fn servers(
    engine: &Engine,
    members: &[Member],
    config: &AutopilotConfiguration,
) -> Vec<AutopilotServer> {
    let (raft, _) = engine.raft_servers();
    let me = engine.raft_id();
    let member_of = |id: u64| {
        let id = id.to_string();
        members.iter().find(|m| m.tags.get("raft_id") == Some(&id))
    };
    let mut fetches = tokio::task::JoinSet::new();
    for s in &raft {
        if s.id != me && node_status(member_of(s.id)) != NodeStatus::Left {
            let (id, addr) = (s.id, s.node.addr.clone());
            fetches.spawn(async move { (id, fetch(addr).await) });
        }
    }
    let mut fetched: HashMap<u64, ServerStats> =
        HashMap::from([(me, ServerStats::of(&engine.status()))]);
    while let Some(done) = fetches.join_next().await {
        if let Ok((id, Some(stats))) = done {
            fetched.insert(id, stats);
        }
    }
    let leader_stats = raft
        .iter()
        .find(|s| s.leader)
        .and_then(|s| fetched.get(&s.id))
        .copied();
    let slack = engine.config().heartbeat;
    let now = SystemTime::now();
    let mut seen = LOCAL.seen.lock().unwrap_or_else(PoisonError::into_inner);
    let mut out = Vec::with_capacity(raft.len());
    for s in &raft {
        let member = member_of(s.id);
        let id = member
            .map(|m| m.id.clone())
            .unwrap_or_else(|| s.id.to_string());
        let name = member.map_or_else(|| s.node.name.clone(), |m| m.name.clone());
        let previous = seen.get(&id).copied();
        let reachable = fetched.contains_key(&s.id);
        let stats = fetched
            .get(&s.id)
            .copied()
            .or(previous.map(|p| p.stats))
            .unwrap_or_default();
        let build = member.and_then(|m| m.tags.get("build")).map(String::as_str);
        let meta = engine
            .catalog_node(&name, &mut WatchSet::new())
            .ok()
            .and_then(|r| r.value)
            .map(|n| n.node.meta)
            .unwrap_or_default();
        let mut server = AutopilotServer {
            id: id.clone(),
            name,
            address: s.node.addr.clone(),
            node_status: node_status(member),
            version: build
                .unwrap_or_default()
                .split(':')
                .next()
                .unwrap_or_default()
                .to_string(),
            leader: s.leader,
            voter: s.voter,
            stats,
            reachable,
            healthy: false,
            stable_since: now,
            meta,
        };
        server.healthy = health::judge(&server, leader_stats.as_ref(), config, slack);
        let since = match previous {
            Some(p) if p.healthy == server.healthy => p.since,
            _ => now,
        };
        server.stable_since = since;
        seen.insert(
            id,
            Seen {
                healthy: server.healthy,
                since,
                stats,
            },
        );
        out.push(server);
    }
    seen.retain(|id, _| out.iter().any(|s| s.id == *id));
    out
}
