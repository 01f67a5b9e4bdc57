//! Log files as Consul writes them: `-log-file` (a directory gets
//! `muster.log`), `-log-json`, rotation by size (`-log-rotate-bytes`) to
//! `muster-<nanoseconds>.log` beside it, and `-log-rotate-max-files`
//! keeping only the newest rotated files.

use std::time::Duration;

use crate::harness::{wait_until, Agent};

#[test]
fn log_file_rotates_by_size_and_keeps_the_newest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = format!("{}/", dir.path().display());
    let a = Agent::start(
        &[
            "-dev",
            "-log-json",
            "-log-file",
            &logs,
            "-log-rotate-bytes",
            "2000",
            "-log-rotate-max-files",
            "2",
        ],
        false,
    );
    let rotated = || -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(dir.path())
            .expect("read_dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("muster-") && n.ends_with(".log"))
            })
            .collect();
        v.sort();
        v
    };
    let mut n = 0;
    wait_until("three rotations", Duration::from_secs(30), || {
        // Each registration logs a line or two.
        n += 1;
        let body = format!(r#"{{"Name": "logged-{n}", "Port": 80}}"#);
        assert_eq!(
            a.put("/v1/agent/service/register", body.as_bytes()).status,
            200
        );
        std::fs::read_to_string(dir.path().join("muster.log"))
            .is_ok_and(|t| t.contains(&format!("logged-{n}")))
            && rotated().len() >= 2
            && n > 40
    });
    let kept = rotated();
    assert_eq!(kept.len(), 2, "only the newest two rotated files: {kept:?}");
    for f in kept.iter().chain([&dir.path().join("muster.log")]) {
        let text = std::fs::read_to_string(f).expect("read");
        assert!(
            text.len() <= 2000,
            "{} is {} bytes",
            f.display(),
            text.len()
        );
        for line in text.lines() {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert!(v.get("level").is_some(), "{line}");
        }
    }
    let live = std::fs::read_to_string(dir.path().join("muster.log")).expect("live");
    assert!(
        live.contains(&format!("logged-{n}")),
        "the newest line is in the live file"
    );
}
