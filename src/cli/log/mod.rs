//! `muster log inspect|dump|verify|replay`: the log as a tool, offline, on
//! a stopped server's data directory (refused, naming the process, while an
//! agent holds it; the tools hold its lock while they run). Long work
//! prints a progress line on stderr once a second with its rate and ETA.
//! `log tail` is the online one: it follows a running server's change feed
//! (`tail.rs`).
//!
//! - `inspect`: segments, indexes, terms, commands by kind, the snapshot.
//! - `dump`: the entries themselves, one per line (text or JSON).
//! - `verify`: every record's framing and CRC, index continuity, the
//!   snapshot's checksum; `-views` also rebuilds the views from the
//!   snapshot and the log and compares them row by row with the live ones.
//! - `replay -to N`: the views as of index N, in a directory, and answers
//!   from them.

mod tail;
mod walk;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use muster_engine::offline::{self, OfflineViews};
use muster_engine::Command;
use muster_log::scan;
use openraft::EntryPayload;
use serde_json::{json, Value};

use walk::{command_kind, describe, kinds, open, walk, Walked};

use crate::cli::services::say;

/// `muster log`.
#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: LogCommand,
}

/// The `log` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum LogCommand {
    /// Segments, indexes, terms, commands by kind, and the snapshot.
    Inspect(DirArgs),
    /// Print the entries, one per line.
    Dump(DumpArgs),
    /// Check every record (CRC, framing, index continuity) and the
    /// snapshot; exit 1 if anything is damaged. With -views, also rebuild
    /// the views and compare them with the live ones.
    Verify(VerifyArgs),
    /// Rebuild the views as of index N (from the snapshot and the log) and
    /// answer from them.
    Replay(ReplayArgs),
    /// Follow a running server's changes (/v1/event-stream), one per line.
    Tail(tail::TailArgs),
}

/// The data directory.
#[derive(Debug, clap::Args)]
pub struct DirArgs {
    /// The server's data directory (stopped).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
}

/// `log dump`.
#[derive(Debug, clap::Args)]
pub struct DumpArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// First index to print.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub from: u64,
    /// Last index to print.
    #[arg(long, value_name = "N", default_value_t = u64::MAX)]
    pub to: u64,
    /// text or json (one object per line).
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub format: String,
}

/// `log verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// Also rebuild the views and compare them row by row with the live
    /// ones.
    #[arg(long)]
    pub views: bool,
}

/// `log replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// The index to rebuild the state at.
    #[arg(long, value_name = "N")]
    pub to: u64,
    /// Where to write the rebuilt views (default: a temporary directory,
    /// removed afterwards).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print this KV key's value as of N.
    #[arg(long, value_name = "KEY")]
    pub kv: Option<String>,
    /// Print the KV keys under this prefix as of N.
    #[arg(long, value_name = "PREFIX")]
    pub kv_prefix: Option<String>,
    /// Print this service's instances as of N.
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// Print the catalog's nodes as of N.
    #[arg(long)]
    pub nodes: bool,
}

/// `muster log`.
pub fn run(args: LogArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        LogCommand::Inspect(a) => inspect(&a),
        LogCommand::Dump(a) => dump(&a),
        LogCommand::Verify(a) => verify(&a),
        LogCommand::Replay(a) => replay(&a),
        LogCommand::Tail(a) => tail::run(a),
    }
}

fn inspect(args: &DirArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.data_dir;
    let _lock = open(dir)?;
    let mut by_kind: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut terms: (u64, u64) = (u64::MAX, 0);
    let mut batches = 0u64;
    let Walked { report, range, .. } = walk(dir, "inspect", |e| {
        terms = (
            terms.0.min(e.log_id.leader_id.term),
            terms.1.max(e.log_id.leader_id.term),
        );
        if matches!(e.payload, EntryPayload::Normal(Command::Batch { .. })) {
            batches += 1;
        }
        for k in kinds(&e.payload) {
            *by_kind.entry(k).or_default() += 1;
        }
        Ok(())
    })?;
    let total: u64 = report.segments.iter().map(|s| s.file_bytes).sum();
    say(&format!(
        "log: {} ({} segments, {:.1} MiB)",
        dir.join("raft").display(),
        report.segments.len(),
        total as f64 / f64::from(1 << 20)
    ))?;
    for s in &report.segments {
        let name = s.path.file_name().unwrap_or_default().to_string_lossy();
        let last = s.first_index + s.records.saturating_sub(1);
        say(&format!(
            "  {name}  {}..{last}  {} records  {:.1} MiB",
            s.first_index,
            s.records,
            s.bytes as f64 / f64::from(1 << 20)
        ))?;
    }
    match range {
        Some((first, last)) => say(&format!(
            "entries: {first}..{last} ({} entries), terms {}..{}, committed {}, purged up to {}",
            last - first + 1,
            terms.0,
            terms.1,
            report.committed.unwrap_or(0),
            report.last_purged.unwrap_or(0)
        ))?,
        None => say("entries: none")?,
    }
    match offline::newest_snapshot(&dir.join("snapshots")) {
        Ok(Some(s)) => say(&format!(
            "snapshot: {} at index {} (term {}), {} rows, {:.1} MiB",
            s.path.display(),
            s.index,
            s.term,
            s.rows,
            s.bytes as f64 / f64::from(1 << 20)
        ))?,
        Ok(None) => say("snapshot: none")?,
        Err(e) => say(&format!("snapshot: damaged: {e}"))?,
    }
    if batches > 0 {
        say(&format!(
            "commands ({batches} batched entries counted by their commands):"
        ))?;
    } else {
        say("commands:")?;
    }
    let mut rows: Vec<(&str, u64)> = by_kind.into_iter().collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for (kind, n) in rows {
        say(&format!("  {kind:<18} {n}"))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn dump(args: &DumpArgs) -> anyhow::Result<ExitCode> {
    let json = match args.format.as_str() {
        "text" => false,
        "json" => true,
        other => bail!("Error: invalid -format {other:?}: use text or json"),
    };
    let dir = &args.dir.data_dir;
    let _lock = open(dir)?;
    walk(dir, "dump", |e| {
        let index = e.log_id.index;
        if index < args.from || index > args.to {
            return Ok(());
        }
        let term = e.log_id.leader_id.term;
        let (kind, body) = match &e.payload {
            EntryPayload::Blank => ("Blank", Value::Null),
            EntryPayload::Membership(m) => (
                "Membership",
                json!({"voters": m.voter_ids().collect::<Vec<_>>()}),
            ),
            EntryPayload::Normal(c) => (command_kind(c), describe(c)),
        };
        if json {
            say(&json!({"Index": index, "Term": term, "Type": kind, "Command": body}).to_string())
        } else {
            say(&format!("{index} {term} {kind} {body}"))
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

fn verify(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.dir.data_dir;
    let _lock = open(dir)?;
    let Walked {
        report,
        range,
        gaps,
    } = walk(dir, "verify", |_| Ok(()))?;
    let mut sound = report.sound() && gaps.is_empty();
    let records: u64 = report.segments.iter().map(|s| s.records).sum();
    for d in &report.damage {
        let what = if d.torn_tail { "torn tail" } else { "damaged" };
        say(&format!(
            "{what}: {} at offset {}: {}{}",
            d.path.display(),
            d.offset,
            d.reason,
            if d.torn_tail {
                " (an append cut by a crash before it was acknowledged; the next start cuts it)"
            } else {
                ""
            }
        ))?;
    }
    for g in &gaps {
        say(&format!("damaged: {g}"))?;
    }
    let snapshot = match offline::newest_snapshot(&dir.join("snapshots")) {
        Ok(s) => s,
        Err(e) => {
            sound = false;
            say(&format!("damaged: snapshot: {e}"))?;
            None
        }
    };
    if let Some(s) = &snapshot {
        say(&format!(
            "snapshot: {} at index {}: {} rows, checksum ok",
            s.path.display(),
            s.index,
            s.rows
        ))?;
    }
    let span = range.map_or("no entries".to_string(), |(a, b)| {
        format!("entries {a}..{b}")
    });
    if !sound {
        say(&format!(
            "log: {records} records in {} segments ({span}): DAMAGED. On a cluster, stop \
             this server, move its data directory aside and start it empty to catch up from \
             the leader; on a single server, restore the last snapshot \
             (muster snapshot restore) into a fresh data directory",
            report.segments.len()
        ))?;
        return Ok(ExitCode::FAILURE);
    }
    say(&format!(
        "log: {records} records in {} segments ({span}): sound",
        report.segments.len()
    ))?;
    if args.views {
        let live_dir = dir.join("views");
        if !live_dir.is_dir() {
            bail!(
                "Error: {} has no views to compare: start the server once to build them",
                live_dir.display()
            );
        }
        let live = OfflineViews::open(&live_dir)
            .map_err(|e| anyhow!("Error opening the live views {}: {e}", live_dir.display()))?;
        let at = live.applied_index()?;
        let tmp = tempfile::tempdir().context("Error: temporary directory")?;
        let rebuilt = rebuild(dir, at, tmp.path())?;
        let diffs = rebuilt.differences(&live, 50)?;
        if diffs.is_empty() {
            say(&format!(
                "views: the live views match the snapshot and log replayed to index {at}"
            ))?;
        } else {
            for d in &diffs {
                say(&format!("views differ: {d} (first: rebuilt, second: live)"))?;
            }
            say(&format!(
                "views: {} difference(s) from the snapshot and log at index {at}: move {} \
                 aside and start the server: it rebuilds its views from the snapshot and the log",
                diffs.len(),
                live_dir.display()
            ))?;
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Rebuild the views as of index `to` into `out`: the newest snapshot at
/// or before it (or nothing, if the log still starts at 1), then the log.
fn rebuild(dir: &Path, to: u64, out: &Path) -> anyhow::Result<OfflineViews> {
    let views =
        OfflineViews::open(out).map_err(|e| anyhow!("Error opening {}: {e}", out.display()))?;
    let purged = scan::last_purged(&dir.join("raft"))
        .map_err(|e| anyhow!("Error reading the log: {e}"))?
        .unwrap_or(0);
    // The last index already in the views: the snapshot's, or none.
    let start: Option<u64> = match offline::newest_snapshot(&dir.join("snapshots"))? {
        Some(s) if s.index <= to => {
            views.install_snapshot(&s.path)?;
            Some(s.index)
        }
        _ if purged == 0 => None,
        Some(s) => bail!(
            "Error: index {to} is before the snapshot at {} and the log before {} is purged: \
             the state at {to} is no longer kept",
            s.index,
            purged + 1
        ),
        None => bail!(
            "Error: the log before {} is purged and there is no snapshot",
            purged + 1
        ),
    };
    let mut last = start;
    walk(dir, "replay", |e| {
        let index = e.log_id.index;
        if start.is_some_and(|s| index <= s) || index > to {
            return Ok(());
        }
        if let Some(l) = last.filter(|l| index != l + 1) {
            bail!("Error: the log has no entry {} (next is {index})", l + 1);
        }
        views
            .apply(e)
            .map_err(|err| anyhow!("Error applying entry {index}: {err}"))?;
        last = Some(index);
        Ok(())
    })?;
    match last {
        Some(l) if l >= to => {}
        _ => bail!(
            "Error: the log ends at {}, before index {to}",
            last.map_or("nothing".to_string(), |l| l.to_string())
        ),
    }
    Ok(views)
}

fn replay(args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.dir.data_dir;
    let _lock = open(dir)?;
    let tmp;
    let out = match &args.out {
        Some(out) => {
            if out.exists()
                && std::fs::read_dir(out)
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(false)
            {
                bail!(
                    "Error: -out {} is not empty: pick a new directory",
                    out.display()
                );
            }
            out.clone()
        }
        None => {
            tmp = tempfile::tempdir().context("Error: temporary directory")?;
            tmp.path().to_path_buf()
        }
    };
    let views = rebuild(dir, args.to, &out)?;
    if args.out.is_some() {
        say(&format!(
            "views as of index {} written to {}",
            args.to,
            out.display()
        ))?;
    }
    if let Some(key) = &args.kv {
        match views.kv_get(key)? {
            Some(e) => say(&String::from_utf8_lossy(&e.value))?,
            None => bail!("Error! No key exists at: {key} (as of index {})", args.to),
        }
    }
    if let Some(prefix) = &args.kv_prefix {
        for e in views.kv_list(prefix)? {
            say(&format!("{} (ModifyIndex {})", e.key, e.modify_index))?;
        }
    }
    if let Some(name) = &args.service {
        for h in views.service(name)? {
            say(&format!(
                "{}  {}  {}:{}",
                h.node.node,
                h.service.id,
                if h.service.address.is_empty() {
                    &h.node.address
                } else {
                    &h.service.address
                },
                h.service.port
            ))?;
        }
    }
    if args.nodes {
        for n in views.nodes()? {
            say(&format!("{}  {}", n.node, n.address))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
