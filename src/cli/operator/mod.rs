//! `muster operator raft list-peers [-stale]` and `muster operator raft
//! remove-peer -id=<id> | -address=<ip:port>` (consul-compat.md §11.3):
//! clients of `GET /v1/operator/raft/configuration` and
//! `DELETE /v1/operator/raft/peer`, with Consul's table and messages;
//! `muster operator autopilot ...` is `autopilot.rs`.

pub mod autopilot;

use std::process::ExitCode;

use anyhow::bail;
use bytes::Bytes;
use hyper::Method;
use serde::Deserialize;

use super::http::{query_value, Client, HttpArgs};
use super::members::{block_on, get_json, write};
use super::services::say;
use super::table::columnize;

/// `muster operator`.
#[derive(Debug, clap::Args)]
pub struct OperatorArgs {
    /// The operator area.
    #[command(subcommand)]
    pub command: OperatorCommand,
}

/// The operator areas.
#[derive(Debug, clap::Subcommand)]
pub enum OperatorCommand {
    /// Inspect and change the raft configuration of the servers.
    Raft(RaftArgs),
    /// Read and change the autopilot configuration; show the servers'
    /// health as autopilot sees it.
    Autopilot(autopilot::AutopilotArgs),
}

/// `muster operator raft`.
#[derive(Debug, clap::Args)]
pub struct RaftArgs {
    /// The raft operation.
    #[command(subcommand)]
    pub command: RaftCommand,
}

/// The raft operations.
#[derive(Debug, clap::Subcommand)]
pub enum RaftCommand {
    /// List the raft peers: `Node  ID  Address  State  Voter  RaftProtocol`.
    ListPeers(ListPeersArgs),
    /// Remove a (dead) server from the raft configuration.
    RemovePeer(RemovePeerArgs),
}

/// `muster operator raft list-peers`.
#[derive(Debug, clap::Args)]
pub struct ListPeersArgs {
    /// Agent address.
    #[command(flatten)]
    pub http: HttpArgs,
    /// Let any server answer, possibly with a stale configuration.
    #[arg(long)]
    pub stale: bool,
}

/// `muster operator raft remove-peer`.
#[derive(Debug, clap::Args)]
pub struct RemovePeerArgs {
    /// Agent address.
    #[command(flatten)]
    pub http: HttpArgs,
    /// The server's raft ID.
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// The server's RPC address, `ip:port`.
    #[arg(long, value_name = "IP:PORT")]
    pub address: Option<String>,
}

/// Consul's `api.RaftServer` (the fields the table shows).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RaftServer {
    #[serde(default, rename = "ID")]
    pub id: String,
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub leader: bool,
    #[serde(default)]
    pub protocol_version: String,
    #[serde(default)]
    pub voter: bool,
}

/// Consul's `api.RaftConfiguration`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RaftConfiguration {
    #[serde(default)]
    pub servers: Option<Vec<RaftServer>>,
    #[serde(default)]
    pub index: u64,
}

/// Run an operator command.
pub fn run(args: OperatorArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        OperatorCommand::Raft(RaftArgs {
            command: RaftCommand::ListPeers(a),
        }) => list_peers(a),
        OperatorCommand::Raft(RaftArgs {
            command: RaftCommand::RemovePeer(a),
        }) => remove_peer(a),
        OperatorCommand::Autopilot(a) => autopilot::run(a),
    }
}

fn list_peers(args: ListPeersArgs) -> anyhow::Result<ExitCode> {
    block_on(async {
        let client = Client::new(&args.http)?;
        let path = if args.stale {
            "/v1/operator/raft/configuration?stale"
        } else {
            "/v1/operator/raft/configuration"
        };
        let config: RaftConfiguration = get_json(
            &client,
            path,
            "Error getting peers: Failed to retrieve raft configuration",
        )
        .await?;
        say(peers_table(&config).trim_end())?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Consul's peer table; State is `leader` or `follower`, an empty protocol
/// version shows as `<=1`.
fn peers_table(config: &RaftConfiguration) -> String {
    let header = ["Node", "ID", "Address", "State", "Voter", "RaftProtocol"];
    let mut rows = vec![header.map(String::from).to_vec()];
    for s in config.servers.iter().flatten() {
        let state = if s.leader { "leader" } else { "follower" };
        let protocol = match s.protocol_version.as_str() {
            "" => "<=1",
            v => v,
        };
        rows.push(vec![
            s.node.clone(),
            s.id.clone(),
            s.address.clone(),
            state.to_string(),
            s.voter.to_string(),
            protocol.to_string(),
        ]);
    }
    columnize(&rows)
}

/// The request path and the success message for `remove-peer`.
fn remove_peer_request(args: &RemovePeerArgs) -> anyhow::Result<(String, String)> {
    let id = args.id.as_deref().filter(|s| !s.is_empty());
    let address = args.address.as_deref().filter(|s| !s.is_empty());
    match (id, address) {
        (Some(_), Some(_)) => bail!("Error removing peer: cannot give both an address and id"),
        (None, None) => {
            bail!("Error removing peer: an address or id is required for the peer to remove")
        }
        (Some(id), None) => Ok((
            format!("/v1/operator/raft/peer?id={}", query_value(id)),
            format!("Removed peer with id {id:?}"),
        )),
        (None, Some(addr)) => Ok((
            format!("/v1/operator/raft/peer?address={}", query_value(addr)),
            format!("Removed peer with address {addr:?}"),
        )),
    }
}

fn remove_peer(args: RemovePeerArgs) -> anyhow::Result<ExitCode> {
    let (path, message) = remove_peer_request(&args)?;
    block_on(async {
        let client = Client::new(&args.http)?;
        write(
            &client,
            Method::DELETE,
            &path,
            Bytes::new(),
            "Error removing peer",
        )
        .await?;
        say(&message)?;
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(node: &str, id: &str, leader: bool, voter: bool, proto: &str) -> RaftServer {
        RaftServer {
            id: id.into(),
            node: node.into(),
            address: format!("10.0.0.{}:8300", node.len()),
            leader,
            protocol_version: proto.into(),
            voter,
        }
    }

    #[test]
    fn list_peers_table_matches_consul() {
        let config = RaftConfiguration {
            servers: Some(vec![
                server("s1", "2a1e-id", true, true, "3"),
                server("srv-two", "9c", false, false, ""),
            ]),
            index: 7,
        };
        assert_eq!(
            peers_table(&config),
            "Node     ID       Address        State     Voter  RaftProtocol\n\
             s1       2a1e-id  10.0.0.2:8300  leader    true   3\n\
             srv-two  9c       10.0.0.7:8300  follower  false  <=1\n"
        );
    }

    #[test]
    fn remove_peer_needs_exactly_one_selector() -> anyhow::Result<()> {
        let args = |id: Option<&str>, address: Option<&str>| RemovePeerArgs {
            http: HttpArgs::default(),
            id: id.map(String::from),
            address: address.map(String::from),
        };
        assert!(remove_peer_request(&args(None, None)).is_err());
        assert!(remove_peer_request(&args(Some("a"), Some("b"))).is_err());
        assert_eq!(
            remove_peer_request(&args(None, Some("10.0.0.1:8300")))?,
            (
                "/v1/operator/raft/peer?address=10.0.0.1%3A8300".to_string(),
                "Removed peer with address \"10.0.0.1:8300\"".to_string()
            )
        );
        assert_eq!(
            remove_peer_request(&args(Some("abc"), None))?.0,
            "/v1/operator/raft/peer?id=abc"
        );
        Ok(())
    }
}
