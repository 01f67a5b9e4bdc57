//! The agent's part in the cluster: LAN (and on servers WAN) gossip
//! (membership, failure detection, encryption), joining other agents with
//! retry and backoff, the known-members file, and on a client agent the
//! list of servers to forward to. It starts the server's own loops:
//! forming the raft cluster (`form.rs`) and the leader's reconcile and
//! autopilot (`reconcile.rs`, `autopilot.rs`).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use muster_engine::raft::RaftNode;
use muster_engine::remote::Remote;
use muster_engine::Engine;
use muster_gossip::{Gossip, GossipConfig, Keyring, Member, MemberStatus};
use tokio::task::JoinHandle;

/// Tag values of the `role` tag (Consul's).
pub(crate) const ROLE_SERVER: &str = "consul";
pub(crate) const ROLE_CLIENT: &str = "node";
/// How often the leader reconciles even without membership events.
pub(super) const RECONCILE_INTERVAL: Duration = Duration::from_secs(5);
/// How often an uninitialised server looks for a cluster to form or join.
pub(super) const FORM_INTERVAL: Duration = Duration::from_millis(500);
/// How long autopilot waits for a returning server to catch up and become
/// a voter before it tries again.
pub(super) const ADD_SERVER_TIMEOUT: Duration = Duration::from_secs(60);
/// The LAN gossip port when an address has none.
pub(crate) const DEFAULT_SERF_LAN_PORT: u16 = 8301;
/// The WAN gossip port when an address has none.
pub(crate) const DEFAULT_SERF_WAN_PORT: u16 = 8302;

fn gossip_pool(default_port: u16) -> &'static str {
    if default_port == DEFAULT_SERF_WAN_PORT {
        "WAN"
    } else {
        "LAN"
    }
}

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
    /// WAN gossip port (servers).
    pub serf_wan_port: u16,
    /// Servers of other datacenters to join over WAN gossip.
    pub join_wan: JoinPlan,
    pub server_port: u16,
    /// `bootstrap_expect` when above 1.
    pub bootstrap_expect: Option<u32>,
    /// Agents to join over LAN gossip.
    pub join: JoinPlan,
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
    /// Dead-server cleanup on the leader.
    pub autopilot: AutopilotConfig,
}

/// Whom an agent joins in one pool, and how: Consul's `start_join`
/// (once, at start; no one answering stops the agent) and `retry_join`
/// (until one answers).
#[derive(Debug, Clone, Default)]
pub(crate) struct JoinPlan {
    /// `-join` / `start_join` (`-join-wan` / `start_join_wan`).
    pub start: Vec<String>,
    /// `-retry-join` / `retry_join` (`-retry-join-wan` / `retry_join_wan`).
    pub retry: Vec<String>,
    /// `retry_interval`: the longest wait between attempts (the first
    /// retries come sooner: 1 s, doubling).
    pub retry_interval: Duration,
    /// `retry_max`: attempts before the agent gives up and exits (0 =
    /// forever).
    pub retry_max: u32,
}

/// `autopilot` settings the leader acts on.
#[derive(Debug, Clone)]
pub(crate) struct AutopilotConfig {
    /// `cleanup_dead_servers`.
    pub cleanup_dead_servers: bool,
    /// `server_stabilization_time`: how long a server stays failed before
    /// it is removed from raft.
    pub stabilization: Duration,
    /// `min_quorum`: never prune below this many voters.
    pub min_quorum: u32,
}

/// The running cluster layer.
pub(crate) struct Cluster {
    pub gossip: Arc<Gossip>,
    /// The WAN pool (servers of every datacenter), on servers.
    pub wan: Option<Arc<Gossip>>,
    tasks: Vec<JoinHandle<()>>,
    /// Set when the cluster layer cannot go on and the agent must exit
    /// (retry_join exhausted, this node's name taken).
    fatal: tokio::sync::watch::Receiver<Option<String>>,
}

/// What this agent is in the cluster, and so what answers its catalog, KV
/// and DNS questions.
#[derive(Clone)]
pub(crate) enum Role {
    /// A server with its engine.
    Server(Engine),
    /// A client agent and its link to the servers.
    Client(Arc<Remote>),
}

impl Cluster {
    /// Start gossip and the join loop, then the form/join and reconcile
    /// loops on a server or the server-list loop on a client.
    pub async fn start(cfg: ClusterConfig, role: Role) -> anyhow::Result<Cluster> {
        let mut tags = BTreeMap::from([
            ("dc".to_string(), cfg.datacenter.clone()),
            ("id".to_string(), cfg.node_id.clone()),
            ("build".to_string(), muster_engine::build_tag()),
            ("vsn".to_string(), "2".to_string()),
        ]);
        match &role {
            Role::Server(engine) => tags.extend([
                ("role".to_string(), ROLE_SERVER.to_string()),
                ("raft_id".to_string(), engine.raft_id().to_string()),
                ("port".to_string(), cfg.server_port.to_string()),
                (
                    super::wan::WAN_JOIN_PORT_TAG.to_string(),
                    cfg.serf_wan_port.to_string(),
                ),
            ]),
            Role::Client(_) => tags.extend([("role".to_string(), ROLE_CLIENT.to_string())]),
        }
        let gossip = start_pool(&cfg, false, tags.clone()).await?;
        let (fatal_tx, fatal) = tokio::sync::watch::channel(None);
        let mut tasks = Vec::new();
        start_join(&gossip, &cfg.join.start, DEFAULT_SERF_LAN_PORT).await?;
        let mut retry = cfg.join.retry.clone();
        if let Some(path) = &cfg.peers_path {
            retry.extend(load_peers(path));
        }
        let own = gossip.advertise_addr().to_string();
        retry.retain(|a| *a != own);
        retry.dedup();
        if !retry.is_empty() {
            tasks.push(tokio::spawn(retry_join(
                gossip.clone(),
                JoinPlan {
                    retry,
                    ..cfg.join.clone()
                },
                DEFAULT_SERF_LAN_PORT,
                fatal_tx.clone(),
            )));
        }
        if let Some(path) = cfg.peers_path.clone() {
            tasks.push(tokio::spawn(save_peers_loop(gossip.clone(), path)));
        }
        let mut wan = None;
        if let Role::Server(_) = &role {
            let pool = start_pool(&cfg, true, tags.clone()).await?;
            let wan_port = pool.advertise_addr().port().to_string();
            if tags.get(super::wan::WAN_JOIN_PORT_TAG) != Some(&wan_port) {
                // Bound to port 0: advertise the port it got.
                let mut tags = tags;
                tags.insert(super::wan::WAN_JOIN_PORT_TAG.to_string(), wan_port);
                gossip.set_tags(tags).await?;
            }
            let own = pool.advertise_addr().to_string();
            let mut plan = cfg.join_wan.clone();
            let wan_peers = cfg.peers_path.as_deref().map(wan_peers_path);
            if let Some(path) = &wan_peers {
                plan.retry.extend(load_peers(path));
            }
            plan.start.retain(|a| *a != own);
            plan.retry.retain(|a| *a != own);
            plan.retry.dedup();
            start_join(&pool, &plan.start, DEFAULT_SERF_WAN_PORT).await?;
            if !plan.retry.is_empty() {
                tasks.push(tokio::spawn(retry_join(
                    pool.clone(),
                    plan,
                    DEFAULT_SERF_WAN_PORT,
                    fatal_tx.clone(),
                )));
            }
            if let Some(path) = wan_peers {
                tasks.push(tokio::spawn(save_peers_loop(pool.clone(), path)));
            }
            if std::env::var_os("NOFLOOD").is_none() {
                tasks.push(tokio::spawn(super::wan::flood_join_loop(
                    gossip.clone(),
                    pool.clone(),
                    cfg.datacenter.clone(),
                )));
            }
            wan = Some(pool);
        }
        match role {
            Role::Server(engine) => {
                tasks.push(tokio::spawn(super::form::form_loop(
                    gossip.clone(),
                    engine.clone(),
                    cfg.clone(),
                )));
                tasks.push(tokio::spawn(super::reconcile::reconcile_loop(
                    gossip.clone(),
                    engine,
                    cfg,
                )));
            }
            Role::Client(remote) => {
                tasks.push(tokio::spawn(servers_loop(gossip.clone(), remote, cfg)));
            }
        }
        Ok(Cluster {
            gossip,
            wan,
            tasks,
            fatal,
        })
    }

    /// Wait until the cluster layer gives up (never, unless retry_join is
    /// exhausted or a member refuses this node); the reason, for the
    /// agent's exit.
    pub async fn fatal(&self) -> String {
        let mut fatal = self.fatal.clone();
        loop {
            if let Some(reason) = fatal.borrow_and_update().clone() {
                return reason;
            }
            if fatal.changed().await.is_err() {
                // Every sender is gone: nothing can fail any more.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Stop: leave gracefully first if asked (others see `left`, not
    /// `failed`).
    pub async fn stop(self, leave: bool) {
        for t in &self.tasks {
            t.abort();
        }
        let pools: Vec<&Arc<Gossip>> = std::iter::once(&self.gossip).chain(&self.wan).collect();
        for pool in pools {
            if leave {
                if let Err(e) = pool.leave(Duration::from_secs(5)).await {
                    tracing::warn!(error = %e, "graceful leave failed");
                }
            }
            pool.shutdown().await;
        }
    }
}

/// Start a gossip pool with this agent's `tags` and encryption key: the
/// LAN pool (named after the node, keyring in `serf/local.keyring`) or a
/// server's WAN pool (named `<node>.<dc>`, on the WAN port, keyring in
/// `serf/remote.keyring`).
async fn start_pool(
    cfg: &ClusterConfig,
    wan: bool,
    tags: BTreeMap<String, String>,
) -> anyhow::Result<Arc<Gossip>> {
    let (port, pool, flag) = if wan {
        (cfg.serf_wan_port, "WAN", "-serf-wan-port")
    } else {
        (cfg.serf_lan_port, "LAN", "-serf-lan-port")
    };
    let bind = SocketAddr::new(cfg.bind, port);
    let mut gcfg = if wan {
        let name = format!("{}.{}", cfg.node_name, cfg.datacenter);
        GossipConfig::wan(name, cfg.node_id.clone(), bind)
    } else {
        GossipConfig::lan(cfg.node_name.clone(), cfg.node_id.clone(), bind)
    };
    gcfg.advertise = Some(SocketAddr::new(cfg.advertise, port));
    gcfg.tags = tags;
    if let Some(key) = &cfg.encrypt {
        gcfg.keyring = Some(Keyring::new(key).map_err(|e| anyhow::anyhow!("Error: encrypt: {e}"))?);
    }
    gcfg.encrypt_verify_incoming = cfg.verify_incoming;
    gcfg.encrypt_verify_outgoing = cfg.verify_outgoing;
    gcfg.keyring_path = if wan {
        cfg.keyring_path
            .as_ref()
            .map(|p| p.with_file_name("remote.keyring"))
    } else {
        cfg.keyring_path.clone()
    };
    let gossip = Gossip::start(gcfg).await.map_err(|e| {
        anyhow::anyhow!(
            "Error: cannot start {pool} gossip on {bind}: {e} (use {flag} to pick another port)"
        )
    })?;
    Ok(Arc::new(gossip))
}

/// Resolve `host[:port]` (`default_port` when none is given).
pub(crate) async fn resolve(addr: &str, default_port: u16) -> Vec<SocketAddr> {
    let with_port = if addr.parse::<SocketAddr>().is_ok()
        || addr
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.contains(':') && p.parse::<u16>().is_ok())
    {
        addr.to_string()
    } else if addr.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6()) {
        format!("[{addr}]:{default_port}")
    } else {
        format!("{addr}:{default_port}")
    };
    match tokio::net::lookup_host(with_port.clone()).await {
        Ok(addrs) => addrs.collect(),
        Err(e) => {
            tracing::warn!(addr = %addr, error = %e, "cannot resolve join address");
            Vec::new()
        }
    }
}

/// `start_join`: join `addrs` once, at start. None answering is the
/// agent's error (Consul exits too), naming the addresses and why each
/// failed.
async fn start_join(gossip: &Gossip, addrs: &[String], default_port: u16) -> anyhow::Result<()> {
    if addrs.is_empty() {
        return Ok(());
    }
    let pool = gossip_pool(default_port);
    tracing::info!("({pool}) joining: addresses={addrs:?}");
    let mut resolved = Vec::new();
    for a in addrs {
        resolved.extend(resolve(a, default_port).await);
    }
    if resolved.is_empty() {
        anyhow::bail!(
            "Error: Failed to join {}: no address resolves (check the -join/start_join addresses)",
            addrs.join(", ")
        );
    }
    match gossip.join(&resolved).await {
        Ok(n) => {
            tracing::info!("({pool}) joined: number_of_nodes={n}");
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!(
            "Error: Failed to join {}: {e} (start_join/-join tries once at start; use \
             retry_join/-retry-join to keep trying)",
            addrs.join(", ")
        )),
    }
}

/// `retry_join`: join at least one of `plan.retry`, retrying (after 1 s,
/// doubling up to `retry_interval`) until one answers; after `retry_max`
/// failed attempts, or when a member refuses this node for good, tell the
/// agent to exit through `fatal`.
async fn retry_join(
    gossip: Arc<Gossip>,
    plan: JoinPlan,
    default_port: u16,
    fatal: tokio::sync::watch::Sender<Option<String>>,
) {
    let pool = gossip_pool(default_port);
    let interval = plan.retry_interval.max(Duration::from_millis(100));
    let mut backoff = Duration::from_secs(1).min(interval);
    let mut attempts = 0u32;
    tracing::info!("({pool}) joining: addresses={:?}", plan.retry);
    loop {
        let mut resolved = Vec::new();
        for a in &plan.retry {
            resolved.extend(resolve(a, default_port).await);
        }
        attempts += 1;
        match gossip.join(&resolved).await {
            Ok(n) => {
                tracing::info!("({pool}) joined: number_of_nodes={n}");
                return;
            }
            Err(e @ muster_gossip::Error::JoinRefused { .. }) => {
                let _ = fatal.send(Some(format!("Error: cannot join the {pool} pool: {e}")));
                return;
            }
            Err(e) => {
                if plan.retry_max > 0 && attempts >= plan.retry_max {
                    tracing::error!("({pool}) max join retry exhausted, exiting");
                    let _ = fatal.send(Some(format!(
                        "Error: ({pool}) max join retry exhausted after {attempts} attempts \
                         (retry_max): {e}"
                    )));
                    return;
                }
                tracing::warn!(
                    cluster = pool,
                    retry_interval = ?backoff,
                    error = %e,
                    "Join cluster failed, will retry"
                );
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(interval);
    }
}

/// Where a server keeps its WAN pool's known members, beside the LAN
/// pool's file.
fn wan_peers_path(lan: &std::path::Path) -> PathBuf {
    lan.with_file_name("remote.peers.json")
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
            let (file, list) = (path.clone(), peers.clone());
            let write = move || -> std::io::Result<()> {
                if let Some(dir) = file.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let tmp = file.with_extension("tmp");
                std::fs::write(&tmp, serde_json::to_vec(&list).unwrap_or_default())?;
                std::fs::rename(&tmp, &file)
            };
            // File I/O off the async runtime.
            match tokio::task::spawn_blocking(write).await {
                Ok(Ok(())) => saved = peers,
                Ok(Err(e)) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot save known members")
                }
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
pub(super) fn server_of(m: &Member, dc: &str) -> Option<(u64, RaftNode)> {
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

/// On a client agent: keep the list of servers to forward to equal to the
/// alive servers of its datacenter (on every membership event and every
/// [`RECONCILE_INTERVAL`]).
async fn servers_loop(gossip: Arc<Gossip>, remote: Arc<Remote>, cfg: ClusterConfig) {
    let mut events = gossip.subscribe();
    loop {
        let servers = gossip
            .members()
            .iter()
            .filter_map(|m| server_of(m, &cfg.datacenter))
            .map(|(_, node)| node.addr)
            .collect();
        remote.set_servers(servers);
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
