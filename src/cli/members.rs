//! `muster members [-detailed] [-status=<regex>] [-wan]`: the gossip pool
//! as the local agent sees it (`GET /v1/agent/members`), in the column
//! layout of `consul members` (consul-compat.md §11.3).
//!
//! Also home to the small helpers the other cluster commands (`join`,
//! `operator`, `keyring`, `info`) share: the runtime, a JSON GET and
//! Consul's `columnize` table. No state; every failure is one line.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use muster_api::filter::Pattern;
use muster_api::MemberStatusCode;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::http::{Client, HttpArgs};
use super::table::columnize;

/// `consul members` exits 2 when no member matches the filters.
const NO_MATCH: u8 = 2;

/// `muster members`.
#[derive(Debug, clap::Args)]
pub struct MembersArgs {
    /// Agent address.
    #[command(flatten)]
    pub http: HttpArgs,
    /// Show every tag of each member instead of the summary columns.
    #[arg(long)]
    pub detailed: bool,
    /// Only members whose status (alive, leaving, left, failed) matches
    /// this regular expression.
    #[arg(long, value_name = "REGEX", default_value = ".*")]
    pub status: String,
    /// List the WAN pool (the servers of every datacenter) instead of the
    /// LAN pool.
    #[arg(long)]
    pub wan: bool,
}

/// Consul's `api.AgentMember` (the fields the tables show).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Member {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub addr: String,
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub status: u64,
}

impl Member {
    /// A tag's value, `""` if absent.
    pub fn tag(&self, key: &str) -> &str {
        self.tags
            .as_ref()
            .and_then(|t| t.get(key))
            .map_or("", String::as_str)
    }

    /// Serf's status name (`alive`, ...; `unknown` for a code outside 0–4).
    pub fn status_name(&self) -> &'static str {
        MemberStatusCode::from_code(self.status).map_or("unknown", MemberStatusCode::as_str)
    }

    /// `addr:port` as Go's `net.TCPAddr` prints it (IPv6 in brackets).
    pub fn address(&self) -> String {
        match self.addr.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, self.port).to_string(),
            Err(_) => format!("{}:{}", self.addr, self.port),
        }
    }
}

/// Run `fut` on a small single-threaded runtime.
pub(super) fn block_on<F>(fut: F) -> anyhow::Result<ExitCode>
where
    F: Future<Output = anyhow::Result<ExitCode>>,
{
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("Error: cannot start the async runtime")?
        .block_on(fut)
}

/// GET `path` and decode a 200's JSON body; other statuses and transport
/// failures become `<context>: <why>`.
pub(super) async fn get_json<T: DeserializeOwned>(
    client: &Client,
    path: &str,
    context: &str,
) -> anyhow::Result<T> {
    let reply = client
        .request(Method::GET, path, Bytes::new())
        .await
        .map_err(|e| anyhow!("{context}: {e:#}"))?;
    if reply.status != StatusCode::OK {
        bail!("{context}: {}", reply.unexpected());
    }
    serde_json::from_slice(&reply.body)
        .map_err(|e| anyhow!("{context}: the agent sent an unreadable reply: {e}"))
}

/// Send a write (`PUT`, `DELETE`, ...) and expect a 200.
pub(super) async fn write(
    client: &Client,
    method: Method,
    path: &str,
    body: Bytes,
    context: &str,
) -> anyhow::Result<()> {
    let reply = client
        .request(method, path, body)
        .await
        .map_err(|e| anyhow!("{context}: {e:#}"))?;
    if reply.status != StatusCode::OK {
        bail!("{context}: {}", reply.unexpected());
    }
    Ok(())
}

/// List the members.
pub fn run(args: MembersArgs) -> anyhow::Result<ExitCode> {
    let status =
        Pattern::new(&args.status).map_err(|e| anyhow!("Failed to compile status regexp: {e}"))?;
    block_on(async {
        let client = Client::new(&args.http)?;
        let path = if args.wan {
            "/v1/agent/members?wan=1"
        } else {
            "/v1/agent/members"
        };
        let members: Vec<Member> = get_json(&client, path, "Error retrieving members").await?;
        let mut members: Vec<Member> = members
            .into_iter()
            .filter(|m| status.is_match(m.status_name()))
            .collect();
        if members.is_empty() {
            return Ok(ExitCode::from(NO_MATCH));
        }
        sort_members(&mut members);
        let table = if args.detailed {
            detailed_table(&members)
        } else {
            standard_table(&members)
        };
        super::services::say(table.trim_end())?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Consul's order: servers first, then by segment, then by name.
fn sort_members(members: &mut [Member]) {
    members.sort_by(|a, b| {
        let key = |m: &Member| (m.tag("role") != "consul", m.tag("segment").to_string());
        key(a).cmp(&key(b)).then_with(|| a.name.cmp(&b.name))
    });
}

/// `Node  Address  Status  Type  Build  Protocol  DC  Partition  Segment`:
/// Type from `role` (`consul` → server, `node` → client, else unknown with
/// the remaining columns empty), Build from `build` cut at `:`, Protocol
/// from `vsn`, DC from `dc`, Partition `default`, Segment `<all>` for
/// servers and `<default>` for clients when untagged.
fn standard_table(members: &[Member]) -> String {
    let header = [
        "Node",
        "Address",
        "Status",
        "Type",
        "Build",
        "Protocol",
        "DC",
        "Partition",
        "Segment",
    ];
    let mut rows = vec![header.map(String::from).to_vec()];
    for m in members {
        let mut row = vec![m.name.clone(), m.address(), m.status_name().to_string()];
        let (kind, default_segment) = match m.tag("role") {
            "consul" => ("server", "<all>"),
            "node" => ("client", "<default>"),
            _ => {
                row.push("unknown".into());
                row.extend(std::iter::repeat_n(String::new(), 5));
                rows.push(row);
                continue;
            }
        };
        let build = match m.tag("build") {
            "" => "< 0.3",
            b => b.split(':').next().unwrap_or(b),
        };
        let partition = match m.tag("ap") {
            "" => "default",
            p => p,
        };
        let segment = match m.tag("segment") {
            "" => default_segment,
            s => s,
        };
        row.extend([kind, build, m.tag("vsn"), m.tag("dc"), partition, segment].map(String::from));
        rows.push(row);
    }
    columnize(&rows)
}

/// `-detailed`: `Node  Address  Status  Tags` with every tag as sorted
/// `k=v` joined by commas.
fn detailed_table(members: &[Member]) -> String {
    let mut rows = vec![["Node", "Address", "Status", "Tags"]
        .map(String::from)
        .to_vec()];
    for m in members {
        let tags = m
            .tags
            .iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        rows.push(vec![
            m.name.clone(),
            m.address(),
            m.status_name().to_string(),
            tags,
        ]);
    }
    columnize(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, addr: &str, status: u64, tags: &[(&str, &str)]) -> Member {
        Member {
            name: name.into(),
            addr: addr.into(),
            port: 8301,
            tags: Some(
                tags.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            status,
        }
    }

    fn cluster() -> Vec<Member> {
        vec![
            member(
                "web-1",
                "10.0.0.21",
                4,
                &[
                    ("role", "node"),
                    ("dc", "dc1"),
                    ("build", "0.1.0:"),
                    ("vsn", "2"),
                ],
            ),
            member(
                "s1",
                "10.0.0.1",
                1,
                &[
                    ("role", "consul"),
                    ("dc", "dc1"),
                    ("build", "0.1.0:abc"),
                    ("vsn", "2"),
                ],
            ),
            member("odd", "::1", 3, &[]),
        ]
    }

    #[test]
    fn members_table_matches_consuls_layout() {
        let mut members = cluster();
        sort_members(&mut members);
        assert_eq!(
            standard_table(&members),
            "Node   Address         Status  Type     Build  Protocol  DC   Partition  Segment\n\
             s1     10.0.0.1:8301   alive   server   0.1.0  2         dc1  default    <all>\n\
             odd    [::1]:8301      left    unknown\n\
             web-1  10.0.0.21:8301  failed  client   0.1.0  2         dc1  default    <default>\n"
        );
    }

    #[test]
    fn members_detailed_shows_sorted_tags() {
        let members = &cluster()[..2];
        assert_eq!(
            detailed_table(members),
            "Node   Address         Status  Tags\n\
             web-1  10.0.0.21:8301  failed  build=0.1.0:,dc=dc1,role=node,vsn=2\n\
             s1     10.0.0.1:8301   alive   build=0.1.0:abc,dc=dc1,role=consul,vsn=2\n"
        );
    }

    #[test]
    fn members_status_filter_is_an_unanchored_regex() -> anyhow::Result<()> {
        let re = Pattern::new("fail|left")?;
        let kept: Vec<String> = cluster()
            .into_iter()
            .filter(|m| re.is_match(m.status_name()))
            .map(|m| m.name)
            .collect();
        assert_eq!(kept, ["web-1", "odd"]);
        assert_eq!(member("x", "h", 9, &[]).status_name(), "unknown");
        assert_eq!(member("x", "host", 0, &[]).address(), "host:8301");
        Ok(())
    }
}
