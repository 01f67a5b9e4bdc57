//! The snapshot workload (muster only): load a large state (the scale
//! workload's instances and keys), save it with `muster snapshot save`,
//! restore it with `muster snapshot restore` into a fresh server, and
//! report the time of each, the archive's size, and the servers' peak
//! resident memory during each (the point: it stays bounded by buffers,
//! not by the state's size).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::procs::{self, ServerProc};
use crate::scale::{self, ScaleArgs};

/// What the snapshot workload measured.
#[derive(Debug, Default)]
pub struct BackupReport {
    /// The loaded state.
    pub args: Option<ScaleArgs>,
    /// Time to load it.
    pub load: Duration,
    /// The saving server's RSS before the save (KiB).
    pub rss_before_save_kib: Option<u64>,
    /// Its peak RSS during the save (KiB).
    pub peak_rss_save_kib: Option<u64>,
    /// `snapshot save` wall time.
    pub save: Duration,
    /// The archive's size (bytes).
    pub archive_bytes: u64,
    /// The restoring server's RSS before the restore (KiB).
    pub rss_before_restore_kib: Option<u64>,
    /// Its peak RSS during the restore (KiB).
    pub peak_rss_restore_kib: Option<u64>,
    /// `snapshot restore` wall time.
    pub restore: Duration,
    /// Keys read back from the restored server.
    pub keys_after: usize,
}

/// Run `muster` with `args`, failing with its stderr.
fn muster(bin: &Path, args: &[&str]) -> Result<Duration> {
    let started = Instant::now();
    let out = Command::new(bin)
        .args(args)
        .output()
        .with_context(|| format!("run {} {args:?}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "muster {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(started.elapsed())
}

/// Load, save, restore into a fresh server, and check the keys came back.
pub async fn run_backup(bin: &Path, args: ScaleArgs) -> Result<BackupReport> {
    let mut r = BackupReport {
        args: Some(args),
        ..BackupReport::default()
    };
    let mut source = procs::start_muster(bin)?;
    let started = Instant::now();
    scale::load(source.http, args).await?;
    r.load = started.elapsed();
    eprintln!("snapshot: loaded in {:.1} s", r.load.as_secs_f64());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("bench.snap");
    let file_arg = file.to_str().context("temp path")?;
    r.rss_before_save_kib = source.rss_kib();
    source.reset_peak_rss();
    let addr = source.http.to_string();
    r.save = muster(bin, &["snapshot", "save", "-http-addr", &addr, file_arg])?;
    r.peak_rss_save_kib = source.peak_rss_kib();
    source.check_alive()?;
    r.archive_bytes = std::fs::metadata(&file)?.len();
    eprintln!(
        "snapshot: saved {} MiB in {:.1} s",
        r.archive_bytes >> 20,
        r.save.as_secs_f64()
    );
    drop(source);

    let mut target: ServerProc = procs::start_muster(bin)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    r.rss_before_restore_kib = target.rss_kib();
    target.reset_peak_rss();
    let addr = target.http.to_string();
    r.restore = muster(bin, &["snapshot", "restore", "-http-addr", &addr, file_arg])?;
    r.peak_rss_restore_kib = target.peak_rss_kib();
    target.check_alive()?;
    r.keys_after = scale::count_keys(target.http).await?;
    eprintln!(
        "snapshot: restored in {:.1} s, {} keys back",
        r.restore.as_secs_f64(),
        r.keys_after
    );
    Ok(r)
}
