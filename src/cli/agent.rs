//! `muster agent`: validate the agent's flags into a [`Config`], open the
//! engine, serve the HTTP API, print the readiness line and shut down cleanly
//! on SIGINT/SIGTERM.
//!
//! This module owns the process lifecycle of an agent (data directory, node
//! ID, logging, signals). It must not implement API or engine behaviour: it
//! only wires `muster_engine::Engine` to `muster_api::serve`.
//!
//! The readiness line is the only thing an agent writes to stdout; logs go
//! to stderr.

use std::fs;
use std::io::{self, IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use muster_api::{ApiConfig, ReloadHook};
use muster_engine::agent::{Agent, AgentConfig};
use muster_engine::{Engine, EngineConfig};

use super::agent_dns;
use super::cluster::{Cluster, ClusterApi, ClusterConfig};
use super::node_id::{load_or_create_node_id, raft_id};
use crate::config::{self, ConfigSource, LoadedConfig};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

/// Consul's default ports (§11.2 of consul-compat.md).
const DEFAULT_HTTP_PORT: u16 = 8500;
const DEFAULT_DNS_PORT: u16 = 8600;
const DEFAULT_SERVER_PORT: u16 = 8300;
const DEFAULT_SERF_LAN_PORT: u16 = 8301;
const DEFAULT_SERF_WAN_PORT: u16 = 8302;

/// `kv_max_value_size`: the largest KV value accepted (512 KiB).
const KV_MAX_VALUE_SIZE: usize = 512 * 1024;

/// How long to wait for this server to see a leader before printing the
/// readiness line anyway (with a warning).
const LEADER_WAIT: Duration = Duration::from_secs(30);

/// How long in-flight HTTP requests get to finish on shutdown.
const HTTP_DRAIN: Duration = Duration::from_secs(10);

/// How long the engine gets to stop raft and flush on shutdown.
const ENGINE_SHUTDOWN: Duration = Duration::from_secs(30);

/// The agent's raw flags, as Consul spells them.
#[derive(Debug, clap::Args)]
#[command(about = "Run an agent: a one-node server for now")]
pub struct AgentArgs {
    /// Development mode: a self-elected server with its data in a temporary
    /// directory removed on exit, HTTP on 127.0.0.1:8500, debug logs and
    /// pretty JSON.
    #[arg(long)]
    pub dev: bool,
    /// Run as a server (clients that forward to servers are a later issue).
    #[arg(long)]
    pub server: bool,
    /// Let this server elect itself: form a one-member cluster if its data
    /// directory is empty.
    #[arg(long)]
    pub bootstrap: bool,
    /// Wait for this many servers to meet over gossip, then form the
    /// cluster (1 is the same as -bootstrap).
    #[arg(long, value_name = "N")]
    pub bootstrap_expect: Option<u32>,
    /// Node name (default: the hostname).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Datacenter (default: dc1); lowercased, only [a-z0-9_-].
    #[arg(long, value_name = "DC")]
    pub datacenter: Option<String>,
    /// Cluster bind address (default: 127.0.0.1).
    #[arg(long, value_name = "IP")]
    pub bind: Option<IpAddr>,
    /// Address the HTTP API (and later DNS) listens on (default: 127.0.0.1).
    #[arg(long, value_name = "IP")]
    pub client: Option<IpAddr>,
    /// Address other servers reach this one at (default: the bind address).
    #[arg(long, value_name = "IP")]
    pub advertise: Option<IpAddr>,
    /// Directory for the log, views and node ID (required unless -dev).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Directory of *.json / *.hcl config files, loaded in lexical order and
    /// merged; flags override them. Repeatable.
    #[arg(long, value_name = "DIR")]
    pub config_dir: Vec<PathBuf>,
    /// A config file (JSON or HCL); flags override it. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub config_file: Vec<PathBuf>,
    /// HTTP API port (default: 8500; 0 = any free port).
    #[arg(long, value_name = "PORT")]
    pub http_port: Option<u16>,
    /// DNS port (default: 8600; reserved, no DNS listener yet).
    #[arg(long, value_name = "PORT")]
    pub dns_port: Option<u16>,
    /// Server RPC port (default: 8300).
    #[arg(long, value_name = "PORT")]
    pub server_port: Option<u16>,
    /// LAN gossip port (default: 8301).
    #[arg(long, value_name = "PORT")]
    pub serf_lan_port: Option<u16>,
    /// WAN gossip port (default: 8302; no WAN gossip yet).
    #[arg(long, value_name = "PORT")]
    pub serf_wan_port: Option<u16>,
    /// Address of an agent to join at start (LAN gossip, `host[:port]`,
    /// default port 8301); retried with backoff. Repeatable.
    #[arg(long, value_name = "ADDR")]
    pub join: Vec<String>,
    /// Same as -join (Consul's retrying join). Repeatable.
    #[arg(long, value_name = "ADDR")]
    pub retry_join: Vec<String>,
    /// Gossip encryption key (base64 of 16, 24 or 32 bytes; `muster keygen`).
    #[arg(long, value_name = "KEY")]
    pub encrypt: Option<String>,
    /// Log level: trace, debug, info, warn or error (default: info; debug
    /// with -dev).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

/// Where the agent keeps its data.
#[derive(Debug)]
enum DataDir {
    /// `-dev`: a fresh temporary directory, removed when this is dropped
    /// (after the engine has shut down).
    Temp(tempfile::TempDir),
    /// `-data-dir`: durable.
    Dir(PathBuf),
}

impl DataDir {
    fn path(&self) -> &Path {
        match self {
            DataDir::Temp(dir) => dir.path(),
            DataDir::Dir(dir) => dir,
        }
    }
}

/// The validated agent configuration.
#[derive(Debug)]
struct Config {
    /// `-dev` mode (pretty JSON, faster raft timings, temporary data).
    dev: bool,
    /// Form a one-member cluster if the log is empty.
    bootstrap: bool,
    /// This agent's node name.
    node_name: String,
    /// Datacenter, lowercased and checked.
    datacenter: String,
    /// Durable data directory; `None` with `-dev` (a temp dir is made at start).
    data_dir: Option<PathBuf>,
    /// Address the server RPC and gossip ports bind to.
    bind: IpAddr,
    /// `bootstrap_expect` above 1: form the cluster once that many servers
    /// have met.
    bootstrap_expect: Option<u32>,
    /// Agents to join over LAN gossip (flags and `start_join`/`retry_join`).
    join: Vec<String>,
    /// Gossip encryption key.
    encrypt: Option<String>,
    /// Address peers reach this server's RPC port at.
    advertise: IpAddr,
    /// Address the HTTP API listens on.
    client: IpAddr,
    /// HTTP port (0 = any free port).
    http_port: u16,
    /// DNS port, reserved for the DNS interface.
    dns_port: u16,
    /// Server RPC port.
    server_port: u16,
    /// LAN gossip port, reserved (nothing listens until membership lands).
    serf_lan_port: u16,
    /// WAN gossip port, reserved.
    serf_wan_port: u16,
    /// Log level for muster's own targets.
    log_level: &'static str,
    /// `-config-file` / `-config-dir` sources, re-read on reload.
    config_sources: Vec<ConfigSource>,
    /// What the config files said (services, checks, settings).
    loaded: LoadedConfig,
}

impl Config {
    /// Check the flags. Every failure is a one-line message saying how to fix
    /// it.
    fn from_args(mut args: AgentArgs) -> anyhow::Result<Config> {
        let config_sources = config_sources(&args.config_file, &args.config_dir);
        let loaded = config::load(&config_sources).map_err(|e| anyhow::anyhow!("Error: {e}"))?;
        let st = &loaded.settings;
        // Flags win over files; files win over defaults.
        args.server |= st.server.unwrap_or(false);
        args.bootstrap |= st.bootstrap.unwrap_or(false);
        if args.bootstrap_expect.is_none() {
            args.bootstrap_expect = st.bootstrap_expect;
        }
        if args.datacenter.is_none() {
            args.datacenter = st.datacenter.clone();
        }
        if args.data_dir.is_none() {
            args.data_dir = st.data_dir.clone();
        }
        if args.node.is_none() {
            args.node = st.node_name.clone();
        }
        if args.log_level.is_none() {
            args.log_level = st.log_level.clone();
        }
        let ip = |s: &Option<String>| {
            s.as_deref()
                .and_then(|a| a.split_whitespace().next()?.parse::<IpAddr>().ok())
        };
        if args.bind.is_none() {
            args.bind = ip(&st.bind_addr);
        }
        if args.advertise.is_none() {
            args.advertise = ip(&st.advertise_addr);
        }
        if args.client.is_none() {
            args.client = ip(&st.addresses.http).or_else(|| ip(&st.client_addr));
        }
        let port = |p: Option<i32>| p.and_then(|p| u16::try_from(p).ok());
        args.http_port = args.http_port.or(port(st.ports.http));
        args.dns_port = args.dns_port.or(port(st.ports.dns));
        args.server_port = args.server_port.or(port(st.ports.server));
        args.serf_lan_port = args.serf_lan_port.or(port(st.ports.serf_lan));
        args.serf_wan_port = args.serf_wan_port.or(port(st.ports.serf_wan));
        let log_level = match &args.log_level {
            Some(level) => parse_log_level(level)?,
            None if args.dev => "debug",
            None => "info",
        };
        if args.bootstrap && args.bootstrap_expect.is_some() {
            bail!("Error: -bootstrap and -bootstrap-expect are mutually exclusive: pass only one");
        }
        let (bootstrap, bootstrap_expect) = match args.bootstrap_expect {
            None | Some(0) => (args.bootstrap, None),
            Some(1) => (true, None),
            Some(n) if args.dev => {
                bail!("Error: -bootstrap-expect={n} cannot be used with -dev: drop one of them")
            }
            Some(n) => (false, Some(n)),
        };
        let data_dir = if args.dev {
            None
        } else {
            match &args.data_dir {
                Some(dir) if !dir.as_os_str().is_empty() => Some(dir.clone()),
                _ => bail!(
                    "Error: -data-dir is required unless -dev is set: pass -data-dir=<dir> \
                     (e.g. 'muster agent -server -bootstrap -data-dir /var/lib/muster') or run \
                     'muster agent -dev'"
                ),
            }
        };
        if !args.dev && !args.server {
            bail!(
                "Error: client agents are not supported yet: run a server with \
                 'muster agent -server -bootstrap -data-dir <dir>' or use 'muster agent -dev'"
            );
        }
        let datacenter = parse_datacenter(args.datacenter.as_deref().unwrap_or("dc1"))?;
        let node_name = match args.node {
            Some(name) if name.trim().is_empty() => {
                bail!("Error: -node must not be empty: pass a node name or omit it to use the hostname")
            }
            Some(name) => name,
            None => hostname(),
        };
        let bind = args.bind.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let advertise = match args.advertise {
            Some(ip) => ip,
            // An unspecified bind address cannot be advertised; picking the
            // sole private address comes with clustering.
            None if bind.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            None => bind,
        };
        let mut join = args.join.clone();
        join.extend(args.retry_join.iter().cloned());
        join.extend(st.start_join.iter().cloned());
        join.extend(st.retry_join.iter().cloned());
        let encrypt = args.encrypt.clone().or_else(|| st.encrypt.clone());
        if let Some(key) = &encrypt {
            muster_gossip::Keyring::validate_key(key).map_err(|e| {
                anyhow::anyhow!(
                    "Error: invalid -encrypt key: {e} (generate one with 'muster keygen')"
                )
            })?;
        }
        Ok(Config {
            dev: args.dev,
            bootstrap: args.dev || bootstrap,
            bind,
            bootstrap_expect,
            join,
            encrypt,
            node_name,
            datacenter,
            data_dir,
            advertise,
            client: args.client.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            http_port: args.http_port.unwrap_or(DEFAULT_HTTP_PORT),
            dns_port: args.dns_port.unwrap_or(DEFAULT_DNS_PORT),
            server_port: args.server_port.unwrap_or(DEFAULT_SERVER_PORT),
            serf_lan_port: args.serf_lan_port.unwrap_or(DEFAULT_SERF_LAN_PORT),
            serf_wan_port: args.serf_wan_port.unwrap_or(DEFAULT_SERF_WAN_PORT),
            log_level,
            config_sources,
            loaded,
        })
    }
}

/// `-log-level`: Consul's names (`err` and `warning` included), any case.
fn parse_log_level(level: &str) -> anyhow::Result<&'static str> {
    Ok(match level.to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "info" => "info",
        "warn" | "warning" => "warn",
        "err" | "error" => "error",
        _ => {
            bail!("Error: invalid -log-level {level:?}: use one of trace, debug, info, warn, error")
        }
    })
}

/// `-datacenter`: lowercased; only `[a-z0-9_-]`.
fn parse_datacenter(dc: &str) -> anyhow::Result<String> {
    let dc = dc.to_ascii_lowercase();
    if dc.is_empty()
        || !dc
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        bail!("Error: invalid -datacenter {dc:?}: use only letters, digits, '_' and '-'");
    }
    Ok(dc)
}

/// The default node name: the kernel's hostname, else `/etc/hostname`, else
/// `$HOSTNAME`, else `muster`.
fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| fs::read_to_string(path).ok())
        .chain(std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_string())
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| "muster".to_string())
}

/// `-config-file`s then `-config-dir`s, as the loader takes them.
fn config_sources(files: &[PathBuf], dirs: &[PathBuf]) -> Vec<ConfigSource> {
    files
        .iter()
        .map(|f| ConfigSource::File(f.clone()))
        .chain(dirs.iter().map(|d| ConfigSource::Dir(d.clone())))
        .collect()
}

/// Install the stderr log subscriber. Storage and raft internals stay at
/// `warn` unless the level is `trace`.
fn init_logging(level: &str) {
    let filter = if level == "trace" {
        "trace".to_string()
    } else {
        format!("{level},lsm_tree=warn,fjall=warn,openraft=warn")
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .init();
}

/// `muster agent`.
pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let ignored_data_dir = args.dev && args.data_dir.is_some();
    let cfg = Config::from_args(args)?;
    init_logging(cfg.log_level);
    if ignored_data_dir {
        tracing::warn!("-dev keeps its data in a temporary directory; -data-dir is ignored");
    }
    for file in &cfg.loaded.files {
        tracing::info!(file = %file.display(), "loaded config file");
    }
    let data_dir = match &cfg.data_dir {
        Some(dir) => {
            fs::create_dir_all(dir)
                .with_context(|| format!("Error: cannot create -data-dir {}", dir.display()))?;
            DataDir::Dir(dir.clone())
        }
        None => DataDir::Temp(
            tempfile::Builder::new()
                .prefix("muster-dev-")
                .tempdir()
                .context("Error: cannot create a temporary data directory for -dev")?,
        ),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("Error: cannot start the async runtime")?;
    let result = runtime.block_on(serve(&cfg, data_dir.path()));
    // Let background tasks see the runtime close before the data goes away.
    runtime.shutdown_timeout(Duration::from_secs(5));
    drop(data_dir);
    result.map(|()| ExitCode::SUCCESS)
}

/// Open the engine, serve HTTP until a signal, then shut everything down.
async fn serve(cfg: &Config, data_dir: &Path) -> anyhow::Result<()> {
    // Install the handlers first, so a signal that arrives right after the
    // readiness line is not fatal.
    let mut sigint = signal(SignalKind::interrupt()).context("Error: cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("Error: cannot handle SIGTERM")?;

    let (node_id, uuid) = load_or_create_node_id(data_dir)?;
    let rpc_addr = SocketAddr::new(cfg.advertise, cfg.server_port);
    let mut engine_cfg = EngineConfig::new(data_dir, cfg.node_name.clone());
    engine_cfg.node_id = raft_id(&uuid);
    engine_cfg.rpc_addr = rpc_addr.to_string();
    engine_cfg.bootstrap = cfg.bootstrap;
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
    let engine = Engine::open(engine_cfg).await.with_context(|| {
        format!(
            "Error: cannot open the data directory {}",
            data_dir.display()
        )
    })?;
    let (rpc_stop_tx, rpc_stop_rx) = oneshot::channel::<()>();
    let rpc = tokio::spawn(muster_engine::rpc::server::serve(
        rpc_listener,
        engine.clone(),
        async move {
            let _ = rpc_stop_rx.await;
        },
    ));
    let cluster = Cluster::start(
        ClusterConfig {
            node_name: cfg.node_name.clone(),
            node_id: node_id.clone(),
            datacenter: cfg.datacenter.clone(),
            bind: cfg.bind,
            advertise: cfg.advertise,
            serf_lan_port: cfg.serf_lan_port,
            server_port: cfg.server_port,
            bootstrap_expect: cfg.bootstrap_expect,
            join: cfg.join.clone(),
            encrypt: cfg.encrypt.clone(),
            verify_incoming: true,
            verify_outgoing: true,
            keyring_path: (!cfg.dev).then(|| data_dir.join("serf").join("local.keyring")),
            peers_path: (!cfg.dev).then(|| data_dir.join("serf").join("peers.json")),
            version: env!("CARGO_PKG_VERSION").to_string(),
        },
        engine.clone(),
    )
    .await?;

    let mut agent_cfg = AgentConfig::new(
        cfg.node_name.clone(),
        node_id.clone(),
        cfg.datacenter.clone(),
    );
    agent_cfg.address = cfg.advertise.to_string();
    cfg.loaded.settings.apply_to_agent(&mut agent_cfg);
    if !cfg.dev {
        agent_cfg.persist_dir = Some(data_dir.join("agent"));
    }
    let agent = Agent::start(
        engine.clone(),
        agent_cfg,
        cfg.loaded.services.clone(),
        cfg.loaded.checks.clone(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("Error: {e}"))?;

    let leave_requested = Arc::new(tokio::sync::Notify::new());
    let cluster_api: Arc<dyn muster_api::ClusterBackend> = Arc::new(ClusterApi {
        gossip: cluster.gossip.clone(),
        engine: engine.clone(),
        shutdown: leave_requested.clone(),
    });
    let result = serve_http(
        cfg,
        &engine,
        &agent,
        cluster_api,
        &node_id,
        data_dir,
        Stops {
            sigint: &mut sigint,
            sigterm: &mut sigterm,
            leave_requested: &leave_requested,
        },
    )
    .await;

    agent.shutdown().await;
    cluster
        .stop(cfg.loaded.settings.leave_on_terminate.unwrap_or(false))
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

/// What ends a running agent: SIGINT, SIGTERM, or a `leave` through the API.
struct Stops<'a> {
    sigint: &'a mut tokio::signal::unix::Signal,
    sigterm: &'a mut tokio::signal::unix::Signal,
    leave_requested: &'a tokio::sync::Notify,
}

/// Bind and serve the HTTP API, announce readiness, and wait for a signal or
/// for the server to fail. The HTTP server is stopped before this returns.
async fn serve_http(
    cfg: &Config,
    engine: &Engine,
    agent: &Agent,
    cluster_api: Arc<dyn muster_api::ClusterBackend>,
    node_id: &str,
    data_dir: &Path,
    stops: Stops<'_>,
) -> anyhow::Result<()> {
    let Stops {
        sigint,
        sigterm,
        leave_requested,
    } = stops;
    let http_addr = SocketAddr::new(cfg.client, cfg.http_port);
    let listener = TcpListener::bind(http_addr).await.with_context(|| {
        format!("Error: cannot listen for HTTP on {http_addr}: is another agent running? Pick another port with -http-port")
    })?;
    let bound = listener
        .local_addr()
        .context("Error: cannot read the HTTP listener's address")?;
    let api_cfg = ApiConfig {
        datacenter: cfg.datacenter.clone(),
        node_name: cfg.node_name.clone(),
        node_id: node_id.to_string(),
        server: true,
        version: env!("CARGO_PKG_VERSION").to_string(),
        pretty: cfg.dev,
        kv_max_value_size: KV_MAX_VALUE_SIZE,
        session_ttl_min: cfg
            .loaded
            .settings
            .session_ttl_min
            .unwrap_or(muster_api::DEFAULT_SESSION_TTL_MIN),
        reload: Some(reload_hook(agent.clone(), cfg.config_sources.clone())),
        cluster: Some(cluster_api),
    };
    let reload = reload_hook(agent.clone(), cfg.config_sources.clone());
    let mut sighup = signal(SignalKind::hangup()).context("Error: cannot handle SIGHUP")?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let mut server = tokio::spawn(muster_api::serve(
        listener,
        engine.clone(),
        agent.clone(),
        api_cfg,
        async move {
            // A dropped sender also means "stop".
            let _ = stop_rx.await;
        },
    ));

    // Wait (bounded) until this server knows a leader, so the first request
    // after the readiness line does not see `No cluster leader`.
    let leader_wait = async {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        while engine.status().leader.is_none() {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!("no cluster leader yet; serving anyway");
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if cfg.bootstrap {
        tokio::select! {
            () = leader_wait => {}
            res = &mut server => return Err(server_ended(res)),
        }
    }

    let (udp, tcp) = agent_dns::bind_dns(SocketAddr::new(cfg.client, cfg.dns_port)).await?;
    let dns_addr = udp
        .local_addr()
        .context("Error: cannot read the DNS listener's address")?;
    let (dns_stop_tx, dns_stop_rx) = oneshot::channel::<()>();
    let dns = tokio::spawn(muster_dns::serve(
        udp,
        tcp,
        engine.clone(),
        agent_dns::dns_config(&cfg.loaded.settings, &cfg.datacenter)?,
        async move {
            let _ = dns_stop_rx.await;
        },
    ));
    // The node is in the catalog (with its `serfHealth`) before the agent
    // says it is ready, so a session created right away finds it.
    if engine.status().leader.is_some() {
        if let Err(e) = agent.sync_now().await {
            tracing::warn!(error = %e, "first anti-entropy sync failed; it will be retried");
        }
    }
    tracing::info!(
        node = %cfg.node_name,
        datacenter = %cfg.datacenter,
        http = %bound,
        dns = %dns_addr,
        data_dir = %data_dir.display(),
        "agent ready"
    );
    announce_ready(&format!(
        "muster agent ready: node={} datacenter={} http={} dns={} data_dir={}",
        cfg.node_name,
        cfg.datacenter,
        bound,
        dns_addr,
        data_dir.display()
    ));

    let ended_early = loop {
        tokio::select! {
            _ = sigint.recv() => { tracing::info!(signal = "SIGINT", "caught signal, shutting down"); break None }
            _ = sigterm.recv() => { tracing::info!(signal = "SIGTERM", "caught signal, shutting down"); break None }
            _ = sighup.recv() => {
                tracing::info!(signal = "SIGHUP", "caught signal, reloading the config files");
                if let Err(e) = reload.run().await {
                    tracing::error!(error = %e, "reload failed; keeping the running configuration");
                }
            }
            () = leave_requested.notified() => { tracing::info!("left the cluster, shutting down"); break None }
            res = &mut server => break Some(res),
        }
    };
    if let Some(res) = ended_early {
        return Err(server_ended(res));
    }
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
    Ok(())
}

/// Re-read the config files and hand their services and checks to the
/// agent (SIGHUP and `PUT /v1/agent/reload`). A bad file leaves the running
/// configuration as it is.
fn reload_hook(agent: Agent, sources: Vec<ConfigSource>) -> ReloadHook {
    ReloadHook::new(move || {
        let agent = agent.clone();
        let sources = sources.clone();
        async move {
            let loaded = config::load(&sources).map_err(|e| format!("Failed reloading: {e}"))?;
            agent
                .reload(loaded.services, loaded.checks)
                .await
                .map_err(|e| format!("Failed reloading: {e}"))
        }
    })
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

/// Write the readiness line to stdout and flush it: the one line a
/// supervisor or test harness waits for.
fn announce_ready(line: &str) {
    let mut out = io::stdout().lock();
    if let Err(err) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        tracing::warn!(error = %err, "cannot write the readiness line to stdout");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels_and_datacenters_are_checked() {
        assert_eq!(parse_log_level("WARN").ok(), Some("warn"));
        assert!(parse_log_level("loud").is_err());
        assert_eq!(parse_datacenter("DC-1").ok().as_deref(), Some("dc-1"));
        assert!(parse_datacenter("dc.1").is_err());
    }
}
