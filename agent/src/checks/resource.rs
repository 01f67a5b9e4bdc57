//! muster's resource checks: memory, CPU, disk space and inodes of this
//! machine against `warning`/`critical` thresholds, and whether a process
//! is alive (its RSS as a share of memory against them), read from `/proc`
//! (the procfs crate) and `statvfs`, no script and no
//! `enable_script_checks`. The output says the value and the threshold in
//! one line (`Memory 83.2% used (13.3 of 16.0 GiB), warning at 80%`), and
//! the value is a gauge too (`muster.resource.<kind>.used_percent`).

use std::time::Duration;

use muster_engine::Status;
use procfs::{FromRead, FromReadSI};

use super::CheckResult;
use crate::definition::{percent, Resource, ResourceCheck};

/// How long the CPU is watched (or the check's timeout, if shorter).
const CPU_WINDOW: Duration = Duration::from_secs(1);

/// One measurement: the share in use (0-100) and the words around it.
struct Measured {
    used: f64,
    what: String,
}

/// Measure `check`'s resource and judge it.
pub(super) async fn run(check: &ResourceCheck, timeout: Duration) -> CheckResult {
    let measured = match &check.resource {
        Resource::Memory { source } => memory(or(source, "/proc/meminfo")),
        Resource::Cpu { source } => {
            cpu(or(source, "/proc/stat"), CPU_WINDOW.min(timeout / 2)).await
        }
        Resource::Disk { path } => space(path, false),
        Resource::Inodes { path } => space(path, true),
        Resource::Process { pidfile, name } => process(pidfile, name),
    };
    let m = match measured {
        Ok(m) => m,
        Err(e) => return CheckResult::critical(e),
    };
    let gauge = match &check.resource {
        Resource::Memory { .. } => metrics::gauge!("muster.resource.memory.used_percent"),
        Resource::Cpu { .. } => metrics::gauge!("muster.resource.cpu.used_percent"),
        Resource::Disk { path } => {
            metrics::gauge!("muster.resource.disk.used_percent", "path" => path.clone())
        }
        Resource::Inodes { path } => {
            metrics::gauge!("muster.resource.inodes.used_percent", "path" => path.clone())
        }
        Resource::Process { pidfile, name } => metrics::gauge!(
            "muster.resource.process.memory_percent",
            "process" => if name.is_empty() { pidfile.clone() } else { name.clone() }
        ),
    };
    gauge.set(m.used);
    judge(check, &m)
}

fn or<'a>(path: &'a str, default: &'a str) -> &'a str {
    if path.is_empty() {
        default
    } else {
        path
    }
}

/// The status for `m`, and the line that says why.
fn judge(check: &ResourceCheck, m: &Measured) -> CheckResult {
    // Compared in hundredths of a percent, as the thresholds are kept.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // 0..=10_000
    let used = (m.used * 100.0).round() as u32;
    let (status, line) = match (check.warning, check.critical) {
        (_, Some(c)) if used >= c => (
            Status::Critical,
            format!("{}, critical at {}", m.what, percent(c)),
        ),
        (Some(w), _) if used >= w => (
            Status::Warning,
            format!("{}, warning at {}", m.what, percent(w)),
        ),
        (Some(w), _) => (
            Status::Passing,
            format!("{}, below the warning threshold {}", m.what, percent(w)),
        ),
        (None, Some(c)) => (
            Status::Passing,
            format!("{}, below the critical threshold {}", m.what, percent(c)),
        ),
        (None, None) => (Status::Passing, m.what.clone()),
    };
    CheckResult {
        status,
        output: line,
    }
}

/// Bytes in GiB with one decimal.
#[allow(clippy::cast_precision_loss)] // display only
fn gib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / f64::from(1u32 << 30))
}

/// `part / whole` in percent (0 when `whole` is 0).
#[allow(clippy::cast_precision_loss)] // ratios of counters
fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn memory(source: &str) -> Result<Measured, String> {
    let info = procfs::Meminfo::from_file(source)
        .map_err(|e| format!("Memory: cannot read {source}: {e}"))?;
    let available = info
        .mem_available
        .unwrap_or(info.mem_free + info.cached + info.buffers);
    let used = info.mem_total.saturating_sub(available);
    let pct = share(used, info.mem_total);
    Ok(Measured {
        used: pct,
        what: format!(
            "Memory {pct:.1}% used ({} of {} GiB)",
            gib(used),
            gib(info.mem_total)
        ),
    })
}

/// (busy, total) jiffies of all CPUs from a `/proc/stat` file.
fn cpu_times(source: &str) -> Result<(u64, u64, usize), String> {
    let stat = procfs::KernelStats::from_file(source, procfs::current_system_info())
        .map_err(|e| format!("CPU: cannot read {source}: {e}"))?;
    let t = &stat.total;
    let idle = t.idle + t.iowait.unwrap_or(0);
    let total = t.user
        + t.nice
        + t.system
        + idle
        + t.irq.unwrap_or(0)
        + t.softirq.unwrap_or(0)
        + t.steal.unwrap_or(0);
    Ok((total - idle, total, stat.cpu_time.len()))
}

async fn cpu(source: &str, window: Duration) -> Result<Measured, String> {
    let (busy0, total0, _) = cpu_times(source)?;
    tokio::time::sleep(window).await;
    let (busy1, total1, cores) = cpu_times(source)?;
    let pct = share(busy1.saturating_sub(busy0), total1.saturating_sub(total0));
    Ok(Measured {
        used: pct,
        what: format!(
            "CPU {pct:.1}% busy over {} ({cores} cores)",
            muster_engine::duration::format(window)
        ),
    })
}

/// The process of `pidfile` (else the first named `name`): its RSS as a
/// share of memory; a dead or missing one is an `Err` naming why
/// (critical).
fn process(pidfile: &str, name: &str) -> Result<Measured, String> {
    let proc_ = if pidfile.is_empty() {
        // `comm` is the name cut to 15 bytes.
        let comm: String = name.chars().take(15).collect();
        procfs::process::all_processes()
            .map_err(|e| format!("Process {name}: cannot list processes: {e}"))?
            .filter_map(Result::ok)
            .find(|p| p.stat().is_ok_and(|s| s.comm == comm))
            .ok_or_else(|| format!("Process {name}: not running"))?
    } else {
        let text = std::fs::read_to_string(pidfile)
            .map_err(|e| format!("Process from {pidfile}: cannot read the pid file: {e}"))?;
        let pid: i32 = text
            .trim()
            .parse()
            .map_err(|_| format!("Process from {pidfile}: {:?} is not a pid", text.trim()))?;
        let p = procfs::process::Process::new(pid)
            .map_err(|_| format!("Process from {pidfile}: pid {pid} is not running"))?;
        // A zombie has exited.
        if p.stat().is_ok_and(|s| s.state == 'Z') {
            return Err(format!(
                "Process from {pidfile}: pid {pid} has exited (zombie)"
            ));
        }
        p
    };
    let stat = proc_
        .stat()
        .map_err(|e| format!("Process {}: {e}", proc_.pid))?;
    let rss = stat.rss * procfs::page_size();
    let total = procfs::Meminfo::from_file("/proc/meminfo")
        .map(|m| m.mem_total)
        .unwrap_or(0);
    let pct = share(rss, total);
    #[allow(clippy::cast_precision_loss)] // display only
    let mib = rss as f64 / f64::from(1u32 << 20);
    Ok(Measured {
        used: pct,
        what: format!(
            "Process {} (pid {}) running, RSS {mib:.1} MiB ({pct:.1}% of memory)",
            stat.comm, proc_.pid
        ),
    })
}

/// Space (or inodes) in use on the filesystem holding `path`, as `df`
/// counts it: used / (used + available to unprivileged users).
fn space(path: &str, inodes: bool) -> Result<Measured, String> {
    let what = if inodes { "Inodes" } else { "Disk" };
    let st = rustix::fs::statvfs(path).map_err(|e| format!("{what} {path}: {e}"))?;
    if inodes {
        let used = st.f_files.saturating_sub(st.f_ffree);
        let pct = share(used, used + st.f_favail);
        return Ok(Measured {
            used: pct,
            what: format!("Inodes {path} {pct:.1}% used ({used} of {})", st.f_files),
        });
    }
    let block = st.f_frsize;
    let used = st.f_blocks.saturating_sub(st.f_bfree) * block;
    let avail = st.f_bavail * block;
    let pct = share(used, used + avail);
    Ok(Measured {
        used: pct,
        what: format!(
            "Disk {path} {pct:.1}% used ({} of {} GiB)",
            gib(used),
            gib(used + avail)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(warning: Option<u32>, critical: Option<u32>) -> ResourceCheck {
        ResourceCheck {
            resource: Resource::Memory {
                source: String::new(),
            },
            warning,
            critical,
        }
    }

    #[test]
    fn thresholds_judge_both_ways_and_say_which() {
        let m = |used: f64| Measured {
            used,
            what: format!("Memory {used:.1}% used"),
        };
        let c = check(Some(8000), Some(9000));
        let r = judge(&c, &m(83.2));
        assert_eq!(
            (r.status, r.output.as_str()),
            (Status::Warning, "Memory 83.2% used, warning at 80%")
        );
        assert_eq!(judge(&c, &m(90.0)).status, Status::Critical);
        let r = judge(&c, &m(42.0));
        assert_eq!(r.status, Status::Passing);
        assert!(
            r.output.ends_with("below the warning threshold 80%"),
            "{}",
            r.output
        );
        assert_eq!(
            judge(&check(None, Some(5050)), &m(50.6)).status,
            Status::Critical
        );
        assert_eq!(percent(8050), "80.5%");
        assert_eq!(percent(8005), "80.05%");
    }
}
