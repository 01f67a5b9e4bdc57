//! `muster info`: the agent's stats in `consul info`'s layout, sorted
//! `section:` headers each followed by tab-indented `key = value` lines
//! (consul-compat.md §11.3).
//!
//! The agent's own `Stats` from `GET /v1/agent/self` are printed as given;
//! sections and keys the agent leaves out are derived from other reads:
//! `build` from the self document, `agent` from the local services and
//! checks, `consul` and `raft` (servers) from `/v1/status/leader` and
//! `/v1/operator/raft/configuration`, `serf_lan`/`serf_wan` from
//! `/v1/agent/members`. Only the self read is required; a derived source
//! that fails leaves its keys out.

use std::collections::BTreeMap;
use std::process::ExitCode;

use serde::Deserialize;
use serde_json::Value;

use super::http::{Client, HttpArgs};
use super::members::{block_on, get_json, Member};
use super::operator::RaftConfiguration;
use super::services::say;

/// Section → key → value.
type Stats = BTreeMap<String, BTreeMap<String, String>>;

/// `muster info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// Agent address.
    #[command(flatten)]
    pub http: HttpArgs,
}

/// The parts of `/v1/agent/self` used here.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AgentSelf {
    #[serde(default)]
    config: SelfConfig,
    #[serde(default)]
    stats: Option<BTreeMap<String, BTreeMap<String, Value>>>,
}

/// `/v1/agent/self`'s `Config`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SelfConfig {
    #[serde(default)]
    node_name: String,
    #[serde(default, rename = "NodeID")]
    node_id: String,
    #[serde(default)]
    revision: String,
    #[serde(default)]
    server: bool,
    #[serde(default)]
    version: String,
}

/// A local check's type (for the TTL and script counts).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CheckType {
    #[serde(default, rename = "Type")]
    kind: String,
}

/// Everything `info` read; `None` where a read failed.
#[derive(Debug, Default)]
struct Sources {
    this: AgentSelf,
    services: Option<usize>,
    checks: Option<Vec<CheckType>>,
    leader: Option<String>,
    raft: Option<RaftConfiguration>,
    lan: Option<Vec<Member>>,
    wan: Option<Vec<Member>>,
}

/// Read the agent and print its stats.
pub fn run(args: InfoArgs) -> anyhow::Result<ExitCode> {
    block_on(async {
        let client = Client::new(&args.http)?;
        let this: AgentSelf = get_json(&client, "/v1/agent/self", "Error querying agent").await?;
        let server = this.config.server;
        let services: Option<BTreeMap<String, Value>> =
            get_json(&client, "/v1/agent/services", "").await.ok();
        let checks: Option<BTreeMap<String, CheckType>> =
            get_json(&client, "/v1/agent/checks", "").await.ok();
        let mut src = Sources {
            this,
            services: services.map(|s| s.len()),
            checks: checks.map(|c| c.into_values().collect()),
            lan: get_json(&client, "/v1/agent/members", "").await.ok(),
            ..Sources::default()
        };
        if server {
            src.leader = get_json(&client, "/v1/status/leader", "").await.ok();
            src.raft = get_json(&client, "/v1/operator/raft/configuration", "")
                .await
                .ok();
            src.wan = get_json(&client, "/v1/agent/members?wan=1", "").await.ok();
        }
        say(render(&stats(&src)).trim_end())?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The agent's stats, completed with derived ones.
fn stats(src: &Sources) -> Stats {
    let mut out = derived(src);
    for (section, values) in src.this.stats.iter().flatten() {
        let entry = out.entry(section.clone()).or_default();
        for (key, value) in values {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            entry.insert(key.clone(), text);
        }
    }
    out
}

/// The stats derived from the reads other than the agent's own `Stats`.
fn derived(src: &Sources) -> Stats {
    let cfg = &src.this.config;
    let mut out = Stats::new();
    let mut put = |section: &str, key: &str, value: String| {
        out.entry(section.to_string())
            .or_default()
            .insert(key.to_string(), value);
    };
    put("build", "prerelease", String::new());
    put("build", "revision", cfg.revision.clone());
    put("build", "version", cfg.version.clone());
    if let Some(n) = src.services {
        put("agent", "services", n.to_string());
    }
    if let Some(checks) = &src.checks {
        let of = |kind: &str| checks.iter().filter(|c| c.kind == kind).count();
        put("agent", "checks", checks.len().to_string());
        put("agent", "check_ttls", of("ttl").to_string());
        put("agent", "check_monitors", of("script").to_string());
    }
    put("consul", "server", cfg.server.to_string());
    if !cfg.server {
        if let Some(lan) = &src.lan {
            let known = lan
                .iter()
                .filter(|m| m.tag("role") == "consul" && m.status_name() == "alive")
                .count();
            put("consul", "known_servers", known.to_string());
        }
    }
    if let Some(leader) = &src.leader {
        put("consul", "leader_addr", leader.clone());
    }
    if let Some(raft) = &src.raft {
        let servers = raft.servers.as_deref().unwrap_or_default();
        let me = servers
            .iter()
            .find(|s| (!cfg.node_id.is_empty() && s.id == cfg.node_id) || s.node == cfg.node_name);
        let leader = me.is_some_and(|s| s.leader);
        put("consul", "leader", leader.to_string());
        let state = match me {
            Some(s) if s.leader => "Leader",
            Some(_) => "Follower",
            None => "Unknown",
        };
        put("raft", "state", state.to_string());
        let others = servers
            .iter()
            .filter(|s| s.voter && me.is_none_or(|m| m.id != s.id))
            .count();
        put("raft", "num_peers", others.to_string());
        put("raft", "latest_configuration_index", raft.index.to_string());
        let config: Vec<String> = servers
            .iter()
            .map(|s| {
                let suffrage = if s.voter { "Voter" } else { "Nonvoter" };
                format!("{{Suffrage:{suffrage} ID:{} Address:{}}}", s.id, s.address)
            })
            .collect();
        put(
            "raft",
            "latest_configuration",
            format!("[{}]", config.join(" ")),
        );
        put("raft", "protocol_version", "3".into());
        put("raft", "protocol_version_min", "0".into());
        put("raft", "protocol_version_max", "3".into());
    }
    for (section, members) in [("serf_lan", &src.lan), ("serf_wan", &src.wan)] {
        if let Some(members) = members {
            let of = |status: &str| members.iter().filter(|m| m.status_name() == status).count();
            put(section, "members", members.len().to_string());
            put(section, "failed", of("failed").to_string());
            put(section, "left", of("left").to_string());
        }
    }
    out
}

/// `section:` then `\tkey = value` lines, all sorted.
fn render(stats: &Stats) -> String {
    let mut out = String::new();
    for (section, values) in stats {
        out.push_str(section);
        out.push_str(":\n");
        for (key, value) in values {
            out.push_str(&format!("\t{key} = {value}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_derives_and_merges_sections() -> anyhow::Result<()> {
        let this: AgentSelf = serde_json::from_str(
            r#"{"Config":{"NodeName":"s1","NodeID":"id-1","Revision":"abc","Server":true,
                 "Version":"0.1.0"},
                "Stats":{"runtime":{"os":"linux"},"raft":{"term":3,"state":"Candidate"}}}"#,
        )?;
        let raft: RaftConfiguration = serde_json::from_str(
            r#"{"Servers":[{"ID":"id-1","Node":"s1","Address":"10.0.0.1:8300","Leader":true,
                "Voter":true},{"ID":"id-2","Node":"s2","Address":"10.0.0.2:8300",
                "Leader":false,"Voter":true}],"Index":9}"#,
        )?;
        let lan: Vec<Member> = serde_json::from_str(
            r#"[{"Name":"s1","Status":1},{"Name":"s2","Status":4},{"Name":"c1","Status":3}]"#,
        )?;
        let src = Sources {
            this,
            services: Some(2),
            checks: Some(vec![
                CheckType { kind: "ttl".into() },
                CheckType {
                    kind: "http".into(),
                },
            ]),
            leader: Some("10.0.0.1:8300".into()),
            raft: Some(raft),
            lan: Some(lan),
            wan: None,
        };
        let text = render(&stats(&src));
        assert!(
            text.starts_with(
                "agent:\n\tcheck_monitors = 0\n\tcheck_ttls = 1\n\tchecks = 2\n\tservices = 2\n\
             build:\n\tprerelease = \n\trevision = abc\n\tversion = 0.1.0\n\
             consul:\n\tleader = true\n\tleader_addr = 10.0.0.1:8300\n\tserver = true\n\
             raft:\n\tlatest_configuration = [{Suffrage:Voter ID:id-1 Address:10.0.0.1:8300} \
             {Suffrage:Voter ID:id-2 Address:10.0.0.2:8300}]\n\
             \tlatest_configuration_index = 9\n\tnum_peers = 1\n"
            ),
            "{text}"
        );
        // The agent's own stats win over derived ones.
        assert!(text.contains("\tstate = Candidate\n\tterm = 3\nruntime:\n\tos = linux\n"));
        assert!(text.ends_with("serf_lan:\n\tfailed = 1\n\tleft = 1\n\tmembers = 3\n"));
        assert!(!text.contains("serf_wan"));
        Ok(())
    }
}
