//! Server health as Consul's autopilot judges it (raft-autopilot's rules):
//! the per-server facts a backend gathers ([`AutopilotServer`],
//! [`ServerStats`]), the health rule ([`judge`]), the cluster summary
//! (healthy, failure tolerance, leader, voters in Consul's order) and the
//! two JSON shapes built from them: `OperatorHealthReply`
//! (`/v1/operator/autopilot/health`) and `AutopilotState`
//! (`/v1/operator/autopilot/state`). It gathers nothing itself.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use muster_engine::duration;
use serde::{Deserialize, Serialize};

use super::config::{go_duration, AutopilotConfiguration};

/// One server's raft progress as it reports it (Consul's `RaftStats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServerStats {
    /// Time since it last heard from the leader (zero on the leader).
    #[serde(with = "go_duration")]
    pub last_contact: Duration,
    /// The term of its last log entry (0 when unknown).
    pub last_term: u64,
    /// Its last applied log index.
    pub last_index: u64,
}

impl ServerStats {
    /// A server's own progress from its engine's status.
    pub fn of(status: &muster_engine::ClusterStatus) -> ServerStats {
        ServerStats {
            last_contact: if status.is_leader {
                Duration::ZERO
            } else {
                Duration::from_millis(status.last_contact_ms)
            },
            last_term: status.term,
            last_index: status.applied_index,
        }
    }
}

/// A server's gossip status as autopilot names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStatus {
    /// Answering gossip probes.
    Alive,
    /// Failed (or leaving).
    Failed,
    /// Left, or not a gossip member at all.
    Left,
}

impl NodeStatus {
    /// raft-autopilot's name (`AutopilotServer.NodeStatus`).
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Alive => "alive",
            NodeStatus::Failed => "failed",
            NodeStatus::Left => "left",
        }
    }
}

/// One server of the raft configuration, as autopilot sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutopilotServer {
    /// Its ID (the node UUID).
    pub id: String,
    /// Its node name.
    pub name: String,
    /// Its server RPC address, `ip:port`.
    pub address: String,
    /// Its gossip status.
    pub node_status: NodeStatus,
    /// Its Consul version (`1.20.0`).
    pub version: String,
    /// The current leader.
    pub leader: bool,
    /// A voter (false: a learner catching up).
    pub voter: bool,
    /// Its last reported raft progress.
    pub stats: ServerStats,
    /// Whether its stats could be fetched just now.
    pub reachable: bool,
    /// Healthy by [`judge`].
    pub healthy: bool,
    /// When `healthy` last changed (or autopilot first saw it).
    pub stable_since: SystemTime,
    /// Its catalog node meta.
    pub meta: BTreeMap<String, String>,
}

/// raft-autopilot's health rule: alive in gossip, reachable, heard from
/// the leader within the threshold (plus `slack`, the leader's heartbeat
/// interval: a follower is only contacted once per heartbeat), on the
/// leader's term, and at most `MaxTrailingLogs` entries behind it.
/// `leader` is the leader's own stats (`None` without a leader: nobody is
/// healthy then).
pub fn judge(
    server: &AutopilotServer,
    leader: Option<&ServerStats>,
    config: &AutopilotConfiguration,
    slack: Duration,
) -> bool {
    let Some(leader) = leader else {
        return false;
    };
    server.node_status == NodeStatus::Alive
        && server.reachable
        && server.stats.last_contact <= config.last_contact_threshold + slack
        && server.stats.last_term == leader.last_term
        && server
            .stats
            .last_index
            .saturating_add(config.max_trailing_logs)
            >= leader.last_index
}

/// The cluster as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterHealth {
    /// Every server is healthy.
    pub healthy: bool,
    /// Healthy voters beyond a quorum of the voters.
    pub failure_tolerance: usize,
    /// The leader's ID ("" without one).
    pub leader: String,
    /// Voter IDs: the leader, then healthy before unhealthy, longest
    /// stable first among healthy ones (raft-autopilot's order).
    pub voters: Vec<String>,
    /// Every server, voters in the order above, then the others.
    pub servers: Vec<AutopilotServer>,
}

impl ClusterHealth {
    /// Summarise judged servers.
    pub fn new(mut servers: Vec<AutopilotServer>) -> ClusterHealth {
        servers.sort_by(|a, b| {
            let rank = |s: &AutopilotServer| (!s.leader, !s.voter, !s.healthy);
            rank(a).cmp(&rank(b)).then_with(|| {
                // Healthy: stable longest first; unhealthy: most recent first.
                let by_time = a.stable_since.cmp(&b.stable_since);
                let by_time = if a.healthy {
                    by_time
                } else {
                    by_time.reverse()
                };
                by_time.then_with(|| a.id.cmp(&b.id))
            })
        });
        let voters: Vec<&AutopilotServer> = servers.iter().filter(|s| s.voter).collect();
        let healthy_voters = voters.iter().filter(|s| s.healthy).count();
        let quorum = voters.len() / 2 + 1;
        ClusterHealth {
            healthy: servers.iter().all(|s| s.healthy),
            failure_tolerance: healthy_voters.saturating_sub(quorum),
            leader: servers
                .iter()
                .find(|s| s.leader)
                .map(|s| s.id.clone())
                .unwrap_or_default(),
            voters: voters.iter().map(|s| s.id.clone()).collect(),
            servers,
        }
    }
}

/// Consul's `ServerHealth`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServerHealthJson<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    name: &'a str,
    address: &'a str,
    serf_status: &'static str,
    version: &'a str,
    leader: bool,
    last_contact: String,
    last_term: u64,
    last_index: u64,
    healthy: bool,
    voter: bool,
    stable_since: String,
}

/// Consul's `OperatorHealthReply`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct HealthReplyJson<'a> {
    healthy: bool,
    failure_tolerance: usize,
    servers: Vec<ServerHealthJson<'a>>,
}

/// The health reply (`StableSince` rounded to the second, as Consul's
/// HTTP handler does).
pub(crate) fn health_reply(h: &ClusterHealth) -> HealthReplyJson<'_> {
    HealthReplyJson {
        healthy: h.healthy,
        failure_tolerance: h.failure_tolerance,
        servers: h
            .servers
            .iter()
            .map(|s| ServerHealthJson {
                id: &s.id,
                name: &s.name,
                address: &s.address,
                serf_status: s.node_status.as_str(),
                version: &s.version,
                leader: s.leader,
                last_contact: duration::format(s.stats.last_contact),
                last_term: s.stats.last_term,
                last_index: s.stats.last_index,
                healthy: s.healthy,
                voter: s.voter,
                stable_since: rfc3339(round_to_second(s.stable_since)),
            })
            .collect(),
    }
}

/// Consul's `AutopilotServer`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct StateServerJson<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    name: &'a str,
    address: &'a str,
    node_status: &'static str,
    version: &'a str,
    last_contact: String,
    last_term: u64,
    last_index: u64,
    healthy: bool,
    stable_since: String,
    read_replica: bool,
    status: &'static str,
    meta: &'a BTreeMap<String, String>,
    node_type: &'static str,
}

/// Consul's `AutopilotState` (without the Enterprise-only parts).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct StateJson<'a> {
    healthy: bool,
    failure_tolerance: usize,
    optimistic_failure_tolerance: usize,
    servers: BTreeMap<&'a str, StateServerJson<'a>>,
    leader: &'a str,
    voters: &'a [String],
}

/// The state reply. Without Enterprise's zones and read replicas the
/// optimistic tolerance is the tolerance, as Consul reports it.
pub(crate) fn state_reply(h: &ClusterHealth) -> StateJson<'_> {
    StateJson {
        healthy: h.healthy,
        failure_tolerance: h.failure_tolerance,
        optimistic_failure_tolerance: h.failure_tolerance,
        servers: h
            .servers
            .iter()
            .map(|s| {
                let json = StateServerJson {
                    id: &s.id,
                    name: &s.name,
                    address: &s.address,
                    node_status: s.node_status.as_str(),
                    version: &s.version,
                    last_contact: duration::format(s.stats.last_contact),
                    last_term: s.stats.last_term,
                    last_index: s.stats.last_index,
                    healthy: s.healthy,
                    stable_since: rfc3339(s.stable_since),
                    read_replica: false,
                    status: match (s.leader, s.voter) {
                        (true, _) => "leader",
                        (false, true) => "voter",
                        (false, false) => "non-voter",
                    },
                    meta: &s.meta,
                    node_type: "voter",
                };
                (s.id.as_str(), json)
            })
            .collect(),
        leader: &h.leader,
        voters: &h.voters,
    }
}

fn round_to_second(t: SystemTime) -> SystemTime {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() + u64::from(since.subsec_nanos() >= 500_000_000);
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Go's `time.Time` JSON in UTC (RFC 3339 with nanoseconds, trailing zeros
/// dropped): `2020-11-06T14:51:00.5Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    let nanos = since.subsec_nanos();
    if nanos != 0 {
        out.push_str(format!(".{nanos:09}").trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// The calendar date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for non-negative counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(id: &str, leader: bool, healthy: bool, at: u64) -> AutopilotServer {
        AutopilotServer {
            id: id.into(),
            name: format!("n-{id}"),
            address: "127.0.0.1:8300".into(),
            node_status: NodeStatus::Alive,
            version: "1.20.0".into(),
            leader,
            voter: true,
            stats: ServerStats::default(),
            reachable: true,
            healthy,
            stable_since: UNIX_EPOCH + Duration::from_secs(at),
            meta: BTreeMap::new(),
        }
    }

    #[test]
    fn autopilot_rfc3339_matches_go() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::new(1_604_674_260, 500_000_000);
        assert_eq!(rfc3339(t), "2020-11-06T14:51:00.5Z");
        assert_eq!(rfc3339(round_to_second(t)), "2020-11-06T14:51:01Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn autopilot_health_rule_and_failure_tolerance() {
        let config = AutopilotConfiguration::default();
        let leader = ServerStats {
            last_contact: Duration::ZERO,
            last_term: 0,
            last_index: 1000,
        };
        let slack = Duration::from_millis(250);
        let mut s = server("b", false, false, 0);
        s.stats = ServerStats {
            last_contact: Duration::from_millis(300),
            last_term: 0,
            last_index: 800,
        };
        assert!(judge(&s, Some(&leader), &config, slack));
        assert!(!judge(&s, None, &config, slack), "no leader, no health");
        s.stats.last_index = 700;
        assert!(!judge(&s, Some(&leader), &config, slack), "trailing");
        s.stats.last_index = 800;
        s.stats.last_contact = Duration::from_millis(600);
        assert!(!judge(&s, Some(&leader), &config, slack), "stale contact");
        s.stats.last_contact = Duration::ZERO;
        s.node_status = NodeStatus::Failed;
        assert!(
            !judge(&s, Some(&leader), &config, slack),
            "failed in gossip"
        );

        let three = ClusterHealth::new(vec![
            server("c", false, true, 20),
            server("a", true, true, 30),
            server("b", false, true, 10),
        ]);
        assert!(three.healthy);
        assert_eq!(three.failure_tolerance, 1);
        assert_eq!(three.leader, "a");
        assert_eq!(three.voters, ["a", "b", "c"]);
        let one_down = ClusterHealth::new(vec![
            server("c", false, false, 20),
            server("a", true, true, 30),
            server("b", false, true, 10),
        ]);
        assert!(!one_down.healthy);
        assert_eq!(one_down.failure_tolerance, 0);
        assert_eq!(one_down.voters, ["a", "b", "c"]);
    }

    #[test]
    fn autopilot_replies_have_consuls_shapes() -> Result<(), serde_json::Error> {
        let h = ClusterHealth::new(vec![server("a", true, true, 0)]);
        let health = serde_json::to_value(health_reply(&h))?;
        assert_eq!(
            health,
            serde_json::json!({"Healthy":true,"FailureTolerance":0,"Servers":[{
                "ID":"a","Name":"n-a","Address":"127.0.0.1:8300","SerfStatus":"alive",
                "Version":"1.20.0","Leader":true,"LastContact":"0s","LastTerm":0,
                "LastIndex":0,"Healthy":true,"Voter":true,
                "StableSince":"1970-01-01T00:00:00Z"}]})
        );
        let state = serde_json::to_value(state_reply(&h))?;
        assert_eq!(
            state,
            serde_json::json!({"Healthy":true,"FailureTolerance":0,
                "OptimisticFailureTolerance":0,"Servers":{"a":{
                "ID":"a","Name":"n-a","Address":"127.0.0.1:8300","NodeStatus":"alive",
                "Version":"1.20.0","LastContact":"0s","LastTerm":0,"LastIndex":0,
                "Healthy":true,"StableSince":"1970-01-01T00:00:00Z","ReadReplica":false,
                "Status":"leader","Meta":{},"NodeType":"voter"}},
                "Leader":"a","Voters":["a"]})
        );
        Ok(())
    }
}
