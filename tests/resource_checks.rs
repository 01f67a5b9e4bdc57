//! muster's resource checks against the binary: a memory check reading a
//! meminfo file the test rewrites crosses its thresholds both ways
//! (passing → warning → critical → passing) with the value and threshold
//! in its output and a gauge in the metrics; the same kind from a config
//! file; CPU and disk on this machine; disk thresholds crossed on a small
//! tmpfs the test mounts when it may (else it says why and skips that
//! part); a process check following a child process by its pid file and
//! one by a name nothing runs as; bad definitions are Consul's 400
//! `Invalid check: ...`.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{wait_until, write_file, Agent};

const TOTAL_KB: u64 = 16 * 1024 * 1024;

/// A meminfo file with `used_pct` of 16 GiB in use.
fn meminfo(dir: &Path, used_tenths: u64) {
    let available = TOTAL_KB - TOTAL_KB * used_tenths / 1000;
    let text = format!(
        "MemTotal:       {TOTAL_KB} kB\nMemFree:        {available} kB\n\
         MemAvailable:   {available} kB\nBuffers:        0 kB\nCached:         0 kB\n\
         SwapCached:     0 kB\nActive:         0 kB\nInactive:       0 kB\n\
         SwapTotal:      0 kB\nSwapFree:       0 kB\nDirty:          0 kB\n\
         Writeback:      0 kB\nMapped:         0 kB\nShmem:          0 kB\n\
         Slab:           0 kB\nCommitLimit:    0 kB\nCommitted_AS:   0 kB\n\
         VmallocTotal:   0 kB\nVmallocUsed:    0 kB\nVmallocChunk:   0 kB\n"
    );
    // Written whole, then renamed: the check never reads half a file.
    let tmp = dir.join("meminfo.tmp");
    std::fs::write(&tmp, text).expect("write meminfo");
    std::fs::rename(&tmp, dir.join("meminfo")).expect("rename meminfo");
}

/// `/v1/agent/checks`'s entry for `id`.
fn check(a: &Agent, id: &str) -> Value {
    a.get("/v1/agent/checks").json()[id].clone()
}

/// Wait until check `id` has run and is `status`; its output.
fn wait_status(a: &Agent, id: &str, status: &str) -> String {
    wait_until(&format!("{id} {status}"), Duration::from_secs(20), || {
        let c = check(a, id);
        // A new check is critical with no output until its first run.
        c["Status"] == status && c["Output"].as_str().is_some_and(|o| !o.is_empty())
    });
    check(a, id)["Output"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn resource_checks_cross_thresholds_both_ways() {
    let dir = tempfile::tempdir().expect("tempdir");
    meminfo(dir.path(), 500);
    let source = dir.path().join("meminfo").display().to_string();
    let file_check = json!({"check": {"id": "mem-file", "name": "Memory (file)",
        "memory": {"warning": "80%", "critical": "90%", "source": source},
        "interval": "1s"}});
    let a = Agent::start_with_config(&["-dev"], false, &file_check.to_string());
    let body = json!({"ID": "mem", "Name": "Memory",
        "Memory": {"Warning": "80%", "Critical": "90%", "Source": source},
        "Interval": "1s"});
    let r = a.put("/v1/agent/check/register", body.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());

    let out = wait_status(&a, "mem", "passing");
    assert_eq!(
        out,
        "Memory 50.0% used (8.0 of 16.0 GiB), below the warning threshold 80%"
    );
    assert_eq!(check(&a, "mem")["Type"], "memory");
    meminfo(dir.path(), 832);
    let out = wait_status(&a, "mem", "warning");
    assert_eq!(out, "Memory 83.2% used (13.3 of 16.0 GiB), warning at 80%");
    meminfo(dir.path(), 950);
    let out = wait_status(&a, "mem", "critical");
    assert_eq!(out, "Memory 95.0% used (15.2 of 16.0 GiB), critical at 90%");
    // The config file's check reads the same file.
    wait_status(&a, "mem-file", "critical");
    let gauges = a.get("/v1/agent/metrics").json()["Gauges"].clone();
    let used = gauges
        .as_array()
        .and_then(|g| {
            g.iter()
                .find(|e| e["Name"] == "muster.resource.memory.used_percent")
        })
        .and_then(|e| e["Value"].as_f64());
    assert!(used.is_some_and(|u| (u - 95.0).abs() < 0.01), "{used:?}");
    meminfo(dir.path(), 100);
    wait_status(&a, "mem", "passing");

    // CPU and disk on this machine: a 0% critical threshold is always
    // crossed, a 100% warning never is (unless the disk is full).
    for (id, spec) in [
        ("cpu", json!({"CPU": {"Critical": "0%"}})),
        (
            "disk",
            json!({"Disk": {"Path": dir.path(), "Warning": "100%"}}),
        ),
        (
            "inodes",
            json!({"Inodes": {"Path": dir.path(), "Critical": 0}}),
        ),
    ] {
        let mut body = spec;
        body["ID"] = json!(id);
        body["Name"] = json!(id);
        body["Interval"] = json!("2s");
        let r = a.put("/v1/agent/check/register", body.to_string().as_bytes());
        assert_eq!(r.status, 200, "{id}: {}", r.text());
    }
    let out = wait_status(&a, "cpu", "critical");
    assert!(
        out.starts_with("CPU ") && out.contains("% busy over 1s ("),
        "{out}"
    );
    assert!(out.ends_with("critical at 0%"), "{out}");
    let out = wait_status(&a, "disk", "passing");
    assert!(
        out.starts_with(&format!("Disk {} ", dir.path().display())),
        "{out}"
    );
    let out = wait_status(&a, "inodes", "critical");
    assert!(out.starts_with("Inodes "), "{out}");

    // Mistakes: Consul's 400 naming the rule.
    for (spec, reason) in [
        (
            json!({"Memory": {}}),
            "memory checks need a Warning or Critical threshold",
        ),
        (
            json!({"Disk": {"Warning": "80%"}}),
            "disk checks need a Path",
        ),
        (
            json!({"Memory": {"Warning": "lots"}}),
            "is not a percentage",
        ),
        (
            json!({"Memory": {"Warning": "95%", "Critical": "90%"}}),
            "is above its Critical",
        ),
    ] {
        let mut body = spec;
        body["Name"] = json!("bad");
        body["Interval"] = json!("10s");
        let r = a.put("/v1/agent/check/register", body.to_string().as_bytes());
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(r.text().contains("Invalid check: "), "{}", r.text());
        assert!(r.text().contains(reason), "{}", r.text());
    }
}

/// Disk thresholds crossed both ways on a 1 MiB tmpfs (root only).
#[test]
fn disk_check_crosses_thresholds_on_a_small_tmpfs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .output();
    match mounted {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            eprintln!(
                "skipped: cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return;
        }
        Err(e) => {
            eprintln!("skipped: no mount command: {e}");
            return;
        }
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&mnt);
    let a = Agent::dev();
    let body = json!({"ID": "tmpfs", "Name": "tmpfs",
        "Disk": {"Path": mnt, "Warning": "50%", "Critical": "90%"}, "Interval": "1s"});
    assert_eq!(
        a.put("/v1/agent/check/register", body.to_string().as_bytes())
            .status,
        200
    );
    wait_status(&a, "tmpfs", "passing");
    write_file(&mnt, "fill", &vec![7u8; 700 * 1024]);
    let out = wait_status(&a, "tmpfs", "warning");
    assert!(out.contains("warning at 50%"), "{out}");
    std::fs::remove_file(mnt.join("fill")).expect("rm");
    wait_status(&a, "tmpfs", "passing");
}

/// A process check by pid file: passing while the process runs (its RSS in
/// the output), critical once it is gone; by a name nothing runs as,
/// critical; neither given, a 400.
#[test]
fn process_check_follows_a_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("sleep");
    let pidfile = write_file(dir.path(), "sleep.pid", child.id().to_string().as_bytes());
    let a = Agent::dev();
    for (id, spec) in [
        ("by-pid", json!({"PidFile": pidfile})),
        ("by-name", json!({"Name": "no-such-proc-9"})),
    ] {
        let body = json!({"ID": id, "Name": id, "Process": spec, "Interval": "1s"});
        let r = a.put("/v1/agent/check/register", body.to_string().as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let out = wait_status(&a, "by-pid", "passing");
    assert!(
        out.starts_with(&format!("Process sleep (pid {}) running, RSS ", child.id())),
        "{out}"
    );
    assert_eq!(check(&a, "by-pid")["Type"], "process");
    let out = wait_status(&a, "by-name", "critical");
    assert_eq!(out, "Process no-such-proc-9: not running");
    child.kill().expect("kill");
    child.wait().expect("reap");
    let out = wait_status(&a, "by-pid", "critical");
    assert!(out.contains("is not running"), "{out}");
    let body = json!({"Name": "bad", "Process": {}, "Interval": "1s"});
    let r = a.put("/v1/agent/check/register", body.to_string().as_bytes());
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("process checks need a PidFile or a Name"),
        "{}",
        r.text()
    );
}
