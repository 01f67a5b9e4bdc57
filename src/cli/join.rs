//! Gossip membership changes through the local agent (consul-compat.md
//! §11.3): `muster join [-wan] ADDR...` (`PUT /v1/agent/join/:addr`, one
//! request per address), `muster leave` (`PUT /v1/agent/leave`) and
//! `muster force-leave [-prune] [-wan] NODE`
//! (`PUT /v1/agent/force-leave/:node`). Messages are Consul's.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{bail, Context};
use bytes::Bytes;
use hyper::Method;

use super::http::{query_value, Client, HttpArgs};
use super::members::{block_on, write};
use super::services::say;

/// `muster join`.
#[derive(Debug, clap::Args)]
pub struct JoinArgs {
    /// Agent address.
    #[command(flatten)]
    pub http: HttpArgs,
    /// Join the WAN pool (servers of every datacenter) instead of the LAN.
    #[arg(long)]
    pub wan: bool,
    /// Addresses of agents already in the cluster (`host` or `host:port`).
    #[arg(value_name = "ADDR")]
    pub addrs: Vec<String>,
}

/// `muster leave`.
#[derive(Debug, clap::Args)]
pub struct LeaveArgs {
    /// Agent address.
    #[command(flatten)]
    pub http: HttpArgs,
}

/// `muster force-leave`.
#[derive(Debug, clap::Args)]
pub struct ForceLeaveArgs {
    /// Agent address.
    #[command(flatten)]
    pub http: HttpArgs,
    /// Forget the node at once instead of keeping it as "left" until it is
    /// reaped.
    #[arg(long)]
    pub prune: bool,
    /// Act on the WAN pool (`NODE` is then `<node>.<dc>`).
    #[arg(long)]
    pub wan: bool,
    /// The failed node to remove.
    #[arg(value_name = "NODE")]
    pub nodes: Vec<String>,
}

/// `/v1/agent/join/<addr>[?wan=1]`.
pub fn join_path(addr: &str, wan: bool) -> String {
    let wan = if wan { "?wan=1" } else { "" };
    format!("/v1/agent/join/{}{wan}", query_value(addr))
}

/// `/v1/agent/force-leave/<node>` with `?prune` and/or `?wan`.
pub fn force_leave_path(node: &str, prune: bool, wan: bool) -> String {
    let params: Vec<&str> = [(prune, "prune=1"), (wan, "wan=1")]
        .into_iter()
        .filter_map(|(on, p)| on.then_some(p))
        .collect();
    let mut path = format!("/v1/agent/force-leave/{}", query_value(node));
    if !params.is_empty() {
        path.push('?');
        path.push_str(&params.join("&"));
    }
    path
}

/// Join through every address; succeed if at least one worked.
pub fn run_join(args: JoinArgs) -> anyhow::Result<ExitCode> {
    if args.addrs.is_empty() {
        bail!("At least one address to join must be specified.");
    }
    block_on(async {
        let client = Client::new(&args.http)?;
        let mut joined = 0;
        for addr in &args.addrs {
            let context = format!("Error joining address '{addr}'");
            let path = join_path(addr, args.wan);
            match write(&client, Method::PUT, &path, Bytes::new(), &context).await {
                Ok(()) => joined += 1,
                Err(e) => writeln!(io::stderr().lock(), "{e:#}")
                    .context("Error: cannot write to stderr")?,
            }
        }
        if joined == 0 {
            bail!("Failed to join any nodes.");
        }
        say(&format!(
            "Successfully joined cluster by contacting {joined} nodes."
        ))?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Ask the agent to leave gracefully (it then shuts down).
pub fn run_leave(args: LeaveArgs) -> anyhow::Result<ExitCode> {
    block_on(async {
        let client = Client::new(&args.http)?;
        write(
            &client,
            Method::PUT,
            "/v1/agent/leave",
            Bytes::new(),
            "Error leaving",
        )
        .await?;
        say("Graceful leave complete")?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Force a failed node out; silent on success, as in Consul.
pub fn run_force_leave(args: ForceLeaveArgs) -> anyhow::Result<ExitCode> {
    let [node] = args.nodes.as_slice() else {
        bail!("A single node name must be specified to force leave.");
    };
    let path = force_leave_path(node, args.prune, args.wan);
    block_on(async {
        let client = Client::new(&args.http)?;
        write(
            &client,
            Method::PUT,
            &path,
            Bytes::new(),
            "Error force leaving",
        )
        .await?;
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_and_force_leave_paths() {
        assert_eq!(
            join_path("10.0.0.1:8301", false),
            "/v1/agent/join/10.0.0.1%3A8301"
        );
        assert_eq!(
            join_path("[::1]", true),
            "/v1/agent/join/%5B%3A%3A1%5D?wan=1"
        );
        assert_eq!(
            force_leave_path("n1", false, false),
            "/v1/agent/force-leave/n1"
        );
        assert_eq!(
            force_leave_path("n1.dc1", true, true),
            "/v1/agent/force-leave/n1.dc1?prune=1&wan=1"
        );
    }
}
