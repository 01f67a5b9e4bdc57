//! `muster agent`: validate the agent's flags into a [`Config`], open the
//! engine, serve the HTTP API, print the readiness line and shut down cleanly
//! on SIGINT/SIGTERM.
//!
//! This module owns the agent's flags and configuration, its logging and
//! data directory; `server::serve` runs a server or a client agent with
//! them. Neither implements API or engine behaviour.
//!
//! The readiness line is the only thing an agent writes to stdout; logs go
//! to stderr.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::config::{self, ConfigSource, LoadedConfig};
use crate::server::cluster::JoinPlan;
use crate::server::serve as agent_serve;

/// Consul's default ports (§11.2 of consul-compat.md).
const DEFAULT_HTTP_PORT: u16 = 8500;
const DEFAULT_DNS_PORT: u16 = 8600;
const DEFAULT_SERVER_PORT: u16 = 8300;
const DEFAULT_SERF_LAN_PORT: u16 = 8301;
const DEFAULT_SERF_WAN_PORT: u16 = 8302;
/// Consul's `retry_interval`.
const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(30);

/// The agent's raw flags, as Consul spells them.
#[derive(Debug, clap::Args)]
#[command(
    about = "Run an agent: a server (-server) or a client agent that forwards to the servers"
)]
pub struct AgentArgs {
    /// Development mode: a self-elected server with its data in a temporary
    /// directory removed on exit, HTTP on 127.0.0.1:8500 and debug logs.
    #[arg(long)]
    pub dev: bool,
    /// Run as a server: hold the replicated log and answer client agents.
    /// Without it the agent is a client: it keeps no log, runs its own
    /// checks and forwards catalog, KV and DNS questions to a server.
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
    /// Address the gossip and server RPC ports bind to (default: 0.0.0.0,
    /// advertising the host's one private IPv4 address; 127.0.0.1 with
    /// -dev).
    #[arg(long, value_name = "IP")]
    pub bind: Option<IpAddr>,
    /// Address the HTTP API and DNS listen on (default: 127.0.0.1);
    /// `addresses.http` / `addresses.dns` in a config file take precedence
    /// for their own listener.
    #[arg(long, value_name = "IP")]
    pub client: Option<IpAddr>,
    /// Address other agents reach this one at (default: the bind address,
    /// or the host's private IPv4 address when binding 0.0.0.0).
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
    /// HTTPS API port (`ports.https`; off unless set; 0 = any free port).
    /// Needs a certificate: tls.https (or tls.defaults) cert_file and
    /// key_file.
    #[arg(long, value_name = "PORT")]
    pub https_port: Option<u16>,
    /// DNS port (default: 8600; 0 = any free port).
    #[arg(long, value_name = "PORT")]
    pub dns_port: Option<u16>,
    /// Server RPC port (default: 8300).
    #[arg(long, value_name = "PORT")]
    pub server_port: Option<u16>,
    /// LAN gossip port (default: 8301).
    #[arg(long, value_name = "PORT")]
    pub serf_lan_port: Option<u16>,
    /// WAN gossip port (default: 8302; servers only).
    #[arg(long, value_name = "PORT")]
    pub serf_wan_port: Option<u16>,
    /// Address of an agent to join at start over LAN gossip (`host[:port]`,
    /// default port 8301), tried once: if none answers, the agent exits.
    /// Repeatable.
    #[arg(long, value_name = "ADDR")]
    pub join: Vec<String>,
    /// Address of an agent to join over LAN gossip, retried until one
    /// answers (`retry_interval`, `retry_max`). Repeatable.
    #[arg(long, value_name = "ADDR")]
    pub retry_join: Vec<String>,
    /// A server of another datacenter to join at start over WAN gossip
    /// (`host[:port]`, default port 8302), tried once; servers only.
    /// Repeatable.
    #[arg(long, value_name = "ADDR")]
    pub join_wan: Vec<String>,
    /// Like -join-wan, retried until one answers. Repeatable.
    #[arg(long, value_name = "ADDR")]
    pub retry_join_wan: Vec<String>,
    /// Serve the web UI at /ui/ (-dev turns it on too; `ui_config.enabled`
    /// in a config file).
    #[arg(long)]
    pub ui: bool,
    /// Serve the UI from this directory instead of the built-in one (turns
    /// the UI on; `ui_config.dir`).
    #[arg(long, value_name = "DIR")]
    pub ui_dir: Option<PathBuf>,
    /// The path the UI is served under (default: /ui/;
    /// `ui_config.content_path`).
    #[arg(long, value_name = "PATH")]
    pub ui_content_path: Option<String>,
    /// Write the agent's process ID to this file once it runs (removed on
    /// a clean exit).
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Seed this new server from a snapshot file before it serves (with
    /// -bootstrap or -dev, on a data directory with no state yet; ignored,
    /// with a message, once there is state).
    #[arg(long, value_name = "FILE")]
    pub restore: Option<PathBuf>,
    /// Gossip encryption key (base64 of 16, 24 or 32 bytes; `muster keygen`).
    #[arg(long, value_name = "KEY")]
    pub encrypt: Option<String>,
    /// Log level: trace, debug, info, warn or error (default: info; debug
    /// with -dev).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log JSON lines (stderr and -log-file) instead of text.
    #[arg(long)]
    pub log_json: bool,
    /// Also log to this file (a directory gets muster.log); rotated files
    /// are named <name>-<unix nanoseconds>.log beside it.
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Rotate the log file before it grows past this many bytes (0: no
    /// size limit).
    #[arg(long, value_name = "BYTES")]
    pub log_rotate_bytes: Option<u64>,
    /// Rotate the log file after this long (default 24h).
    #[arg(long, value_name = "DURATION")]
    pub log_rotate_duration: Option<String>,
    /// Keep this many rotated log files (0: all).
    #[arg(long, value_name = "N")]
    pub log_rotate_max_files: Option<usize>,
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
pub(crate) struct Config {
    /// `-dev` mode (faster raft timings, temporary data).
    pub(crate) dev: bool,
    /// A server (`-server` or `-dev`); otherwise a client agent that holds
    /// no log and forwards to the servers.
    pub(crate) server: bool,
    /// Form a one-member cluster if the log is empty.
    pub(crate) bootstrap: bool,
    /// This agent's node name.
    pub(crate) node_name: String,
    /// Datacenter, lowercased and checked.
    pub(crate) datacenter: String,
    /// Durable data directory; `None` with `-dev` (a temp dir is made at start).
    pub(crate) data_dir: Option<PathBuf>,
    /// Address the server RPC and gossip ports bind to.
    pub(crate) bind: IpAddr,
    /// `pid_file` / `-pid-file`.
    pub(crate) pid_file: Option<PathBuf>,
    /// The web UI: on or off, where its files come from, its path.
    pub(crate) ui: muster_api::ui::UiConfig,
    /// `-restore`: a snapshot to seed a new server from.
    pub(crate) restore: Option<PathBuf>,
    /// `bootstrap_expect` above 1: form the cluster once that many servers
    /// have met.
    pub(crate) bootstrap_expect: Option<u32>,
    /// Agents to join over LAN gossip (flags and `start_join`/`retry_join`).
    pub(crate) join: JoinPlan,
    /// Servers of other datacenters to join over WAN gossip.
    pub(crate) join_wan: JoinPlan,
    /// Gossip encryption key.
    pub(crate) encrypt: Option<String>,
    /// Address peers reach this server's RPC port at.
    pub(crate) advertise: IpAddr,
    /// Address the HTTP API listens on (`addresses.http`, else
    /// `-client`/`client_addr`).
    pub(crate) http_addr: IpAddr,
    /// Address DNS listens on (`addresses.dns`, else `-client`/`client_addr`).
    pub(crate) dns_addr: IpAddr,
    /// HTTP port (0 = any free port).
    pub(crate) http_port: u16,
    /// Plain HTTP is served (`ports.http = -1` turns it off).
    pub(crate) http_enabled: bool,
    /// The HTTPS listener (`ports.https`), its certificates loaded.
    pub(crate) https: Option<crate::server::https::HttpsListener>,
    /// TLS on the server RPC port (`tls.internal_rpc`), if configured.
    pub(crate) rpc_tls: Option<std::sync::Arc<crate::server::rpc_tls::RpcTls>>,
    /// DNS port.
    pub(crate) dns_port: u16,
    /// Server RPC port.
    pub(crate) server_port: u16,
    /// LAN gossip port.
    pub(crate) serf_lan_port: u16,
    /// WAN gossip port (servers).
    pub(crate) serf_wan_port: u16,
    /// Where and how to log (`-log-*`, `log_*`).
    pub(crate) log: crate::cli::logging::LogSettings,
    /// `-config-file` / `-config-dir` sources, re-read on reload.
    pub(crate) config_sources: Vec<ConfigSource>,
    /// What the config files said (services, checks, settings).
    pub(crate) loaded: LoadedConfig,
}

impl Config {
    /// Check the flags. Every failure is a one-line message saying how to fix
    /// it.
    fn from_args(mut args: AgentArgs) -> anyhow::Result<Config> {
        let config_sources = config_sources(&args.config_file, &args.config_dir);
        let mut loaded =
            config::load(&config_sources).map_err(|e| anyhow::anyhow!("Error: {e}"))?;
        if let Some(port) = args.https_port {
            loaded.settings.ports.https = Some(i32::from(port));
        }
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
        // Consul's precedence: `addresses.<listener>` (files), then
        // `-client`, then `client_addr` (files), then 127.0.0.1.
        let client = args
            .client
            .or_else(|| ip(&st.client_addr))
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let http_addr = ip(&st.addresses.http).unwrap_or(client);
        let dns_addr = ip(&st.addresses.dns).unwrap_or(client);
        let port = |p: Option<i32>| p.and_then(|p| u16::try_from(p).ok());
        let http_enabled = args.http_port.is_some() || st.ports.http.is_none_or(|p| p >= 0);
        let https_ip = ip(&st.addresses.https).unwrap_or(client);
        let https = crate::server::https::HttpsListener::from_settings(st, https_ip)?;
        if !http_enabled && https.is_none() {
            bail!(
                "Error: ports.http is -1 and HTTPS is off, so the agent would have no API: set \
                 ports.https (with tls.https.cert_file and key_file) or remove ports.http"
            );
        }
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
        let rotate_duration = match args
            .log_rotate_duration
            .as_deref()
            .or(st.log_rotate_duration.as_deref())
        {
            None => None,
            Some(d) => Some(muster_engine::duration::parse(d).map_err(|e| {
                anyhow::anyhow!(
                    "Error: invalid -log-rotate-duration {d:?}: {e} (a duration such as 24h)"
                )
            })?),
        };
        let log = crate::cli::logging::LogSettings {
            level: log_level.to_string(),
            json: args.log_json || st.log_json.unwrap_or(false),
            file: args.log_file.clone().or_else(|| st.log_file.clone()),
            rotate_bytes: args.log_rotate_bytes.or(st.log_rotate_bytes).unwrap_or(0),
            rotate_duration,
            rotate_max_files: args
                .log_rotate_max_files
                .or(st.log_rotate_max_files)
                .unwrap_or(0),
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
        if !args.dev && !args.server && (bootstrap || bootstrap_expect.is_some()) {
            bail!(
                "Error: -bootstrap and -bootstrap-expect need -server: a client agent joins \
                 servers with -retry-join <addr>"
            );
        }
        let ui = ui_config(&args, st)?;
        if args.restore.is_some() && !(args.dev || bootstrap) {
            bail!(
                "Error: -restore seeds a server that elects itself (-bootstrap or -dev); for a \
                 cluster, restore with 'muster snapshot restore' once it has formed"
            );
        }
        let datacenter = parse_datacenter(args.datacenter.as_deref().unwrap_or("dc1"))?;
        let domain = st.domain.as_deref().unwrap_or("consul");
        let rpc_tls = crate::server::rpc_tls::RpcTls::from_settings(&st.tls, &datacenter, domain)?
            .map(std::sync::Arc::new);
        let node_name = match args.node {
            Some(name) if name.trim().is_empty() => {
                bail!("Error: -node must not be empty: pass a node name or omit it to use the hostname")
            }
            Some(name) => name,
            None => hostname(),
        };
        // Consul's defaults: 0.0.0.0 advertising the one private IPv4
        // address; -dev stays on loopback.
        let bind = args.bind.unwrap_or(if args.dev {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        });
        let advertise = match args.advertise {
            Some(ip) => ip,
            None if bind.is_unspecified() => private_ipv4(&host_ipv4s())?,
            None => bind,
        };
        let retry_interval = st.retry_interval.unwrap_or(DEFAULT_RETRY_INTERVAL);
        let retry_max = st.retry_max.unwrap_or(0);
        let plan = |start: [&[String]; 2], retry: [&[String]; 2]| JoinPlan {
            start: start.concat(),
            retry: retry.concat(),
            retry_interval,
            retry_max,
        };
        let join = plan(
            [&args.join, &st.start_join],
            [&args.retry_join, &st.retry_join],
        );
        let join_wan = plan(
            [&args.join_wan, &st.start_join_wan],
            [&args.retry_join_wan, &st.retry_join_wan],
        );
        let wan_joins = !(join_wan.start.is_empty() && join_wan.retry.is_empty());
        if wan_joins && !(args.server || args.dev) {
            bail!("Error: -join-wan needs -server: only servers join the WAN pool");
        }
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
            server: args.dev || args.server,
            bootstrap: args.dev || bootstrap,
            bind,
            pid_file: args.pid_file.clone().or_else(|| st.pid_file.clone()),
            ui,
            restore: args.restore.clone(),
            bootstrap_expect,
            join,
            join_wan,
            encrypt,
            node_name,
            datacenter,
            data_dir,
            advertise,
            http_addr,
            dns_addr,
            http_port: args.http_port.unwrap_or(DEFAULT_HTTP_PORT),
            http_enabled,
            https,
            rpc_tls,
            dns_port: args.dns_port.unwrap_or(DEFAULT_DNS_PORT),
            server_port: args.server_port.unwrap_or(DEFAULT_SERVER_PORT),
            serf_lan_port: args.serf_lan_port.unwrap_or(DEFAULT_SERF_LAN_PORT),
            serf_wan_port: args.serf_wan_port.unwrap_or(DEFAULT_SERF_WAN_PORT),
            log,
            config_sources,
            loaded,
        })
    }
}

/// The web UI's settings: flags, then `ui_config { enabled, dir,
/// content_path }`, then the legacy `ui` and `ui_dir`. A directory turns
/// the UI on (as Consul's `ui_dir` did); `-dev` turns it on.
fn ui_config(
    args: &AgentArgs,
    st: &crate::config::AgentSettings,
) -> anyhow::Result<muster_api::ui::UiConfig> {
    let uc = &st.ui_config;
    let bad = |key: &str, want: &str| anyhow::anyhow!("Error: ui_config.{key} must be {want}");
    let enabled = match uc.get("enabled") {
        None => None,
        Some(v) => Some(v.as_bool().ok_or_else(|| bad("enabled", "true or false"))?),
    };
    let string = |key: &str| -> anyhow::Result<Option<String>> {
        match uc.get(key) {
            None => Ok(None),
            Some(v) => Ok(Some(
                v.as_str().ok_or_else(|| bad(key, "a string"))?.to_string(),
            )),
        }
    };
    let dir = args
        .ui_dir
        .clone()
        .or(string("dir")?.map(PathBuf::from))
        .or_else(|| st.ui_dir.clone());
    let content_path = args
        .ui_content_path
        .clone()
        .or(string("content_path")?)
        .unwrap_or_else(|| muster_api::ui::DEFAULT_CONTENT_PATH.to_string());
    let content_path = muster_api::ui::normalize_content_path(&content_path)
        .map_err(|e| anyhow::anyhow!("Error: {e}"))?;
    Ok(muster_api::ui::UiConfig {
        enabled: args.ui || args.dev || dir.is_some() || enabled.or(st.ui).unwrap_or(false),
        dir,
        content_path,
    })
}

/// The host's IPv4 addresses on interfaces that are up (none if they
/// cannot be read).
fn host_ipv4s() -> Vec<Ipv4Addr> {
    if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| !matches!(i.oper_status, if_addrs::IfOperStatus::Down))
        .filter_map(|i| match i.ip() {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(_) => None,
        })
        .collect()
}

/// Consul's default advertise address when binding 0.0.0.0: the host's one
/// private IPv4 address (RFC 1918, or RFC 6598 shared space); none, or
/// more than one, is an error asking for -bind or -advertise.
fn private_ipv4(addrs: &[Ipv4Addr]) -> anyhow::Result<IpAddr> {
    let private: Vec<Ipv4Addr> = addrs
        .iter()
        .copied()
        .filter(|ip| {
            let [a, b, ..] = ip.octets();
            ip.is_private() || (a == 100 && (64..128).contains(&b))
        })
        .collect();
    match private.as_slice() {
        [one] => Ok(IpAddr::V4(*one)),
        [] => bail!(
            "Error: No private IPv4 address found to advertise: pass -bind (or -advertise) \
             with the address other agents reach this one at"
        ),
        several => bail!(
            "Error: Multiple private IPv4 addresses found ({}): pass -bind (or -advertise) \
             with the one other agents reach this one at",
            several
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
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

/// `muster agent`.
pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let ignored_data_dir = args.dev && args.data_dir.is_some();
    let cfg = Config::from_args(args)?;
    if let Some(tls) = &cfg.rpc_tls {
        muster_engine::rpc::transport::set_transport(tls.clone()).map_err(anyhow::Error::msg)?;
    }
    crate::cli::logging::init(&cfg.log)?;
    if ignored_data_dir {
        tracing::warn!("-dev keeps its data in a temporary directory; -data-dir is ignored");
    }
    for file in &cfg.loaded.files {
        tracing::info!(file = %file.display(), "loaded config file");
    }
    for warning in &cfg.loaded.warnings {
        tracing::warn!("{warning}");
    }
    let mut _lock = None;
    let data_dir = match &cfg.data_dir {
        Some(dir) => {
            fs::create_dir_all(dir)
                .with_context(|| format!("Error: cannot create -data-dir {}", dir.display()))?;
            _lock = Some(lock_data_dir(dir)?);
            DataDir::Dir(dir.clone())
        }
        None => DataDir::Temp(
            tempfile::Builder::new()
                .prefix("muster-dev-")
                .tempdir()
                .context("Error: cannot create a temporary data directory for -dev")?,
        ),
    };
    let pid_file = cfg.pid_file.as_deref().map(PidFile::write).transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("Error: cannot start the async runtime")?;
    let result = runtime.block_on(async {
        if cfg.server {
            agent_serve::server(&cfg, data_dir.path()).await
        } else {
            agent_serve::client(&cfg, data_dir.path()).await
        }
    });
    // Let background tasks see the runtime close before the data goes away.
    runtime.shutdown_timeout(Duration::from_secs(5));
    drop(data_dir);
    drop(pid_file);
    result.map(|()| ExitCode::SUCCESS)
}

/// The data directory's lock: held (an exclusive `flock` on
/// `<data_dir>/agent.lock`, which holds the owner's PID) for as long as
/// the agent runs, so a second agent on the same directory stops at once
/// with a message instead of a storage error.
fn lock_data_dir(dir: &Path) -> anyhow::Result<fs::File> {
    match try_lock_data_dir(dir)? {
        Ok(file) => Ok(file),
        Err(pid) => bail!(
            "Error: another agent is using the data directory {}{pid}: stop it first, or \
             give this agent its own -data-dir",
            dir.display()
        ),
    }
}

/// Take the data directory's lock (see [`lock_data_dir`]), or say who
/// holds it: `Err(" (pid N)")` (empty when unknown). The log tools hold
/// it too while they read a stopped server's directory.
pub(crate) fn try_lock_data_dir(dir: &Path) -> anyhow::Result<Result<fs::File, String>> {
    use std::io::{Read, Seek, Write};
    let path = dir.join("agent.lock");
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("Error: cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut owner = String::new();
            let _ = file.read_to_string(&mut owner);
            let owner = owner.trim();
            return Ok(Err(if owner.is_empty() {
                String::new()
            } else {
                format!(" (pid {owner})")
            }));
        }
        Err(fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("Error: cannot lock {}", path.display()))
        }
    }
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .with_context(|| format!("Error: cannot write {}", path.display()))?;
    Ok(Ok(file))
}

/// `-pid-file`: the agent's PID, written at start and removed when this is
/// dropped (a clean exit).
struct PidFile(PathBuf);

impl PidFile {
    fn write(path: &Path) -> anyhow::Result<PidFile> {
        fs::write(path, format!("{}\n", std::process::id())).with_context(|| {
            format!(
                "Error: cannot write -pid-file {}: check the directory exists and is writable",
                path.display()
            )
        })?;
        Ok(PidFile(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
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

    #[test]
    fn the_one_private_address_is_advertised() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().expect("ip");
        let pick = |list: &[&str]| {
            private_ipv4(&list.iter().map(|s| ip(s)).collect::<Vec<_>>()).map_err(|e| e.to_string())
        };
        assert_eq!(
            pick(&["127.0.0.1", "10.1.2.3", "8.8.8.8"]).ok(),
            Some(IpAddr::V4(ip("10.1.2.3")))
        );
        assert_eq!(
            pick(&["100.64.0.7"]).ok(),
            Some(IpAddr::V4(ip("100.64.0.7")))
        );
        let none = pick(&["127.0.0.1", "8.8.8.8"]).err().unwrap_or_default();
        assert!(
            none.contains("No private IPv4") && none.contains("-bind"),
            "{none}"
        );
        let two = pick(&["192.168.1.2", "172.16.0.9"])
            .err()
            .unwrap_or_default();
        assert!(
            two.contains("192.168.1.2, 172.16.0.9") && two.contains("-advertise"),
            "{two}"
        );
    }
}
