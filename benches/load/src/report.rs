//! Results of a whole harness run and their two renderings: aligned text
//! tables (runs, muster/etcd ratios, watchers) and one JSON document.
//!
//! Latencies are kept in nanoseconds and shown in milliseconds; memory is
//! kept in KiB and shown in MiB. Nothing here measures.

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::hist::Histogram;
use crate::load::Measured;
use crate::scale::ScaleReport;
use crate::watch::WatchReport;

/// One measured run: one server, one workload, one client count.
#[derive(Debug)]
pub struct Row {
    /// `muster` or `etcd`.
    pub server: &'static str,
    /// `put`, `get` or `dns`.
    pub workload: &'static str,
    /// Concurrent clients.
    pub clients: usize,
    /// Client-side figures.
    pub measured: Measured,
    /// Server's peak RSS during the run (KiB).
    pub peak_rss_kib: Option<u64>,
}

/// Everything one harness run produced.
#[derive(Debug, Default)]
pub struct Report {
    /// Machine, binaries and parameters, as `(name, value)` lines.
    pub setup: Vec<(String, String)>,
    /// The measured runs, in order.
    pub rows: Vec<Row>,
    /// The watch workload, when run.
    pub watch: Option<(WatchReport, Option<u64>)>,
    /// The scale workload, when run.
    pub scale: Option<ScaleReport>,
    /// The health fan-out workload, when run.
    pub fanout: Option<crate::fanout::FanoutReport>,
    /// The snapshot workload, when run.
    pub backup: Option<crate::backup::BackupReport>,
    /// The log workload, when run.
    pub log: Option<crate::logtools::LogReport>,
    /// Things the reader should know (skipped comparisons, server log
    /// warnings, failures).
    pub notes: Vec<String>,
}

/// Nanoseconds as milliseconds with three decimals, `-` when absent.
fn ms(ns: Option<u64>) -> String {
    ns.map_or("-".into(), |v| format!("{:.3}", v as f64 / 1e6))
}

/// KiB as MiB with one decimal, `-` when absent.
fn mib(kib: Option<u64>) -> String {
    kib.map_or("-".into(), |v| format!("{:.1}", v as f64 / 1024.0))
}

/// `a / b` with two decimals, `-` when either is absent or b is zero.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    }
}

/// Render rows of cells as columns two spaces apart: the first `left`
/// columns (names) left-aligned, the others (figures) right-aligned.
pub fn align(rows: &[Vec<String>], left: usize) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, (cell, w)) in r.iter().zip(&widths).enumerate() {
            if c == 0 {
                let _ = write!(line, "{cell:<w$}");
            } else if c < left {
                let _ = write!(line, "  {cell:<w$}");
            } else {
                let _ = write!(line, "  {cell:>w$}");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The percentiles every table shows.
fn pcts(h: &Histogram) -> [Option<u64>; 4] {
    [
        h.quantile(0.5),
        h.quantile(0.99),
        h.quantile(0.999),
        h.max(),
    ]
}

impl Report {
    fn row(&self, server: &str, workload: &str, clients: usize) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.server == server && r.workload == workload && r.clients == clients)
    }

    /// The per-run table.
    pub fn runs_table(&self) -> String {
        let mut t = vec![[
            "server",
            "workload",
            "clients",
            "ops",
            "ops/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "errors",
            "peak RSS MiB",
        ]
        .map(String::from)
        .to_vec()];
        for r in &self.rows {
            let m = &r.measured;
            let [p50, p99, p999, max] = pcts(&m.hist);
            t.push(vec![
                r.server.into(),
                r.workload.into(),
                r.clients.to_string(),
                m.hist.count().to_string(),
                format!("{:.0}", m.ops_per_sec()),
                ms(p50),
                ms(p99),
                ms(p999),
                ms(max),
                m.errors.to_string(),
                mib(r.peak_rss_kib),
            ]);
        }
        align(&t, 2)
    }

    /// muster against etcd for every workload and client count both ran:
    /// each figure side by side with the ratio muster/etcd.
    pub fn ratio_table(&self) -> Option<String> {
        let mut t = vec![[
            "workload",
            "clients",
            "ops/s muster",
            "ops/s etcd",
            "ratio",
            "p50 muster",
            "p50 etcd",
            "ratio",
            "p99 muster",
            "p99 etcd",
            "ratio",
            "p99.9 muster",
            "p99.9 etcd",
            "ratio",
            "RSS muster",
            "RSS etcd",
            "ratio",
        ]
        .map(String::from)
        .to_vec()];
        for m in self.rows.iter().filter(|r| r.server == "muster") {
            let Some(e) = self.row("etcd", m.workload, m.clients) else {
                continue;
            };
            let (mp, ep) = (pcts(&m.measured.hist), pcts(&e.measured.hist));
            let f = |v: Option<u64>| v.map(|v| v as f64);
            let mut cells = vec![m.workload.to_string(), m.clients.to_string()];
            let (mo, eo) = (m.measured.ops_per_sec(), e.measured.ops_per_sec());
            cells.extend([
                format!("{mo:.0}"),
                format!("{eo:.0}"),
                ratio(Some(mo), Some(eo)),
            ]);
            for i in 0..3 {
                cells.extend([ms(mp[i]), ms(ep[i]), ratio(f(mp[i]), f(ep[i]))]);
            }
            cells.extend([
                mib(m.peak_rss_kib),
                mib(e.peak_rss_kib),
                ratio(f(m.peak_rss_kib), f(e.peak_rss_kib)),
            ]);
            t.push(cells);
        }
        (t.len() > 1).then(|| align(&t, 1))
    }

    /// The watch workload's table.
    pub fn watch_table(&self) -> Option<String> {
        let (w, rss) = self.watch.as_ref()?;
        let mut t = vec![[
            "phase",
            "watchers",
            "events",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "missed",
            "spurious",
            "errors",
            "peak RSS MiB",
        ]
        .map(String::from)
        .to_vec()];
        let [p50, p99, p999, max] = pcts(&w.wake);
        t.push(vec![
            "one key: write start -> its watcher returns".into(),
            w.watchers.to_string(),
            w.rounds.to_string(),
            ms(p50),
            ms(p99),
            ms(p999),
            ms(max),
            w.missed.to_string(),
            w.spurious.to_string(),
            w.errors.to_string(),
            mib(*rss),
        ]);
        let [p50, p99, p999, max] = pcts(&w.write);
        t.push(vec![
            "one key: the write itself".into(),
            "".into(),
            w.write.count().to_string(),
            ms(p50),
            ms(p99),
            ms(p999),
            ms(max),
        ]);
        let [p50, p99, p999, max] = pcts(&w.wake_after_ack);
        t.push(vec![
            format!(
                "one key: write reply -> its watcher returns ({} before)",
                w.before_ack
            ),
            "".into(),
            w.wake_after_ack.count().to_string(),
            ms(p50),
            ms(p99),
            ms(p999),
            ms(max),
        ]);
        let [p50, p99, p999, max] = pcts(&w.fanout_wake);
        t.push(vec![
            "all on one key: write start -> each returns".into(),
            w.watchers.to_string(),
            w.fanout_wake.count().to_string(),
            ms(p50),
            ms(p99),
            ms(p999),
            ms(max),
            w.fanout_missed.to_string(),
        ]);
        let mut all = Histogram::new();
        for &v in &w.fanout_all {
            all.record(v);
        }
        let [p50, _, _, max] = pcts(&all);
        t.push(vec![
            "all on one key: write start -> last returns".into(),
            w.watchers.to_string(),
            w.fanout_all.len().to_string(),
            ms(p50),
            "".into(),
            "".into(),
            ms(max),
        ]);
        Some(align(&t, 1))
    }

    /// The whole text report.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.setup {
            let _ = writeln!(out, "{k}: {v}");
        }
        out.push('\n');
        out.push_str(&self.runs_table());
        if let Some(r) = self.ratio_table() {
            out.push_str("\nmuster / etcd (latencies in ms, RSS in MiB):\n");
            out.push_str(&r);
        }
        if let Some(w) = self.watch_table() {
            out.push_str("\nblocking queries (muster):\n");
            out.push_str(&w);
        }
        if let Some(sc) = &self.scale {
            out.push_str("\nscale (muster):\n");
            out.push_str(&scale_text(sc));
        }
        if let Some(f) = &self.fanout {
            out.push_str("\nhealth fan-out (muster):\n");
            out.push_str(&crate::fanout::text(f));
        }
        if let Some(b) = &self.backup {
            out.push_str("\nsnapshot save and restore (muster):\n");
            out.push_str(&backup_text(b));
        }
        if let Some(l) = &self.log {
            out.push_str("\nlog tools (muster):\n");
            out.push_str(&align(&crate::logtools::text(l), 2));
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                let _ = writeln!(out, "note: {n}");
            }
        }
        for r in &self.rows {
            if let Some(e) = &r.measured.first_error {
                let _ = writeln!(
                    out,
                    "first error, {} {} x{}: {e}",
                    r.server, r.workload, r.clients
                );
            }
        }
        if let Some(e) = self
            .watch
            .as_ref()
            .and_then(|(w, _)| w.first_error.as_ref())
        {
            let _ = writeln!(out, "first error, watch: {e}");
        }
        out
    }

    /// The whole report as JSON (latencies in ns, RSS in KiB).
    pub fn json(&self) -> Value {
        let lat = |h: &Histogram| {
            let [p50, p99, p999, max] = pcts(h);
            json!({ "count": h.count(), "p50_ns": p50, "p99_ns": p99, "p999_ns": p999, "max_ns": max, "mean_ns": h.mean() })
        };
        let runs: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                json!({
                    "server": r.server,
                    "workload": r.workload,
                    "clients": r.clients,
                    "ops_per_sec": r.measured.ops_per_sec(),
                    "elapsed_s": r.measured.elapsed.as_secs_f64(),
                    "latency": lat(&r.measured.hist),
                    "errors": r.measured.errors,
                    "first_error": r.measured.first_error,
                    "peak_rss_kib": r.peak_rss_kib,
                })
            })
            .collect();
        let watch = self.watch.as_ref().map(|(w, rss)| {
            json!({
                "watchers": w.watchers,
                "rounds": w.rounds,
                "wake": lat(&w.wake),
                "write": lat(&w.write),
                "wake_after_ack": lat(&w.wake_after_ack),
                "before_ack": w.before_ack,
                "missed": w.missed,
                "spurious": w.spurious,
                "fanout_wake": lat(&w.fanout_wake),
                "fanout_all_ns": w.fanout_all,
                "fanout_missed": w.fanout_missed,
                "errors": w.errors,
                "first_error": w.first_error,
                "peak_rss_kib": rss,
            })
        });
        let setup: serde_json::Map<String, Value> = self
            .setup
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let scale = self.scale.as_ref().map(|s| {
            json!({
                "instances": s.instances,
                "keys": s.keys,
                "value_size": s.value_size,
                "load_instances_s": s.load_instances.as_secs_f64(),
                "load_keys_s": s.load_keys.as_secs_f64(),
                "peak_rss_load_kib": s.peak_rss_load_kib,
                "rss_loaded_kib": s.rss_loaded_kib,
                "disk_bytes": s.disk_bytes,
                "restarts": s.restarts.iter().map(|x| json!({
                    "what": x.what,
                    "ready_s": x.ready.as_secs_f64(),
                    "queryable_s": x.queryable.as_secs_f64(),
                    "rss_kib": x.rss_kib,
                    "peak_rss_kib": x.peak_rss_kib,
                    "keys_after": x.keys_after,
                    "log": x.log,
                })).collect::<Vec<_>>(),
            })
        });
        let fanout = self.fanout.as_ref().map(crate::fanout::json);
        let backup = self.backup.as_ref().map(|b| {
            json!({
                "load_s": b.load.as_secs_f64(),
                "save_s": b.save.as_secs_f64(),
                "restore_s": b.restore.as_secs_f64(),
                "archive_bytes": b.archive_bytes,
                "rss_before_save_kib": b.rss_before_save_kib,
                "peak_rss_save_kib": b.peak_rss_save_kib,
                "rss_before_restore_kib": b.rss_before_restore_kib,
                "peak_rss_restore_kib": b.peak_rss_restore_kib,
                "keys_after": b.keys_after,
            })
        });
        let log = self.log.as_ref().map(|l| {
            json!({
                "writes": l.writes,
                "clients": l.clients,
                "load_s": l.load.as_secs_f64(),
                "records": l.records,
                "log_bytes": l.log_bytes,
                "inspect_s": l.inspect.iter().map(|d| d.as_secs_f64()).collect::<Vec<_>>(),
                "verify_s": l.verify.iter().map(|d| d.as_secs_f64()).collect::<Vec<_>>(),
                "verify_views_s": l.verify_views.iter().map(|d| d.as_secs_f64()).collect::<Vec<_>>(),
                "replay_half_s": l.replay_half.iter().map(|d| d.as_secs_f64()).collect::<Vec<_>>(),
            })
        });
        json!({ "setup": setup, "runs": runs, "watch": watch, "scale": scale, "fanout": fanout, "backup": backup, "log": log, "notes": self.notes })
    }
}

/// The snapshot workload as `name  value` lines.
fn backup_text(b: &crate::backup::BackupReport) -> String {
    let secs = |d: std::time::Duration| format!("{:.2} s", d.as_secs_f64());
    let mib = |k: Option<u64>| k.map_or("?".to_string(), |k| format!("{} MiB", k / 1024));
    let state = b.args.map_or(String::new(), |a| {
        format!(
            "{} service instances, {} KV keys of {} bytes",
            a.instances, a.keys, a.value_size
        )
    });
    let rows = vec![
        vec!["state".into(), state],
        vec!["load (txn, 16 clients)".into(), secs(b.load)],
        vec![
            "archive size".into(),
            format!("{} MiB", b.archive_bytes >> 20),
        ],
        vec!["snapshot save".into(), secs(b.save)],
        vec![
            "saving server RSS before".into(),
            mib(b.rss_before_save_kib),
        ],
        vec![
            "saving server peak RSS during save".into(),
            mib(b.peak_rss_save_kib),
        ],
        vec!["snapshot restore (fresh server)".into(), secs(b.restore)],
        vec![
            "restoring server RSS before".into(),
            mib(b.rss_before_restore_kib),
        ],
        vec![
            "restoring server peak RSS during restore".into(),
            mib(b.peak_rss_restore_kib),
        ],
        vec!["keys read back".into(), b.keys_after.to_string()],
    ];
    align(&rows, 2)
}

/// The scale workload as `name  value` lines, then each restart with the
/// server's log lines up to its readiness.
fn scale_text(s: &ScaleReport) -> String {
    let secs = |d: std::time::Duration| format!("{:.2} s", d.as_secs_f64());
    let rows = vec![
        vec![
            "state".into(),
            format!(
                "{} service instances, {} KV keys of {} bytes",
                s.instances, s.keys, s.value_size
            ),
        ],
        vec![
            "load instances (txn, 16 clients)".into(),
            secs(s.load_instances),
        ],
        vec!["load keys (txn, 16 clients)".into(), secs(s.load_keys)],
        vec![
            "peak RSS while loading MiB".into(),
            mib(s.peak_rss_load_kib),
        ],
        vec!["RSS loaded, 2 s idle MiB".into(), mib(s.rss_loaded_kib)],
        vec![
            "data on disk MiB".into(),
            format!("{:.1}", s.disk_bytes as f64 / 1024.0 / 1024.0),
        ],
    ];
    let mut out = align(&rows, 1);
    for x in &s.restarts {
        let _ = writeln!(out, "kill -9 and restart, {}:", x.what);
        let rows = vec![
            vec!["  spawn -> ready line".into(), secs(x.ready)],
            vec![
                "  spawn -> last key and last service answered".into(),
                secs(x.queryable),
            ],
            vec!["  RSS then MiB".into(), mib(x.rss_kib)],
            vec!["  peak RSS until then MiB".into(), mib(x.peak_rss_kib)],
            vec![
                "  keys read back".into(),
                format!("{} of {}", x.keys_after, s.keys),
            ],
        ];
        out.push_str(&align(&rows, 1));
        for l in &x.log {
            let _ = writeln!(out, "  log: {}", l.trim());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn row(server: &'static str, clients: usize, lat_ns: u64, n: u64, rss: u64) -> Row {
        let mut m = Measured::default();
        for _ in 0..n {
            m.hist.record(lat_ns);
        }
        m.elapsed = Duration::from_secs(1);
        Row {
            server,
            workload: "get",
            clients,
            measured: m,
            peak_rss_kib: Some(rss),
        }
    }

    #[test]
    fn columns_are_aligned() {
        let t = align(
            &[
                vec!["a".into(), "x".into(), "1".into()],
                vec!["long name".into(), "yy".into(), "12345".into()],
            ],
            2,
        );
        assert_eq!(t, "a          x       1\nlong name  yy  12345\n");
    }

    #[test]
    fn ratios_pair_muster_with_etcd_runs() {
        let r = Report {
            rows: vec![
                row("muster", 1, 2_000_000, 300, 40_960),
                row("etcd", 1, 1_000_000, 100, 20_480),
                row("muster", 16, 1_000_000, 10, 1),
            ],
            ..Report::default()
        };
        let t = r.ratio_table().unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        // Header plus one line: clients=16 has no etcd run.
        assert_eq!(lines.len(), 2, "{t}");
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "get", "1", "300", "100", "3.00", "2.000", "1.000", "2.00", "2.000", "1.000",
                "2.00", "2.000", "1.000", "2.00", "40.0", "20.0", "2.00"
            ]
        );
    }

    #[test]
    fn no_ratio_table_without_etcd() {
        let r = Report {
            rows: vec![row("muster", 1, 1_000, 1, 1)],
            ..Report::default()
        };
        assert!(r.ratio_table().is_none());
    }

    #[test]
    fn json_keeps_nanoseconds() {
        let r = Report {
            rows: vec![row("muster", 4, 1_500, 10, 100)],
            ..Report::default()
        };
        let j = r.json();
        assert_eq!(j["runs"][0]["latency"]["p50_ns"], 1_500);
        assert_eq!(j["runs"][0]["clients"], 4);
        assert_eq!(j["runs"][0]["ops_per_sec"], 10.0);
    }
}
