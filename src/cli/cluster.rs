//! The agent's part in the cluster: LAN gossip (membership, failure
//! detection, encryption), joining other agents with retry and backoff,
//! forming a raft cluster (`bootstrap_expect`) or joining an existing one,
//! and the leader's reconcile of the member list into the catalog (each
//! member a node with a `serfHealth` check; left and reaped members
//! deregistered; servers that left removed from raft).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use muster_api::cluster::{
    ClusterBackend, KeyringOp, KeyringReply, MemberInfo, MemberStatusCode, PeerRef,
    RaftConfiguration, RaftServer as ApiRaftServer,
};
use muster_api::BoxFuture;
use muster_engine::agent::{serf_check, SERF_CHECK_ID};
use muster_engine::raft::RaftNode;
use muster_engine::{Command, Engine, Node, Service, Status};
use muster_gossip::{Gossip, GossipConfig, Keyring, Member, MemberStatus};
use tokio::task::JoinHandle;

/// Tag values of the `role` tag (Consul's).
pub(crate) const ROLE_SERVER: &str = "consul";
/// How often the leader reconciles even without membership events.
const RECONCILE_INTERVAL: Duration = Duration::from_secs(5);
/// How often an uninitialised server looks for a cluster to form or join.
const FORM_INTERVAL: Duration = Duration::from_millis(500);
/// Longest wait between join attempts.
const MAX_JOIN_BACKOFF: Duration = Duration::from_secs(30);
/// The LAN gossip port when an address has none.
const DEFAULT_SERF_LAN_PORT: u16 = 8301;

/// What the cluster layer needs from the agent's configuration.
#[derive(Debug, Clone)]
pub(crate) struct ClusterConfig {
    pub node_name: String,
    /// The node's UUID.
    pub node_id: String,
    pub datacenter: String,
    pub bind: IpAddr,
    pub advertise: IpAddr,
    pub serf_lan_port: u16,
    pub server_port: u16,
    /// `bootstrap_expect` when above 1.
    pub bootstrap_expect: Option<u32>,
    /// `-join` / `start_join` and `-retry-join` / `retry_join` addresses.
    pub join: Vec<String>,
    /// `encrypt`: the gossip key (base64).
    pub encrypt: Option<String>,
    /// `encrypt_verify_incoming` / `encrypt_verify_outgoing`.
    pub verify_incoming: bool,
    pub verify_outgoing: bool,
    /// Where the keyring persists (`data_dir/serf/local.keyring`), not with
    /// `-dev`.
    pub keyring_path: Option<PathBuf>,
    /// Where the addresses of known members persist
    /// (`data_dir/serf/peers.json`), so a restarted agent rejoins them as
    /// Consul's serf snapshot does; not with `-dev`.
    pub peers_path: Option<PathBuf>,
    /// muster's version, gossiped as the `build` tag.
    pub version: String,
}

/// The running cluster layer.
pub(crate) struct Cluster {
    pub gossip: Arc<Gossip>,
    tasks: Vec<JoinHandle<()>>,
}

impl Cluster {
    /// Start gossip, the join loop and (servers) the form/join and
    /// reconcile loops.
    pub async fn start(cfg: ClusterConfig, engine: Engine) -> anyhow::Result<Cluster> {
        let bind = SocketAddr::new(cfg.bind, cfg.serf_lan_port);
        let mut gcfg = GossipConfig::lan(cfg.node_name.clone(), cfg.node_id.clone(), bind);
        gcfg.advertise = Some(SocketAddr::new(cfg.advertise, cfg.serf_lan_port));
        gcfg.tags = BTreeMap::from([
            ("role".to_string(), ROLE_SERVER.to_string()),
            ("dc".to_string(), cfg.datacenter.clone()),
            ("id".to_string(), cfg.node_id.clone()),
            ("raft_id".to_string(), engine.raft_id().to_string()),
            ("port".to_string(), cfg.server_port.to_string()),
            ("build".to_string(), cfg.version.clone()),
            ("vsn".to_string(), "2".to_string()),
        ]);
        if let Some(key) = &cfg.encrypt {
            gcfg.keyring =
                Some(Keyring::new(key).map_err(|e| anyhow::anyhow!("Error: encrypt: {e}"))?);
        }
        gcfg.encrypt_verify_incoming = cfg.verify_incoming;
        gcfg.encrypt_verify_outgoing = cfg.verify_outgoing;
        gcfg.keyring_path = cfg.keyring_path.clone();
        let gossip = Arc::new(Gossip::start(gcfg).await.map_err(|e| {
            anyhow::anyhow!(
                "Error: cannot start LAN gossip on {bind}: {e} (use -serf-lan-port to pick another port)"
            )
        })?);
        let mut tasks = Vec::new();
        let mut join = cfg.join.clone();
        if let Some(path) = &cfg.peers_path {
            join.extend(load_peers(path));
        }
        let own = gossip.advertise_addr().to_string();
        join.retain(|a| *a != own);
        join.dedup();
        if !join.is_empty() {
            tasks.push(tokio::spawn(join_loop(gossip.clone(), join)));
        }
        if let Some(path) = cfg.peers_path.clone() {
            tasks.push(tokio::spawn(save_peers_loop(gossip.clone(), path)));
        }
        tasks.push(tokio::spawn(form_loop(
            gossip.clone(),
            engine.clone(),
            cfg.clone(),
        )));
        tasks.push(tokio::spawn(reconcile_loop(gossip.clone(), engine, cfg)));
        Ok(Cluster { gossip, tasks })
    }

    /// Stop: leave gracefully first if asked (others see `left`, not
    /// `failed`).
    pub async fn stop(self, leave: bool) {
        for t in &self.tasks {
            t.abort();
        }
        if leave {
            if let Err(e) = self.gossip.leave(Duration::from_secs(5)).await {
                tracing::warn!(error = %e, "graceful leave failed");
            }
        }
        self.gossip.shutdown().await;
    }
}

/// Resolve `host[:port]` (default port 8301).
async fn resolve(addr: &str) -> Vec<SocketAddr> {
    let with_port = if addr.parse::<SocketAddr>().is_ok()
        || addr
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.contains(':') && p.parse::<u16>().is_ok())
    {
        addr.to_string()
    } else if addr.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6()) {
        format!("[{addr}]:{DEFAULT_SERF_LAN_PORT}")
    } else {
        format!("{addr}:{DEFAULT_SERF_LAN_PORT}")
    };
    match tokio::net::lookup_host(with_port.clone()).await {
        Ok(addrs) => addrs.collect(),
        Err(e) => {
            tracing::warn!(addr = %addr, error = %e, "cannot resolve join address");
            Vec::new()
        }
    }
}

/// Join at least one of `addrs`, retrying with backoff (1 s doubling to
/// 30 s) until one answers.
async fn join_loop(gossip: Arc<Gossip>, addrs: Vec<String>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let mut resolved = Vec::new();
        for a in &addrs {
            resolved.extend(resolve(a).await);
        }
        match gossip.join(&resolved).await {
            Ok(n) => {
                tracing::info!(contacted = n, "joined the LAN pool");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "join failed; retrying");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_JOIN_BACKOFF);
    }
}

/// The member addresses saved by a previous run (none if unreadable).
fn load_peers(path: &std::path::Path) -> Vec<String> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<String>>(&b).ok())
        .unwrap_or_default()
}

/// Keep the addresses of alive members on disk (on every membership
/// event), for the next start to rejoin.
async fn save_peers_loop(gossip: Arc<Gossip>, path: PathBuf) {
    let mut events = gossip.subscribe();
    let mut saved: Vec<String> = Vec::new();
    loop {
        let own = gossip.advertise_addr();
        let mut peers: Vec<String> = gossip
            .members()
            .iter()
            .filter(|m| m.status == MemberStatus::Alive && m.addr != own)
            .map(|m| m.addr.to_string())
            .collect();
        peers.sort();
        if !peers.is_empty() && peers != saved {
            let write = || -> std::io::Result<()> {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, serde_json::to_vec(&peers).unwrap_or_default())?;
                std::fs::rename(&tmp, &path)
            };
            match write() {
                Ok(()) => saved = peers,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot save known members")
                }
            }
        }
        tokio::select! {
            ev = events.recv() => {
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) = ev {
                    return;
                }
            }
            () = tokio::time::sleep(RECONCILE_INTERVAL) => {}
        }
    }
}

/// A server member's raft identity from its tags.
fn server_of(m: &Member, dc: &str) -> Option<(u64, RaftNode)> {
    if m.status != MemberStatus::Alive
        || m.tags.get("role").map(String::as_str) != Some(ROLE_SERVER)
        || m.tags.get("dc").map(String::as_str) != Some(dc)
    {
        return None;
    }
    let id = m.tags.get("raft_id")?.parse().ok()?;
    let port: u16 = m.tags.get("port")?.parse().ok()?;
    Some((
        id,
        RaftNode {
            name: m.name.clone(),
            addr: SocketAddr::new(m.addr.ip(), port).to_string(),
        },
    ))
}

/// Until this server belongs to a raft cluster: join one another server
/// already belongs to, or, with `bootstrap_expect`, form one once that many
/// servers have met (the one with the lowest raft id initialises it with
/// all of them).
async fn form_loop(gossip: Arc<Gossip>, engine: Engine, cfg: ClusterConfig) {
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

/// On the leader: reconcile on every membership event and every
/// [`RECONCILE_INTERVAL`].
async fn reconcile_loop(gossip: Arc<Gossip>, engine: Engine, cfg: ClusterConfig) {
    let mut events = gossip.subscribe();
    loop {
        tokio::select! {
            ev = events.recv() => {
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) = ev {
                    return;
                }
            }
            () = tokio::time::sleep(RECONCILE_INTERVAL) => {}
        }
        if engine.check_leader().is_err() {
            continue;
        }
        if let Err(e) = reconcile(&engine, &gossip.members(), &cfg.datacenter).await {
            tracing::warn!(error = %e, "reconciling members into the catalog failed");
        }
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
        let current = engine.catalog_node(&m.name)?.value;
        let checks = engine.health_node(&m.name)?.value;
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
    for node in engine.catalog_nodes()?.value {
        if listed.contains(&node.node.to_lowercase()) {
            continue;
        }
        let checks = engine.health_node(&node.node)?.value;
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

/// The HTTP API's view of the cluster (`/v1/agent/members`, join, leave,
/// force-leave, `/v1/operator/raft/*`, `/v1/operator/keyring`).
pub(crate) struct ClusterApi {
    pub gossip: Arc<Gossip>,
    pub engine: Engine,
    /// Notified after a `leave`: the agent shuts down.
    pub shutdown: Arc<tokio::sync::Notify>,
}

fn status_code(s: MemberStatus) -> MemberStatusCode {
    match s {
        MemberStatus::Alive => MemberStatusCode::Alive,
        MemberStatus::Leaving => MemberStatusCode::Leaving,
        MemberStatus::Left => MemberStatusCode::Left,
        MemberStatus::Failed => MemberStatusCode::Failed,
    }
}

impl ClusterApi {
    /// The node UUID gossip knows for a raft id (the `ID` Consul shows),
    /// or the raft id itself.
    fn server_id(&self, raft_id: u64) -> String {
        let id = raft_id.to_string();
        self.gossip
            .members()
            .into_iter()
            .find(|m| m.tags.get("raft_id") == Some(&id))
            .map(|m| m.id)
            .unwrap_or(id)
    }
}

impl ClusterBackend for ClusterApi {
    fn members(&self, wan: bool) -> Vec<MemberInfo> {
        if wan {
            return Vec::new();
        }
        self.gossip
            .members()
            .into_iter()
            .map(|m| MemberInfo {
                name: m.name,
                addr: m.addr.ip().to_string(),
                port: m.addr.port(),
                tags: m.tags,
                status: status_code(m.status),
            })
            .collect()
    }

    fn join(&self, addrs: Vec<String>, wan: bool) -> BoxFuture<'_, Result<usize, String>> {
        Box::pin(async move {
            if wan {
                return Err("WAN gossip is not supported yet".to_string());
            }
            let mut resolved = Vec::new();
            for a in &addrs {
                resolved.extend(resolve(a).await);
            }
            self.gossip.join(&resolved).await.map_err(|e| e.to_string())
        })
    }

    fn leave(&self) -> BoxFuture<'_, Result<(), String>> {
        let gossip = self.gossip.clone();
        let shutdown = self.shutdown.clone();
        Box::pin(async move {
            // Spawned: a dropped request must not cut the leave short.
            let done = tokio::spawn(async move {
                let r = gossip.leave(Duration::from_secs(5)).await;
                shutdown.notify_one();
                r
            });
            match done.await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    fn force_leave(
        &self,
        node: String,
        prune: bool,
        wan: bool,
    ) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            if wan {
                return Err("WAN gossip is not supported yet".to_string());
            }
            self.gossip
                .force_leave(&node, prune)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn raft_configuration(&self) -> BoxFuture<'_, Result<RaftConfiguration, String>> {
        Box::pin(async move {
            let (servers, index) = self.engine.raft_servers();
            Ok(RaftConfiguration {
                servers: servers
                    .into_iter()
                    .map(|s| {
                        ApiRaftServer::new(
                            self.server_id(s.id),
                            s.node.name,
                            s.node.addr,
                            s.leader,
                            s.voter,
                        )
                    })
                    .collect(),
                index,
            })
        })
    }

    fn remove_raft_peer(&self, by: PeerRef) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let (servers, _) = self.engine.raft_servers();
            let found = servers.iter().find(|s| match &by {
                PeerRef::Id(id) => *id == s.id.to_string() || *id == self.server_id(s.id),
                PeerRef::Address(addr) => *addr == s.node.addr,
            });
            let Some(server) = found else {
                return Err(match by {
                    PeerRef::Id(id) => format!("id {id:?} was not found in the Raft configuration"),
                    PeerRef::Address(a) => {
                        format!("address {a:?} was not found in the Raft configuration")
                    }
                });
            };
            self.engine
                .remove_server(server.id)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn keyring(&self, op: KeyringOp) -> BoxFuture<'_, Result<Vec<KeyringReply>, String>> {
        Box::pin(async move {
            let g = &self.gossip;
            match op {
                KeyringOp::List => {
                    let keys = g.list_keys();
                    let Some(primary) = keys.first().cloned() else {
                        return Err("gossip encryption is not enabled (no keyring)".to_string());
                    };
                    return Ok(vec![KeyringReply::local(false, &keys, &primary)]);
                }
                KeyringOp::Install(k) => g.install_key(&k),
                KeyringOp::Use(k) => g.use_key(&k),
                KeyringOp::Remove(k) => g.remove_key(&k),
            }
            .map_err(|e| e.to_string())?;
            Ok(Vec::new())
        })
    }
}
