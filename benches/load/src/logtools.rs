//! The log workload (muster only): write N keys once (C clients) into a
//! server whose log is never purged, stop it, and time the offline log
//! tools on its data directory: `muster log inspect`, `verify`, `verify
//! -views` (a full rebuild of the views and a row-by-row comparison) and
//! `replay -to` the middle of the log.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::load::populate;
use crate::procs;
use crate::target::Server;

/// What the log workload measured.
#[derive(Debug, Default)]
pub struct LogReport {
    /// Keys written (one PUT each).
    pub writes: usize,
    /// Concurrent writers (concurrent writes share log entries).
    pub clients: usize,
    /// Time to write them.
    pub load: Duration,
    /// Records in the log.
    pub records: u64,
    /// Bytes of records in the log.
    pub log_bytes: u64,
    /// `log inspect`, each round.
    pub inspect: Vec<Duration>,
    /// `log verify`, each round.
    pub verify: Vec<Duration>,
    /// `log verify -views`, each round.
    pub verify_views: Vec<Duration>,
    /// `log replay -to` the middle, each round.
    pub replay_half: Vec<Duration>,
}

/// Times each tool runs on the same log.
const ROUNDS: usize = 3;

/// Run `muster log ...`, failing with its stderr; its stdout and time.
fn tool(bin: &Path, args: &[&str], dir: &Path) -> Result<(String, Duration)> {
    let started = Instant::now();
    let out = Command::new(bin)
        .arg("log")
        .args(args)
        .arg("-data-dir")
        .arg(dir)
        .output()
        .with_context(|| format!("run {} log {args:?}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "muster log {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok((
        String::from_utf8_lossy(&out.stdout).into_owned(),
        started.elapsed(),
    ))
}

/// Write, stop, and time the tools.
pub async fn run_log(
    bin: &Path,
    writes: usize,
    value_size: usize,
    clients: usize,
) -> Result<LogReport> {
    let config = format!(
        r#"{{"raft_snapshot_threshold": {}}}"#,
        writes * 4 + 1_000_000
    );
    let mut server = procs::start_muster_with(bin, Some(&config))?;
    let mut r = LogReport {
        writes,
        clients,
        ..LogReport::default()
    };
    r.load = populate(Server::Muster, server.http, writes, value_size, clients).await?;
    eprintln!("log: {writes} writes in {:.1} s", r.load.as_secs_f64());
    server.stop()?;
    let dir = server.data_dir();

    let (text, _) = tool(bin, &["inspect"], &dir)?;
    // "  <segment>  a..b  N records  X MiB"
    for line in text.lines().filter(|l| l.contains(" records  ")) {
        let mut words = line.split_whitespace();
        r.records += words
            .nth(2)
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        let mib: f64 = line
            .rsplit("records  ")
            .next()
            .and_then(|m| m.trim_end_matches(" MiB").trim().parse().ok())
            .unwrap_or(0.0);
        r.log_bytes += (mib * f64::from(1 << 20)) as u64;
    }
    let last: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("entries: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|range| range.split("..").nth(1))
        .and_then(|n| n.parse().ok())
        .context("no entries: line in log inspect")?;
    let half = (last / 2).to_string();
    for round in 0..ROUNDS {
        let inspect = tool(bin, &["inspect"], &dir)?.1;
        let verify = tool(bin, &["verify"], &dir)?.1;
        let views = tool(bin, &["verify", "-views"], &dir)?.1;
        let replay = tool(bin, &["replay", "-to", &half], &dir)?.1;
        eprintln!(
            "log: round {round}: inspect {:.2} s, verify {:.2} s, verify -views {:.2} s, \
             replay -to {half} {:.2} s",
            inspect.as_secs_f64(),
            verify.as_secs_f64(),
            views.as_secs_f64(),
            replay.as_secs_f64()
        );
        r.inspect.push(inspect);
        r.verify.push(verify);
        r.verify_views.push(views);
        r.replay_half.push(replay);
    }
    Ok(r)
}

/// The report as `name  value` lines: each tool's fastest and slowest
/// round, and the rate of the fastest.
pub fn text(r: &LogReport) -> Vec<Vec<String>> {
    let mib = r.log_bytes as f64 / f64::from(1 << 20);
    let span = |d: &[Duration], rates: bool| {
        let lo = d.iter().min().copied().unwrap_or_default().as_secs_f64();
        let hi = d.iter().max().copied().unwrap_or_default().as_secs_f64();
        let mut out = format!("{lo:.2}-{hi:.2} s ({} rounds)", d.len());
        if rates {
            out.push_str(&format!(
                ", {:.0} records/s, {:.0} MiB/s",
                r.records as f64 / lo.max(1e-6),
                mib / lo.max(1e-6)
            ));
        }
        out
    };
    vec![
        vec![
            format!("writes ({} clients)", r.clients),
            format!("{} in {:.2} s", r.writes, r.load.as_secs_f64()),
        ],
        vec!["log".into(), format!("{} records, {mib:.0} MiB", r.records)],
        vec!["log inspect".into(), span(&r.inspect, true)],
        vec!["log verify".into(), span(&r.verify, true)],
        vec!["log verify -views".into(), span(&r.verify_views, true)],
        vec![
            "log replay -to <middle>".into(),
            span(&r.replay_half, false),
        ],
    ]
}
