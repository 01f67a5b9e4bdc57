//! `muster monitor`: follow a running agent's logs
//! (`/v1/agent/monitor`) at a level of its own, as text or JSON, until
//! interrupted or the agent goes away.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};

use crate::cli::http::{query_value, Client, HttpArgs};
use crate::cli::members::block_on;

/// `muster monitor`.
#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    /// The level to stream at: trace, debug, info, warn or err (the
    /// agent's own -log-level does not limit it).
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: String,
    /// Stream the lines as JSON.
    #[arg(long)]
    pub log_json: bool,
}

/// `muster monitor`.
pub fn run(args: MonitorArgs) -> anyhow::Result<ExitCode> {
    block_on(monitor(args))
}

async fn monitor(args: MonitorArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.http)?;
    let mut path = format!(
        "/v1/agent/monitor?loglevel={}",
        query_value(&args.log_level)
    );
    if args.log_json {
        path.push_str("&logjson");
    }
    let empty = http_body_util::Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync();
    let resp = client.request_stream(Method::GET, &path, empty).await?;
    let status = resp.status();
    let mut body = resp.into_body();
    if status != StatusCode::OK {
        let text = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        bail!(
            "Error starting monitor: Unexpected response code: {} ({})",
            status.as_u16(),
            String::from_utf8_lossy(&text).trim()
        );
    }
    let mut out = std::io::stdout().lock();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("Error: the agent closed the log stream")?;
        if let Some(data) = frame.data_ref() {
            out.write_all(data)?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
