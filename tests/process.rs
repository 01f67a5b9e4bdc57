//! Agents run without the harness's assumptions: ones that must exit
//! (refusals at start) and ones signalled before they are ready. The
//! harness's [`crate::harness::Agent`] waits for the readiness line; these
//! do not.

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{free_port, muster};

/// A `muster agent` child whose stderr goes to a file and whose stdout is
/// dropped; killed on drop.
pub struct RawAgent {
    child: Option<Child>,
    log_path: PathBuf,
    /// Holds the log and TMPDIR; removed on drop.
    _dir: tempfile::TempDir,
}

/// `args` plus free ports for every listener the test did not set (never
/// Consul's fixed defaults: other agents may run).
pub fn with_free_ports(args: &[&str]) -> Vec<String> {
    let mut full: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    for name in [
        "-http-port",
        "-dns-port",
        "-server-port",
        "-serf-lan-port",
        "-serf-wan-port",
    ] {
        if !args.contains(&name) {
            full.push(name.into());
            full.push(free_port().to_string());
        }
    }
    if !args.contains(&"-bind") && !args.contains(&"-dev") {
        full.push("-bind".into());
        full.push("127.0.0.1".into());
    }
    full
}

impl RawAgent {
    /// Spawn `muster agent` with `args` (see [`with_free_ports`]) and the
    /// extra environment `env`.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> RawAgent {
        let dir = tempfile::Builder::new()
            .prefix("muster-raw-")
            .tempdir()
            .expect("temp dir");
        let log_path = dir.path().join("agent.log");
        let log = File::create(&log_path).expect("create the log");
        let tmp = dir.path().join("tmp");
        fs::create_dir_all(&tmp).expect("TMPDIR");
        let mut cmd = muster();
        cmd.arg("agent")
            .args(with_free_ports(args))
            .env("TMPDIR", &tmp)
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn muster agent");
        RawAgent {
            child: Some(child),
            log_path,
            _dir: dir,
        }
    }

    /// The agent's stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Wait until the log contains `needle`; panics (with the log) after
    /// `within`.
    pub fn wait_log(&self, needle: &str, within: Duration) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                start.elapsed() < within,
                "{needle:?} not logged within {within:?}; log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Send `signal` (`TERM`, `INT`, ...).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let sent = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} {pid}");
    }

    /// Is it still running?
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Wait for the exit; panics (with the log) after `within`. Returns
    /// the status and how long the wait took.
    pub fn wait_exit(&mut self, within: Duration) -> (ExitStatus, Duration) {
        let start = Instant::now();
        let mut child = self.child.take().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return (status, start.elapsed());
            }
            if start.elapsed() > within {
                let _ = child.kill();
                let _ = child.wait();
                panic!("agent did not exit within {within:?}; log:\n{}", self.log());
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RawAgent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!("---- raw agent log ----\n{}\n----", self.log());
        }
    }
}

/// Run `muster agent args` (free ports added) expecting it to exit within
/// `within`; its status and log.
pub fn agent_exit(args: &[&str], within: Duration) -> (ExitStatus, String) {
    let mut agent = RawAgent::spawn(args, &[]);
    let (status, _) = agent.wait_exit(within);
    (status, agent.log())
}
