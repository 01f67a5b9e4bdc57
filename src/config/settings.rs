//! [`AgentSettings`]: the agent keys of a config file (consul-compat.md
//! §11.2), each an `Option` (or a list/map) so that later files and then
//! command-line flags can override them; decoding one file's top-level
//! object into them, and merging two of them.
//!
//! Service and check keys are not handled here (see `definitions.rs`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use muster_agent::AgentConfig;
use serde_json::{Map, Value};

use super::error::ConfigError;
use super::value::{deep_merge, join, Ctx};

/// `autopilot { ... }`: dead-server cleanup on the leader. Consul's other
/// autopilot keys are accepted and have no effect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Autopilot {
    /// `cleanup_dead_servers` (default true).
    pub cleanup_dead_servers: Option<bool>,
    /// `server_stabilization_time` (default 10 s): how long a server must
    /// have been failed before it is removed from raft.
    pub server_stabilization_time: Option<std::time::Duration>,
    /// `min_quorum`: never prune below this many voters.
    pub min_quorum: Option<u32>,
}

/// Per-listener bind addresses (`addresses { ... }`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addresses {
    /// HTTP API.
    pub http: Option<String>,
    /// HTTPS API.
    pub https: Option<String>,
    /// DNS.
    pub dns: Option<String>,
    /// gRPC.
    pub grpc: Option<String>,
}

/// Ports (`ports { ... }`); -1 disables a listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ports {
    /// DNS (8600).
    pub dns: Option<i32>,
    /// HTTP API (8500).
    pub http: Option<i32>,
    /// HTTPS API (-1).
    pub https: Option<i32>,
    /// gRPC (-1).
    pub grpc: Option<i32>,
    /// gRPC with TLS (-1).
    pub grpc_tls: Option<i32>,
    /// LAN gossip (8301).
    pub serf_lan: Option<i32>,
    /// WAN gossip (8302).
    pub serf_wan: Option<i32>,
    /// Server RPC (8300).
    pub server: Option<i32>,
}

/// The agent's settings from config files. `None` / empty = not set in any
/// file: the agent's default (or its command-line flag) applies. Paths are
/// kept as written; nothing here requires them to exist.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentSettings {
    /// `server`.
    pub server: Option<bool>,
    /// `bootstrap`.
    pub bootstrap: Option<bool>,
    /// `bootstrap_expect`.
    pub bootstrap_expect: Option<u32>,
    /// `datacenter`, as written.
    pub datacenter: Option<String>,
    /// `primary_datacenter`.
    pub primary_datacenter: Option<String>,
    /// `data_dir`.
    pub data_dir: Option<PathBuf>,
    /// `ui_dir` (legacy; `ui_config.dir`).
    pub ui_dir: Option<PathBuf>,
    /// `ui` (legacy; `ui_config.enabled`).
    pub ui: Option<bool>,
    /// `ui_config`, accepted as an object.
    pub ui_config: Map<String, Value>,
    /// `encrypt`: base64 of a 16, 24 or 32-byte gossip key (checked).
    pub encrypt: Option<String>,
    /// `encrypt_verify_incoming` (default true): refuse plaintext gossip.
    pub encrypt_verify_incoming: Option<bool>,
    /// `encrypt_verify_outgoing` (default true): encrypt outgoing gossip.
    pub encrypt_verify_outgoing: Option<bool>,
    /// `addresses`.
    pub addresses: Addresses,
    /// `ports`.
    pub ports: Ports,
    /// `bind_addr` (an IP or a go-sockaddr template, as written).
    pub bind_addr: Option<String>,
    /// `advertise_addr`.
    pub advertise_addr: Option<String>,
    /// `advertise_addr_wan`.
    pub advertise_addr_wan: Option<String>,
    /// `client_addr` (space-separated list allowed).
    pub client_addr: Option<String>,
    /// `start_join` (legacy), appended across files.
    pub start_join: Vec<String>,
    /// `retry_join`, appended across files.
    pub retry_join: Vec<String>,
    /// `start_join_wan`, appended across files.
    pub start_join_wan: Vec<String>,
    /// `retry_join_wan`, appended across files.
    pub retry_join_wan: Vec<String>,
    /// `retry_interval` (30s).
    pub retry_interval: Option<Duration>,
    /// `retry_max` (0 = forever).
    pub retry_max: Option<u32>,
    /// `pid_file`.
    pub pid_file: Option<PathBuf>,
    /// `node_name`.
    pub node_name: Option<String>,
    /// `node_id`.
    pub node_id: Option<String>,
    /// `node_meta`, merged key by key.
    pub node_meta: BTreeMap<String, String>,
    /// `log_level`, as written.
    pub log_level: Option<String>,
    /// `log_json`.
    pub log_json: Option<bool>,
    /// `log_file`.
    pub log_file: Option<PathBuf>,
    /// `log_rotate_bytes`.
    pub log_rotate_bytes: Option<u64>,
    /// `log_rotate_duration`, as written.
    pub log_rotate_duration: Option<String>,
    /// `log_rotate_max_files`.
    pub log_rotate_max_files: Option<usize>,
    /// `enable_script_checks`.
    pub enable_script_checks: Option<bool>,
    /// `enable_local_script_checks`.
    pub enable_local_script_checks: Option<bool>,
    /// `check_update_interval` (5m).
    pub check_update_interval: Option<Duration>,
    /// `check_output_max_size` (4096).
    pub check_output_max_size: Option<u32>,
    /// `session_ttl_min` (10s): the shortest non-zero session TTL accepted.
    pub session_ttl_min: Option<Duration>,
    /// `domain` (`consul.`).
    pub domain: Option<String>,
    /// `alt_domain`: a second domain answered the same way.
    pub alt_domain: Option<String>,
    /// `recursors`, appended across files.
    pub recursors: Vec<String>,
    /// `dns_config`, accepted as an object.
    pub dns_config: Map<String, Value>,
    /// `performance`, accepted as an object.
    pub performance: Map<String, Value>,
    /// `performance.rpc_hold_timeout`: how long a write waits for a leader
    /// before failing with `No cluster leader` (default 7 s).
    pub rpc_hold_timeout: Option<Duration>,
    /// `limits`, accepted as an object.
    pub limits: Map<String, Value>,
    /// `acl`, accepted as an object.
    pub acl: Map<String, Value>,
    /// `telemetry`, accepted as an object.
    pub telemetry: Map<String, Value>,
    /// `leave_on_terminate`.
    pub leave_on_terminate: Option<bool>,
    /// `skip_leave_on_interrupt`.
    pub skip_leave_on_interrupt: Option<bool>,
    /// `rejoin_after_leave`.
    pub rejoin_after_leave: Option<bool>,
    /// `autopilot`.
    pub autopilot: Autopilot,
    /// `raft_snapshot_threshold`: log entries between snapshots.
    pub raft_snapshot_threshold: Option<u64>,
    /// `raft_trailing_logs`: entries kept behind a snapshot for slow
    /// followers.
    pub raft_trailing_logs: Option<u64>,
    /// `watches`, appended across files (decoded in `watches.rs`).
    pub watches: Vec<super::watches::WatchConfig>,
    /// `tls` and the deprecated top-level TLS keys (decoded in `tls.rs`).
    pub tls: super::tls::TlsSettings,
}

/// Set `slot` from `value` with `read`.
fn set<T>(
    slot: &mut Option<T>,
    read: impl FnOnce() -> Result<T, ConfigError>,
) -> Result<(), ConfigError> {
    *slot = Some(read()?);
    Ok(())
}

impl AgentSettings {
    /// Decode one agent key (not `service(s)`/`check(s)`). `Ok(false)` if
    /// the key is not an agent key.
    pub(super) fn decode_key(
        &mut self,
        ctx: Ctx<'_>,
        key: &str,
        v: &Value,
    ) -> Result<bool, ConfigError> {
        let s = self;
        match key {
            "server" => set(&mut s.server, || ctx.bool(key, v))?,
            "bootstrap" => set(&mut s.bootstrap, || ctx.bool(key, v))?,
            "bootstrap_expect" => set(&mut s.bootstrap_expect, || ctx.u32(key, v))?,
            "datacenter" => set(&mut s.datacenter, || ctx.string(key, v))?,
            "primary_datacenter" => set(&mut s.primary_datacenter, || ctx.string(key, v))?,
            "data_dir" => set(&mut s.data_dir, || ctx.string(key, v).map(PathBuf::from))?,
            "ui_dir" => set(&mut s.ui_dir, || ctx.string(key, v).map(PathBuf::from))?,
            "ui" => set(&mut s.ui, || ctx.bool(key, v))?,
            "encrypt" => set(&mut s.encrypt, || gossip_key(ctx, key, v))?,
            "encrypt_verify_incoming" => set(&mut s.encrypt_verify_incoming, || ctx.bool(key, v))?,
            "encrypt_verify_outgoing" => set(&mut s.encrypt_verify_outgoing, || ctx.bool(key, v))?,
            "bind_addr" => set(&mut s.bind_addr, || ctx.string(key, v))?,
            "advertise_addr" => set(&mut s.advertise_addr, || ctx.string(key, v))?,
            "advertise_addr_wan" => set(&mut s.advertise_addr_wan, || ctx.string(key, v))?,
            "client_addr" => set(&mut s.client_addr, || ctx.string(key, v))?,
            "retry_interval" => set(&mut s.retry_interval, || ctx.duration(key, v))?,
            "retry_max" => set(&mut s.retry_max, || ctx.u32(key, v))?,
            "pid_file" => set(&mut s.pid_file, || ctx.string(key, v).map(PathBuf::from))?,
            "node_name" => set(&mut s.node_name, || ctx.string(key, v))?,
            "node_id" => set(&mut s.node_id, || ctx.string(key, v))?,
            "log_level" => set(&mut s.log_level, || ctx.string(key, v))?,
            "log_json" => set(&mut s.log_json, || ctx.bool(key, v))?,
            "log_file" => set(&mut s.log_file, || ctx.string(key, v).map(PathBuf::from))?,
            "log_rotate_bytes" => set(&mut s.log_rotate_bytes, || ctx.u64(key, v))?,
            "log_rotate_duration" => set(&mut s.log_rotate_duration, || {
                ctx.duration(key, v)?;
                ctx.string(key, v)
            })?,
            "log_rotate_max_files" => set(&mut s.log_rotate_max_files, || {
                ctx.u64(key, v)
                    .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            })?,
            "enable_script_checks" => set(&mut s.enable_script_checks, || ctx.bool(key, v))?,
            "enable_local_script_checks" => {
                set(&mut s.enable_local_script_checks, || ctx.bool(key, v))?
            }
            "check_update_interval" => set(&mut s.check_update_interval, || ctx.duration(key, v))?,
            "check_output_max_size" => set(&mut s.check_output_max_size, || ctx.u32(key, v))?,
            "session_ttl_min" => set(&mut s.session_ttl_min, || ctx.duration(key, v))?,
            "domain" => set(&mut s.domain, || ctx.string(key, v))?,
            "alt_domain" => set(&mut s.alt_domain, || ctx.string(key, v))?,
            "leave_on_terminate" => set(&mut s.leave_on_terminate, || ctx.bool(key, v))?,
            "skip_leave_on_interrupt" => set(&mut s.skip_leave_on_interrupt, || ctx.bool(key, v))?,
            "rejoin_after_leave" => set(&mut s.rejoin_after_leave, || ctx.bool(key, v))?,
            "raft_snapshot_threshold" => set(&mut s.raft_snapshot_threshold, || ctx.u64(key, v))?,
            "raft_trailing_logs" => set(&mut s.raft_trailing_logs, || ctx.u64(key, v))?,
            "start_join" => s.start_join = ctx.string_list(key, v)?,
            "retry_join" => s.retry_join = ctx.string_list(key, v)?,
            "start_join_wan" => s.start_join_wan = ctx.string_list(key, v)?,
            "retry_join_wan" => s.retry_join_wan = ctx.string_list(key, v)?,
            "recursors" => s.recursors = ctx.string_list(key, v)?,
            "node_meta" => s.node_meta = ctx.string_map(key, v)?,
            "ui_config" => s.ui_config = ctx.object(key, v)?.clone(),
            "dns_config" => s.dns_config = ctx.object(key, v)?.clone(),
            "performance" => {
                let obj = ctx.object(key, v)?;
                if let Some(hold) = obj.get("rpc_hold_timeout") {
                    s.rpc_hold_timeout = Some(ctx.duration("performance.rpc_hold_timeout", hold)?);
                }
                s.performance = obj.clone();
            }
            "limits" => {
                let obj = ctx.object(key, v)?;
                if let Some(n) = obj.get("http_max_conns_per_client") {
                    ctx.u64("limits.http_max_conns_per_client", n)?;
                }
                s.limits = obj.clone();
            }
            "acl" => {
                super::acl::check(&ctx, v)?;
                s.acl = super::acl::block_of(v).cloned().unwrap_or_default();
            }
            "telemetry" => s.telemetry = ctx.object(key, v)?.clone(),
            "addresses" => {
                let a = &mut s.addresses;
                for (k, item) in ctx.object(key, v)? {
                    let path = join(key, k);
                    let slot = match k.as_str() {
                        "http" => &mut a.http,
                        "https" => &mut a.https,
                        "dns" => &mut a.dns,
                        "grpc" => &mut a.grpc,
                        _ => return Err(ctx.unknown(&path)),
                    };
                    *slot = Some(ctx.string(&path, item)?);
                }
            }
            "autopilot" => {
                let a = &mut s.autopilot;
                for (k, item) in ctx.object(key, v)? {
                    let path = join(key, k);
                    match k.as_str() {
                        "cleanup_dead_servers" => {
                            a.cleanup_dead_servers = Some(ctx.bool(&path, item)?)
                        }
                        "server_stabilization_time" => {
                            a.server_stabilization_time = Some(ctx.duration(&path, item)?)
                        }
                        "min_quorum" => a.min_quorum = Some(ctx.u32(&path, item)?),
                        "last_contact_threshold"
                        | "max_trailing_logs"
                        | "redundancy_zone_tag"
                        | "disable_upgrade_migration"
                        | "upgrade_version_tag" => {}
                        _ => return Err(ctx.unknown(&path)),
                    }
                }
            }
            "ports" => {
                let p = &mut s.ports;
                for (k, item) in ctx.object(key, v)? {
                    let path = join(key, k);
                    let slot = match k.as_str() {
                        "dns" => &mut p.dns,
                        "http" => &mut p.http,
                        "https" => &mut p.https,
                        "grpc" => &mut p.grpc,
                        "grpc_tls" => &mut p.grpc_tls,
                        "serf_lan" => &mut p.serf_lan,
                        "serf_wan" => &mut p.serf_wan,
                        "server" => &mut p.server,
                        _ => return Err(ctx.unknown(&path)),
                    };
                    *slot = Some(ctx.listener_port(&path, item)?);
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Merge `later` over `self`: scalars later-wins, lists appended, maps
    /// merged key by key.
    pub fn merge(&mut self, later: AgentSettings) {
        fn over<T>(dst: &mut Option<T>, src: Option<T>) {
            if src.is_some() {
                *dst = src;
            }
        }
        let l = later;
        over(&mut self.server, l.server);
        over(&mut self.bootstrap, l.bootstrap);
        over(&mut self.bootstrap_expect, l.bootstrap_expect);
        over(&mut self.datacenter, l.datacenter);
        over(&mut self.primary_datacenter, l.primary_datacenter);
        over(&mut self.data_dir, l.data_dir);
        over(&mut self.ui_dir, l.ui_dir);
        over(&mut self.ui, l.ui);
        over(&mut self.encrypt, l.encrypt);
        over(&mut self.encrypt_verify_incoming, l.encrypt_verify_incoming);
        over(&mut self.encrypt_verify_outgoing, l.encrypt_verify_outgoing);
        over(&mut self.addresses.http, l.addresses.http);
        over(&mut self.addresses.https, l.addresses.https);
        over(&mut self.addresses.dns, l.addresses.dns);
        over(&mut self.addresses.grpc, l.addresses.grpc);
        over(&mut self.ports.dns, l.ports.dns);
        over(&mut self.ports.http, l.ports.http);
        over(&mut self.ports.https, l.ports.https);
        over(&mut self.ports.grpc, l.ports.grpc);
        over(&mut self.ports.grpc_tls, l.ports.grpc_tls);
        over(&mut self.ports.serf_lan, l.ports.serf_lan);
        over(&mut self.ports.serf_wan, l.ports.serf_wan);
        over(&mut self.ports.server, l.ports.server);
        over(&mut self.bind_addr, l.bind_addr);
        over(&mut self.advertise_addr, l.advertise_addr);
        over(&mut self.advertise_addr_wan, l.advertise_addr_wan);
        over(&mut self.client_addr, l.client_addr);
        over(&mut self.retry_interval, l.retry_interval);
        over(&mut self.retry_max, l.retry_max);
        over(&mut self.pid_file, l.pid_file);
        over(&mut self.node_name, l.node_name);
        over(&mut self.node_id, l.node_id);
        over(&mut self.log_level, l.log_level);
        over(&mut self.log_json, l.log_json);
        over(&mut self.log_file, l.log_file);
        over(&mut self.log_rotate_bytes, l.log_rotate_bytes);
        over(&mut self.log_rotate_duration, l.log_rotate_duration);
        over(&mut self.log_rotate_max_files, l.log_rotate_max_files);
        over(&mut self.enable_script_checks, l.enable_script_checks);
        over(
            &mut self.enable_local_script_checks,
            l.enable_local_script_checks,
        );
        over(&mut self.check_update_interval, l.check_update_interval);
        over(&mut self.check_output_max_size, l.check_output_max_size);
        over(&mut self.session_ttl_min, l.session_ttl_min);
        over(&mut self.domain, l.domain);
        over(&mut self.alt_domain, l.alt_domain);
        over(&mut self.leave_on_terminate, l.leave_on_terminate);
        over(&mut self.raft_snapshot_threshold, l.raft_snapshot_threshold);
        over(&mut self.rpc_hold_timeout, l.rpc_hold_timeout);
        let (a, la) = (&mut self.autopilot, l.autopilot);
        over(&mut a.cleanup_dead_servers, la.cleanup_dead_servers);
        over(
            &mut a.server_stabilization_time,
            la.server_stabilization_time,
        );
        over(&mut a.min_quorum, la.min_quorum);
        over(&mut self.raft_trailing_logs, l.raft_trailing_logs);
        over(&mut self.skip_leave_on_interrupt, l.skip_leave_on_interrupt);
        over(&mut self.rejoin_after_leave, l.rejoin_after_leave);
        self.start_join.extend(l.start_join);
        self.retry_join.extend(l.retry_join);
        self.start_join_wan.extend(l.start_join_wan);
        self.retry_join_wan.extend(l.retry_join_wan);
        self.recursors.extend(l.recursors);
        self.watches.extend(l.watches);
        self.tls.merge(l.tls);
        self.node_meta.extend(l.node_meta);
        deep_merge(&mut self.ui_config, &l.ui_config);
        deep_merge(&mut self.dns_config, &l.dns_config);
        deep_merge(&mut self.performance, &l.performance);
        deep_merge(&mut self.limits, &l.limits);
        deep_merge(&mut self.acl, &l.acl);
        deep_merge(&mut self.telemetry, &l.telemetry);
    }

    /// Copy the settings the engine's agent takes into `cfg` (those set in
    /// a file; the rest keep `cfg`'s values, e.g. from flags or defaults).
    #[allow(
        dead_code,
        reason = "the agent command calls it once it loads config files"
    )]
    pub fn apply_to_agent(&self, cfg: &mut AgentConfig) {
        if let Some(on) = self.enable_script_checks {
            cfg.enable_script_checks = on;
        }
        if let Some(on) = self.enable_local_script_checks {
            cfg.enable_local_script_checks = on;
        }
        if let Some(d) = self.check_update_interval {
            cfg.check_update_interval = d;
        }
        if let Some(n) = self.check_output_max_size {
            cfg.check_output_max_size = usize::try_from(n).unwrap_or(usize::MAX);
        }
        cfg.node_meta.extend(self.node_meta.clone());
    }
}

/// `encrypt`: base64 (standard alphabet) of 16, 24 or 32 bytes.
fn gossip_key(ctx: Ctx<'_>, key: &str, v: &Value) -> Result<String, ConfigError> {
    let text = ctx.string(key, v)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|err| ctx.bad(key, format!("gossip key is not valid base64: {err}")))?;
    if ![16, 24, 32].contains(&bytes.len()) {
        return Err(ctx.bad(
            key,
            format!(
                "gossip key must decode to 16, 24 or 32 bytes, not {} (make one with 'muster keygen')",
                bytes.len()
            ),
        ));
    }
    Ok(text)
}
