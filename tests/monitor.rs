//! Log streaming: `muster monitor` against a running agent prints lines
//! the agent logs after it connected, at the monitor's level even when the
//! agent's own is quieter, as text or JSON; a bad level is Consul's 400.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::{muster, Agent};

/// `muster monitor <args>` against `a`, its stdout lines on a channel.
fn monitor(a: &Agent, args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = muster()
        .arg("monitor")
        .args(["-http-addr", &a.addr.to_string()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start muster monitor");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

/// Register services with new names until the monitor shows the line the
/// agent logs for one (so the line was logged after it connected); that
/// line.
fn a_line_about_a_new_service(a: &Agent, rx: &mpsc::Receiver<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    while Instant::now() < deadline {
        n += 1;
        let name = format!("monitored-{n}");
        let body = format!(r#"{{"Name": "{name}", "Port": 80}}"#);
        assert_eq!(
            a.put("/v1/agent/service/register", body.as_bytes()).status,
            200
        );
        let until = Instant::now() + Duration::from_millis(500);
        while let Ok(line) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            if line.contains(&name) {
                return line;
            }
        }
    }
    panic!("no line about a service registered after the monitor connected");
}

#[test]
fn monitor_streams_lines_logged_after_it_connected() {
    // The agent itself logs warnings only; the monitor asks for debug.
    let a = Agent::start(&["-dev", "-log-level", "warn"], false);
    let (mut text, rx) = monitor(&a, &["-log-level", "debug"]);
    let line = a_line_about_a_new_service(&a, &rx);
    assert!(line.contains("INFO"), "{line}");
    assert!(
        !a.log().contains("monitored-"),
        "the agent's own log is at warn"
    );
    let _ = text.kill();

    let (mut json, rx) = monitor(&a, &["-log-json"]);
    let line = a_line_about_a_new_service(&a, &rx);
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(v["level"], "INFO", "{v}");
    assert!(v.get("fields").is_some(), "{v}");
    let _ = json.kill();

    let out = muster()
        .args([
            "monitor",
            "-http-addr",
            &a.addr.to_string(),
            "-log-level",
            "loud",
        ])
        .output()
        .expect("muster monitor");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Unknown log level: loud"), "{err}");
}
