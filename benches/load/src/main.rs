//! `muster-bench`: an end-to-end load harness. It starts a durable one-node
//! muster server and, for comparison, an etcd server (same durability:
//! fsync on every commit), both on loopback ports picked free with fresh
//! temporary data directories, and drives them with the same HTTP/1.1 load
//! generator. It also measures muster's DNS answers and blocking-query
//! watchers. Results are printed as aligned tables (or JSON with `--json`);
//! progress goes to stderr.
//!
//! # Layout
//! - `args`: flags and their checks.
//! - `procs`: starting the servers, finding or installing etcd, peak RSS.
//! - `http`: one keep-alive HTTP/1.1 connection.
//! - `target`: what a KV put/get is on muster and on etcd.
//! - `load`: the closed-loop KV generator; `dns`, `watch`, `scale`: the
//!   other loads.
//! - `hist`: the latency histogram; `report`: tables and JSON.
//!
//! It depends on none of muster's crates: it drives the built binary.

mod args;
mod backup;
mod dns;
mod fanout;
mod hist;
mod http;
mod load;
mod logtools;
mod procs;
mod report;
mod scale;
mod target;
mod watch;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use args::{Args, Workload};
use load::{populate, run_kv, KvRun};
use procs::ServerProc;
use report::{Report, Row};
use target::Server;

/// Clients used to pre-populate the keyspace.
const POPULATE_CLIENTS: usize = 16;

fn main() -> ExitCode {
    let args = match Args::parse().validate() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("muster-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let muster = args
        .muster
        .clone()
        .unwrap_or_else(procs::default_muster_path);
    if !muster.is_file() {
        eprintln!(
            "muster-bench: no muster binary at {}: run `cargo build --release` first (or pass --muster PATH)",
            muster.display()
        );
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("muster-bench: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&args, &muster)) {
        Ok(report) => {
            if args.json {
                println!("{:#}", report.json());
            } else {
                print!("{}", report.text());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("muster-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What this machine is, for the report.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = l.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.0} GiB RAM", kib as f64 / 1024.0 / 1024.0))
        })
        .unwrap_or_default();
    format!("{cores} cores ({cpu}), {mem}, Linux {}", kernel.trim())
}

/// The 1, 5 and 15 minute load averages (the machine may be shared).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Run everything asked for and collect the report.
async fn run(args: &Args, muster_bin: &Path) -> Result<Report> {
    let mut report = Report::default();
    report.setup.push(("machine".into(), machine()));
    report
        .setup
        .push(("load average at start".into(), loadavg()));
    report
        .setup
        .push(("muster".into(), muster_bin.display().to_string()));
    report.setup.push((
        "load".into(),
        format!(
            "{:?} per run, {} keys, {}-byte values, clients {:?}, HTTP/1.1 keep-alive, one connection per client, get mode {}",
            args.duration, args.keys, args.value_size, args.clients, args.get_mode.name()
        ),
    ));

    let loads = [Workload::Put, Workload::Get, Workload::Dns, Workload::Watch];
    if loads.iter().any(|w| args.wants(*w)) {
        let mut proc = procs::start_muster(muster_bin)?;
        eprintln!(
            "muster started (pid {}, http {}, dns {})",
            proc.pid(),
            proc.http,
            proc.dns.map_or("-".into(), |d| d.to_string())
        );
        kv_runs(args, Server::Muster, &mut proc, &mut report).await?;
        if args.wants(Workload::Dns) {
            dns_runs(args, &mut proc, &mut report).await?;
        }
        if args.wants(Workload::Watch) {
            eprintln!("watch: {} watchers", args.watchers);
            proc.reset_peak_rss();
            let w = watch::run_watch(proc.http, args.watchers, args.duration, args.fanout_rounds)
                .await?;
            proc.check_alive()?;
            report.watch = Some((w, proc.peak_rss_kib()));
        }
        log_notes(&proc, &mut report);
    }
    if args.wants(Workload::Scale) {
        let mut proc = procs::start_muster(muster_bin)?;
        eprintln!(
            "scale: {} instances, {} keys (muster pid {})",
            args.instances,
            args.scale_keys,
            proc.pid()
        );
        let s = scale::run_scale(
            &mut proc,
            scale::ScaleArgs {
                instances: args.instances,
                keys: args.scale_keys,
                value_size: args.value_size,
            },
        )
        .await?;
        report.scale = Some(s);
    }

    if args.wants(Workload::Snapshot) {
        eprintln!(
            "snapshot: {} instances, {} keys",
            args.instances, args.scale_keys
        );
        let b = backup::run_backup(
            muster_bin,
            scale::ScaleArgs {
                instances: args.instances,
                keys: args.scale_keys,
                value_size: args.value_size,
            },
        )
        .await?;
        report.backup = Some(b);
    }

    if args.wants(Workload::Log) {
        eprintln!("log: {} writes", args.scale_keys);
        let clients = args.clients.iter().copied().max().unwrap_or(64);
        let r = logtools::run_log(muster_bin, args.scale_keys, args.value_size, clients).await?;
        report.log = Some(r);
    }

    if args.wants(Workload::HealthFanout) {
        let mut proc = procs::start_muster(muster_bin)?;
        eprintln!(
            "health fan-out: {} watchers, {} instances (muster pid {})",
            args.watchers,
            args.fanout_instances,
            proc.pid()
        );
        let f = fanout::run_fanout(
            &mut proc,
            fanout::FanoutArgs {
                watchers: args.watchers,
                instances: args.fanout_instances,
                rounds: args.fanout_flips,
                gzip: !args.no_gzip,
            },
        )
        .await?;
        proc.check_alive()?;
        report.fanout = Some(f);
    }

    let kv = args.wants(Workload::Put) || args.wants(Workload::Get);
    if kv && args.no_etcd {
        report
            .notes
            .push("etcd comparison skipped (--no-etcd)".into());
    } else if kv {
        match procs::find_or_install_etcd(args.etcd.as_deref(), args.no_install) {
            Err(why) => {
                eprintln!("muster-bench: skipping the etcd comparison: {why}");
                report.notes.push(format!("etcd comparison skipped: {why}"));
            }
            Ok(bin) => {
                let version = procs::etcd_version(&bin);
                report
                    .setup
                    .push(("etcd".into(), format!("{} ({version})", bin.display())));
                let mut proc = procs::start_etcd(&bin).await?;
                eprintln!("etcd started (pid {}, http {})", proc.pid(), proc.http);
                kv_runs(args, Server::Etcd, &mut proc, &mut report).await?;
            }
        }
    }
    report.setup.push(("load average at end".into(), loadavg()));
    Ok(report)
}

/// The put and get runs against one server.
async fn kv_runs(
    args: &Args,
    server: Server,
    proc: &mut ServerProc,
    report: &mut Report,
) -> Result<()> {
    for workload in [Workload::Put, Workload::Get] {
        if !args.wants(workload) {
            continue;
        }
        if workload == Workload::Get {
            let took = populate(
                server,
                proc.http,
                args.keys,
                args.value_size,
                POPULATE_CLIENTS,
            )
            .await?;
            eprintln!(
                "{}: wrote all {} keys in {:.1} s",
                server.name(),
                args.keys,
                took.as_secs_f64()
            );
        }
        for &clients in &args.clients {
            proc.reset_peak_rss();
            let m = run_kv(KvRun {
                server,
                addr: proc.http,
                workload,
                clients,
                duration: args.duration,
                keys: args.keys,
                value_size: args.value_size,
                get_mode: args.get_mode,
            })
            .await?;
            proc.check_alive()?;
            eprintln!(
                "{} {} x{clients}: {:.0} ops/s, {} errors",
                server.name(),
                workload.name(),
                m.ops_per_sec(),
                m.errors
            );
            report.rows.push(Row {
                server: server.name(),
                workload: workload.name(),
                clients,
                measured: m,
                peak_rss_kib: proc.peak_rss_kib(),
            });
        }
    }
    Ok(())
}

/// The DNS runs against muster.
async fn dns_runs(args: &Args, proc: &mut ServerProc, report: &mut Report) -> Result<()> {
    let Some(dns_addr) = proc.dns else {
        anyhow::bail!("muster's readiness line gave no DNS address");
    };
    dns::register_services(proc.http, args.services).await?;
    dns::verify_answers(dns_addr, args.services).await?;
    for &clients in &args.clients {
        proc.reset_peak_rss();
        let m = dns::run_dns(dns_addr, args.services, clients, args.duration).await?;
        proc.check_alive()?;
        eprintln!(
            "muster dns x{clients}: {:.0} queries/s, {} errors",
            m.ops_per_sec(),
            m.errors
        );
        report.rows.push(Row {
            server: "muster",
            workload: "dns",
            clients,
            measured: m,
            peak_rss_kib: proc.peak_rss_kib(),
        });
    }
    Ok(())
}

/// Count WARN/ERROR lines in muster's log and keep the first of each.
fn log_notes(proc: &ServerProc, report: &mut Report) {
    for level in [" WARN ", " ERROR "] {
        let lines = proc.log_lines_with(level);
        if let Some(first) = lines.first() {
            report.notes.push(format!(
                "muster log: {} lines at{level}level; first: {}",
                lines.len(),
                first.trim()
            ));
        }
    }
}
