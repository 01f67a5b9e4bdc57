//! `muster debug` against a running agent: a tar.gz with the agent's
//! configuration, its members, a metrics sample per interval and the log
//! lines written during the capture; bad flags refused with the fix.

use std::io::Read;

use crate::harness::{muster, Agent};

#[test]
fn debug_bundles_agent_members_metrics_and_logs() {
    let a = Agent::dev();
    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("bundle");
    let addr = a.addr;
    // Something to log while the capture runs.
    let logger = std::thread::spawn(move || {
        for i in 0..6 {
            std::thread::sleep(std::time::Duration::from_millis(400));
            let body = format!(r#"{{"Name": "during-debug-{i}", "Port": 80}}"#);
            let _ =
                crate::harness::request(addr, "PUT", "/v1/agent/service/register", body.as_bytes());
        }
    });
    let out = muster()
        .args(["debug", "-http-addr", &a.addr.to_string()])
        .args(["-duration", "3s", "-interval", "1s"])
        .args(["-output", output.to_str().expect("utf-8")])
        .output()
        .expect("muster debug");
    logger.join().expect("logger");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("==> Saved debug archive:"), "{stdout}");

    let file = std::fs::File::open(dir.path().join("bundle.tar.gz")).expect("bundle");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut names = Vec::new();
    let mut log = String::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").display().to_string();
        let mut text = String::new();
        entry.read_to_string(&mut text).expect("read");
        if name.ends_with(".json") {
            serde_json::from_str::<serde_json::Value>(&text)
                .unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
        }
        if name == "bundle/muster.log" {
            log = text;
        }
        names.push(name);
    }
    for want in [
        "bundle/agent.json",
        "bundle/members.json",
        "bundle/metrics/0.json",
        "bundle/metrics/2.json",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    assert!(
        log.contains("during-debug-"),
        "the log of the capture: {log}"
    );

    let out = muster()
        .args([
            "debug",
            "-http-addr",
            &a.addr.to_string(),
            "-capture",
            "pprof",
        ])
        .output()
        .expect("muster debug");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("choose from agent, members, metrics, logs")
    );
}
