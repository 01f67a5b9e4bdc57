//! `muster reload`: ask the agent to re-read its config files
//! (`PUT /v1/agent/reload`, the same as SIGHUP).

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{bail, Context};
use bytes::Bytes;
use hyper::{Method, StatusCode};

use super::http::{Client, HttpArgs};

/// `muster reload`.
#[derive(Debug, clap::Args)]
#[command(about = "Make a running agent re-read its config files")]
pub struct ReloadArgs {
    /// Agent address.
    #[command(flatten)]
    pub http: HttpArgs,
}

/// The reload endpoint.
pub const RELOAD_PATH: &str = "/v1/agent/reload";

/// PUT the reload; `Configuration reload triggered` on 200.
pub fn run(args: ReloadArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("Error: cannot start the async runtime")?;
    runtime.block_on(async {
        let client = Client::new(&args.http)?;
        let reply = client
            .request(Method::PUT, RELOAD_PATH, Bytes::new())
            .await
            .map_err(|e| anyhow::anyhow!("Error reloading: {e:#}"))?;
        if reply.status != StatusCode::OK {
            bail!("Error reloading: {}", reply.unexpected());
        }
        writeln!(io::stdout().lock(), "Configuration reload triggered")
            .context("Error: cannot write to stdout")?;
        Ok(ExitCode::SUCCESS)
    })
}
