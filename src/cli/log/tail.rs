//! `muster log tail`: follow a server's change feed (`/v1/event-stream`)
//! and print each change, one per line, as text or as the feed's JSON.
//! When the connection drops (a server restart) it reconnects from the
//! last index it printed whole (the line marked `Last`) and skips the lines
//! of a half-printed one it already printed, so nothing is skipped or
//! printed twice; when the server no longer holds changes that old it
//! exits 1 saying so.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use muster_api::feed::X_MUSTER_OLDEST_INDEX;
use serde_json::Value;

use crate::cli::http::{query_value, Client, HttpArgs};
use crate::cli::members::block_on;
use crate::cli::services::say;

/// How long to wait between reconnection attempts.
const RETRY: Duration = Duration::from_millis(500);

/// Reconnection attempts before giving up.
const RETRIES: u32 = 120;

/// `muster log tail`.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    /// Print changes after this index (default: from now on).
    #[arg(long, value_name = "N")]
    pub index: Option<u64>,
    /// Only these topics (comma-separated): KV, Node, Service, Check,
    /// Session.
    #[arg(long, value_name = "TOPICS")]
    pub topic: Option<String>,
    /// Only KV keys under this prefix.
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// text, or json (the feed's own lines).
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub format: String,
}

/// `muster log tail`.
pub fn run(args: TailArgs) -> anyhow::Result<ExitCode> {
    let json = match args.format.as_str() {
        "text" => false,
        "json" => true,
        other => bail!("Error: invalid -format {other:?}: use text or json"),
    };
    block_on(tail(args, json))
}

async fn tail(args: TailArgs, json: bool) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.http)?;
    // The last index printed whole, and how many lines of the next one
    // were printed before a disconnection.
    let mut last = args.index;
    let mut printed: (u64, usize) = (0, 0);
    let mut failures = 0u32;
    loop {
        let mut path = String::from("/v1/event-stream?");
        if let Some(i) = last {
            path.push_str(&format!("index={i}&"));
        }
        if let Some(t) = &args.topic {
            path.push_str(&format!("topic={}&", query_value(t)));
        }
        if let Some(p) = &args.prefix {
            path.push_str(&format!("prefix={}&", query_value(p)));
        }
        let empty = http_body_util::Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync();
        let resp = match client.request_stream(Method::GET, &path, empty).await {
            Ok(r) => r,
            // Connected once: the server may be restarting.
            Err(e) if last.is_some() && failures < RETRIES => {
                failures += 1;
                if failures == 1 {
                    eprintln!("{e}: reconnecting from index {}", last.unwrap_or(0));
                }
                tokio::time::sleep(RETRY).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let status = resp.status();
        if status == StatusCode::GONE {
            let oldest = resp
                .headers()
                .get(X_MUSTER_OLDEST_INDEX)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
                .to_string();
            bail!(
                "Error: the server no longer holds changes after index {}; the oldest it holds \
                 follow index {oldest}: read the state (e.g. muster kv export) and tail from its \
                 index",
                last.unwrap_or(0)
            );
        }
        if status != StatusCode::OK {
            let body = resp.into_body().collect().await.map(|b| b.to_bytes());
            let text = body.map(|b| String::from_utf8_lossy(&b).trim().to_string());
            bail!(
                "Error tailing the log: Unexpected response code: {} ({})",
                status.as_u16(),
                text.unwrap_or_default()
            );
        }
        if last.is_none() {
            last = resp
                .headers()
                .get("x-consul-index")
                .and_then(|v| v.to_str().ok()?.parse().ok());
        }
        failures = 0;
        // Lines of a half-printed index to pass over this time.
        let skip = std::mem::take(&mut printed);
        let mut body = resp.into_body();
        let mut pending = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let raw: Vec<u8> = pending.drain(..=end).collect();
                let event: Value = serde_json::from_slice(&raw)
                    .map_err(|e| anyhow!("Error: the server sent a line that is not JSON: {e}"))?;
                if event["Topic"] == "Error" {
                    bail!(
                        "Error: this reader fell behind the changes the server holds (oldest \
                         after index {}): read the state and tail from its index",
                        event["Oldest"]
                    );
                }
                let index = event["Index"].as_u64().unwrap_or(0);
                if printed.0 != index {
                    printed = (index, 0);
                }
                printed.1 += 1;
                let reprinted = printed.1 <= skip.1 && skip.0 == index;
                if event["Last"] == true {
                    last = Some(index);
                    printed = (index, 0);
                }
                if reprinted {
                    continue;
                }
                if json {
                    say(String::from_utf8_lossy(&raw).trim_end())?;
                } else {
                    say(&text_line(&event))?;
                }
            }
        }
        // The stream ended: the server stopped or the connection broke.
    }
}

/// One event as text: index, topic, op, what, and a short value.
pub(crate) fn text_line(e: &Value) -> String {
    let s = |k: &str| e[k].as_str().unwrap_or("").to_string();
    let index = e["Index"].as_u64().unwrap_or(0);
    let (topic, op) = (s("Topic"), s("Op"));
    let v = &e["Value"];
    let what = match topic.as_str() {
        "KV" => {
            let value = v["Value"]
                .as_str()
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .map(|b| format!(" {:?}", String::from_utf8_lossy(&b)));
            format!("{}{}", s("Key"), value.unwrap_or_default())
        }
        "Node" => format!("{} {}", s("Node"), v["Address"].as_str().unwrap_or("")),
        "Service" => format!(
            "{}/{} {} port {}",
            s("Node"),
            s("ServiceID"),
            v["Service"].as_str().unwrap_or(""),
            v["Port"]
        ),
        "Check" => format!(
            "{}/{} {}",
            s("Node"),
            s("CheckID"),
            v["Status"].as_str().unwrap_or("")
        ),
        "Session" => format!("{} {}", s("ID"), v["Name"].as_str().unwrap_or("")),
        "Restore" => "the whole state was replaced".to_string(),
        _ => e.to_string(),
    };
    format!("{index} {topic} {op} {}", what.trim_end())
}
