//! The agent's logs: stderr at `-log-level` (text, or JSON with
//! `-log-json`), optionally a file (`-log-file`) rotated by size
//! (`-log-rotate-bytes`) and age (`-log-rotate-duration`, 24h by default)
//! keeping `-log-rotate-max-files` old ones (0: all), as Consul does; and
//! the lines `/v1/agent/monitor` watchers want, at their own levels.
//! Storage and raft internals stay at `warn` unless the level is `trace`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Where and how the agent logs.
#[derive(Debug, Clone, Default)]
pub struct LogSettings {
    /// `-log-level`.
    pub level: String,
    /// `-log-json`: JSON lines on stderr and in the file.
    pub json: bool,
    /// `-log-file`: the file (a directory gets `muster.log` in it).
    pub file: Option<PathBuf>,
    /// `-log-rotate-bytes` (0: no size limit).
    pub rotate_bytes: u64,
    /// `-log-rotate-duration` (Consul's 24h by default).
    pub rotate_duration: Option<Duration>,
    /// `-log-rotate-max-files` (0: keep every rotated file).
    pub rotate_max_files: usize,
}

/// Install the log subscriber; a log file that cannot be opened is an
/// error naming it.
pub fn init(s: &LogSettings) -> anyhow::Result<()> {
    let filter = || {
        tracing_subscriber::EnvFilter::new(if s.level == "trace" {
            "trace".to_string()
        } else {
            format!("{},lsm_tree=warn,fjall=warn,openraft=warn", s.level)
        })
    };
    let stderr = if s.json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(io::stderr)
            .with_filter(filter())
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(io::stderr)
            .with_ansi(io::stderr().is_terminal())
            .with_filter(filter())
            .boxed()
    };
    let file = match &s.file {
        None => None,
        Some(path) => {
            let writer = RotatingFile::open(path, s)?;
            Some(if s.json {
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(writer)
                    .with_filter(filter())
                    .boxed()
            } else {
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(writer)
                    .with_filter(filter())
                    .boxed()
            })
        }
    };
    let text = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(MonitorWriter { json: false })
        .with_filter(
            tracing_subscriber::filter::dynamic_filter_fn(|m, _| monitored(m, false))
                .with_callsite_filter(|_| tracing::subscriber::Interest::sometimes()),
        );
    let json = tracing_subscriber::fmt::layer()
        .json()
        .with_writer(MonitorWriter { json: true })
        .with_filter(
            tracing_subscriber::filter::dynamic_filter_fn(|m, _| monitored(m, true))
                .with_callsite_filter(|_| tracing::subscriber::Interest::sometimes()),
        );
    tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .with(text)
        .with(json)
        .init();
    Ok(())
}

/// A log file rotated by size and age: the live file keeps its name;
/// a rotated one becomes `<stem>-<unix nanoseconds>.<ext>` beside it, and
/// the oldest beyond the limit are removed.
#[derive(Clone)]
struct RotatingFile(Arc<Mutex<Rotation>>);

struct Rotation {
    path: PathBuf,
    file: File,
    written: u64,
    opened: Instant,
    max_bytes: u64,
    max_age: Option<Duration>,
    keep: usize,
}

impl RotatingFile {
    fn open(path: &Path, s: &LogSettings) -> anyhow::Result<RotatingFile> {
        let path = if path.is_dir() || path.as_os_str().to_string_lossy().ends_with('/') {
            path.join("muster.log")
        } else {
            path.to_path_buf()
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| {
                anyhow::anyhow!(
                    "Error: cannot create the -log-file directory {}: {e}",
                    dir.display()
                )
            })?;
        }
        let file = append(&path)?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(RotatingFile(Arc::new(Mutex::new(Rotation {
            path,
            file,
            written,
            opened: Instant::now(),
            max_bytes: s.rotate_bytes,
            max_age: s.rotate_duration.or(Some(Duration::from_secs(24 * 3600))),
            keep: s.rotate_max_files,
        }))))
    }
}

fn append(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| anyhow::anyhow!("Error: cannot open -log-file {}: {e}", path.display()))
}

impl Rotation {
    fn due(&self, more: usize) -> bool {
        let full =
            self.max_bytes > 0 && self.written > 0 && self.written + more as u64 > self.max_bytes;
        let old = self.max_age.is_some_and(|a| self.opened.elapsed() >= a);
        full || old
    }

    /// Move the live file aside and start a new one; prune the oldest.
    fn rotate(&mut self) -> io::Result<()> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let stem = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ext = self
            .path
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        let rotated = self.path.with_file_name(format!("{stem}-{nanos}{ext}"));
        fs::rename(&self.path, &rotated)?;
        self.file = append(&self.path).map_err(io::Error::other)?;
        self.written = 0;
        self.opened = Instant::now();
        if self.keep > 0 {
            let dir = self.path.parent().unwrap_or(Path::new("."));
            let prefix = format!("{stem}-");
            let mut old: Vec<PathBuf> = fs::read_dir(dir)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(&ext))
                })
                .collect();
            old.sort();
            while old.len() > self.keep {
                let _ = fs::remove_file(old.remove(0));
            }
        }
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut r = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if r.due(buf.len()) {
            r.rotate()?;
        }
        r.file.write_all(buf)?;
        r.written += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .file
            .flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RotatingFile {
    type Writer = RotatingFile;

    fn make_writer(&'a self) -> RotatingFile {
        self.clone()
    }
}

/// Whether a monitor watcher wants this event (storage and raft internals
/// only at `warn`, unless it asked for `trace`). Asked per event: watchers
/// come and go, so the answer is never cached per callsite.
fn monitored(meta: &tracing::Metadata<'_>, json: bool) -> bool {
    let logs = muster_api::monitor::logs();
    if !logs.wants(*meta.level(), json) {
        return false;
    }
    let noisy = ["lsm_tree", "fjall", "openraft"]
        .iter()
        .any(|t| meta.target().starts_with(t));
    !noisy || *meta.level() <= tracing::Level::WARN || logs.wants(tracing::Level::TRACE, json)
}

/// Where the monitor layers write: one buffer per event, handed to the
/// watchers when the formatter is done with it.
struct MonitorWriter {
    json: bool,
}

/// One event's formatted line on its way to the watchers.
struct MonitorLine {
    level: tracing::Level,
    json: bool,
    buf: Vec<u8>,
}

impl io::Write for MonitorLine {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for MonitorLine {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let line = bytes::Bytes::from(std::mem::take(&mut self.buf));
            muster_api::monitor::logs().publish(self.level, self.json, line);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for MonitorWriter {
    type Writer = MonitorLine;

    fn make_writer(&'a self) -> MonitorLine {
        MonitorLine {
            level: tracing::Level::INFO,
            json: self.json,
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> MonitorLine {
        MonitorLine {
            level: *meta.level(),
            json: self.json,
            buf: Vec::new(),
        }
    }
}
