//! Running an agent once its configuration is valid: a server (engine,
//! server RPC, gossip, agent, HTTP and DNS) or a client agent (gossip, the
//! link to the servers, agent, HTTP and DNS that forward to a server);
//! the readiness line, signals, and a clean shutdown in order.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use muster_agent::{Agent, AgentConfig, Store};
use muster_api::{ApiConfig, ReloadHook};
use muster_engine::remote::Remote;
use muster_engine::{Engine, EngineConfig};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

use super::client_link::{DnsRelay, ServerSide};
use super::cluster::{AutopilotConfig, Cluster, ClusterConfig, Role};
use super::cluster_api::ClusterApi;
use super::dns as agent_dns;
use super::node_id::{load_or_create_node_id, raft_id};
use crate::cli::agent::Config;
use crate::config::{self, ConfigSource};

/// `kv_max_value_size`: the largest KV value accepted (512 KiB).
const KV_MAX_VALUE_SIZE: usize = 512 * 1024;

/// How long to wait for this server to see a leader before printing the
/// readiness line anyway (with a warning).
const LEADER_WAIT: Duration = Duration::from_secs(30);

/// How long in-flight HTTP requests get to finish on shutdown.
const HTTP_DRAIN: Duration = Duration::from_secs(10);

/// How long the engine gets to stop raft and flush on shutdown.
const ENGINE_SHUTDOWN: Duration = Duration::from_secs(30);

/// A server: open the engine, serve RPC, gossip, HTTP and DNS until a
/// signal, then shut everything down.
pub(crate) async fn server(cfg: &Config, data_dir: &Path) -> anyhow::Result<()> {
    // Install the handlers first, so a signal that arrives right after the
    // readiness line is not fatal.
    let mut sigint = signal(SignalKind::interrupt()).context("Error: cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("Error: cannot handle SIGTERM")?;
    install_metrics(cfg)?;

    let (node_id, uuid) = load_or_create_node_id(data_dir)?;
    let rpc_addr = SocketAddr::new(cfg.advertise, cfg.server_port);
    let mut engine_cfg = EngineConfig::new(data_dir, cfg.node_name.clone());
    engine_cfg.node_id = raft_id(&uuid);
    engine_cfg.rpc_addr = rpc_addr.to_string();
    engine_cfg.bootstrap = cfg.bootstrap;
    let settings = &cfg.loaded.settings;
    if let Some(n) = settings.raft_snapshot_threshold {
        engine_cfg.snapshot_threshold = n;
    }
    if let Some(n) = settings.raft_trailing_logs {
        engine_cfg.trailing_logs = n;
    }
    if let Some(hold) = settings.rpc_hold_timeout {
        engine_cfg.rpc_hold_timeout = hold;
    }
    if cfg.dev {
        // Consul's -dev uses raft_multiplier=1: the fastest timings.
        engine_cfg.heartbeat = Duration::from_millis(100);
        engine_cfg.election_timeout = Duration::from_millis(500);
    }
    tracing::info!(
        node = %cfg.node_name,
        node_id = %node_id,
        raft_id = engine_cfg.node_id,
        rpc = %rpc_addr,
        data_dir = %data_dir.display(),
        bootstrap = cfg.bootstrap,
        serf_lan_port = cfg.serf_lan_port,
        serf_wan_port = cfg.serf_wan_port,
        "opening engine"
    );
    let rpc_bind = SocketAddr::new(cfg.bind, cfg.server_port);
    let rpc_listener = TcpListener::bind(rpc_bind).await.with_context(|| {
        format!("Error: cannot listen for server RPC on {rpc_bind}: is another agent running? Pick another port with -server-port")
    })?;
    // A signal while the log replays stops the agent now (the log is the
    // truth: stopping here is as safe as at any other moment).
    let engine = tokio::select! {
        opened = Engine::open(engine_cfg) => opened.with_context(|| {
            format!(
                "Error: cannot open the data directory {}",
                data_dir.display()
            )
        })?,
        _ = signalled(&mut sigint, &mut sigterm) => return Ok(()),
    };
    let (rpc_stop_tx, rpc_stop_rx) = oneshot::channel::<()>();
    // Client agents' HTTP and DNS questions are answered once the agent
    // and its API exist (below); until then they get a "starting" error.
    let server_side = Arc::new(ServerSide::default());
    let rpc = tokio::spawn(muster_engine::rpc::server::serve(
        rpc_listener,
        engine.clone(),
        Some(server_side.clone()),
        async move {
            let _ = rpc_stop_rx.await;
        },
    ));
    let backing = Role::Server(engine.clone());
    if let Some(file) = &cfg.restore {
        let restored = tokio::select! {
            r = restore_at_start(&engine, file) => Some(r),
            _ = signalled(&mut sigint, &mut sigterm) => None,
        };
        if let Some(Err(e)) = restored {
            let _ = rpc_stop_tx.send(());
            let _ = tokio::time::timeout(ENGINE_SHUTDOWN, engine.shutdown()).await;
            return Err(e);
        }
    }
    // `None`: a signal came first.
    let started = tokio::select! {
        started = Member::start(cfg, &node_id, data_dir, &backing) => Some(started),
        _ = signalled(&mut sigint, &mut sigterm) => None,
    };
    let member = match started {
        Some(Ok(member)) => member,
        failed_or_stopped => {
            let _ = rpc_stop_tx.send(());
            let _ = tokio::time::timeout(ENGINE_SHUTDOWN, engine.shutdown()).await;
            return failed_or_stopped.map_or(Ok(()), |r| r.map(|_| ()));
        }
    };
    if cfg.bootstrap_expect.is_none()
        && !cfg.bootstrap
        && cfg.join.start.is_empty()
        && cfg.join.retry.is_empty()
        && engine.status().peers.is_empty()
    {
        tracing::warn!(
            "this server has no cluster to join and will not elect itself (no -bootstrap, \
             -bootstrap-expect or -retry-join): writes fail with \"No cluster leader\" until \
             a cluster adds it. For one server pass -bootstrap; for N servers pass \
             -bootstrap-expect=N and -retry-join=<another server>"
        );
    }
    server_side.set(
        muster_api::Handler::new(engine.clone(), member.agent.clone(), member.api_cfg.clone()),
        engine.clone(),
        member.dns_config(cfg, &backing)?,
        member.api_cfg.acl.clone(),
    );
    let result = member
        .run(cfg, &backing, data_dir, &mut sigint, &mut sigterm)
        .await;
    let _ = rpc_stop_tx.send(());
    let _ = rpc.await;
    tracing::info!("shutting down the engine");
    match tokio::time::timeout(ENGINE_SHUTDOWN, engine.shutdown()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::error!(error = %err, "engine shutdown failed"),
        Err(_) => tracing::error!("engine shutdown timed out"),
    }
    if result.is_ok() {
        tracing::info!("agent stopped");
    }
    result
}

/// A client agent: gossip, the link to the servers, the agent with its
/// checks, and HTTP and DNS that forward to a server; no log, no engine.
pub(crate) async fn client(cfg: &Config, data_dir: &Path) -> anyhow::Result<()> {
    let mut sigint = signal(SignalKind::interrupt()).context("Error: cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("Error: cannot handle SIGTERM")?;
    install_metrics(cfg)?;
    let (node_id, _) = load_or_create_node_id(data_dir)?;
    tracing::info!(
        node = %cfg.node_name,
        node_id = %node_id,
        data_dir = %data_dir.display(),
        serf_lan_port = cfg.serf_lan_port,
        "starting client agent"
    );
    let backing = Role::Client(Arc::new(Remote::new()));
    let member = tokio::select! {
        started = Member::start(cfg, &node_id, data_dir, &backing) => started?,
        _ = signalled(&mut sigint, &mut sigterm) => return Ok(()),
    };
    let result = member
        .run(cfg, &backing, data_dir, &mut sigint, &mut sigterm)
        .await;
    if result.is_ok() {
        tracing::info!("agent stopped");
    }
    result
}

/// An agent in the cluster: its gossip layer, its local agent (services,
/// checks, anti-entropy) and its HTTP API settings.
struct Member {
    cluster: Cluster,
    /// Links to other datacenters (servers).
    datacenters: Option<Arc<super::datacenters::Datacenters>>,
    agent: Agent,
    api_cfg: ApiConfig,
    leave_requested: Arc<tokio::sync::Notify>,
}

impl Member {
    /// The DNS settings, with the way to other datacenters and prepared
    /// queries on a server.
    fn dns_config(&self, cfg: &Config, backing: &Role) -> anyhow::Result<muster_dns::DnsConfig> {
        let mut dns = agent_dns::dns_config(&cfg.loaded.settings, &cfg.datacenter)?;
        dns.datacenters = self.datacenters.as_ref().map(|dcs| {
            muster_dns::DatacenterLink(Arc::new(super::datacenters::DnsLink(dcs.clone())))
        });
        if let Role::Server(engine) = backing {
            if let Some(acl) = &self.api_cfg.acl {
                dns.acl = Some(muster_dns::AclLink(Arc::new(agent_dns::DnsAcl {
                    acl: acl.clone(),
                    engine: engine.clone(),
                })));
            }
            dns.queries = Some(muster_dns::QueryLink(Arc::new(agent_dns::DnsQueries {
                engine: engine.clone(),
                api: self.api_cfg.clone(),
            })));
        }
        Ok(dns)
    }

    /// Start gossip as a server or a client, then the local agent on
    /// whatever holds the catalog.
    async fn start(
        cfg: &Config,
        node_id: &str,
        data_dir: &Path,
        backing: &Role,
    ) -> anyhow::Result<Member> {
        let store: Arc<dyn Store> = match backing {
            Role::Server(engine) => Arc::new(engine.clone()),
            Role::Client(remote) => remote.clone(),
        };
        let cluster =
            Cluster::start(cluster_config(cfg, node_id, data_dir), backing.clone()).await?;
        let agent = Agent::start_with(
            store,
            agent_config(cfg, node_id, data_dir),
            cfg.loaded.services.clone(),
            cfg.loaded.checks.clone(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("Error: {e}"))?;
        let leave_requested = Arc::new(tokio::sync::Notify::new());
        let datacenters = cluster
            .wan
            .clone()
            .map(|wan| super::datacenters::Datacenters::start(wan, cfg.datacenter.clone()));
        let cluster_api: Arc<dyn muster_api::ClusterBackend> = Arc::new(ClusterApi {
            gossip: cluster.gossip.clone(),
            wan: cluster.wan.clone(),
            datacenters: datacenters.clone(),
            engine: match backing {
                Role::Server(engine) => Some(engine.clone()),
                Role::Client(_) => None,
            },
            shutdown: leave_requested.clone(),
        });
        let server = matches!(backing, Role::Server(_));
        let acl = acl_system(cfg, data_dir)?;
        if let (Some(acl), Role::Client(remote)) = (&acl, backing) {
            // The agent's own writes and reads carry its agent token (else
            // its default one), also after `/v1/agent/token/agent`.
            remote.set_token(acl.tokens.agent_token());
            let remote = remote.clone();
            acl.tokens
                .on_agent_token(move |t| remote.set_token(t.to_string()));
        }
        let api_cfg = api_config(cfg, &agent, cluster_api, node_id, server, acl);
        Ok(Member {
            cluster,
            datacenters,
            agent,
            api_cfg,
            leave_requested,
        })
    }

    /// Serve HTTP and DNS until a signal or a leave, then stop the agent
    /// and leave the gossip pool if Consul's rules say so.
    async fn run(
        self,
        cfg: &Config,
        backing: &Role,
        data_dir: &Path,
        sigint: &mut tokio::signal::unix::Signal,
        sigterm: &mut tokio::signal::unix::Signal,
    ) -> anyhow::Result<()> {
        let result = match self.dns_config(cfg, backing) {
            Ok(dns_cfg) => {
                serve_http(
                    cfg,
                    backing,
                    &self.agent,
                    (self.api_cfg, dns_cfg),
                    data_dir,
                    Stops {
                        sigint,
                        sigterm,
                        leave_requested: &self.leave_requested,
                        cluster: &self.cluster,
                    },
                )
                .await
            }
            Err(e) => Err(e),
        };
        self.agent.shutdown().await;
        self.cluster
            .stop(result.as_ref().is_ok_and(|e| e.leave(cfg)))
            .await;
        result.map(|_| ())
    }
}

impl Role {
    /// A server knows a leader; a client knows a server.
    fn connected(&self) -> bool {
        match self {
            Role::Server(engine) => engine.status().leader.is_some(),
            Role::Client(remote) => !remote.servers().is_empty(),
        }
    }
}

/// The gossip layer's settings for this agent.
fn cluster_config(cfg: &Config, node_id: &str, data_dir: &Path) -> ClusterConfig {
    let settings = &cfg.loaded.settings;
    let ap = &settings.autopilot;
    ClusterConfig {
        node_name: cfg.node_name.clone(),
        node_id: node_id.to_string(),
        datacenter: cfg.datacenter.clone(),
        bind: cfg.bind,
        advertise: cfg.advertise,
        serf_lan_port: cfg.serf_lan_port,
        serf_wan_port: cfg.serf_wan_port,
        join_wan: cfg.join_wan.clone(),
        server_port: cfg.server_port,
        bootstrap_expect: cfg.bootstrap_expect,
        join: cfg.join.clone(),
        encrypt: cfg.encrypt.clone(),
        verify_incoming: settings.encrypt_verify_incoming.unwrap_or(true),
        verify_outgoing: settings.encrypt_verify_outgoing.unwrap_or(true),
        keyring_path: (!cfg.dev).then(|| data_dir.join("serf").join("local.keyring")),
        peers_path: (!cfg.dev).then(|| data_dir.join("serf").join("peers.json")),
        autopilot: AutopilotConfig {
            cleanup_dead_servers: ap.cleanup_dead_servers.unwrap_or(true),
            stabilization: ap
                .server_stabilization_time
                .unwrap_or(Duration::from_secs(10)),
            min_quorum: ap.min_quorum.unwrap_or(0),
        },
    }
}

/// The local agent's settings.
fn agent_config(cfg: &Config, node_id: &str, data_dir: &Path) -> AgentConfig {
    let mut agent_cfg = AgentConfig::new(
        cfg.node_name.clone(),
        node_id.to_string(),
        cfg.datacenter.clone(),
    );
    agent_cfg.address = cfg.advertise.to_string();
    cfg.loaded.settings.apply_to_agent(&mut agent_cfg);
    if !cfg.dev {
        agent_cfg.persist_dir = Some(data_dir.join("agent"));
    }
    agent_cfg
}

/// The HTTP API's settings.
/// The metrics recorder with the `telemetry` settings, before anything
/// reports (keys with no effect are warned about).
fn install_metrics(cfg: &Config) -> anyhow::Result<()> {
    let (telemetry, warnings) = crate::config::telemetry::settings(&cfg.loaded.settings.telemetry)
        .map_err(|e| anyhow::anyhow!("Error: {e}"))?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    muster_api::metrics::install(telemetry);
    Ok(())
}

/// The ACL system with the `acl` settings (`None` with ACLs off); with
/// `enable_token_persistence`, tokens set through the API come back from
/// the data directory.
fn acl_system(cfg: &Config, data_dir: &Path) -> anyhow::Result<Option<Arc<muster_api::acl::Acl>>> {
    let Some(settings) = crate::config::acl::settings(&cfg.loaded.settings.acl) else {
        return Ok(None);
    };
    let dc = cfg.datacenter.clone();
    let acl = if settings.enable_token_persistence {
        muster_api::acl::Acl::persisted(settings, dc, data_dir)
            .map_err(|e| anyhow::anyhow!("Error: persisted ACL tokens: {e}"))?
    } else {
        muster_api::acl::Acl::new(settings, dc)
    };
    Ok(Some(Arc::new(acl)))
}

fn api_config(
    cfg: &Config,
    agent: &Agent,
    cluster_api: Arc<dyn muster_api::ClusterBackend>,
    node_id: &str,
    server: bool,
    acl: Option<Arc<muster_api::acl::Acl>>,
) -> ApiConfig {
    ApiConfig {
        datacenter: cfg.datacenter.clone(),
        node_name: cfg.node_name.clone(),
        node_id: node_id.to_string(),
        server,
        version: env!("CARGO_PKG_VERSION").to_string(),
        kv_max_value_size: KV_MAX_VALUE_SIZE,
        session_ttl_min: cfg
            .loaded
            .settings
            .session_ttl_min
            .unwrap_or(muster_api::DEFAULT_SESSION_TTL_MIN),
        reload: Some(reload_hook(agent.clone(), cfg)),
        cluster: Some(cluster_api),
        ui: ui_settings(cfg),
        acl,
        http_max_conns_per_client: cfg
            .loaded
            .settings
            .limits
            .get("http_max_conns_per_client")
            .and_then(serde_json::Value::as_u64)
            .map_or(muster_api::DEFAULT_HTTP_MAX_CONNS_PER_CLIENT, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            }),
    }
}

/// The UI as configured, falling back to the built-in one (with a
/// warning) when the configured directory has no `index.html`: a missing
/// directory should not leave the operator without a UI.
fn ui_settings(cfg: &Config) -> muster_api::ui::UiConfig {
    let mut ui = cfg.ui.clone();
    if let Some(dir) = &ui.dir {
        if !dir.join("index.html").is_file() {
            tracing::warn!(
                "ui_dir {} has no index.html: serving the built-in UI",
                dir.display()
            );
            ui.dir = None;
        }
    }
    if ui.enabled {
        tracing::info!(path = %ui.content_path, dir = ?ui.dir, "web UI enabled");
    }
    ui
}

/// What ends a running agent: SIGINT, SIGTERM, a `leave` through the API,
/// or the cluster layer giving up.
struct Stops<'a> {
    sigint: &'a mut tokio::signal::unix::Signal,
    sigterm: &'a mut tokio::signal::unix::Signal,
    leave_requested: &'a tokio::sync::Notify,
    cluster: &'a Cluster,
}

/// SIGINT or SIGTERM, whichever comes first, logged as Consul logs it.
async fn signalled(
    sigint: &mut tokio::signal::unix::Signal,
    sigterm: &mut tokio::signal::unix::Signal,
) -> Ended {
    let (ended, name) = tokio::select! {
        _ = sigint.recv() => (Ended::Interrupt, "interrupt"),
        _ = sigterm.recv() => (Ended::Terminate, "terminated"),
    };
    tracing::info!("Caught signal: {name}; shutting down");
    ended
}

/// Bind and serve the HTTP API, announce readiness, and wait for a signal or
/// for the server to fail. The HTTP server is stopped before this returns.
async fn serve_http(
    cfg: &Config,
    backing: &Role,
    agent: &Agent,
    (api_cfg, dns_cfg): (ApiConfig, muster_dns::DnsConfig),
    data_dir: &Path,
    stops: Stops<'_>,
) -> anyhow::Result<Ended> {
    let Stops {
        sigint,
        sigterm,
        leave_requested,
        cluster,
    } = stops;
    let listeners = super::https::Bound::bind(cfg).await?;
    let reload = reload_hook(agent.clone(), cfg);
    let mut sighup = signal(SignalKind::hangup()).context("Error: cannot handle SIGHUP")?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    // A dropped sender also means "stop".
    let stopped = async move {
        let _ = stop_rx.await;
    };
    let (ready_fields, self_client) = (listeners.ready_fields(), listeners.self_client());
    let mut server = listeners.serve(backing, agent, api_cfg, stopped);

    // Wait (bounded) until a bootstrapping server knows a leader, or a
    // client told whom to join knows a server, so the first request after
    // the readiness line is answered.
    let wait = async {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        while !backing.connected() {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!("no cluster leader or server known yet; serving anyway");
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let should_wait = match backing {
        Role::Server(_) => cfg.bootstrap,
        Role::Client(_) => !(cfg.join.start.is_empty() && cfg.join.retry.is_empty()),
    };
    if should_wait {
        tokio::select! {
            () = wait => {}
            res = &mut server => return Err(server_ended(res)),
            reason = cluster.fatal() => return Err(anyhow::anyhow!(reason)),
            ended = signalled(sigint, sigterm) => {
                let _ = stop_tx.send(());
                let _ = tokio::time::timeout(HTTP_DRAIN, &mut server).await;
                return Ok(ended);
            }
        }
    }

    let (udp, tcp) = agent_dns::bind_dns(SocketAddr::new(cfg.dns_addr, cfg.dns_port)).await?;
    let dns_addr = udp
        .local_addr()
        .context("Error: cannot read the DNS listener's address")?;
    let (dns_stop_tx, dns_stop_rx) = oneshot::channel::<()>();
    let dns_stopped = async move {
        let _ = dns_stop_rx.await;
    };
    let dns = match backing {
        Role::Server(engine) => tokio::spawn(muster_dns::serve(
            udp,
            tcp,
            engine.clone(),
            dns_cfg,
            dns_stopped,
        )),
        Role::Client(remote) => tokio::spawn(muster_dns::serve_relay(
            udp,
            tcp,
            Arc::new(DnsRelay(remote.clone())),
            dns_stopped,
        )),
    };
    // The node is in the catalog (with its `serfHealth`) before the agent
    // says it is ready, so a session created right away finds it.
    if backing.connected() {
        if let Err(e) = agent.sync_now().await {
            tracing::warn!(error = %e, "first anti-entropy sync failed; it will be retried");
        }
    }
    tracing::info!(
        node = %cfg.node_name,
        datacenter = %cfg.datacenter,
        listeners = %ready_fields,
        dns = %dns_addr,
        data_dir = %data_dir.display(),
        "agent ready"
    );
    announce_ready(&format!(
        "muster agent ready: node={} datacenter={} {} dns={} data_dir={}",
        cfg.node_name,
        cfg.datacenter,
        ready_fields,
        dns_addr,
        data_dir.display()
    ));
    notify_systemd(&[sd_notify::NotifyState::Ready]);
    let watches = super::watches::Watches::start(&cfg.loaded.settings.watches, self_client);

    let ended = loop {
        tokio::select! {
            ended = signalled(sigint, sigterm) => break Ok(ended),
            _ = sighup.recv() => {
                tracing::info!("Caught signal: hangup");
                // The hook logs what it does and why it failed.
                let _ = reload.run().await;
            }
            () = leave_requested.notified() => { tracing::info!("left the cluster, shutting down"); break Ok(Ended::Left) }
            reason = cluster.fatal() => {
                let _ = stop_tx.send(());
                let _ = tokio::time::timeout(HTTP_DRAIN, &mut server).await;
                return Err(anyhow::anyhow!(reason));
            }
            res = &mut server => break Err(res),
        }
    };
    notify_systemd(&[sd_notify::NotifyState::Stopping]);
    watches.stop();
    let ended = ended.map_err(server_ended)?;
    let _ = dns_stop_tx.send(());
    if tokio::time::timeout(HTTP_DRAIN, dns).await.is_err() {
        tracing::warn!("DNS server still running after the drain timeout");
    }
    let _ = stop_tx.send(());
    match tokio::time::timeout(HTTP_DRAIN, &mut server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(err))) => tracing::error!(error = %err, "HTTP server failed while stopping"),
        Ok(Err(err)) => tracing::error!(error = %err, "HTTP server task failed while stopping"),
        Err(_) => {
            tracing::warn!("HTTP requests still running after the drain timeout; aborting them");
            server.abort();
        }
    }
    Ok(ended)
}

/// Why a running agent stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// SIGINT.
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// `leave` through the API (the gossip leave is done).
    Left,
}

impl Ended {
    /// Leave the gossip pool on the way out? Consul's rules:
    /// `skip_leave_on_interrupt` (default: true on servers) for SIGINT,
    /// `leave_on_terminate` (default: true on clients) for SIGTERM.
    fn leave(self, cfg: &Config) -> bool {
        let s = &cfg.loaded.settings;
        match self {
            Ended::Interrupt => !s.skip_leave_on_interrupt.unwrap_or(cfg.server),
            Ended::Terminate => s.leave_on_terminate.unwrap_or(!cfg.server),
            Ended::Left => false,
        }
    }
}

/// Re-read the config files and hand their services and checks to the
/// agent, and the HTTPS listener its certificates (SIGHUP and `PUT
/// /v1/agent/reload`). A bad file leaves the running configuration as it
/// is.
fn reload_hook(agent: Agent, cfg: &Config) -> ReloadHook {
    let sources: Vec<ConfigSource> = cfg.config_sources.clone();
    let https = cfg.https.as_ref().map(|h| h.tls.clone());
    let rpc_tls = cfg.rpc_tls.clone();
    ReloadHook::new(move || {
        let agent = agent.clone();
        let sources = sources.clone();
        let https = https.clone();
        let rpc_tls = rpc_tls.clone();
        async move {
            tracing::info!("Reloading configuration...");
            let result = match config::load(&sources) {
                Ok(loaded) => {
                    for warning in &loaded.warnings {
                        tracing::warn!("{warning}");
                    }
                    if let Some(Err(e)) = https.map(|tls| tls.reload(&loaded.settings.tls)) {
                        return reload_failed(e);
                    }
                    if let Some(Err(e)) = rpc_tls.map(|tls| tls.reload(&loaded.settings.tls)) {
                        return reload_failed(e);
                    }
                    agent
                        .reload(loaded.services, loaded.checks)
                        .await
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(()) => {
                    tracing::info!("Configuration reloaded");
                    Ok(())
                }
                Err(e) => reload_failed(e),
            }
        }
    })
}

/// A failed reload: logged, and the API's answer.
fn reload_failed(e: String) -> Result<(), String> {
    tracing::error!("Failed reloading: {e}; keeping the running configuration");
    Err(format!("Failed reloading: {e}"))
}

/// The error for an HTTP server that stopped without being asked to.
fn server_ended(
    res: Result<Result<(), muster_api::Error>, tokio::task::JoinError>,
) -> anyhow::Error {
    match res {
        Ok(Ok(())) => anyhow::anyhow!("Error: the HTTP server stopped unexpectedly"),
        Ok(Err(err)) => anyhow::anyhow!("Error: the HTTP server failed: {err}"),
        Err(err) => anyhow::anyhow!("Error: the HTTP server task failed: {err}"),
    }
}

/// `-restore FILE`: check the archive whole, then restore it through the
/// log, on a server with no state yet (a restart of a seeded server keeps
/// its state and says so).
async fn restore_at_start(engine: &Engine, file: &Path) -> anyhow::Result<()> {
    if engine.has_state()? {
        tracing::info!(
            file = %file.display(),
            "the data directory already has state: -restore ignored"
        );
        return Ok(());
    }
    let path = file.to_path_buf();
    let (meta, hash, state) = tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&path)
            .with_context(|| format!("Error: cannot open -restore {}", path.display()))?;
        muster_api::snapshot::archive::unpack_checked(std::io::BufReader::new(f))
            .map_err(|e| anyhow::anyhow!("Error: -restore {}: {e}", path.display()))
    })
    .await
    .context("Error: restore task failed")??;
    tracing::info!(file = %file.display(), index = meta.index, "seeding the server from a snapshot");
    let reader = muster_engine::backup::state::StateReader::new(
        std::io::BufReader::with_capacity(1 << 20, state),
    )?;
    let records = engine
        .restore_state(reader, hash, |p| {
            tracing::debug!(records = p.records, "restoring");
        })
        .await
        .map_err(|e| anyhow::anyhow!("Error: -restore {}: {e}", file.display()))?;
    tracing::info!(
        records,
        index = meta.index,
        "seeded the server from the snapshot"
    );
    Ok(())
}

/// Tell systemd (`Type=notify`, `NOTIFY_SOCKET`) how the agent is doing;
/// nothing without a notify socket.
fn notify_systemd(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

/// Write the readiness line to stdout and flush it: the one line a
/// supervisor or test harness waits for.
fn announce_ready(line: &str) {
    let mut out = io::stdout().lock();
    if let Err(err) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        tracing::warn!(error = %err, "cannot write the readiness line to stdout");
    }
}
