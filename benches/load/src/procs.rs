//! The server processes under load: a durable one-node muster agent and an
//! etcd member, each on loopback ports picked free, with its own temporary
//! data directory and a log file; plus finding (or installing) etcd and
//! reading a process's peak RSS.
//!
//! A [`ServerProc`] kills its process (SIGKILL) when dropped, so a failing
//! run never leaves a server behind. Nothing here sends load.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hyper::{Method, StatusCode};

use crate::http::Conn;

/// How long a server may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a restart on existing data may take (it is measured, so the
/// bound is loose).
const RESTART_TIMEOUT: Duration = Duration::from_secs(600);

/// The prefix of muster's readiness line on stdout.
const READY_PREFIX: &str = "muster agent ready:";

/// A running server process.
pub struct ServerProc {
    /// `muster` or `etcd`.
    pub name: &'static str,
    /// The child; killed on drop.
    child: Child,
    /// Its HTTP address.
    pub http: SocketAddr,
    /// Its DNS address (muster only).
    pub dns: Option<SocketAddr>,
    /// Where its stdout/stderr go.
    log: PathBuf,
    /// Holds the data directory and the log; removed on drop, after the kill.
    _dir: tempfile::TempDir,
    /// How to start it again (muster only).
    respawn: Option<MusterSpawn>,
}

impl ServerProc {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reset the process's peak RSS (`VmHWM`) to its current RSS, so the
    /// next [`ServerProc::peak_rss_kib`] covers only what follows. Returns
    /// false if the kernel refused (then the peak covers the whole life).
    pub fn reset_peak_rss(&self) -> bool {
        fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").is_ok()
    }

    /// Peak resident set size in KiB (`VmHWM` of /proc/<pid>/status).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        parse_vm_hwm(&status)
    }

    /// An error (with the end of the server's log) if the process exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); end of its log {}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail(40)
            );
        }
        Ok(())
    }

    /// Kill the process with SIGKILL, start it again on the same data
    /// directory and ports, and wait for its readiness line. Returns the
    /// time from the new spawn to that line.
    ///
    /// With `remove`, that subdirectory of the data directory is deleted
    /// while the process is down (muster's `views` holds the materialised
    /// state; without it a restart rebuilds it from the snapshot and log).
    pub fn kill9_and_restart(&mut self, remove: Option<&str>) -> Result<Duration> {
        let Some(spawn) = &self.respawn else {
            bail!("{} cannot be restarted by the harness", self.name);
        };
        self.child.kill()?;
        self.child.wait()?;
        if let Some(sub) = remove {
            let path = self._dir.path().join("data").join(sub);
            fs::remove_dir_all(&path).with_context(|| format!("remove {}", path.display()))?;
        }
        let started = Instant::now();
        let (child, rx) = spawn.spawn(&self.log)?;
        self.child = child;
        self.wait_ready(&rx, RESTART_TIMEOUT)?;
        Ok(started.elapsed())
    }

    /// Wait for the readiness line on `rx`, failing if the process exits
    /// or `timeout` passes.
    fn wait_ready(&mut self, rx: &mpsc::Receiver<String>, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(line) => return Ok(line),
                Err(_) if Instant::now() > deadline => bail!(
                    "{} printed no readiness line in {timeout:?}; its log:\n{}",
                    self.name,
                    self.log_tail(40)
                ),
                Err(_) => self.check_alive()?,
            }
        }
    }

    /// The data directory (muster only).
    pub fn data_dir(&self) -> PathBuf {
        self._dir.path().join("data")
    }

    /// Stop the process with SIGTERM and wait for it to exit.
    pub fn stop(&mut self) -> Result<()> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()?;
        if !sent.success() {
            bail!("kill -TERM {} failed", self.pid());
        }
        let status = self.child.wait()?;
        if !status.success() {
            bail!("{} exited with {status} on SIGTERM", self.name);
        }
        Ok(())
    }

    /// Current resident set size in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        parse_status_kib(&status, "VmRSS:")
    }

    /// Bytes under the process's temporary directory (data and log).
    pub fn dir_bytes(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            let Ok(rd) = fs::read_dir(p) else { return 0 };
            rd.flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&e.path()),
                    Ok(_) => e.metadata().map_or(0, |m| m.len()),
                    Err(_) => 0,
                })
                .sum()
        }
        walk(self._dir.path())
    }

    /// The last `n` lines of the server's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Lines of the server's log containing `needle` (for the report of
    /// warnings and errors seen under load).
    pub fn log_lines_with(&self, needle: &str) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `VmHWM` in KiB from the text of /proc/<pid>/status.
pub fn parse_vm_hwm(status: &str) -> Option<u64> {
    parse_status_kib(status, "VmHWM:")
}

/// A `kB` field (`VmHWM:`, `VmRSS:`) of /proc/<pid>/status, in KiB.
fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    let mut parts = line[field.len()..].split_whitespace();
    let n: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => Some(n),
        _ => None,
    }
}

/// A TCP port on 127.0.0.1 that is free now (bound, then released).
fn free_tcp_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A port free for both TCP and UDP on 127.0.0.1 (DNS and gossip use both).
fn free_tcp_udp_port() -> Result<u16> {
    for _ in 0..100 {
        let tcp = TcpListener::bind("127.0.0.1:0")?;
        let port = tcp.local_addr()?.port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no port free for both TCP and UDP on 127.0.0.1")
}

/// The muster binary built by `cargo build --release` in this workspace:
/// under `$CARGO_TARGET_DIR` when set, else `target/` at the workspace root.
pub fn default_muster_path() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("release").join("muster"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/muster"),
    }
}

/// Start `muster agent -server -bootstrap` with a fresh data directory, on
/// loopback only, and wait for its readiness line.
pub fn start_muster(bin: &Path) -> Result<ServerProc> {
    start_muster_with(bin, None)
}

/// Like [`start_muster`], also loading `config` (JSON) with `-config-file`.
pub fn start_muster_with(bin: &Path, config: Option<&str>) -> Result<ServerProc> {
    let dir = tempfile::Builder::new().prefix("muster-bench-").tempdir()?;
    let log = dir.path().join("muster.log");
    let data = dir.path().join("data");
    let (http, dns) = (free_tcp_port()?, free_tcp_udp_port()?);
    let (server, serf) = (free_tcp_port()?, free_tcp_udp_port()?);
    let serf_wan = free_tcp_udp_port()?;
    let mut args: Vec<OsString> = vec!["agent".into()];
    for a in ["-server", "-bootstrap", "-node", "bench", "-data-dir"] {
        args.push(a.into());
    }
    args.push(data.into_os_string());
    for (flag, port) in [
        ("-http-port", http),
        ("-dns-port", dns),
        ("-server-port", server),
        ("-serf-lan-port", serf),
        ("-serf-wan-port", serf_wan),
    ] {
        args.push(flag.into());
        args.push(port.to_string().into());
    }
    for a in ["-bind", "127.0.0.1", "-client", "127.0.0.1"] {
        args.push(a.into());
    }
    if let Some(config) = config {
        let path = dir.path().join("config.json");
        fs::write(&path, config)?;
        args.push("-config-file".into());
        args.push(path.into_os_string());
    }
    // The harness is one client holding up to thousands of connections
    // (watchers): lift the per-client connection limit (200 by default).
    let limits = dir.path().join("limits.json");
    fs::write(&limits, r#"{"limits": {"http_max_conns_per_client": 0}}"#)?;
    args.push("-config-file".into());
    args.push(limits.into_os_string());
    let spawn = MusterSpawn {
        bin: bin.to_owned(),
        args,
    };
    let (child, rx) = spawn.spawn(&log)?;
    let mut proc = ServerProc {
        name: "muster",
        child,
        http: SocketAddr::from(([127, 0, 0, 1], http)),
        dns: None,
        log,
        _dir: dir,
        respawn: Some(spawn),
    };
    let line = proc.wait_ready(&rx, READY_TIMEOUT)?;
    if let Some(a) = ready_field(&line, "http") {
        proc.http = a.parse().with_context(|| format!("http= in {line:?}"))?;
    }
    proc.dns = Some(match ready_field(&line, "dns") {
        Some(a) => a.parse().with_context(|| format!("dns= in {line:?}"))?,
        None => SocketAddr::from(([127, 0, 0, 1], dns)),
    });
    Ok(proc)
}

/// How a muster process was started, so it can be started again on the
/// same data directory and ports.
struct MusterSpawn {
    /// The binary.
    bin: PathBuf,
    /// Its arguments.
    args: Vec<OsString>,
}

impl MusterSpawn {
    /// Start the process, appending its stderr to `log`; the receiver gets
    /// its readiness line.
    fn spawn(&self, log: &Path) -> Result<(Child, mpsc::Receiver<String>)> {
        let err = fs::OpenOptions::new().create(true).append(true).open(log)?;
        let mut child = Command::new(&self.bin)
            .args(&self.args)
            .env_remove("CONSUL_HTTP_ADDR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .with_context(|| format!("start {}", self.bin.display()))?;
        let stdout = child.stdout.take().context("muster stdout")?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            // Forward the readiness line; keep draining stdout afterwards so
            // the agent can never block on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if line.starts_with(READY_PREFIX) {
                    let _ = tx.send(line);
                }
            }
        });
        Ok((child, rx))
    }
}

/// The value of `name=` in muster's readiness line.
pub fn ready_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.strip_prefix(READY_PREFIX)?
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// Start a one-member etcd cluster with a fresh data directory on loopback
/// ports, with etcd's default durability (fsync on every commit), and wait
/// until `/health` answers healthy.
pub async fn start_etcd(bin: &Path) -> Result<ServerProc> {
    let dir = tempfile::Builder::new().prefix("etcd-bench-").tempdir()?;
    let log = dir.path().join("etcd.log");
    let (client, peer) = (free_tcp_port()?, free_tcp_port()?);
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let out = File::create(&log)?;
    let child = Command::new(bin)
        .args(["--name", "default"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("default={peer_url}")])
        .args(["--initial-cluster-state", "new"])
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    let mut proc = ServerProc {
        name: "etcd",
        child,
        http: SocketAddr::from(([127, 0, 0, 1], client)),
        dns: None,
        log,
        _dir: dir,
        respawn: None,
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        proc.check_alive()?;
        if let Ok(mut conn) = Conn::connect(proc.http).await {
            if let Ok(r) = conn
                .request(Method::GET, "/health", Default::default())
                .await
            {
                if r.status == StatusCode::OK && r.body.windows(6).any(|w| w == b"\"true\"") {
                    return Ok(proc);
                }
            }
        }
        if Instant::now() > deadline {
            bail!(
                "etcd was not healthy after {READY_TIMEOUT:?}; its log:\n{}",
                proc.log_tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `name` in a directory of `$PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The etcd binary: `--etcd`, else `etcd` on PATH, else installed from
/// Debian's `etcd-server` package (unless `no_install`). `Err` says why the
/// comparison cannot run.
pub fn find_or_install_etcd(
    given: Option<&Path>,
    no_install: bool,
) -> std::result::Result<PathBuf, String> {
    if let Some(p) = given {
        return if p.is_file() {
            Ok(p.to_owned())
        } else {
            Err(format!("--etcd {}: no such file", p.display()))
        };
    }
    if let Some(p) = on_path("etcd") {
        return Ok(p);
    }
    if no_install {
        return Err("etcd is not installed and --no-install was given".into());
    }
    eprintln!("etcd not found: installing Debian's etcd-server (apt-get install -y etcd-server)");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false);
    let apt = |args: &[&str]| -> std::result::Result<(), String> {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.args(["-n", "apt-get"]);
            c
        };
        let out = cmd
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run apt-get: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            Err(format!(
                "apt-get {} failed ({}): {}",
                args.join(" "),
                out.status,
                err.lines().last().unwrap_or("")
            ))
        }
    };
    let install = ["install", "-y", "etcd-server"];
    if apt(&install).is_err() {
        // A fresh machine may not have the package lists yet.
        apt(&["update"])?;
        apt(&install)?;
    }
    on_path("etcd")
        .or_else(|| Some(PathBuf::from("/usr/bin/etcd")).filter(|p| p.is_file()))
        .ok_or_else(|| "etcd-server installed but no etcd binary found".into())
}

/// `etcd --version`'s first line, for the report.
pub fn etcd_version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "etcd (version unknown)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm_is_read_in_kib() {
        let status =
            "Name:\tmuster\nVmPeak:\t  900000 kB\nVmHWM:\t   48212 kB\nVmRSS:\t   40000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(48_212));
        assert_eq!(parse_vm_hwm("VmRSS:\t 1 kB\n"), None);
        assert_eq!(parse_vm_hwm("VmHWM:\t 12 MB\n"), None);
    }

    #[test]
    fn own_peak_rss_is_readable() {
        let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
        assert!(parse_vm_hwm(&status).is_some_and(|k| k > 0));
    }

    #[test]
    fn readiness_line_fields() {
        let line = "muster agent ready: node=bench datacenter=dc1 http=127.0.0.1:8500 dns=127.0.0.1:8600 data_dir=/tmp/x";
        assert_eq!(ready_field(line, "http"), Some("127.0.0.1:8500"));
        assert_eq!(ready_field(line, "dns"), Some("127.0.0.1:8600"));
        assert_eq!(ready_field(line, "node"), Some("bench"));
        assert_eq!(ready_field(line, "nodes"), None);
        assert_eq!(ready_field("something else http=1", "http"), None);
    }

    #[test]
    fn free_ports_are_bindable() -> Result<()> {
        let p = free_tcp_udp_port()?;
        let _t = TcpListener::bind(("127.0.0.1", p))?;
        let _u = UdpSocket::bind(("127.0.0.1", p))?;
        Ok(())
    }
}
