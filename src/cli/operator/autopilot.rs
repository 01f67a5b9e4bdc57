//! `muster operator autopilot get-config | set-config | state`
//! (consul-compat.md §11.3): clients of `/v1/operator/autopilot/
//! configuration` and `/v1/operator/autopilot/state` with Consul's flags,
//! text and messages. `set-config` reads the configuration, changes only
//! the fields whose flags are given and writes it back with `?cas=`, so a
//! concurrent change is never overwritten.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use muster_api::autopilot::AutopilotConfiguration;
use serde::{Deserialize, Serialize};

use super::super::http::{Client, HttpArgs};
use super::super::members::{block_on, get_json};
use super::super::services::say;

/// `muster operator autopilot`.
#[derive(Debug, clap::Args)]
pub struct AutopilotArgs {
    /// The autopilot operation.
    #[command(subcommand)]
    pub command: AutopilotCommand,
}

/// The autopilot operations.
#[derive(Debug, clap::Subcommand)]
pub enum AutopilotCommand {
    /// Display the current autopilot configuration.
    GetConfig(GetConfigArgs),
    /// Modify the autopilot configuration (only the fields given change).
    SetConfig(SetConfigArgs),
    /// Display autopilot's view of the servers: health, failure tolerance,
    /// leader and voters.
    State(StateArgs),
}

/// `muster operator autopilot get-config`.
#[derive(Debug, clap::Args)]
pub struct GetConfigArgs {
    /// Agent address.
    #[command(flatten)]
    pub http: HttpArgs,
    /// Let any server answer, possibly with a stale configuration.
    #[arg(long)]
    pub stale: bool,
}

/// `muster operator autopilot set-config`: each flag, when given, replaces
/// one field.
#[derive(Debug, clap::Args)]
pub struct SetConfigArgs {
    /// Agent address.
    #[command(flatten)]
    pub http: HttpArgs,
    /// Remove dead servers from raft automatically (`true|false`).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub cleanup_dead_servers: Option<String>,
    /// Log entries a server may trail the leader by and stay healthy.
    #[arg(long, value_name = "N")]
    pub max_trailing_logs: Option<String>,
    /// Never prune dead servers below this many voters.
    #[arg(long, value_name = "N")]
    pub min_quorum: Option<String>,
    /// Longest time without leader contact for a healthy server (`200ms`).
    #[arg(long, value_name = "DURATION")]
    pub last_contact_threshold: Option<String>,
    /// How long a server must be failed before it is removed (`10s`).
    #[arg(long, value_name = "DURATION")]
    pub server_stabilization_time: Option<String>,
    /// (Enterprise-only in Consul; kept, no effect) node meta key of the
    /// redundancy zone.
    #[arg(long, value_name = "TAG")]
    pub redundancy_zone_tag: Option<String>,
    /// (Enterprise-only in Consul; kept, no effect) `true|false`.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub disable_upgrade_migration: Option<String>,
    /// (Enterprise-only in Consul; kept, no effect) node meta key of the
    /// version for upgrade migrations.
    #[arg(long, value_name = "TAG")]
    pub upgrade_version_tag: Option<String>,
}

/// `muster operator autopilot state`.
#[derive(Debug, clap::Args)]
pub struct StateArgs {
    /// Agent address.
    #[command(flatten)]
    pub http: HttpArgs,
    /// Let any server answer (its own view) instead of the leader.
    #[arg(long)]
    pub stale: bool,
    /// Output format: `pretty` or `json`.
    #[arg(long, value_name = "FORMAT", default_value = "pretty")]
    pub format: String,
}

/// Run an autopilot command.
pub fn run(args: AutopilotArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AutopilotCommand::GetConfig(a) => get_config(a),
        AutopilotCommand::SetConfig(a) => set_config(a),
        AutopilotCommand::State(a) => state(a),
    }
}

const GET_FAILED: &str = "Error querying Autopilot configuration";

fn config_path(stale: bool) -> &'static str {
    if stale {
        "/v1/operator/autopilot/configuration?stale"
    } else {
        "/v1/operator/autopilot/configuration"
    }
}

fn get_config(args: GetConfigArgs) -> anyhow::Result<ExitCode> {
    block_on(async {
        let client = Client::new(&args.http)?;
        let config: AutopilotConfiguration =
            get_json(&client, config_path(args.stale), GET_FAILED).await?;
        say(config_text(&config).trim_end())?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Consul's `get-config` lines.
fn config_text(c: &AutopilotConfiguration) -> String {
    let d = muster_engine::duration::format;
    format!(
        "CleanupDeadServers = {}\nLastContactThreshold = {}\nMaxTrailingLogs = {}\n\
         MinQuorum = {}\nServerStabilizationTime = {}\nRedundancyZoneTag = {:?}\n\
         DisableUpgradeMigration = {}\nUpgradeVersionTag = {:?}\n",
        c.cleanup_dead_servers,
        d(c.last_contact_threshold),
        c.max_trailing_logs,
        c.min_quorum,
        d(c.server_stabilization_time),
        c.redundancy_zone_tag,
        c.disable_upgrade_migration,
        c.upgrade_version_tag,
    )
}

/// Go's `strconv.ParseBool`.
fn go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn bool_flag(name: &str, v: &str) -> anyhow::Result<bool> {
    go_bool(v).ok_or_else(|| {
        anyhow!(
            "Failed to parse args: invalid boolean value {v:?} for -{name}: \
             strconv.ParseBool: parsing {v:?}: invalid syntax"
        )
    })
}

fn uint_flag(name: &str, v: &str, max: u64) -> anyhow::Result<u64> {
    let why = match v.parse::<u64>() {
        Ok(n) if n <= max => return Ok(n),
        Ok(_) => "value out of range",
        Err(_) => "invalid syntax",
    };
    bail!("Failed to parse args: invalid value {v:?} for flag -{name}: strconv.ParseUint: parsing {v:?}: {why}")
}

fn duration_flag(name: &str, v: &str) -> anyhow::Result<Duration> {
    muster_engine::duration::parse(v)
        .map_err(|e| anyhow!("Failed to parse args: invalid value {v:?} for flag -{name}: {e}"))
}

/// `config` with the given flags applied (the others untouched).
fn merge(
    args: &SetConfigArgs,
    mut config: AutopilotConfiguration,
) -> anyhow::Result<AutopilotConfiguration> {
    if let Some(v) = &args.cleanup_dead_servers {
        config.cleanup_dead_servers = bool_flag("cleanup-dead-servers", v)?;
    }
    if let Some(v) = &args.max_trailing_logs {
        config.max_trailing_logs = uint_flag("max-trailing-logs", v, u64::MAX)?;
    }
    if let Some(v) = &args.min_quorum {
        let n = uint_flag("min-quorum", v, u64::from(u32::MAX))?;
        config.min_quorum = u32::try_from(n).unwrap_or(u32::MAX);
    }
    if let Some(v) = &args.last_contact_threshold {
        config.last_contact_threshold = duration_flag("last-contact-threshold", v)?;
    }
    if let Some(v) = &args.server_stabilization_time {
        config.server_stabilization_time = duration_flag("server-stabilization-time", v)?;
    }
    if let Some(v) = &args.redundancy_zone_tag {
        config.redundancy_zone_tag = v.clone();
    }
    if let Some(v) = &args.disable_upgrade_migration {
        config.disable_upgrade_migration = bool_flag("disable-upgrade-migration", v)?;
    }
    if let Some(v) = &args.upgrade_version_tag {
        config.upgrade_version_tag = v.clone();
    }
    Ok(config)
}

fn set_config(args: SetConfigArgs) -> anyhow::Result<ExitCode> {
    // Flags are checked before anything is sent.
    merge(&args, AutopilotConfiguration::default())?;
    block_on(async {
        let client = Client::new(&args.http)?;
        let current: AutopilotConfiguration =
            get_json(&client, config_path(false), GET_FAILED).await?;
        let config = merge(&args, current)?;
        let body = serde_json::to_vec(&config)?;
        let path = format!(
            "/v1/operator/autopilot/configuration?cas={}",
            config.modify_index
        );
        let fail = "Error setting Autopilot configuration";
        let reply = client
            .request(Method::PUT, &path, Bytes::from(body))
            .await
            .map_err(|e| anyhow!("{fail}: {e:#}"))?;
        if reply.status != StatusCode::OK {
            bail!("{fail}: {}", reply.unexpected());
        }
        if String::from_utf8_lossy(&reply.body).contains("true") {
            say("Configuration updated!")?;
            Ok(ExitCode::SUCCESS)
        } else {
            say("Configuration could not be atomically updated, please try again")?;
            Ok(ExitCode::FAILURE)
        }
    })
}

/// Consul's `api.AutopilotServer`, fields in its order.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Server {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    address: String,
    node_status: String,
    version: String,
    last_contact: Option<String>,
    last_term: u64,
    last_index: u64,
    healthy: bool,
    stable_since: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    redundancy_zone: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    upgrade_version: String,
    read_replica: bool,
    status: String,
    meta: Option<BTreeMap<String, String>>,
    node_type: String,
}

/// Consul's `api.AutopilotState` (Enterprise parts passed through).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct State {
    healthy: bool,
    failure_tolerance: i64,
    optimistic_failure_tolerance: i64,
    servers: Option<BTreeMap<String, Server>>,
    leader: String,
    voters: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    read_replicas: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redundancy_zones: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upgrade: Option<serde_json::Value>,
}

fn state(args: StateArgs) -> anyhow::Result<ExitCode> {
    if args.format != "pretty" && args.format != "json" {
        bail!("Unknown format: {}", args.format);
    }
    block_on(async {
        let client = Client::new(&args.http)?;
        let path = if args.stale {
            "/v1/operator/autopilot/state?stale"
        } else {
            "/v1/operator/autopilot/state"
        };
        let state: State = get_json(&client, path, "Error querying Autopilot state").await?;
        let out = if args.format == "json" {
            indent_json(&state)?
        } else {
            state_text(&state)
        };
        say(&out)?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Go's `json.MarshalIndent(v, "", "    ")`.
fn indent_json<T: Serialize>(value: &T) -> anyhow::Result<String> {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    value.serialize(&mut ser)?;
    Ok(String::from_utf8(buf)?)
}

/// Consul's pretty state.
fn state_text(s: &State) -> String {
    let mut out = format!(
        "Healthy:                      {}\n\
         Failure Tolerance:            {}\n\
         Optimistic Failure Tolerance: {}\n\
         Leader:                       {}\nVoters:\n",
        s.healthy, s.failure_tolerance, s.optimistic_failure_tolerance, s.leader
    );
    for v in s.voters.iter().flatten() {
        out.push_str(&format!("   {v}\n"));
    }
    if let Some(replicas) = s.read_replicas.as_ref().filter(|r| !r.is_empty()) {
        out.push_str("Read Replicas:\n");
        for r in replicas {
            out.push_str(&format!("   {r}\n"));
        }
    }
    out.push_str("Servers:\n");
    for srv in s.servers.iter().flat_map(BTreeMap::values) {
        out.push_str(&server_text(srv));
    }
    out
}

fn server_text(srv: &Server) -> String {
    let mut out = format!("   {}\n", srv.id);
    let mut line = |label: &str, value: &str| {
        out.push_str(&format!("      {:<17}{value}\n", format!("{label}:")));
    };
    line("Name", &srv.name);
    line("Address", &srv.address);
    line("Version", &srv.version);
    line("Status", &srv.status);
    line("Node Type", &srv.node_type);
    line("Node Status", &srv.node_status);
    line("Healthy", &srv.healthy.to_string());
    line("Last Contact", srv.last_contact.as_deref().unwrap_or("0s"));
    line("Last Term", &srv.last_term.to_string());
    line("Last Index", &srv.last_index.to_string());
    if !srv.redundancy_zone.is_empty() {
        line("Redundancy Zone", &srv.redundancy_zone);
    }
    if !srv.upgrade_version.is_empty() {
        line("Upgrade Version", &srv.upgrade_version);
    }
    if srv.read_replica {
        line("Read Replica", "true");
    }
    if let Some(meta) = srv.meta.as_ref().filter(|m| !m.is_empty()) {
        out.push_str("      Meta\n");
        for (k, v) in meta {
            out.push_str(&format!("         {k:?}: {v:?}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_args() -> SetConfigArgs {
        SetConfigArgs {
            http: HttpArgs::default(),
            cleanup_dead_servers: None,
            max_trailing_logs: None,
            min_quorum: None,
            last_contact_threshold: None,
            server_stabilization_time: None,
            redundancy_zone_tag: None,
            disable_upgrade_migration: None,
            upgrade_version_tag: None,
        }
    }

    #[test]
    fn autopilot_get_config_text_matches_consul() {
        assert_eq!(
            config_text(&AutopilotConfiguration::default()),
            "CleanupDeadServers = true\nLastContactThreshold = 200ms\nMaxTrailingLogs = 250\n\
             MinQuorum = 0\nServerStabilizationTime = 10s\nRedundancyZoneTag = \"\"\n\
             DisableUpgradeMigration = false\nUpgradeVersionTag = \"\"\n"
        );
    }

    #[test]
    fn autopilot_set_config_changes_only_given_flags() -> anyhow::Result<()> {
        let mut args = set_args();
        args.cleanup_dead_servers = Some("false".into());
        args.server_stabilization_time = Some("2s".into());
        args.redundancy_zone_tag = Some("zone".into());
        let before = AutopilotConfiguration {
            modify_index: 7,
            ..AutopilotConfiguration::default()
        };
        let after = merge(&args, before.clone())?;
        assert_eq!(
            after,
            AutopilotConfiguration {
                cleanup_dead_servers: false,
                server_stabilization_time: Duration::from_secs(2),
                redundancy_zone_tag: "zone".into(),
                ..before
            }
        );
        let mut bad = set_args();
        bad.last_contact_threshold = Some("soon".into());
        let err = merge(&bad, AutopilotConfiguration::default())
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "Failed to parse args: invalid value \"soon\" for flag -last-contact-threshold: \
                 time: invalid duration \"soon\""
            )
        );
        let mut bad = set_args();
        bad.cleanup_dead_servers = Some("maybe".into());
        assert!(merge(&bad, AutopilotConfiguration::default()).is_err());
        Ok(())
    }

    #[test]
    fn autopilot_state_text_matches_consul() -> anyhow::Result<()> {
        let state: State = serde_json::from_str(
            r#"{"Healthy":true,"FailureTolerance":1,"OptimisticFailureTolerance":1,
            "Servers":{"id1":{"ID":"id1","Name":"node1","Address":"198.18.0.1:8300",
            "NodeStatus":"alive","Version":"1.20.0","LastContact":"0s","LastTerm":0,
            "LastIndex":42,"Healthy":true,"StableSince":"2020-11-06T14:51:00Z",
            "ReadReplica":false,"Status":"leader","Meta":{"foo":"bar"},"NodeType":"voter"}},
            "Leader":"id1","Voters":["id1"]}"#,
        )?;
        assert_eq!(
            state_text(&state),
            "Healthy:                      true\n\
             Failure Tolerance:            1\n\
             Optimistic Failure Tolerance: 1\n\
             Leader:                       id1\n\
             Voters:\n   id1\n\
             Servers:\n   id1\n\
             \x20     Name:            node1\n\
             \x20     Address:         198.18.0.1:8300\n\
             \x20     Version:         1.20.0\n\
             \x20     Status:          leader\n\
             \x20     Node Type:       voter\n\
             \x20     Node Status:     alive\n\
             \x20     Healthy:         true\n\
             \x20     Last Contact:    0s\n\
             \x20     Last Term:       0\n\
             \x20     Last Index:      42\n\
             \x20     Meta\n\
             \x20        \"foo\": \"bar\"\n"
        );
        let json = indent_json(&state)?;
        assert!(json.starts_with("{\n    \"Healthy\": true,\n    \"FailureTolerance\": 1,"));
        assert!(!json.contains("ReadReplicas"), "{json}");
        Ok(())
    }
}
