//! `muster debug`: a support bundle from a running agent, as Consul's
//! command makes one: `agent.json` (`/v1/agent/self`), `members.json`,
//! a metrics sample every `-interval` for `-duration`
//! (`metrics/<n>.json`), and the agent's log at `debug` for that time
//! (`muster.log`, through `/v1/agent/monitor`), in one
//! `<output>.tar.gz`. Progress goes to stdout as it happens.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};

use crate::cli::http::{Client, HttpArgs};
use crate::cli::members::block_on;

/// What a bundle can hold.
const TARGETS: [&str; 4] = ["agent", "members", "metrics", "logs"];

/// `muster debug`.
#[derive(Debug, clap::Args)]
pub struct DebugArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    /// How long to capture metrics and logs.
    #[arg(long, value_name = "DURATION", default_value = "2m")]
    pub duration: String,
    /// How often to sample metrics.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub interval: String,
    /// What to capture (repeatable or comma-separated): agent, members,
    /// metrics, logs. Default: all.
    #[arg(long, value_name = "TARGET")]
    pub capture: Vec<String>,
    /// The bundle's path without `.tar.gz` (default
    /// `muster-debug-<unix seconds>` here).
    #[arg(long, value_name = "PATH")]
    pub output: Option<String>,
}

/// `muster debug`.
pub fn run(args: DebugArgs) -> anyhow::Result<ExitCode> {
    block_on(debug(args))
}

fn duration(flag: &str, s: &str) -> anyhow::Result<Duration> {
    muster_engine::duration::parse(s)
        .map_err(|e| anyhow::anyhow!("Error: invalid -{flag} {s:?}: {e} (a duration such as 30s)"))
}

async fn debug(args: DebugArgs) -> anyhow::Result<ExitCode> {
    let total = duration("duration", &args.duration)?;
    let every = duration("interval", &args.interval)?;
    if every < Duration::from_secs(1) || total < every {
        bail!("Error: -interval must be at least 1s and no longer than -duration");
    }
    let mut capture: Vec<String> = args
        .capture
        .iter()
        .flat_map(|c| c.split(','))
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty())
        .collect();
    if capture.is_empty() {
        capture = TARGETS.iter().map(|t| (*t).to_string()).collect();
    }
    if let Some(bad) = capture.iter().find(|c| !TARGETS.contains(&c.as_str())) {
        bail!(
            "Error: cannot capture {bad:?}: choose from {}",
            TARGETS.join(", ")
        );
    }
    let wants = |t: &str| capture.iter().any(|c| c == t);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| format!("muster-debug-{now}"));
    let archive = format!("{output}.tar.gz");
    if std::path::Path::new(&archive).exists() {
        bail!("Error: {archive} already exists: choose another -output");
    }
    let client = Client::new(&args.http)?;
    let get = |path: &'static str| {
        let client = &client;
        async move {
            let reply = client.request(Method::GET, path, Bytes::new()).await?;
            if reply.status != StatusCode::OK {
                bail!("Error: GET {path}: {}", reply.unexpected());
            }
            Ok::<Bytes, anyhow::Error>(reply.body)
        }
    };
    let self_json = get("/v1/agent/self").await?;
    let version = serde_json::from_slice::<serde_json::Value>(&self_json)
        .ok()
        .and_then(|v| v["Config"]["Version"].as_str().map(str::to_string))
        .unwrap_or_default();
    println!("==> Starting debugger and capturing static information...");
    println!("     Agent Version: '{version}'");
    println!("          Interval: '{}'", args.interval);
    println!("          Duration: '{}'", args.duration);
    println!("            Output: '{archive}'");
    println!("           Capture: '{}'", capture.join(", "));
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    if wants("agent") {
        files.push(("agent.json".into(), self_json.to_vec()));
    }
    if wants("members") {
        files.push((
            "members.json".into(),
            get("/v1/agent/members").await?.to_vec(),
        ));
    }
    // The log, streamed while the metrics are sampled.
    let logs = if wants("logs") {
        let empty = http_body_util::Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync();
        let resp = client
            .request_stream(Method::GET, "/v1/agent/monitor?loglevel=debug", empty)
            .await?;
        if resp.status() != StatusCode::OK {
            bail!("Error: GET /v1/agent/monitor: {}", resp.status());
        }
        let mut body = resp.into_body();
        Some(tokio::spawn(async move {
            let mut out = Vec::new();
            let _ = tokio::time::timeout(total, async {
                while let Some(Ok(frame)) = body.frame().await {
                    if let Some(d) = frame.data_ref() {
                        out.extend_from_slice(d);
                    }
                }
            })
            .await;
            out
        }))
    } else {
        None
    };
    let start = tokio::time::Instant::now();
    let mut n = 0u32;
    loop {
        println!("==> Beginning capture interval {n}");
        if wants("metrics") {
            let m = get("/v1/agent/metrics").await?;
            files.push((format!("metrics/{n}.json"), m.to_vec()));
        }
        n += 1;
        let next = start + every * n;
        if next > start + total {
            break;
        }
        tokio::time::sleep_until(next).await;
    }
    tokio::time::sleep_until(start + total).await;
    if let Some(task) = logs {
        files.push(("muster.log".into(), task.await.unwrap_or_default()));
    }
    write_bundle(&archive, &output, &files)
        .with_context(|| format!("Error: cannot write {archive}"))?;
    println!("==> Saved debug archive: {archive}");
    Ok(ExitCode::SUCCESS)
}

/// `files` under `<dir name of output>/` in a gzip'd tar at `archive`.
fn write_bundle(archive: &str, output: &str, files: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
    let root = std::path::Path::new(output)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "muster-debug".into());
    let file = std::fs::File::create(archive)?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        );
        header.set_cksum();
        tar.append_data(&mut header, format!("{root}/{name}"), bytes.as_slice())?;
    }
    let mut gz = tar.into_inner()?;
    gz.flush()?;
    gz.finish()?.sync_all()?;
    Ok(())
}
