//! What the offline log tools share: the data directory's lock, the
//! progress line, and the walk over every entry with its checks (indexes
//! following each other, terms not going back, committed entries
//! readable); also how entries and commands are named and shown.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use base64::Engine as _;
use muster_engine::offline::{self, decode_entry};
use muster_engine::Command;
use muster_log::scan::{self, ScanReport};
use openraft::EntryPayload;
use serde_json::{json, Value};

use crate::cli::agent::try_lock_data_dir;

/// What a walk found.
pub(super) struct Walked {
    /// The segments, damage, purge point and committed index.
    pub report: ScanReport,
    /// The first and last live entry (`None`: no entries).
    pub range: Option<(u64, u64)>,
    /// Entries out of order, undecodable or missing, one line each.
    pub gaps: Vec<String>,
}

/// Lock the (stopped) server's data directory for the tool's run.
pub(super) fn open(dir: &Path) -> anyhow::Result<std::fs::File> {
    if !dir.join("raft").is_dir() {
        bail!(
            "Error: {} is not a server's data directory (no raft/ in it): pass the -data-dir \
             the server runs with",
            dir.display()
        );
    }
    try_lock_data_dir(dir)?.map_err(|pid| {
        anyhow!(
            "Error: an agent is running on {}{pid}: stop it first; the log tools read a stopped \
             server's data directory",
            dir.display()
        )
    })
}

/// A progress line on stderr at most once a second.
pub(super) struct Progress {
    what: &'static str,
    total: u64,
    done: u64,
    started: Instant,
    last: Instant,
}

impl Progress {
    fn new(what: &'static str, total: u64) -> Progress {
        let now = Instant::now();
        Progress {
            what,
            total,
            done: 0,
            started: now,
            last: now,
        }
    }

    fn add(&mut self, bytes: u64, records: u64) {
        self.done += bytes;
        if self.last.elapsed() < Duration::from_secs(1) || self.total == 0 {
            return;
        }
        self.last = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = self.done as f64 / secs;
        let left = (self.total.saturating_sub(self.done)) as f64 / rate.max(1.0);
        eprintln!(
            "{}: {:.0}% ({records} records, {:.0} records/s, ETA {:.0} s)",
            self.what,
            100.0 * self.done as f64 / self.total as f64,
            records as f64 / secs,
            left
        );
    }
}

fn log_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("raft"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// An entry's kind and, for `Batch`, its commands' kinds.
pub(super) fn kinds(payload: &EntryPayload<muster_engine::raft::TypeConfig>) -> Vec<&'static str> {
    match payload {
        EntryPayload::Blank => vec!["Blank"],
        EntryPayload::Membership(_) => vec!["Membership"],
        EntryPayload::Normal(Command::Batch { commands }) => {
            commands.iter().map(command_kind).collect()
        }
        EntryPayload::Normal(c) => vec![command_kind(c)],
    }
}

pub(super) fn command_kind(c: &Command) -> &'static str {
    match c {
        Command::Noop {} => "Noop",
        Command::KvSet { .. } => "KvSet",
        Command::KvCas { .. } => "KvCas",
        Command::KvDelete { .. } => "KvDelete",
        Command::KvDeleteCas { .. } => "KvDeleteCas",
        Command::KvDeleteTree { .. } => "KvDeleteTree",
        Command::CatalogRegister { .. } => "CatalogRegister",
        Command::CatalogDeregister { .. } => "CatalogDeregister",
        Command::Batch { .. } => "Batch",
        Command::SessionCreate { .. } => "SessionCreate",
        Command::SessionDestroy { .. } => "SessionDestroy",
        Command::KvLock { .. } => "KvLock",
        Command::KvUnlock { .. } => "KvUnlock",
        Command::Txn { .. } => "Txn",
        Command::RestoreChunk { .. } => "RestoreChunk",
        Command::RestoreCommit { .. } => "RestoreCommit",
        Command::ObjectSet { .. } => "ObjectSet",
        Command::ObjectDelete { .. } => "ObjectDelete",
    }
}

/// A command as readable JSON: byte values as text when they are UTF-8,
/// else as `base64:...`; restore chunks summarised.
pub(super) fn describe(c: &Command) -> Value {
    if let Command::RestoreChunk { id, seq, records } = c {
        return json!({"id": id, "seq": seq, "records": records.len()});
    }
    let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
    readable_bytes(&mut v);
    v
}

fn readable_bytes(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, item) in m.iter_mut() {
                let bytes = match (k.as_str(), &*item) {
                    ("value", Value::Array(a)) => a
                        .iter()
                        .map(|x| x.as_u64().and_then(|n| u8::try_from(n).ok()))
                        .collect::<Option<Vec<u8>>>(),
                    _ => None,
                };
                match bytes {
                    Some(b) => {
                        *item = match String::from_utf8(b) {
                            Ok(text) => Value::String(text),
                            Err(e) => Value::String(format!(
                                "base64:{}",
                                base64::engine::general_purpose::STANDARD.encode(e.as_bytes())
                            )),
                        }
                    }
                    None => readable_bytes(item),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(readable_bytes),
        _ => {}
    }
}

/// Walk the log: every entry decoded, indexes checked to follow each
/// other from the first retained one. `visit` sees each entry.
pub(super) fn walk(
    dir: &Path,
    what: &'static str,
    mut visit: impl FnMut(&offline::Entry) -> anyhow::Result<()>,
) -> anyhow::Result<Walked> {
    let mut progress = Progress::new(what, log_bytes(dir));
    let mut range: Option<(u64, u64)> = None;
    let mut gaps = Vec::new();
    let mut records = 0u64;
    let mut last_term = 0u64;
    let mut failure: Option<anyhow::Error> = None;
    let purged =
        scan::last_purged(&dir.join("raft")).map_err(|e| anyhow!("Error reading the log: {e}"))?;
    let report = scan::scan(&dir.join("raft"), |path, offset, payload| {
        records += 1;
        progress.add(payload.len() as u64 + 8, records);
        let entry = match decode_entry(payload) {
            Ok(e) => e,
            Err(e) => {
                gaps.push(format!(
                    "{} at offset {offset}: a valid CRC but an undecodable entry: {e}",
                    path.display()
                ));
                return Ok(());
            }
        };
        let id = entry.log_id;
        if purged.is_some_and(|p| id.index <= p) {
            // Purged (in a snapshot) but still in a segment that also holds
            // live entries: the store never reads it again.
            return Ok(());
        }
        match range {
            Some((_, last)) if id.index != last + 1 => gaps.push(format!(
                "{} at offset {offset}: entry {} follows entry {last}",
                path.display(),
                id.index
            )),
            _ => {}
        }
        if id.leader_id.term < last_term {
            gaps.push(format!(
                "{} at offset {offset}: entry {} has term {} after term {last_term}",
                path.display(),
                id.index,
                id.leader_id.term
            ));
        }
        last_term = id.leader_id.term;
        range = Some((range.map_or(id.index, |(first, _)| first), id.index));
        if failure.is_none() {
            if let Err(e) = visit(&entry) {
                failure = Some(e);
            }
        }
        Ok(())
    })
    .map_err(|e| anyhow!("Error reading the log: {e}"))?;
    if let Some(e) = failure {
        return Err(e);
    }
    if let (Some((first, _)), Some(purged)) = (range, report.last_purged) {
        if first != purged + 1 {
            gaps.push(format!(
                "the log starts at entry {first} but only entries up to {purged} were purged"
            ));
        }
    }
    let last = range.map_or(report.last_purged.unwrap_or(0), |(_, last)| last);
    if let Some(committed) = report.committed.filter(|c| *c > last) {
        gaps.push(format!(
            "entries {}..{committed} were committed but are not readable",
            last + 1
        ));
    }
    Ok(Walked {
        report,
        range,
        gaps,
    })
}
